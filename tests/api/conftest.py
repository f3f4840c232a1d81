"""The world every route of the API can point at: one of everything, in organisation acme."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create, invitation_create, membership_grant
from policyhub.changes.services import change_set_create
from policyhub.fleet.services import device_enroll, enrollment_token_create
from policyhub.policies import document
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release, SigningKey
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.models import Team
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy, person


@dataclass(frozen=True)
class World:
    """One of everything a URL can point at, in organisation acme."""

    ids: Mapping[str, Any]


@pytest.fixture
def world(cast: dict[str, Any]) -> World:
    acme = cast["acme"]
    people = {**cast}
    for role in (Role.TEAM_EDITOR, Role.APPROVER, Role.VIEWER):
        people[role] = person(role.replace("_", "-"))
    policy_apply(organization=acme, wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    membership_grant(
        actor=OPERATOR,
        organization=acme,
        user=people[Role.TEAM_EDITOR],
        role=Role.TEAM_EDITOR,
        team_path="platform",
    )
    viewer = membership_grant(
        actor=OPERATOR, organization=acme, user=people[Role.VIEWER], role=Role.VIEWER
    )
    membership_grant(
        actor=OPERATOR, organization=acme, user=people[Role.APPROVER], role=Role.APPROVER
    )
    run = publish_run_request(organization=acme, actor=OPERATOR)
    publish_run_execute(run_id=run.pk)
    run = PublishRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    token, enrol_secret = enrollment_token_create(
        organization=acme, team_path="platform/ci", actor=OPERATOR
    )
    device, _ = device_enroll(token_secret=enrol_secret, hostname="laptop")
    invitation, _ = invitation_create(
        actor=OPERATOR, organization=acme, email="new@example.com", role=Role.VIEWER
    )
    # The owner's: every other caller revokes someone else's token.
    api_token, _ = api_token_create(
        actor=acting(cast["owner"]), organization=acme, name="ci", role=Role.ADMIN
    )
    wanted = document.dump(org_policy(acme)).replace('model = "codex-ci"', 'model = "gpt-5.5"')
    change_set = change_set_create(
        actor=acting(cast["admin"]), organization=acme, document_text=wanted
    )
    return World(
        {
            "people": people,
            "team": Team.objects.get(organization=acme, path="platform/ci").pk,
            "team_path": "platform/ci",
            "endpoint": "azure-eng",
            "membership": viewer.pk,
            "invitation": invitation.pk,
            "api_token": api_token.pk,
            "change_set": change_set.pk,
            "publish_run": run.pk,
            "release": Release.objects.get(organization=acme, team_path="platform/ci").pk,
            "signing_key": SigningKey.objects.get(organization=acme, status="active").key_id,
            "device": str(device.pk),
            "enrollment_token": token.pk,
            "section": "requirements",  # of a node's edit page
        }
    )
