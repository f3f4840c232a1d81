"""The agent end to end against a PolicyHub stand-in on a real socket: enrolment, sync, what it
writes where, and that nothing from a bundle that fails verification ever reaches the disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policyhub.releases.signing import endorsement_message
from tests.agent.support import (
    CONFIG,
    MISSING_CODEX,
    PROFILE_CI,
    PROFILE_FAST,
    REQUIREMENTS,
    FakeHub,
    Signer,
    bundle,
    default_files,
    encode,
    enroll,
    resign,
    run,
    serve,
    snapshot,
)

ETC = "etc/codex"
CODEX_HOME = "home/dev/.codex"
STATE = "var/lib/policyhub-agent"
BUNDLE = "/api/v1/device/bundle"
STATUS = "/api/v1/device/status"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def state_of(root: Path) -> dict[str, Any]:
    return json.loads((root / STATE / "state.json").read_text())


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_enrolling_over_http_to_loopback_writes_the_release_without_a_config_server(
    root: Path, hub: FakeHub
) -> None:
    result = enroll(root, hub)
    assert result.code == 0, result.err
    assert last_line(result.out) == "revision 1 applied"
    assert "native Codex channel not configured" in result.out
    etc, home = root / ETC, root / CODEX_HOME
    assert (etc / "requirements.toml").read_text() == REQUIREMENTS
    assert (etc / "config.toml").read_text() == CONFIG
    assert (home / "ci.config.toml").read_text() == PROFILE_CI
    assert (home / "fast.config.toml").read_text() == PROFILE_FAST
    written = [etc / "requirements.toml", etc / "config.toml", home / "ci.config.toml"]
    assert {mode(path) for path in written} == {0o644}
    assert sorted(p.name for p in home.iterdir()) == ["ci.config.toml", "fast.config.toml"]
    enrol = hub.requests("/api/v1/device/enroll")[0].body
    assert enrol["token"] == hub.token and enrol["hostname"] and enrol["os"]
    assert enrol["codex_version"] is None


def test_enrolling_over_https_appends_codexs_native_channel_to_the_requirements(
    root: Path, signer: Signer, tmp_path: Path
) -> None:
    fake = FakeHub(signer)
    fake.publish(bundle(signer))  # made before signed versions: for Codex 0.169.0
    (tmp_path / "tls").mkdir()
    codex = str(fake_codex(tmp_path, "0.169.0"))
    with serve(fake, tmp_path / "tls") as ca:
        result = enroll(root, fake, "--ca-bundle", str(ca), "--codex-bin", codex)
    assert result.code == 0, result.err
    text = (root / ETC / "requirements.toml").read_text()
    assert text.startswith(REQUIREMENTS)  # the signed bytes first, untouched
    parsed = tomllib.loads(text)
    assert parsed.pop("config_server") == {
        "base_url": f"{fake.url}/config-server/{fake.credential}"
    }
    assert parsed == tomllib.loads(REQUIREMENTS)
    assert mode(root / ETC / "requirements.toml") == 0o644
    assert (root / ETC / "config.toml").read_text() == CONFIG
    assert fake.credential not in result.out + result.err


NEWEST = {
    "versions": [["0.134.0", None]],
    "native_channel_from": "0.166.0",
    "window": ["0.125.0", "0.169.0"],
}


def fake_codex(folder: Path, version: str) -> Path:
    """An executable answering `--version` as Codex `version` does."""
    codex = folder / f"codex-{version}"
    codex.write_text(f"#!/bin/sh\necho 'codex-cli {version}'\n")
    codex.chmod(0o755)
    return codex


@pytest.mark.parametrize(
    ("codex", "native"),
    [("0.169.0", True), ("0.166.0", True), ("0.165.0", False), ("0.140.0", False), (None, False)],
)
def test_the_native_channel_is_added_only_for_a_codex_that_fetches_from_a_server(
    root: Path, signer: Signer, tmp_path: Path, codex: str | None, native: bool
) -> None:
    """0.164 and 0.165 read config_server and refuse every session; older ones ignore it; an
    unknown version gets none."""
    fake = FakeHub(signer)
    fake.publish(bundle(signer, codex=NEWEST))
    (tmp_path / "tls").mkdir()
    binary = str(fake_codex(tmp_path, codex)) if codex else MISSING_CODEX
    with serve(fake, tmp_path / "tls") as ca:
        result = enroll(root, fake, "--ca-bundle", str(ca), "--codex-bin", binary)
    assert result.code == 0, result.err
    text = (root / ETC / "requirements.toml").read_text()
    assert ("config_server" in tomllib.loads(text)) is native
    assert text.startswith(REQUIREMENTS)


def test_managed_config_is_written_and_removed_with_the_release(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    files = {**default_files(), "managed_config.toml": 'forced_login_method = "chatgpt"\n'}
    hub.publish(bundle(signer, files=files, codex=NEWEST))
    assert enroll(root, hub).code == 0
    managed = root / ETC / "managed_config.toml"
    assert managed.read_text() == files["managed_config.toml"] and mode(managed) == 0o644
    hub.publish(bundle(signer, revision=2))
    assert run(root, "sync").code == 0
    assert not managed.exists()


@pytest.mark.parametrize(
    "codex",
    [
        {**NEWEST, "versions": []},
        {**NEWEST, "versions": [["0.134", None]]},
        {"versions": [["0.134.0", None]], "native_channel_from": None},
        {**NEWEST, "native_channel_from": "soon"},
        {**NEWEST, "versions": "0.134.0"},
        {**NEWEST, "window": ["0.125.0"]},
        {**NEWEST, "window": "0.125.0-0.169.0"},
        ["0.134.0"],
    ],
)
def test_malformed_signed_codex_versions_are_refused(
    root: Path, hub: FakeHub, signer: Signer, codex: Any
) -> None:
    hub.publish(bundle(signer, codex=codex))
    result = enroll(root, hub)
    assert result.code == 1 and "codex versions are malformed" in result.err
    assert not (root / ETC).exists()


@pytest.mark.parametrize(
    ("codex", "outcome"),
    [("0.130.0", "refused"), ("0.118.0", "warned"), ("0.134.0", "applied"), ("0.170.0", "applied")],
)
def test_files_for_other_codex_versions_are_refused_inside_the_window(
    root: Path, hub: FakeHub, signer: Signer, tmp_path: Path, codex: str, outcome: str
) -> None:
    """A set for 0.134 and later reaching a machine whose Codex the window includes, but the
    set does not, is a replay or a mistake; below the window it is the nearest set there is."""
    hub.publish(bundle(signer, codex=NEWEST))
    result = enroll(root, hub, "--codex-bin", str(fake_codex(tmp_path, codex)))
    if outcome == "refused":
        assert result.code == 1 and "other Codex versions than this machine's 0.130.0" in result.err
        assert not (root / ETC).exists()
    else:
        assert result.code == 0, result.err
        assert ("outside the versions" in result.err) is (outcome == "warned")
        assert (root / ETC / "config.toml").read_text() == CONFIG


def test_no_native_channel_keeps_the_requirements_verbatim_over_https(
    root: Path, signer: Signer, tmp_path: Path
) -> None:
    fake = FakeHub(signer)
    fake.publish(bundle(signer))
    (tmp_path / "tls").mkdir()
    with serve(fake, tmp_path / "tls") as ca:
        result = enroll(root, fake, "--ca-bundle", str(ca), "--no-native-channel")
    assert result.code == 0, result.err
    assert (root / ETC / "requirements.toml").read_text() == REQUIREMENTS


def test_a_release_that_already_defines_config_server_is_refused_over_https(
    root: Path, signer: Signer, tmp_path: Path
) -> None:
    files = default_files()
    files["requirements.toml"] += '\n[config_server]\nbase_url = "https://elsewhere.example"\n'
    fake = FakeHub(signer)
    fake.publish(bundle(signer, files=files))
    (tmp_path / "tls").mkdir()
    codex = str(fake_codex(tmp_path, "0.169.0"))
    with serve(fake, tmp_path / "tls") as ca:
        result = enroll(root, fake, "--ca-bundle", str(ca), "--codex-bin", codex)
    assert result.code == 1
    assert "already defines config_server" in result.err
    assert not (root / ETC).exists()


def test_https_to_a_server_with_an_unknown_ca_fails_with_a_hint_and_leaves_nothing(
    root: Path, signer: Signer, tmp_path: Path
) -> None:
    fake = FakeHub(signer)
    (tmp_path / "tls").mkdir()
    with serve(fake, tmp_path / "tls"):
        result = enroll(root, fake)
    assert result.code == 1
    assert "TLS certificate verification failed" in result.err and "--ca-bundle" in result.err
    assert snapshot(root) == {}


def test_enrolment_refuses_plain_http_to_a_remote_host(root: Path) -> None:
    result = run(root, "enroll", "--server", "http://policyhub.example", "--token", "phe_x")
    assert result.code == 2
    assert "refusing plain http" in result.err and "https://" in result.err
    assert snapshot(root) == {}


def test_a_refused_token_shows_the_servers_detail_and_leaves_nothing(
    root: Path, hub: FakeHub
) -> None:
    hub.token = "phe_" + "u" * 43
    result = run(root, "enroll", "--server", hub.url, "--token", "phe_" + "w" * 43)
    assert result.code == 1
    assert "answered 401: unknown enrolment token" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert snapshot(root) == {}


def test_the_state_is_private_and_the_credential_is_never_printed(root: Path, hub: FakeHub) -> None:
    outputs = [enroll(root, hub), run(root, "sync"), run(root, "status")]
    outputs.append(run(root, "status", "--json"))
    assert all(result.code == 0 for result in outputs)
    assert mode(root / STATE) == 0o700 and mode(root / STATE / "state.json") == 0o600
    assert state_of(root)["credential"] == hub.credential
    assert all(hub.credential not in result.out + result.err for result in outputs)
    assert "credential" not in json.loads(outputs[-1].out)


def test_a_second_sync_revalidates_with_the_etag_and_reports_unchanged(
    root: Path, hub: FakeHub
) -> None:
    assert enroll(root, hub).code == 0
    before = snapshot(root, skip=(STATE,))
    result = run(root, "sync")
    assert result.code == 0, result.err
    assert last_line(result.out) == "revision 1 unchanged"
    first, second = hub.requests(BUNDLE)
    assert "If-None-Match" not in first.headers
    assert second.headers["If-None-Match"] == hub.etag
    assert snapshot(root, skip=(STATE,)) == before


def test_an_unchanged_sync_puts_back_files_edited_or_deleted_locally(
    root: Path, hub: FakeHub
) -> None:
    assert enroll(root, hub).code == 0
    before = snapshot(root, skip=(STATE,))
    (root / ETC / "config.toml").write_text('model = "something-else"\n')
    (root / ETC / "requirements.toml").chmod(0o600)
    (root / CODEX_HOME / "ci.config.toml").unlink()
    result = run(root, "sync")
    assert result.code == 0, result.err
    assert last_line(result.out) == "revision 1 unchanged"
    assert snapshot(root, skip=(STATE,)) == before
    errors = hub.requests(STATUS)[-1].body["errors"]
    assert len(errors) == 3 and all("restored" in error for error in errors)


def test_a_new_release_is_applied_and_a_dropped_profile_removed_but_no_other_file(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    home = root / CODEX_HOME
    (home / "mine.config.toml").write_text('model = "mine"\n')  # the developer's own profile
    (home / "config.toml").write_text('model = "user default"\n')
    files = default_files()
    del files["profiles/fast.config.toml"]
    files["config.toml"] = CONFIG.replace("revision 1", "revision 2")
    hub.publish(bundle(signer, revision=2, files=files))
    result = run(root, "sync")
    assert result.code == 0, result.err
    assert last_line(result.out) == "revision 2 applied"
    assert not (home / "fast.config.toml").exists()
    assert (home / "mine.config.toml").read_text() == 'model = "mine"\n'
    assert (home / "config.toml").read_text() == 'model = "user default"\n'
    assert (root / ETC / "config.toml").read_text() == files["config.toml"]
    status = json.loads(run(root, "status", "--json").out)
    assert status["applied_revision"] == 2
    assert str(home / "fast.config.toml") not in status["files"]
    assert hub.requests(STATUS)[-1].body["applied_revision"] == 2


def test_files_that_were_there_before_the_agent_are_put_back_when_it_lets_go(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    home, etc = root / CODEX_HOME, root / ETC
    home.mkdir(parents=True)
    etc.mkdir(parents=True)
    (home / "fast.config.toml").write_text('model = "my own fast"\n')
    (home / "fast.config.toml").chmod(0o600)
    (etc / "config.toml").write_text('model = "from the image"\n')
    before = snapshot(root)
    assert enroll(root, hub).code == 0
    assert (home / "fast.config.toml").read_text() == PROFILE_FAST
    files = default_files()
    del files["profiles/fast.config.toml"]
    hub.publish(bundle(signer, revision=2, files=files))
    result = run(root, "sync")
    assert result.code == 0, result.err
    assert f"restored {home / 'fast.config.toml'}" in result.out
    assert (home / "fast.config.toml").read_text() == 'model = "my own fast"\n'
    assert mode(home / "fast.config.toml") == 0o600
    assert run(root, "uninstall").code == 0
    assert snapshot(root) == before


def test_writes_leave_no_temporary_files(root: Path, hub: FakeHub, signer: Signer) -> None:
    assert enroll(root, hub).code == 0
    hub.publish(bundle(signer, revision=2, files={**default_files(), "config.toml": "x = 2\n"}))
    assert run(root, "sync").code == 0
    assert run(root, "sync").code == 0
    names = [name for _, _, files in os.walk(root) for name in files]
    assert names and not [name for name in names if "tmp" in name]


def test_uninstall_leaves_the_root_as_it_was_except_files_the_agent_never_wrote(
    root: Path, hub: FakeHub
) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "home" / "dev").mkdir(parents=True)
    before = snapshot(root)
    assert enroll(root, hub).code == 0
    assert run(root, "install", "--platform", "linux").code == 0
    assert run(root, "sync").code == 0
    (root / CODEX_HOME / "history.jsonl").write_text("{}\n")  # Codex's, not the agent's
    result = run(root, "uninstall")
    assert result.code == 0, result.err
    after = snapshot(root)
    assert after.pop(f"{CODEX_HOME}/history.jsonl") == ("file", b"{}\n", 0o644)
    assert after.pop(CODEX_HOME)[0] == "dir"
    assert after == before
    assert run(root, "status").code == 2


def test_reenrolling_replaces_the_state_and_still_cleans_up_what_was_written(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    first_device = state_of(root)["device_id"]
    other = FakeHub(
        signer, team="engineering/api", device_id="8c5a4f0e-1111-4c2b-9c1e-3f4e5d6a7b8c"
    )
    files = default_files()
    del files["profiles/fast.config.toml"]
    other.publish(bundle(signer, files=files, team="engineering/api"))
    with serve(other):
        result = enroll(root, other)
    assert result.code == 0, result.err
    current = state_of(root)
    assert (current["device_id"], current["team"]) == (other.device_id, "engineering/api")
    assert current["device_id"] != first_device
    assert not (root / CODEX_HOME / "fast.config.toml").exists()
    assert run(root, "uninstall").code == 0
    assert snapshot(root) == {}


# --- refusals: nothing from a bad bundle is written ---------------------------------------------


def _forged_endorsement(hub: FakeHub, signer: Signer) -> bytes:
    new, forger = Signer(), Signer()
    key = new.key()
    key["endorsed_by"] = signer.key_id  # claims the pinned key vouched for it
    key["endorsement"] = forger.sign(endorsement_message(new.key_id, new.public_key))
    hub.listed_keys = [signer.key("retired"), key]
    return encode(bundle(new, revision=2))


def _unendorsed_key(hub: FakeHub, signer: Signer) -> bytes:
    new = Signer()
    hub.listed_keys = [signer.key("retired"), new.key()]
    return encode(bundle(new, revision=2))


def _tampered_text(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    data["files"]["config.toml"] += 'model = "evil"\n'
    return encode(data)


def _tampered_manifest(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    data["manifest"] = data["manifest"].replace('"revision":2', '"revision":3')
    data["revision"] = 3
    return encode(data)


def _unsigned_revision(hub: FakeHub, signer: Signer) -> bytes:
    return encode({**bundle(signer, revision=2), "revision": 7})


def _extra_file(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    data["files"]["profiles/extra.config.toml"] = 'model = "x"\n'
    return encode(data)


def _missing_file(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    del data["files"]["profiles/ci.config.toml"]
    del data["hashes"]["profiles/ci.config.toml"]
    return encode(data)


def _unsigned_file(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    text = 'model = "x"\n'
    data["files"]["profiles/extra.config.toml"] = text
    data["hashes"]["profiles/extra.config.toml"] = hashlib.sha256(text.encode()).hexdigest()
    return encode(data)


def _named(name: str) -> Callable[[FakeHub, Signer], bytes]:
    def make(hub: FakeHub, signer: Signer) -> bytes:
        return encode(bundle(signer, revision=2, files={**default_files(), name: 'x = "y"\n'}))

    return make


def _invalid_toml(hub: FakeHub, signer: Signer) -> bytes:
    files = {**default_files(), "profiles/ci.config.toml": 'model = "unterminated\n'}
    return encode(bundle(signer, revision=2, files=files))


def _no_config(hub: FakeHub, signer: Signer) -> bytes:
    files = default_files()
    del files["config.toml"]
    return encode(bundle(signer, revision=2, files=files))


def _truncated_json(hub: FakeHub, signer: Signer) -> bytes:
    body = encode(bundle(signer, revision=2))
    return body[: len(body) // 2]


def _other_organisation(hub: FakeHub, signer: Signer) -> bytes:
    return encode(bundle(signer, revision=2, organization="other"))


def _not_canonical(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    text = json.dumps(json.loads(data["manifest"]), indent=1).encode()
    return encode({**data, "manifest": text.decode(), "signature": signer.sign(text)})


def _manifest_for_other_files(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    files = dict(json.loads(data["manifest"])["files"])
    del files["profiles/fast.config.toml"]
    return encode(resign(data, signer, files=files))


def _bad_signature(hub: FakeHub, signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    return encode({**data, "signature": Signer().sign(data["manifest"].encode())})


REFUSALS = {
    "tampered file text": (_tampered_text, "config.toml does not match its signed sha256"),
    "tampered manifest": (_tampered_manifest, "signature by key"),
    "signature by another key": (_bad_signature, "does not verify"),
    "unsigned revision": (_unsigned_revision, "revision 7 differs from the signed 2"),
    "key without endorsement": (_unendorsed_key, "carries no endorsement by a pinned key"),
    "forged endorsement": (_forged_endorsement, "endorsement by"),
    "extra file": (_extra_file, "files and hashes name different files"),
    "file missing from the manifest": (_manifest_for_other_files, "differ from the signed"),
    "file not in the manifest": (_unsigned_file, "differ from the signed manifest"),
    "missing file": (_missing_file, "differ from the signed manifest"),
    "missing config": (_no_config, "the bundle has no config.toml"),
    "path traversal": (_named("profiles/../../x.config.toml"), "disallowed name"),
    "absolute path": (_named("/etc/passwd"), "disallowed name"),
    "not a profile": (_named("profiles/ci.toml"), "disallowed name"),
    "names differing only in case": (_named("profiles/FAST.config.toml"), "only in case"),
    "invalid TOML": (_invalid_toml, "profiles/ci.config.toml is not valid TOML"),
    "truncated JSON": (_truncated_json, "not valid JSON"),
    "other organisation": (_other_organisation, "for organisation 'other'"),
    "manifest not canonical": (_not_canonical, "not canonical JSON"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_bundle_failing_verification_is_refused_and_the_previous_files_stay(
    root: Path, hub: FakeHub, signer: Signer, case: str
) -> None:
    make, reason = REFUSALS[case]
    assert enroll(root, hub).code == 0
    before = snapshot(root, skip=(STATE,))
    last_good = (root / STATE / "last-good.json").read_bytes()
    hub.publish(make(hub, signer))
    result = run(root, "sync")
    assert result.code == 1
    assert reason in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert snapshot(root, skip=(STATE,)) == before
    assert (root / STATE / "last-good.json").read_bytes() == last_good
    current = state_of(root)
    assert current["applied_revision"] == 1 and reason in current["last_error"]
    assert reason in hub.requests(STATUS)[-1].body["errors"][0]
    assert "bundle refused" in hub.requests(STATUS)[-1].body["errors"][0]


def test_a_file_put_back_never_regains_a_setuid_bit(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    home = root / CODEX_HOME
    home.mkdir(parents=True)
    planted = home / "fast.config.toml"
    planted.write_text("#!/bin/sh\n")
    planted.chmod(0o4755)
    assert enroll(root, hub).code == 0
    files = default_files()
    del files["profiles/fast.config.toml"]
    hub.publish(bundle(signer, revision=2, files=files))
    assert run(root, "sync").code == 0
    assert planted.read_text() == "#!/bin/sh\n"
    assert mode(planted) == 0o755


@pytest.mark.parametrize("jitter", ["nan", "inf", "-1"])
def test_a_jitter_that_is_no_duration_is_a_usage_error(root: Path, jitter: str) -> None:
    result = run(root, "sync", "--jitter", jitter)
    assert result.code == 2 and "Traceback" not in result.err


def test_a_new_key_endorsed_by_the_pinned_key_is_pinned_and_its_release_applied(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    new = Signer(endorsed_by=signer)
    hub.listed_keys = [signer.key("retired"), new.key()]
    hub.publish(bundle(new, revision=2))
    result = run(root, "sync")
    assert result.code == 0, result.err
    assert last_line(result.out) == "revision 2 applied"
    assert new.key_id in json.loads(run(root, "status", "--json").out)["pinned_keys"]
    hub.publish(bundle(new, revision=3))
    assert last_line(run(root, "sync").out) == "revision 3 applied"
    # The keys (and their revocations) are looked at before each new bundle (revisions 1, 2 and
    # 3), not on a 304.
    assert last_line(run(root, "sync").out) == "revision 3 unchanged"
    assert len(hub.requests("/api/v1/keys")) == 3


def test_an_endorsement_chain_through_an_intermediate_key_is_followed(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    middle = Signer(endorsed_by=signer)
    newest = Signer(endorsed_by=middle)
    hub.listed_keys = [newest.key(), middle.key("retired"), signer.key("retired")]
    hub.publish(bundle(newest, revision=2))
    result = run(root, "sync")
    assert result.code == 0, result.err
    assert last_line(result.out) == "revision 2 applied"


def test_a_key_listed_with_a_mismatched_id_fails_the_sync(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    new = Signer(endorsed_by=signer)
    key = {**new.key(), "public_key": Signer().public_key}
    hub.listed_keys = [key]
    hub.publish(bundle(new, revision=2))
    result = run(root, "sync")
    assert result.code == 1 and "does not match its public key" in result.err


# --- server and network faults ------------------------------------------------------------------


def test_a_revoked_device_fails_with_the_servers_reason_and_keeps_its_files(
    root: Path, hub: FakeHub
) -> None:
    assert enroll(root, hub).code == 0
    before = snapshot(root, skip=(STATE,))
    hub.revoked = True
    result = run(root, "sync")
    assert result.code == 1
    assert "answered 401: unknown or revoked device credential" in result.err
    assert snapshot(root, skip=(STATE,)) == before
    assert "401" in json.loads(run(root, "status", "--json").out)["last_error"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("truncate", "the download broke off after"),
        ("oversize", "more than the 8388608 allowed"),
        ("redirect", "redirected to https://elsewhere.example"),
    ],
)
def test_a_broken_download_is_refused_and_the_previous_files_stay(
    root: Path, hub: FakeHub, signer: Signer, fault: str, reason: str
) -> None:
    assert enroll(root, hub).code == 0
    before = snapshot(root, skip=(STATE,))
    hub.publish(bundle(signer, revision=2))
    hub.fault = fault
    result = run(root, "sync")
    assert result.code == 1
    assert reason in result.err
    assert snapshot(root, skip=(STATE,)) == before
    hub.fault = None
    assert last_line(run(root, "sync").out) == "revision 2 applied"


def test_a_team_without_a_release_enrols_and_writes_nothing(root: Path, hub: FakeHub) -> None:
    hub.body = None
    result = enroll(root, hub)
    assert result.code == 0, result.err
    assert "no release is published for team engineering/web yet" in result.out
    assert not (root / ETC).exists()


def test_the_status_report_carries_revision_os_agent_version_and_no_errors(
    root: Path, hub: FakeHub
) -> None:
    assert enroll(root, hub).code == 0
    (report,) = hub.requests(STATUS)
    assert report.headers["Authorization"] == f"Bearer {hub.credential}"
    body = report.body
    assert (body["applied_revision"], body["agent_version"], body["errors"]) == (1, "0.3.2", [])
    assert body["codex_version"] is None and 0 < len(body["os"]) <= 128


def test_a_failing_status_report_is_a_warning_not_a_failed_sync(root: Path, hub: FakeHub) -> None:
    hub.status_code = 500
    result = enroll(root, hub)
    assert result.code == 0
    assert "status report: the server answered 500: status reports are switched off" in result.err
    assert last_line(result.out) == "revision 1 applied"


def test_the_codex_version_is_read_from_the_codex_binary_and_sent(
    root: Path, hub: FakeHub, tmp_path: Path
) -> None:
    codex = tmp_path / "codex"
    codex.write_text("#!/bin/sh\necho 'codex-cli 0.169.0'\n")
    codex.chmod(0o755)
    result = run(
        root, "enroll", "--server", hub.url, "--token", hub.token, "--codex-bin", str(codex)
    )
    assert result.code == 0, result.err
    assert hub.requests("/api/v1/device/enroll")[0].body["codex_version"] == "0.169.0"
    assert hub.requests(BUNDLE)[0].headers["X-Codex-Version"] == "0.169.0"
    assert hub.requests(STATUS)[0].body["codex_version"] == "0.169.0"


def test_commands_that_need_an_enrolment_exit_2_without_one(root: Path) -> None:
    for command in ("sync", "status"):
        result = run(root, command)
        assert result.code == 2 and "not enrolled" in result.err
    assert snapshot(root) == {}


def test_usage_errors_exit_2(root: Path) -> None:
    assert run(root, "sync", "--jitter", "-1").code == 2
    assert run(root, "install", "--interval", "5").code == 2
    assert run(root, "enroll", "--server", "ftp://x", "--token", "t").code == 2
    assert snapshot(root) == {}


def test_a_damaged_last_known_good_bundle_is_downloaded_again_not_trusted(
    root: Path, hub: FakeHub
) -> None:
    assert enroll(root, hub).code == 0
    before = snapshot(root, skip=(STATE,))
    last_good = root / STATE / "last-good.json"
    last_good.write_bytes(last_good.read_bytes().replace(b"gpt-5.5", b"gpt-evil"))
    (root / ETC / "config.toml").write_text("edited = true\n")
    result = run(root, "sync", "--jitter", "0.01")
    assert result.code == 0, result.err
    assert "no longer verifies" in result.err
    assert last_line(result.out) == "revision 1 unchanged"
    assert snapshot(root, skip=(STATE,)) == before
    first, second, third = hub.requests(BUNDLE)[-3:]
    assert "If-None-Match" not in first.headers
    assert second.headers["If-None-Match"] == hub.etag and "If-None-Match" not in third.headers


def test_the_token_can_come_from_standard_input(
    root: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(hub.token + "\n"))
    result = run(root, "enroll", "--server", hub.url, "--token", "-", "--codex-bin", "/none")
    assert result.code == 0, result.err
    assert hub.requests("/api/v1/device/enroll")[0].body["token"] == hub.token


def test_a_target_directory_blocked_by_a_file_fails_with_one_line_and_writes_nothing(
    root: Path, hub: FakeHub
) -> None:
    (root / "etc").write_text("not a directory\n")
    before = snapshot(root)
    result = enroll(root, hub)
    assert result.code == 1
    assert "etc is not a directory" in result.err and len(result.err.strip().splitlines()) == 1
    assert snapshot(root, skip=(STATE, "var")) == before
