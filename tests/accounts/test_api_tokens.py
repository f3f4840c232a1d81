"""API tokens: a person's credential in one organisation, never above their role, shown once,
stored hashed, revocable, and lowered with the person's role."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from policyhub.accounts.access import token_actor
from policyhub.accounts.models import ApiToken, Membership, Role
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.services import (
    api_token_create,
    api_token_revoke,
    membership_grant,
    membership_remove,
)
from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.policies.services import policy_apply
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy, person

pytestmark = [pytest.mark.django_db]

FLEET = "/api/v1/orgs/acme/fleet/teams"
TOKENS = "/api/v1/orgs/acme/enrollment-tokens"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def token_for(cast: dict[str, Any], who: str, role: str) -> tuple[ApiToken, str]:
    return api_token_create(
        actor=acting(cast[who]), organization=cast["acme"], name=f"{who}-{role}", role=role
    )


def test_a_token_is_stored_hashed_shown_once_and_audited(cast: dict[str, Any]) -> None:
    token, secret = token_for(cast, "admin", Role.ADMIN)
    assert secret.startswith("pht_") and secret not in str(list(ApiToken.objects.values()))
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    event = AuditEvent.objects.get(action="api_token.create")
    assert event.after is not None and secret not in str(event.after)
    assert event.after["role"] == Role.ADMIN


def test_a_token_never_goes_above_its_persons_role(cast: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError) as caught:
        token_for(cast, "auditor", Role.ADMIN)
    assert [i.path for i in caught.value.issues] == ["role"]
    with pytest.raises(ApplicationError):
        token_for(cast, "admin", Role.TEAM_EDITOR)  # a subtree only a team editor has
    with pytest.raises(NotPermitted):
        api_token_create(actor=OPERATOR, organization=cast["acme"], name="x", role=Role.VIEWER)
    with pytest.raises(NotPermitted):
        api_token_create(
            actor=acting(cast["outsider"]), organization=cast["acme"], name="x", role=Role.VIEWER
        )


def test_the_api_takes_a_token_and_acts_at_its_ceiling(cast: dict[str, Any]) -> None:
    _, viewer = token_for(cast, "admin", Role.VIEWER)
    _, admin = token_for(cast, "admin", Role.ADMIN)
    client = Client()
    assert client.get(FLEET, headers=bearer(viewer)).status_code == 200
    body = {"team": "nowhere"}
    refused = client.post(TOKENS, body, "application/json", headers=bearer(viewer))
    assert refused.status_code == 403 and "actor" in refused.json()["errors"]
    # The admin ceiling may: the request reaches the service (which then finds no such team).
    allowed = client.post(TOKENS, body, "application/json", headers=bearer(admin))
    assert allowed.status_code == 400 and "team" in allowed.json()["errors"]


def test_a_token_is_lowered_with_its_persons_role_and_dies_with_the_membership(
    cast: dict[str, Any],
) -> None:
    _, secret = token_for(cast, "admin", Role.ADMIN)
    membership_grant(
        actor=OPERATOR, organization=cast["acme"], user=cast["admin"], role=Role.VIEWER
    )
    client = Client()
    refused = client.post(TOKENS, {"team": "x"}, "application/json", headers=bearer(secret))
    assert refused.status_code == 403
    membership = cast["admin"].memberships.get(organization=cast["acme"])
    membership.delete()
    assert client.get(FLEET, headers=bearer(secret)).status_code == 401


def test_a_token_opens_its_own_organisation_only(cast: dict[str, Any]) -> None:
    _, secret = api_token_create(
        actor=acting(cast["outsider"]), organization=cast["other"], name="x", role=Role.OWNER
    )
    client = Client()
    assert client.get("/api/v1/orgs/other/fleet/teams", headers=bearer(secret)).status_code == 200
    assert client.get(FLEET, headers=bearer(secret)).status_code == 404


def test_revoked_expired_and_unknown_tokens_get_401_and_last_use_is_kept(
    cast: dict[str, Any],
) -> None:
    token, secret = token_for(cast, "admin", Role.VIEWER)
    client = Client()
    assert client.get(FLEET, headers=bearer(secret)).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None and timezone.now() - token.last_used_at < timedelta(
        seconds=30
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert client.get(FLEET, headers=bearer(secret)).status_code == 401
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(days=1))
    api_token_revoke(actor=acting(cast["admin"]), token=token)
    assert client.get(FLEET, headers=bearer(secret)).status_code == 401
    for garbage in ("pht_" + "a" * 43, "pht_short", "pht_" + "é" * 43):
        assert client.get(FLEET, headers=bearer(garbage)).status_code == 401


def test_someone_elses_token_is_revoked_only_by_member_managers(cast: dict[str, Any]) -> None:
    token, _ = token_for(cast, "admin", Role.VIEWER)
    with pytest.raises(NotPermitted):
        api_token_revoke(actor=acting(cast["auditor"]), token=token)
    api_token_revoke(actor=acting(cast["owner"]), token=token, reason="left the team")
    assert AuditEvent.objects.filter(action="api_token.revoke", reason="left the team").exists()


def test_the_api_token_command_prints_the_secret_once_and_lists_without_it(
    cast: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import call_command

    call_command(
        "api_token", "create", "--org", "acme", "--as", "admin", "--name", "ci", "--role", "viewer"
    )
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("pht_")
    call_command("api_token", "list", "--org", "acme")
    listed = capsys.readouterr().out
    assert "admin@example.com" in listed and "ci" in listed and secret not in listed


def test_a_team_editors_token_keeps_to_their_subtree_and_stops_when_they_leave_the_role(
    cast: dict[str, Any],
) -> None:
    acme = cast["acme"]
    policy_apply(organization=acme, wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    editor = person("editor")
    membership_grant(
        actor=OPERATOR, organization=acme, user=editor, role=Role.TEAM_EDITOR, team_path="platform"
    )
    token, _ = api_token_create(
        actor=acting(editor), organization=acme, name="ci", role=Role.TEAM_EDITOR
    )
    edit = Permission.POLICY_EDIT
    authorize(token_actor(token), acme, edit, doing="edit", nodes=["platform/ci"])
    with pytest.raises(NotPermitted, match="only for team platform"):
        authorize(token_actor(token), acme, edit, doing="edit", nodes=["batch"])
    # Promoted, the person edits everything; the token, made for one subtree, edits nothing.
    membership_grant(actor=OPERATOR, organization=acme, user=editor, role=Role.ADMIN)
    for nodes in (["batch"], ["platform/ci"]):
        with pytest.raises(NotPermitted):
            authorize(token_actor(token), acme, edit, doing="edit", nodes=nodes)


def test_a_token_speaks_for_its_person_in_its_own_organisation_only(
    cast: dict[str, Any],
) -> None:
    """A token of acme cannot take its person out of another organisation, nor revoke their
    tokens there, as that person signed in could."""
    outsider, acme, other = cast["outsider"], cast["acme"], cast["other"]
    membership_grant(actor=OPERATOR, organization=acme, user=outsider, role=Role.VIEWER)
    in_acme, _ = api_token_create(
        actor=acting(outsider), organization=acme, name="acme", role=Role.VIEWER
    )
    in_other, _ = api_token_create(
        actor=acting(outsider), organization=other, name="other", role=Role.VIEWER
    )
    with pytest.raises(NotPermitted):
        api_token_revoke(actor=token_actor(in_acme), token=in_other)
    with pytest.raises(NotPermitted):
        membership_remove(
            actor=token_actor(in_acme),
            membership=Membership.objects.get(organization=other, user=outsider),
        )
    assert Membership.objects.filter(organization=other, user=outsider).exists()
    api_token_revoke(actor=token_actor(in_other), token=in_other)
