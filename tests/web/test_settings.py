"""The settings pages: the organisation's rules and name, members, invitations, API tokens, the
Codex window and signing keys; each action offered only to whoever may use it, refusals shown
beside their fields, secrets shown once."""

# ruff: noqa: F811 (the `world` fixture is imported, and named by the tests that use it)

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from policyhub.accounts.models import ApiToken, Invitation, Membership, Organization, Role
from policyhub.accounts.services import membership_grant
from policyhub.changes.models import ChangeSet
from policyhub.releases.models import SigningKey
from policyhub.web.pages import PAGE_SIZE
from tests.api.conftest import World, world  # noqa: F401
from tests.conftest import OPERATOR, person

pytestmark = [pytest.mark.django_db]


def url(name: str, *args: Any) -> str:
    return reverse(name, args=["acme", *args])


def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def membership(world: World, name: str) -> Membership:
    people = world.ids["people"]
    return Membership.objects.get(organization=people["acme"], user=people[name])


def drafts_of(user: Any) -> list[tuple[int, str]]:
    """A person's drafts and their documents, to show a refused edit stored nothing."""
    found = ChangeSet.objects.filter(author=user, status=ChangeSet.Status.DRAFT)
    return list(found.order_by("pk").values_list("pk", "document"))


PAGES = [
    "web-settings",
    "web-settings-members",
    "web-settings-api-tokens",
    "web-settings-codex",
    "web-settings-signing-keys",
]


# --- who sees what ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*PAGES, "web-settings-invitations"])
def test_admin_sees_every_page_with_its_forms(client: Client, world: World, name: str) -> None:
    response = signed_in(client, world.ids["people"]["admin"]).get(url(name))
    assert response.status_code == 200
    assert 'method="post"' in response.content.decode()


@pytest.mark.parametrize("name", PAGES)
def test_auditor_reads_without_edit_controls(client: Client, world: World, name: str) -> None:
    response = signed_in(client, world.ids["people"]["auditor"]).get(url(name))
    html = response.content.decode()
    assert response.status_code == 200
    # An auditor may hold API tokens of their own: that page alone offers a form.
    posts = re.findall(r'<form method="post" action="(/orgs/[^"]+)"', html)
    allowed = {url("web-settings-api-tokens")} if name == "web-settings-api-tokens" else set()
    assert set(posts) <= allowed
    assert url("web-settings-invitations") not in html


@pytest.mark.parametrize(
    ("name", "args", "data"),
    [
        ("web-settings", [], {"requires_approval": "on"}),
        ("web-settings-name", [], {"name": "Evil"}),
        (
            "web-settings-invitations",
            [],
            {"email": "x@example.com", "role": "viewer", "expires": "7d"},
        ),
        ("web-settings-codex", [], {"min_version": "0.125.0", "max_version": "0.130.0"}),
        ("web-settings-signing-keys", [], {}),
        ("web-ownership-transfer", [], {"user": "auditor@example.com"}),
    ],
)
def test_forged_posts_of_an_auditor_are_refused(
    client: Client, world: World, name: str, args: list[Any], data: dict[str, str]
) -> None:
    people = world.ids["people"]
    keys = SigningKey.objects.count()
    response = signed_in(client, people["auditor"]).post(url(name, *args), data)
    assert response.status_code == 403
    acme = Organization.objects.get(pk=people["acme"].pk)
    assert not acme.requires_approval and acme.name == "Acme"
    assert SigningKey.objects.count() == keys
    assert not Invitation.objects.filter(email="x@example.com").exists()
    assert not ChangeSet.objects.filter(author=people["auditor"]).exists()


def test_forged_member_posts_of_a_viewer_are_refused(client: Client, world: World) -> None:
    people = world.ids["people"]
    target = membership(world, Role.APPROVER)
    viewer = signed_in(client, people[Role.VIEWER])
    role = {f"m{target.pk}-role": "admin", f"m{target.pk}-team": ""}
    assert viewer.post(url("web-member-role", target.pk), role).status_code == 403
    assert viewer.post(url("web-member-remove", target.pk)).status_code == 403
    revoke = url("web-invitation-revoke", world.ids["invitation"])
    assert viewer.post(revoke).status_code == 403
    assert Membership.objects.get(pk=target.pk).role == Role.APPROVER
    assert Invitation.objects.get(pk=world.ids["invitation"]).revoked_at is None


