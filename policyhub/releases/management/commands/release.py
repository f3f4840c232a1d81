"""`release list|rollback|rollout|promote|abort --org ORG ...`: a team's releases and how they are
served."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.accounts.models import Organization
from policyhub.errors import ApplicationError
from policyhub.releases.models import Release
from policyhub.releases.selectors import release_list
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)


class Command(BaseCommand):
    help = "List releases, roll a team back, or stage, promote and abort a rollout."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="every release, newest revision first")
        listing.add_argument("--org", required=True)
        listing.add_argument("--team", help="only this team path")
        rollback = sub.add_parser("rollback", help="a new revision with an earlier one's content")
        rollback.add_argument("--to", dest="to_revision", type=int, required=True)
        rollback.add_argument("--reason", default="", help="why, recorded in the audit trail")
        rollout = sub.add_parser("rollout", help="serve the current release to N%% of devices")
        rollout.add_argument("--percent", type=int, required=True)
        promote = sub.add_parser("promote", help="serve the current release to every device")
        abort = sub.add_parser("abort", help="serve the previous release to every device again")
        for write in (rollback, rollout, promote, abort):
            write.add_argument("--org", required=True)
            write.add_argument("--team", required=True)
            add_actor_argument(write)

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if options["action"] == "list":
            self._list(org, options["team"])
            return
        actor = actor_arg(options["actor"])
        team = options["team"]
        try:
            if options["action"] == "rollback":
                release = release_rollback(
                    organization=org,
                    team_path=team,
                    to_revision=options["to_revision"],
                    actor=actor,
                    reason=options["reason"],
                )
                line = (
                    f"{team} r{release.revision} is current with the content of "
                    f"r{options['to_revision']}, signed with key {release.signing_key.key_id}"
                )
            elif options["action"] == "rollout":
                release = release_rollout_start(
                    organization=org, team_path=team, percent=options["percent"], actor=actor
                )
                assert release.previous is not None
                line = (
                    f"{team} r{release.revision} reaches {release.rollout_percent}% of devices; "
                    f"the others stay on r{release.previous.revision}"
                )
            elif options["action"] == "promote":
                release = release_rollout_promote(organization=org, team_path=team, actor=actor)
                line = f"{team} r{release.revision} reaches every device"
            else:
                restored = release_rollout_abort(organization=org, team_path=team, actor=actor)
                line = f"{team} rollout aborted; r{restored.revision} is current for every device"
        except ApplicationError as exc:
            raise refused(exc) from None
        self.stdout.write(line)

    def _list(self, org: Organization, team: str | None) -> None:
        releases = list(release_list(org, team_path=team))
        if not releases:
            self.stdout.write("No releases.")
        for release in releases:
            self.stdout.write(
                f"{release.team_path}  r{release.revision}  {self._state(release):<24} "
                f"{release.content_digest[:12]}  key {release.signing_key.key_id}  "
                f"{release.created_at:%Y-%m-%d %H:%M}"
            )

    @staticmethod
    def _state(release: Release) -> str:
        if release.aborted_at is not None:
            return "aborted"
        if not release.current:
            return "superseded"
        if release.rollout_percent < 100 and release.previous is not None:
            return f"current {release.rollout_percent}% (else r{release.previous.revision})"
        return "current"
