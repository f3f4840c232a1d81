"""The two forms in which a release travels to machines, built once when the release is made so
that serving one is a lookup, never a rendering.

* the agent's bundle: every file, its sha256, the signed manifest and the signature, and the
  signed statement of where Codex measurement ended when the files were made;
* Codex's own config-server bundle (docs/codex.md): requirements and config as `enterprise_managed`
  fragments. Profiles are not part of that protocol; the agent writes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from providers.codex_files import CONFIG, REQUIREMENTS

# The config-server answer of a release none of whose Codex versions fetches one: nothing managed
# comes from us that way (the agent writes the files instead).
NO_NATIVE_BODY = "{}"


def etag(manifest: str) -> str:
    """One tag per signed release: the manifest names organisation, team, revision, every file
    hash and the key, so equal tags mean byte-equal bundles."""
    return hashlib.sha256(manifest.encode()).hexdigest()[:32]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def agent_body(
    *,
    organization: str,
    team_path: str,
    revision: int,
    files: Mapping[str, str],
    hashes: Mapping[str, str],
    manifest: str,
    signature: str,
    key_id: str,
    measurement: tuple[str, str] | None = None,
    signed_time: tuple[str, str] | None = None,
) -> str:
    """The agent's bundle; with `measurement` (statement, signature) also where measurement of
    Codex ended when the set was made (agents before 0.3.0 ignore both fields), and with
    `signed_time` when it was signed (agents before 0.3.2 ignore it)."""
    body: dict[str, object] = {
        "organization": organization,
        "team": team_path,
        "revision": revision,
        "files": dict(files),
        "hashes": dict(hashes),
        "manifest": manifest,
        "signature": signature,
        "key_id": key_id,
    }
    if measurement is not None:
        body["measurement"], body["measurement_signature"] = measurement
    if signed_time is not None:
        body["signed_time"], body["signed_time_signature"] = signed_time
    return _json(body)


def native_body(
    *, organization: str, team_path: str, revision: int, files: Mapping[str, str]
) -> str:
    """The config-server answer: one fragment per file, highest priority first (we send one
    fragment each, already resolved from the whole team chain)."""
    fragment = {
        "id": f"policyhub:{organization}/{team_path}@{revision}",
        "name": f"PolicyHub {organization}/{team_path} r{revision}",
    }
    body = {
        key: {"enterprise_managed": [{**fragment, "contents": files[name]}]}
        for key, name in (("config_toml", CONFIG), ("requirements_toml", REQUIREMENTS))
        if name in files
    }
    return _json(body)
