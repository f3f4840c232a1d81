"""`signing_key rotate --org ORG`, `signing_key revoke --org ORG KEY_ID --reason TEXT` and
`signing_key list --org ORG`."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.errors import ApplicationError
from policyhub.releases.selectors import signing_keys
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.revocation import KeyRevocation, signing_key_revoke


class Command(BaseCommand):
    help = (
        "Rotate, revoke or list an organisation's release signing keys. Rotate to replace a key "
        "that is still safe (machines keep trusting it); revoke a key that may be compromised "
        "(machines stop trusting it, and what it signed is signed again with the active key)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        rotate = sub.add_parser("rotate", help="a new active key; the old one keeps verifying")
        revoke = sub.add_parser("revoke", help="a compromised key: trusted for nothing any more")
        revoke.add_argument("key_id", help="the key's id (16 hex digits, as `list` shows it)")
        revoke.add_argument("--reason", required=True, help="why (recorded with the revocation)")
        listing = sub.add_parser("list", help="every key, the active one first")
        for each in (rotate, revoke, listing):
            each.add_argument("--org", required=True)
        for each in (rotate, revoke):
            add_actor_argument(each)

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if options["action"] == "rotate":
            try:
                key = signing_key_rotate(organization=org, actor=actor_arg(options["actor"]))
            except ApplicationError as exc:
                raise refused(exc, "the key was not rotated") from None
            self.stdout.write(f"new active key {key.key_id}")
        elif options["action"] == "revoke":
            try:
                revocation = signing_key_revoke(
                    organization=org,
                    key_id=options["key_id"],
                    reason=options["reason"],
                    actor=actor_arg(options["actor"]),
                )
            except ApplicationError as exc:
                raise refused(exc, "the key was not revoked") from None
            for line in revocation_lines(revocation):
                self.stdout.write(line)
        for key in signing_keys(org):
            self.stdout.write(
                f"{key.key_id}  {key.status:<8} {key.public_key}  created {key.created_at:%Y-%m-%d}"
            )


def revocation_lines(revocation: KeyRevocation) -> list[str]:
    """What happened, and what the operator has to do about machines."""
    revoked, active = revocation.revoked, revocation.active
    lines = [
        f"revoked key {revoked.key_id}: machines stop trusting it when they next get a release"
    ]
    endorser = active.endorsed_by
    if revocation.reenrolment_needed:
        lines.append(
            f"new active key {active.key_id}, endorsed by no key: no retired key is left to vouch "
            "for it, so every machine must be enrolled again (a new enrolment token per team) "
            "before it applies another release"
        )
    elif revocation.rotated and endorser is not None:
        lines.append(
            f"new active key {active.key_id}, endorsed by retired key {endorser.key_id}: machines "
            "that trust that key follow its endorsement; machines that trusted only revoked keys "
            "must be enrolled again"
        )
    lines.append(
        f"{revocation.teams_to_resign} team(s) served a release signed by a revoked key: each "
        f"gets a new revision with the same files, signed by {active.key_id}"
    )
    return lines
