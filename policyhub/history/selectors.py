"""A team's past: its policy and files as of any moment, the release its machines were served
then, and its releases newest first with the changes behind each.

The policy then is the live policy with every later event undone (audit.history reads the
trail); it holds the organisation's own objects and the team's chain only, the shape
`team_policy` gives for the present, so validation, resolution and rendering read it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Case, F, IntegerField, Prefetch, Q, QuerySet, Value, When, Window
from django.db.models.fields.json import KT
from django.db.models.functions import RowNumber
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.audit import history as trail
from policyhub.audit.models import ABOUT_TEAM, POLICY_CHANGES, POLICY_MOVE, AuditEvent, KeyWord
from policyhub.changes.models import ChangeSet
from policyhub.errors import ApplicationError
from policyhub.policies.document import codex_dict, codex_window
from policyhub.policies.domain import Endpoint, Json, Node, OrgPolicy, TeamSpec
from policyhub.policies.selectors import teams_policy
from policyhub.policies.validation import TeamValidation, validate_team
from policyhub.releases.models import Release
from policyhub.rendering.render import RenderedVariant, render_release
from policyhub.teams.models import Team
from providers.base import Issue

# The revision the files of a past policy name in their headers: they were rendered now, from
# the policy as it stood, and need not be what was published then (the release says that).
AS_OF_REVISION = "as-of"
# The changes shown with each release of a timeline; the audit log has them all.
CHANGES_SHOWN = 20
ROLLOUT_ACTIONS = ("release.rollout_start", "release.rollout_promote", "release.rollout_abort")
RELEASE_MADE = ("release.publish", "release.rollback")
# What history reads of a release (never its files or served bodies: kilobytes each).
RELEASE_READ = (
    "id",
    "organization_id",
    "team_path",
    "revision",
    "current",
    "content_digest",
    "rollout_percent",
    "created_at",
    "aborted_at",
    "publish_run_id",
    "previous",
    "previous__id",
    "previous__revision",
)


class NotThen(ApplicationError):
    """There was no such team (or organisation) at the moment asked about."""

    def __init__(self, message: str, field: str = "at") -> None:
        super().__init__(message, [Issue("error", field, message)])


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


# --- the policy as of a moment -------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyThen:
    """The policy one team saw at a moment."""

    moment: datetime
    position: int  # the id of the organisation's last event at or before the moment
    path: str  # the team's path then ("": the organisation's own node)
    path_now: str | None  # where that team is now; None when it was deleted since
    policy: OrgPolicy  # the organisation's own objects and the team's chain, as they stood


def policy_as_of(
    organization: Organization, moment: datetime, path: str = "", *, path_is_then: bool = False
) -> PolicyThen:
    """The organisation's own objects and the chain of the team at `path` as they stood at
    `moment`. `path` is where the team is now (or, for a team deleted since, where it was last),
    and its path then is found through the moves since; with `path_is_then`, it is the path at
    the moment. Raises NotThen when there was no such team then."""
    if moment > timezone.now():
        raise NotThen(f"{_when(moment)} is in the future")
    if moment < organization.created_at:
        raise NotThen(
            f"organisation {organization.slug} was created later, at "
            f"{_when(organization.created_at)}"
        )
    # Its name and Codex window as they are now, which the caller's copy may not be.
    organization = Organization.objects.get(pk=organization.pk)
    position = trail.trail_position(organization.pk, moment)
    moves = trail.moves_since(organization.pk, position)
    then = path
    if path and not path_is_then:
        exists_now = Team.objects.filter(organization=organization, path=path).exists()
        found = trail.path_then(
            organization.pk, path, exists_now=exists_now, position=position, moves=moves
        )
        if found.path is None:
            field = "at" if found.came_at is not None else "path"
            raise _not_then(organization, path, moment, found.came_at, field)
        then = found.path
    chain = [*_ancestors(then), then] if then else []
    trails = trail.node_trails(organization.pk, chain, position=position, moves=moves)
    now_paths = [t.now for t in trails.values() if t.now is not None]
    live = teams_policy(organization, now_paths)
    made = dict(
        Team.objects.filter(organization=organization, path__in=now_paths).values_list(
            "path", "created_at"
        )
    )
    teams = {}
    # The team first: when it was not there, neither need its ancestors have been.
    for prefix in reversed(chain):
        node = _node_then(trails[prefix], live, made, moment)
        if node is None:
            if prefix == then:
                raise _not_then(organization, then, moment, trails[prefix].came_at)
            raise ApplicationError(
                f"the audit trail does not tell where team {prefix} was at {_when(moment)}",
                [Issue("error", "at", "the trail after this moment is incomplete")],
            )
        teams[prefix] = TeamSpec(prefix, node["name"], _node(node))
    teams = dict(sorted(teams.items()))
    own = trail.organization_undone(
        _organization_state(live), trail.organization_changes_since(organization.pk, position)
    )
    policy = OrgPolicy(
        live.slug,
        own["name"],
        {name: _endpoint(name, table) for name, table in sorted(own["providers"].items())},
        _node(own["root"]),
        teams,
        codex_window(own["codex"]),
    )
    path_now = trails[then].now if then else ""
    return PolicyThen(moment, position, then, path_now, policy)


def _not_then(
    organization: Organization,
    path: str,
    moment: datetime,
    came_at: datetime | None,
    field: str = "at",
) -> NotThen:
    later = f": it came at {_when(came_at)}" if came_at is not None else ""
    return NotThen(
        f"there was no team {path} in {organization.slug} at {_when(moment)}{later}", field
    )


def _node_then(
    found: trail.NodeTrail, live: OrgPolicy, made: dict[str, datetime], moment: datetime
) -> Json | None:
    """The team's node at the moment, or None when no team was at its path then."""
    if found.existed is False:
        return None
    if found.deleted is not None:
        return trail.node_undone(found.deleted, found.changes)
    spec = live.teams.get(found.now) if found.now is not None else None
    if spec is None:
        return None
    if found.existed is None and made[spec.path] > moment:
        # Untouched since it was made, behind the services' back (a bulk load): the trail
        # has nothing of it, and it was not there yet.
        return None
    return trail.node_undone({"name": spec.name, **_node_state(spec.node)}, found.changes)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def _node_state(node: Node) -> Json:
    return {
        "requirements": dict(node.requirements),
        "config": dict(node.config),
        "profiles": {name: dict(table) for name, table in node.profiles.items()},
        "mcp_servers": {name: dict(table) for name, table in node.mcp_servers.items()},
    }


