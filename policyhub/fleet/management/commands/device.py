"""`device list|revoke|move`: the machines enrolled in an organisation."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.errors import ApplicationError
from policyhub.fleet.models import Device
from policyhub.fleet.selectors import device_get, device_statuses
from policyhub.fleet.services import device_move, device_revoke


class Command(BaseCommand):
    help = "List devices with their fleet status, revoke one, or move one to another team."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="every enrolled device and its state")
        listing.add_argument("--org", required=True)
        listing.add_argument("--team", help="only this team")
        where = listing.add_mutually_exclusive_group()
        where.add_argument(
            "--outside-window",
            action="store_true",
            help="only devices whose Codex is outside the organisation's support window",
        )
        where.add_argument(
            "--not-measured",
            action="store_true",
            help="only devices whose Codex is newer than the newest measured release",
        )
        for name, what in (("revoke", "both channels refuse it at once"), ("move", "")):
            action = sub.add_parser(name, help=what or "serve it another team's release")
            action.add_argument("id", help="device id")
            action.add_argument("--org", required=True)
            add_actor_argument(action)
            action.add_argument("--reason", default="")
            if name == "move":
                action.add_argument("--team", required=True, help="the new team's path")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if options["action"] == "list":
            where = "outside" if options["outside_window"] else None
            where = "unmeasured" if options["not_measured"] else where
            for status in device_statuses(org, team_path=options["team"], codex_window=where):
                listed = status.device
                flags = [f"{status.codex_window} window"] if status.outside_window else []
                flags += ["not measured"] if status.codex_unmeasured else []
                flag = f" ({', '.join(flags)})" if flags else ""
                self.stdout.write(
                    f"{listed.pk}\t{listed.team.path}\t{listed.hostname}\t{status.state}\t"
                    f"expected r{status.expected_revision or '-'}\t"
                    f"applied r{status.applied_revision or '-'}\t"
                    f"codex {listed.codex_version or '-'}{flag}\t"
                    f"seen {status.last_activity or 'never'}"
                )
            return
        found = device_get(org, options["id"])
        if found is None:
            raise CommandError(f"no device {options['id']} in {org.slug}")
        device: Device = found
        try:
            actor = actor_arg(options["actor"])
            if options["action"] == "revoke":
                device_revoke(device=device, actor=actor, reason=options["reason"])
                self.stdout.write(f"device {device.pk} revoked")
            else:
                device = device_move(
                    device=device, team_path=options["team"], actor=actor, reason=options["reason"]
                )
                self.stdout.write(f"device {device.pk} moved to {device.team.path}")
        except ApplicationError as error:
            raise refused(error) from None
