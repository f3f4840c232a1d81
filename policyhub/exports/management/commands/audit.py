"""`audit verify --org ORG`: walk the organisation's hash chain.
`audit export --org ORG --format csv [--since ...] [--until ...] [--actor ...] [--team ...]
[--object-type ...] [--output FILE] [--manifest FILE]`: the events and their signed manifest.
`audit export-receipts --org ORG --team PATH --revision N [--as-of TIME] --output FILE`: which
devices fetched and applied a release, with its signed manifest.
`audit verify-export FILE MANIFEST [--public-key KEY]`: check an export against its manifest.
"""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.accounts.models import Organization
from policyhub.audit.verification import audit_chain_verify
from policyhub.errors import ApplicationError
from policyhub.exports.formats import FORMATS
from policyhub.exports.manifest import export_verify, manifest_signed
from policyhub.exports.services import audit_export_start, receipts_export_start
from policyhub.releases.models import Release

# The filters' options -> the trail's filter names (`--as` already takes the `actor` dest).
FILTERS = {
    "since": "since",
    "until": "until",
    "by_actor": "actor",
    "team": "team",
    "object_type": "object_type",
}


class Command(BaseCommand):
    help = "Verify an organisation's audit chain, export its events, or check an export."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="walk the chain; report OK or the first break")
        verify.add_argument("--org", required=True)
        export = sub.add_parser("export", help="write the events and a signed manifest")
        export.add_argument("--org", required=True)
        export.add_argument("--format", choices=FORMATS, default="csv")
        export.add_argument("--since", help="a date (2026-01-31) or a UTC time (2026-01-31 14:00)")
        export.add_argument("--until", help="a date (to its end) or a UTC time")
        export.add_argument(
            "--actor", dest="by_actor", help="events whose actor's label begins with this"
        )
        export.add_argument("--team", help="events about this team path")
        export.add_argument("--object-type", dest="object_type", help="e.g. team, release")
        export.add_argument("--output", help="the file to write (default: standard output)")
        export.add_argument(
            "--manifest", help="where the manifest goes (default: OUTPUT.manifest.json)"
        )
        add_actor_argument(export)
        receipts = sub.add_parser("export-receipts", help="a release's receipts, signed")
        receipts.add_argument("--org", required=True)
        receipts.add_argument("--team", required=True)
        receipts.add_argument("--revision", type=int, required=True)
        receipts.add_argument("--format", choices=FORMATS, default="csv")
        receipts.add_argument(
            "--as-of", dest="as_of", help="ISO time with zone, a minute ago or earlier (default)"
        )
        receipts.add_argument("--output", help="the file to write (default: standard output)")
        receipts.add_argument("--manifest", help="default: OUTPUT.manifest.json")
        add_actor_argument(receipts)
        check = sub.add_parser("verify-export", help="check an export file against its manifest")
        check.add_argument("file")
        check.add_argument("manifest")
        check.add_argument(
            "--public-key",
            help="the signing key's public half (base64); default: the key the manifest names",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "verify":
            report = audit_chain_verify(organization_arg(options["org"]).pk)
            if not report.ok:
                raise CommandError(str(report))
            self.stdout.write(str(report))
        elif action in ("export", "export-receipts"):
            self._export(options)
        else:
            result = export_verify(
                Path(options["file"]), Path(options["manifest"]), options["public_key"]
            )
            if not result.ok:
                raise CommandError(str(result))
            self.stdout.write(str(result))

    def _export(self, options: dict[str, Any]) -> None:
        output, manifest_path = options["output"], options["manifest"]
        if not output and not manifest_path:
            raise CommandError("--manifest is required when the export goes to standard output")
        manifest_file = Path(manifest_path or f"{output}.manifest.json")
        actor = actor_arg(options["actor"])
        organization = organization_arg(options["org"])
        try:
            if options["action"] == "export":
                params = {n: options[o] for o, n in FILTERS.items() if options[o]}
                export = audit_export_start(
                    actor=actor,
                    organization=organization,
                    file_format=options["format"],
                    params=params,
                )
            else:
                export = receipts_export_start(
                    actor=actor,
                    organization=organization,
                    release=_release(organization, options["team"], options["revision"]),
                    file_format=options["format"],
                    as_of=_moment(options["as_of"]),
                )
        except ApplicationError as exc:
            raise refused(exc, "nothing was exported") from None
        if output:
            with Path(output).open("wb") as stream:
                for chunk in export.chunks():
                    stream.write(chunk)
        else:
            for chunk in export.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        manifest = manifest_signed(export, actor)
        manifest_file.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self.stderr.write(f"{manifest['rows']} rows, {export.pin}; manifest in {manifest_file}")


def _release(organization: Organization, team: str, revision: int) -> Release:
    release = Release.objects.filter(
        organization=organization, team_path=team.strip("/"), revision=revision
    ).first()
    if release is None:
        raise CommandError(f"no release {revision} of team {team!r}")
    return release


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = parse_datetime(value)
    if moment is None or moment.tzinfo is None:
        raise CommandError("--as-of: not a time with its zone (2026-03-01T12:00:00Z)")
    return moment
