"""The agent on a Codex newer than the newest release PolicyHub had measured when the files were
made (signed beside the manifest): it applies them, warns on stderr and in `status`, and leaves
Codex's native channel out, since the files it writes are read locally by every release while
Codex stops on a config server it cannot use."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from policyhub_agent.verify import LEGACY_VERSION

from policyhub.releases.signing import canonical_json, measurement_message
from providers.codex_versions import CHANGES, NEWEST_MEASURED, OLDEST, Version, version_text
from tests.agent.support import (
    REQUIREMENTS,
    FakeHub,
    Result,
    Signer,
    bundle,
    enroll,
    run,
    serve,
)
from tests.agent.test_sync import BUNDLE, ETC, STATUS, fake_codex

NEWEST = version_text(NEWEST_MEASURED)
# The first release that fetches from a config server (the native channel).
NATIVE_FROM = next(change.version for change in CHANGES if change.config_server)
CODEX = {
    "versions": [[version_text(OLDEST), None]],
    "native_channel_from": NATIVE_FROM,
    "window": [version_text(OLDEST), NEWEST],
}


def later(version: Version) -> list[str]:
    """The next patch, minor and major release after `version`."""
    major, minor, patch = version
    return [
        version_text(v)
        for v in [(major, minor, patch + 1), (major, minor + 1, 0), (major + 1, 0, 0)]
    ]


def over_https(
    root: Path, tmp_path: Path, signer: Signer, data: dict[str, Any], codex: str
) -> tuple[Result, dict[str, Any], str, Result, FakeHub]:
    """Enrol over https with Codex `codex`, then `status`, `status --json` and another sync."""
    fake = FakeHub(signer)
    fake.publish(data)
    (tmp_path / "tls").mkdir()
    binary = str(fake_codex(tmp_path, codex))
    with serve(fake, tmp_path / "tls") as ca:
        result = enroll(root, fake, "--ca-bundle", str(ca), "--codex-bin", binary)
        status = json.loads(run(root, "status", "--json").out)
        text = run(root, "status").out
        again = run(root, "sync")
    return result, status, text, again, fake


@pytest.mark.parametrize("codex", [NEWEST, *later(NEWEST_MEASURED)])
def test_a_codex_newer_than_the_measured_end_warns_and_gets_no_native_channel(
    root: Path, signer: Signer, tmp_path: Path, codex: str
) -> None:
    data = bundle(signer, codex=CODEX, measured_until=NEWEST)
    result, status, text, again, fake = over_https(root, tmp_path, signer, data, codex)
    assert result.code == 0, result.err
    measured = codex == NEWEST
    warning = (
        f"warning: Codex {codex} is newer than {NEWEST}, the newest release PolicyHub had "
        f"measured when revision 1 was made: the files made for {NEWEST} were applied; "
        "Codex's native channel is left out (Codex reads these files itself)"
    )
    assert (warning in result.err) is not measured
    requirements = (root / ETC / "requirements.toml").read_text()
    assert requirements.startswith(REQUIREMENTS)
    assert ("config_server" in tomllib.loads(requirements)) is measured
    assert status["native_channel"] is measured
    assert status["warnings"] == ([] if measured else [warning])
    assert (warning in text) is not measured
    assert ("native channel:   on" in text) is measured
    # An unchanged sync warns again; the status report says which Codex and no error (fleet
    # status flags the machine from the version it reports).
    assert again.code == 0 and (warning in again.err) is not measured
    report = fake.requests(STATUS)[-1].body
    assert (report["codex_version"], report["errors"]) == (codex, [])
    assert fake.requests(BUNDLE)[-1].headers["X-Codex-Version"] == codex


def test_over_plain_http_the_warning_has_no_channel_to_leave_out(
    root: Path, hub: FakeHub, signer: Signer, tmp_path: Path
) -> None:
    newer = later(NEWEST_MEASURED)[1]
    hub.publish(bundle(signer, codex=CODEX, measured_until=NEWEST))
    result = enroll(root, hub, "--codex-bin", str(fake_codex(tmp_path, newer)))
    assert result.code == 0, result.err
    assert f"warning: Codex {newer} is newer than {NEWEST}" in result.err
    assert "native channel is left out" not in result.err


def test_a_release_signed_without_a_statement_counts_as_measured_up_to_the_legacy_release(
    root: Path, hub: FakeHub, signer: Signer, tmp_path: Path
) -> None:
    """Every PolicyHub that signed no statement had measured Codex up to that release."""
    legacy = version_text(LEGACY_VERSION)
    newer = later(LEGACY_VERSION)[0]
    hub.publish(bundle(signer, codex={**CODEX, "window": [version_text(OLDEST), legacy]}))
    result = enroll(root, hub, "--codex-bin", str(fake_codex(tmp_path, newer)))
    assert result.code == 0, result.err
    assert f"warning: Codex {newer} is newer than {legacy}" in result.err
    hub.publish(bundle(signer, revision=2, codex=CODEX, measured_until=newer))
    result = run(root, "sync")
    assert result.code == 0 and "newer than" not in result.err
    assert json.loads(run(root, "status", "--json").out)["warnings"] == []


def statement(signer: Signer, data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`data` with another measurement statement, signed by `signer`."""
    fields = json.loads(measurement_message(data["manifest"], NEWEST))
    fields.update(changes)
    text = canonical_json(fields)
    return {**data, "measurement": text.decode(), "measurement_signature": signer.sign(text)}


def _moved(signer: Signer) -> dict[str, Any]:
    own = bundle(signer, codex=CODEX, measured_until=NEWEST)
    other = bundle(signer, revision=2, codex=CODEX, measured_until=later(NEWEST_MEASURED)[2])
    return {
        **own,
        "measurement": other["measurement"],
        "measurement_signature": other["measurement_signature"],
    }


BROKEN = {
    "another release's": (_moved, "for another manifest"),
    "another key's": (
        lambda signer: statement(Signer(), bundle(signer, codex=CODEX)),
        "measurement's signature does not verify",
    ),
    "no version": (
        lambda signer: statement(signer, bundle(signer, codex=CODEX), measured_until="soon"),
        "signed measurement is malformed",
    ),
    "another purpose": (
        lambda signer: statement(
            signer, bundle(signer, codex=CODEX), purpose="policyhub-signing-key"
        ),
        "signed measurement is malformed",
    ),
    "an extra field": (
        lambda signer: statement(signer, bundle(signer, codex=CODEX), until=None),
        "signed measurement is malformed",
    ),
    "no signature": (
        lambda signer: {
            k: v
            for k, v in bundle(signer, codex=CODEX, measured_until=NEWEST).items()
            if k != "measurement_signature"
        },
        "not a string",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_statement_that_fails_verification_is_refused_and_nothing_is_written(
    root: Path, hub: FakeHub, signer: Signer, case: str
) -> None:
    make, message = BROKEN[case]
    hub.publish(make(signer))
    result = enroll(root, hub)
    assert result.code == 1 and message in result.err
    assert not (root / ETC).exists()
