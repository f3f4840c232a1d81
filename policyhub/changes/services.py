"""Writes of change sets: create (plan) → submit (validate) → approve or reject → publish.

Every transition is audited in its own transaction, and so is moving a waiting change set's
publish time (`change_set_schedule`). Publishing is a step of
`releases.services.publishing.release_publish`, which calls `change_sets_publish_due` under the
organisation's lock: the due approved change sets are applied in approval order, then the
releases are rendered from the resulting live policy. This app knows nothing of releases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import membership_lock
from policyhub.actors import Actor, ActorKind
from policyhub.audit.services import audit_record
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import (
    WAITING,
    change_set_draft_of,
    change_set_version,
    live_policy_digest,
    policy_plan,
)
from policyhub.errors import ApplicationError, NotPermitted, invalid_fields
from policyhub.policies import document
from policyhub.policies.document import Change
from policyhub.policies.domain import Json
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply, policy_check
from policyhub.teams.services import team_delete_check
from policyhub.validators import is_plain_text
from providers.base import Issue

# Who approves when the organisation asks for no second person.
AUTO_APPROVAL = Actor.system("approval-not-required")
# Who refuses a change set that can no longer be applied when its publish comes.
PUBLISHER = Actor.system("publish")


@transaction.atomic
def change_set_create(
    *,
    actor: Actor,
    organization: Organization,
    document_text: str,
    reason: str = "",
    title: str = "",
    publish_at: datetime | None = None,
) -> ChangeSet:
    """A draft change set: the wanted document and its plan against the live policy. Its author
    must be allowed to change every node it touches."""
    authorize(actor, organization, Permission.POLICY_EDIT, doing="propose policy changes")
    wanted = document.parse(document_text)
    if wanted.slug != organization.slug:
        raise ApplicationError(
            "the document is for another organisation",
            [Issue("error", "organization.slug", f"is {wanted.slug!r}, not {organization.slug!r}")],
        )
    changes = policy_plan(organization, wanted)
    _authorize_nodes(actor, organization, changes)
    _authorize_schedule(actor, organization, publish_at)
    plan = [str(change) for change in changes]
    if not plan:
        raise ApplicationError(f"the document matches the live policy of {organization.slug}")
    change_set = ChangeSet(
        organization=organization,
        author=actor.user,
        author_kind=actor.kind,
        author_label=actor.label,
        title=title or _title(plan),
        reason=reason,
        document=document_text,
        plan=plan,
        base_digest=live_policy_digest(organization),
        publish_at=publish_at,
    )
    change_set.full_clean()
    change_set.save()
    _audit(change_set, actor, "create", after={"plan": plan}, reason=reason)
    return change_set


@transaction.atomic
def change_set_draft_edit(
    *,
    actor: Actor,
    organization: Organization,
    edit: Callable[[Json], None],
    reason: str = "",
) -> ChangeSet:
    """Apply one edit to the actor's own draft change set, which every edit made in the browser
    goes into: created from the live policy at the first edit, then rewritten as a whole wanted
    document at each one. `edit` changes the document's tables in place (`document.to_dict`);
    refusals name document paths. The edited policy must validate (errors stay out of drafts,
    so each field error shows where it was made); a draft whose base the live policy has left
    is refused as stale (discard it and edit again)."""
    authorize(actor, organization, Permission.POLICY_EDIT, doing="edit the policy")
    if actor.user is None:
        raise NotPermitted(f"{actor.label} has no draft of its own: propose a change set instead")
    # One person's edits, one at a time: two first edits at once would make two drafts.
    membership_lock(organization, actor.user.pk)
    draft = change_set_draft_of(organization, actor.user.pk, lock=True)
    # The digest before the policy: a write in between makes the draft look stale (refused at
    # its next edit or submit), never current with a base it was not planned against.
    base = live_policy_digest(organization)
    live = org_policy(organization)
    if draft is not None and draft.base_digest != base:
        raise _stale(draft)
    raw = document.to_dict(document.parse(draft.document) if draft else live)
    with document.in_document_paths():
        edit(raw)
        wanted = document.from_dict(raw)
        changes = document.plan(live, wanted)
        _authorize_nodes(actor, organization, changes)
        policy_check(wanted)
        team_delete_check(organization=organization, paths=set(live.teams) - set(wanted.teams))
    plan = [str(change) for change in changes]
    before = {"plan": draft.plan} if draft else None
    if draft is None:
        if not plan:
            raise ApplicationError(f"this matches the live policy of {organization.slug}")
        draft = ChangeSet(
            organization=organization,
            author=actor.user,
            author_kind=actor.kind,
            author_label=actor.label,
            base_digest=base,
        )
    # The title follows the plan until the author names the draft (change_set_describe).
    named = draft.pk is not None and draft.title != _draft_title(draft.plan)
    draft.document, draft.plan = document.dump(wanted), plan
    if not named:
        draft.title = _draft_title(plan)
    if reason:
        draft.reason = reason
    draft.full_clean()
    draft.save()
    _audit(draft, actor, "edit", before=before, after={"plan": plan}, reason=reason)
    return draft


@transaction.atomic
def change_set_discard(*, actor: Actor, change_set: ChangeSet) -> None:
    """Throw away a draft: only its author may, and only while it is a draft."""
    change_set = _locked(change_set)
    _require_status(change_set, ChangeSet.Status.DRAFT, "discarded")
    if not _same_person(actor, change_set):
        raise NotPermitted(
            f"{actor.label} may not discard change set {change_set.pk}",
            [Issue("error", "actor", "only the author discards a draft")],
        )
    _audit(change_set, actor, "discard", before={"plan": change_set.plan})
    change_set.delete()


@transaction.atomic
def change_set_describe(
    *, actor: Actor, change_set: ChangeSet, title: str, reason: str
) -> ChangeSet:
    """Name a draft and say why it is wanted before submitting it: only its author may, and
    only while it is a draft (what a reviewer reads is what was submitted)."""
    change_set = _locked(change_set)
    _require_status(change_set, ChangeSet.Status.DRAFT, "described")
    if not _same_person(actor, change_set):
        raise NotPermitted(
            f"{actor.label} may not describe change set {change_set.pk}",
            [Issue("error", "actor", "only the author describes a draft")],
        )
    title, reason = title.strip(), reason.strip()
    issues = [Issue("error", "title", "must not be empty")] if not title else []
    for name, value in (("title", title), ("reason", reason)):
        if not is_plain_text(value):
            issues.append(Issue("error", name, "contains a control character"))
    if issues:
        raise ApplicationError(f"change set {change_set.pk} cannot be described so", issues)
    before = {"title": change_set.title, "reason": change_set.reason}
    change_set.title, change_set.reason = title, reason
    try:
        change_set.full_clean()
    except ValidationError as invalid:
        raise invalid_fields(
            f"change set {change_set.pk} cannot be described so", invalid
        ) from None
    change_set.save()
    _audit(change_set, actor, "describe", before=before, after={"title": title, "reason": reason})
    return change_set


@transaction.atomic
def change_set_submit(
    *, actor: Actor, change_set: ChangeSet, publish_at: datetime | None = None
) -> ChangeSet:
    """Validate the whole wanted policy (errors block) and put the change set up for review;
    where the organisation does not require approval it is approved at once. Whoever submits
    must be allowed to change every node it touches."""
    change_set = _locked(change_set)
    organization = change_set.organization
    authorize(actor, organization, Permission.POLICY_EDIT, doing="submit policy changes")
    _require_status(change_set, ChangeSet.Status.DRAFT, "submitted")
    if not change_set.plan:
        raise ApplicationError(
            f"change set {change_set.pk} changes nothing: it matches the live policy",
            [Issue("error", "plan", "is empty")],
        )
    if live_policy_digest(organization) != change_set.base_digest:
        raise _stale(change_set)
    wanted = document.parse(change_set.document)
    _authorize_nodes(actor, organization, policy_plan(organization, wanted))
    _authorize_schedule(actor, organization, publish_at or change_set.publish_at)
    policy_check(wanted)
    current = org_policy(organization)
    team_delete_check(organization=organization, paths=set(current.teams) - set(wanted.teams))
    now = timezone.now()
    change_set.status, change_set.submitted_at = ChangeSet.Status.SUBMITTED, now
    if publish_at is not None:
        change_set.publish_at = publish_at
    change_set.full_clean()
    change_set.save()
    _audit(change_set, actor, "submit", after=_state(change_set))
    if not organization.requires_approval:
        change_set.status, change_set.decided_at = ChangeSet.Status.APPROVED, now
        change_set.decided_by_label = AUTO_APPROVAL.label
        change_set.decision_reason = "the organisation does not require approval"
        change_set.full_clean()
        change_set.save()
        _audit(
            change_set,
            AUTO_APPROVAL,
            "approve",
            after=_state(change_set),
            reason=change_set.decision_reason,
        )
    return change_set


@transaction.atomic
def change_set_approve(
    *, actor: Actor, change_set: ChangeSet, reason: str = "", read: str | None = None
) -> ChangeSet:
    """Four eyes: a reviewer other than the author approves a submitted change set.

    `read`: the version the reviewer read (`change_set_version`), compared under the change
    set's lock: an approval of a change set edited and submitted again since is refused, not
    given to content nobody reviewed."""
    change_set = _locked(change_set)
    authorize(
        actor, change_set.organization, Permission.CHANGE_SET_REVIEW, doing="approve change sets"
    )
    if _same_person(actor, change_set):
        raise ApplicationError(
            "the author can never approve their own change",
            [Issue("error", "actor", f"{actor.label} wrote change set {change_set.pk}")],
        )
    if read is not None and read != change_set_version(change_set):
        raise ApplicationError(
            f"change set {change_set.pk} changed since it was read: read it again, then decide",
            [Issue("error", "version", "is not the change set's current version")],
        )
    return _decide(change_set, actor, ChangeSet.Status.APPROVED, reason)


@transaction.atomic
def change_set_reject(*, actor: Actor, change_set: ChangeSet, reason: str) -> ChangeSet:
    """Send a submitted change set back; a rejection always says why."""
    change_set = _locked(change_set)
    authorize(
        actor, change_set.organization, Permission.CHANGE_SET_REVIEW, doing="reject change sets"
    )
    if not reason.strip():
        raise ApplicationError(
            "a rejection needs a reason", [Issue("error", "reason", "must not be empty")]
        )
    return _decide(change_set, actor, ChangeSet.Status.REJECTED, reason)


@transaction.atomic
def change_set_schedule(
    *, actor: Actor, change_set: ChangeSet, publish_at: datetime | None
) -> ChangeSet:
    """Set, move or clear (None: with the next publish) when a change set still on its way
    goes out. Either way it decides when a publish runs, so it takes `publish`, whoever wrote
    the change set; its content and review stay as they are."""
    change_set = _locked(change_set)
    authorize(actor, change_set.organization, Permission.PUBLISH, doing="schedule a publish")
    if change_set.status not in WAITING:
        raise ApplicationError(
            f"change set {change_set.pk} is {change_set.status}; only a waiting one "
            f"({', '.join(WAITING)}) can be scheduled",
            [Issue("error", "status", f"is {change_set.status}")],
        )
    if publish_at is not None and publish_at <= timezone.now():
        # A time already past would publish at once, which is "publish now", asked for as such.
        raise ApplicationError(
            "a publish time must be in the future",
            [Issue("error", "publish_at", "is not in the future")],
        )
    before = _state(change_set)
    change_set.publish_at = publish_at
    change_set.full_clean()
    change_set.save()
    _audit(change_set, actor, "schedule", before=before, after=_state(change_set))
    return change_set


def _same_person(actor: Actor, change_set: ChangeSet) -> bool:
    """Whether the reviewer wrote the change set: the same person, through whichever means
    (session or API token), or the same operator."""
    if actor.user is not None and change_set.author_id is not None:
        return actor.user.pk == change_set.author_id
    return actor.label == change_set.author_label


def _authorize_nodes(actor: Actor, organization: Organization, changes: list[Change]) -> None:
    authorize(
        actor,
        organization,
        Permission.POLICY_EDIT,
        doing="change these nodes",
        nodes=[change.node for change in changes],
    )


def _authorize_schedule(
    actor: Actor, organization: Organization, publish_at: datetime | None
) -> None:
    """A scheduled change set publishes on its own when it is due (with whatever else is
    waiting): setting the time is asking for a publish."""
    if publish_at is not None:
        authorize(actor, organization, Permission.PUBLISH, doing="schedule a publish")


def _decide(
    change_set: ChangeSet, actor: Actor, status: ChangeSet.Status, reason: str
) -> ChangeSet:
    """A reviewer's decision on a submitted change set, recorded and audited."""
    _require_status(change_set, ChangeSet.Status.SUBMITTED, status)
    change_set.status, change_set.decided_by = status, actor.user
    change_set.decided_by_label = actor.label
    change_set.decided_at, change_set.decision_reason = timezone.now(), reason.strip()
    change_set.full_clean()
    change_set.save()
    verb = {ChangeSet.Status.APPROVED: "approve", ChangeSet.Status.REJECTED: "reject"}[status]
    _audit(change_set, actor, verb, after=_state(change_set), reason=reason)
    return change_set


