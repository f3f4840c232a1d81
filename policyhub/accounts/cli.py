"""What every management command needs: the organisation and the actor named on the command
line, or a clear error.

`--as EMAIL` acts as that person, with exactly what their role allows. Without it a command acts
as the server operator, named after the login that runs it (`operator:alice`): everything is
allowed, and everything is audited under that name.
"""

from __future__ import annotations

from argparse import ArgumentParser

from django.core.management.base import CommandError

from policyhub.accounts.models import Organization
from policyhub.accounts.selectors import user_by_key
from policyhub.actors import Actor
from policyhub.errors import ApplicationError


def organization_arg(slug: str) -> Organization:
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise CommandError(f"no organisation {slug!r}")
    return organization


def add_actor_argument(parser: ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--as",
        dest="actor",
        required=required,
        metavar="EMAIL",
        help="act as this person (email or username), with what their role allows"
        + ("" if required else "; without it, as the server operator"),
    )


def actor_arg(user_key: str | None) -> Actor:
    """The person `--as EMAIL` names, or the server operator when the option was not given."""
    if not user_key:
        return Actor.operator()
    user = user_by_key(user_key)
    if user is None or not user.is_active:
        raise CommandError(f"no active user {user_key!r}")
    return Actor.for_user(user)


def refused(error: ApplicationError, consequence: str = "") -> CommandError:
    """A service's refusal as the command's error, every issue on its own line; `consequence`
    says what that means for the command ("nothing was applied")."""
    first = f"{error.message}; {consequence}" if consequence else error.message
    return CommandError("\n".join([first, *(f"  {issue}" for issue in error.issues)]))
