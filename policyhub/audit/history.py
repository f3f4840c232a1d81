"""The policy's past, read from the audit trail: where a moment falls in an organisation's
trail, the moves since, the path a team had then, and the organisation's objects and a team's
nodes as they stood, undone from what they are now.

Every plan line of `policy_apply` records the object's value before and after the change, and a
team's deletion records the whole team as it stood. So the state at a moment is the live state
with every later event undone, newest first: only the events after the moment are read, each
set of them an index range (a team path and an id bound; the organisation's object types and an
id bound; the moves after an id), whatever the size of the trail before.

Plain data only: the history layer (policyhub.history) turns these states into a policy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q

from policyhub.audit.models import POLICY_CHANGES, POLICY_MOVE, AuditEvent, KeyWord
from policyhub.errors import ApplicationError
from providers.base import Issue

Json = dict[str, Any]
# The organisation's own objects: its name and root node ("organization"), its provider
# endpoints and its Codex window, as the plan names them (`object_type` of their events).
ORGANIZATION_OBJECTS = ("organization", "provider", "codex")
CREATE, DELETE = "policy.create", "policy.delete"


@dataclass(frozen=True)
class Line:
    """A recorded plan line, as much of it as undoing needs (a large replay reads thousands:
    plain tuples, not model instances)."""

    id: int
    action: str
    object_key: str
    before: Any
    created_at: datetime


LINE = ("id", "action", "object_key", "before", "created_at")


class TrailUnreadable(ApplicationError):
    """An event the replay does not know how to undo: the answer would be wrong, so none is
    given."""

    def __init__(self, event: Line) -> None:
        super().__init__(
            f"event {event.id} ({event.action} {event.object_key}) cannot be replayed",
            [Issue("error", "at", "the audit trail after this moment cannot be replayed")],
        )


def trail_position(organization_id: int, moment: datetime) -> int:
    """The id of the organisation's last event at or before `moment` (0: none yet). Each writer
    appends its events to the organisation's chain under a lock held until it commits
    (audit.services), so the events of one organisation are numbered in the order of their
    times: "at or before the moment" is "up to this id"."""
    found = (
        AuditEvent.objects.filter(organization_id=organization_id, created_at__lte=moment)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)
        .first()
    )
    return found or 0


def under(path: str, top: str) -> bool:
    """Whether `path` is the team at `top` or one below it."""
    return path == top or path.startswith(f"{top}/")


@dataclass(frozen=True)
class Move:
    """A team carried with its subtree from one path to another (`team_move`)."""

    id: int
    source: str
    target: str
    at: datetime

    def touches(self, path: str) -> bool:
        """Whether this move carried `path` away, or brought a team to it or above it."""
        return under(path, self.source) or under(path, self.target)

    def carried(self, path: str) -> str:
        """Where a path below the moved team went."""
        return self.target + path[len(self.source) :]

    def brought_back(self, path: str) -> str:
        """Where a path below the moved team's new place was before the move."""
        return self.source + path[len(self.target) :]


def moves_since(organization_id: int, position: int) -> list[Move]:
    """Every move after `position`, oldest first. Moves are rare (a subtree with enrolled
    machines cannot move), so all of them since the moment are read at once."""
    rows = (
        AuditEvent.objects.filter(
            organization_id=organization_id, action=POLICY_MOVE, id__gt=position
        )
        .order_by("id")
        .values_list("id", "before", "after", "created_at")
    )
    # `team_move` records {"path": ...} on both sides of every move.
    return [
        Move(pk, (before or {})["path"], (after or {})["path"], at)
        for pk, before, after, at in rows
    ]


# --- which team, and where it was ----------------------------------------------------------------


@dataclass(frozen=True)
class PathThen:
    """Where a team was at a moment: its path then, or why there was no such team."""

    path: str | None
    # Set when the team came after the moment: created (or brought to its path) at this time.
    came_at: datetime | None = None


