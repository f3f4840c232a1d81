"""Reads of policy data. `org_policy` loads an organisation's whole policy in five queries."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from policyhub.accounts.models import Organization
from policyhub.policies.document import codex_window
from policyhub.policies.domain import Endpoint, Json, Node, OrgPolicy, TeamSpec
from policyhub.policies.models import McpServer, PolicyNode, Profile, ProviderEndpoint
from policyhub.teams.models import Team


def organization_get(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()


def endpoint_list(organization: Organization) -> QuerySet[ProviderEndpoint]:
    return ProviderEndpoint.objects.filter(organization=organization).order_by("name")


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
