"""Every state change writes its audit event, in its own transaction: tried, service by service.

The services are found in the code (every public function, and public method of a class, of
the apps' `services` modules and of the fleet's team attachment) and each must have an entry in
one of two tables: SCENARIOS, which builds what the service needs and calls it once as a real
caller would, or NOT_STATE_CHANGES, which says why it records nothing (a read, a building block
whose callers record the change, telemetry, a derived cache). A new service without an entry
fails `test_every_service_is_tried_or_said_to_change_nothing`.

Each scenario's SQL is captured as it runs. Every write it leaves behind, to a table other than
the audit trail's and the derived ones of DERIVED, must share its transaction with an INSERT
into the audit trail: the outermost atomic block the call opened (a savepoint inside the test's
transaction) holds both. The new events name the actor (label and kind) and the object. A
refused call (bad input, or an actor who may not) leaves no event and no write.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.utils import timezone

import policyhub
from policyhub import credentials
from policyhub.accounts.access import token_actor
from policyhub.accounts.models import Membership, Organization, Role
from policyhub.accounts.selectors import organization_lock
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
from policyhub.actors import SCHEDULER, Actor, ActorKind
from policyhub.audit.models import AuditEvent
from policyhub.audit.selectors import OBJECT_TYPES
from policyhub.audit.services import audit_record
from policyhub.changes.services import (
    change_set_approve,
    change_set_create,
    change_set_describe,
    change_set_discard,
    change_set_draft_edit,
    change_set_reject,
    change_set_schedule,
    change_set_submit,
    change_sets_publish_due,
)
from policyhub.credentials import DEVICE_PREFIX, new_secret
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.fleet.attachment import FleetOnTeams
from policyhub.fleet.models import Device
from policyhub.fleet.services import (
    EnrollmentRefused,
    device_credential_rotate,
    device_enroll,
    device_move,
    device_revoke,
    enrollment_token_create,
    enrollment_token_revoke,
)
from policyhub.policies import document
from policyhub.policies.models import PolicyNode, TeamEndpointUse
from policyhub.policies.services import policy_apply, team_move
from policyhub.releases.models import PublishRun, SigningKey
from policyhub.releases.services.keys import signing_key_active, signing_key_rotate
from policyhub.releases.services.publishing import (
    publish_run_create,
    publish_run_execute,
    publish_runs_create_due,
    release_publish,
)
from policyhub.releases.services.resign import releases_resign
from policyhub.releases.services.revocation import signing_key_revoke
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.models import Team
from policyhub.teams.selectors import team_subtrees
from tests.conftest import OPERATOR, make_policy
from tests.test_permissions import CHANGED, IN_SCOPE, World, build_world

pytestmark = [pytest.mark.django_db]

# The modules whose public functions change state, besides every `services` module or package.
ALSO_SERVICES = ("policyhub.fleet.attachment",)

# Tables (or "table.column") that the scenarios' services write without an event of their own,
# and why: each is derived from what the events record. (Telemetry, what devices and tokens do,
# is written only by services that NOT_STATE_CHANGES names, which no scenario runs.)
DERIVED = {
    "policies_teamcheck": "what validating the live policy found at each node, stored for the "
    "pages; rewritten from the policy whose changes are recorded",
    "policies_teamendpointuse": "which endpoints each team uses, found by the same validation",
    "accounts_organization.policy_version": "counts writes of the live policy (each recorded) "
    "so that the cached digest below can tell it is out of date",
    "accounts_organization.policy_digest": "the cached digest of the live policy",
    "accounts_organization.policy_digest_version": "which policy_version the cached digest is of",
}

# Public functions of the service modules that change no state worth an event, and why.
ACC = "policyhub.accounts.services"
TEAMS = "policyhub.teams.services"
POL = "policyhub.policies.services"
REL = "policyhub.releases.services"
TEAM_STEP = (
    "a step of policy_apply, which records the team's change as a plan line in the same "
    "transaction (only it calls this: tests/test_permissions.py)"
)
NOT_STATE_CHANGES = {
    "policyhub.audit.services.audit_event": "builds an unsaved event: the audit trail itself",
    "policyhub.audit.services.audit_record": "the audit trail itself, which the others call",
    "policyhub.audit.services.audit_record_many": "the audit trail itself, which the others call",
    f"{ACC}.api_token_used": "telemetry: a token's last use, stamped as it authenticates",
    f"{TEAMS}.team_create": TEAM_STEP,
    f"{TEAMS}.team_create_many": TEAM_STEP,
    f"{TEAMS}.team_rename": TEAM_STEP,
    f"{TEAMS}.team_delete": TEAM_STEP,
    f"{TEAMS}.team_reparent": "a step of team_move, which records the move (policy.move)",
    f"{TEAMS}.team_delete_check": "a read: refuses a deletion, writes nothing",
    f"{POL}.policy_check": "a read: validation",
    f"{POL}.team_checks_write": "a derived cache: stored validation results",
    f"{POL}.policy_changed": "a derived counter: the live policy's version, for its cached digest",
    f"{POL}.policy_checks_refresh": "a derived cache: validates the live policy again and stores "
    "what it finds, changing none of the policy",
    f"{REL}.publishing.requester": "a read: who asked for a run",
    f"{REL}.signed.signed_release": "builds an unsaved release, which its caller stores and audits",
    f"{REL}.signed.releases_save": "a step of publishing and rollback, which audit each release",
    f"{REL}.signed.release_save": "a step of rollback and rollouts, which audit the change",
    f"{REL}.signed.release_state": "a read: what events record of a release",
    f"{REL}.rollback.file_sets_retitled": "a read: a stored release's files under a new header, "
    "which rollback and re-signing sign, store and audit",
    f"{REL}.keys.signing_key_new": "builds an unsaved key, which rotation and revocation store "
    "and audit",
    "policyhub.fleet.services.device_report_record": "telemetry: a device's status report",
    "policyhub.fleet.attachment.FleetOnTeams.deletion_refusal": "a read: refuses a deletion",
    "policyhub.delivery.services.fetch_record": "telemetry: a device's fetch, counted",
    "policyhub.exports.services.audit_export_start": "a read of the trail, which records itself "
    "(audit.export) and changes nothing else",
    "policyhub.exports.services.audit_export_manifest": "a read: the signed manifest of an "
    "export (a first signing key made for it is signing_key_active's, recorded there)",
    "policyhub.exports.services.receipts_export_start": "a read of receipts, which records "
    "itself (audit.export) and changes nothing else",
    "policyhub.exports.services.receipts_export_manifest": "a read: the signed manifest of a "
    "receipts export",
}


# Management commands that write rows themselves rather than through a service, and why no event.
ACCOUNT = (
    "a person's account (user and address) for a new owner: deployment-wide, no organisation's "
    "state; the organization.create and membership.grant events of the same transaction name them"
)
COMMAND_WRITES = {
    "policyhub.accounts.management.commands.org": ACCOUNT,
    "policyhub.web.management.commands.seed_demo": ACCOUNT,
}
# Calls that write through the ORM.
ORM_WRITES = frozenset(
    {
        "save",
        "delete",
        "update",
        "create",
        "create_user",
        "create_superuser",
        "bulk_create",
        "bulk_update",
        "get_or_create",
        "update_or_create",
    }
)

# --- capturing what a call does ------------------------------------------------------------------

WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"(\w+)"', re.IGNORECASE)
SAVEPOINT = re.compile(r'^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\s+"?(\w+)"?\s*$')
# The columns an UPDATE sets: `SET "a" = ..., "b" = ... WHERE` (Django's form).
SET_PART = re.compile(r"\bSET\s+(.*?)(?:\s+WHERE\s+|$)", re.DOTALL)
SET_COLUMN = re.compile(r'(?:^|,)\s*"(\w+)"\s*=')


@dataclass(frozen=True)
class Write:
    """One INSERT, UPDATE or DELETE, with the savepoints (atomic blocks the call opened, outermost
    first) it ran in."""

    verb: str
    table: str
    columns: frozenset[str]
    savepoints: tuple[str, ...]

    @property
    def audit(self) -> bool:
        return self.table.startswith("audit_")

    @property
    def event(self) -> bool:
        return self.verb == "INSERT" and self.table == "audit_auditevent"

    @property
    def derived(self) -> bool:
        if self.table in DERIVED:
            return True
        return (
            self.verb == "UPDATE"
            and bool(self.columns)
            and all(f"{self.table}.{column}" in DERIVED for column in self.columns)
        )

    def __str__(self) -> str:
        columns = f" ({', '.join(sorted(self.columns))})" if self.columns else ""
        return f"{self.verb} {self.table}{columns}"


def parse_write(sql: str, savepoints: tuple[str, ...]) -> Write | None:
    match = WRITE.match(sql)
    if match is None:
        return None
    verb = match.group(1).split()[0].upper()
    columns: frozenset[str] = frozenset()
    if verb == "UPDATE":
        found = SET_PART.search(sql)
        columns = frozenset(SET_COLUMN.findall(found.group(1))) if found else frozenset()
    return Write(verb, match.group(2), columns, savepoints)


@dataclass
class Observed:
    """What one call did: its writes still standing, and the audit events it left."""

    actor: Actor
    entered: bool
    writes: list[Write]
    events: list[AuditEvent]

    @property
    def state_writes(self) -> list[Write]:
        return [w for w in self.writes if not w.audit and not w.derived]

    def unaudited(self) -> list[str]:
        """The state writes whose transaction holds no audit event, described."""
        recorded = {w.savepoints[0] for w in self.writes if w.event and w.savepoints}
        problems = []
        for write in self.state_writes:
            if not write.savepoints:
                problems.append(f"{write}: outside any transaction the call opened")
            elif write.savepoints[0] not in recorded:
                problems.append(f"{write}: in a transaction that records no audit event")
        return problems


class Capture:
    """An execute wrapper that follows savepoints and keeps every write that took effect."""

    def __init__(self) -> None:
        self.open: list[str] = []
        self.rolled_back: set[str] = set()
        self.writes: list[Write] = []

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        result = execute(sql, params, many, context)
        savepoint = SAVEPOINT.match(sql)
        if savepoint is not None:
            verb, name = savepoint.groups()
            if verb == "SAVEPOINT":
                self.open.append(name)
            elif verb == "ROLLBACK TO SAVEPOINT":
                self.rolled_back.add(name)
            elif name in self.open:
                del self.open[self.open.index(name) :]
            return result
        write = parse_write(sql, tuple(self.open))
        if write is not None:
            self.writes.append(write)
        return result

    def standing(self) -> list[Write]:
        """Writes not undone by a rollback to a savepoint they ran in."""
        return [w for w in self.writes if not self.rolled_back & set(w.savepoints)]


@dataclass
class Probe:
    """Runs the one service call of a scenario and records what it did."""

    service: Callable[..., object]
    observed: list[Observed] = field(default_factory=list)

    def run(
        self,
        actor: Actor,
        call: Callable[[], object],
        *,
        raises: type[Exception] | None = None,
    ) -> None:
        """Call the service as `actor` (who the events must name); `raises`: the error a real
        caller would see (a failing publish still records its failure)."""
        last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        capture = Capture()
        with connection.execute_wrapper(capture), _entering(_code(self.service)) as entered:
            if raises is None:
                call()
            else:
                with pytest.raises(raises):
                    call()
        events = list(AuditEvent.objects.filter(pk__gt=last).order_by("pk"))
        self.observed.append(Observed(actor, bool(entered), capture.standing(), events))

    def refused(self, actor: Actor, call: Callable[[], object], error: type[Exception]) -> None:
        self.run(actor, call, raises=error)

    @property
    def one(self) -> Observed:
        assert len(self.observed) == 1, "a scenario calls its service once"
        return self.observed[0]


def _code(function: Callable[..., object]) -> CodeType:
    code: CodeType = inspect.unwrap(function).__code__
    return code


@dataclass
class _Hits:
    count: int = 0

    def __bool__(self) -> bool:
        return self.count > 0


@contextmanager
def _entering(code: CodeType) -> Iterator[_Hits]:
    """Counts calls of the function with `code` (through its decorators) while inside: a
    scenario must reach the service it is filed under."""
    hits = _Hits()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is code:
            hits.count += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield hits
    finally:
        sys.setprofile(previous)


# --- discovering the services --------------------------------------------------------------------


def service_modules() -> Iterator[str]:
    for info in pkgutil.walk_packages(policyhub.__path__, "policyhub."):
        name = info.name
        if ".migrations" in name:
            continue
        if name.endswith(".services") or ".services." in name or name in ALSO_SERVICES:
            yield name


def discovered_services() -> dict[str, Callable[..., object]]:
    """Every public function, and public method of a public class, defined in those modules."""
    found: dict[str, Callable[..., object]] = {}
    for name in service_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.startswith("_") or getattr(value, "__module__", None) != name:
                continue
            if inspect.isfunction(value):
                found[f"{name}.{attr}"] = value
            elif inspect.isclass(value):
                for method, member in vars(value).items():
                    function = getattr(member, "__func__", member)
                    if not method.startswith("_") and inspect.isfunction(function):
                        found[f"{name}.{attr}.{method}"] = function
    return found


def service_of(scenario: str) -> str:
    """A scenario's service: its name, without a variant's " [...]"."""
    return scenario.split(" [")[0]


def documented_actions() -> set[str]:
    """The actions docs/audit.md lists under "What is recorded"."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    section = text.split("\n## What is recorded\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z_]+\.[a-z_]+)`", section))


