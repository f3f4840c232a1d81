"""Writes of policy data. Everything goes through `policy_apply`: a whole wanted policy is
checked against what its actor may change, validated, diffed against the stored one, and
written in one transaction with one audit event per change, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import ORGANIZATION_NODE, Permission, authorize
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import Actor
from policyhub.audit.services import audit_event, audit_record, audit_record_many
from policyhub.errors import ApplicationError
from policyhub.policies.checks import node_checks
from policyhub.policies.document import MAX_TEAM_DEPTH, Change, codex_dict, plan
from policyhub.policies.domain import Json, Node, OrgPolicy
from policyhub.policies.models import (
    McpServer,
    PolicyNode,
    Profile,
    ProviderEndpoint,
    TeamCheck,
    TeamEndpointUse,
)
from policyhub.policies.selectors import org_policy
from policyhub.policies.validation import (
    TeamValidation,
    errors_of,
    flat_findings,
    validate_policy,
)
from policyhub.teams.attachments import team_attachments
from policyhub.teams.models import Team
from policyhub.teams.selectors import team_subtrees
from policyhub.teams.services import (
    team_create_many,
    team_delete,
    team_delete_check,
    team_rename,
    team_reparent,
)
from providers.base import Issue

# Rows per statement when an apply writes in bulk.
BATCH = 2000


def policy_check(
    policy: OrgPolicy, teams: dict[str, TeamValidation] | None = None
) -> dict[str, list[Issue]]:
    """Raise ApplicationError listing every error of `policy` (warnings do not block); fills
    `teams` with each team's validation when given. Returns what `validate_policy` found.

    A finding inherited from an ancestor (same node, field and sentence) shows under every team
    below it; the flat list names it once, with the teams it breaks (`flat_findings`).
    """
    found = validate_policy(policy, teams)
    errors = errors_of(flat_findings(found))
    if errors:
        raise ApplicationError(f"the policy of {policy.slug} has {len(errors)} error(s)", errors)
    return found


@transaction.atomic
def policy_apply(
    *,
    organization: Organization,
    wanted: OrgPolicy,
    actor: Actor,
    dry_run: bool = False,
    reason: str = "",
    approved_change_set_id: int | None = None,
) -> list[Change]:
    """Make the stored policy equal `wanted`; returns the plan that was (or would be) applied.

    The actor must be allowed to change every node the plan touches (a team editor: only their
    subtree), and an organisation that requires approval takes no direct apply: its changes come
    as change sets, which publishing applies once approved (`approved_change_set_id`, passed
    only by changes.services, which checked all this when the change set was made and reviewed).
    """
    if wanted.slug != organization.slug:
        raise ApplicationError(
            f"the document is for organisation {wanted.slug!r}, not {organization.slug!r}"
        )
    doing = "change the policy"
    if approved_change_set_id is None:
        authorize(actor, organization, Permission.POLICY_EDIT, doing=doing)
    validated: dict[str, TeamValidation] = {}
    found = policy_check(wanted, validated)
    # Serialise concurrent applies to one organisation; the plan is computed under the lock.
    organization = organization_lock(organization.pk)
    current = org_policy(organization)
    changes = plan(current, wanted)
    if approved_change_set_id is None:
        authorize(
            actor,
            organization,
            Permission.POLICY_EDIT,
            doing=doing,
            nodes=[change.node for change in changes],
        )
        if organization.requires_approval and not dry_run and changes:
            raise ApplicationError(
                f"{organization.slug} requires approval: propose the change as a change set "
                "(policy apply --submit), and another person approves it",
                [Issue("error", "organization.requires_approval", "is on")],
            )
    # Before any write, and on dry runs too: a deleted team must not take an editor's membership.
    team_delete_check(organization=organization, paths=set(current.teams) - set(wanted.teams))
    if dry_run or not changes:
        return changes

    window = {} if wanted.codex.is_default() else codex_dict(wanted.codex)
    if organization.name != wanted.name or organization.codex_window != window:
        organization.name, organization.codex_window = wanted.name, window
        organization.full_clean()
        organization.save(update_fields=["name", "codex_window"])
    _write_endpoints(organization, current, wanted)
    teams = _write_teams(organization, current, wanted, actor)
    _write_nodes(
        organization,
        [(None, current.root, wanted.root)]
        + [
            (teams[path], current.teams[path].node if path in current.teams else Node(), spec.node)
            for path, spec in wanted.teams.items()
        ],
    )
    policy_changed(organization)
    # The live policy is now `wanted`: its validation above is the one pages show.
    team_checks_write(organization=organization, policy=wanted, found=found, teams=validated)
    # One statement for all of them: a 10,000-team document makes tens of thousands.
    audit_record_many(
        [
            audit_event(
                organization_id=organization.pk,
                actor=actor,
                action=f"policy.{change.action}",
                object_type=change.object.split(" ")[0],
                object_key=f"{change.object} {change.key}".strip(),
                before=change.before,
                after=change.after,
                reason=reason,
            )
            for change in changes
        ]
    )
    return changes


@transaction.atomic
def team_move(*, team: Team, parent_path: str | None, actor: Actor, reason: str = "") -> Team:
    """Move a team and its subtree under another team (None: to the top level).

    The document addresses teams by path, so a move is not a plan line: it is its own write,
    with the same rules. The actor must be allowed to edit both the team and its new parent; an
    organisation that requires approval takes no direct moves; and a subtree with enrolled
    devices stays where it is, since releases are addressed by team path and its machines would
    get nothing until the next publish: move or revoke them first.
    """
    organization = organization_lock(team.organization_id)
    team = Team.objects.select_related("parent").get(pk=team.pk)
    doing = "move teams"
    authorize(actor, organization, Permission.POLICY_EDIT, doing=doing)
    parent = None
    if parent_path is not None:
        parent = Team.objects.filter(organization=organization, path=parent_path).first()
        if parent is None:
            raise ApplicationError(
                f"no team {parent_path!r}", [Issue("error", "parent", "is not a team")]
            )
        if parent.path == team.path or parent.path.startswith(f"{team.path}/"):
            raise ApplicationError(
                f"team {team.path} cannot move into its own subtree",
                [Issue("error", "parent", "lies inside the moved team")],
            )
    if parent == team.parent:
        return team
    authorize(
        actor,
        organization,
        Permission.POLICY_EDIT,
        doing=doing,
        nodes=[team.path, parent.path if parent else ORGANIZATION_NODE],
    )
    if organization.requires_approval:
        raise ApplicationError(
            f"{organization.slug} requires approval: a move changes what the subtree inherits, "
            "and is not made directly",
            [Issue("error", "organization.requires_approval", "is on")],
        )
    subtree = team_subtrees(organization, [team.path])
    for attachment in team_attachments():
        refusal = attachment.deletion_refusal(organization, subtree)
        if refusal is not None:
            raise ApplicationError(
                f"cannot move team {team.path} while devices are enrolled in its subtree "
                "(its releases are addressed by path): move or revoke them first",
                refusal.issues,
            )
    before = team.path
    new_path = f"{parent.path}/{team.slug}" if parent is not None else team.slug
    if Team.objects.filter(organization=organization, path=new_path).exists():
        raise ApplicationError(
            f"team {new_path} exists", [Issue("error", "parent", f"already has a team {team.slug}")]
        )
    deepest = max(t.path.count("/") for t in subtree) - before.count("/") + new_path.count("/")
    if deepest + 1 > MAX_TEAM_DEPTH:
        raise ApplicationError(
            f"moving {before} under {parent_path} nests teams deeper than {MAX_TEAM_DEPTH}",
            [Issue("error", "parent", f"teams nest at most {MAX_TEAM_DEPTH} deep")],
        )
    team = team_reparent(team=team, parent=parent)
    policy_changed(organization)
    _checks_after_move(organization, team.path)
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="policy.move",
        object_type="team",
        object_key=f"team {before}",
        before={"path": before},
        after={"path": team.path},
        reason=reason,
    )
    return team


def policy_changed(organization: Organization) -> None:
    """Count a write of the live policy, in the writing transaction: the digest kept for the
    previous version no longer describes it. Every writer of endpoints, teams or nodes calls
    this (tests/policies/test_findings.py checks the digest after each kind of write)."""
    Organization.objects.filter(pk=organization.pk).update(policy_version=F("policy_version") + 1)


def team_checks_write(
    *,
    organization: Organization,
    policy: OrgPolicy,
    found: Mapping[str, list[Issue]],
    teams: Mapping[str, TeamValidation],
    paths: Iterable[str] | None = None,
) -> None:
    """Store what validating the live `policy` found (`found` and `teams` from
    `validate_policy(policy, teams)`) at every node, or only at the teams of `paths`. Called
    in the transaction that wrote the policy; only rows that changed are written, in bulk: a
    constant number of queries whatever the number of teams."""
    checks = node_checks(policy, found, teams, paths)
    team_paths = [path for path in checks if path]
    in_scope = Team.objects.filter(organization=organization)
    if paths is not None:
        in_scope = in_scope.filter(path__in=team_paths)
    team_ids = dict(in_scope.values_list("path", "pk"))
    stored_checks = TeamCheck.objects.filter(organization=organization)
    stored_uses = TeamEndpointUse.objects.filter(organization=organization)
    if paths is not None:
        stored_checks = stored_checks.filter(team_id__in=list(team_ids.values()))
        stored_uses = stored_uses.filter(team_id__in=list(team_ids.values()))
    stored = {row.team_id: row for row in stored_checks}
    created, changed = [], []
    for path, check in checks.items():
        team_id = team_ids[path] if path else None
        row = stored.get(team_id)
        values = (check.errors, check.warnings, check.findings)
        if row is None:
            created.append(
                TeamCheck(
                    organization=organization,
                    team_id=team_id,
                    errors=check.errors,
                    warnings=check.warnings,
                    findings=check.findings,
                )
            )
        elif (row.errors, row.warnings, row.findings) != values:
            row.errors, row.warnings, row.findings = values
            changed.append(row)
    TeamCheck.objects.bulk_create(created, batch_size=1000)
    TeamCheck.objects.bulk_update(changed, ["errors", "warnings", "findings"], batch_size=1000)

    wanted = {(team_ids[path], name) for path in team_paths for name in checks[path].endpoints}
    existing = {
        (team_id, name): pk
        for pk, team_id, name in stored_uses.values_list("pk", "team_id", "endpoint")
    }
    gone = [pk for key, pk in existing.items() if key not in wanted]
    if gone:
        TeamEndpointUse.objects.filter(pk__in=gone).delete()
    TeamEndpointUse.objects.bulk_create(
        [
            TeamEndpointUse(organization=organization, team_id=team_id, endpoint=name)
            for team_id, name in sorted(wanted - set(existing))
        ],
        batch_size=1000,
    )


@transaction.atomic
def policy_checks_refresh(*, organization: Organization) -> None:
    """Validate the live policy again and store what is found at every node: for teams
    written behind the services' back (bulk loads), and after an upgrade whose validation
    rules changed. Writes only the rows that differ."""
    organization = organization_lock(organization.pk)
    policy_changed(organization)  # it may have been written behind the services' back too
    policy = org_policy(organization)
    validated: dict[str, TeamValidation] = {}
    found = validate_policy(policy, validated)
    team_checks_write(organization=organization, policy=policy, found=found, teams=validated)


def _checks_after_move(organization: Organization, moved: str) -> None:
    """Re-validate the moved subtree where it now stands (it inherits from a new chain); no
    other node's validation depends on where it sits, so only the subtree and its new
    ancestors are validated, and only the subtree's rows written."""
    policy = org_policy(organization)
    subtree = [p for p in policy.teams if p == moved or p.startswith(f"{moved}/")]
    partial = policy.with_chains(subtree)
    validated: dict[str, TeamValidation] = {}
    found = validate_policy(partial, validated)
    team_checks_write(
        organization=organization, policy=partial, found=found, teams=validated, paths=subtree
    )


