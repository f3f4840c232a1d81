"""The accounts API: organisations and their settings, members, invitations and API tokens,
through real requests against PostgreSQL, as each role, an outsider and a stale client."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from policyhub.accounts.models import ApiToken, Invitation, Membership, Organization, Role
from policyhub.accounts.services import (
    api_token_create,
    invitation_create,
    membership_grant,
)
from policyhub.audit.models import AuditEvent
from policyhub.policies.services import policy_apply
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy, person

pytestmark = [pytest.mark.django_db]

ORG = "/api/v1/orgs/acme"
MEMBERS = f"{ORG}/members"
INVITATIONS = f"{ORG}/invitations"
TOKENS = f"{ORG}/api-tokens"


def client_of(cast: dict[str, Any], who: str, role: str | None = None, org: str = "acme") -> Any:
    """A client with an API token of `who` in `org`, at `role` (their own role by default)."""
    user = cast[who]
    organization = cast[org]
    if role is None:
        role = Membership.objects.get(organization=organization, user=user).role
    _, secret = api_token_create(
        actor=acting(user), organization=organization, name=f"{who}-{role}", role=role
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def session_of(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def member_id(cast: dict[str, Any], who: str) -> int:
    return Membership.objects.get(organization=cast["acme"], user=cast[who]).pk


def add_member(cast: dict[str, Any], name: str, role: str) -> Any:
    user = person(name)
    membership_grant(actor=OPERATOR, organization=cast["acme"], user=user, role=role)
    cast[name] = user
    return user


def queries_of(client: Any, url: str) -> int:
    """The queries of one GET of `url` (after one warm-up: a token notes its last use once)."""
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(url)
    assert answer.status_code == 200, answer.content
    return len(captured)


# --- organisations ------------------------------------------------------------------------------


def test_the_list_shows_what_the_caller_may_open(cast: dict[str, Any]) -> None:
    membership_grant(
        actor=OPERATOR, organization=cast["other"], user=cast["admin"], role=Role.VIEWER
    )
    session = session_of(cast["admin"])
    assert [o["slug"] for o in session.get("/api/v1/orgs").json()["results"]] == ["acme", "other"]
    # A token sees its own organisation only.
    token = client_of(cast, "admin")
    assert [o["slug"] for o in token.get("/api/v1/orgs").json()["results"]] == ["acme"]
    # An organisation requiring single sign-on does not open to a password session.
    Organization.objects.filter(slug="other").update(sso_required=True)
    assert [o["slug"] for o in session.get("/api/v1/orgs").json()["results"]] == ["acme"]
    assert APIClient().get("/api/v1/orgs").status_code == 401


def test_the_organisation_shows_its_settings_with_an_etag(cast: dict[str, Any]) -> None:
    answer = client_of(cast, "auditor").get(ORG)
    assert answer.status_code == 200 and answer["ETag"]
    body = answer.json()
    assert body["slug"] == "acme" and body["requires_approval"] is False
    assert set(body["codex_window"]) == {
        "min_version",
        "max_version",
        "accept_unenforced",
        "managed_pins",
    }
    assert body["codex_window"]["accept_unenforced"] == []
    Organization.objects.filter(slug="acme").update(
        codex_window={"min_version": "0.166.0", "max_version": "0.169.0"}
    )
    again = client_of(cast, "auditor").get(ORG)
    assert again.json()["codex_window"]["min_version"] == "0.166.0"
    assert again["ETag"] != answer["ETag"]
    assert client_of(cast, "outsider", org="other").get(ORG).status_code == 404


def test_settings_change_with_the_etag_read_and_only_once(cast: dict[str, Any]) -> None:
    admin, owner = client_of(cast, "admin"), client_of(cast, "owner")
    etag = admin.get(ORG)["ETag"]
    assert admin.patch(ORG, {"requires_approval": True}, format="json").status_code == 428
    first = admin.patch(ORG, {"requires_approval": True}, format="json", HTTP_IF_MATCH=etag)
    assert first.status_code == 200 and first.json()["requires_approval"] is True
    assert first["ETag"] == admin.get(ORG)["ETag"] != etag
    second = owner.patch(ORG, {"sso_required": True}, format="json", HTTP_IF_MATCH=etag)
    assert second.status_code == 412
    assert Organization.objects.get(slug="acme").sso_required is False
    assert AuditEvent.objects.filter(action="organization.settings_update").count() == 1


def test_settings_refuse_bad_input_other_roles_and_outsiders(cast: dict[str, Any]) -> None:
    admin = client_of(cast, "admin")
    etag = admin.get(ORG)["ETag"]
    bad = admin.patch(ORG, {"requires_approval": "maybe"}, format="json", HTTP_IF_MATCH=etag)
    assert bad.status_code == 400 and "requires_approval" in bad.json()["errors"]
    empty = admin.patch(ORG, {}, format="json", HTTP_IF_MATCH=etag)
    assert empty.status_code == 400 and "body" in empty.json()["errors"]
    auditor = client_of(cast, "auditor").patch(
        ORG, {"requires_approval": True}, format="json", HTTP_IF_MATCH=etag
    )
    assert auditor.status_code == 403
    # An admin's token with a viewer ceiling may not either.
    ceiling = client_of(cast, "admin", Role.VIEWER).patch(
        ORG, {"requires_approval": True}, format="json", HTTP_IF_MATCH=etag
    )
    assert ceiling.status_code == 403
    outsider = client_of(cast, "outsider", org="other").patch(
        ORG, {"requires_approval": True}, format="json", HTTP_IF_MATCH=etag
    )
    assert outsider.status_code == 404
    assert Organization.objects.get(slug="acme").requires_approval is False


# --- members ------------------------------------------------------------------------------------


def test_members_are_listed_filtered_and_read_one_by_one(cast: dict[str, Any]) -> None:
    auditor = client_of(cast, "auditor")
    listed = auditor.get(MEMBERS).json()["results"]
    assert {(m["user"], m["role"]) for m in listed} == {
        ("owner@example.com", "owner"),
        ("admin@example.com", "admin"),
        ("auditor@example.com", "auditor"),
    }
    admins = auditor.get(MEMBERS, {"role": "admin"}).json()["results"]
    assert [m["user"] for m in admins] == ["admin@example.com"]
    by_email = auditor.get(MEMBERS, {"email": "OWNER@example.com"}).json()["results"]
    assert [m["role"] for m in by_email] == ["owner"]
    bad = auditor.get(MEMBERS, {"role": "emperor"})
    assert bad.status_code == 400 and "role" in bad.json()["errors"]
    one = auditor.get(f"{MEMBERS}/{member_id(cast, 'admin')}")
    assert one.status_code == 200 and one["ETag"] and one.json()["team"] is None
    outsider = client_of(cast, "outsider", org="other")
    assert outsider.get(MEMBERS).status_code == 404
    elsewhere = Membership.objects.get(user=cast["outsider"]).pk
    assert auditor.get(f"{MEMBERS}/{elsewhere}").status_code == 404


def test_a_page_of_members_costs_the_same_however_many_there_are(cast: dict[str, Any]) -> None:
    admin = client_of(cast, "admin")
    few = queries_of(admin, MEMBERS)
    for index in range(40):
        add_member(cast, f"viewer{index}", Role.VIEWER)
    many = queries_of(admin, MEMBERS)
    assert many == few
    page = admin.get(MEMBERS, {"page_size": 10}).json()
    assert len(page["results"]) == 10 and page["next"]
    rest = admin.get(page["next"]).json()
    assert not {m["id"] for m in rest["results"]} & {m["id"] for m in page["results"]}


def test_two_admins_with_the_same_etag_one_wins_the_other_gets_412(cast: dict[str, Any]) -> None:
    add_member(cast, "second", Role.ADMIN)
    first, second = client_of(cast, "admin"), client_of(cast, "second")
    url = f"{MEMBERS}/{member_id(cast, 'auditor')}"
    etag = first.get(url)["ETag"]
    assert second.get(url)["ETag"] == etag
    won = first.patch(url, {"role": Role.APPROVER}, format="json", HTTP_IF_MATCH=etag)
    assert won.status_code == 200 and won.json()["role"] == Role.APPROVER
    assert won["ETag"] == first.get(url)["ETag"]
    lost = second.patch(url, {"role": Role.VIEWER}, format="json", HTTP_IF_MATCH=etag)
    assert lost.status_code == 412
    assert Membership.objects.get(pk=member_id(cast, "auditor")).role == Role.APPROVER
    missing = second.patch(url, {"role": Role.VIEWER}, format="json")
    assert missing.status_code == 428


def test_an_admin_cannot_make_an_owner_but_an_owner_can(cast: dict[str, Any]) -> None:
    url = f"{MEMBERS}/{member_id(cast, 'auditor')}"
    admin = client_of(cast, "admin")
    etag = admin.get(url)["ETag"]
    refused = admin.patch(url, {"role": Role.OWNER}, format="json", HTTP_IF_MATCH=etag)
    assert refused.status_code == 403 and "actor" in refused.json()["errors"]
    assert Membership.objects.get(pk=member_id(cast, "auditor")).role == Role.AUDITOR
    made = client_of(cast, "owner").patch(
        url, {"role": Role.OWNER}, format="json", HTTP_IF_MATCH=etag
    )
    assert made.status_code == 200 and made.json()["role"] == Role.OWNER


def test_a_role_change_names_the_field_it_refuses(cast: dict[str, Any]) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    admin = client_of(cast, "admin")
    url = f"{MEMBERS}/{member_id(cast, 'auditor')}"
    etag = admin.get(url)["ETag"]
    for body, field in (
        ({"role": "emperor"}, "role"),
        ({}, "role"),
        ({"role": Role.TEAM_EDITOR}, "team"),
        ({"role": Role.TEAM_EDITOR, "team": "nowhere"}, "team"),
        ({"role": Role.VIEWER, "team": "platform"}, "team"),
        ({"role": Role.TEAM_EDITOR, "team": "a\x00b"}, "team"),
    ):
        answer = admin.patch(url, body, format="json", HTTP_IF_MATCH=etag)
        assert answer.status_code == 400 and field in answer.json()["errors"], (body, answer.json())
    editor = admin.patch(
        url, {"role": Role.TEAM_EDITOR, "team": "platform/ci"}, format="json", HTTP_IF_MATCH=etag
    )
    assert editor.status_code == 200 and editor.json()["team"] == "platform/ci"


def test_only_managers_change_roles(cast: dict[str, Any]) -> None:
    url = f"{MEMBERS}/{member_id(cast, 'admin')}"
    auditor = client_of(cast, "auditor")
    etag = auditor.get(url)["ETag"]
    answer = auditor.patch(url, {"role": Role.VIEWER}, format="json", HTTP_IF_MATCH=etag)
    assert answer.status_code == 403
    outsider = client_of(cast, "outsider", org="other")
    assert outsider.patch(url, {"role": Role.VIEWER}, format="json").status_code == 404
    assert Membership.objects.get(pk=member_id(cast, "admin")).role == Role.ADMIN


def test_a_member_is_removed_with_the_etag_and_their_tokens_go(cast: dict[str, Any]) -> None:
    auditor_token, _ = api_token_create(
        actor=acting(cast["auditor"]), organization=cast["acme"], name="ci", role=Role.VIEWER
    )
    admin = client_of(cast, "admin")
    url = f"{MEMBERS}/{member_id(cast, 'auditor')}"
    etag = admin.get(url)["ETag"]
    assert admin.delete(url).status_code == 428
    assert admin.delete(url, HTTP_IF_MATCH='"stale"').status_code == 412
    assert admin.delete(url, HTTP_IF_MATCH=etag).status_code == 204
    assert not Membership.objects.filter(organization=cast["acme"], user=cast["auditor"]).exists()
    assert ApiToken.objects.get(pk=auditor_token.pk).revoked_at is not None
    assert admin.get(url).status_code == 404


def test_only_managers_remove_members_and_the_last_owner_stays(cast: dict[str, Any]) -> None:
    add_member(cast, "viewer", Role.VIEWER)
    viewer = client_of(cast, "viewer")
    others = f"{MEMBERS}/{member_id(cast, 'auditor')}"
    # Refused for the role, whatever the ETag says.
    assert viewer.delete(others).status_code == 403
    assert viewer.delete(others, HTTP_IF_MATCH="*").status_code == 403
    assert client_of(cast, "outsider", org="other").delete(others).status_code == 404
    assert Membership.objects.filter(pk=member_id(cast, "auditor")).exists()
    # An admin does not remove an owner; the last owner does not remove themselves.
    url = f"{MEMBERS}/{member_id(cast, 'owner')}"
    assert client_of(cast, "admin").delete(url, HTTP_IF_MATCH="*").status_code == 403
    owner = client_of(cast, "owner")
    kept = owner.delete(url, HTTP_IF_MATCH=owner.get(url)["ETag"])
    assert kept.status_code == 400 and "role" in kept.json()["errors"]


def test_ownership_is_transferred_by_an_owner_to_a_member(cast: dict[str, Any]) -> None:
    url = f"{MEMBERS}/transfer-ownership"
    admin = client_of(cast, "admin")
    assert admin.post(url, {"user": "auditor@example.com"}, format="json").status_code == 403
    owner = session_of(cast["owner"])
    stranger = owner.post(url, {"user": "outsider@example.com"}, format="json")
    assert stranger.status_code == 400 and "user" in stranger.json()["errors"]
    malformed = owner.post(url, {"user": "not an address"}, format="json")
    assert malformed.status_code == 400 and "user" in malformed.json()["errors"]
    moved = owner.post(url, {"user": "admin@example.com"}, format="json")
    assert moved.status_code == 200 and moved.json()["role"] == Role.OWNER
    roles = dict(
        Membership.objects.filter(organization=cast["acme"]).values_list("user__username", "role")
    )
    assert roles["admin"] == Role.OWNER and roles["owner"] == Role.ADMIN


# --- invitations --------------------------------------------------------------------------------


def test_an_invitation_is_created_with_its_link_shown_once(
    cast: dict[str, Any], mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    admin = client_of(cast, "admin")
    with django_capture_on_commit_callbacks(execute=True):
        made = admin.post(
            INVITATIONS, {"email": "New@Example.com", "role": Role.VIEWER}, format="json"
        )
    assert made.status_code == 201, made.json()
    link = made.json()["link"]
    assert "/invitations/phi_" in link and link in mailoutbox[0].body
    assert made.json()["email"] == "new@example.com" and made.json()["team"] is None
    invitation_create(
        actor=OPERATOR, organization=cast["acme"], email="other@example.com", role=Role.ADMIN
    )
    listed = admin.get(INVITATIONS, {"email": "NEW@example.com"})
    assert [i["id"] for i in listed.json()["results"]] == [made.json()["id"]]
    assert len(admin.get(INVITATIONS, {"role": Role.ADMIN}).json()["results"]) == 1
    assert "phi_" not in listed.content.decode() and "link" not in listed.json()["results"][0]
    stored = Invitation.objects.get(pk=made.json()["id"])
    assert stored.secret_hash not in listed.content.decode()


def test_invitations_refuse_bad_input_and_other_roles(cast: dict[str, Any]) -> None:
    admin = client_of(cast, "admin")
    for body, field in (
        ({"email": "nope", "role": Role.VIEWER}, "email"),
        ({"email": "a@example.com", "role": "emperor"}, "role"),
        ({"email": "a@example.com", "role": Role.VIEWER, "expires": "40d"}, "expires"),
        ({"email": "a@example.com", "role": Role.VIEWER, "expires": "soon"}, "expires"),
        ({"email": "a@example.com", "role": Role.TEAM_EDITOR}, "team"),
        ({"email": "admin@example.com", "role": Role.VIEWER}, "email"),
    ):
        answer = admin.post(INVITATIONS, body, format="json")
        assert answer.status_code == 400 and field in answer.json()["errors"], (body, answer.json())
    owner = admin.post(INVITATIONS, {"email": "a@example.com", "role": Role.OWNER}, format="json")
    assert owner.status_code == 403
    auditor = client_of(cast, "auditor")
    assert auditor.get(INVITATIONS).status_code == 403
    body = {"email": "a@example.com", "role": Role.VIEWER}
    assert auditor.post(INVITATIONS, body, format="json").status_code == 403
    outsider = client_of(cast, "outsider", org="other")
    assert outsider.get(INVITATIONS).status_code == 404
    assert not Invitation.objects.exists()


def test_an_invitation_is_revoked_and_leaves_the_pending_list(cast: dict[str, Any]) -> None:
    invitation, _ = invitation_create(
        actor=OPERATOR, organization=cast["acme"], email="x@example.com", role=Role.VIEWER
    )
    url = f"{INVITATIONS}/{invitation.pk}/revoke"
    assert client_of(cast, "auditor").post(url).status_code == 403
    answer = client_of(cast, "admin").post(url)
    assert answer.status_code == 200 and answer.json()["revoked_at"]
    assert client_of(cast, "admin").get(INVITATIONS).json()["results"] == []
    assert client_of(cast, "admin").post(f"{INVITATIONS}/999999/revoke").status_code == 404
    elsewhere, _ = invitation_create(
        actor=OPERATOR, organization=cast["other"], email="y@example.com", role=Role.VIEWER
    )
    assert client_of(cast, "admin").post(f"{INVITATIONS}/{elsewhere.pk}/revoke").status_code == 404
    assert Invitation.objects.get(pk=elsewhere.pk).revoked_at is None


def test_a_page_of_invitations_costs_the_same_however_many(cast: dict[str, Any]) -> None:
    admin = client_of(cast, "admin")
    invitation_create(actor=OPERATOR, organization=cast["acme"], email="0@x.com", role="viewer")
    few = queries_of(admin, INVITATIONS)
    for index in range(1, 30):
        invitation_create(
            actor=OPERATOR, organization=cast["acme"], email=f"{index}@x.com", role=Role.VIEWER
        )
    assert queries_of(admin, INVITATIONS) == few


# --- API tokens ---------------------------------------------------------------------------------


def test_a_person_creates_a_token_and_sees_its_secret_once(cast: dict[str, Any]) -> None:
    session = session_of(cast["auditor"])
    made = session.post(
        TOKENS, {"name": "ci", "role": Role.VIEWER, "expires": "30d"}, format="json"
    )
    assert made.status_code == 201, made.json()
    secret = made.json()["secret"]
    assert secret.startswith("pht_") and made.json()["prefix"] == secret[:10]
    listed = session.get(TOKENS)
    assert [t["id"] for t in listed.json()["results"]] == [made.json()["id"]]
    assert secret not in listed.content.decode() and "secret" not in listed.json()["results"][0]
    assert ApiToken.objects.get(pk=made.json()["id"]).secret_hash not in listed.content.decode()
    # The secret works, at its ceiling.
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert token.get(ORG).status_code == 200
    # A token does not make tokens: a person signs in for that.
    again = token.post(TOKENS, {"name": "more", "role": Role.VIEWER}, format="json")
    assert again.status_code == 403


def test_a_token_request_names_the_field_it_refuses(cast: dict[str, Any]) -> None:
    session = session_of(cast["auditor"])
    for body, field in (
        ({"name": "ci", "role": Role.ADMIN}, "role"),
        ({"name": "ci", "role": "emperor"}, "role"),
        ({"name": "x" * 101, "role": Role.VIEWER}, "name"),
        ({"name": "a\x07b", "role": Role.VIEWER}, "name"),
        ({"name": "ci", "role": Role.VIEWER, "expires": "400d"}, "expires"),
        ({"role": Role.VIEWER}, "name"),
    ):
        answer = session.post(TOKENS, body, format="json")
        assert answer.status_code == 400 and field in answer.json()["errors"], (body, answer.json())
    outsider = session_of(cast["outsider"])
    assert outsider.post(TOKENS, {"name": "x", "role": "viewer"}, format="json").status_code == 404
    assert not ApiToken.objects.exists()


def test_everyones_tokens_are_listed_only_for_managers(cast: dict[str, Any]) -> None:
    admin, auditor = client_of(cast, "admin"), client_of(cast, "auditor")
    assert auditor.get(TOKENS, {"all": "true"}).status_code == 403
    assert {t["user"] for t in auditor.get(TOKENS).json()["results"]} == {"auditor@example.com"}
    everyone = admin.get(TOKENS, {"all": "true"}).json()["results"]
    assert {t["user"] for t in everyone} == {"admin@example.com", "auditor@example.com"}
    bad = admin.get(TOKENS, {"all": "perhaps"})
    assert bad.status_code == 400 and "all" in bad.json()["errors"]


def test_tokens_are_revoked_by_their_person_or_a_manager(cast: dict[str, Any]) -> None:
    admins, _ = api_token_create(
        actor=acting(cast["admin"]), organization=cast["acme"], name="a", role=Role.VIEWER
    )
    auditors, _ = api_token_create(
        actor=acting(cast["auditor"]), organization=cast["acme"], name="b", role=Role.VIEWER
    )
    auditor = client_of(cast, "auditor")
    assert auditor.post(f"{TOKENS}/{admins.pk}/revoke").status_code == 403
    assert ApiToken.objects.get(pk=admins.pk).revoked_at is None
    own = auditor.post(f"{TOKENS}/{auditors.pk}/revoke")
    assert own.status_code == 200 and own.json()["revoked_at"]
    other = client_of(cast, "owner").post(f"{TOKENS}/{admins.pk}/revoke")
    assert other.status_code == 200 and other.json()["user"] == "admin@example.com"
    assert auditor.post(f"{TOKENS}/999999/revoke").status_code == 404
    outsider = client_of(cast, "outsider", org="other")
    assert outsider.post(f"{TOKENS}/{admins.pk}/revoke").status_code == 404


def test_a_page_of_tokens_costs_the_same_however_many(cast: dict[str, Any]) -> None:
    admin = client_of(cast, "admin")
    few = queries_of(admin, f"{TOKENS}?all=true")
    for index in range(30):
        api_token_create(
            actor=acting(cast["auditor"]),
            organization=cast["acme"],
            name=f"t{index}",
            role="viewer",
        )
    assert queries_of(admin, f"{TOKENS}?all=true") == few
