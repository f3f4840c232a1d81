"""`enrollment_token create|list|revoke`: invite machines into a team."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.errors import ApplicationError
from policyhub.fleet.selectors import enrollment_token_get, enrollment_tokens, token_refusal
from policyhub.fleet.services import enrollment_token_create, enrollment_token_revoke
from policyhub.validators import duration_parse


class Command(BaseCommand):
    help = "Create, list or revoke a team's enrolment tokens."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new token; prints its secret once")
        create.add_argument("--org", required=True)
        create.add_argument("--team", required=True, help="team path, e.g. platform/ci")
        create.add_argument("--uses", type=int, help="how many machines may enrol (default: any)")
        create.add_argument("--expires", default="7d", help="lifetime: 30m, 12h, 7d (max 365d)")
        create.add_argument("--note", default="", help="what the token is for")
        add_actor_argument(create)
        listing = sub.add_parser("list", help="the organisation's tokens (never their secrets)")
        listing.add_argument("--org", required=True)
        revoke = sub.add_parser("revoke", help="no more machines enrol with it")
        revoke.add_argument("id", type=int)
        revoke.add_argument("--org", required=True)
        add_actor_argument(revoke)

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        try:
            if options["action"] == "create":
                token, secret = enrollment_token_create(
                    organization=org,
                    team_path=options["team"],
                    lifetime=duration_parse(options["expires"]),
                    max_uses=options["uses"],
                    note=options["note"],
                    actor=actor_arg(options["actor"]),
                )
                self.stderr.write(
                    f"token {token.pk} for {org.slug}/{token.team.path}, expires "
                    f"{token.expires_at:%Y-%m-%d %H:%M} UTC, "
                    f"{token.max_uses or 'unlimited'} use(s); the secret is shown only now:"
                )
                self.stdout.write(secret)
            elif options["action"] == "list":
                now = timezone.now()
                for token in enrollment_tokens(org):
                    state = token_refusal(token, now) or "usable"
                    self.stdout.write(
                        f"{token.pk}\t{token.prefix}…\t{token.team.path}\t"
                        f"{token.uses}/{token.max_uses or '∞'} uses\t"
                        f"expires {token.expires_at:%Y-%m-%d %H:%M}\t{state}\t{token.note}"
                    )
            else:
                found = enrollment_token_get(org, options["id"])
                if found is None:
                    raise CommandError(f"no enrolment token {options['id']} in {org.slug}")
                enrollment_token_revoke(token=found, actor=actor_arg(options["actor"]))
                self.stdout.write(f"token {found.pk} revoked")
        except ApplicationError as error:
            raise refused(error) from None
