"""`signing_key rotate --org ORG` and `signing_key list --org ORG`."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.errors import ApplicationError
from policyhub.releases.selectors import signing_keys
from policyhub.releases.services.keys import signing_key_rotate


class Command(BaseCommand):
    help = "Rotate or list an organisation's release signing keys."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["rotate", "list"])
        parser.add_argument("--org", required=True)
        add_actor_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if options["action"] == "rotate":
            try:
                key = signing_key_rotate(organization=org, actor=actor_arg(options["actor"]))
            except ApplicationError as exc:
                raise refused(exc, "the key was not rotated") from None
            self.stdout.write(f"new active key {key.key_id}")
        for key in signing_keys(org):
            self.stdout.write(
                f"{key.key_id}  {key.status:<8} {key.public_key}  created {key.created_at:%Y-%m-%d}"
            )