@pytest.mark.parametrize("name", [*PAGES, "web-settings-invitations"])
def test_outsider_gets_404(client: Client, world: World, name: str) -> None:
    assert signed_in(client, world.ids["people"]["outsider"]).get(url(name)).status_code == 404


def test_invitations_page_needs_members_manage(client: Client, world: World) -> None:
    response = signed_in(client, world.ids["people"]["auditor"]).get(
        url("web-settings-invitations")
    )
    assert response.status_code == 403


# --- the organisation ---------------------------------------------------------------------------


def test_admin_turns_on_approval_and_sso(client: Client, world: World) -> None:
    admin = signed_in(client, world.ids["people"]["admin"])
    response = admin.post(url("web-settings"), {"requires_approval": "on"}, follow=True)
    acme = Organization.objects.get(slug="acme")
    assert (acme.requires_approval, acme.sso_required) == (True, False)
    assert "rules are saved" in response.content.decode()
    admin.post(url("web-settings"), {"sso_required": "on"})
    acme.refresh_from_db()
    assert (acme.requires_approval, acme.sso_required) == (False, True)


def test_renaming_goes_into_the_draft(client: Client, world: World) -> None:
    people = world.ids["people"]
    response = signed_in(client, people["admin"]).post(
        url("web-settings-name"), {"name": "Acme Corp"}, follow=True
    )
    assert "unpublished change set" in response.content.decode()
    draft = ChangeSet.objects.get(author=people["admin"], status=ChangeSet.Status.DRAFT)
    assert "Acme Corp" in draft.document
    assert Organization.objects.get(slug="acme").name == "Acme"


def test_a_blank_name_is_shown_beside_its_field(client: Client, world: World) -> None:
    people = world.ids["people"]
    drafts = drafts_of(people["admin"])
    response = signed_in(client, people["admin"]).post(url("web-settings-name"), {"name": ""})
    assert response.status_code == 400
    assert 'class="errorlist' in response.content.decode()
    assert drafts_of(people["admin"]) == drafts


# --- members ------------------------------------------------------------------------------------


def test_admin_changes_a_role_and_makes_a_team_editor(client: Client, world: World) -> None:
    target = membership(world, Role.VIEWER)
    admin = signed_in(client, world.ids["people"]["admin"])
    prefix = f"m{target.pk}"
    response = admin.post(
        url("web-member-role", target.pk),
        {f"{prefix}-role": Role.TEAM_EDITOR, f"{prefix}-team": "platform/ci"},
        follow=True,
    )
    target.refresh_from_db()
    assert target.role == Role.TEAM_EDITOR and target.team is not None
    assert target.team.path == "platform/ci"
    assert "is now team editor" in response.content.decode()