@dataclass(frozen=True)
class DueChangeSets:
    """What a publish did with the due change sets: applied ones, and why others were refused."""

    published: list[ChangeSet]
    refused: list[str]


def change_sets_publish_due(
    *, organization: Organization, run_id: int, actor: Actor
) -> DueChangeSets:
    """Apply the organisation's approved change sets that are due, oldest approval first, and
    mark them published by publish run `run_id` (requested by `actor`). One planned against a
    live policy that has changed since is refused (rejected, and reported back for the run's
    error) instead of overwriting that change. One approved automatically goes back to review
    if the organisation requires approval now, and out only while its author may still make it.

    Runs inside the publish's transaction, under its lock on the organisation."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("change_sets_publish_due must run inside the publish transaction")
    now = timezone.now()
    due = (
        ChangeSet.objects.select_for_update(of=("self",))
        .filter(organization=organization, status=ChangeSet.Status.APPROVED)
        .filter(Q(publish_at__isnull=True) | Q(publish_at__lte=now))
        .select_related("author")
        .order_by("decided_at", "pk")
    )
    published, refused = [], []
    for change_set in due:
        change_set.organization = organization
        reviewed = change_set.decided_by_label != AUTO_APPROVAL.label
        if not reviewed and organization.requires_approval:
            _return_for_review(change_set)
            continue
        problem = ""
        if live_policy_digest(organization) != change_set.base_digest:
            problem = _stale(change_set).message
        elif not reviewed:
            problem = _author_refusal(organization, change_set)
        if not problem:
            try:
                with transaction.atomic():
                    policy_apply(
                        organization=organization,
                        wanted=document.parse(change_set.document),
                        actor=_author(change_set),
                        reason=_apply_reason(change_set),
                        approved_change_set_id=change_set.pk,
                    )
            except ApplicationError as exc:
                details = "; ".join(str(issue) for issue in exc.issues)
                problem = f"change set {change_set.pk} cannot be applied: {exc.message}"
                problem += f" ({details})" if details else ""
        if problem:
            change_set.status, change_set.decided_by = ChangeSet.Status.REJECTED, None
            change_set.decided_by_label = PUBLISHER.label
            change_set.decided_at, change_set.decision_reason = now, problem
            change_set.full_clean()
            change_set.save()
            _audit(change_set, PUBLISHER, "refuse", after=_state(change_set), reason=problem)
            refused.append(problem)
            continue
        change_set.status, change_set.published_at = ChangeSet.Status.PUBLISHED, now
        change_set.published_run_id = run_id
        change_set.full_clean()
        change_set.save()
        _audit(change_set, actor, "publish", after={**_state(change_set), "run": run_id})
        published.append(change_set)
    return DueChangeSets(published, refused)


# --- helpers -------------------------------------------------------------------------------------


def _locked(change_set: ChangeSet) -> ChangeSet:
    return (
        ChangeSet.objects.select_for_update(of=("self",))
        .select_related("organization")
        .get(pk=change_set.pk)
    )


def _require_status(change_set: ChangeSet, status: str, becoming: str) -> None:
    if change_set.status != status:
        raise ApplicationError(
            f"change set {change_set.pk} is {change_set.status}; only a {status} one can be {becoming}",
            [Issue("error", "status", f"is {change_set.status}, not {status}")],
        )


def _stale(change_set: ChangeSet) -> ApplicationError:
    return ApplicationError(
        f"change set {change_set.pk} is stale: the live policy of {change_set.organization.slug} "
        "changed since it was planned; re-plan it",
        [Issue("error", "base", "differs from the live policy")],
    )


def _return_for_review(change_set: ChangeSet) -> None:
    """Approved automatically, before its organisation required approval: it waits for a
    reviewer now, as if it had been submitted today."""
    change_set.status = ChangeSet.Status.SUBMITTED
    change_set.decided_by, change_set.decided_by_label = None, ""
    change_set.decided_at, change_set.decision_reason = None, ""
    change_set.full_clean()
    change_set.save()
    reason = f"{change_set.organization.slug} now requires approval"
    _audit(change_set, PUBLISHER, "return", after=_state(change_set), reason=reason)


def _author_refusal(organization: Organization, change_set: ChangeSet) -> str:
    """Why a change set nobody reviewed may not go out: it does on its author's authority
    alone, so they must still hold it (a member since removed, or an editor moved to another
    team, does not)."""
    if change_set.author_kind not in (ActorKind.USER, ActorKind.TOKEN):
        return ""
    prefix = f"change set {change_set.pk} cannot be applied"
    if change_set.author is None:
        return f"{prefix}: its author's account is gone"
    author = Actor.for_user(change_set.author)
    try:
        found = authorize(author, organization, Permission.POLICY_EDIT, doing="change the policy")
        if found.scope is not None:  # a team editor: plan again (the publish's own cost) for nodes
            changes = policy_plan(organization, document.parse(change_set.document))
            _authorize_nodes(author, organization, changes)
    except NotPermitted as refused:
        return f"{prefix}: its author may no longer make it ({refused.message})"
    return ""


def _author(change_set: ChangeSet) -> Actor:
    return Actor.recorded(change_set.author_kind, change_set.author_label, change_set.author)


def _apply_reason(change_set: ChangeSet) -> str:
    label = f"change set {change_set.pk}"
    return f"{label}: {change_set.reason}" if change_set.reason else label


def _draft_title(plan: list[str]) -> str:
    return _title(plan) if plan else "no changes yet"


def _title(plan: list[str]) -> str:
    first = plan[0]
    more = f" and {len(plan) - 1} more" if len(plan) > 1 else ""
    return (first[: 200 - len(more) - 1] + more)[:200]


def _state(change_set: ChangeSet) -> dict[str, object]:
    return {
        "status": change_set.status,
        "publish_at": change_set.publish_at.isoformat() if change_set.publish_at else None,
    }


def _audit(
    change_set: ChangeSet,
    actor: Actor,
    verb: str,
    *,
    before: object = None,
    after: object = None,
    reason: str = "",
) -> None:
    audit_record(
        organization_id=change_set.organization_id,
        actor=actor,
        action=f"change_set.{verb}",
        object_type="change_set",
        object_key=str(change_set.pk),
        before=before,
        after=after,
        reason=reason,
    )
