"""`api_token create|list|revoke`: a person's API tokens from the command line.

    api_token create --org acme --as alice@acme.example --name ci --role viewer [--expires 90d]
    api_token list --org acme [--user alice@acme.example]
    api_token revoke ID --org acme [--as alice@acme.example]

A token acts as its person, at most at its role, in one organisation; its secret is printed once
(`Authorization: Bearer pht_...`).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.accounts.models import Role
from policyhub.accounts.selectors import api_tokens, user_by_key
from policyhub.accounts.services import api_token_create, api_token_revoke
from policyhub.errors import ApplicationError
from policyhub.validators import duration_parse


class Command(BaseCommand):
    help = "Create, list or revoke API tokens."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new token of the --as person; prints it once")
        create.add_argument("--name", required=True, help="what it is for")
        create.add_argument("--role", required=True, choices=Role.values, help="its ceiling")
        create.add_argument("--expires", default="90d", help="lifetime: 30m, 12h, 90d (max 365d)")
        add_actor_argument(create, required=True)
        listing = sub.add_parser("list", help="tokens (never their secrets), last use")
        listing.add_argument("--user", metavar="EMAIL", help="only this person's")
        revoke = sub.add_parser("revoke", help="the token stops working at once")
        revoke.add_argument("id", type=int)
        add_actor_argument(revoke)
        for action in (create, listing, revoke):
            action.add_argument("--org", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        try:
            if options["action"] == "create":
                token, secret = api_token_create(
                    actor=actor_arg(options["actor"]),
                    organization=org,
                    name=options["name"],
                    role=options["role"],
                    lifetime=duration_parse(options["expires"]),
                )
                self.stderr.write(
                    f"token {token.pk} ({token.role}) for {token.user.email} in {org.slug}, "
                    f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC; shown only now:"
                )
                self.stdout.write(secret)
            elif options["action"] == "list":
                user = user_by_key(options["user"]) if options["user"] else None
                for token in api_tokens(org, user=user):
                    state = "revoked" if token.revoked_at else "usable"
                    used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                    self.stdout.write(
                        f"{token.pk}\t{token.prefix}…\t{token.user.email}\t{token.name}\t"
                        f"{token.role}\texpires {token.expires_at:%Y-%m-%d}\t{state}\tused {used}"
                    )
            else:
                found = api_tokens(org).filter(pk=options["id"]).first()
                if found is None:
                    raise CommandError(f"no API token {options['id']} in {org.slug}")
                api_token_revoke(actor=actor_arg(options["actor"]), token=found)
                self.stdout.write(f"token {found.pk} revoked")
        except ApplicationError as exc:
            raise refused(exc, "nothing was changed") from None
