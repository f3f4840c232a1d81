"""The release probe: measure a new Codex release beside the one before it and say what to add.

    make codex-probe VERSION=0.172.0
    python manage.py codex probe 0.172.0 [--against 0.171.0] [--write-features]
    python -m tests.codex.probe 0.172.0

Installs both releases into `.codex-bin/` as `make codex` does (nothing is fetched for one that
is there), measures both on their real binaries, offline, with the suite's own measurements
(tests/codex/measure.py), and prints the capability-table entry to paste at the end of `CHANGES`,
the feature rows to add or end, the protocol-schema areas that appeared or vanished, and every
difference. It prints; it edits nothing but the features file, and that only when asked
(docs/adding-a-codex-release.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from policyhub.policies import schema
from providers.codex_versions import (
    FEATURES_FILE,
    NEWEST_MEASURED,
    OLDEST,
    Change,
    Version,
    capabilities,
    features_file,
    features_with_release,
    in_spans,
    parse_version,
    version_text,
)
from tests.codex.harness import CodexBinaryMissing, codex_binary, codex_install_dir, run_codex
from tests.codex.measure import (
    KeyOutcome,
    Measurement,
    measure,
    table_keys,
    toml_name,
)
from tests.codex.record_features import record

FLAGS = (
    "profile_files",
    "strict_config",
    "print_startup_config",
    "config_server",
    "mcp_identity_matchers",
)
# How a summary names a flag that flips on (off: "no longer ...").
FLAG_TEXT = {
    "profile_files": "profiles only as $CODEX_HOME/<name>.config.toml files",
    "strict_config": "--strict-config",
    "print_startup_config": "app-server --print-startup-config",
    "config_server": "config_server bundle fetched and applied (the native channel)",
    "mcp_identity_matchers": "requirements MCP identities as matcher tables",
}
# Values set in requirements.toml rather than config.toml: one a release stops accepting cannot be
# a `fatal_config_values` entry.
REQUIREMENT_VALUES = frozenset({"prefix_rule_decision"})
SCHEMA_NAME = "app-server generate-json-schema, ConfigRequirements"


class ProbeError(RuntimeError):
    """The probe cannot run: bad arguments, no npm, a release that does not install."""


# --- installing ----------------------------------------------------------------------------------


def _reports_version(version: str) -> bool:
    try:
        codex_binary(version)
    except CodexBinaryMissing:
        return False
    with tempfile.TemporaryDirectory() as folder:
        run = run_codex(Path(folder), ["--version"], version=version, timeout=30)
    return run.stdout.strip() == f"codex-cli {version}"


def install(version: str) -> bool:
    """Install `@openai/codex@version` into `.codex-bin/<version>` as `make codex` does; nothing
    happens (and nothing is fetched) when that release is there already. True when installed now."""
    if _reports_version(version):
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise ProbeError(
            f"Codex {version} is not in {codex_install_dir(version)} and npm is not installed to "
            "fetch it (make codex uses npm)"
        )
    folder = codex_install_dir(version)
    folder.mkdir(parents=True, exist_ok=True)
    npm_args = ["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"]
    run = subprocess.run(
        [npm, *npm_args, str(folder), f"@openai/codex@{version}"], capture_output=True, text=True
    )
    if run.returncode != 0 or not _reports_version(version):
        raise ProbeError(
            f"npm could not install @openai/codex@{version} into {folder} (no network, or no "
            f"such release): {run.stderr.strip()[-800:]}"
        )
    return True


# --- the table entry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """What changed from `before` to `after`, in the table's terms and beyond them."""

    before: Measurement
    after: Measurement
    entry: Change | None  # what to append to CHANGES (None: nothing the table records changed)
    # Changes the table cannot express, each a line of text (a key no longer known, ...).
    unexpressed: list[str] = field(default_factory=list)