# --- the scenarios -------------------------------------------------------------------------------

Scenario = Callable[[World, Probe], None]

# The policy without team batch (and so without what hangs on it).
WITHOUT_BATCH = """
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.platform]
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
"""
WITH_RESEARCH = CHANGED + '\n[teams.research]\nname = "Research"\n'


def _admin(w: World) -> Actor:
    return w.actors["admin"]


def _admin_token(w: World) -> Actor:
    """An admin's API token at the admin role: a token actor allowed to manage."""
    token, _ = api_token_create(
        actor=_admin(w), organization=w.acme, name="automation", role=Role.ADMIN
    )
    return token_actor(token)


def _approved(w: World) -> None:
    change_set_approve(actor=w.actors["approver"], change_set=w.submitted)


def _rollout_started(w: World) -> None:
    release_rollout_start(organization=w.acme, team_path="batch", percent=30, actor=OPERATOR)


def _pending_run(w: World, text: str = WITH_RESEARCH) -> PublishRun:
    """A policy change waiting to go out and the admin's publish run for it."""
    policy_apply(organization=w.acme, wanted=make_policy(text), actor=OPERATOR)
    return publish_run_request(organization=w.acme, actor=_admin(w))


def organization_create_scenario(w: World, probe: Probe) -> None:
    probe.run(
        OPERATOR,
        lambda: organization_create(
            actor=OPERATOR, slug="new", name="New", owner=w.users["viewer"]
        ),
    )


