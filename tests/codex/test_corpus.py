"""The policy corpus: documents real admins write, refused by validation or rendered into files
the real Codex 0.169.0 binary accepts and enforces exactly as we resolved them.

Every corpus file states what it tests in its first line and its expectations in comments:

    # expect-error: <where> <field path>      invalid/: `where` is `-` (organisation-wide), a team
                                             path, or `parse` (the document itself is refused)
    # expect-warning: <where> <field path>    valid/: a warning that must be reported
    # expect-value: <team> <file> <dotted key> <JSON value>
                                             valid/: the rendered file holds exactly this value
    # expect-keys: <team> <file> <JSON list>  valid/: the rendered file's top-level keys, no more

No database: documents go through `document.parse` -> `validate_policy` / `render_team`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.document import DocumentInvalid
from policyhub.policies.domain import Json, Node, OrgPolicy
from policyhub.policies.resolution import Resolved
from policyhub.policies.validation import validate_policy, validate_team
from policyhub.policies.window import managed_pins
from policyhub.rendering.render import PolicyInvalid, render_release, render_team
from providers import KINDS
from providers.base import Issue
from providers.codex_files import CONFIG, MANAGED_CONFIG, REQUIREMENTS
from providers.codex_versions import (
    SUITE_VERSIONS,
    CodexCapabilities,
    capabilities,
    version_segment,
)
from tests.codex.harness import REPO_ROOT, FileSetResult, check_file_set

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.toml"))
INVALID = sorted((CORPUS / "invalid").glob("*.toml"))
DEMO = ACME

ORG_WIDE = "-"
PARSE = "parse"
PROFILE_FILE = "profiles/{}.config.toml"
# Teams of one document checked by the binary at once; sessions mostly wait for a header.
CODEX_WORKERS = 3

# What `--print-startup-config` reports, as observed with 0.169.0: "on-failure" is read as
# "on-request", "disabled" web search is always allowed (appended unless listed), and login
# methods default to both, narrowed to the method config.toml forces and reported sorted.
CODEX_APPROVAL_ALIASES = {"on-failure": "on-request"}
CODEX_DEFAULT_LOGIN_METHODS = ["api", "chatgpt"]

# Known bugs, each reported with a reproduction; strict, so a fix turns it into a failure to remove.
# Keyed by (test, file); the test "valid" covers every test of valid documents.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


# --- expectations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedValue:
    team: str
    file: str
    key: str
    value: Any


@dataclass
class Expectations:
    """What a corpus file promises about itself, read from its comment lines."""

    summary: str
    errors: set[tuple[str, str]] = field(default_factory=set)
    warnings: set[tuple[str, str]] = field(default_factory=set)
    values: list[ExpectedValue] = field(default_factory=list)
    keys: list[tuple[str, str, set[str]]] = field(default_factory=list)


def read_expectations(text: str) -> Expectations:
    first, *lines = text.splitlines()
    assert first.startswith("# ") and len(first) > 12, "the first line must say what is tested"
    found = Expectations(summary=first[2:])
    for line in lines:
        tag, sep, rest = line.partition(":")
        if not sep or not tag.startswith("# expect-"):
            continue
        rest = rest.strip()
        kind = tag.removeprefix("# expect-")
        if kind in ("error", "warning"):
            where, _, path = rest.partition(" ")
            target = found.errors if kind == "error" else found.warnings
            target.add(("" if where == ORG_WIDE else where, path.strip()))
        elif kind == "value":
            team, file, key, raw = rest.split(" ", 3)
            found.values.append(ExpectedValue(team, file, key, json.loads(raw)))
        elif kind == "keys":
            team, file, raw = rest.split(" ", 2)
            found.keys.append((team, file, set(json.loads(raw))))
        else:
            raise AssertionError(f"unknown annotation {line!r}")
    return found


def corpus_params(files: list[Path], *tests: str) -> list[Any]:
    """One parameter per file, id = file name, strict xfail where KNOWN_BUGS lists it."""
    params = []
    for path in files:
        reason = next(filter(None, (KNOWN_BUGS.get((test, path.name)) for test in tests)), None)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(path, id=path.name, marks=marks))
    return params


VALID_AND_DEMO = [*VALID, DEMO]


def load(path: Path) -> tuple[OrgPolicy, Expectations]:
    text = path.read_text(encoding="utf-8")
    return document.parse(text), read_expectations(text)


def error_set(findings: Mapping[str, list[Issue]], severity: str) -> set[tuple[str, str]]:
    return {
        (where, i.path)
        for where, issues in findings.items()
        for i in issues
        if i.severity == severity
    }


# --- invalid documents ---------------------------------------------------------------------------


def test_corpus_is_large_enough() -> None:
    assert len(VALID) >= 16 and len(INVALID) >= 16
    assert len(VALID) + len(INVALID) >= 32


@pytest.mark.parametrize("path", corpus_params(INVALID, "invalid"))
def test_invalid_document_is_refused(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    expected = read_expectations(text)
    assert expected.errors, f"{path.name} states no `# expect-error:`"
    assert not (expected.warnings or expected.values or expected.keys)
    parse_expected = {(w, p) for w, p in expected.errors if w == PARSE}

    try:
        policy = document.parse(text)
    except DocumentInvalid as exc:
        found = {(PARSE, i.path) for i in exc.issues if i.severity == "error"}
        assert expected.errors <= found, _missing(expected.errors, found, exc.issues)
        return
    assert not parse_expected, f"{path.name} parsed, but a parse error was expected"

    findings = validate_policy(policy)
    found = error_set(findings, "error")
    all_issues = [i for issues in findings.values() for i in issues]
    assert expected.errors <= found, _missing(expected.errors, found, all_issues)

    affected = _affected_teams(policy, expected.errors)
    assert affected, f"{path.name}: no team is affected; add a team that uses the broken piece"
    for team in sorted(affected):
        with pytest.raises(PolicyInvalid) as refused:
            render_team(policy, team)
        paths = {i.path for i in refused.value.issues}
        for where, field_path in expected.errors:
            if where == team or (where == "" and not field_path.startswith("providers.")):
                assert field_path in paths, f"{team}: {field_path} not in {sorted(paths)}"


def _missing(
    expected: set[tuple[str, str]], found: set[tuple[str, str]], issues: list[Issue]
) -> str:
    listing = "\n".join(f"    {i}" for i in issues) or "    (none)"
    return f"missing {sorted(expected - found)}; validation found:\n{listing}"


def _affected_teams(policy: OrgPolicy, errors: set[tuple[str, str]]) -> set[str]:
    """Teams that must not render: those named, every team for a broken root node, and the
    teams that use a broken endpoint."""
    affected = {where for where, _ in errors if where and where in policy.teams}
    org_wide = [p for where, p in errors if where == ""]
    if any(not p.startswith("providers.") for p in org_wide):
        return set(policy.teams)
    broken = {p.split(".")[1] for p in org_wide}
    for team in policy.teams:
        if _endpoints_used(validate_team(policy, team).resolved) & broken:
            affected.add(team)
    return affected


def _endpoints_used(resolved: Resolved) -> set[str]:
    names = [
        resolved.config.get("model_provider"),
        resolved.requirements.get("model_provider"),
        *(p.get("model_provider") for p in resolved.profiles.values()),
    ]
    return {n for n in names if isinstance(n, str)}


# --- valid documents: validation and the rendered TOML -------------------------------------------


@pytest.mark.parametrize("path", corpus_params(VALID_AND_DEMO, "valid", "renders"))
def test_valid_document_renders_exactly_the_policy(path: Path) -> None:
    policy, expected = load(path)
    assert not expected.errors

    findings = validate_policy(policy)
    assert not error_set(findings, "error"), "\n".join(
        str(i) for issues in findings.values() for i in issues
    )
    warnings = error_set(findings, "warning")
    assert expected.warnings <= warnings, f"missing warnings {expected.warnings - warnings}"

    rendered = {team: _parsed_files(policy, team) for team in policy.teams}
    for team, files in rendered.items():
        _assert_files_match_resolution(policy, team, files)
    for want in expected.values:
        assert want.team in rendered and want.file in rendered[want.team]
        got = _dig(rendered[want.team][want.file], want.key)
        assert got == want.value, f"{want.team} {want.file} {want.key}: {got!r} != {want.value!r}"
    for team, file, keys in expected.keys:
        assert set(rendered[team][file]) == keys


def render_digests(text: str) -> dict[str, Any]:
    """Every file of every set of every team of a document, as sha256, as JSON would carry it."""
    policy = document.parse(text)
    digests = {
        team: [
            [
                variant.codex,
                {n: hashlib.sha256(b).hexdigest() for n, b in variant.team.files.items()},
            ]
            for variant in render_release(policy, team, revision="1").variants
        ]
        for team in sorted(policy.teams)
    }
    return dict(json.loads(json.dumps(digests)))


RENDER_ELSEWHERE = (
    "import json, sys; from pathlib import Path; from tests.codex.test_corpus import render_digests; "
    "print(json.dumps({name: render_digests(Path(name).read_text()) for name in sys.argv[1:]}))"
)


@pytest.fixture(scope="module")
def rendered_elsewhere() -> list[dict[str, Any]]:
    """The digests from two fresh interpreters with different hash seeds: set and dict orders
    that depend on the seed (as this process's own, random one) would show as other bytes."""
    runs = []
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", RENDER_ELSEWHERE, *map(str, VALID_AND_DEMO)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    return runs


@pytest.mark.parametrize("path", corpus_params(VALID_AND_DEMO, "valid", "twice"))
def test_rendering_in_other_processes_gives_the_same_bytes(
    path: Path, rendered_elsewhere: list[dict[str, Any]]
) -> None:
    """Same policy, same bytes: here and in two interpreters with other hash seeds."""
    here = render_digests(path.read_text(encoding="utf-8"))
    first, second = (run[str(path)] for run in rendered_elsewhere)
    assert first == second == here
    assert here and all(variants for variants in here.values())


@pytest.mark.parametrize("path", corpus_params(VALID_AND_DEMO, "valid", "storage-order"))
def test_rendering_ignores_storage_order(path: Path) -> None:
    """PostgreSQL jsonb hands back keys in its own order, and rows in any order."""
    policy, _ = load(path)
    stored = _jsonb_round_trip(policy)
    for team in policy.teams:
        before, after = render_team(policy, team).files, render_team(stored, team).files
        assert before.keys() == after.keys()
        for name in before:
            assert before[name] == after[name], (
                f"{team} {name} changed:\n{_diff(before[name], after[name])}"
            )


def _jsonb(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _jsonb_node(node: Node) -> Node:
    return Node(
        requirements=_jsonb(node.requirements),
        config=_jsonb(node.config),
        profiles=_jsonb(dict(node.profiles)),
        mcp_servers=_jsonb(dict(node.mcp_servers)),
    )


def _jsonb_round_trip(policy: OrgPolicy) -> OrgPolicy:
    endpoints = {
        name: replace(ep, settings=_jsonb(ep.settings), capabilities=_jsonb(dict(ep.capabilities)))
        for name, ep in reversed(list(policy.endpoints.items()))
    }
    teams = {
        path: replace(team, node=_jsonb_node(team.node))
        for path, team in reversed(list(policy.teams.items()))
    }
    return replace(policy, endpoints=endpoints, root=_jsonb_node(policy.root), teams=teams)


def _diff(before: bytes, after: bytes) -> str:
    return "\n".join(
        difflib.unified_diff(
            before.decode().splitlines(), after.decode().splitlines(), lineterm="", n=1
        )
    )


def _parsed_files(policy: OrgPolicy, team: str) -> dict[str, Json]:
    files = render_team(policy, team).files
    return {name: tomllib.loads(body.decode("utf-8")) for name, body in files.items()}


def _dig(doc: Mapping[str, Any], dotted: str) -> Any:
    value: Any = doc
    for key in dotted.split("."):
        assert isinstance(value, Mapping) and key in value, f"{dotted}: no {key!r}"
        value = value[key]
    return value


def _assert_files_match_resolution(policy: OrgPolicy, team: str, files: dict[str, Json]) -> None:
    """Each rendered file parses back to exactly the resolved policy: no value lost, changed or
    added, whatever text it carried."""
    resolved = validate_team(policy, team).resolved

    def provider_id(settings: Json) -> Json:
        out = dict(settings)
        if "model_provider" in out:
            out["model_provider"] = policy.endpoints[out["model_provider"]].provider_id
        return out

    def table_of(endpoint_name: str) -> dict[str, Any]:
        endpoint = policy.endpoints[endpoint_name]
        table = KINDS[endpoint.kind].provider_table(endpoint.settings, endpoint.provider_id)
        return {endpoint.provider_id: table} if table is not None else {}

    pins, _ = managed_pins(policy.codex, resolved.requirements)
    assert set(files) == {
        REQUIREMENTS,
        CONFIG,
        *(PROFILE_FILE.format(name) for name in resolved.profiles),
        *([MANAGED_CONFIG] if pins else []),
    }
    if pins:
        managed = dict(files[MANAGED_CONFIG])
        provider_pin = managed.pop("model_provider", None)
        if provider_pin is not None:
            assert managed.pop("model_providers", {}) == table_of(
                resolved.requirements["model_provider"]
            )
        wanted = {pin.key: pin.value for pin in pins if pin.key != "model_provider"}
        assert managed == wanted, f"{team} {MANAGED_CONFIG}"

    requirements = dict(files[REQUIREMENTS])
    wanted_requirements = provider_id(resolved.requirements)
    pinned = resolved.requirements.get("model_provider")
    required: dict[str, Any] = {}
    for name in [*([pinned] if pinned else []), *wanted_requirements.pop("model_providers", [])]:
        required.update(table_of(name))
    assert requirements.pop("model_providers", {}) == required
    assert requirements == wanted_requirements, f"{team} {REQUIREMENTS}"

    config = dict(files[CONFIG])
    used = [
        resolved.config.get("model_provider"),
        *(p.get("model_provider") for p in resolved.profiles.values()),
    ]
    tables: dict[str, Any] = {}
    for name in {n for n in used if n}:
        tables.update(table_of(name))
    assert config.pop("model_providers", {}) == tables, f"{team} {CONFIG} model_providers"
    assert config.pop("mcp_servers", {}) == resolved.mcp_servers, f"{team} {CONFIG} mcp_servers"
    default = policy.endpoints.get(resolved.config.get("model_provider", ""))
    top_level = KINDS[default.kind].top_level_config(default.settings) if default else {}
    assert config == {**top_level, **provider_id(resolved.config)}, f"{team} {CONFIG}"

    for name, profile in resolved.profiles.items():
        assert files[PROFILE_FILE.format(name)] == provider_id(profile), f"{team} profile {name}"


# --- valid documents: the real Codex binary ------------------------------------------------------


@dataclass(frozen=True)
class TeamRun:
    team: str
    files: dict[str, bytes]
    result: FileSetResult
    seconds: float


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
@pytest.mark.parametrize("path", corpus_params(VALID_AND_DEMO, "valid", "codex"))
def test_valid_document_passes_the_codex_binary(
    path: Path, version: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Each team rendered for `version` passes that version's own check, and each profile,
    selected the way that version selects profiles, runs with its model. A team whose policy
    that version would not enforce is refused by validation instead, naming key and version;
    the demo's window covers all three versions, so none of its teams may be refused."""
    policy, _ = load(path)
    target = capabilities(version)
    started = time.monotonic()
    runs, refused = _check_teams(policy, tmp_path, target)
    record_property("codex_seconds", round(time.monotonic() - started, 2))
    record_property("refused_teams", sorted(refused))
    if path == DEMO:
        assert not refused, refused

    failures = [run.result.report() for run in runs if not run.result.ok]
    assert not failures, "\n\n".join(failures)
    for run in runs:
        for session in run.result.sessions:
            wanted = expected_model(run.files, session.profile)
            if wanted is not None:
                assert session.header.get("model") == wanted, f"{run.team} {session.command}"
        if not target.print_startup_config:
            continue  # older versions have no command that reports the requirements
        reported = run.result.startup.requirements
        assert reported is not None
        ours = validate_team(policy, run.team).resolved.requirements
        config = tomllib.loads(run.files[CONFIG].decode("utf-8"))
        want = codex_view_of(policy, ours, config.get("forced_login_method"))
        got = {key: reported.get(key) for key in want}
        assert got == want, f"{run.team}: Codex enforces {got}, we resolved {want}"
        for key, reported_key in AREAS_REPORTED.items():
            if key in ours and key in target.requirement_keys:
                seen = as_written(reported.get(reported_key))
                if key == "network_proxy":
                    # Legacy list views Codex derives from `domains` and `unix_sockets`.
                    for derived in ("allowed_domains", "denied_domains", "allow_unix_sockets"):
                        seen.pop(derived, None)
                assert seen == area_view(key, ours[key]), f"{run.team}: {key} as Codex reports it"


def expected_model(files: Mapping[str, bytes], profile: str | None) -> str | None:
    """The model a session should show: the profile's (file or table), else config.toml's."""
    config = tomllib.loads(files[CONFIG].decode("utf-8"))
    chosen: Json = {}
    if profile is not None:
        file = files.get(PROFILE_FILE.format(profile))
        chosen = tomllib.loads(file.decode()) if file else config["profiles"][profile]
    model = chosen.get("model", config.get("model"))
    # The header shows one line: a model name with a line break shows up to it.
    return model.split("\n")[0] if isinstance(model, str) else None


def _check_teams(
    policy: OrgPolicy, root: Path, target: CodexCapabilities
) -> tuple[list[TeamRun], dict[str, list[str]]]:
    refused: dict[str, list[str]] = {}
    teams = []
    for team in sorted(policy.teams):
        found = validate_team(policy, team, versions=[version_segment(target.version)])
        if found.errors:
            refused[team] = [str(issue) for issue in found.errors]
        else:
            teams.append(team)

    def check(team: str) -> TeamRun:
        folder = root / team.replace("/", "__")
        files = render_team(policy, team, target=target).files
        for name, body in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(body)
        started = time.monotonic()
        result = check_file_set(folder, target.label)
        return TeamRun(team, files, result, time.monotonic() - started)

    with ThreadPoolExecutor(max_workers=CODEX_WORKERS) as pool:
        return list(pool.map(check, teams)), refused


# Requirement areas `--print-startup-config` reports, by the name it reports them under.
AREAS_REPORTED = {
    "allowed_permission_profiles": "allowedPermissionProfiles",
    "default_permissions": "defaultPermissions",
    "allow_appshots": "allowAppshots",
    "allow_browser_and_computer_use": "allowBrowserAndComputerUse",
    "allow_remote_control": "allowRemoteControl",
    "chatgpt_base_url": "chatgptBaseUrl",
    "windows": "allowedWindowsSandboxImplementations",
    "auto_review": "autoReview",
    "feedback": "feedback",
    "in_app_browser": "inAppBrowser",
    "application": "application",
    "browser_use": "browserUse",
    "computer_use": "computerUse",
    "network_proxy": "network",
    "hooks": "hooks",
    "otel": "otel",
    "models": "models",
    "log_dir": "logDir",
    "sqlite_home": "sqliteHome",
}
_CAMEL = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)+$")


def as_written(value: Any) -> Any:
    """Codex's report of an area in requirements.toml's own spelling: snake_case field names
    (names that are data, such as hosts, stay), unset fields and empty hook lists dropped."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = as_written(item)
            if item is None or item == []:
                continue
            name = re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower() if _CAMEL.match(key) else key
            out[name] = item
        return out
    if isinstance(value, list):
        return [as_written(item) for item in value]
    return value


def area_view(key: str, value: Any) -> Any:
    """Our resolved value of an area as `as_written` shows Codex's report of it."""
    if key == "windows":
        return value.get("allowed_sandbox_implementations")
    if key in ("log_dir", "sqlite_home"):
        return f"file://{value}"
    if key == "hooks":
        spelled = {"timeout": "timeout_sec", "statusMessage": "status_message"}
        spelled |= {"commandWindows": "command_windows"}
        spelled |= {"additionalContextLimit": "additional_context_limit"}
        return {
            event: [
                {
                    **group,
                    "hooks": [{spelled.get(k, k): v for k, v in h.items()} for h in group["hooks"]],
                }
                for group in groups
            ]
            if isinstance(groups, list)
            else groups
            for event, groups in value.items()
        }
    if key == "otel":
        # Header values are reported redacted, and a gRPC exporter's headers default to none.
        return as_written(json.loads(json.dumps(value, default=str)) | _redacted_otel(value))
    return as_written(value)


def _redacted_otel(value: Json) -> Json:
    out: Json = {}
    for name in ("exporter", "trace_exporter", "metrics_exporter"):
        exporter = value.get(name)
        if isinstance(exporter, dict):
            ((kind, settings),) = exporter.items()
            headers = {h: "[redacted]" for h in settings.get("headers", {})}
            out[name] = {kind: {**settings, "headers": headers}}
    return out


def codex_view_of(
    policy: OrgPolicy, requirements: Json, forced_login_method: str | None
) -> dict[str, Any]:
    """How `--print-startup-config` reports our effective requirements (and the sign-in method
    config.toml forces, which Codex folds into the allowed login methods)."""
    approvals = requirements.get("allowed_approval_policies")
    web_search = requirements.get("allowed_web_search_modes")
    if web_search is not None and "disabled" not in web_search:
        web_search = [*web_search, "disabled"]
    pinned = requirements.get("model_provider")
    logins = requirements.get("allowed_login_methods", CODEX_DEFAULT_LOGIN_METHODS)
    if forced_login_method is not None:
        logins = [m for m in logins if m == forced_login_method]
    logins = sorted(logins)  # a set to Codex, reported in its own order
    return {
        "allowedApprovalPolicies": (
            None
            if approvals is None
            else [CODEX_APPROVAL_ALIASES.get(a, a) if isinstance(a, str) else a for a in approvals]
        ),
        "allowedSandboxModes": requirements.get("allowed_sandbox_modes"),
        "allowedWebSearchModes": web_search,
        "allowedLoginMethods": logins,
        "featureRequirements": requirements.get("features"),
        "modelProvider": policy.endpoints[pinned].provider_id if pinned else None,
        "cliAuthCredentialsStore": requirements.get("cli_auth_credentials_store"),
        "additionalDeveloperInstructions": requirements.get("additional_developer_instructions"),
        "allowLoginShell": requirements.get("allow_login_shell"),
        "enforceResidency": requirements.get("enforce_residency"),
    }
