"""Organisations and their people: invitations, roles, removal and ownership."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from policyhub.accounts.access import token_actor
from policyhub.accounts.models import Invitation, Membership, Role
from policyhub.accounts.services import (
    api_token_create,
    invitation_accept,
    invitation_create,
    membership_grant,
    membership_remove,
    ownership_transfer,
)
from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError, NotPermitted
from tests.conftest import OPERATOR, acting, person

pytestmark = [pytest.mark.django_db]


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def invite(cast: dict[str, Any], email: str, role: str = Role.VIEWER, **kwargs: Any) -> str:
    _, secret = invitation_create(
        actor=acting(cast["owner"]), organization=cast["acme"], email=email, role=role, **kwargs
    )
    return secret


def test_org_create_makes_the_organisation_and_its_owner_account(
    db: Any, django_capture_on_commit_callbacks: Any
) -> None:
    out, _ = run(
        "org", "create", "--slug", "initech", "--name", "Initech", "--owner", "Bill@Initech.example"
    )
    assert "organisation initech created; bill@initech.example is its owner" in out
    owner = Membership.objects.get(organization__slug="initech")
    assert (owner.role, owner.user.email, owner.user.has_usable_password()) == (
        Role.OWNER,
        "bill@initech.example",
        False,
    )
    assert "/accounts/password/reset/" in mail.outbox[-1].body
    event = AuditEvent.objects.get(action="organization.create")
    assert event.actor_kind == "operator" and event.actor_label.startswith("operator:")
    with pytest.raises(CommandError, match="cannot be created"):
        run("org", "create", "--slug", "initech", "--name", "Again", "--owner", "x@initech.example")


def test_an_invitation_is_mailed_used_once_and_joins_with_its_role(
    cast: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        secret = invite(cast, "newcomer@example.com", Role.APPROVER)
    [message] = mail.outbox
    assert message.to == ["newcomer@example.com"] and f"/invitations/{secret}/" in message.body
    newcomer = person("newcomer", "newcomer@example.com")
    membership = invitation_accept(actor=acting(newcomer), secret=secret)
    assert (membership.organization, membership.role) == (cast["acme"], Role.APPROVER)
    with pytest.raises(ApplicationError, match="has been used"):
        invitation_accept(actor=acting(newcomer), secret=secret)
    assert Invitation.objects.get().accepted_by == newcomer


def test_an_invitation_is_for_its_address_verified_and_not_after_it_expires(
    cast: dict[str, Any],
) -> None:
    secret = invite(cast, "invited@example.com")
    stranger = person("stranger", "stranger@example.com")
    with pytest.raises(ApplicationError, match=r"this invitation is for invited@example\.com"):
        invitation_accept(actor=acting(stranger), secret=secret)
    unverified = person("invited", "invited@example.com")
    EmailAddress.objects.filter(user=unverified).update(verified=False)
    with pytest.raises(ApplicationError, match="verified"):
        invitation_accept(actor=acting(unverified), secret=secret)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    EmailAddress.objects.filter(user=unverified).update(verified=True)
    with pytest.raises(ApplicationError, match="expired"):
        invitation_accept(actor=acting(unverified), secret=secret)
    with pytest.raises(ApplicationError, match="unknown"):
        invitation_accept(actor=acting(unverified), secret="phi_" + "x" * 43)
    assert not Membership.objects.filter(user=unverified).exists()


def test_a_new_invitation_replaces_a_pending_one_and_members_are_not_invited(
    cast: dict[str, Any],
) -> None:
    first = invite(cast, "twice@example.com")
    second = invite(cast, "twice@example.com", Role.ADMIN)
    twice = person("twice", "twice@example.com")
    with pytest.raises(ApplicationError, match="withdrawn"):
        invitation_accept(actor=acting(twice), secret=first)
    assert invitation_accept(actor=acting(twice), secret=second).role == Role.ADMIN
    with pytest.raises(ApplicationError, match="already a member"):
        invite(cast, "twice@example.com")


def test_a_team_editor_is_invited_to_an_existing_team_only(cast: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError) as caught:
        invite(cast, "ed@example.com", Role.TEAM_EDITOR)
    assert [i.path for i in caught.value.issues] == ["team"]
    with pytest.raises(ApplicationError, match="no team"):
        invite(cast, "ed@example.com", Role.TEAM_EDITOR, team_path="nowhere")


def test_an_admin_cannot_make_an_owner_and_the_last_owner_stays(cast: dict[str, Any]) -> None:
    admin, owner = acting(cast["admin"]), acting(cast["owner"])
    with pytest.raises(NotPermitted, match="make or unmake owners"):
        membership_grant(
            actor=admin, organization=cast["acme"], user=cast["auditor"], role=Role.OWNER
        )
    with pytest.raises(ApplicationError, match="must keep an owner"):
        membership_grant(
            actor=owner, organization=cast["acme"], user=cast["owner"], role=Role.ADMIN
        )
    last = Membership.objects.get(user=cast["owner"], organization=cast["acme"])
    with pytest.raises(ApplicationError, match="must keep an owner"):
        membership_remove(actor=owner, membership=last)
    assert Membership.objects.get(pk=last.pk).role == Role.OWNER


def test_ownership_is_transferred_and_the_old_owner_stays_as_admin(cast: dict[str, Any]) -> None:
    ownership_transfer(actor=acting(cast["owner"]), organization=cast["acme"], to=cast["auditor"])
    roles = dict(
        Membership.objects.filter(organization=cast["acme"]).values_list("user__username", "role")
    )
    assert roles == {"owner": Role.ADMIN, "admin": Role.ADMIN, "auditor": Role.OWNER}
    with pytest.raises(ApplicationError, match="not a member"):
        ownership_transfer(actor=OPERATOR, organization=cast["acme"], to=cast["outsider"])


def test_a_member_may_leave_and_takes_their_api_tokens_along(cast: dict[str, Any]) -> None:
    auditor = acting(cast["auditor"])
    token, _ = api_token_create(
        actor=auditor, organization=cast["acme"], name="n", role=Role.VIEWER
    )
    membership_remove(
        actor=auditor,
        membership=Membership.objects.get(user=cast["auditor"], organization=cast["acme"]),
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    actions = list(AuditEvent.objects.order_by("-pk").values_list("action", flat=True)[:2])
    assert actions == ["membership.remove", "api_token.revoke"]


def test_the_org_commands_invite_change_remove_and_show(cast: dict[str, Any]) -> None:
    out, err = run(
        "org",
        "invite",
        "--org",
        "acme",
        "--email",
        "cli@example.com",
        "--role",
        "viewer",
        "--as",
        "owner",
    )
    assert out.strip().startswith("http") and "/invitations/phi_" in out and "mailed" in err
    run(
        "org",
        "role",
        "--org",
        "acme",
        "--email",
        "auditor@example.com",
        "--role",
        "approver",
        "--as",
        "admin",
    )
    shown, _ = run("org", "show", "--org", "acme")
    assert (
        "auditor@example.com\tapprover" in shown
        and "invited" in shown
        and "cli@example.com" in shown
    )
    run("org", "remove", "--org", "acme", "--email", "auditor@example.com", "--as", "admin")
    assert not Membership.objects.filter(user=cast["auditor"], organization=cast["acme"]).exists()
    run("org", "settings", "--org", "acme", "--sso-required", "on", "--requires-approval", "on")
    cast["acme"].refresh_from_db()
    assert cast["acme"].sso_required and cast["acme"].requires_approval
    with pytest.raises(CommandError, match=r"no user 'viewer@nowhere\.example'"):
        run("org", "role", "--org", "acme", "--email", "viewer@nowhere.example", "--role", "viewer")


def test_a_removal_decides_on_the_role_as_it_is_now_not_as_it_was_read(
    cast: dict[str, Any],
) -> None:
    """The admin's page showed the auditor; meanwhile the auditor became the owner. The removal
    must not go ahead on the old role: an admin may not remove an owner."""
    shown = Membership.objects.get(organization=cast["acme"], user=cast["auditor"])
    ownership_transfer(actor=acting(cast["owner"]), organization=cast["acme"], to=cast["auditor"])
    with pytest.raises(NotPermitted, match="make or unmake owners"):
        membership_remove(actor=acting(cast["admin"]), membership=shown)
    assert Membership.objects.get(pk=shown.pk).role == Role.OWNER


def test_an_invitation_dies_with_its_senders_right_to_send_it(cast: dict[str, Any]) -> None:
    """Removed or demoted, an admin cannot come back (or let anyone in) through invitations
    they sent before."""
    admin = acting(cast["admin"])
    _, comeback = invitation_create(
        actor=admin, organization=cast["acme"], email="alt@example.com", role=Role.ADMIN
    )
    _, friend = invitation_create(
        actor=admin, organization=cast["acme"], email="friend@example.com", role=Role.VIEWER
    )
    membership_grant(
        actor=acting(cast["owner"]), organization=cast["acme"], user=cast["admin"], role=Role.VIEWER
    )
    with pytest.raises(ApplicationError, match="may no longer invite people as admin"):
        invitation_accept(actor=acting(person("alt", "alt@example.com")), secret=comeback)
    with pytest.raises(ApplicationError, match="may no longer invite people as viewer"):
        invitation_accept(actor=acting(person("friend", "friend@example.com")), secret=friend)
    assert not Membership.objects.filter(user__email__in=["alt@example.com", "friend@example.com"])
    # The operator's invitations stand on their own.
    _, operators = invitation_create(
        actor=OPERATOR, organization=cast["acme"], email="op@example.com", role=Role.ADMIN
    )
    assert invitation_accept(actor=acting(person("op", "op@example.com")), secret=operators)


def test_a_person_with_the_longest_address_is_recorded_in_full(cast: dict[str, Any]) -> None:
    email = "a" * 63 + "@" + ".".join(["b" * 60] * 3) + ".example"
    assert len(email) == 254  # the longest an address may be
    user = person("long", email)
    membership_grant(actor=OPERATOR, organization=cast["acme"], user=user, role=Role.ADMIN)
    token, _ = api_token_create(
        actor=acting(user), organization=cast["acme"], name="n", role=Role.VIEWER
    )
    membership_remove(
        actor=token_actor(token),
        membership=Membership.objects.get(organization=cast["acme"], user=user),
    )
    event = AuditEvent.objects.get(action="membership.remove")
    assert event.actor_label.startswith(email) and event.object_key == email