def organization_settings_update_scenario(w: World, probe: Probe) -> None:
    owner = w.actors["owner"]
    probe.run(
        owner,
        lambda: organization_settings_update(
            actor=owner, organization=w.acme, requires_approval=True
        ),
    )


def membership_grant_scenario(w: World, probe: Probe) -> None:
    probe.run(
        _admin(w),
        lambda: membership_grant(
            actor=_admin(w), organization=w.acme, user=w.users["target"], role=Role.APPROVER
        ),
    )


def membership_remove_scenario(w: World, probe: Probe) -> None:
    # With an API token of theirs, which goes with them.
    target = Actor.for_user(w.users["target"])
    api_token_create(actor=target, organization=w.acme, name="mine", role=Role.VIEWER)
    membership = Membership.objects.get(organization=w.acme, user=w.users["target"])
    probe.run(_admin(w), lambda: membership_remove(actor=_admin(w), membership=membership))


def ownership_transfer_scenario(w: World, probe: Probe) -> None:
    owner = w.actors["owner"]
    probe.run(
        owner, lambda: ownership_transfer(actor=owner, organization=w.acme, to=w.users["admin"])
    )


def invitation_create_scenario(w: World, probe: Probe) -> None:
    # The invitee has a pending invitation already: the new one replaces it.
    probe.run(
        _admin(w),
        lambda: invitation_create(
            actor=_admin(w), organization=w.acme, email="invitee@example.com", role=Role.AUDITOR
        ),
    )