def _write_endpoints(organization: Organization, current: OrgPolicy, wanted: OrgPolicy) -> None:
    gone = set(current.endpoints) - set(wanted.endpoints)
    ProviderEndpoint.objects.filter(organization=organization, name__in=gone).delete()
    stored = {e.name: e for e in ProviderEndpoint.objects.filter(organization=organization)}
    for name, ep in wanted.endpoints.items():
        if current.endpoints.get(name) == ep:
            continue
        row = stored.get(name) or ProviderEndpoint(organization=organization, name=name, version=0)
        row.kind, row.provider_id = ep.kind, ep.provider_id
        row.settings, row.capabilities = ep.settings, dict(ep.capabilities)
        row.version += 1
        row.full_clean()
        row.save()


def _write_teams(
    organization: Organization, current: OrgPolicy, wanted: OrgPolicy, actor: Actor
) -> dict[str, Team]:
    teams = {t.path: t for t in Team.objects.filter(organization=organization)}
    gone = set(current.teams) - set(wanted.teams)
    # Only the top of each deleted subtree: `team_delete` takes the teams below with it.
    for path in sorted(gone):
        spec = current.teams[path]
        if spec.parent_path not in gone:
            team_delete(team=teams[path], actor=actor)
    teams = {path: team for path, team in teams.items() if path not in gone}
    new = [
        (spec.parent_path, spec.slug, spec.name)
        for path, spec in wanted.teams.items()
        if path not in teams
    ]
    teams.update(team_create_many(organization=organization, teams=new))
    for path, spec in wanted.teams.items():
        if teams[path].name != spec.name:
            team_rename(team=teams[path], name=spec.name)
    return teams


