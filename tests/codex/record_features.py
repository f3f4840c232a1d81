"""Record a newly measured Codex release in providers/data/codex-features.tsv.

    make codex CODEX_VERSIONS=0.170.0
    python -m tests.codex.record_features 0.170.0

Runs that release's `codex features list` offline, as the suite runs Codex, and records which
feature names it prints and at which stage: names it no longer prints end at it, new ones start
at it (docs/adding-a-codex-release.md).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping
from pathlib import Path

from providers.codex_versions import (
    FEATURES_FILE,
    features_file,
    features_text,
    features_with_release,
    parse_version,
)
from tests.codex.harness import run_codex


def parse_features_list(stdout: str) -> dict[str, str]:
    """`codex features list` as {name: stage}: each line is the name, the stage (which may be two
    words: "under development") and the default."""
    listed = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 3:
            listed[words[0]] = "-".join(words[1:-1])
    return listed


def features_list(version: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        run = run_codex(Path(folder), ["features", "list"], version=version, timeout=60)
    if run.rc != 0:
        raise SystemExit(f"codex {version} features list failed: {run.stderr}")
    return parse_features_list(run.stdout)


def record(version: str, listed: Mapping[str, str]) -> str:
    """Write `version`, measured printing `listed`, into the features file; says what changed.
    ValueError when the file already holds `version` or a newer release."""
    header, releases, rows = features_file(FEATURES_FILE.read_text())
    updated = features_with_release(rows, parse_version(version), listed)
    FEATURES_FILE.write_text(features_text(updated, [*releases, version], header))
    before = {row.name for row in rows if row.until is None}
    return (
        f"Codex {version}: {len(listed)} features, {len(set(listed) - before)} new, "
        f"{len(before - set(listed))} no longer listed; {FEATURES_FILE.name} updated"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.codex.record_features")
    parser.add_argument("version", help="the newly measured release, installed by make codex")
    version = parser.parse_args(argv).version
    print(record(version, features_list(version)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