def invitation_accept_scenario(w: World, probe: Probe) -> None:
    invitee = w.actors["invitee"]
    probe.run(invitee, lambda: invitation_accept(actor=invitee, secret=w.invitation_secret))


def invitation_revoke_scenario(w: World, probe: Probe) -> None:
    probe.run(_admin(w), lambda: invitation_revoke(actor=_admin(w), invitation=w.invitation))


def api_token_create_scenario(w: World, probe: Probe) -> None:
    approver = w.actors["approver"]
    probe.run(
        approver,
        lambda: api_token_create(
            actor=approver, organization=w.acme, name="reviews", role=Role.APPROVER
        ),
    )


def api_token_revoke_scenario(w: World, probe: Probe) -> None:
    # The token revokes itself.
    token = w.actors["token"]
    probe.run(token, lambda: api_token_revoke(actor=token, token=w.token, reason="leaked"))


def policy_apply_scenario(w: World, probe: Probe) -> None:
    wanted = make_policy(WITH_RESEARCH)
    probe.run(
        _admin(w),
        lambda: policy_apply(organization=w.acme, wanted=wanted, actor=_admin(w), reason="new"),
    )


def policy_apply_team_delete_scenario(w: World, probe: Probe) -> None:
    # Team batch goes, with its revoked device and its enrolment token (fleet/attachment.py).
    device_revoke(device=w.device, actor=OPERATOR)
    wanted = make_policy(WITHOUT_BATCH)
    probe.run(_admin(w), lambda: policy_apply(organization=w.acme, wanted=wanted, actor=_admin(w)))


def team_move_scenario(w: World, probe: Probe) -> None:
    policy_apply(organization=w.acme, wanted=make_policy(WITH_RESEARCH), actor=OPERATOR)
    team = Team.objects.get(organization=w.acme, path="research")
    probe.run(
        _admin(w),
        lambda: team_move(team=team, parent_path="platform", actor=_admin(w), reason="reorg"),
    )


def change_set_create_scenario(w: World, probe: Probe) -> None:
    editor = w.actors["editor"]
    text = document.dump(make_policy(IN_SCOPE))
    probe.run(
        editor, lambda: change_set_create(actor=editor, organization=w.acme, document_text=text)
    )


def change_set_draft_edit_scenario(w: World, probe: Probe) -> None:
    editor = w.actors["editor"]

    def rename(raw: dict[str, Any]) -> None:
        raw["teams"]["platform/ci"]["name"] = "Continuous integration"

    probe.run(editor, lambda: change_set_draft_edit(actor=editor, organization=w.acme, edit=rename))


def change_set_discard_scenario(w: World, probe: Probe) -> None:
    author = Actor.for_user(w.users["author"])
    probe.run(author, lambda: change_set_discard(actor=author, change_set=w.draft))


def change_set_describe_scenario(w: World, probe: Probe) -> None:
    author = Actor.for_user(w.users["author"])
    probe.run(
        author,
        lambda: change_set_describe(
            actor=author, change_set=w.draft, title="CI on gpt-5.5", reason="cheaper"
        ),
    )


def change_set_submit_scenario(w: World, probe: Probe) -> None:
    # No approval required: approved at once, by the system, in the same transaction.
    author = Actor.for_user(w.users["author"])
    probe.run(author, lambda: change_set_submit(actor=author, change_set=w.draft))


def change_set_approve_scenario(w: World, probe: Probe) -> None:
    approver = w.actors["approver"]
    probe.run(approver, lambda: change_set_approve(actor=approver, change_set=w.submitted))


