"""Reads of policy data. `org_policy` loads an organisation's whole policy in five queries; the
stored validation results (`TeamCheck`) answer what pages show without it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce

from policyhub.accounts.models import Organization
from policyhub.policies.document import codex_window
from policyhub.policies.domain import Endpoint, Json, Node, OrgPolicy, TeamSpec
from policyhub.policies.models import (
    McpServer,
    PolicyNode,
    Profile,
    ProviderEndpoint,
    TeamCheck,
)
from policyhub.teams.models import Team


def organization_get(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()


def endpoint_list(organization: Organization) -> QuerySet[ProviderEndpoint]:
    return ProviderEndpoint.objects.filter(organization=organization).order_by("name")


def endpoint_list_with_usage(organization: Organization) -> QuerySet[ProviderEndpoint]:
    """The organisation's endpoints, each with how many nodes (`nodes_using`: as their default
    or pinned provider) and profiles (`profiles_using`) name it, counted in SQL for the rows
    the caller reads."""
    nodes = (
        PolicyNode.objects.filter(organization=organization)
        .annotate(
            config_provider=KT("config__model_provider"),
            requirements_provider=KT("requirements__model_provider"),
        )
        .filter(Q(config_provider=OuterRef("name")) | Q(requirements_provider=OuterRef("name")))
        .values("organization")
        .annotate(count=Count("pk"))
        .values("count")
    )
    profiles = (
        Profile.objects.filter(node__organization=organization)
        .annotate(provider=KT("settings__model_provider"))
        .filter(provider=OuterRef("name"))
        .values("node__organization")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return endpoint_list(organization).annotate(
        nodes_using=Coalesce(Subquery(nodes), 0), profiles_using=Coalesce(Subquery(profiles), 0)
    )


def endpoint_references(organization: Organization, name: str) -> QuerySet[PolicyNode]:
    """The nodes (the organisation's own and teams') that name endpoint `name`: as their
    default (`names_in_config`) or pinned (`names_in_requirements`) provider, or in one of
    their profiles (`names_in_profiles`)."""
    in_profiles = Profile.objects.annotate(provider=KT("settings__model_provider")).filter(
        node=OuterRef("pk"), provider=name
    )
    return (
        PolicyNode.objects.filter(organization=organization)
        .alias(
            config_provider=KT("config__model_provider"),
            requirements_provider=KT("requirements__model_provider"),
        )
        .annotate(
            names_in_config=ExpressionWrapper(Q(config_provider=name), output_field=BooleanField()),
            names_in_requirements=ExpressionWrapper(
                Q(requirements_provider=name), output_field=BooleanField()
            ),
            names_in_profiles=Exists(in_profiles),
        )
        .filter(Q(config_provider=name) | Q(requirements_provider=name) | Q(names_in_profiles=True))
        .select_related("team")
    )


def profiles_naming(nodes: list[PolicyNode], name: str) -> dict[int, list[str]]:
    """The names of the profiles of `nodes` that name endpoint `name`, by node id."""
    found: dict[int, list[str]] = {}
    rows = (
        Profile.objects.filter(node__in=nodes)
        .annotate(provider=KT("settings__model_provider"))
        .filter(provider=name)
        .order_by("name")
        .values_list("node_id", "name")
    )
    for node_id, profile in rows:
        found.setdefault(node_id, []).append(profile)
    return found


def org_policy(organization: Organization) -> OrgPolicy:
    """The organisation's current policy as plain data (see `policies.domain`)."""
    endpoints = {
        e.name: Endpoint(e.name, e.kind, e.provider_id, e.settings, e.capabilities)
        for e in endpoint_list(organization)
    }
    profiles: dict[int, dict[str, Json]] = defaultdict(dict)
    for profile in Profile.objects.filter(node__organization=organization):
        profiles[profile.node_id][profile.name] = profile.settings
    servers: dict[int, dict[str, Json]] = defaultdict(dict)
    for server in McpServer.objects.filter(node__organization=organization):
        servers[server.node_id][server.name] = server.definition
    nodes: dict[int | None, Node] = {
        n.team_id: Node(n.requirements, n.config, profiles[n.id], servers[n.id])
        for n in PolicyNode.objects.filter(organization=organization)
    }
    teams = {
        t.path: TeamSpec(t.path, t.name, nodes.get(t.id, Node()))
        for t in Team.objects.filter(organization=organization).order_by("path")
    }
    return OrgPolicy(
        organization.slug,
        organization.name,
        endpoints,
        nodes.get(None, Node()),
        teams,
        codex_window(organization.codex_window),
    )


