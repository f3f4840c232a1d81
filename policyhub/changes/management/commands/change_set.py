"""`change_set list|show|submit|approve|reject`: review change sets from the command line."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_get, change_set_list, change_set_preview
from policyhub.changes.services import change_set_approve, change_set_reject, change_set_submit
from policyhub.errors import ApplicationError


class Command(BaseCommand):
    help = "List, show (plan and rendered diff), submit, approve or reject change sets."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="the organisation's change sets, newest first")
        listing.add_argument("--org", required=True)
        show = sub.add_parser("show", help="plan and rendered diff of every affected team")
        show.add_argument("id", type=int)
        submit = sub.add_parser("submit", help="validate a draft and put it up for review")
        submit.add_argument("id", type=int)
        add_actor_argument(submit)
        submit.add_argument("--publish-at", help="ISO 8601 time to publish at")
        for name in ("approve", "reject"):
            decide = sub.add_parser(name, help=f"{name} a submitted change set")
            decide.add_argument("id", type=int)
            add_actor_argument(decide)
            decide.add_argument("--reason", default="", help="why (required to reject)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            org = organization_arg(options["org"])
            for change_set in change_set_list(org):
                self.stdout.write(_summary(change_set))
            return
        found = change_set_get(options["id"])
        if found is None:
            raise CommandError(f"no change set {options['id']}")
        change_set = found
        if options["action"] == "show":
            self._show(change_set)
            return
        actor = actor_arg(options["actor"])
        try:
            if options["action"] == "submit":
                publish_at = _datetime(options["publish_at"]) if options["publish_at"] else None
                change_set = change_set_submit(
                    change_set=change_set, actor=actor, publish_at=publish_at
                )
            elif options["action"] == "approve":
                change_set = change_set_approve(
                    change_set=change_set, actor=actor, reason=options["reason"]
                )
            else:
                change_set = change_set_reject(
                    change_set=change_set, actor=actor, reason=options["reason"]
                )
        except ApplicationError as exc:
            raise refused(exc) from None
        self.stdout.write(_summary(change_set))

    def _show(self, change_set: ChangeSet) -> None:
        self.stdout.write(_summary(change_set))
        if change_set.reason:
            self.stdout.write(f"Reason: {change_set.reason}")
        if change_set.decision_reason:
            self.stdout.write(f"Decision: {change_set.decision_reason}")
        self.stdout.write("Plan:")
        for line in change_set.plan:
            self.stdout.write(f"  {line}")
        if change_set.status in (ChangeSet.Status.PUBLISHED, ChangeSet.Status.REJECTED):
            return
        preview = change_set_preview(change_set)
        if preview.stale:
            self.stderr.write("The live policy changed since this was planned: re-plan it.")
        self.stdout.write(f"Affected teams: {', '.join(preview.team_paths) or 'none'}")
        for team in preview.teams:
            for issue in team.errors:
                self.stdout.write(f"{team.path}: {issue}")
            for file in team.files:
                self.stdout.write(file.diff, ending="" if file.diff.endswith("\n") else "\n")


def _summary(change_set: ChangeSet) -> str:
    author = change_set.author_label or "-"
    when = f" publish at {change_set.publish_at.isoformat()}" if change_set.publish_at else ""
    return (
        f"{change_set.pk}  {change_set.status:<9} {change_set.created_at:%Y-%m-%d %H:%M} "
        f"by {author}{when}  {change_set.title}"
    )


def _datetime(value: str) -> Any:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--publish-at {value!r} is not an ISO 8601 time")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