def _flag(measurement: Measurement, name: str) -> bool:
    value = getattr(measurement, name)
    assert isinstance(value, bool)
    return value


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def compare(before: Measurement, after: Measurement) -> Difference:
    """The `Change` that turns `before` into `after`, holding only what differs."""
    known_before = before.known_keys
    keys = frozenset(after.known_keys - known_before)
    values: dict[str, set[str]] = {}
    fatal: dict[str, set[str]] = {}
    unexpressed = [
        f"requirement key {key}: {before.version} knows it, {after.version} "
        f"{after.requirement_keys.get(key, KeyOutcome.IGNORED).value} it"
        for key in sorted(known_before - after.known_keys)
    ]
    for case, starts in sorted(after.values.items()):
        was = before.values.get(case)
        key, value = case
        if was is False and starts:
            values.setdefault(key, set()).add(value)
        elif was and not starts:
            if key in REQUIREMENT_VALUES:
                unexpressed.append(f"{key} {value!r}: {after.version} no longer starts with it")
            else:
                fatal.setdefault(key, set()).add(value)
    providers = frozenset(
        p
        for p, known in after.builtin_providers.items()
        if known and not before.builtin_providers.get(p)
    )
    unexpressed += [
        f"built-in provider {p}: {after.version} no longer knows it"
        for p, known in sorted(before.builtin_providers.items())
        if known and not after.builtin_providers.get(p)
    ]
    unexpressed += [
        f"managed_config.toml {key} no longer beats the user's config on {after.version} "
        "([codex] managed_pins rely on it)"
        for key, wins in sorted(after.managed_pins.items())
        if before.managed_pins.get(key) and not wins
    ]
    flags = {
        name: _flag(after, name) for name in FLAGS if _flag(after, name) != _flag(before, name)
    }
    parts = []
    if keys:
        parts.append(f"requirements {_and(sorted(keys))}")
    parts += [f"{key} {v!r}" for key, found in sorted(values.items()) for v in sorted(found)]
    parts += [
        f"{key} {v!r} fatal in config"
        for key, found in sorted(fatal.items())
        for v in sorted(found)
    ]
    if providers:
        parts.append(
            f"built-in {_and(sorted(providers))} provider{'s' if len(providers) > 1 else ''}"
        )
    parts += [
        FLAG_TEXT[name] if on else f"no longer {FLAG_TEXT[name]}" for name, on in flags.items()
    ]
    entry = None
    if parts:
        entry = Change(
            after.version,
            "; ".join(parts),
            requirement_keys=keys,
            values={key: frozenset(found) for key, found in sorted(values.items())},
            fatal_config_values={key: frozenset(found) for key, found in sorted(fatal.items())},
            builtin_providers=providers,
            # Only the boolean flags of Change (FLAGS), by name.
            **cast("dict[str, Any]", flags),
        )
    return Difference(before, after, entry, unexpressed)


LINE = 100  # ruff's line length: a pasted entry needs no reformatting


def _inline_set(items: Iterable[str]) -> str:
    return f"frozenset({{{', '.join(json.dumps(item) for item in sorted(items))}}})"


def _set_literal(items: Iterable[str], indent: int, taken: int) -> str:
    """`frozenset({...})` as ruff writes it after `taken` characters of a line indented by
    `indent`: on that line when it fits, else one member a line."""
    inline = _inline_set(items)
    if taken + len(inline) + 1 <= LINE:
        return inline
    pad = " " * indent
    members = "".join(f"{pad}        {json.dumps(item)},\n" for item in sorted(items))
    return f"frozenset(\n{pad}    {{\n{members}{pad}    }}\n{pad})"


def _field_literal(name: str, value: object, indent: int) -> str:
    pad = " " * indent
    start = f"{pad}{name}="
    if isinstance(value, frozenset):
        return f"{start}{_set_literal(value, indent, len(start))},"
    if isinstance(value, Mapping):
        entries = [f"{json.dumps(key)}: {_inline_set(found)}" for key, found in value.items()]
        inline = f"{start}{{{', '.join(entries)}}},"
        if len(inline) <= LINE:
            return inline
        inner = " " * (indent + 4)
        lines = [
            f"{inner}{json.dumps(key)}: "
            + _set_literal(found, indent + 4, len(inner) + len(json.dumps(key)) + 2)
            + ","
            for key, found in value.items()
        ]
        return "\n".join([f"{start}{{", *lines, f"{pad}}},"])
    return f"{start}{value!r},"