def change_set_reject_scenario(w: World, probe: Probe) -> None:
    approver = w.actors["approver"]
    probe.run(
        approver,
        lambda: change_set_reject(actor=approver, change_set=w.submitted, reason="not now"),
    )


def change_set_schedule_scenario(w: World, probe: Probe) -> None:
    later = timezone.now() + timedelta(days=1)
    probe.run(
        _admin(w),
        lambda: change_set_schedule(actor=_admin(w), change_set=w.submitted, publish_at=later),
    )


def change_sets_publish_due_scenario(w: World, probe: Probe) -> None:
    _approved(w)
    run = publish_run_create(organization=w.acme, actor=_admin(w))

    def as_a_publish_does() -> None:
        # Its caller's transaction, under the organisation's lock (release_publish).
        with transaction.atomic():
            organization = organization_lock(w.acme.pk)
            change_sets_publish_due(organization=organization, run_id=run.pk, actor=_admin(w))

    probe.run(_admin(w), as_a_publish_does)


def signing_key_rotate_scenario(w: World, probe: Probe) -> None:
    probe.run(_admin(w), lambda: signing_key_rotate(actor=_admin(w), organization=w.acme))


def _active_key(w: World) -> str:
    return SigningKey.objects.get(organization=w.acme, status="active").key_id


def signing_key_revoke_scenario(w: World, probe: Probe) -> None:
    # The active key: a new one is made, the list signed; re-signing is the worker's, below.
    key_id = _active_key(w)
    probe.run(
        _admin(w),
        lambda: signing_key_revoke(
            actor=_admin(w), organization=w.acme, key_id=key_id, reason="leaked"
        ),
    )


def releases_resign_scenario(w: World, probe: Probe) -> None:
    # Revoked inside the test's transaction: the worker it hands over to never ran.
    signing_key_revoke(actor=OPERATOR, organization=w.acme, key_id=_active_key(w), reason="x")
    probe.run(_admin(w), lambda: releases_resign(organization_id=w.acme.pk, actor=_admin(w)))


def signing_key_active_scenario(w: World, probe: Probe) -> None:
    # The other organisation has published nothing: its first key is made now.
    other = Organization.objects.get(slug="other")
    outsider = w.actors["outsider"]
    probe.run(outsider, lambda: signing_key_active(organization=other, actor=outsider))


def publish_run_create_scenario(w: World, probe: Probe) -> None:
    probe.run(_admin(w), lambda: publish_run_create(organization=w.acme, actor=_admin(w)))


def publish_runs_create_due_scenario(w: World, probe: Probe) -> None:
    # Approved for tomorrow; the scheduler's minute comes two days on.
    _approved(w)
    change_set_schedule(
        actor=OPERATOR, change_set=w.submitted, publish_at=timezone.now() + timedelta(days=1)
    )
    later = timezone.now() + timedelta(days=2)
    probe.run(SCHEDULER, lambda: publish_runs_create_due(now=later))


def publish_run_execute_scenario(w: World, probe: Probe) -> None:
    run = _pending_run(w)
    # Claimed, published and finished, each step in the requester's name.
    probe.run(_admin(w), lambda: publish_run_execute(run_id=run.pk))


def publish_run_execute_failure_scenario(w: World, probe: Probe) -> None:
    run = _pending_run(w)
    # The stored policy broken behind the services' back, as a bad migration could.
    PolicyNode.objects.filter(team__path="batch").update(config={"sandbox_mode": "full-access"})
    probe.run(_admin(w), lambda: publish_run_execute(run_id=run.pk), raises=ApplicationError)


def release_publish_scenario(w: World, probe: Probe) -> None:
    run = _pending_run(w)
    # As the worker calls it, once it has claimed the run.
    PublishRun.objects.filter(pk=run.pk).update(
        status=PublishRun.Status.RUNNING, started_at=timezone.now()
    )
    run.refresh_from_db()
    probe.run(_admin(w), lambda: release_publish(run=run))


def publish_run_request_scenario(w: World, probe: Probe) -> None:
    probe.run(_admin(w), lambda: publish_run_request(actor=_admin(w), organization=w.acme))


def release_rollback_scenario(w: World, probe: Probe) -> None:
    probe.run(
        _admin(w),
        lambda: release_rollback(
            organization=w.acme, team_path="batch", to_revision=1, actor=_admin(w), reason="bad"
        ),
    )


def release_rollout_start_scenario(w: World, probe: Probe) -> None:
    probe.run(
        _admin(w),
        lambda: release_rollout_start(
            organization=w.acme, team_path="batch", percent=30, actor=_admin(w)
        ),
    )


def release_rollout_promote_scenario(w: World, probe: Probe) -> None:
    _rollout_started(w)
    probe.run(
        _admin(w),
        lambda: release_rollout_promote(organization=w.acme, team_path="batch", actor=_admin(w)),
    )


def release_rollout_abort_scenario(w: World, probe: Probe) -> None:
    _rollout_started(w)
    probe.run(
        _admin(w),
        lambda: release_rollout_abort(organization=w.acme, team_path="batch", actor=_admin(w)),
    )


