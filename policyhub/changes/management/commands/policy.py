"""`policy export --org ORG` and `policy apply --org ORG FILE`: policy as code.
`policy window --org ORG [--min V] [--max V] ...`: show or change the Codex support window.

`apply` creates a draft change set (`--submit` also submits it, `--dry-run` only plans);
`--direct` writes the live policy at once, for bootstrap and tests.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.changes.selectors import policy_plan
from policyhub.changes.services import change_set_create, change_set_submit
from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.domain import CodexWindow
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.policies.validation import validate_policy
from policyhub.policies.window import window_unmeasured


class Command(BaseCommand):
    help = "Export an organisation's whole policy as TOML, or plan and apply one."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="print the policy document")
        export.add_argument("--org", required=True)
        apply = sub.add_parser("apply", help="show the plan and apply it, or make a change set")
        apply.add_argument("--org", required=True)
        apply.add_argument("file", help="policy document (TOML), or - for standard input")
        mode = apply.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="only show the plan")
        mode.add_argument(
            "--direct", action="store_true", help="apply to the live policy at once (the default)"
        )
        mode.add_argument("--draft", action="store_true", help="record a draft change set")
        mode.add_argument(
            "--submit", action="store_true", help="record a change set and submit it for approval"
        )
        apply.add_argument(
            "--publish-at", help="ISO 8601 time to publish the change set at (scheduled publish)"
        )
        add_actor_argument(apply)
        apply.add_argument("--reason", default="", help="why, recorded in the audit trail")
        window = sub.add_parser(
            "window", help="show or change the Codex versions the organisation's machines run"
        )
        window.add_argument("--org", required=True)
        window.add_argument("--min", dest="min_version", help="oldest Codex version, e.g. 0.125.0")
        window.add_argument("--max", dest="max_version", help="newest Codex version, e.g. 0.169.0")
        window.add_argument(
            "--managed-pins",
            help="comma-separated requirement keys to back with managed_config.toml ('' for none)",
        )
        window.add_argument(
            "--accept-unenforced",
            help="comma-separated requirement keys accepted as not enforced where ignored",
        )
        window.add_argument("--dry-run", action="store_true", help="only show the plan")
        add_actor_argument(window)
        window.add_argument("--reason", default="", help="why, recorded in the audit trail")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if options["action"] == "export":
            self.stdout.write(document.dump(org_policy(org)), ending="")
            return
        if options["action"] == "window":
            self._window(org, options)
            return
        text = self._read(options["file"])
        actor = actor_arg(options["actor"])
        if options["draft"] or options["submit"]:
            self._change_set(org, text, actor, options)
            return
        if options["publish_at"]:
            raise CommandError("--publish-at schedules a change set: add --draft or --submit")
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
            raise refused(exc, "nothing was applied") from None
        for path, issues in validate_policy(wanted).items():
            for issue in issues:
                self.stderr.write(f"{path or org.slug}: {issue}")
        self.stdout.write("Plan:" if changes else "No changes.")
        for change in changes:
            self.stdout.write(f"  {change}")
        if changes:
            verb = "Would apply" if options["dry_run"] else "Applied"
            self.stdout.write(f"{verb} {len(changes)} change(s) to {org.slug}.")

    def _window(self, org: Any, options: dict[str, Any]) -> None:
        """The live policy with another [codex] table, validated and applied like any policy."""
        current = org_policy(org)
        changes: dict[str, Any] = {
            key: options[key] for key in ("min_version", "max_version") if options[key]
        }
        for key, option in (
            ("managed_pins", "managed_pins"),
            ("accept_unenforced", "accept_unenforced"),
        ):
            if options[option] is not None:
                changes[key] = tuple(k.strip() for k in options[option].split(",") if k.strip())
        if not changes:
            window = document.codex_dict(current.codex)
            for key in ("min_version", "max_version", "managed_pins", "accept_unenforced"):
                self.stdout.write(f"{key}: {window.get(key, '')}")
            self._unmeasured(current.codex)
            return
        wanted = replace(current, codex=replace(current.codex, **changes))
        try:
            applied = policy_apply(
                organization=org,
                wanted=wanted,
                actor=actor_arg(options["actor"]),
                dry_run=options["dry_run"],
                reason=options["reason"],
            )
        except ApplicationError as exc:
            raise refused(exc, "the window was not changed") from None
        for change in applied:
            self.stdout.write(f"  {change}")
        verb = "Would apply" if options["dry_run"] else "Applied"
        self.stdout.write(f"{verb} {len(applied)} change(s) to {org.slug}'s Codex window.")
        self._unmeasured(wanted.codex)

    def _unmeasured(self, window: CodexWindow) -> None:
        """A window reaching past the newest measured release is allowed, and said so."""
        found = window_unmeasured(window)
        if found:
            self.stderr.write(f"warning: codex.max_version: {found}")

    def _change_set(self, org: Any, text: str, actor: Any, options: dict[str, Any]) -> None:
        publish_at = _datetime(options["publish_at"]) if options["publish_at"] else None
        try:
            wanted = document.parse(text)
            if wanted.slug == org.slug and not policy_plan(org, wanted):
                self.stdout.write("No changes.")
                return
            change_set = change_set_create(
                organization=org,
                document_text=text,
                actor=actor,
                reason=options["reason"],
                publish_at=publish_at,
            )
        except ApplicationError as exc:
            raise refused(exc, "no change set was created") from None
        for path, issues in validate_policy(wanted).items():
            for issue in issues:
                self.stderr.write(f"{path or org.slug}: {issue}")
        self.stdout.write(f"Change set {change_set.pk} ({change_set.status}) for {org.slug}:")
        for line in change_set.plan:
            self.stdout.write(f"  {line}")
        if options["submit"]:
            try:
                change_set = change_set_submit(change_set=change_set, actor=actor)
            except ApplicationError as exc:
                raise refused(exc, f"change set {change_set.pk} stays a draft") from None
        when = (
            f", to publish at {change_set.publish_at.isoformat()}" if change_set.publish_at else ""
        )
        self.stdout.write(f"Change set {change_set.pk} is {change_set.status}{when}.")

    @staticmethod
    def _read(name: str) -> str:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            return data.decode("utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{name} is not UTF-8 text") from None


def _datetime(value: str) -> Any:
    """An ISO 8601 time; one without a zone is taken in the project's time zone (UTC)."""
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--publish-at {value!r} is not an ISO 8601 time")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
