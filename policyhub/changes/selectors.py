"""Reads of change sets and of the policy document: lists, the live policy's export and digest,
a document's plan with what would stop it, and a change set's preview (whole, or a page of teams
rendered for one Codex version)."""

from __future__ import annotations

import bisect
import difflib
import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from policyhub.accounts.models import Organization
from policyhub.changes.models import ChangeSet
from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.domain import Endpoint, OrgPolicy
from policyhub.policies.selectors import org_policy, team_paths, teams_policy
from policyhub.policies.validation import errors_of, flat_findings, validate_policy
from policyhub.policies.window import window_issues
from policyhub.rendering.render import render_team
from policyhub.teams.services import team_delete_check
from providers.base import Issue
from providers.codex_versions import CodexCapabilities, Version, capabilities, parse_version

# One label for both sides, so the file headers differ only where the content does.
PREVIEW_REVISION = "unpublished"


# The change sets still on their way: a publish may yet apply them, so their base can go stale.
WAITING = (ChangeSet.Status.DRAFT, ChangeSet.Status.SUBMITTED, ChangeSet.Status.APPROVED)


def change_set_list(organization: Organization) -> QuerySet[ChangeSet]:
    return ChangeSet.objects.filter(organization=organization)


def change_set_get(
    change_set_id: int, *, organization: Organization | None = None
) -> ChangeSet | None:
    """One change set; with `organization`, only one of its own (an id from a URL names no
    other organisation's)."""
    found = ChangeSet.objects.filter(pk=change_set_id)
    if organization is not None:
        found = found.filter(organization=organization)
    return found.select_related("organization").first()


def change_set_draft_of(
    organization: Organization, user_id: int, *, lock: bool = False
) -> ChangeSet | None:
    """A person's own draft in `organization`, where their browser edits go (the newest, should
    they have written more than one through the API)."""
    found = ChangeSet.objects.filter(
        organization=organization, author_id=user_id, status=ChangeSet.Status.DRAFT
    )
    if lock:
        found = found.select_for_update(of=("self",))
    return found.select_related("organization").order_by("-pk").first()


def change_set_locked(organization: Organization, change_set_id: int) -> ChangeSet | None:
    """The change set's row, locked until the transaction ends, as every write of it locks it:
    what a client's If-Match is compared with cannot change before the write."""
    return (
        ChangeSet.objects.select_for_update(of=("self",))
        .filter(organization=organization, pk=change_set_id)
        .select_related("organization")
        .first()
    )


def organizations_with_due_change_sets(now: datetime) -> QuerySet[Organization]:
    """Organisations with an approved change set scheduled for `now` or earlier."""
    return Organization.objects.filter(
        change_sets__status=ChangeSet.Status.APPROVED, change_sets__publish_at__lte=now
    ).distinct()


def change_set_version(change_set: ChangeSet) -> str:
    """What a reviewer read: the document, the policy it was planned against, and when it was
    submitted (a change set edited and submitted again is another version, even unchanged)."""
    submitted = change_set.submitted_at.isoformat() if change_set.submitted_at else ""
    read = f"{change_set.document}\0{change_set.base_digest}\0{submitted}"
    return hashlib.sha256(read.encode()).hexdigest()


def policy_digest(policy: OrgPolicy) -> str:
    """sha256 of the policy's export text: equal policies, equal digest."""
    return hashlib.sha256(document.dump(policy).encode()).hexdigest()


def live_policy_digest(organization: Organization) -> str:
    """The digest of the live policy, computed once per version of it (`policy_version`, which
    every write of the policy increments in its own transaction) and kept on the organisation.

    The version is read before the policy: a write committed while the policy is read has moved
    the version on, so the digest is then not kept (the next reader computes it again). Keeping
    it never waits for a lock: a publish holds the organisation's row for its whole run, and a
    page must not wait for that."""
    version, kept, kept_for = Organization.objects.values_list(
        "policy_version", "policy_digest", "policy_digest_version"
    ).get(pk=organization.pk)
    if kept and kept_for == version:
        return kept
    digest = policy_digest(org_policy(organization))
    with transaction.atomic():
        free = (
            Organization.objects.select_for_update(skip_locked=True)
            .filter(pk=organization.pk, policy_version=version)
            .values_list("pk", flat=True)
        )
        if list(free):
            Organization.objects.filter(pk=organization.pk).update(
                policy_digest=digest, policy_digest_version=version
            )
    return digest


# A table header of the document's own head (the organisation and its endpoints), and any
# header or dotted key that opens or reaches into those tables from elsewhere.
_HEAD_HEADER_RE = re.compile(r'^\s*\[\s*"?(organization|providers)"?\s*[.\]]')
_REACHES_HEAD_RE = re.compile(r'^\s*(\[\[?\s*)?"?(organization|providers)"?\s*[.\]=]', re.MULTILINE)


