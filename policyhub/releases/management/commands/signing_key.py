"""`signing_key rotate --org ORG` and `signing_key list --org ORG`."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from policyhub.accounts.cli import organization_arg
from policyhub.releases.selectors import signing_keys
from policyhub.releases.services.keys import signing_key_rotate


class Command(BaseCommand):
    help = "Rotate or list an organisation's release signing keys."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["rotate", "list"])
        parser.add_argument("--org", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if options["action"] == "rotate":
            key = signing_key_rotate(organization=org, actor=None)
            self.stdout.write(f"new active key {key.key_id}")
        for key in signing_keys(org):
            self.stdout.write(
                f"{key.key_id}  {key.status:<8} {key.public_key}  created {key.created_at:%Y-%m-%d}"
            )
