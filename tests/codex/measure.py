"""What one Codex release does with the files PolicyHub renders, measured on its real binary.

The capability table (providers/codex_versions.py) is built from these measurements, and both its
users run them: the suite re-measures the table on every release it installs
(tests/providers/test_codex_versions.py), and the release probe (tests/codex/probe.py) measures a
new release beside the one before it. Every run goes through the harness: offline, sandboxed,
each in a folder of its own, so any number may run at once from a thread pool (`run_all`).
"""

from __future__ import annotations

import enum
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from policyhub.policies import schema
from policyhub.releases.wire import native_body
from providers.codex_versions import CHANGES
from tests.codex.harness import Machine, check_profile, check_without_session, run_codex
from tests.codex.record_features import features_list
from tests.e2e.stack import _write_tls

# Independent Codex runs at once: each mostly waits (for its start-up, or for a session header),
# so twice the two cores of the development machine keeps them busy (two releases measured in
# 12.4 s; 8 threads took 10.9 s).
WORKERS = 4

# A loopback provider: the session-free check resolves it without any network.
LOOPBACK = """model = "base-model"
model_provider = "lp"

[model_providers.lp]
name = "lp"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"
"""

# --- requirement keys ----------------------------------------------------------------------------


class KeyOutcome(enum.Enum):
    """What a release does with `key = -7` in requirements.toml (docs/support-window.md)."""

    KNOWN = "known"  # a type error: the release parses the key
    IGNORED = "ignored"  # it starts: the key does nothing there (the policy fails open)
    REFUSED = "refused"  # "unknown field": the whole requirements file stops the release


def table_keys() -> list[str]:
    """The keys the capability table answers for: every key PolicyHub renders, the two it
    renders for providers and the native channel, and every key an entry of the table names."""
    named = {key for change in CHANGES for key in change.requirement_keys}
    return sorted({*schema.REQUIREMENT_KEYS, "model_providers", "config_server", *named})


def _file_set(folder: Path, requirements: str, config: str = LOOPBACK) -> Path:
    folder.mkdir(parents=True)
    (folder / "requirements.toml").write_text(requirements)
    (folder / "config.toml").write_text(config)
    return folder


def starts(version: str, folder: Path, requirements: str, config: str = LOOPBACK) -> bool:
    """Whether `version` loads these files (the session-free check; no model is called)."""
    return check_without_session(_file_set(folder, requirements, config), version).ok


def key_outcome(version: str, key: str, folder: Path) -> KeyOutcome:
    """`key = -7` (a dotted key reaches into a table: `otel.headers_helper`)."""
    check = check_without_session(_file_set(folder, f"{key} = -7\n"), version)
    if check.ok:
        return KeyOutcome.IGNORED
    return KeyOutcome.REFUSED if "unknown field" in (check.error or "") else KeyOutcome.KNOWN


# --- values, providers, identities ---------------------------------------------------------------

Case = tuple[str, str]


def value_cases() -> list[Case]:
    """(key, value) of every value the table says some release introduced or made fatal."""
    return sorted(
        {
            (key, value)
            for change in CHANGES
            for key, values in (*change.values.items(), *change.fatal_config_values.items())
            for value in values
        }
    )


def value_starts(version: str, case: Case, folder: Path) -> bool:
    """Whether `version` starts with the value: in config.toml, or for a prefix rule's decision
    in a requirements rule."""
    key, value = case
    if key == "prefix_rule_decision":
        rule = f'{{ pattern = [{{ token = "curl" }}], decision = "{value}" }}'
        return starts(version, folder, f"[rules]\nprefix_rules = [{rule}]\n")
    return starts(version, folder, "", f'{key} = "{value}"\n{LOOPBACK}')


