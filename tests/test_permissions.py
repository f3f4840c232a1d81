"""Who may do what, tried: every service that changes something, run by every kind of actor.

The matrix below says, per service, which actors succeed; everyone else must be refused with
NotPermitted (or, for the invitation, an ApplicationError naming the address) and change
nothing. Services are discovered from the code: one without an entry here (or a stated reason
why it checks nothing itself) fails the test, and so does a command with `--as` without one.

Actors: the roles of one organisation, a member of another organisation, someone invited but
not yet a member, an admin's API token whose ceiling is viewer (it must act as a viewer), and
the server operator.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import re
import sys
import tempfile
from argparse import ArgumentParser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

import policyhub
from policyhub.accounts.access import token_actor
from policyhub.accounts.models import ApiToken, Invitation, Membership, Organization, Role
from policyhub.accounts.services import (
    api_token_create,
    api_token_revoke,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_grant,
    membership_remove,
    organization_create,
    organization_settings_update,
    ownership_transfer,
)
from policyhub.actors import Actor
from policyhub.audit.models import AuditEvent
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import (
    change_set_approve,
    change_set_create,
    change_set_describe,
    change_set_discard,
    change_set_draft_edit,
    change_set_reject,
    change_set_schedule,
    change_set_submit,
)
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.exports.services import (
    audit_export_manifest,
    audit_export_start,
    receipts_export_manifest,
    receipts_export_start,
)
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.fleet.services import (
    device_enroll,
    device_move,
    device_revoke,
    enrollment_token_create,
    enrollment_token_revoke,
)
from policyhub.policies import document
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply, team_move
from policyhub.releases.models import Release, SigningKey
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.revocation import signing_key_revoke
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.services import team_create
from tests.conftest import OPERATOR, THREE_TEAMS, make_policy, person

pytestmark = [pytest.mark.django_db]

ACTORS = (
    "owner",
    "admin",
    "editor",
    "approver",
    "auditor",
    "viewer",
    "outsider",
    "invitee",
    "token",
    "operator",
)
MANAGERS = frozenset({"owner", "admin", "operator"})
EDITORS = MANAGERS | {"editor"}  # the team editor's scope is team platform
PEOPLE = frozenset({"owner", "admin", "editor", "approver", "auditor", "viewer"})
AUDITORS = frozenset({"owner", "admin", "auditor", "operator"})  # read and export the trail
CHANGED = THREE_TEAMS + "\n[teams.batch.requirements]\nallow_login_shell = false\n"


@dataclass
class World:
    """Two organisations with people, a published policy, devices, tokens and a change set."""

    acme: Organization
    users: dict[str, Any]
    actors: dict[str, Actor]
    token: ApiToken
    device: Device
    enrollment_token: EnrollmentToken
    invitation: Invitation
    invitation_secret: str
    draft: ChangeSet
    submitted: ChangeSet
    serial: list[int] = field(default_factory=lambda: [0])

    def next(self) -> int:
        self.serial[0] += 1
        return self.serial[0]


def build_world() -> World:
    users = {name: person(name) for name in (*PEOPLE, "outsider", "target", "author")}
    users["invitee"] = person("invitee")
    acme = organization_create(actor=OPERATOR, slug="acme", name="Acme", owner=users["owner"])
    organization_create(actor=OPERATOR, slug="other", name="Other", owner=users["outsider"])
    policy_apply(organization=acme, wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    for name, role, team in (
        ("admin", Role.ADMIN, None),
        ("editor", Role.TEAM_EDITOR, "platform"),
        ("approver", Role.APPROVER, None),
        ("auditor", Role.AUDITOR, None),
        ("viewer", Role.VIEWER, None),
        ("target", Role.VIEWER, None),
        ("author", Role.ADMIN, None),
    ):
        membership_grant(
            actor=OPERATOR, organization=acme, user=users[name], role=role, team_path=team
        )
    for text in (THREE_TEAMS, CHANGED):
        policy_apply(organization=acme, wanted=make_policy(text), actor=OPERATOR)
        run = publish_run_request(organization=acme, actor=OPERATOR)
        publish_run_execute(run_id=run.pk)
    token, _ = api_token_create(
        actor=Actor.for_user(users["admin"]), organization=acme, name="ci", role=Role.VIEWER
    )
    enrollment, enrol_secret = enrollment_token_create(
        organization=acme, team_path="batch", actor=OPERATOR
    )
    device, _ = device_enroll(token_secret=enrol_secret, hostname="laptop")
    invitation, invitation_secret = invitation_create(
        actor=OPERATOR, organization=acme, email="invitee@example.com", role=Role.VIEWER
    )
    author = Actor.for_user(users["author"])
    edit = document.dump(org_policy(acme)).replace('model = "codex-ci"', 'model = "gpt-5.5"')
    draft = change_set_create(actor=author, organization=acme, document_text=edit)
    thinking = 'model = "openai.gpt-oss-120b"\nmodel_reasoning_effort = "high"'
    other_edit = document.dump(
        make_policy(CHANGED.replace('model = "openai.gpt-oss-120b"', thinking))
    )
    submitted = change_set_create(actor=author, organization=acme, document_text=other_edit)
    organization_settings_update(actor=OPERATOR, organization=acme, requires_approval=True)
    submitted = change_set_submit(actor=author, change_set=submitted)
    organization_settings_update(actor=OPERATOR, organization=acme, requires_approval=False)
    actors = {name: Actor.for_user(users[name]) for name in (*PEOPLE, "outsider", "invitee")}
    actors["token"] = token_actor(token)
    actors["operator"] = OPERATOR
    return World(
        acme,
        users,
        actors,
        token,
        device,
        enrollment,
        invitation,
        invitation_secret,
        draft,
        submitted,
    )


def _rename(raw: dict[str, Any], path: str, serial: int) -> None:
    raw["teams"][path]["name"] = f"Renamed {serial}"


@dataclass(frozen=True)
class Case:
    """One service, how to call it for an actor, and who may."""

    function: Callable[..., object]
    call: Callable[[World, Actor], object]
    allowed: frozenset[str]
    name: str = ""

    @property
    def service(self) -> str:
        return f"{self.function.__module__}.{self.function.__name__}"

    @property
    def id(self) -> str:
        return self.name or self.function.__name__


IN_SCOPE = (
    THREE_TEAMS.replace('model = "codex-ci"', 'model = "gpt-5.5"') + CHANGED[len(THREE_TEAMS) :]
)


def _after_rollout_start(end: Callable[..., object], world: World, actor: Actor) -> object:
    _rollout_started(world)
    return end(actor=actor, organization=world.acme, team_path="batch")


def _rollout_started(world: World) -> None:
    release_rollout_start(organization=world.acme, team_path="batch", percent=30, actor=OPERATOR)


def active_key(world: World) -> str:
    return SigningKey.objects.get(organization=world.acme, status="active").key_id


REL = "policyhub.releases.services"
CASES = [
    Case(
        organization_create,
        lambda w, a: organization_create(
            actor=a, slug=f"new-{w.next()}", name="New", owner=w.users["viewer"]
        ),
        frozenset({"operator"}),
    ),
    Case(
        organization_settings_update,
        lambda w, a: organization_settings_update(actor=a, organization=w.acme, sso_required=True),
        MANAGERS,
    ),
    Case(
        membership_grant,
        lambda w, a: membership_grant(
            actor=a, organization=w.acme, user=w.users["target"], role=Role.APPROVER
        ),
        MANAGERS,
    ),
    Case(
        membership_grant,
        lambda w, a: membership_grant(
            actor=a, organization=w.acme, user=w.users["target"], role=Role.OWNER
        ),
        frozenset({"owner", "operator"}),
        name="membership_grant owner",
    ),
    Case(
        membership_remove,
        lambda w, a: membership_remove(
            actor=a, membership=Membership.objects.get(user=w.users["target"])
        ),
        MANAGERS,
    ),
    Case(
        ownership_transfer,
        lambda w, a: ownership_transfer(actor=a, organization=w.acme, to=w.users["admin"]),
        frozenset({"owner", "operator"}),
    ),
    Case(
        invitation_create,
        lambda w, a: invitation_create(
            actor=a, organization=w.acme, email=f"new{w.next()}@example.com", role=Role.VIEWER
        ),
        MANAGERS,
    ),
    Case(
        invitation_revoke,
        lambda w, a: invitation_revoke(actor=a, invitation=w.invitation),
        MANAGERS,
    ),
    Case(
        invitation_accept,
        lambda w, a: invitation_accept(actor=a, secret=w.invitation_secret),
        frozenset({"invitee"}),
    ),
    Case(
        api_token_create,
        lambda w, a: api_token_create(actor=a, organization=w.acme, name="mine", role=Role.VIEWER),
        PEOPLE,
    ),
    Case(
        api_token_revoke,
        # The admin's own token: its owner (through the token itself too) and member managers.
        lambda w, a: api_token_revoke(actor=a, token=w.token),
        MANAGERS | {"token"},
    ),
    Case(
        policy_apply,
        lambda w, a: policy_apply(organization=w.acme, wanted=make_policy(IN_SCOPE), actor=a),
        EDITORS,
        name="policy_apply inside the editor's subtree",
    ),
    Case(
        policy_apply,
        lambda w, a: policy_apply(
            organization=w.acme,
            wanted=make_policy(CHANGED + '\n[teams.research]\nname = "Research"\n'),
            actor=a,
        ),
        MANAGERS,
        name="policy_apply outside the editor's subtree",
    ),
    Case(
        change_set_draft_edit,
        lambda w, a: change_set_draft_edit(
            actor=a, organization=w.acme, edit=lambda raw: _rename(raw, "platform/ci", w.next())
        ),
        # A browser draft is a person's own: the operator and a viewer's token have none.
        EDITORS - {"operator"},
        name="change_set_draft_edit inside the editor's subtree",
    ),
    Case(
        change_set_draft_edit,
        lambda w, a: change_set_draft_edit(
            actor=a, organization=w.acme, edit=lambda raw: _rename(raw, "batch", w.next())
        ),
        MANAGERS - {"operator"},
        name="change_set_draft_edit outside the editor's subtree",
    ),
    Case(
        change_set_describe,
        lambda w, a: change_set_describe(actor=a, change_set=w.draft, title="T", reason="R"),
        # Only its author, who is none of these (tests/web/test_changes.py has the author).
        frozenset(),
        name="change_set_describe of another's draft",
    ),
    Case(
        change_set_discard,
        lambda w, a: change_set_discard(actor=a, change_set=w.draft),
        frozenset(),
        name="change_set_discard of another's draft",
    ),
    Case(
        change_set_schedule,
        lambda w, a: change_set_schedule(
            actor=a, change_set=w.submitted, publish_at=timezone.now() + timedelta(days=1)
        ),
        MANAGERS,
    ),
    Case(
        team_move,
        lambda w, a: team_move(
            team=team_create(organization=w.acme, parent=None, slug=f"t{w.next()}", name="T"),
            parent_path="platform",
            actor=a,
        ),
        MANAGERS,
        name="team_move of a team outside the editor's subtree into it",
    ),
    Case(
        change_set_create,
        lambda w, a: change_set_create(
            actor=a,
            organization=w.acme,
            document_text=document.dump(make_policy(IN_SCOPE)),
        ),
        EDITORS,
        name="change_set_create inside the editor's subtree",
    ),
    Case(
        change_set_create,
        lambda w, a: change_set_create(
            actor=a,
            organization=w.acme,
            document_text=document.dump(make_policy(CHANGED + "\n[teams.research]\n")),
        ),
        MANAGERS,
        name="change_set_create outside the editor's subtree",
    ),
    Case(
        change_set_submit,
        lambda w, a: change_set_submit(actor=a, change_set=w.draft),
        EDITORS,
    ),
    Case(
        change_set_approve,
        lambda w, a: change_set_approve(actor=a, change_set=w.submitted),
        MANAGERS | {"approver"},
    ),
    Case(
        change_set_reject,
        lambda w, a: change_set_reject(actor=a, change_set=w.submitted, reason="not now"),
        MANAGERS | {"approver"},
    ),
    Case(
        publish_run_request,
        lambda w, a: publish_run_request(actor=a, organization=w.acme),
        MANAGERS,
    ),
    Case(
        signing_key_rotate,
        lambda w, a: signing_key_rotate(actor=a, organization=w.acme),
        MANAGERS,
    ),
    Case(
        signing_key_revoke,
        lambda w, a: signing_key_revoke(
            actor=a, organization=w.acme, key_id=active_key(w), reason="leaked"
        ),
        MANAGERS,
    ),
    Case(
        release_rollback,
        lambda w, a: release_rollback(
            actor=a, organization=w.acme, team_path="batch", to_revision=1
        ),
        MANAGERS,
    ),
    Case(
        release_rollout_start,
        lambda w, a: release_rollout_start(
            actor=a, organization=w.acme, team_path="batch", percent=30
        ),
        MANAGERS,
    ),
    Case(
        release_rollout_promote,
        lambda w, a: _after_rollout_start(release_rollout_promote, w, a),
        MANAGERS,
    ),
    Case(
        release_rollout_abort,
        lambda w, a: _after_rollout_start(release_rollout_abort, w, a),
        MANAGERS,
    ),
    Case(
        enrollment_token_create,
        lambda w, a: enrollment_token_create(organization=w.acme, team_path="batch", actor=a),
        MANAGERS,
    ),
    Case(
        enrollment_token_revoke,
        lambda w, a: enrollment_token_revoke(token=w.enrollment_token, actor=a),
        MANAGERS,
    ),
    Case(
        device_revoke,
        lambda w, a: device_revoke(device=w.device, actor=a),
        MANAGERS,
    ),
    Case(
        device_move,
        lambda w, a: device_move(device=w.device, team_path="platform", actor=a),
        MANAGERS,
    ),
    Case(
        audit_export_start,
        lambda w, a: audit_export_start(
            actor=a, organization=w.acme, file_format="csv", params={"object_type": "team"}
        ),
        AUDITORS,
    ),
    Case(
        receipts_export_start,
        lambda w, a: receipts_export_start(
            actor=a,
            organization=w.acme,
            release=Release.objects.get(organization=w.acme, team_path="batch", revision=1),
            file_format="csv",
        ),
        AUDITORS,
    ),
    Case(
        receipts_export_manifest,
        lambda w, a: receipts_export_manifest(
            actor=a,
            organization=w.acme,
            release=Release.objects.get(organization=w.acme, team_path="batch", revision=1),
            file_format="json",
            as_of=timezone.now() - timedelta(minutes=5),
        ),
        AUDITORS,
    ),
    Case(
        audit_export_manifest,
        lambda w, a: audit_export_manifest(
            actor=a, organization=w.acme, file_format="ndjson", params={}, through=3
        ),
        AUDITORS,
    ),
]

# Services that check nothing themselves, and why that is safe.
NOT_CHECKED_HERE = {
    "policyhub.audit.services.audit_event": "the audit trail itself, written by the others",
    "policyhub.audit.services.audit_record": "the audit trail itself, written by the others",
    "policyhub.audit.services.audit_record_many": "the audit trail itself, written by the others",
    "policyhub.accounts.services.api_token_used": "a token's last use, noted as it authenticates",
    "policyhub.teams.services.team_create": "only policy_apply calls it, after checking",
    "policyhub.teams.services.team_create_many": "only policy_apply calls it, after checking",
    "policyhub.teams.services.team_rename": "only policy_apply calls it, after checking",
    "policyhub.teams.services.team_delete": "only policy_apply calls it, after checking",
    "policyhub.teams.services.team_reparent": "only team_move calls it, after checking",
    "policyhub.teams.services.team_delete_check": "a check that refuses, writes nothing",
    "policyhub.policies.services.policy_check": "validation, writes nothing",
    "policyhub.policies.services.team_checks_write": "stores what policy_apply and team_move found",
    "policyhub.policies.services.policy_changed": "counts a write its caller was allowed to make",
    "policyhub.policies.services.policy_checks_refresh": "re-checks the live policy, changes none of it",
    "policyhub.changes.services.change_sets_publish_due": "inside a publish, for approved sets",
    f"{REL}.publishing.publish_run_create": "for an actor already allowed (runs, scheduler)",
    f"{REL}.publishing.publish_runs_create_due": "the scheduler; checked as a system job",
    f"{REL}.publishing.publish_run_execute": "the worker, for the run's recorded requester",
    f"{REL}.publishing.release_publish": "the worker, for the run's recorded requester",
    f"{REL}.publishing.requester": "reads the run's requester",
    f"{REL}.keys.signing_key_active": "made on first use by an action already allowed",
    f"{REL}.keys.signing_key_new": "builds an unsaved key for rotation and revocation",
    f"{REL}.resign.releases_resign": "the worker, for whoever revoked the key (checked there)",
    f"{REL}.rollback.file_sets_retitled": "a building block of rollback and re-signing",
    f"{REL}.signed.signed_release": "a building block of publishing and rollback",
    f"{REL}.signed.releases_save": "a building block of publishing and rollback",
    f"{REL}.signed.release_save": "a building block of rollback and rollouts",
    f"{REL}.signed.release_state": "a building block of rollback and rollouts",
    "policyhub.fleet.services.device_enroll": "a machine holding an enrolment token",
    "policyhub.fleet.services.device_report_record": "a device's own status report",
    "policyhub.fleet.services.device_credential_rotate": "a device replacing its own credential",
    "policyhub.delivery.services.fetch_record": "a device's own fetch, counted",
}


def discovered_services() -> set[str]:
    """Every public function of a `services` module or package of PolicyHub's apps."""
    found = set()
    for info in pkgutil.walk_packages(policyhub.__path__, "policyhub."):
        name = info.name
        if ".services" not in name or ".migrations" in name:
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == name and not attr.startswith("_"):
                found.add(f"{name}.{attr}")
    return found


