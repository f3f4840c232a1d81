"""Codex's requirement areas: every one the newest suite release lists is supported or refused
with a reason, and every field PolicyHub renders is one Codex reads (none silently ignored).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from policyhub.policies import areas, document, schema
from policyhub.policies.narrowing import NARROWING
from policyhub.policies.tomlio import toml_text
from policyhub.policies.validation import validate_team
from policyhub.rendering.render import render_team
from providers.codex_files import CONFIG, REQUIREMENTS
from providers.codex_versions import SUITE_VERSIONS, capabilities
from tests.codex import measure

NEWEST = SUITE_VERSIONS[-1]
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "valid"
# Areas resolution folds itself (per-name provenance), not through a narrowing rule.
OWN_FOLDING = {"features", "mcp_servers"}
PERMISSION_KEYS = ("allowed_permission_profiles", "default_permissions")


def test_every_requirement_key_has_a_narrowing_rule() -> None:
    assert set(schema.REQUIREMENT_KEYS) - OWN_FOLDING == set(NARROWING)
    assert not set(schema.REQUIREMENT_KEYS) & set(schema.UNSUPPORTED_REQUIREMENTS)


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_every_area_of_the_newest_release_is_supported_or_refused_with_a_reason(
    tmp_path: Path,
) -> None:
    listed = measure.protocol_schema(NEWEST, tmp_path / "schema")
    keys = {measure.toml_name(area).split(".")[0] for area in listed}
    assert len(keys) >= 30, sorted(keys)  # the schema's areas were read, not an empty list
    unaccounted = keys - set(schema.REQUIREMENT_KEYS) - set(schema.UNSUPPORTED_REQUIREMENTS)
    assert not unaccounted, f"areas neither supported nor listed as unsupported: {unaccounted}"
    for key, reason in schema.UNSUPPORTED_REQUIREMENTS.items():
        assert len(reason) > 40, key


def _leaves(
    doc: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _leaves(value, (*path, index))
    else:
        yield path, doc


def _with(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    here: Any = changed
    for step in path[:-1]:
        here = here[step]
    here[path[-1]] = value
    return changed


def _rendered(file: str) -> Iterator[dict[str, Any]]:
    """`file` of every valid team of the valid corpus, rendered for the newest release."""
    target = capabilities(NEWEST)
    for path in sorted(CORPUS.glob("*.toml")):
        policy = document.parse(path.read_text(encoding="utf-8"))
        for team in sorted(policy.teams):
            if not validate_team(policy, team).errors:
                yield tomllib.loads(render_team(policy, team, target=target).files[file].decode())


def _area_requirements() -> dict[str, dict[str, Any]]:
    """Each newer area as the valid corpus renders it for the newest release, one team each."""
    found: dict[str, dict[str, Any]] = {}
    for rendered in _rendered(REQUIREMENTS):
        for key, value in rendered.items():
            if key == "default_permissions":
                continue  # checked with the allowed profiles it must name (Codex's rule)
            if key == "allowed_permission_profiles":
                value = {k: rendered[k] for k in PERMISSION_KEYS if k in rendered}
                found.setdefault(key, value)
            elif key in areas.AREA_KEYS or key == "models":
                found.setdefault(key, {key: value})
    return found


def _cases(tables: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, str]:
    """Each table as rendered, and with each of its leaves in turn set to the wrong type, in a
    file that also holds `base` (written as PolicyHub writes files: top-level values first)."""
    cases: dict[str, str] = {}
    for key, table in tables.items():
        cases[f"{key} as rendered"] = toml_text({**base, **table})
        for path, value in _leaves(table):
            wrong = "not-a-number" if isinstance(value, int) and not isinstance(value, bool) else -7
            cases[".".join(map(str, path))] = toml_text({**base, **_with(table, path, wrong)})
    return cases


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_every_rendered_field_of_the_newer_areas_is_read_by_codex(tmp_path: Path) -> None:
    """Each area starts Codex as rendered; each of its fields set to a value of the wrong type
    stops it. A field Codex did not know would be ignored instead: a requirement failing open."""
    cases = _cases(_area_requirements(), {})
    assert len(cases) > 60, sorted(cases)  # the corpus covers the areas, field by field
    started = measure.run_all(
        {
            label: partial(measure.starts, NEWEST, tmp_path / f"case{n}", text)
            for n, (label, text) in enumerate(cases.items())
        }
    )
    wrong_start = {label for label, ok in started.items() if not ok and label.endswith("rendered")}
    ignored = {label for label, ok in started.items() if ok and not label.endswith("rendered")}
    assert not wrong_start, f"Codex {NEWEST} refuses the areas as rendered: {wrong_start}"
    assert not ignored, f"Codex {NEWEST} ignores these fields (they would fail open): {ignored}"
    assert set(areas.AREA_KEYS) - {"default_permissions"} <= {p.split(".")[0] for p in started}


# Config defaults added with the requirement areas (the older ones are checked by the corpus).
NEWER_CONFIG_KEYS = {*areas.CONFIG_AREA_KEYS, "otel", "plan_mode_reasoning_effort", "windows"}


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_every_rendered_config_default_of_the_newer_keys_is_read_by_codex(tmp_path: Path) -> None:
    """The same for config.toml, where `--strict-config` refuses a field Codex does not know."""
    tables: dict[str, dict[str, Any]] = {}
    for rendered in _rendered(CONFIG):
        for key in NEWER_CONFIG_KEYS & set(rendered):
            tables.setdefault(key, {key: rendered[key]})
    cases = _cases(tables, tomllib.loads(measure.LOOPBACK))
    assert len(cases) > 25, sorted(cases)
    started = measure.run_all(
        {
            label: partial(measure.starts, NEWEST, tmp_path / f"case{n}", "", text)
            for n, (label, text) in enumerate(cases.items())
        }
    )
    wrong_start = {label for label, ok in started.items() if not ok and label.endswith("rendered")}
    ignored = {label for label, ok in started.items() if ok and not label.endswith("rendered")}
    assert not wrong_start, f"Codex {NEWEST} refuses the defaults as rendered: {wrong_start}"
    assert not ignored, f"Codex {NEWEST} ignores these fields: {ignored}"