# A table each built-in provider accepts; a release without the built-in reads it as a custom
# provider and stops ("missing field `name`").
BUILTIN_TABLES = {
    "amazon-bedrock": '[model_providers.amazon-bedrock.aws]\nregion = "us-west-2"\n',
    "gcp": '[model_providers.gcp]\nproject_id = "acme-ml"\nlocation = "us-central1"\n',
}
MATCHER_IDENTITY = (
    '[mcp_servers.docs.identity]\nurl = { match = "prefix", value = "https://mcp.example/" }\n'
)


def provider_known(version: str, provider: str, folder: Path) -> bool:
    config = f'model = "m"\nmodel_provider = "{provider}"\n{BUILTIN_TABLES[provider]}'
    return starts(version, folder, "", config)


def identity_matchers(version: str, folder: Path) -> bool:
    """Whether requirements may give an MCP identity as a matcher table."""
    return starts(version, folder, MATCHER_IDENTITY)


# --- managed_config.toml pins --------------------------------------------------------------------

# What `[codex] managed_pins` relies on: managed_config.toml wins over the user's config (an API-key
# sign-in is refused, the keyring is used). Key -> (managed value, user's value, the refusal).
MANAGED_PINS = {
    "forced_login_method": ('"chatgpt"', '"api"', "API key login is disabled"),
    "cli_auth_credentials_store": ('"keyring"', '"file"', "keyring"),
}


def _api_key_login(version: str, folder: Path, user: Path) -> str:
    login = run_codex(
        folder,
        ["login", "--with-api-key"],
        version=version,
        timeout=30,
        user_config=user,
        stdin=b"sk-test-not-a-key\n",
    )
    return login.stdout + login.stderr


def managed_pin_wins(version: str, key: str, folder: Path) -> bool:
    """Whether the managed value of `key` beats the user's: the sign-in is refused with the
    managed layer and goes through without it (so the refusal is the pin's doing)."""
    managed, users, refusal = MANAGED_PINS[key]
    folder.mkdir(parents=True)
    user = folder / "user-config.toml"
    user.write_text(f"{key} = {users}\n")
    (folder / "managed_config.toml").write_text(f"{key} = {managed}\n")
    pinned = refusal in _api_key_login(version, folder, user)
    (folder / "managed_config.toml").unlink()
    return pinned and refusal not in _api_key_login(version, folder, user)


# --- profiles, flags -----------------------------------------------------------------------------

PROFILE = "probe"


def profile_layout_works(version: str, layout: str, folder: Path) -> bool:
    """Whether `--profile probe` selects the profile when it is a `$CODEX_HOME/probe.config.toml`
    file (layout "files") or a `[profiles.probe]` table of config.toml (layout "tables"): the
    session header then names the profile's model."""
    model = f"policyhub-probe-{layout}"
    if layout == "files":
        _file_set(folder, "")
        (folder / "profiles").mkdir()
        (folder / "profiles" / f"{PROFILE}.config.toml").write_text(f'model = "{model}"\n')
    else:
        _file_set(folder, "", f'{LOOPBACK}\n[profiles.{PROFILE}]\nmodel = "{model}"\n')
    session = check_profile(folder, PROFILE, version)
    return session.header.get("model") == model


UNKNOWN_CONFIG_KEY = "policyhub_probe_unknown_key"


def strict_config(version: str, folder: Path) -> bool:
    """Whether `--strict-config` exists and refuses an unknown config key, naming it."""
    _file_set(folder, "", f"{UNKNOWN_CONFIG_KEY} = true\n{LOOPBACK}")
    run = run_codex(
        folder, ["exec", "--strict-config", "--skip-git-repo-check"], version=version, timeout=30
    )
    return UNKNOWN_CONFIG_KEY in run.stderr


def _json_objects(stdout: str) -> Iterator[dict[str, Any]]:
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def print_startup_config(version: str, folder: Path) -> bool:
    """Whether `app-server --print-startup-config` prints the requirements it loaded."""
    _file_set(folder, 'allowed_sandbox_modes = ["read-only", "workspace-write"]\n')
    run = run_codex(folder, ["app-server", "--print-startup-config"], version=version, timeout=30)
    for answer in _json_objects(run.stdout):
        loaded = (answer.get("configRequirements") or {}).get("requirements") or {}
        if loaded.get("allowedSandboxModes") == ["read-only", "workspace-write"]:
            return True
    return False


