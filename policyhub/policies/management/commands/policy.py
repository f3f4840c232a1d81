"""`policy export --org ORG` and `policy apply --org ORG FILE [--dry-run]`: policy as code."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.selectors import org_policy, organization_get
from policyhub.policies.services import policy_apply
from policyhub.policies.validation import validate_policy


class Command(BaseCommand):
    help = "Export an organisation's whole policy as TOML, or plan and apply one."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="print the policy document")
        export.add_argument("--org", required=True)
        apply = sub.add_parser("apply", help="show the plan and apply it")
        apply.add_argument("--org", required=True)
        apply.add_argument("file", help="policy document (TOML), or - for standard input")
        apply.add_argument("--dry-run", action="store_true", help="only show the plan")
        apply.add_argument("--as", dest="actor", help="username recorded as the author")
        apply.add_argument("--reason", default="", help="why, recorded in the audit trail")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_get(options["org"])
        if org is None:
            raise CommandError(f"no organisation {options['org']!r}")
        if options["action"] == "export":
            self.stdout.write(document.dump(org_policy(org)), ending="")
            return
        text = self._read(options["file"])
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"no user {options['actor']!r}")
        try:
            wanted = document.parse(text)
            changes = policy_apply(
                organization=org,
                wanted=wanted,
                actor=actor,
                dry_run=options["dry_run"],
                reason=options["reason"],
            )
        except ApplicationError as exc:
            raise CommandError(
                self._issues(exc.message + "; nothing was applied", exc.issues)
            ) from None
        for path, issues in validate_policy(wanted).items():
            for issue in issues:
                self.stderr.write(f"{path or org.slug}: {issue}")
        self.stdout.write("Plan:" if changes else "No changes.")
        for change in changes:
            self.stdout.write(f"  {change}")
        if changes:
            verb = "Would apply" if options["dry_run"] else "Applied"
            self.stdout.write(f"{verb} {len(changes)} change(s) to {org.slug}.")

    @staticmethod
    def _read(name: str) -> str:
        import sys

        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            return data.decode("utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{name} is not UTF-8 text") from None

    @staticmethod
    def _issues(message: str, issues: list[Any]) -> str:
        return "\n".join([message, *(f"  {issue}" for issue in issues)])
