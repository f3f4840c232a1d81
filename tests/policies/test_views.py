"""The pages: members see their organisation's tree and provenance; nobody else sees anything."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from policyhub.policies.services import policy_apply
from tests.conftest import acting, make_policy

POLICY = """
[requirements]
allowed_sandbox_modes = ["read-only", "workspace-write"]
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.platform]
name = "Platform"
[teams."platform/ci".requirements]
allowed_sandbox_modes = ["read-only"]
[teams."platform/ci".config]
sandbox_mode = "read-only"
"""


@pytest.fixture
def seeded(cast: dict[str, Any]) -> dict[str, Any]:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    return cast


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_team_page_says_which_node_set_each_value_and_shows_the_files(
    seeded: dict[str, Any],
) -> None:
    page = client_for(seeded["auditor"]).get("/orgs/acme/teams/platform/ci/").content.decode()
    assert "acme (organisation) → platform → platform/ci" in page
    assert (
        "<code>allowed_sandbox_modes</code></td><td><code>[&quot;read-only&quot;]</code></td><td>platform/ci (narrowed)"
        in page
    )
    assert "<code>model</code></td><td><code>gpt-5.5</code></td><td>acme (organisation)" in page
    assert "requirements.toml" in page and "team acme/platform/ci" in page


def test_the_team_tree_lists_the_teams_with_their_validation_status(
    seeded: dict[str, Any],
) -> None:
    page = client_for(seeded["admin"]).get("/orgs/acme/teams/").content.decode()
    assert page.count('class="ok">valid') == 2
    assert "/orgs/acme/teams/platform/ci/" in page


@pytest.mark.parametrize(
    "url",
    [
        "/orgs/acme/",
        "/orgs/acme/teams/",
        "/orgs/acme/teams/platform/",
        "/orgs/acme/teams/platform/ci/",
    ],
)
def test_an_outsider_gets_404_on_every_page_of_another_organisation(
    seeded: dict[str, Any], url: str
) -> None:
    assert client_for(seeded["outsider"]).get(url).status_code == 404


def test_anonymous_visitors_are_sent_to_login(seeded: dict[str, Any]) -> None:
    response = Client().get("/orgs/acme/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_home_lists_only_the_users_organisations(seeded: dict[str, Any]) -> None:
    page = client_for(seeded["outsider"]).get("/").content.decode()
    assert "/orgs/other/" in page and "/orgs/acme/" not in page
