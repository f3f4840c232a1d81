"""Publishing, as a worker does it: claim a run, apply the approved change sets that are due,
then validate and render the teams whose inputs changed, and sign and store one release per team
whose files changed.

All of it runs in one transaction under a lock on the organisation: all teams or none, and two
publishes of one organisation run one after the other and agree on revisions. Nothing here
enqueues work (runs.py and tasks.py do), so the tasks can import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import SCHEDULER, Actor
from policyhub.audit.services import audit_event, audit_record, audit_record_many
from policyhub.changes.selectors import organizations_with_due_change_sets
from policyhub.changes.services import change_sets_publish_due
from policyhub.errors import ApplicationError
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_check
from policyhub.policies.validation import TeamValidation
from policyhub.releases.models import PublishRun, Release, ReleaseVariant, TeamRender
from policyhub.releases.selectors import (
    current_releases_with_published_digest,
    last_revisions,
    publish_runs_busy,
    team_renders,
)
from policyhub.releases.services.keys import signing_key_active
from policyhub.releases.services.signed import FileSet, releases_save, signed_release
from policyhub.rendering.inputs import team_input_digests
from policyhub.rendering.render import render_release

# Releases are stored as they come, this many at a time (the transaction still makes it all or
# nothing): a worker holds one batch of bodies, not every team's.
PUBLISH_BATCH = 500


@transaction.atomic
def publish_run_create(*, organization: Organization, actor: Actor) -> PublishRun:
    """Record a publish run for an actor already allowed to publish (a worker still has to be
    handed it: runs.publish_run_request)."""
    run = PublishRun(
        organization=organization,
        requested_by=actor.user,
        requested_by_kind=actor.kind,
        requested_by_label=actor.label,
    )
    run.full_clean()
    run.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="publish_run.request",
        object_type="publish_run",
        object_key=str(run.pk),
    )
    return run


def publish_runs_create_due(*, now: datetime | None = None) -> list[PublishRun]:
    """A run for every organisation with an approved change set whose publish time has come,
    unless one is already waiting or running (Celery beat asks every minute). Each run is its own
    transaction: one organisation's trouble does not hold back the others."""
    organizations = organizations_with_due_change_sets(now or timezone.now()).exclude(
        pk__in=publish_runs_busy().values("organization_id")
    )
    runs = []
    for org in organizations:
        authorize(SCHEDULER, org, Permission.PUBLISH, doing="publish scheduled change sets")
        runs.append(publish_run_create(organization=org, actor=SCHEDULER))
    return runs


def _claimable() -> Q:
    """Pending runs, and running ones whose worker let the lease expire (it died)."""
    expired = Q(status=PublishRun.Status.RUNNING, lease_expires_at__lt=timezone.now())
    return Q(status=PublishRun.Status.PENDING) | expired


class PublishInterrupted(Exception):
    """The database went away in the middle of a publish and was still away when the worker
    tried to record how it ended: the run is still marked running under this worker's claim
    (`claim`, the run's attempt number), which only this worker's retry takes up again
    (`publish_run_execute(claim=...)`) rather than waiting out the lease."""

    def __init__(self, run_id: int, claim: int) -> None:
        super().__init__(f"publish run {run_id} lost the database during attempt {claim}")
        self.run_id, self.claim = run_id, claim

    def __reduce__(self) -> tuple[type[PublishInterrupted], tuple[int, int]]:
        # Celery may pickle the exception (a retry's cause): made again from its fields.
        return PublishInterrupted, (self.run_id, self.claim)


def publish_run_execute(*, run_id: int, claim: int | None = None) -> PublishRun | None:
    """Claim a run and publish it; returns None when another worker holds it or it is done.

    The claim is one conditional UPDATE, so exactly one worker wins. A worker killed mid-run
    leaves no release (the publish transaction dies with it) and a running row whose lease
    expires; the redelivered task or the recovery sweep then claims it again. A worker that
    lost the database hands the run back (pending) or, when it cannot even record that, raises
    PublishInterrupted with its claim, which its retry passes as `claim` to take the run up
    again at once. Each step of the run (start, finish or failure, a hand-back after a lost
    connection) is recorded in the transaction that makes it, in the requester's name, as the
    releases are.
    """
    run = _claimed(run_id, claim)
    if run is None:
        return None
    try:
        return _published(run)
    except (OperationalError, InterfaceError) as exc:
        # The database went away: nothing was stored (or, when only the answer to the commit
        # was lost, everything was, the run's end too, and the retry finds nothing to claim).
        reason = f"the database connection was lost ({type(exc).__name__}); retried"
        _record_end(
            run,
            exc,
            lambda: _run_step(run, "requeue", status=PublishRun.Status.PENDING, reason=reason),
        )
        raise
    except SoftTimeLimitExceeded as exc:
        limit = settings.PUBLISH_SOFT_TIME_LIMIT
        message = (
            f"stopped after {limit} s, before its lease ran out (PUBLISH_LEASE_SECONDS); "
            "nothing was stored"
        )
        _record_end(run, exc, lambda: _failed(run, message))
        raise
    except Exception as exc:
        # The publish transaction rolled back: nothing was stored. Record why on the run.
        error = str(exc) or type(exc).__name__
        _record_end(run, exc, lambda: _failed(run, error))
        raise