# --- the native channel --------------------------------------------------------------------------

# A config server reduced to its protocol (docs/codex.md): every GET is logged; the bundle path
# answers the body file. Runs inside the network namespace Codex runs in.
_CONFIG_SERVER = r"""
import http.server, ssl, sys
cert, key, body_file, log_file = sys.argv[1:5]
body = open(body_file, "rb").read()
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_GET(self):
        with open(log_file, "a") as log:
            log.write(self.path + "\n")
        found = self.path.endswith("/codex/config/bundle")
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if found else 0))
        self.end_headers()
        if found:
            self.wfile.write(body)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
BUNDLE_MODEL = "policyhub-probe-bundle"


def config_server(version: str, folder: Path) -> bool:
    """Whether the release fetches its bundle from the `[config_server]` of requirements.toml
    and applies it: the server sees `GET .../codex/config/bundle`, and the session runs with the
    bundle's config (its model) under its requirements (read-only, where the local config asks
    for workspace-write). The body is the one PolicyHub serves (`native_body`), over TLS from a
    throw-away CA, inside a network namespace of its own, as in tests/e2e."""
    folder.mkdir(parents=True)
    ca = _write_tls(folder)
    body = native_body(
        organization="probe",
        team_path="probe",
        revision=1,
        files={
            "requirements.toml": 'allowed_sandbox_modes = ["read-only"]\n',
            "config.toml": f'model = "{BUNDLE_MODEL}"\n',
        },
    )
    (folder / "body.json").write_text(body)
    log = folder / "requests.log"
    netns = f"policyhub-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    server: subprocess.Popen[str] | None = None
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            [
                *("ip", "netns", "exec", netns, sys.executable, "-c", _CONFIG_SERVER),
                *(str(folder / name) for name in ("server.pem", "server.key", "body.json")),
                str(log),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the probe's config server did not start in {netns}")
        base_url = f"https://127.0.0.1:{port}/config-server/probe"
        files = _file_set(
            folder / "files",
            f'[config_server]\nbase_url = "{base_url}"\n',
            f'sandbox_mode = "workspace-write"\n{LOOPBACK}',
        )
        machine = Machine(netns=netns, env={"CODEX_CA_CERTIFICATE": str(ca)})
        session = check_profile(files, None, version, machine=machine)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
    fetched = log.is_file() and any(
        line.endswith("/codex/config/bundle") for line in log.read_text().splitlines()
    )
    applied = session.header.get("model") == BUNDLE_MODEL and session.header.get(
        "sandbox", ""
    ).startswith("read-only")
    return fetched and applied


# --- the protocol schema -------------------------------------------------------------------------

SCHEMA_FILE = Path("v2") / "ConfigRequirementsReadResponse.json"
SCHEMA_DEFINITION = "ConfigRequirements"
# Requirement areas whose requirements.toml name is not the snake_case of the protocol's.
TOML_NAMES = {
    "featureRequirements": "features",
    "network": "network_proxy",
    "allowedWindowsSandboxImplementations": "windows.allowed_sandbox_implementations",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


class SchemaError(ValueError):
    """The release wrote no protocol schema, or one without the requirement areas."""


def toml_name(field: str) -> str:
    """requirements.toml's name of a protocol field: `allowLoginShell` -> `allow_login_shell`."""
    return TOML_NAMES.get(field) or _CAMEL.sub(r"_\1", field).lower()


def toml_key(path: str) -> str | None:
    """The requirements.toml key of a sub-field path (`otel.headers_helper`), None for paths
    through lists, maps or values, which a single key cannot reach."""
    if any(mark in path for mark in ("[]", ".*", " = ")):
        return None
    area, *rest = path.split(".")
    return ".".join([toml_name(area), *(toml_name(part) for part in rest)])