def _write_nodes(organization: Organization, nodes: list[tuple[Team | None, Node, Node]]) -> None:
    """Each (team, or None for the organisation's own; old node; new node) that changed, in
    bulk: one read of the stored nodes and one of their profiles and servers, then one statement
    per kind of write (an apply of a 10,000-team document)."""
    changed = [(team, old, new) for team, old, new in nodes if old != new]
    if not changed:
        return
    stored = {node.team_id: node for node in PolicyNode.objects.filter(organization=organization)}
    now = timezone.now()
    created: list[PolicyNode] = []
    updated: list[PolicyNode] = []
    written: list[tuple[PolicyNode, Node, Node]] = []
    for team, old, new in changed:
        node = stored.get(team.pk if team else None)
        if node is None:
            if new.is_empty():
                continue
            node = PolicyNode(organization=organization, team=team, version=0)
            created.append(node)
        else:
            updated.append(node)
        node.requirements, node.config = new.requirements, new.config
        node.version += 1
        node.updated_at = now
        # Fields only: the organisation and team are the rows in hand, and one node per team is
        # the database's constraint, not a query per node.
        node.full_clean(
            exclude=["organization", "team"], validate_unique=False, validate_constraints=False
        )
        written.append((node, old, new))
    PolicyNode.objects.bulk_create(created, batch_size=BATCH)
    PolicyNode.objects.bulk_update(
        updated, ["requirements", "config", "version", "updated_at"], batch_size=BATCH
    )
    _write_named(Profile, "settings", [(n, o.profiles, w.profiles) for n, o, w in written])
    _write_named(
        McpServer, "definition", [(n, o.mcp_servers, w.mcp_servers) for n, o, w in written]
    )