def test_every_service_has_an_entry() -> None:
    covered = {case.service for case in CASES} | set(NOT_CHECKED_HERE)
    assert discovered_services() == covered


def test_team_writes_are_called_by_policy_apply_only() -> None:
    """What makes their exemption safe."""
    callers = set()
    for info in pkgutil.walk_packages(policyhub.__path__, "policyhub."):
        try:
            source = inspect.getsource(importlib.import_module(info.name))
        except OSError:  # an empty package
            continue
        names = ("team_create", "team_create_many", "team_rename", "team_delete")
        if any(f"{name}(" in source for name in names):
            callers.add(info.name)
    assert callers == {"policyhub.teams.services", "policyhub.policies.services"}


def _fingerprint(world: World) -> tuple[int, ...]:
    return (AuditEvent.objects.count(), Membership.objects.count(), ChangeSet.objects.count())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_actor_is_allowed_or_refused_as_the_matrix_says(case: Case) -> None:
    world = build_world()
    outcomes = {}
    for name in ACTORS:
        before = _fingerprint(world)
        with transaction.atomic():
            try:
                case.call(world, world.actors[name])
            except NotPermitted:
                outcomes[name] = "refused"
            except ApplicationError as exc:
                # Accepting someone else's invitation is refused for the address, not a role.
                invitation = case.service.endswith("invitation_accept")
                outcomes[name] = f"refused: {exc.message}" if invitation else f"failed: {exc}"
            else:
                outcomes[name] = "allowed"
            transaction.set_rollback(True)
        assert _fingerprint(world) == before, name
    expected = {name: "allowed" if name in case.allowed else "refused" for name in ACTORS}
    got = {
        name: "refused" if outcome.startswith("refused") else outcome
        for name, outcome in outcomes.items()
    }
    assert got == expected