@transaction.atomic
def _published(run: PublishRun) -> PublishRun:
    """Publish, and record the run's success with its counts in the same transaction: the
    releases and the run's end are stored together or not at all, so no run is left running
    over releases it did store, and an attempt that lost its claim stores nothing."""
    counts = release_publish(run=run)
    finished = _run_step(
        run,
        "finish",
        status=PublishRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        teams=counts.teams,
        teams_rendered=counts.rendered,
        releases_created=counts.created,
    )
    if finished is None:
        # Another worker holds the run now: what this attempt made is rolled back, theirs counts.
        raise ApplicationError(f"publish run {run.pk} was claimed again while this attempt ran")
    return finished


def _record_end(run: PublishRun, cause: BaseException, record: Callable[[], object]) -> None:
    """Record how an attempt ended (handed back, or failed); when the database cannot take even
    that, raise PublishInterrupted, so that the task's retry takes up the run it still holds."""
    try:
        record()
    except (OperationalError, InterfaceError):
        raise PublishInterrupted(run.pk, run.attempts) from cause


@transaction.atomic
def _claimed(run_id: int, claim: int | None = None) -> PublishRun | None:
    """Claim the run if it is claimable, or if it is still running under `claim` (this task's
    own earlier claim: any other claim since would have changed the attempt number)."""
    now = timezone.now()
    claimable = _claimable()
    if claim is not None:
        claimable |= Q(status=PublishRun.Status.RUNNING, attempts=claim)
    claimed = PublishRun.objects.filter(claimable, pk=run_id).update(
        status=PublishRun.Status.RUNNING,
        started_at=now,
        lease_expires_at=now + timedelta(seconds=settings.PUBLISH_LEASE_SECONDS),
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return None
    run = PublishRun.objects.get(pk=run_id)
    _run_audit(run, "start", after={"status": run.status, "attempt": run.attempts})
    return run


def _failed(run: PublishRun, error: str) -> None:
    error = error[:10_000]
    _run_step(
        run,
        "fail",
        reason=error,
        status=PublishRun.Status.FAILED,
        finished_at=timezone.now(),
        error=error,
    )


# What the events of a run's steps show of it (its error is the event's reason).
RUN_COUNTS = ("teams", "teams_rendered", "releases_created")


@transaction.atomic
def _run_step(
    run: PublishRun, verb: str, *, reason: str = "", **fields: object
) -> PublishRun | None:
    """Move the run on (`fields` of its row) and record it, in one transaction, if it is still
    running under this attempt's claim; None, changing nothing, when it is not (its lease ran
    out and another worker claimed it, or this attempt's end was stored already)."""
    ours = PublishRun.objects.filter(
        pk=run.pk, status=PublishRun.Status.RUNNING, attempts=run.attempts
    )
    if not ours.update(**fields):
        return None
    run = PublishRun.objects.get(pk=run.pk)
    after = {
        "status": run.status,
        **{name: getattr(run, name) for name in RUN_COUNTS if name in fields},
    }
    _run_audit(run, verb, before={"status": PublishRun.Status.RUNNING}, after=after, reason=reason)
    return run


def _run_audit(
    run: PublishRun, verb: str, *, before: object = None, after: object = None, reason: str = ""
) -> None:
    audit_record(
        organization_id=run.organization_id,
        actor=requester(run),
        action=f"publish_run.{verb}",
        object_type="publish_run",
        object_key=str(run.pk),
        before=before,
        after=after,
        reason=reason,
    )


@transaction.atomic
def release_publish(*, run: PublishRun) -> PublishCounts:
    """Apply the due approved change sets, then store a signed release for every team whose files
    changed.

    Only teams whose inputs changed since they were last rendered are validated and rendered
    (rendering/inputs.py): the rest would render to what they already have. So a publish costs
    what changed, plus reading the organisation's policy once.
    """
    organization = organization_lock(run.organization_id)
    actor = requester(run)
    due = change_sets_publish_due(organization=organization, run_id=run.pk, actor=actor)
    if due.refused:
        # The run itself goes on with the others; its error names what was refused and why.
        PublishRun.objects.filter(pk=run.pk).update(error="\n".join(due.refused))
    applied = [change_set.pk for change_set in due.published]
    policy = org_policy(organization)
    inputs = team_input_digests(policy)
    current = {
        r.team_path: r
        for r in current_releases_with_published_digest(organization).only(
            "id", "team_path", "content_digest"
        )
    }
    renders = team_renders(organization)
    paths = [
        path for path in sorted(policy.teams) if not _unchanged(path, inputs, current, renders)
    ]
    validations: dict[str, TeamValidation] = {}
    # The organisation's own checks, and the teams to render with their ancestors: each team
    # left out rendered, with the same inputs, from a policy that passed these checks.
    policy_check(policy.with_chains(paths), validations)
    key = signing_key_active(organization=organization, actor=actor)
    # Only the teams to render (all of them: no list to send).
    revisions = last_revisions(organization, paths if len(paths) < len(policy.teams) else None)
    signed: list[tuple[Release, list[ReleaseVariant]]] = []
    rendered_now: list[TeamRender] = []
    created = 0
    for path in paths:
        revision = revisions.get(path, 0) + 1
        rendered = render_release(
            policy, path, revision=str(revision), validation=validations.pop(path)
        )
        rendered_now.append(
            TeamRender(
                organization=organization,
                team_path=path,
                inputs_digest=inputs[path],
                content_digest=rendered.content_digest,
            )
        )
        previous = current.get(path)
        # Unchanged policy, nothing to release: neither what devices get now, nor what this team
        # was last published (so a rollback or an aborted rollout is not undone by a publish
        # that another team's change set off).
        if previous is not None and rendered.content_digest in (
            previous.content_digest,
            previous.published_digest,  # type: ignore[attr-defined]
        ):
            continue
        primary = rendered.primary
        sets = [primary, *(v for v in rendered.variants if v is not primary)]
        signed.append(
            signed_release(
                organization=organization,
                team_path=path,
                revision=revision,
                sets=[FileSet(v.team.files, v.team.content_digest, v.codex) for v in sets],
                content_digest=rendered.content_digest,
                key=key,
                previous=previous,
                publish_run=run,
                created_by=run.requested_by,
                provenance=rendered.validation.resolved.provenance(),
            )
        )
        if len(signed) == PUBLISH_BATCH:
            created += _publish_batch(organization, run, actor, applied, signed)
            signed = []
    created += _publish_batch(organization, run, actor, applied, signed)
    _renders_save(rendered_now, gone=[r.pk for p, r in renders.items() if p not in policy.teams])
    return PublishCounts(teams=len(policy.teams), rendered=len(paths), created=created)


@dataclass(frozen=True)
class PublishCounts:
    teams: int  # the organisation's teams
    rendered: int  # those whose inputs changed since their last render
    created: int  # releases made: those whose files changed


def _unchanged(
    path: str, inputs: dict[str, str], current: dict[str, Release], renders: dict[str, TeamRender]
) -> bool:
    """Whether the team's inputs are those it was last rendered from, and what they rendered to
    is the content it has now or last got from a publish: rendering it again changes nothing."""
    last, release = renders.get(path), current.get(path)
    return (
        last is not None
        and release is not None
        and last.inputs_digest == inputs[path]
        and last.content_digest in (release.content_digest, release.published_digest)  # type: ignore[attr-defined]
    )


def _renders_save(rendered: list[TeamRender], gone: list[int]) -> None:
    """Remember what each team rendered to; forget teams that are no more."""
    for start in range(0, len(rendered), PUBLISH_BATCH):
        TeamRender.objects.bulk_create(
            rendered[start : start + PUBLISH_BATCH],
            update_conflicts=True,
            unique_fields=["organization", "team_path"],
            update_fields=["inputs_digest", "content_digest"],
        )
    TeamRender.objects.filter(pk__in=gone).delete()


def requester(run: PublishRun) -> Actor:
    """Who asked for the run: the worker publishes in their name."""
    return Actor.recorded(run.requested_by_kind, run.requested_by_label, run.requested_by)


def _publish_batch(
    organization: Organization,
    run: PublishRun,
    actor: Actor,
    applied: list[int],
    signed: list[tuple[Release, list[ReleaseVariant]]],
) -> int:
    """Make these new releases current, link them to the applied change sets, audit them."""
    changed = [release.team_path for release, _ in signed]
    Release.objects.filter(organization=organization, team_path__in=changed, current=True).update(
        current=False
    )
    new = releases_save(signed)
    Release.change_sets.through.objects.bulk_create(
        [
            Release.change_sets.through(release_id=release.pk, changeset_id=change_set_id)
            for release in new
            for change_set_id in applied
        ]
    )
    audit_record_many(
        [
            audit_event(
                organization_id=organization.pk,
                actor=actor,
                action="release.publish",
                object_type="release",
                object_key=f"{release.team_path} r{release.revision}",
                after={
                    "content_digest": release.content_digest,
                    "hashes": release.hashes,
                    "run": run.pk,
                },
            )
            for release in new
        ]
    )
    return len(new)