def enrollment_token_create_scenario(w: World, probe: Probe) -> None:
    token = _admin_token(w)
    probe.run(
        token,
        lambda: enrollment_token_create(
            organization=w.acme, team_path="platform", actor=token, note="new laptops"
        ),
    )


def enrollment_token_revoke_scenario(w: World, probe: Probe) -> None:
    probe.run(_admin(w), lambda: enrollment_token_revoke(token=w.enrollment_token, actor=_admin(w)))


def device_enroll_scenario(w: World, probe: Probe) -> None:
    token, secret = enrollment_token_create(
        organization=w.acme, team_path="platform", actor=OPERATOR
    )
    machine = Actor.device(f"enrolment token {token.prefix}…")
    probe.run(machine, lambda: device_enroll(token_secret=secret, hostname="build-01"))


def device_revoke_scenario(w: World, probe: Probe) -> None:
    probe.run(_admin(w), lambda: device_revoke(device=w.device, actor=_admin(w), reason="stolen"))


def device_move_scenario(w: World, probe: Probe) -> None:
    token = _admin_token(w)
    probe.run(token, lambda: device_move(device=w.device, team_path="platform", actor=token))


def device_credential_rotate_scenario(w: World, probe: Probe) -> None:
    # A device enrolled before fetch credentials existed: the one kind that may rotate.
    Device.objects.filter(pk=w.device.pk).update(fetch_credential_hash=None)
    w.device.refresh_from_db()
    machine = Actor.device(w.device.hostname or str(w.device.pk))
    new = new_secret(DEVICE_PREFIX)
    probe.run(machine, lambda: device_credential_rotate(device_id=w.device.pk, new_credential=new))


def fleet_delete_with_scenario(w: World, probe: Probe) -> None:
    device_revoke(device=w.device, actor=OPERATOR)
    subtree = team_subtrees(w.acme, ["batch"])

    def as_team_delete_does() -> None:
        # Inside the transaction of team_delete, the one caller.
        with transaction.atomic():
            FleetOnTeams().delete_with(w.acme, subtree, _admin(w), "team batch deleted")

    probe.run(_admin(w), as_team_delete_does)


ACCOUNTS = "policyhub.accounts.services"
CHANGES = "policyhub.changes.services"
FLEET = "policyhub.fleet.services"
SCENARIOS: dict[str, Scenario] = {
    f"{ACCOUNTS}.organization_create": organization_create_scenario,
    f"{ACCOUNTS}.organization_settings_update": organization_settings_update_scenario,
    f"{ACCOUNTS}.membership_grant": membership_grant_scenario,
    f"{ACCOUNTS}.membership_remove": membership_remove_scenario,
    f"{ACCOUNTS}.ownership_transfer": ownership_transfer_scenario,
    f"{ACCOUNTS}.invitation_create": invitation_create_scenario,
    f"{ACCOUNTS}.invitation_accept": invitation_accept_scenario,
    f"{ACCOUNTS}.invitation_revoke": invitation_revoke_scenario,
    f"{ACCOUNTS}.api_token_create": api_token_create_scenario,
    f"{ACCOUNTS}.api_token_revoke": api_token_revoke_scenario,
    f"{POL}.policy_apply": policy_apply_scenario,
    f"{POL}.policy_apply [deleting a team and the fleet's rows on it]": (
        policy_apply_team_delete_scenario
    ),
    f"{POL}.team_move": team_move_scenario,
    f"{CHANGES}.change_set_create": change_set_create_scenario,
    f"{CHANGES}.change_set_draft_edit": change_set_draft_edit_scenario,
    f"{CHANGES}.change_set_discard": change_set_discard_scenario,
    f"{CHANGES}.change_set_describe": change_set_describe_scenario,
    f"{CHANGES}.change_set_submit": change_set_submit_scenario,
    f"{CHANGES}.change_set_approve": change_set_approve_scenario,
    f"{CHANGES}.change_set_reject": change_set_reject_scenario,
    f"{CHANGES}.change_set_schedule": change_set_schedule_scenario,
    f"{CHANGES}.change_sets_publish_due": change_sets_publish_due_scenario,
    f"{REL}.keys.signing_key_rotate": signing_key_rotate_scenario,
    f"{REL}.keys.signing_key_active": signing_key_active_scenario,
    f"{REL}.revocation.signing_key_revoke": signing_key_revoke_scenario,
    f"{REL}.resign.releases_resign": releases_resign_scenario,
    f"{REL}.publishing.publish_run_create": publish_run_create_scenario,
    f"{REL}.publishing.publish_runs_create_due": publish_runs_create_due_scenario,
    f"{REL}.publishing.publish_run_execute": publish_run_execute_scenario,
    f"{REL}.publishing.publish_run_execute [a failing publish]": (
        publish_run_execute_failure_scenario
    ),
    f"{REL}.publishing.release_publish": release_publish_scenario,
    f"{REL}.runs.publish_run_request": publish_run_request_scenario,
    f"{REL}.rollback.release_rollback": release_rollback_scenario,
    f"{REL}.rollout.release_rollout_start": release_rollout_start_scenario,
    f"{REL}.rollout.release_rollout_promote": release_rollout_promote_scenario,
    f"{REL}.rollout.release_rollout_abort": release_rollout_abort_scenario,
    f"{FLEET}.enrollment_token_create": enrollment_token_create_scenario,
    f"{FLEET}.enrollment_token_revoke": enrollment_token_revoke_scenario,
    f"{FLEET}.device_enroll": device_enroll_scenario,
    f"{FLEET}.device_revoke": device_revoke_scenario,
    f"{FLEET}.device_move": device_move_scenario,
    f"{FLEET}.device_credential_rotate": device_credential_rotate_scenario,
    "policyhub.fleet.attachment.FleetOnTeams.delete_with": fleet_delete_with_scenario,
}


