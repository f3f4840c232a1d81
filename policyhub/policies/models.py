"""Provider endpoints and policy nodes (requirements, config defaults, profiles, MCP servers).

Sections are JSON documents checked by `policies.schema` before they are saved: the set of keys
Codex accepts is large and changes release by release, and a closed schema in code catches more
than columns would.
"""

from __future__ import annotations

from django.db import models

from policyhub.accounts.models import Organization
from policyhub.teams.models import Team
from providers import KINDS


class ProviderEndpoint(models.Model):
    """A named model-provider endpoint of an organisation (an Azure resource, a Bedrock region...)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="endpoints"
    )
    name = models.CharField(max_length=63)
    kind = models.CharField(max_length=32, choices=[(k, v.label) for k, v in KINDS.items()])
    provider_id = models.CharField(max_length=63)
    # Kind-specific fields; credential references only (env var names, token commands).
    settings = models.JSONField(default=dict, blank=True)
    # Per-endpoint overrides of the kind's capability matrix.
    capabilities = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="endpoint_name_unique"),
            models.CheckConstraint(
                condition=models.Q(kind__in=list(KINDS)), name="endpoint_kind_valid"
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.organization.slug}:{self.name}"


class PolicyNode(models.Model):
    """What the organisation root (team is null) or one team sets."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="policy_nodes"
    )
    team = models.OneToOneField(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="policy"
    )
    requirements = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(team__isnull=True),
                name="one_root_node_per_org",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.team.path if self.team else '(organisation)'}"


class Profile(models.Model):
    """A named profile (model, provider, effort, sandbox, approval) defined at a policy node."""

    node = models.ForeignKey(PolicyNode, on_delete=models.CASCADE, related_name="profiles")
    name = models.CharField(max_length=63)
    settings = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "name"], name="profile_name_unique")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class McpServer(models.Model):
    """An MCP server definition offered as a config default at a policy node."""

    node = models.ForeignKey(PolicyNode, on_delete=models.CASCADE, related_name="mcp_servers")
    name = models.CharField(max_length=63)
    definition = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "name"], name="mcp_server_name_unique")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamCheck(models.Model):
    """What validating the live policy found at one node (team null: the organisation's own),
    stored by every write of the live policy so that pages never validate a whole policy."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="team_checks"
    )
    team = models.OneToOneField(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="validation"
    )
    errors = models.PositiveIntegerField(default=0)
    warnings = models.PositiveIntegerField(default=0)
    # [{"severity", "path", "message", "node"}, ...] in the order validation reported them.
    findings = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(team__isnull=True),
                name="one_root_check_per_org",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "errors", "warnings"], name="team_check_problems"),
        ]

    def __str__(self) -> str:
        where = self.team.path if self.team else "(organisation)"
        return f"{where}: {self.errors} error(s), {self.warnings} warning(s)"


class TeamEndpointUse(models.Model):
    """A provider endpoint a team's files refer to, as of the live policy: rows, not a JSON
    array, so that "teams using endpoint X" is an indexed filter on every database."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="endpoint_uses")
    # The name, not a foreign key: endpoint rows are replaced freely by `policy_apply`.
    endpoint = models.CharField(max_length=63)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "endpoint"], name="team_endpoint_use_unique"),
        ]
        indexes = [
            models.Index(fields=["organization", "endpoint"], name="team_endpoint_use_by_name"),
        ]

    def __str__(self) -> str:
        return f"{self.team_id} uses {self.endpoint}"