def change_set_endpoints(change_set: ChangeSet) -> Mapping[str, Endpoint]:
    """The provider endpoints of a change set's wanted policy, read from the head of its
    document: a document as written by `document.dump` (every browser edit's) has the
    organisation and its endpoints first, so a page showing one endpoint does not parse ten
    thousand teams. Any other layout is parsed whole."""
    text = change_set.document
    lines = text.splitlines(keepends=True)
    cut = next(
        (
            i
            for i, line in enumerate(lines)
            if line.lstrip().startswith("[") and not _HEAD_HEADER_RE.match(line)
        ),
        len(lines),
    )
    head, rest = "".join(lines[:cut]), "".join(lines[cut:])
    raw: Mapping[str, Any] | None = None
    if not _REACHES_HEAD_RE.search(rest):
        try:
            raw = tomllib.loads(head)
        except tomllib.TOMLDecodeError:
            raw = None  # the cut fell inside a multi-line value: read it all
    if raw is None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return {}
    shown = {"organization": raw.get("organization", {}), "providers": raw.get("providers", {})}
    try:
        return document.from_dict(shown).endpoints
    except ApplicationError:
        return {}


# The tables of the organisation's own node, at the top of a document.
ROOT_SECTIONS = ("requirements", "config", "profiles", "mcp_servers")


def change_set_node_table(change_set: ChangeSet, path: str) -> Mapping[str, Any] | None:
    """One node's tables in a change set's wanted document (`path` "" for the organisation's
    own), or None when the document has no such team. A document as `document.dump` writes it
    (every browser draft) has one header line per table and no multi-line string, so only the
    node's own tables are read: a team page costs the same in a draft of ten teams or ten
    thousand. Any other document is parsed whole."""
    text = change_set.document
    if '"""' in text or "'''" in text:
        return _node_of(tomllib.loads(text), path)
    wanted: list[str] = []
    keep = False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            keep = _header_of_node(line, path)
        if keep:
            wanted.append(line)
    try:
        return _node_of(tomllib.loads("".join(wanted)), path)
    except tomllib.TOMLDecodeError:
        return _node_of(tomllib.loads(text), path)


def _header_of_node(line: str, path: str) -> bool:
    """Whether a table header belongs to the node at `path`: read by TOML itself, and only for
    headers that can (a team's name appears in it), so most lines cost a string search."""
    name = line.lstrip("[").split("]", 1)[0].strip()
    if not path:
        return name.split(".", 1)[0].strip('"') in ROOT_SECTIONS
    if not name.startswith("teams.") or path not in name:
        return False
    try:
        found = tomllib.loads(f"[{name}]\n")
    except tomllib.TOMLDecodeError:
        return False
    return path in found.get("teams", {})


def _node_of(raw: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    if not path:
        return {section: raw[section] for section in ROOT_SECTIONS if section in raw}
    found = raw.get("teams", {}).get(path)
    return found if isinstance(found, Mapping) else None


@dataclass(frozen=True)
class PolicyExport:
    """The live policy as a document, and the sha256 a change set records as its base."""

    text: str
    digest: str


def policy_export(organization: Organization) -> PolicyExport:
    text = document.dump(org_policy(organization))
    return PolicyExport(text, hashlib.sha256(text.encode()).hexdigest())


def policy_plan(organization: Organization, wanted: OrgPolicy) -> list[document.Change]:
    """The plan from the live policy to `wanted`, one change per line."""
    return document.plan(org_policy(organization), wanted)


@dataclass(frozen=True)
class PlanReport:
    """What applying a document would change, and the findings that would stop it (errors) or
    deserve a look (warnings), each with its field path in the document."""

    changes: list[document.Change]
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return errors_of(self.issues)

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "warning"]


def policy_document_parse(organization: Organization, text: str) -> OrgPolicy:
    """A policy document of `organization`: DocumentInvalid names each problem of its shape,
    and another organisation's document is refused by its slug."""
    wanted = document.parse(text)
    if wanted.slug != organization.slug:
        raise ApplicationError(
            "the document is for another organisation",
            [Issue("error", "organization.slug", f"is {wanted.slug!r}, not {organization.slug!r}")],
        )
    return wanted


def policy_plan_report(organization: Organization, wanted: OrgPolicy) -> PlanReport:
    """The plan from the live policy to `wanted` with the whole validation and the teams that
    cannot be deleted yet: everything an apply would refuse for, found without writing. Who may
    apply it is not judged here (a reader may plan what only an editor may apply)."""
    current = org_policy(organization)
    issues = flat_findings(validate_policy(wanted))
    try:
        team_delete_check(organization=organization, paths=set(current.teams) - set(wanted.teams))
    except ApplicationError as refused:
        issues += refused.issues or [Issue("error", "teams", refused.message)]
    return PlanReport(document.plan(current, wanted), issues)


