"""Downloads of a team's current release: the MDM configuration profile and the zip of files."""

from __future__ import annotations

import base64
import io
import json
import plistlib
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from policyhub.releases import signing
from policyhub.releases.models import Release
from policyhub.releases.services.keys import signing_key_rotate
from tests.conftest import acting

pytestmark = [pytest.mark.django_db]


def test_mobileconfig_carries_the_release_for_codex_preferences(
    cast: dict[str, Any], publish: Callable[..., Any], client: Client
) -> None:
    publish()
    release = Release.objects.get(team_path="platform/ci", current=True)
    client.force_login(cast["auditor"])
    response = client.get("/orgs/acme/teams/platform/ci/codex.mobileconfig")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-apple-aspen-config"
    assert f"r{release.revision}.mobileconfig" in response["Content-Disposition"]
    profile = plistlib.loads(response.content)
    assert profile["PayloadType"] == "Configuration"
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.openai.codex"
    decoded = {
        key: base64.b64decode(payload[f"{key}_base64"]).decode()
        for key in ("requirements_toml", "config_toml")
    }
    assert decoded["requirements_toml"] == release.files["requirements.toml"]
    assert decoded["config_toml"] == release.files["config.toml"]
    # Exporting again gives the same identifiers: MDM replaces the profile, never adds one.
    again = plistlib.loads(client.get("/orgs/acme/teams/platform/ci/codex.mobileconfig").content)
    assert again["PayloadUUID"] == profile["PayloadUUID"]


def test_zip_holds_every_file_and_a_manifest_that_verifies(
    cast: dict[str, Any], publish: Callable[..., Any], client: Client
) -> None:
    publish()
    release = Release.objects.get(team_path="platform/ci", current=True)
    client.force_login(cast["admin"])
    response = client.get("/orgs/acme/teams/platform/ci/files.zip")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert names == {*release.files, "manifest.json", "manifest.sig"}
    manifest = archive.read("manifest.json")
    key_id, signature = archive.read("manifest.sig").decode().split()
    assert key_id == release.signing_key.key_id
    assert signing.verify(release.signing_key.public_key, manifest, signature)
    for name, digest in json.loads(manifest)["files"].items():
        assert release.hashes[name] == digest
        assert archive.read(name).decode() == release.files[name]
    assert client.get("/orgs/acme/teams/platform/ci/files.zip").content == response.content


def test_downloads_are_hidden_from_outsiders_and_missing_before_a_publish(
    cast: dict[str, Any], publish: Callable[..., Any], client: Client
) -> None:
    publish()
    client.force_login(cast["outsider"])
    for suffix in ("codex.mobileconfig", "files.zip"):
        assert client.get(f"/orgs/acme/teams/platform/ci/{suffix}").status_code == 404
    client.force_login(cast["admin"])
    assert client.get("/orgs/acme/teams/no/such/team/files.zip").status_code == 404
    client.logout()
    assert client.get("/orgs/acme/teams/platform/ci/files.zip").status_code == 302  # to login


def test_team_page_links_the_published_revision_downloads(
    cast: dict[str, Any], publish: Callable[..., Any], client: Client
) -> None:
    publish()
    client.force_login(cast["admin"])
    page = client.get("/orgs/acme/teams/platform/ci/").content.decode()
    assert "/orgs/acme/teams/platform/ci/codex.mobileconfig" in page
    assert "/orgs/acme/teams/platform/ci/files.zip" in page


def test_keys_api_lists_keys_each_endorsed_by_the_one_before(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any], client: Client
) -> None:
    publish()
    with transaction.atomic():
        signing_key_rotate(organization=cast["acme"], actor=acting(cast["admin"]))
    _, credential = enrol()
    keys = client.get("/api/v1/keys", HTTP_AUTHORIZATION=f"Bearer {credential}").json()["keys"]
    first, second = keys
    assert (first["status"], first["endorsed_by"]) == ("retired", None)
    assert (second["status"], second["endorsed_by"]) == ("active", first["key_id"])
    assert signing.verify(
        first["public_key"],
        signing.endorsement_message(second["key_id"], second["public_key"]),
        second["endorsement"],
    )