def change_literal(change: Change, indent: int = 4) -> str:
    """The entry as CHANGES holds it (fields left at their defaults left out), with its comma."""
    pad, inner = " " * indent, " " * (indent + 4)
    lines = [f"{pad}Change(", f"{inner}{json.dumps(change.version)},"]
    lines.append(f"{inner}{json.dumps(change.summary)},")
    for item in fields(change)[2:]:
        value = getattr(change, item.name)
        if value is None or (not isinstance(value, bool) and not value):
            continue
        lines.append(_field_literal(item.name, value, indent + 4))
    lines.append(f"{pad}),")
    return "\n".join(lines)


# --- features ------------------------------------------------------------------------------------


def feature_changes(before: Measurement, after: Measurement) -> list[str]:
    """Names `after` lists that `before` did not, names it no longer lists, stages that moved."""
    new = sorted(set(after.features) - set(before.features))
    gone = sorted(set(before.features) - set(after.features))
    moved = [
        f"{name} {before.features[name]} -> {stage}"
        for name, stage in sorted(after.features.items())
        if name in before.features and before.features[name] != stage
    ]
    lines = []
    if new:
        lines.append(f"{len(new)} new feature name(s): {', '.join(new)}")
    if gone:
        lines.append(f"{len(gone)} feature name(s) no longer listed: {', '.join(gone)}")
    if moved:
        lines.append(f"{len(moved)} stage change(s): {', '.join(moved)}")
    return lines


def _row_text(name: str, start: Version, until: Version | None, stage: str) -> str:
    return "\t".join([name, version_text(start), version_text(until) if until else "", stage])


def unrecordable(version: str, text: str) -> str | None:
    """Why the features file `text` cannot take `version` as a new release (None: it can)."""
    _, releases, _ = features_file(text)
    if version in releases:
        return f"{FEATURES_FILE.name} already records {version}"
    newer = [r for r in releases if parse_version(r) > parse_version(version)]
    if newer:
        return (
            f"{FEATURES_FILE.name} records releases up to {max(newer, key=parse_version)}: rows "
            "are only added for a release newer than every recorded one"
        )
    return None


def feature_rows(version: str, listed: Mapping[str, str], text: str) -> list[str]:
    """What the features file `text` needs for `version` measured printing `listed`: its rows to
    add (`+`) or change (`~`), or, for a release it cannot take, how the file compares."""
    _, _, rows = features_file(text)
    parsed = parse_version(version)
    reason = unrecordable(version, text)
    if reason is not None:
        named = {row.name for row in rows if in_spans(parsed, [(row.start, row.until)])}
        only_binary = ", ".join(sorted(set(listed) - named)) or "-"
        only_file = ", ".join(sorted(named - set(listed))) or "-"
        agree = (
            f"its names for {version} agree with the binary ({len(named)})"
            if named == set(listed)
            else f"its names for {version} differ: only the binary lists {only_binary}; "
            f"only the file has {only_file}"
        )
        return [f"{reason}; {agree}"]
    old = {(row.name, row.start): row for row in rows}
    lines = []
    for row in features_with_release(rows, parsed, listed):
        was = old.get((row.name, row.start))
        text = _row_text(row.name, row.start, row.until, row.stage)
        if was is None:
            lines.append(f"+ {text}")
        elif was.until != row.until:
            lines.append(f"~ {text}\t(ends: no longer listed)")
        elif was.stage != row.stage:
            lines.append(f"~ {text}\t(stage was {was.stage})")
    return lines or [f"no row changes; {version} only joins the `# releases:` line"]


# --- protocol schema -----------------------------------------------------------------------------


def _parent(path: str) -> str:
    if " = " in path:
        return path.split(" = ", 1)[0]
    if path.endswith("[]"):
        return path[:-2]
    return path.rsplit(".", 1)[0]


def topmost(paths: Iterable[str]) -> list[str]:
    """The paths whose parent is not among them: a new table shows once, not with each field."""
    found = set(paths)
    return sorted(path for path in found if _parent(path) not in found)


def rendered(area: str) -> bool:
    """Whether PolicyHub renders the requirement area (or the table it lies in)."""
    return toml_name(area).split(".")[0] in schema.REQUIREMENT_KEYS