def _paths(
    node: object, definitions: Mapping[str, Any], path: str, seen: frozenset[str]
) -> Iterator[str]:
    """Every sub-field below `path`: `a.b` for a property, `a[]` for list items, `a.*` for map
    values, `a = "v"` for each value of an enumeration; references followed once per branch."""
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.rsplit("/", 1)[1]
        if name not in seen:
            yield from _paths(definitions.get(name), definitions, path, seen | {name})
    for combined in ("anyOf", "oneOf", "allOf"):
        for option in node.get(combined) or ():
            yield from _paths(option, definitions, path, seen)
    properties = node.get("properties")
    for name, child in (properties or {}).items() if isinstance(properties, dict) else ():
        yield f"{path}.{name}"
        yield from _paths(child, definitions, f"{path}.{name}", seen)
    yield from _paths(node.get("items"), definitions, f"{path}[]", seen)
    yield from _paths(node.get("additionalProperties"), definitions, f"{path}.*", seen)
    for value in node.get("enum") or ():
        yield f"{path} = {json.dumps(value)}"


def requirement_areas(document: object) -> dict[str, frozenset[str]]:
    """The requirement areas of a ConfigRequirementsReadResponse schema, each with its sub-fields
    (camelCase, as the protocol names them)."""
    definitions = document.get("definitions") if isinstance(document, dict) else None
    requirements = (definitions or {}).get(SCHEMA_DEFINITION)
    properties = requirements.get("properties") if isinstance(requirements, dict) else None
    if not isinstance(properties, dict) or not properties:
        raise SchemaError(f"{SCHEMA_FILE} has no {SCHEMA_DEFINITION} definition with properties")
    assert isinstance(definitions, dict)
    return {
        area: frozenset(_paths(node, definitions, area, frozenset()))
        for area, node in sorted(properties.items())
    }


def protocol_schema(version: str, folder: Path) -> dict[str, frozenset[str]]:
    """`codex app-server generate-json-schema --experimental`: the requirement areas it lists."""
    folder.mkdir(parents=True)
    out = folder / "schema"
    args = ["app-server", "generate-json-schema", "--experimental", "--out", str(out)]
    run = run_codex(folder, args, version=version, timeout=60)
    if run.rc != 0 or not (out / SCHEMA_FILE).is_file():
        raise SchemaError(f"codex {version} {' '.join(args[:3])} failed: {run.stderr.strip()}")
    try:
        return requirement_areas(json.loads((out / SCHEMA_FILE).read_text()))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{SCHEMA_FILE} of {version} is not JSON: {exc}") from None


# --- everything at once --------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
# (version, what is measured, which one): ("0.171.0", "key", "otel"), ("0.171.0", "value", case).
Task = tuple[str, str, Hashable]