def _node(state: Json) -> Node:
    return Node(state["requirements"], state["config"], state["profiles"], state["mcp_servers"])


def _organization_state(live: OrgPolicy) -> Json:
    """The organisation's own objects as its plan lines compare them (document.plan)."""
    return {
        "name": live.name,
        "providers": {
            name: {
                "kind": ep.kind,
                "provider_id": ep.provider_id,
                **ep.settings,
                "capabilities": dict(ep.capabilities),
            }
            for name, ep in live.endpoints.items()
        },
        "codex": codex_dict(live.codex),
        "root": _node_state(live.root),
    }


def _endpoint(name: str, table: Json) -> Endpoint:
    settings = {k: v for k, v in table.items() if k not in ("kind", "provider_id", "capabilities")}
    return Endpoint(
        name, table["kind"], table["provider_id"], settings, dict(table.get("capabilities") or {})
    )


# --- the release then -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseThen:
    """The release a team's machines were served at a moment."""

    release: Release
    # The share of the team's devices it reached then; below 100, `previous` served the rest.
    rollout_percent: int
    previous: Release | None


def release_as_of(
    organization: Organization, team_path: str, moment: datetime, *, position: int | None = None
) -> ReleaseThen | None:
    """The release current for `team_path` at `moment` (None: none yet), and how far its
    rollout had got. Rollbacks are new revisions, and an aborted rollout is never current
    again, so it is the newest revision made by then that had not been aborted by then."""
    found = (
        Release.objects.filter(
            organization=organization, team_path=team_path, created_at__lte=moment
        )
        .filter(Q(aborted_at__isnull=True) | Q(aborted_at__gt=moment))
        .select_related("previous")
        .only(*RELEASE_READ, "previous__created_at", "previous__content_digest")
        .order_by("-revision")
        .first()
    )
    if found is None:
        return None
    if position is None:
        position = trail.trail_position(organization.pk, moment)
    percent = _rollout_then(organization, found, position)
    return ReleaseThen(found, percent, found.previous if percent < 100 else None)