@dataclass(frozen=True)
class FileDiff:
    """One file of a team: its unified diff from the live to the proposed content."""

    name: str
    diff: str


@dataclass(frozen=True)
class TeamDiff:
    """An affected team: the files that differ, or the errors that keep it from rendering."""

    path: str
    files: list[FileDiff] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeSetPreview:
    """What publishing the change set would do: its plan and every affected team's diff."""

    plan: list[str]
    teams: list[TeamDiff]
    stale: bool  # the live policy moved on since the change set was planned

    @property
    def team_paths(self) -> list[str]:
        return [team.path for team in self.teams]


def change_set_preview(change_set: ChangeSet) -> ChangeSetPreview:
    """Render every team of the live and the proposed policy and diff the files. A change at a
    node reaches its whole subtree; teams whose files come out identical are left out."""
    live = org_policy(change_set.organization)
    wanted = document.parse(change_set.document)
    paths = sorted(set(live.teams) | set(wanted.teams))
    return ChangeSetPreview(
        plan=list(change_set.plan),
        teams=_team_diffs(live, wanted, paths, None),
        stale=live_policy_digest(change_set.organization) != change_set.base_digest,
    )


@dataclass(frozen=True)
class DiffPage:
    """Part of a change set's preview: the affected teams among the next teams in path order.
    `last` is the last team looked at when more remain (where the next page starts), else None."""

    teams: list[TeamDiff]
    stale: bool
    last: str | None


def change_set_diff(
    change_set: ChangeSet,
    *,
    team: str | None = None,
    codex_version: Version | None = None,
    after: str | None = None,
    limit: int = 50,
) -> DiffPage:
    """The preview a page at a time: the `limit` teams after `after` (in path order) are
    rendered, so a request costs the same in an organisation of ten teams or ten thousand; a
    page may list fewer affected teams than it looked at. `team` narrows it to one team;
    `codex_version` renders the files that version would receive (the set for its span of
    the window; below the window the oldest set, above it the newest, as delivery serves)."""
    organization = change_set.organization
    wanted = document.parse(change_set.document)
    paths = sorted(set(team_paths(organization)) | set(wanted.teams))
    if team is not None:
        if team not in paths:
            raise ApplicationError(
                f"no team {team!r} in the live or the proposed policy",
                [Issue("error", "team", "is not a team of either policy")],
            )
        paths = [team]
    if after is not None:
        paths = paths[bisect.bisect_right(paths, after) :]
    page = paths[:limit]
    # Only the page's teams of the live policy, with their chains: a page costs the same in an
    # organisation of ten teams or ten thousand.
    live = teams_policy(organization, page)
    return DiffPage(
        teams=_team_diffs(live, wanted, page, codex_version),
        stale=live_policy_digest(organization) != change_set.base_digest,
        last=page[-1] if len(paths) > limit else None,
    )


def _team_diffs(
    live: OrgPolicy, wanted: OrgPolicy, paths: list[str], codex_version: Version | None
) -> list[TeamDiff]:
    before_for, after_for = _target(live, codex_version), _target(wanted, codex_version)
    teams = []
    for path in paths:
        before, _ = _render(live, path, before_for)
        after, errors = _render(wanted, path, after_for)
        if errors:
            teams.append(TeamDiff(path, errors=errors))
        elif before != after:
            teams.append(TeamDiff(path, files=_file_diffs(path, before, after)))
    return teams


def _file_diffs(path: str, before: dict[str, bytes], after: dict[str, bytes]) -> list[FileDiff]:
    files = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        diff = difflib.unified_diff(
            (old or b"").decode().splitlines(keepends=True),
            (new or b"").decode().splitlines(keepends=True),
            fromfile=f"live/{path}/{name}" if old is not None else "/dev/null",
            tofile=f"proposed/{path}/{name}" if new is not None else "/dev/null",
        )
        files.append(FileDiff(name, "".join(diff)))
    return files


def _target(policy: OrgPolicy, version: Version | None) -> CodexCapabilities | None:
    """What `version` is served of `policy`'s releases: the window's cut that holds it, or the
    nearest end of the window. None (the whole window, checked; files of its newest version)
    without a version, or when the window itself is invalid, which rendering then reports."""
    if version is None or errors_of(window_issues(policy.codex)):
        return None
    low = parse_version(policy.codex.min_version)
    high = parse_version(policy.codex.max_version)
    return capabilities(min(max(version, low), high))


def _render(
    policy: OrgPolicy, path: str, target: CodexCapabilities | None
) -> tuple[dict[str, bytes], list[Issue]]:
    if path not in policy.teams:
        return {}, []
    try:
        return render_team(policy, path, revision=PREVIEW_REVISION, target=target).files, []
    except ApplicationError as exc:
        return {}, exc.issues
