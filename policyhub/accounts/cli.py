"""What every management command needs: the organisation and the acting user named on the
command line, or a clear error."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from policyhub.accounts.models import Organization
from policyhub.errors import ApplicationError


def organization_arg(slug: str) -> Organization:
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise CommandError(f"no organisation {slug!r}")
    return organization


def user_arg(username: str | None) -> User | None:
    """The user `--as USERNAME` names; None when the option was not given."""
    if not username:
        return None
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user


def refused(error: ApplicationError, consequence: str = "") -> CommandError:
    """A service's refusal as the command's error, every issue on its own line; `consequence`
    says what that means for the command ("nothing was applied")."""
    first = f"{error.message}; {consequence}" if consequence else error.message
    return CommandError("\n".join([first, *(f"  {issue}" for issue in error.issues)]))
