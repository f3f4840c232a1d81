"""Delivery per Codex version: a release carries one signed file set per distinct variant of the
organisation's window, and each machine gets the set for the Codex it reports."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from policyhub.delivery.cache import cache
from policyhub.releases import signing
from policyhub.releases.models import Release, ReleaseVariant
from policyhub.releases.services import release_rollback
from tests.delivery.conftest import POLICY
from tests.delivery.test_fetch import Enrol, agent, native

pytestmark = [pytest.mark.django_db(transaction=True)]

WINDOW = """
[codex]
min_version = "0.125.0"
max_version = "0.169.0"
"""
MIXED = WINDOW + POLICY


def bundle_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    body["manifest_fields"] = json.loads(body["manifest"])
    return body


def config_of(body: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(body["files"]["config.toml"])


def test_each_distinct_variant_is_stored_once(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish(MIXED)
    with_profile = Release.objects.get(team_path="platform/ci", current=True)
    # Profile tables (0.125-0.133) and profile files (0.134 on): two sets.
    (tables,) = with_profile.variants.all()
    assert tables.codex == {"versions": [["0.125.0", "0.134.0"]], "native_channel_from": None}
    assert with_profile.codex == {"versions": [["0.134.0", None]], "native_channel_from": "0.166.0"}
    # A team without profiles renders the same files for every version: one set, no variant.
    plain = Release.objects.get(team_path="platform", current=True)
    assert plain.codex == {"versions": [["0.125.0", None]], "native_channel_from": "0.166.0"}
    assert not plain.variants.exists()
    # Every set is signed on its own, naming the versions it is for.
    key = with_profile.signing_key
    for manifest, signature, codex in (
        (with_profile.manifest, with_profile.signature, with_profile.codex),
        (tables.manifest, tables.signature, tables.codex),
    ):
        assert signing.verify(key.public_key, manifest.encode(), signature)
        assert json.loads(manifest)["codex"] == codex


@pytest.mark.parametrize(
    ("reported", "tables"),
    [
        ("0.130.0", True),
        ("0.125.0", True),
        ("0.118.0", True),
        ("0.134.0", False),
        ("0.169.0", False),
    ],
)
def test_the_agent_gets_the_set_for_its_codex(
    publish: Callable[..., Any], enrol: Enrol, client: Client, reported: str, tables: bool
) -> None:
    publish(MIXED)
    _, credential = enrol("platform/ci")
    body = bundle_of(agent(client, credential, **{"X-Codex-Version": reported}))
    config = config_of(body)
    codex = body["manifest_fields"]["codex"]
    if tables:
        assert config["profiles"] == {"deep": {"model_reasoning_effort": "high"}}
        assert "profiles/deep.config.toml" not in body["files"]
        assert codex["native_channel_from"] is None
    else:
        assert "profiles" not in config
        assert tomllib.loads(body["files"]["profiles/deep.config.toml"]) == {
            "model_reasoning_effort": "high"
        }
        assert codex["native_channel_from"] == "0.166.0"


@pytest.mark.parametrize("header", [None, "", "latest", "0.130", "0.130.0.1", "99999.0.0"])
def test_an_unknown_or_odd_version_gets_the_newest_set(
    cast: dict[str, Any],
    publish: Callable[..., Any],
    enrol: Enrol,
    client: Client,
    header: str | None,
) -> None:
    publish(MIXED)
    _, credential = enrol("platform/ci")
    headers = {} if header is None else {"X-Codex-Version": header}
    response = agent(client, credential, **headers)
    release = Release.objects.get(organization=cast["acme"], team_path="platform/ci", current=True)
    assert response["ETag"] == f'"{release.etag}"'
    assert "profiles/deep.config.toml" in bundle_of(response)["files"]


def test_each_set_answers_304_to_its_own_tag(
    publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish(MIXED)
    _, credential = enrol("platform/ci")
    old, new = {"X-Codex-Version": "0.130.0"}, {"X-Codex-Version": "0.169.0"}
    old_tag = agent(client, credential, **old)["ETag"]
    new_tag = agent(client, credential, **new)["ETag"]
    assert old_tag != new_tag
    assert agent(client, credential, **old, **{"If-None-Match": old_tag}).status_code == 304
    # The machine upgraded Codex: its old tag no longer matches, it gets the new layout.
    upgraded = agent(client, credential, **new, **{"If-None-Match": old_tag})
    assert upgraded.status_code == 200 and upgraded["ETag"] == new_tag


def test_the_native_channel_serves_the_newest_set_only_when_it_can_be_used(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish(MIXED)
    _, credential = enrol("platform/ci")
    release = Release.objects.get(organization=cast["acme"], team_path="platform/ci", current=True)
    body = json.loads(native(client, credential).content)
    assert body["config_toml"]["enterprise_managed"][0]["contents"] == release.files["config.toml"]
    # A window that ends before 0.166: no version fetches from us, the channel offers nothing.
    publish(MIXED.replace('max_version = "0.169.0"', 'max_version = "0.140.0"'))
    assert json.loads(native(client, credential).content) == {}
    assert bundle_of(agent(client, credential))["manifest_fields"]["codex"] == {
        "versions": [["0.134.0", None]],
        "native_channel_from": None,
    }


def test_a_window_change_publishes_new_sets(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish(POLICY)
    first = Release.objects.get(team_path="platform/ci", current=True)
    assert first.codex["versions"] == [["0.169.0", None]] and not first.variants.exists()
    publish(MIXED)
    second = Release.objects.get(team_path="platform/ci", current=True)
    assert second.revision == first.revision + 1 and second.variants.count() == 1
    _, credential = enrol("platform/ci")
    assert "profiles" in config_of(
        bundle_of(agent(client, credential, **{"X-Codex-Version": "0.125.0"}))
    )


def test_a_rollback_keeps_every_set(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish(MIXED)
    publish(MIXED.replace('"high"', '"low"'))
    restored = release_rollback(
        organization=cast["acme"], team_path="platform/ci", to_revision=1, actor=cast["admin"]
    )
    assert restored.revision == 3
    (tables,) = restored.variants.all()
    assert tables.codex["versions"] == [["0.125.0", "0.134.0"]]
    state = cache()
    if state is not None:
        state.clear()
    _, credential = enrol("platform/ci")
    body = bundle_of(agent(client, credential, **{"X-Codex-Version": "0.125.0"}))
    assert body["revision"] == 3
    assert config_of(body)["profiles"]["deep"] == {"model_reasoning_effort": "high"}
    assert "revision 3." in body["files"]["config.toml"].splitlines()[0]
    assert ReleaseVariant.objects.filter(release__team_path="platform/ci").count() == 3