# --- refused calls -------------------------------------------------------------------------------


def _refused(
    service: Callable[..., object], actor: str, error: type[Exception], call: Callable[..., object]
) -> tuple[Callable[..., object], Callable[[World, Probe], None]]:
    """A refusal: `call(world, actor)` as the cast member `actor`, expecting `error`."""

    def scenario(w: World, probe: Probe) -> None:
        who = w.actors.get(actor) or Actor.for_user(w.users[actor])
        probe.refused(who, lambda: call(w, who), error)

    return service, scenario


REFUSALS: dict[str, tuple[Callable[..., object], Callable[[World, Probe], None]]] = {
    "a person who is no superuser creating an organisation": _refused(
        organization_create,
        "owner",
        NotPermitted,
        lambda w, a: organization_create(actor=a, slug="n", name="N", owner=w.users["owner"]),
    ),
    "a viewer changing the organisation's settings": _refused(
        organization_settings_update,
        "viewer",
        NotPermitted,
        lambda w, a: organization_settings_update(actor=a, organization=w.acme, sso_required=True),
    ),
    "an admin making an owner": _refused(
        membership_grant,
        "admin",
        NotPermitted,
        lambda w, a: membership_grant(
            actor=a, organization=w.acme, user=w.users["target"], role=Role.OWNER
        ),
    ),
    "an invitation that never expires": _refused(
        invitation_create,
        "admin",
        ApplicationError,
        lambda w, a: invitation_create(
            actor=a,
            organization=w.acme,
            email="new@example.com",
            role=Role.VIEWER,
            lifetime=timedelta(days=3650),
        ),
    ),
    "a viewer's token above their role": _refused(
        api_token_create,
        "viewer",
        ApplicationError,
        lambda w, a: api_token_create(actor=a, organization=w.acme, name="x", role=Role.ADMIN),
    ),
    "an invalid policy": _refused(
        policy_apply,
        "admin",
        ApplicationError,
        lambda w, a: policy_apply(
            organization=w.acme,
            wanted=make_policy(CHANGED + '\n[teams.research.config]\nsandbox_mode = "no"\n'),
            actor=a,
        ),
    ),
    "a team moved into its own subtree": _refused(
        team_move,
        "admin",
        ApplicationError,
        lambda w, a: team_move(
            team=Team.objects.get(organization=w.acme, path="platform"),
            parent_path="platform/ci",
            actor=a,
        ),
    ),
    "an author approving their own change set": _refused(
        change_set_approve,
        "author",
        ApplicationError,
        lambda w, a: change_set_approve(actor=a, change_set=w.submitted),
    ),
    "a rejection without a reason": _refused(
        change_set_reject,
        "approver",
        ApplicationError,
        lambda w, a: change_set_reject(actor=a, change_set=w.submitted, reason=" "),
    ),
    "an auditor asking for a publish": _refused(
        publish_run_request,
        "auditor",
        NotPermitted,
        lambda w, a: publish_run_request(actor=a, organization=w.acme),
    ),
    "a viewer rotating the signing key": _refused(
        signing_key_rotate,
        "viewer",
        NotPermitted,
        lambda w, a: signing_key_rotate(actor=a, organization=w.acme),
    ),
    "a revocation without a reason": _refused(
        signing_key_revoke,
        "admin",
        ApplicationError,
        lambda w, a: signing_key_revoke(
            actor=a, organization=w.acme, key_id=_active_key(w), reason=" "
        ),
    ),
    "an auditor revoking a signing key": _refused(
        signing_key_revoke,
        "auditor",
        NotPermitted,
        lambda w, a: signing_key_revoke(
            actor=a, organization=w.acme, key_id=_active_key(w), reason="x"
        ),
    ),
    "a rollback to a revision that does not exist": _refused(
        release_rollback,
        "admin",
        ApplicationError,
        lambda w, a: release_rollback(
            organization=w.acme, team_path="batch", to_revision=99, actor=a
        ),
    ),
    "a team editor starting a rollout": _refused(
        release_rollout_start,
        "editor",
        NotPermitted,
        lambda w, a: release_rollout_start(
            organization=w.acme, team_path="batch", percent=30, actor=a
        ),
    ),
    "an enrolment token for a team that does not exist": _refused(
        enrollment_token_create,
        "admin",
        ApplicationError,
        lambda w, a: enrollment_token_create(organization=w.acme, team_path="nowhere", actor=a),
    ),
    "an unknown enrolment token": _refused(
        device_enroll,
        "admin",  # the machine has no actor of its own until the token is known
        EnrollmentRefused,
        lambda w, a: device_enroll(
            token_secret=credentials.new_secret(credentials.ENROLLMENT_PREFIX), hostname="stray"
        ),
    ),
    "a member of another organisation moving a device": _refused(
        device_move,
        "outsider",
        NotPermitted,
        lambda w, a: device_move(device=w.device, team_path="platform", actor=a),
    ),
}