def run_all(tasks: Mapping[K, Callable[[], T]], workers: int = WORKERS) -> dict[K, T]:
    """Each task's answer, run `workers` at a time (Codex runs share nothing)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        return {name: future.result() for name, future in futures.items()}


@dataclass(frozen=True)
class Measurement:
    """Everything the capability table and the features file say about one release, as its
    binary does it."""

    version: str
    requirement_keys: Mapping[str, KeyOutcome]
    values: Mapping[Case, bool]  # starts with the value
    builtin_providers: Mapping[str, bool]
    mcp_identity_matchers: bool
    features: Mapping[str, str]  # name -> stage, as `codex features list` prints them
    profile_files: bool
    profile_tables: bool
    strict_config: bool
    print_startup_config: bool
    config_server: bool
    managed_pins: Mapping[str, bool]
    schema: Mapping[str, frozenset[str]] | None  # requirement area -> its sub-fields
    schema_error: str | None = None

    @property
    def known_keys(self) -> frozenset[str]:
        return frozenset(k for k, o in self.requirement_keys.items() if o is KeyOutcome.KNOWN)


def _schema(version: str, folder: Path) -> tuple[dict[str, frozenset[str]] | None, str | None]:
    try:
        return protocol_schema(version, folder), None
    except SchemaError as exc:
        return None, str(exc)


def _tasks(version: str, keys: Iterable[str], at: Path) -> dict[Task, Callable[[], object]]:
    """Every run measuring `version`, each in its own folder under `at`."""
    tasks: dict[Task, Callable[[], object]] = {}
    for key in keys:
        tasks[version, "key", key] = partial(key_outcome, version, key, at / f"key-{key}")
    for case in value_cases():
        folder = at / f"value-{case[0]}-{case[1]}"
        tasks[version, "value", case] = partial(value_starts, version, case, folder)
    for provider in BUILTIN_TABLES:
        folder = at / f"provider-{provider}"
        tasks[version, "provider", provider] = partial(provider_known, version, provider, folder)
    for key in MANAGED_PINS:
        tasks[version, "pin", key] = partial(managed_pin_wins, version, key, at / f"pin-{key}")
    for layout in ("files", "tables"):
        folder = at / f"profile-{layout}"
        tasks[version, "profile", layout] = partial(profile_layout_works, version, layout, folder)
    flags: dict[str, Callable[[str, Path], bool]] = {
        "mcp_identity_matchers": identity_matchers,
        "strict_config": strict_config,
        "print_startup_config": print_startup_config,
        "config_server": config_server,
    }
    for name, flag in flags.items():
        tasks[version, "flag", name] = partial(flag, version, at / name)
    tasks[version, "features", ""] = partial(features_list, version)
    return tasks


def changed_subfield_keys(schemas: Iterable[Mapping[str, frozenset[str]]]) -> set[str]:
    """requirements.toml keys of the sub-fields some of these schemas list and another does not
    (whole areas are tried anyway)."""
    found = [frozenset().union(*areas.values()) for areas in schemas]
    if not found:
        return set()
    changed = frozenset().union(*found) - frozenset.intersection(*found)
    return {key for path in changed if (key := toml_key(path)) is not None}


def measure(
    versions: Iterable[str], work: Path, *, workers: int = WORKERS
) -> dict[str, Measurement]:
    """Measure each release on its binary, all runs in one pool. Every release is tried on the
    same requirement keys: `table_keys()`, every area of any release's protocol schema and every
    sub-field that one release's schema lists and another's does not (as requirements.toml
    names them)."""
    versions = list(dict.fromkeys(versions))
    schemas = run_all({v: partial(_schema, v, work / v / "schema") for v in versions}, workers)
    listed = [found for found, _ in schemas.values() if found is not None]
    areas = {area for found in listed for area in found}
    keys = sorted({*table_keys(), *map(toml_name, areas), *changed_subfield_keys(listed)})
    tasks = {name: task for v in versions for name, task in _tasks(v, keys, work / v).items()}
    found = run_all(tasks, workers)

    def of(version: str, kind: str) -> dict[Any, Any]:
        return {name: value for (v, k, name), value in found.items() if (v, k) == (version, kind)}

    return {
        v: Measurement(
            version=v,
            requirement_keys=of(v, "key"),
            values=of(v, "value"),
            builtin_providers=of(v, "provider"),
            mcp_identity_matchers=of(v, "flag")["mcp_identity_matchers"],
            features=of(v, "features")[""],
            profile_files=of(v, "profile")["files"],
            profile_tables=of(v, "profile")["tables"],
            strict_config=of(v, "flag")["strict_config"],
            print_startup_config=of(v, "flag")["print_startup_config"],
            config_server=of(v, "flag")["config_server"],
            managed_pins=of(v, "pin"),
            schema=schemas[v][0],
            schema_error=schemas[v][1],
        )
        for v in versions
    }
