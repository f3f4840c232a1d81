"""Store the validation of every existing organisation's live policy, as `policy_apply` stores
it from now on: pages read these rows instead of validating whole policies."""

from collections import defaultdict

from django.db import migrations

from policyhub.policies.checks import node_checks
from policyhub.policies.document import codex_window
from policyhub.policies.domain import Endpoint, Node, OrgPolicy, TeamSpec
from policyhub.policies.validation import validate_policy


def _policy(apps, organization):
    """`policies.selectors.org_policy`, on the models as this migration knows them."""
    ProviderEndpoint = apps.get_model("policies", "ProviderEndpoint")
    PolicyNode = apps.get_model("policies", "PolicyNode")
    Profile = apps.get_model("policies", "Profile")
    McpServer = apps.get_model("policies", "McpServer")
    Team = apps.get_model("teams", "Team")
    endpoints = {
        e.name: Endpoint(e.name, e.kind, e.provider_id, e.settings, e.capabilities)
        for e in ProviderEndpoint.objects.filter(organization=organization).order_by("name")
    }
    profiles = defaultdict(dict)
    for profile in Profile.objects.filter(node__organization=organization):
        profiles[profile.node_id][profile.name] = profile.settings
    servers = defaultdict(dict)
    for server in McpServer.objects.filter(node__organization=organization):
        servers[server.node_id][server.name] = server.definition
    nodes = {
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


def _fill(apps, schema_editor):
    Organization = apps.get_model("accounts", "Organization")
    Team = apps.get_model("teams", "Team")
    TeamCheck = apps.get_model("policies", "TeamCheck")
    TeamEndpointUse = apps.get_model("policies", "TeamEndpointUse")
    for organization in Organization.objects.order_by("pk"):
        policy = _policy(apps, organization)
        validated = {}
        checks = node_checks(policy, validate_policy(policy, validated), validated)
        team_ids = dict(Team.objects.filter(organization=organization).values_list("path", "pk"))
        TeamCheck.objects.filter(organization=organization).delete()
        TeamEndpointUse.objects.filter(organization=organization).delete()
        TeamCheck.objects.bulk_create(
            [
                TeamCheck(
                    organization=organization,
                    team_id=team_ids[path] if path else None,
                    errors=check.errors,
                    warnings=check.warnings,
                    findings=check.findings,
                )
                for path, check in checks.items()
            ],
            batch_size=1000,
        )
        TeamEndpointUse.objects.bulk_create(
            [
                TeamEndpointUse(organization=organization, team_id=team_ids[path], endpoint=name)
                for path, check in checks.items()
                if path
                for name in sorted(check.endpoints)
            ],
            batch_size=1000,
        )


class Migration(migrations.Migration):
    dependencies = [("policies", "0002_team_checks")]

    operations = [migrations.RunPython(_fill, migrations.RunPython.noop)]