def path_then(
    organization_id: int, path: str, *, exists_now: bool, position: int, moves: Sequence[Move]
) -> PathThen:
    """The path at the moment (`position`) of the team at `path` now, or, when no team is there
    now, of the team last there (deleted or moved away since). Later moves are followed back;
    a team created there after the moment had no path then. One query per stretch between the
    moves that touch the path (usually one)."""
    current, following, upper = path, exists_now, None
    for move in [*reversed(moves), None]:
        if move is not None and not move.touches(current):
            continue
        lower = move.id if move is not None else position
        for event in _creations_and_deletions(organization_id, current, lower, upper):
            if event.action == CREATE and following:
                return PathThen(None, came_at=event.created_at)
            if event.action == DELETE and not following:
                following = True  # the team last there, deleted then
        if move is None:
            break
        if under(current, move.target):
            if following:
                current = move.brought_back(current)
        elif not following:
            following = True  # the team last there, moved away then
        upper = move.id
    return PathThen(current if following else None)


def _creations_and_deletions(
    organization_id: int, path: str, lower: int, upper: int | None
) -> list[AuditEvent]:
    """The creations and deletions of the team at `path` between two ids, newest first."""
    found = AuditEvent.objects.filter(
        organization_id=organization_id,
        object_type="team",
        object_key=f"team {path}",
        action__in=(CREATE, DELETE),
        id__gt=lower,
    )
    if upper is not None:
        found = found.filter(id__lt=upper)
    return list(found.order_by("-id").only("id", "action", "created_at"))


# --- what became of a team's node ----------------------------------------------------------------


@dataclass
class NodeTrail:
    """What became of the team at one path at the moment, told by the trail after it."""

    then: str
    # Whether a team was at `then` at the moment; None when no event since tells (no team has
    # been there since, or the one there now has not changed: the caller asks the live tree).
    existed: bool | None = None
    now: str | None = None  # its path now; None when it was deleted, or never was
    deleted: Json | None = None  # the team as it stood when it was deleted
    changes: list[Line] = field(default_factory=list)  # oldest first
    came_at: datetime | None = None  # when a team came to `then`, if none was there


def node_trails(
    organization_id: int, paths: Iterable[str], *, position: int, moves: Sequence[Move]
) -> dict[str, NodeTrail]:
    """For each path at the moment (`position`), the team there and its changes since, up to
    now or to its deletion, followed across moves. One query per round: the first reads every
    path's changes up to its first move, the next those after it (most trails take one)."""
    trails = {path: NodeTrail(path) for path in paths}
    walking = {path: (path, position) for path in paths}  # then -> (path reached, id reached)
    while walking:
        stretches = {
            then: (path, lower, next((m for m in moves if m.id > lower and m.touches(path)), None))
            for then, (path, lower) in walking.items()
        }
        found = _changes_between(
            organization_id,
            [(path, lower, move.id if move else None) for path, lower, move in stretches.values()],
        )
        walking = {}
        for then, (path, lower, move) in stretches.items():
            trail = trails[then]
            upper = move.id if move is not None else None
            mine = [
                event
                for event in found.get(path, [])
                if event.id > lower and (upper is None or event.id < upper)
            ]
            if _follow(trail, mine):
                continue
            if move is None:
                trail.now = path
            elif under(path, move.source):
                if path == move.source and trail.existed is None:
                    trail.existed = True
                walking[then] = (move.carried(path), move.id)
            elif trail.existed is None:
                # A team was moved to this path or above it, so nothing was there before.
                trail.existed, trail.came_at = False, move.at
    return trails


def _follow(trail: NodeTrail, events: Sequence[Line]) -> bool:
    """Take a stretch of the team's events, oldest first; True when its story ends in it (it
    turns out to have come later, or it was deleted)."""
    for event in events:
        if _line(event) == "":  # the team itself
            if event.action == CREATE and trail.existed is None:
                trail.existed, trail.came_at = False, event.created_at
                return True
            if event.action == DELETE:
                trail.existed = True if trail.existed is None else trail.existed
                trail.deleted = event.before
                return True
            continue
        if trail.existed is None:
            trail.existed = True
        trail.changes.append(event)
    return False