NamedRow = Profile | McpServer


def _write_named(
    model: type[Profile] | type[McpServer],
    field: str,
    nodes: list[tuple[PolicyNode, Mapping[str, Json], Mapping[str, Json]]],
) -> None:
    """The named rows (profiles or MCP servers) of many nodes as each new mapping says."""
    ids = [node.pk for node, _, _ in nodes]
    rows: dict[int, dict[str, NamedRow]] = {}
    for start in range(0, len(ids), BATCH):
        for kept in model.objects.filter(node_id__in=ids[start : start + BATCH]):
            rows.setdefault(kept.node_id, {})[kept.name] = kept
    gone: list[int] = []
    created: list[NamedRow] = []
    updated: list[NamedRow] = []
    for node, old, new in nodes:
        mine = rows.get(node.pk, {})
        gone += [kept.pk for name, kept in mine.items() if name not in new]
        for name, value in new.items():
            found = mine.get(name)
            if found is not None and old.get(name) == value:
                continue
            row: NamedRow = model(node=node, name=name) if found is None else found
            (created if found is None else updated).append(row)
            setattr(row, field, value)
            # Fields only (the node is the one just written; names are unique in the document).
            row.full_clean(exclude=["node"], validate_unique=False, validate_constraints=False)
    for start in range(0, len(gone), BATCH):  # SQLite bounds a statement's parameters
        model.objects.filter(pk__in=gone[start : start + BATCH]).delete()
    model.objects.bulk_create(created, batch_size=BATCH)  # type: ignore[arg-type]
    model.objects.bulk_update(updated, [field], batch_size=BATCH)  # type: ignore[arg-type]
