"""Stored validation results: what `validate_policy` found at each node of the live policy, in
the form `TeamCheck` and `TeamEndpointUse` rows keep it.

Validating a whole policy takes seconds at 10,000 teams, so pages read these rows instead; every
write of the live policy recomputes them from the validation it runs anyway. Plain data here, so
the service and the migration that fills the rows for existing organisations share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policyhub.policies.domain import OrgPolicy
from policyhub.policies.validation import TeamValidation, used_endpoints
from providers.base import Issue


@dataclass(frozen=True)
class NodeCheck:
    """One node's findings and the endpoints its files use ("" path: the organisation)."""

    errors: int
    warnings: int
    findings: list[dict[str, str]]
    endpoints: frozenset[str]


def findings_json(issues: Iterable[Issue]) -> list[dict[str, str]]:
    return [
        {"severity": i.severity, "path": i.path, "message": i.message, "node": i.node}
        for i in issues
    ]


def node_checks(
    policy: OrgPolicy,
    found: Mapping[str, list[Issue]],
    teams: Mapping[str, TeamValidation],
    paths: Iterable[str] | None = None,
) -> dict[str, NodeCheck]:
    """The check of the organisation ("") and of every team of `policy` (or only `paths`), from
    `found = validate_policy(policy, teams)`. A team whose chain is broken has no resolution,
    and so no endpoints: its errors say why."""
    wanted = ["", *policy.teams] if paths is None else list(paths)
    checks = {}
    for path in wanted:
        issues = found.get(path, [])
        validation = teams.get(path)
        checks[path] = NodeCheck(
            errors=sum(i.severity == "error" for i in issues),
            warnings=sum(i.severity == "warning" for i in issues),
            findings=findings_json(issues),
            endpoints=frozenset(
                used_endpoints(policy, validation.resolved) if validation and path else ()
            ),
        )
    return checks


def stored_issue(finding: Mapping[str, Any]) -> Issue:
    """A stored finding as the Issue it was."""
    return Issue(finding["severity"], finding["path"], finding["message"], finding.get("node", ""))
