"""The pages that show the Codex window say when it reaches past the newest measured release:
the Codex versions settings and the team's releases page (which also says, for every release,
where measurement ended when it was made)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from policyhub.policies.services import policy_apply
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request
from providers.codex_versions import NEWEST_MEASURED, version_text
from tests.conftest import OPERATOR, THREE_TEAMS, make_policy

pytestmark = [pytest.mark.django_db]

NEWEST = version_text(NEWEST_MEASURED)
LATER = version_text((NEWEST_MEASURED[0], NEWEST_MEASURED[1] + 1, 0))


def publish(acme: Any, max_version: str) -> None:
    window = f'[codex]\nmin_version = "{NEWEST}"\nmax_version = "{max_version}"\n'
    policy_apply(organization=acme, wanted=make_policy(window + THREE_TEAMS), actor=OPERATOR)
    run = publish_run_request(organization=acme, actor=OPERATOR)
    done = publish_run_execute(run_id=run.pk)
    assert done is not None and done.status == "succeeded", done and done.error


@pytest.mark.parametrize(("max_version", "warned"), [(NEWEST, False), (LATER, True)])
def test_the_settings_and_releases_pages_warn_for_a_window_past_the_measured_end(
    cast: dict[str, Any], client: Client, max_version: str, warned: bool
) -> None:
    publish(cast["acme"], max_version)
    client.force_login(cast["auditor"])
    warning = f"Codex {LATER} is newer than {NEWEST}, the newest release PolicyHub ha"
    settings = client.get("/orgs/acme/settings/codex/").content.decode()
    assert f"<strong>{max_version}</strong>" in settings
    assert ('id="window-unmeasured"' in settings) is warned
    assert (warning in settings) is warned
    releases = client.get("/orgs/acme/releases/platform/ci/").content.decode()
    assert f"Made for the support window Codex {NEWEST} to {max_version}" in releases
    assert f"PolicyHub had measured Codex up to {NEWEST} when it was made" in releases
    assert ('id="serving-unmeasured"' in releases) is warned
    assert (warning in releases) is warned