def schema_changes(before: Measurement, after: Measurement) -> list[str]:
    """Requirement areas of the protocol schema that appeared or vanished, whole or in part."""
    if before.schema is None or after.schema is None:
        return [f"not compared: {before.schema_error or after.schema_error}"]
    lines = []
    for area in sorted(set(after.schema) - set(before.schema)):
        name = toml_name(area)
        note = "" if rendered(area) else ", not rendered by PolicyHub"
        sub_fields = ", ".join(topmost(after.schema[area])) or "no sub-fields"
        lines.append(f"+ area {area} (requirements.toml {name}{note}): {sub_fields}")
    for area in sorted(set(before.schema) - set(after.schema)):
        lines.append(f"- area {area} (requirements.toml {toml_name(area)})")
    for area in sorted(set(before.schema) & set(after.schema)):
        added = topmost(after.schema[area] - before.schema[area])
        removed = topmost(before.schema[area] - after.schema[area])
        if added:
            lines.append(f"+ in {area}: {', '.join(added)}")
        if removed:
            lines.append(f"- in {area}: {', '.join(removed)}")
    return lines


# --- the table as it stands ----------------------------------------------------------------------


def table_disagreements(measured: Measurement) -> list[str]:
    """Where the capability table says otherwise than the binary of a release it covers."""
    caps = capabilities(measured.version)
    out = []
    for key in table_keys():
        outcome = measured.requirement_keys.get(key)
        if outcome is not None and (outcome is KeyOutcome.KNOWN) != (key in caps.requirement_keys):
            says = "known" if key in caps.requirement_keys else "not known"
            out.append(
                f"requirement key {key}: the binary {outcome.value} it, the table says {says}"
            )
    for (key, value), starts in sorted(measured.values.items()):
        if starts == caps.config_value_fatal(key, value):
            does = "starts" if starts else "stops"
            out.append(f"{key} {value!r}: the binary {does} with it, the table says otherwise")
    for provider, known in sorted(measured.builtin_providers.items()):
        if known != caps.knows_provider(provider):
            does = "knows" if known else "does not know"
            out.append(f"built-in provider {provider}: the binary {does} it, the table disagrees")
    for name in FLAGS:
        if _flag(measured, name) != getattr(caps, name):
            out.append(
                f"{name}: the binary {_flag(measured, name)}, the table {getattr(caps, name)}"
            )
    listed = set(measured.features)
    if listed != caps.features:
        only_binary = ", ".join(sorted(listed - caps.features)) or "-"
        only_table = ", ".join(sorted(caps.features - listed)) or "-"
        out.append(
            f"feature names: only the binary lists {only_binary}; only the table has {only_table}"
        )
    return out


# --- the report ----------------------------------------------------------------------------------


def differences(difference: Difference) -> list[str]:
    """Every difference between the two releases, one line each (empty: none at all)."""
    before, after = difference.before, difference.after
    lines = []
    refused = sorted(
        key
        for key in after.known_keys - before.known_keys
        if before.requirement_keys.get(key) is KeyOutcome.REFUSED
    )
    if difference.entry is not None:
        lines.append(f"table: {difference.entry.summary}")
    if refused:
        lines.append(
            f"{before.version} refuses the whole requirements file for {_and(refused)} "
            '("unknown field"), it does not ignore them: never render them for it'
        )
    lines += difference.unexpressed
    if before.profile_tables != after.profile_tables:
        tables = f"{before.profile_tables} -> {after.profile_tables}"
        lines.append(f"profiles as [profiles.<name>] tables of config.toml: {tables}")
    lines += feature_changes(before, after)
    if before.schema is not None and after.schema is not None:
        appeared = sorted(set(after.schema) - set(before.schema))
        vanished = sorted(set(before.schema) - set(after.schema))
        both = set(before.schema) & set(after.schema)
        added = sum(len(topmost(after.schema[a] - before.schema[a])) for a in both)
        removed = sum(len(topmost(before.schema[a] - after.schema[a])) for a in both)
        if appeared or vanished or added or removed:
            lines.append(
                f"protocol schema: {len(appeared)} area(s) appeared, {len(vanished)} vanished; "
                f"{added} sub-field(s) appeared, {removed} vanished in the others"
            )
    return lines


@dataclass(frozen=True)
class Timings:
    install: float
    measure: float