# --- the tests -----------------------------------------------------------------------------------


def test_every_service_is_tried_or_said_to_change_nothing() -> None:
    found = set(discovered_services())
    tried = {service_of(name) for name in SCENARIOS}
    exempt = set(NOT_STATE_CHANGES)
    assert not tried & exempt, "a service is either tried or exempt"
    assert sorted(found - tried - exempt) == [], "services with no scenario and no reason"
    assert sorted((tried | exempt) - found) == [], "entries for services that no longer exist"


def test_derived_entries_name_real_tables_and_columns() -> None:
    columns = {
        model._meta.db_table: {f.column for f in model._meta.concrete_fields}
        for model in apps.get_models(include_auto_created=True)
    }
    for entry in DERIVED:
        table, _, column = entry.partition(".")
        assert table in columns, entry
        assert not column or column in columns[table], entry
    assert not any(entry.startswith("audit_") for entry in DERIVED)


def test_the_capture_follows_savepoints_and_rollbacks() -> None:
    """The parser behind every verdict below, on Django's own statements."""
    capture = Capture()
    with connection.execute_wrapper(capture):
        with transaction.atomic():
            Team.objects.filter(pk=0).update(name="x")
            with transaction.atomic():
                PublishRun.objects.filter(pk=0).update(error="y", attempts=1)
                transaction.set_rollback(True)
        TeamEndpointUse.objects.filter(pk=0).delete()
    first, undone, outside = capture.writes
    assert (first.verb, first.table, first.columns) == ("UPDATE", "teams_team", frozenset({"name"}))
    assert undone.columns == {"error", "attempts"} and len(undone.savepoints) == 2
    assert undone.savepoints[0] == first.savepoints[0]
    assert (outside.verb, outside.savepoints) == ("DELETE", ())
    assert capture.standing() == [first, outside]


def test_a_write_counts_as_recorded_only_by_an_event_of_its_own_transaction(
    cast: dict[str, Any],
) -> None:
    acme = cast["acme"]
    capture = Capture()
    with connection.execute_wrapper(capture):
        with transaction.atomic():
            Organization.objects.filter(pk=acme.pk).update(name="Unrecorded")
        with transaction.atomic():
            Organization.objects.filter(pk=acme.pk).update(name="Recorded")
            audit_record(
                organization_id=acme.pk,
                actor=OPERATOR,
                action="organization.rename",
                object_type="organization",
                object_key=acme.slug,
            )
        Organization.objects.filter(pk=acme.pk).update(sso_required=True)
    seen = Observed(OPERATOR, True, capture.standing(), [])
    assert seen.unaudited() == [
        "UPDATE accounts_organization (name): in a transaction that records no audit event",
        "UPDATE accounts_organization (sso_required): outside any transaction the call opened",
    ]


def test_commands_write_only_through_services() -> None:
    """A command that stored rows itself would bypass every event above."""
    writing = set()
    for info in pkgutil.walk_packages(policyhub.__path__, "policyhub."):
        if ".management.commands." not in info.name:
            continue
        source = inspect.getsource(importlib.import_module(info.name))
        calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
        if any(
            isinstance(call.func, ast.Attribute) and call.func.attr in ORM_WRITES for call in calls
        ):
            writing.add(info.name)
    assert writing == set(COMMAND_WRITES)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_state_change_records_its_event_in_its_transaction(name: str) -> None:
    world = build_world()
    probe = Probe(discovered_services()[service_of(name)])
    SCENARIOS[name](world, probe)
    seen = probe.one
    assert seen.entered, f"the scenario never reached {service_of(name)}"
    assert seen.state_writes, "the scenario changed nothing, so it proves nothing"
    assert seen.unaudited() == []
    for event in seen.events:
        assert event.organization_id is not None, event
        assert event.actor_label and event.actor_kind in set(ActorKind), event
        assert event.object_type in dict(OBJECT_TYPES) and event.object_key, event
    assert {event.action for event in seen.events} <= documented_actions(), "docs/audit.md"
    named = {(event.actor_label, event.actor_kind) for event in seen.events}
    assert (seen.actor.label, seen.actor.kind.value) in named, named


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_refused_call_records_no_event_and_changes_nothing(name: str) -> None:
    world = build_world()
    service, scenario = REFUSALS[name]
    probe = Probe(service)
    scenario(world, probe)
    seen = probe.one
    assert seen.entered
    assert seen.events == []
    assert [str(w) for w in seen.writes if not w.derived] == []