def test_a_team_editor_without_a_team_is_refused_beside_the_field(
    client: Client, world: World
) -> None:
    target = membership(world, Role.VIEWER)
    prefix = f"m{target.pk}"
    response = signed_in(client, world.ids["people"]["admin"]).post(
        url("web-member-role", target.pk),
        {f"{prefix}-role": Role.TEAM_EDITOR, f"{prefix}-team": ""},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "is required for a team editor" in html
    # What was typed stays: the team editor role is still selected in that row.
    assert re.search(r'<option value="team_editor" selected>', html)
    assert Membership.objects.get(pk=target.pk).role == Role.VIEWER


def test_admin_is_offered_no_owner_controls_and_cannot_make_an_owner(
    client: Client, world: World
) -> None:
    people = world.ids["people"]
    owner = membership(world, "owner")
    admin = signed_in(client, people["admin"])
    html = admin.get(url("web-settings-members")).content.decode()
    assert url("web-member-role", owner.pk) not in html
    assert '<option value="owner"' not in html
    assert url("web-ownership-transfer") not in html
    target = membership(world, Role.VIEWER)
    forged = {f"m{target.pk}-role": Role.OWNER, f"m{target.pk}-team": ""}
    # Not a choice offered to an admin: the form refuses it.
    assert admin.post(url("web-member-role", target.pk), forged).status_code == 400
    response = admin.post(url("web-member-remove", owner.pk))
    assert response.status_code == 403
    assert "make or unmake owners" in response.content.decode()
    assert Membership.objects.filter(pk=owner.pk, role=Role.OWNER).exists()
    assert Membership.objects.get(pk=target.pk).role == Role.VIEWER


def test_admin_removes_a_member_and_their_tokens_go(client: Client, world: World) -> None:
    target = membership(world, Role.APPROVER)
    response = signed_in(client, world.ids["people"]["admin"]).post(
        url("web-member-remove", target.pk), follow=True
    )
    assert not Membership.objects.filter(pk=target.pk).exists()
    assert "is no longer a member" in response.content.decode()


def test_the_last_owner_cannot_be_removed_and_says_why(client: Client, world: World) -> None:
    owner = membership(world, "owner")
    response = signed_in(client, world.ids["people"]["owner"]).post(
        url("web-member-remove", owner.pk)
    )
    assert response.status_code == 400
    assert "must keep an owner" in response.content.decode()
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_owner_transfers_ownership_and_stays_an_admin(client: Client, world: World) -> None:
    people = world.ids["people"]
    owner = signed_in(client, people["owner"])
    assert url("web-ownership-transfer") in owner.get(url("web-settings-members")).content.decode()
    response = owner.post(url("web-ownership-transfer"), {"user": "admin@example.com"}, follow=True)
    assert "is now an owner" in response.content.decode()
    assert membership(world, "admin").role == Role.OWNER
    assert membership(world, "owner").role == Role.ADMIN


def test_transfer_to_a_stranger_is_shown_beside_the_field(client: Client, world: World) -> None:
    response = signed_in(client, world.ids["people"]["owner"]).post(
        url("web-ownership-transfer"), {"user": "outsider@example.com"}
    )
    assert response.status_code == 400
    assert "is not a member of acme" in response.content.decode()
    assert 'value="outsider@example.com"' in response.content.decode()
    assert membership(world, "owner").role == Role.OWNER


def test_members_page_by_page(
    client: Client, world: World, django_assert_max_num_queries: Any
) -> None:
    acme = world.ids["people"]["acme"]
    for n in range(PAGE_SIZE):
        membership_grant(
            actor=OPERATOR, organization=acme, user=person(f"m{n:02d}"), role=Role.VIEWER
        )
    admin = signed_in(client, world.ids["people"]["admin"])
    # Session (read and saved: three), user, organisation, membership twice, the members.
    with django_assert_max_num_queries(9):
        first = admin.get(url("web-settings-members")).content.decode()
    assert first.count('<tr id="member-') == PAGE_SIZE
    after = re.search(r'href="\?(after=\d+)"', first)
    assert after is not None
    second = admin.get(f"{url('web-settings-members')}?{after.group(1)}").content.decode()
    assert 0 < second.count('<tr id="member-') < PAGE_SIZE
    found = admin.get(url("web-settings-members"), {"q": "m07@"}).content.decode()
    assert found.count('<tr id="member-') == 1 and "m07@example.com" in found


# --- invitations --------------------------------------------------------------------------------


def test_invitation_link_is_shown_once(client: Client, world: World) -> None:
    admin = signed_in(client, world.ids["people"]["admin"])
    data = {"email": "newbie@example.com", "role": "viewer", "team": "", "expires": "7d"}
    response = admin.post(url("web-settings-invitations"), data, follow=True)
    html = response.content.decode()
    link = re.search(r'<code id="invitation-link">([^<]+)</code>', html)
    assert link is not None and "/invitations/" in link.group(1)
    assert 'data-copy="#invitation-link"' in html
    assert Invitation.objects.filter(email="newbie@example.com", revoked_at=None).exists()
    again = admin.get(url("web-settings-invitations")).content.decode()
    assert link.group(1) not in again and "newbie@example.com" in again


def test_invitation_errors_beside_fields_and_nothing_stored(client: Client, world: World) -> None:
    admin = signed_in(client, world.ids["people"]["admin"])
    data = {"email": "editor@example.com", "role": "team_editor", "team": "", "expires": "7d"}
    response = admin.post(url("web-settings-invitations"), data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "is required for a team editor" in html and 'value="editor@example.com"' in html
    member = {"email": "viewer@example.com", "role": "viewer", "team": "", "expires": "7d"}
    assert (
        "already a member" in admin.post(url("web-settings-invitations"), member).content.decode()
    )
    assert not Invitation.objects.filter(
        email__in=["editor@example.com", "viewer@example.com"]
    ).exists()


def test_admin_cannot_invite_an_owner(client: Client, world: World) -> None:
    admin = signed_in(client, world.ids["people"]["admin"])
    html = admin.get(url("web-settings-invitations")).content.decode()
    assert '<option value="owner"' not in html
    data = {"email": "boss@example.com", "role": "owner", "team": "", "expires": "7d"}
    assert admin.post(url("web-settings-invitations"), data).status_code == 400
    assert not Invitation.objects.filter(email="boss@example.com").exists()


def test_withdraw_an_invitation(client: Client, world: World) -> None:
    pk = world.ids["invitation"]
    response = signed_in(client, world.ids["people"]["admin"]).post(
        url("web-invitation-revoke", pk), follow=True
    )
    assert Invitation.objects.get(pk=pk).revoked_at is not None
    assert "No invitation is pending" in response.content.decode()


# --- API tokens ---------------------------------------------------------------------------------


def test_token_secret_is_shown_once(client: Client, world: World) -> None:
    auditor = signed_in(client, world.ids["people"]["auditor"])
    data = {"name": "reports", "role": "auditor", "expires": "30d"}
    html = auditor.post(url("web-settings-api-tokens"), data, follow=True).content.decode()
    secret = re.search(r'<code id="api-token-secret">([^<]+)</code>', html)
    assert secret is not None and 'data-copy="#api-token-secret"' in html
    token = ApiToken.objects.get(name="reports")
    assert secret.group(1).startswith(token.prefix) and token.role == Role.AUDITOR
    again = auditor.get(url("web-settings-api-tokens")).content.decode()
    assert secret.group(1) not in again and "reports" in again


def test_a_token_above_ones_role_is_refused(client: Client, world: World) -> None:
    auditor = signed_in(client, world.ids["people"]["auditor"])
    html = auditor.get(url("web-settings-api-tokens")).content.decode()
    assert '<option value="admin"' not in html
    data = {"name": "sneaky", "role": "admin", "expires": "30d"}
    assert auditor.post(url("web-settings-api-tokens"), data).status_code == 400
    blank = {"name": "", "role": "auditor", "expires": "30d"}
    response = auditor.post(url("web-settings-api-tokens"), blank)
    assert response.status_code == 400 and 'class="errorlist' in response.content.decode()
    assert not ApiToken.objects.filter(user=world.ids["people"]["auditor"]).exists()


def test_admin_sees_everyones_tokens_and_revokes_one(client: Client, world: World) -> None:
    people = world.ids["people"]
    admin = signed_in(client, people["admin"])
    own = admin.get(url("web-settings-api-tokens")).content.decode()
    assert "You have no API token" in own
    everyone = admin.get(url("web-settings-api-tokens"), {"all": "1"}).content.decode()
    assert "owner@example.com" in everyone
    pk = world.ids["api_token"]
    admin.post(url("web-api-token-revoke", pk), {"all": "1"})
    assert ApiToken.objects.get(pk=pk).revoked_at is not None


def test_others_tokens_are_not_theirs_to_see_or_revoke(client: Client, world: World) -> None:
    auditor = signed_in(client, world.ids["people"]["auditor"])
    assert auditor.get(url("web-settings-api-tokens"), {"all": "1"}).status_code == 403
    pk = world.ids["api_token"]
    assert auditor.post(url("web-api-token-revoke", pk)).status_code == 403
    assert ApiToken.objects.get(pk=pk).revoked_at is None


# --- the Codex window ---------------------------------------------------------------------------


def test_codex_window_edit_goes_into_the_draft(client: Client, world: World) -> None:
    people = world.ids["people"]
    admin = signed_in(client, people["admin"])
    data = {
        "min_version": "0.125.0",
        "max_version": "0.130.0",
        "accept_unenforced": "",
        "managed_pins": "",
    }
    response = admin.post(url("web-settings-codex"), data, follow=True)
    html = response.content.decode()
    assert "unpublished change set" in html
    draft = ChangeSet.objects.get(author=people["admin"], status=ChangeSet.Status.DRAFT)
    assert any("codex" in line and "0.130.0" in line for line in draft.plan)
    assert reverse("web-change-set", args=["acme", draft.pk]) in html
    assert Organization.objects.get(slug="acme").codex_window == {}


def test_a_bad_version_is_shown_beside_its_field(client: Client, world: World) -> None:
    people = world.ids["people"]
    drafts = drafts_of(people["admin"])
    data = {
        "min_version": "banana",
        "max_version": "0.130.0",
        "accept_unenforced": "",
        "managed_pins": "",
    }
    response = signed_in(client, people["admin"]).post(url("web-settings-codex"), data)
    html = response.content.decode()
    assert response.status_code == 400
    field = re.search(r'<div class="field">(.*?)</div>', html, re.S)
    assert field is not None and "errorlist" in field.group(1) and "banana" in field.group(1)
    assert drafts_of(people["admin"]) == drafts


def test_a_team_editor_is_offered_no_window_edit(client: Client, world: World) -> None:
    editor = signed_in(client, world.ids["people"][Role.TEAM_EDITOR])
    html = editor.get(url("web-settings-codex")).content.decode()
    assert "Change the window" not in html
    data = {"min_version": "0.125.0", "max_version": "0.130.0"}
    assert editor.post(url("web-settings-codex"), data).status_code == 403


# --- signing keys -------------------------------------------------------------------------------


def test_rotate_the_signing_key(
    client: Client, world: World, django_assert_max_num_queries: Any
) -> None:
    acme = world.ids["people"]["acme"]
    before = SigningKey.objects.get(organization=acme, status="active")
    admin = signed_in(client, world.ids["people"]["admin"])
    html = admin.get(url("web-settings-signing-keys")).content.decode()
    assert before.key_id in html and "data-confirm" in html
    response = admin.post(url("web-settings-signing-keys"), follow=True)
    after = SigningKey.objects.get(organization=acme, status="active")
    assert after.pk != before.pk and after.endorsed_by_id == before.pk
    page = response.content.decode()
    assert after.key_id in page and "retired" in page
    with django_assert_max_num_queries(9):
        admin.get(url("web-settings-signing-keys"))


def test_revoke_a_compromised_signing_key(
    client: Client, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    first = SigningKey.objects.get(organization=acme, status="active")
    admin = signed_in(client, people["admin"])
    html = admin.get(url("web-settings-signing-keys")).content.decode()
    assert "Revoke a compromised key" in html and url("web-signing-key-revoke") in html
    assert f'<option value="{first.key_id}">' in html and "data-confirm" in html
    for data, why in (
        ({"key_id": first.key_id, "reason": ""}, "This field is required."),
        ({"key_id": "0123456789abcdef", "reason": "lost"}, "no signing key"),
    ):
        refused = admin.post(url("web-signing-key-revoke"), data)
        assert refused.status_code == 400 and why in refused.content.decode(), data
    assert SigningKey.objects.get(pk=first.pk).status == "active"
    with django_capture_on_commit_callbacks() as handed_over:
        done = admin.post(
            url("web-signing-key-revoke"),
            {"key_id": first.key_id, "reason": "laptop stolen"},
            follow=True,
        )
    assert len(handed_over) == 1  # the re-signing, for a worker once this commits
    first.refresh_from_db()
    new = SigningKey.objects.get(organization=acme, status="active")
    assert (first.status, first.revocation_reason) == ("revoked", "laptop stolen")
    page = done.content.decode()
    assert f"Key {first.key_id} is revoked" in page
    assert f"new active key {new.key_id} is endorsed by no key" in page
    assert "must be enrolled again" in page and "laptop stolen" in page
    # Until the worker has re-signed them, the page says how many teams wait.
    assert "3 teams still get a release signed by a revoked key" in page
    # The revoked key is no longer offered.
    assert f'<option value="{first.key_id}">' not in page


def test_a_revocation_needs_the_permission_and_the_csrf_token(world: World) -> None:
    people = world.ids["people"]
    key = SigningKey.objects.get(organization=people["acme"], status="active")
    viewer = signed_in(Client(), people[Role.VIEWER])
    assert (
        "Revoke a compromised key"
        not in viewer.get(url("web-settings-signing-keys")).content.decode()
    )
    data = {"key_id": key.key_id, "reason": "x"}
    assert viewer.post(url("web-signing-key-revoke"), data).status_code == 403
    forged = signed_in(Client(enforce_csrf_checks=True), people["admin"])
    assert forged.post(url("web-signing-key-revoke"), data).status_code == 403
    assert SigningKey.objects.get(pk=key.pk).status == "active"


@pytest.mark.parametrize("name", PAGES)
def test_query_counts_are_fixed(
    client: Client, world: World, django_assert_max_num_queries: Any, name: str
) -> None:
    admin = signed_in(client, world.ids["people"]["admin"])
    # Session (read and saved: three), user, organisation, membership twice, the page's rows
    # and, for the Codex page, the person's draft.
    with django_assert_max_num_queries(10):
        assert admin.get(url(name)).status_code == 200