def report(difference: Difference, timings: Timings | None = None) -> str:
    before, after = difference.before, difference.after
    out = [f"Codex {after.version} against {before.version}", ""]
    out.append("== Capability table: append to CHANGES in providers/codex_versions.py")
    if difference.entry is None:
        out.append(f"(no entry: {after.version} changes nothing the table records)")
    else:
        out.append(change_literal(difference.entry))
    out += ["", "== Feature rows (providers/data/codex-features.tsv; --write-features writes them)"]
    out += feature_rows(after.version, after.features, FEATURES_FILE.read_text())
    out += ["", f"== Protocol schema: {SCHEMA_NAME}"]
    if after.schema is not None:
        unrendered = sorted(area for area in after.schema if not rendered(area))
        names = ", ".join(map(toml_name, unrendered)) or "-"
        out.append(
            f"{after.version}: {len(after.schema)} areas; "
            f"not rendered by PolicyHub: {len(unrendered)} ({names})"
        )
    out += schema_changes(before, after) or ["no area or sub-field appeared or vanished"]
    out += ["", f"== Differences from {before.version}"]
    found = differences(difference)
    out += [f"- {line}" for line in found] or [
        f"none: {after.version} does all that was measured as {before.version} does"
    ]
    out += ["", "== Checks"]
    for m in {before.version: before, after.version: after}.values():
        if parse_version(m.version) <= NEWEST_MEASURED:
            wrong = table_disagreements(m)
            out.append(
                f"the table agrees with the {m.version} binary: " + ("yes" if not wrong else "NO")
            )
            out += [f"  - {line}" for line in wrong]
    pins = "yes" if all(after.managed_pins.values()) else "NO"
    out.append(f"managed_config.toml pins beat the user's config on {after.version}: {pins}")
    if timings is not None:
        out += ["", f"(install {timings.install:.1f} s, measuring {timings.measure:.1f} s)"]
    return "\n".join(out)


# --- running it ----------------------------------------------------------------------------------


def _version(text: str, what: str) -> str:
    try:
        parsed = parse_version(text)
    except ValueError as exc:
        raise ProbeError(f"{what}: {exc}") from None
    if parsed < OLDEST:
        raise ProbeError(
            f"{what}: {text} is older than the table's oldest release {version_text(OLDEST)}"
        )
    return text


def probe(
    version: str,
    against: str | None = None,
    *,
    write_features: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> str:
    """Install, measure and compare `version` with `against` (default: the newest measured
    release); the report. ProbeError for bad input or a release that cannot be installed."""
    version = _version(version, "VERSION")
    previous = _version(against or version_text(NEWEST_MEASURED), "--against")
    if parse_version(version) < parse_version(previous):
        raise ProbeError(f"VERSION {version} is older than --against {previous}")
    reason = unrecordable(version, FEATURES_FILE.read_text()) if write_features else None
    if reason is not None:
        raise ProbeError(f"--write-features: {reason}")
    started = time.monotonic()
    for release in dict.fromkeys((previous, version)):
        progress(f"Codex {release}: {'installed now' if install(release) else 'already installed'}")
    installed = time.monotonic()
    both = f"{previous} and {version} on their binaries" if previous != version else version
    progress(f"measuring {both} (offline)")
    with tempfile.TemporaryDirectory(prefix="policyhub-probe-") as work:
        found = measure([previous, version], Path(work))
    # Against itself, the one measurement is compared with itself.
    difference = compare(found[previous], found[version])
    text = report(difference, Timings(installed - started, time.monotonic() - installed))
    if write_features:
        text += "\n" + record(version, found[version].features)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.codex.probe", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    options = parser.parse_args(argv)
    try:
        print(
            probe(
                options.version,
                options.against,
                write_features=options.write_features,
                progress=lambda line: print(line, file=sys.stderr),
            )
        )
    except ProbeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The probe's arguments, shared with `manage.py codex probe`."""
    parser.add_argument("version", metavar="VERSION", help="the new Codex release, e.g. 0.172.0")
    parser.add_argument(
        "--against",
        metavar="PREVIOUS",
        help="the release to compare with (default: the newest measured, "
        f"{version_text(NEWEST_MEASURED)})",
    )
    parser.add_argument(
        "--write-features",
        action="store_true",
        help="record VERSION's feature names in providers/data/codex-features.tsv",
    )


if __name__ == "__main__":
    raise SystemExit(main())
