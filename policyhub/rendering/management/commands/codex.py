"""`codex probe VERSION [--against PREVIOUS] [--write-features]`: measure a new Codex release on
its real binary beside the one before it and print the capability-table entry, the feature rows
and the protocol-schema areas to add for it (docs/adding-a-codex-release.md).

The probe is part of the test suite (tests/codex/probe.py): it runs Codex with the suite's
sandboxed harness and its measurements, so it exists where the tests do, in a source checkout with
the development tools; an installation without them gets a clear error instead.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

PROBE_MODULES = ("tests", "tests.codex", "tests.codex.probe")


class Command(BaseCommand):
    help = "Measure a new Codex release and print what to add for it (codex probe VERSION)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        probe = sub.add_parser(
            "probe", help="measure a Codex release against the one before it, offline"
        )
        probe.add_argument("version", metavar="VERSION", help="the new release, e.g. 0.172.0")
        probe.add_argument(
            "--against",
            metavar="PREVIOUS",
            help="the release to compare with (default: the newest measured one)",
        )
        probe.add_argument(
            "--write-features",
            action="store_true",
            help="record VERSION's feature names in providers/data/codex-features.tsv",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from tests.codex import probe
        except ModuleNotFoundError as exc:
            if exc.name not in PROBE_MODULES:
                raise
            raise CommandError(
                "codex probe needs the test suite (tests/codex/probe.py), which this "
                "installation lacks: run it from a source checkout with `make venv-dev`"
            ) from None
        try:
            text = probe.probe(
                options["version"],
                options["against"],
                write_features=options["write_features"],
                progress=lambda line: self.stderr.write(line),
            )
        except probe.ProbeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(text)