# A node's validation state: with errors; with warnings and no error; or neither.
CHECK_STATES = ("errors", "warnings", "valid")


def _state_filter(state: str, prefix: str = "") -> Q:
    if state == "errors":
        return Q(**{f"{prefix}errors__gt": 0})
    if state == "warnings":
        return Q(**{f"{prefix}errors": 0, f"{prefix}warnings__gt": 0})
    if state == "valid":
        return Q(**{f"{prefix}errors": 0, f"{prefix}warnings": 0})
    raise ValueError(f"{state!r} is not one of {', '.join(CHECK_STATES)}")


def teams_checked(organization: Organization) -> QuerySet[Team]:
    """The organisation's teams, each with its stored validation (`team.validation`, absent for
    a team no write has checked yet)."""
    return Team.objects.filter(organization=organization).select_related("validation")


def teams_in_state(teams: QuerySet[Team], state: str) -> QuerySet[Team]:
    """Those of `teams` whose stored validation is in `state` (one of CHECK_STATES)."""
    return teams.filter(_state_filter(state, "validation__"))


def teams_using_endpoint(teams: QuerySet[Team], endpoint: str) -> QuerySet[Team]:
    """Those of `teams` whose files refer to the provider endpoint named `endpoint`."""
    return teams.filter(endpoint_uses__endpoint=endpoint)


def team_checks_with_problems(organization: Organization) -> QuerySet[TeamCheck]:
    """The stored checks of teams with errors or warnings, in path order, team loaded."""
    return (
        TeamCheck.objects.filter(organization=organization, team__isnull=False)
        .filter(Q(errors__gt=0) | Q(warnings__gt=0))
        .select_related("team")
        .order_by("team__path")
    )


def team_check_counts(organization: Organization) -> dict[str, int]:
    """How many teams are in each of CHECK_STATES, in one query."""
    teams = TeamCheck.objects.filter(organization=organization, team__isnull=False)
    # Aggregates named apart from the columns they count (`errors` is a column).
    counted = teams.aggregate(
        **{f"in_{state}": Count("pk", filter=_state_filter(state)) for state in CHECK_STATES}
    )
    return {state: counted[f"in_{state}"] for state in CHECK_STATES}


def organization_check(organization: Organization) -> TeamCheck | None:
    """The stored validation of the organisation's own node (endpoints, window, root node)."""
    return TeamCheck.objects.filter(organization=organization, team__isnull=True).first()


def team_policy(organization: Organization, path: str) -> OrgPolicy | None:
    """The policy as one team sees it: the endpoints, the root node and only the team's chain
    (its ancestors and itself), in five queries whatever the size of the tree. Validation,
    resolution and rendering of `path` on it give what they give on `org_policy`; other teams
    are simply not there. `path` "" is the organisation's own node; None for an unknown team."""
    found = teams_policy(organization, [path] if path else [])
    return found if not path or path in found.teams else None


def teams_policy(organization: Organization, paths: Iterable[str]) -> OrgPolicy:
    """`team_policy` for several teams at once (a page of them): the union of their chains, in
    five queries. A path that names no team, or whose chain is incomplete, is left out."""
    chains: set[str] = set()
    for path in paths:
        parts = path.split("/")
        chains.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    found_teams = Team.objects.filter(organization=organization, path__in=sorted(chains))
    teams = {team.path: team for team in found_teams.only("id", "path", "name")}
    teams = {
        path: team
        for path, team in teams.items()
        if all(ancestor in teams for ancestor in _ancestors(path))
    }
    found = (
        PolicyNode.objects.filter(organization=organization)
        .filter(Q(team__isnull=True) | Q(team__in=[team.pk for team in teams.values()]))
        .prefetch_related("profiles", "mcp_servers")
    )
    nodes: dict[int | None, Node] = {
        n.team_id: Node(
            n.requirements,
            n.config,
            {profile.name: profile.settings for profile in n.profiles.all()},
            {server.name: server.definition for server in n.mcp_servers.all()},
        )
        for n in found
    }
    endpoints = {
        e.name: Endpoint(e.name, e.kind, e.provider_id, e.settings, e.capabilities)
        for e in endpoint_list(organization)
    }
    return OrgPolicy(
        organization.slug,
        organization.name,
        endpoints,
        nodes.get(None, Node()),
        {
            path: TeamSpec(path, teams[path].name, nodes.get(teams[path].id, Node()))
            for path in sorted(teams)
        },
        codex_window(organization.codex_window),
    )


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def team_paths(organization: Organization) -> list[str]:
    """Every team's path, in order: the tree's outline without its policy."""
    found = Team.objects.filter(organization=organization).order_by("path")
    return list(found.values_list("path", flat=True))