def _changes_between(
    organization_id: int, stretches: Sequence[tuple[str, int, int | None]]
) -> dict[str, list[Line]]:
    """The policy changes of each team path between two ids, in one query (an index range of
    `audit_org_team_policy` per path), by path, oldest first."""
    match = Q(pk__in=[])
    for path, lower, upper in stretches:
        one = Q(team_path=path, id__gt=lower)
        if upper is not None:
            one &= Q(id__lt=upper)
        match |= one
    found = (
        AuditEvent.objects.alias(team_path=KeyWord(2))
        .filter(organization_id=organization_id, object_type="team", action__in=POLICY_CHANGES)
        .filter(match)
        .order_by("id")
        .values_list(*LINE)
    )
    by_path: dict[str, list[Line]] = {}
    for row in found:
        event = Line(*row)
        by_path.setdefault(event.object_key.split(" ")[1], []).append(event)
    return by_path


def organization_changes_since(organization_id: int, position: int) -> list[Line]:
    """The changes of the organisation's own objects after `position`, oldest first."""
    found = (
        AuditEvent.objects.filter(
            organization_id=organization_id,
            object_type__in=ORGANIZATION_OBJECTS,
            action__in=POLICY_CHANGES,
            id__gt=position,
        )
        .order_by("id")
        .values_list(*LINE)
    )
    return [Line(*row) for row in found]


# --- undoing ---------------------------------------------------------------------------------------


def empty_node() -> Json:
    return {"requirements": {}, "config": {}, "profiles": {}, "mcp_servers": {}}


def node_undone(node: Json, changes: Sequence[Line]) -> Json:
    """A team's node (`name` and its four sections) as it stood before `changes` (its events,
    oldest first, each under the path the team had then)."""
    node = {**empty_node(), **copy.deepcopy(node)}
    for event in reversed(changes):
        _undo(node, _line(event), event)
    return node


def organization_undone(state: Json, changes: Sequence[Line]) -> Json:
    """The organisation's own objects (`name`, `providers` as the plan compares them, `codex` as
    stored, `root` node) as they stood before `changes` (oldest first)."""
    state = copy.deepcopy(state)
    for event in reversed(changes):
        kind, _, line = event.object_key.partition(" ")
        if kind == "organization" and line == "name":
            state["name"] = event.before
        elif kind == "organization":
            _undo(state["root"], line, event)
        elif kind == "provider":
            _undo_item(state["providers"], line, event)
        elif kind == "codex" and line:
            _put(state["codex"], line, event.before)
        else:
            raise TrailUnreadable(event)
    return state


def _line(event: Line) -> str:
    """What a team's event changed, after "team <path>": "" (the team), "name",
    "config.model", "profile ci model", "mcp server docs command", ..."""
    return event.object_key.split(" ", 2)[2] if event.object_key.count(" ") >= 2 else ""


def _undo(node: Json, line: str, event: Line) -> None:
    """Undo one plan line of a node: a team's name, a key of its requirements or config, a
    profile or MCP server, or one key of one."""
    if line == "name" and "name" in node:
        node["name"] = event.before
        return
    for section in ("requirements", "config"):
        if line.startswith(f"{section}."):
            _put(node[section], line[len(section) + 1 :], event.before)
            return
    for prefix, section in (("profile ", "profiles"), ("mcp server ", "mcp_servers")):
        if line.startswith(prefix):
            _undo_item(node[section], line[len(prefix) :], event)
            return
    raise TrailUnreadable(event)


def _undo_item(items: Json, line: str, event: Line) -> None:
    """Undo the creation, deletion or one key's change of a named table (a profile, an MCP
    server, a provider endpoint)."""
    name, _, key = line.partition(" ")
    if key:
        _put(items.setdefault(name, {}), key, event.before)
    elif event.action == CREATE:
        items.pop(name, None)
    elif event.action == DELETE:
        items[name] = copy.deepcopy(event.before)
    else:
        raise TrailUnreadable(event)


def _put(table: Json, key: str, value: Any) -> None:
    """Set a key back to a value; None is "not set" (TOML has no null, so no key ever holds it)."""
    if value is None:
        table.pop(key, None)
    else:
        table[key] = copy.deepcopy(value)