def _rollout_then(organization: Organization, release: Release, position: int) -> int:
    """The release's rollout share after the trail's event `position`: set by its latest
    rollout event by then, else as it was before its first one after, else as it is."""
    key = f"{release.team_path} r{release.revision}"
    made = (
        AuditEvent.objects.filter(
            organization=organization,
            object_type="release",
            object_key=key,
            action__in=RELEASE_MADE,
        )
        .values_list("id", flat=True)
        .first()
    )
    touching = []
    events = (
        AuditEvent.objects.alias(about=ABOUT_TEAM)
        .filter(
            organization=organization,
            object_type="release",
            about=release.team_path,
            action__in=ROLLOUT_ACTIONS,
            id__gt=made or 0,
        )
        .order_by("id")
        .only("id", "action", "object_key", "before", "after")
    )
    for event in events:
        if event.object_key == key:
            side = "aborted" if event.action == "release.rollout_abort" else None
        elif (
            event.action == "release.rollout_abort"
            and (event.after or {}).get("restored", {}).get("revision") == release.revision
        ):
            side = "restored"  # an abort of the release that replaced it gave it back to all
        else:
            continue
        touching.append((event, side))
    done = [(event, side) for event, side in touching if event.id <= position]
    if done:
        event, side = done[-1]
        return _percent(event.after, side)
    if touching:
        event, side = touching[0]
        return _percent(event.before, side)
    return release.rollout_percent


def _percent(recorded: Any, side: str | None) -> int:
    """The share in a rollout event's before or after (`release_state`; for an abort, that of
    the aborted or the restored release)."""
    state = recorded[side] if side else recorded
    return int(state["rollout_percent"])


# --- a team then: policy, files and release ------------------------------------------------------


@dataclass(frozen=True)
class TeamAsOf:
    """What a team got at a moment: its policy, the files it renders to (per Codex version
    set, rendered now from the policy then) and the release its machines were served."""

    then: PolicyThen
    validation: TeamValidation
    variants: list[RenderedVariant]
    render_error: str
    release: ReleaseThen | None


def team_as_of(
    organization: Organization, path: str, moment: datetime, *, path_is_then: bool = False
) -> TeamAsOf:
    """`policy_as_of` of one team, validated and rendered, with `release_as_of` its path then."""
    then = policy_as_of(organization, moment, path, path_is_then=path_is_then)
    validation = validate_team(then.policy, then.path)
    variants: list[RenderedVariant] = []
    render_error = ""
    if not validation.errors:
        try:
            rendered = render_release(
                then.policy, then.path, revision=AS_OF_REVISION, validation=validation
            )
            variants = rendered.variants
        except ApplicationError as refused:
            # Today's renderer may refuse what an older one wrote (a Codex version dropped).
            render_error = refused.message
    release = release_as_of(organization, then.path, moment, position=then.position)
    return TeamAsOf(then, validation, variants, render_error, release)


# --- the timeline ---------------------------------------------------------------------------------


def team_releases(organization: Organization, team_path: str) -> QuerySet[Release]:
    """The releases of the team at `team_path`, newest revision first (keyed by revision), each
    with the run that made it and the change sets that run applied; never their files."""
    change_sets = ChangeSet.objects.only("id", "title", "author_label", "status").order_by("id")
    return (
        Release.objects.filter(organization=organization, team_path=team_path)
        .select_related("publish_run", "previous")
        .only(
            *RELEASE_READ,
            "publish_run",
            "publish_run__id",
            "publish_run__requested_by_label",
            "publish_run__status",
            "publish_run__created_at",
            "publish_run__finished_at",
        )
        .prefetch_related(Prefetch("change_sets", queryset=change_sets))
        .order_by("-revision")
    )


@dataclass(frozen=True)
class ReleaseChanges:
    """One release of a timeline and the policy changes behind it: those recorded after the
    team's previous publish and up to this one, about the organisation's own objects or a node
    of the team's chain (a rollback has none: it carries an earlier revision's files)."""

    release: Release
    recorded: AuditEvent | None  # the event that recorded the release
    after_id: int | None  # the changes lie after this event (the previous publish's)
    changes: list[AuditEvent]  # newest first, at most CHANGES_SHOWN
    more: bool  # whether there are more than those

    @property
    def rollback_of(self) -> int | None:
        """The revision whose files a rollback carries."""
        if self.recorded is None or self.recorded.action != "release.rollback":
            return None
        return (self.recorded.after or {}).get("content_of")