# --- the command line: every `--as` -------------------------------------------------------------


def commands_with_as() -> set[str]:
    """ "command sub" for every PolicyHub command (and subcommand) that takes --as."""
    found = set()
    for command, app in get_commands().items():
        if not app.startswith("policyhub."):
            continue
        parser = load_command_class(app, command).create_parser("manage.py", command)
        for sub, sub_parser in _subparsers(parser):
            if any(action.dest == "actor" for action in sub_parser._actions):
                found.add(f"{command} {sub}".strip())
    return found


def _subparsers(parser: ArgumentParser) -> Iterator[tuple[str, ArgumentParser]]:
    yield "", parser
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                if isinstance(sub, ArgumentParser):
                    yield name, sub


@dataclass(frozen=True)
class CommandCase:
    command: str
    args: Callable[[World], list[str]]
    allowed: frozenset[str]


COMMANDS = [
    CommandCase("policy apply", lambda w: ["--org", "acme", "-"], EDITORS),
    CommandCase("policy window", lambda w: ["--org", "acme", "--min", "0.160.0"], MANAGERS),
    CommandCase("change_set submit", lambda w: [str(w.draft.pk)], EDITORS),
    CommandCase("change_set approve", lambda w: [str(w.submitted.pk)], MANAGERS | {"approver"}),
    CommandCase(
        "change_set reject",
        lambda w: [str(w.submitted.pk), "--reason", "no"],
        MANAGERS | {"approver"},
    ),
    CommandCase("publish", lambda w: ["--org", "acme", "--timeout", "0"], MANAGERS),
    CommandCase("signing_key rotate", lambda w: ["--org", "acme"], MANAGERS),
    CommandCase(
        "signing_key revoke",
        lambda w: [active_key(w), "--org", "acme", "--reason", "leaked"],
        MANAGERS,
    ),
    CommandCase(
        "release rollback", lambda w: ["--org", "acme", "--team", "batch", "--to", "1"], MANAGERS
    ),
    CommandCase(
        "release rollout",
        lambda w: ["--org", "acme", "--team", "batch", "--percent", "5"],
        MANAGERS,
    ),
    CommandCase("release promote", lambda w: ["--org", "acme", "--team", "batch"], MANAGERS),
    CommandCase("release abort", lambda w: ["--org", "acme", "--team", "batch"], MANAGERS),
    CommandCase(
        "enrollment_token create", lambda w: ["--org", "acme", "--team", "batch"], MANAGERS
    ),
    CommandCase(
        "enrollment_token revoke", lambda w: [str(w.enrollment_token.pk), "--org", "acme"], MANAGERS
    ),
    CommandCase("device revoke", lambda w: [str(w.device.pk), "--org", "acme"], MANAGERS),
    CommandCase(
        "device move", lambda w: [str(w.device.pk), "--org", "acme", "--team", "platform"], MANAGERS
    ),
    CommandCase(
        "org create",
        lambda w: ["--slug", f"n{w.next()}", "--name", "N", "--owner", "owner@example.com"],
        frozenset({"operator"}),
    ),
    CommandCase("org settings", lambda w: ["--org", "acme", "--sso-required", "on"], MANAGERS),
    CommandCase(
        "org invite",
        lambda w: ["--org", "acme", "--email", f"x{w.next()}@example.com", "--role", "viewer"],
        MANAGERS,
    ),
    CommandCase(
        "org revoke-invitation", lambda w: [str(w.invitation.pk), "--org", "acme"], MANAGERS
    ),
    CommandCase(
        "org role",
        lambda w: ["--org", "acme", "--email", "target@example.com", "--role", "approver"],
        MANAGERS,
    ),
    CommandCase(
        "org remove", lambda w: ["--org", "acme", "--email", "target@example.com"], MANAGERS
    ),
    CommandCase(
        "org transfer",
        lambda w: ["--org", "acme", "--to", "admin@example.com"],
        frozenset({"owner", "operator"}),
    ),
    CommandCase(
        "api_token create", lambda w: ["--org", "acme", "--name", "n", "--role", "viewer"], PEOPLE
    ),
    CommandCase("api_token revoke", lambda w: [str(w.token.pk), "--org", "acme"], MANAGERS),
    CommandCase(
        "audit export-receipts",
        lambda w: [
            *("--org", "acme", "--team", "batch", "--revision", "1"),
            *("--output", str(Path(tempfile.mkdtemp()) / "receipts.csv")),
        ],
        AUDITORS,
    ),
    CommandCase(
        "audit export",
        lambda w: ["--org", "acme", "--output", str(Path(tempfile.mkdtemp()) / "events.csv")],
        AUDITORS,
    ),
]
# People act with --as EMAIL; the operator is the command run without it. An invitee has no
# account yet and a token is not a command-line identity.
COMMAND_ACTORS = tuple(name for name in ACTORS if name not in {"invitee", "token"})


