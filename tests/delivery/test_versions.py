"""Delivery per Codex version: a release carries one signed file set per distinct variant of the
organisation's window, and each machine gets the set for the Codex it reports."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from policyhub_agent.verify import verify_bundle

from policyhub.delivery.cache import cache
from policyhub.delivery.entries import Served, ServedSet
from policyhub.errors import ApplicationError
from policyhub.releases import signing
from policyhub.releases.models import Release, ReleaseVariant
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.signed import LEGACY_CODEX
from policyhub.rendering.render import render_release
from providers.codex_versions import NEWEST_MEASURED, parse_version, version_text
from tests.conftest import OPERATOR, acting, make_policy
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
    window = ["0.125.0", "0.169.0"]
    measured = version_text(NEWEST_MEASURED)
    assert tables.codex == {
        "versions": [["0.125.0", "0.134.0"]],
        "native_channel_from": None,
        "window": window,
        "measured_until": measured,
    }
    assert with_profile.codex == {
        "versions": [["0.134.0", None]],
        "native_channel_from": "0.166.0",
        "window": window,
        "measured_until": measured,
    }
    # A team without profiles renders the same files for every version: one set, no variant.
    plain = Release.objects.get(team_path="platform", current=True)
    assert plain.codex == {
        "versions": [["0.125.0", None]],
        "native_channel_from": "0.166.0",
        "window": window,
        "measured_until": measured,
    }
    assert not plain.variants.exists()
    # Every set is signed on its own, naming the versions it is for (where measurement ended
    # is signed apart: tests/delivery/test_measured.py).
    key = with_profile.signing_key
    for manifest, signature, codex in (
        (with_profile.manifest, with_profile.signature, with_profile.codex),
        (tables.manifest, tables.signature, tables.codex),
    ):
        assert signing.verify(key.public_key, manifest.encode(), signature)
        assert json.loads(manifest)["codex"] == {
            k: v for k, v in codex.items() if k != "measured_until"
        }


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
    # The newest set ends where Codex next changes after the window: 0.142 reads it differently.
    assert bundle_of(agent(client, credential))["manifest_fields"]["codex"] == {
        "versions": [["0.134.0", "0.142.0"]],
        "native_channel_from": None,
        "window": ["0.125.0", "0.140.0"],
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
        organization=cast["acme"],
        team_path="platform/ci",
        to_revision=1,
        actor=acting(cast["admin"]),
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


def test_a_set_covering_split_ranges_is_served_for_each_of_them() -> None:
    """A config feature listed by 0.121-0.123 and again from 0.142 (use_agent_identity): the
    newest set also covers 0.123 up to 0.124, apart from the set in between."""
    text = '[codex]\nmin_version = "0.123.0"\nmax_version = "0.169.0"\n'
    text += "[config.features]\nuse_agent_identity = true\n[teams.t]\n"
    release = render_release(make_policy(text), "t", revision="1")
    newest = release.primary
    assert newest.codex["versions"] == [["0.123.0", "0.124.0"], ["0.142.0", None]]
    (middle,) = [v for v in release.variants if v is not newest]
    served = Served(
        1,
        1,
        '"new"',
        b"new",
        b"{}",
        tuple(newest.spans),
        (ServedSet(tuple(middle.spans), '"mid"', b"mid"),),
    )
    picks = {v: served.for_agent(parse_version(v))[1] for v in ("0.123.0", "0.130.0", "0.150.0")}
    assert picks == {"0.123.0": b"new", "0.130.0": b"mid", "0.150.0": b"new"}
    assert served.for_agent(parse_version("0.118.0"))[1] == b"new"  # below: the lowest set
    assert served.for_agent(None)[1] == b"new"


def test_a_change_of_the_window_alone_is_a_new_release(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    """Same files, other versions: the signed versions (and the native channel) change."""
    publish(POLICY.replace("[teams.platform]", '[teams.platform]\nname = "Platform"'))
    first = Release.objects.get(team_path="platform", current=True)
    publish(WINDOW.replace("0.125.0", "0.160.0") + POLICY)
    second = Release.objects.get(team_path="platform", current=True)
    assert second.revision == first.revision + 1
    assert (
        second.files["config.toml"].split("\n", 2)[2]
        == first.files["config.toml"].split("\n", 2)[2]
    )
    assert second.codex["versions"] == [["0.160.0", None]]


def test_a_rollback_to_content_made_for_fewer_versions_is_refused(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish(POLICY)  # r1: 0.169.0 only
    publish(MIXED.replace('"high"', '"low"'))  # r2: the window widened to 0.125.0
    with pytest.raises(ApplicationError, match=r"made for other Codex versions.*0\.125\.0"):
        release_rollback(
            organization=cast["acme"], team_path="platform/ci", to_revision=1, actor=OPERATOR
        )
    assert Release.objects.filter(team_path="platform/ci").count() == 2


def test_a_rollback_to_a_release_made_before_windows_is_signed_for_0169(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish(POLICY)
    publish(POLICY.replace('"high"', '"low"'))
    # r1 as releases made before support windows were stored: no Codex versions.
    Release.objects.filter(team_path="platform/ci", revision=1).update(codex={})
    restored = release_rollback(
        organization=cast["acme"], team_path="platform/ci", to_revision=1, actor=OPERATOR
    )
    assert restored.codex == LEGACY_CODEX
    _, credential = enrol("platform/ci")
    raw = agent(client, credential, **{"X-Codex-Version": "0.169.0"}).content
    key = restored.signing_key
    bundle = verify_bundle(raw, {key.key_id: key.public_key}, "acme")  # the agent's own check
    assert bundle.revision == 3 and bundle.is_for((0, 169, 0)) and not bundle.is_for((0, 168, 0))
