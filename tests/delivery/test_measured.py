"""Where measurement of Codex ended, signed with every file set: a statement beside the manifest
(bound to it by its sha256) that agents from 0.3.0 verify, while the manifest keeps exactly the
fields agents 0.2.0 check, so they still verify every bundle. `publish` warns for a window
reaching past the measured end."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from policyhub_agent.errors import VerificationError
from policyhub_agent.verify import LEGACY_VERSION, MANIFEST_FIELDS, verify_bundle

from policyhub.policies.services import policy_apply
from policyhub.policies.validation import validate_team
from policyhub.releases import signing
from policyhub.releases.models import Release
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.signed import MANIFEST_CODEX
from policyhub.rendering.render import render_release
from providers.codex_versions import NEWEST_MEASURED, parse_version, version_text
from tests.conftest import acting, make_policy
from tests.delivery.conftest import POLICY
from tests.delivery.test_fetch import Enrol, agent
from tests.delivery.test_versions import MIXED

pytestmark = [pytest.mark.django_db(transaction=True)]

NEWEST = version_text(NEWEST_MEASURED)
LATER = version_text((NEWEST_MEASURED[0], NEWEST_MEASURED[1] + 1, 0))


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def sets_of(release: Release) -> list[tuple[dict[str, Any], str, str]]:
    """(codex, manifest, agent body) of every file set of the release."""
    return [
        (release.codex, release.manifest, release.agent_body),
        *((v.codex, v.manifest, v.agent_body) for v in release.variants.all()),
    ]


def keys_of(release: Release) -> dict[str, str]:
    return {release.signing_key.key_id: release.signing_key.public_key}


def without_statement(body: dict[str, Any]) -> bytes:
    """The bundle as an agent before 0.3.0 reads it: the fields it knows."""
    return encode({k: v for k, v in body.items() if not k.startswith("measurement")})


def test_every_set_is_signed_with_the_newest_measured_release(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish(MIXED)
    release = Release.objects.get(team_path="platform/ci", current=True)
    key = release.signing_key
    assert len(sets_of(release)) == 2
    for codex, manifest, agent_body in sets_of(release):
        assert codex["measured_until"] == NEWEST
        body = json.loads(agent_body)
        statement = json.loads(body["measurement"])
        assert statement == {
            "manifest": hashlib.sha256(manifest.encode()).hexdigest(),
            "measured_until": NEWEST,
            "purpose": "policyhub-codex-measurement",
        }
        assert signing.verify(
            key.public_key, body["measurement"].encode(), body["measurement_signature"]
        )
        assert verify_bundle(agent_body.encode(), keys_of(release), "acme").measured_until == (
            NEWEST_MEASURED
        )
        # What agents 0.2.0 verify, unchanged: the manifest's fields and its codex's exactly.
        signed = json.loads(manifest)
        assert set(signed) == MANIFEST_FIELDS | {"codex"}
        assert set(signed["codex"]) == set(MANIFEST_CODEX)
        old = verify_bundle(without_statement(body), keys_of(release), "acme")
        assert old.files == body["files"] and old.measured_until == LEGACY_VERSION


def test_the_agent_is_served_the_statement_of_its_set(
    publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish(MIXED)
    _, credential = enrol("platform/ci")
    release = Release.objects.get(team_path="platform/ci", current=True)
    for reported in ("0.130.0", LATER):
        response = agent(client, credential, **{"X-Codex-Version": reported})
        assert response.status_code == 200
        bundle = verify_bundle(response.content, keys_of(release), "acme")
        assert bundle.measured_until == NEWEST_MEASURED
        assert bundle.measured(NEWEST_MEASURED) and not bundle.measured(parse_version(LATER))


def test_a_statement_moved_to_another_release_or_altered_is_refused(
    publish: Callable[..., Any],
) -> None:
    publish(MIXED)
    first = Release.objects.get(team_path="batch", current=True)
    publish(MIXED.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"'))
    second = Release.objects.get(team_path="batch", current=True)
    assert second.revision == first.revision + 1
    body, other = json.loads(second.agent_body), json.loads(first.agent_body)
    moved = {**body, "measurement": other["measurement"]}
    moved["measurement_signature"] = other["measurement_signature"]
    with pytest.raises(VerificationError, match="for another manifest"):
        verify_bundle(encode(moved), keys_of(second), "acme")
    later = body["measurement"].replace(f'"{NEWEST}"', f'"{LATER}"')
    assert later != body["measurement"]
    with pytest.raises(VerificationError, match="measurement's signature does not verify"):
        verify_bundle(encode({**body, "measurement": later}), keys_of(second), "acme")
    without_signature = {k: v for k, v in body.items() if k != "measurement_signature"}
    with pytest.raises(VerificationError, match="not a string"):
        verify_bundle(encode(without_signature), keys_of(second), "acme")


def test_a_rollback_keeps_where_measurement_ended_and_signs_it_for_its_manifest(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish(MIXED)
    publish(MIXED.replace('model_reasoning_effort = "high"', 'model_reasoning_effort = "low"'))
    rolled = release_rollback(
        organization=cast["acme"],
        team_path="platform/ci",
        to_revision=1,
        actor=acting(cast["admin"]),
    )
    assert rolled.revision == 3
    for codex, manifest, agent_body in sets_of(rolled):
        assert codex["measured_until"] == NEWEST
        statement = json.loads(json.loads(agent_body)["measurement"])
        assert statement["manifest"] == hashlib.sha256(manifest.encode()).hexdigest()
        assert verify_bundle(agent_body.encode(), keys_of(rolled), "acme").measured_until == (
            NEWEST_MEASURED
        )


def test_the_end_of_measurement_is_part_of_the_content_digest() -> None:
    """A newer measured release makes a new release of every team at the next publish, so the
    machines on it stop warning."""
    policy = make_policy(MIXED)
    rendered = render_release(
        policy, "platform/ci", revision="1", validation=validate_team(policy, "platform/ci")
    )
    assert {v.codex["measured_until"] for v in rendered.variants} == {NEWEST}
    moved = dataclasses.replace(
        rendered,
        variants=[
            dataclasses.replace(v, measured_until=(NEWEST_MEASURED[0], NEWEST_MEASURED[1] + 1, 0))
            for v in rendered.variants
        ],
    )
    assert moved.content_digest != rendered.content_digest


@pytest.mark.parametrize(("max_version", "warned"), [(NEWEST, False), (LATER, True)])
def test_publish_warns_when_the_window_reaches_past_the_measured_end(
    cast: dict[str, Any], max_version: str, warned: bool
) -> None:
    window = f'[codex]\nmin_version = "{NEWEST}"\nmax_version = "{max_version}"\n'
    policy_apply(
        organization=cast["acme"], wanted=make_policy(window + POLICY), actor=acting(cast["admin"])
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("publish", "--org", "acme", "--as", "admin@example.com", stdout=out, stderr=err)
    assert "succeeded 3 new release(s)" in out.getvalue()
    expected = f"warning: codex.max_version: Codex {max_version} is newer than {NEWEST}"
    assert (expected in err.getvalue()) is warned
    assert ("newer than" in err.getvalue()) is warned