def test_every_command_with_as_has_an_entry() -> None:
    assert commands_with_as() == {case.command for case in COMMANDS}


@pytest.mark.parametrize("case", COMMANDS, ids=lambda c: c.command)
def test_each_command_is_allowed_or_refused_as_the_matrix_says(case: CommandCase) -> None:
    world = build_world()
    got = {}
    for name in COMMAND_ACTORS:
        args = [*case.command.split(), *case.args(world)]
        if name != "operator":
            args += ["--as", world.users[name].email]
        with transaction.atomic():
            if case.command in ("release promote", "release abort"):
                _rollout_started(world)
            stdin = document.dump(make_policy(IN_SCOPE)) if case.command == "policy apply" else ""
            try:
                _run(args, stdin)
            except CommandError as exc:
                got[name] = _command_outcome(str(exc))
            else:
                got[name] = "allowed"
            transaction.set_rollback(True)
    assert got == {
        name: "allowed" if name in case.allowed else "refused" for name in COMMAND_ACTORS
    }


REFUSAL = re.compile(r" may not | may .* only for team ")


def _command_outcome(error: str) -> str:
    # A command that needs a person (API tokens are someone's) has no operator form at all.
    if REFUSAL.search(error) or "arguments are required: --as" in error:
        return "refused"
    # `publish` waits for the run; inside this test's transaction no worker can see it, so an
    # accepted request ends in the command's timeout.
    if "still pending after the timeout" in error:
        return "allowed"
    return f"failed: {error}"


def _run(args: list[str], stdin: str) -> None:
    real = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        call_command(*args, stdout=io.StringIO(), stderr=io.StringIO())
    finally:
        sys.stdin = real


def test_docs_access_md_shows_the_matrix_the_code_enforces() -> None:
    """The table of docs/access.md, read back: each ✓ is a permission of that role."""
    from pathlib import Path

    from policyhub.accounts.permissions import ROLE_PERMISSIONS, Permission

    text = (Path(__file__).resolve().parents[1] / "docs" / "access.md").read_text()
    table = text.split("<!-- role-permissions:begin -->")[1].split("<!-- role-permissions:end -->")[
        0
    ]
    rows = [line.strip().strip("|").split("|") for line in table.strip().splitlines()]
    roles = [cell.strip() for cell in rows[0][1:]]
    documented: dict[str, set[Permission]] = {role: set() for role in roles}
    for row in rows[2:]:
        permission = Permission(re.search(r"`([a-z_.]+)`", row[0]).group(1))  # type: ignore[union-attr]
        for role, cell in zip(roles, row[1:], strict=True):
            if "✓" in cell:
                documented[role].add(permission)
    assert documented == {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}