def timeline_changes(
    organization: Organization, team_path: str, releases: Sequence[Release]
) -> list[ReleaseChanges]:
    """The changes behind each of a page of `team_releases`, in three queries whatever the
    page: the publish before the page, the events that recorded the releases, and one read of
    the trail between the first and the last of them (index ranges of the chain's paths and
    the organisation's object types), at most CHANGES_SHOWN + 1 per release."""
    if not releases:
        return []
    oldest = min(r.revision for r in releases)
    before = (
        Release.objects.filter(
            organization=organization,
            team_path=team_path,
            revision__lt=oldest,
            publish_run__isnull=False,
        )
        .order_by("-revision")
        .values_list("revision", flat=True)
        .first()
    )
    revisions = [r.revision for r in releases] + ([before] if before is not None else [])
    recorded = {
        int(event.object_key.rsplit(" r", 1)[1]): event
        for event in AuditEvent.objects.filter(
            organization=organization,
            object_type="release",
            object_key__in=[f"{team_path} r{revision}" for revision in revisions],
            action__in=RELEASE_MADE,
        ).only("id", "action", "object_key", "after", "created_at")
    }
    lower = recorded[before].id if before is not None and before in recorded else 0
    spans: dict[int, tuple[int, int]] = {}
    for release in sorted(releases, key=lambda r: r.revision):
        event = recorded.get(release.revision)
        if event is None or release.publish_run_id is None:
            continue
        spans[release.revision] = (lower, event.id)
        lower = event.id
    found: dict[int, list[AuditEvent]] = {}
    if spans:
        for event in _changes_in(organization, team_path, spans):
            found.setdefault(event.bucket, []).append(event)  # type: ignore[attr-defined]
    out = []
    for release in releases:
        events = found.get(release.revision, [])
        span = spans.get(release.revision)
        out.append(
            ReleaseChanges(
                release,
                recorded.get(release.revision),
                span[0] if span else None,
                events[:CHANGES_SHOWN],
                len(events) > CHANGES_SHOWN,
            )
        )
    return out


def _changes_in(
    organization: Organization, team_path: str, spans: dict[int, tuple[int, int]]
) -> QuerySet[AuditEvent]:
    """The policy changes about the team's chain in each span (revision -> (after id, up to
    id)), newest first, each with the revision it is behind (`bucket`), at most
    CHANGES_SHOWN + 1 per span. A node of the chain moved within a span had another path
    before: its changes are read under each path it had, for the stretch it had it."""
    lowest = min(lower for lower, _ in spans.values())
    highest = max(upper for _, upper in spans.values())
    moves = [m for m in trail.moves_since(organization.pk, lowest) if m.id <= highest]
    stretches = Q(pk__in=[])
    paths: set[str] = set()
    for lower, upper in spans.values():
        for path in [*_ancestors(team_path), team_path]:
            for had, after, until in _paths_had(path, lower, upper, moves):
                stretches |= Q(team_path=had, id__gt=after, id__lte=until)
                paths.add(had)
    bucket = Case(
        *(
            When(id__gt=lower, id__lte=upper, then=Value(revision))
            for revision, (lower, upper) in spans.items()
        ),
        output_field=IntegerField(),
    )
    about_chain = (
        Q(object_type__in=trail.ORGANIZATION_OBJECTS, action__in=POLICY_CHANGES)
        | (Q(object_type="team", action__in=POLICY_CHANGES) & stretches)
        | (Q(action=POLICY_MOVE) & (Q(moved_from__in=paths) | Q(moved_to__in=paths)))
    )
    return (
        AuditEvent.objects.alias(
            team_path=KeyWord(2), moved_from=KT("before__path"), moved_to=KT("after__path")
        )
        .filter(organization=organization, id__gt=lowest, id__lte=highest)
        .filter(about_chain)
        .annotate(
            bucket=bucket,
            rank=Window(RowNumber(), partition_by=[bucket], order_by=F("id").desc()),
        )
        .filter(rank__lte=CHANGES_SHOWN + 1)
        .order_by("-id")
        .only(
            "id",
            "action",
            "object_type",
            "object_key",
            "before",
            "after",
            "reason",
            "actor_label",
            "created_at",
        )
    )


def _paths_had(
    path: str, lower: int, upper: int, moves: Sequence[trail.Move]
) -> list[tuple[str, int, int]]:
    """The paths the node at `path` (at event `upper`) had between two events, each with the
    stretch it had it: the moves between them followed back."""
    had, until = [], upper
    for move in reversed(moves):
        if lower < move.id <= until and trail.under(path, move.target):
            had.append((path, move.id, until))
            path, until = move.brought_back(path), move.id
    had.append((path, lower, until))
    return had
