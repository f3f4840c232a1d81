"""Validation before anything is published (docs/codex.md says why each rule exists).

Errors block, warnings are shown. Three layers, each naming node, field path and a sentence:
1. every endpoint and every node on its own (types, enums, unknown keys, secrets: `schema`);
2. resolution down the tree (a child that widens a requirement);
3. each team's effective policy: references, provider capabilities, and consistency between the
   files (a default the requirements forbid would make Codex warn and fall back at every start).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from policyhub.policies import areas, checkers, limits, schema, window
from policyhub.policies.domain import Endpoint, Json, Node, OrgPolicy
from policyhub.policies.resolution import Provenance, Resolved, allowed_values, resolve
from policyhub.policies.window import Segment
from providers import KINDS
from providers.base import CapabilityMatrix, Issue, Severity, capability_override_issues

# Config keys constrained by a requirement allow-list, and which list.
CONSTRAINED = {
    "approval_policy": "allowed_approval_policies",
    "sandbox_mode": "allowed_sandbox_modes",
    "web_search": "allowed_web_search_modes",
    "approvals_reviewer": "allowed_approvals_reviewers",
    "forced_login_method": "allowed_login_methods",
}
# Requirement pins that are also config keys: Codex warns at every start ("overridden by the
# required value") unless config.toml holds the same value, so the pin is written there too.
# Teams an inherited finding names in a flat list before "and N more".
SHOWN_TEAMS = 3
PINNED_IN_CONFIG = ("model_provider", "cli_auth_credentials_store", "chatgpt_base_url")
# Values each config key may take in config.toml (a requirement may allow more, e.g. `untrusted`).
CONFIG_VALUES = {
    "approval_policy": schema.CONFIG_APPROVAL_POLICIES,
    "sandbox_mode": schema.SANDBOX_MODES,
    "web_search": schema.WEB_SEARCH_MODES,
    "approvals_reviewer": schema.APPROVALS_REVIEWERS,
}


@dataclass
class TeamValidation:
    """The resolved policy of one team and everything found while checking it."""

    path: str
    resolved: Resolved
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]


def errors_of(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


# --- layer 1: each piece on its own ---------------------------------------------------------------


def validate_endpoint(endpoint: Endpoint) -> list[Issue]:
    where = f"providers.{endpoint.name}"
    issues = checkers.check_name(endpoint.name, where)
    kind = KINDS.get(endpoint.kind)
    if kind is None:
        return [
            *issues,
            Issue("error", f"{where}.kind", f"{endpoint.kind!r} is not one of {', '.join(KINDS)}"),
        ]
    issues += [i.at(where) for i in kind.validate(endpoint.settings, endpoint.provider_id)]
    issues += [
        i.at(f"{where}.capabilities") for i in capability_override_issues(endpoint.capabilities)
    ]
    return issues


def validate_node(node: Node, label: str) -> list[Issue]:
    issues = [i.at("requirements") for i in schema.validate_requirements(node.requirements)]
    issues += [i.at("config") for i in schema.validate_config(node.config)]
    for name, profile in node.profiles.items():
        issues += checkers.check_name(name, f"profiles.{name}")
        issues += [i.at(f"profiles.{name}") for i in schema.validate_profile(profile)]
    for name, server in node.mcp_servers.items():
        issues += checkers.check_name(name, f"mcp_servers.{name}")
        issues += [i.at(f"mcp_servers.{name}") for i in schema.validate_mcp_server(server)]
    return [i.at(node=label) for i in issues]


# --- layer 3: one team's effective policy ---------------------------------------------------------


def _derive_pins(resolved: Resolved) -> None:
    """Pins are written into config too: Codex warns "overridden by the required value" otherwise."""
    for key in PINNED_IN_CONFIG:
        if key in resolved.requirements and key not in resolved.config:
            resolved.config[key] = resolved.requirements[key]
            resolved.config_from[key] = Provenance(resolved.requirements_from[key].node, "derived")


def _derive_allowed_defaults(policy: OrgPolicy, resolved: Resolved) -> None:
    """Write the default Codex would otherwise fall back to, so it never warns at start.

    Where the requirements restrict a setting and no node sets a default, Codex's own default
    (e.g. `approval_policy = "never"` for `exec`) may be forbidden; Codex then falls back with a
    warning at every start. The rule: render the first allowed value that config.toml can hold
    and the default endpoint supports, so admins order an allow-list by preference.
    """
    req, cfg = resolved.requirements, resolved.config
    caps = _capabilities(policy, cfg.get("model_provider"))
    for key, allow_key in CONSTRAINED.items():
        if key in cfg or allow_key not in req or key not in CONFIG_VALUES:
            continue
        usable = [v for v in allowed_values(req, allow_key) if _config_can_hold(key, v)]
        if key == "web_search" and caps is not None and not caps.web_search:
            usable = [v for v in usable if v == "disabled"]
        if usable:
            cfg[key] = usable[0]
            resolved.config_from[key] = Provenance(
                resolved.requirements_from[allow_key].node, "derived"
            )
    # The same for the Windows sandbox: Codex warns when config.toml has none it allows.
    sandboxes = req.get("windows", {}).get("allowed_sandbox_implementations")
    if sandboxes and "sandbox" not in cfg.get("windows", {}):
        cfg["windows"] = {**cfg.get("windows", {}), "sandbox": sandboxes[0]}
        resolved.config_from["windows"] = Provenance(
            resolved.requirements_from["windows"].node, "derived"
        )


def _config_can_hold(key: str, value: Any) -> bool:
    """Whether config.toml can set `key` to this allowed value (a granular approval policy is a
    table both files accept)."""
    return value in CONFIG_VALUES[key] or (key == "approval_policy" and isinstance(value, Mapping))


def _derive_endpoint_keys(policy: OrgPolicy, resolved: Resolved) -> None:
    """Top-level keys the default endpoint needs (sign-in method, base URL), unless a node set them.

    Derived here rather than at render time so the consistency checks see them too: a sign-in
    method the requirements do not allow stops Codex from starting at all.
    """
    default = policy.endpoints.get(resolved.config.get("model_provider", ""))
    if default is None:
        return
    for key, value in KINDS[default.kind].top_level_config(default.settings).items():
        if key not in resolved.config:
            resolved.config[key] = value
            resolved.config_from[key] = Provenance(f"endpoint {default.name}", "derived")


def _capabilities(policy: OrgPolicy, endpoint_name: Any) -> CapabilityMatrix | None:
    endpoint = policy.endpoints.get(endpoint_name) if isinstance(endpoint_name, str) else None
    if endpoint is None:
        return None
    return KINDS[endpoint.kind].effective_capabilities(endpoint.capabilities)


def effective_profile(resolved: Resolved, name: str) -> Json:
    """What a session with `--profile name` runs with: config.toml, then the profile file on top."""
    return {**resolved.config, **resolved.profiles[name]}


def _check_session(
    policy: OrgPolicy,
    resolved: Resolved,
    settings: Json,
    where: str,
    origin: Mapping[str, Provenance],
) -> list[Issue]:
    """Capability and consistency rules for one way of starting Codex (defaults or a profile)."""
    issues: list[Issue] = []
    req = resolved.requirements

    def add(key: str, message: str, severity: Severity = "error") -> None:
        node = origin.get(key) or resolved.config_from.get(key)
        issues.append(Issue(severity, f"{where}.{key}", message, node.node if node else ""))

    for key, allow_key in CONSTRAINED.items():
        if key not in settings or allow_key not in req:
            continue
        allowed = allowed_values(req, allow_key)
        if settings[key] not in allowed:
            setter = resolved.requirements_from[allow_key].node
            shown = ", ".join(map(repr, allowed)) or "nothing"
            add(
                key,
                f"{settings[key]!r} is forbidden by requirements.{allow_key} of {setter} "
                f"({shown}); Codex would fall back with a warning at every start",
            )
    approvals = req.get("allowed_approval_policies", [])
    if (
        "approval_policy" not in settings
        and approvals
        and not any(_config_can_hold("approval_policy", value) for value in approvals)
    ):
        add(
            "approval_policy",
            "only 'untrusted' is allowed, which config.toml cannot set; Codex will warn at start",
            "warning",
        )
    for key in PINNED_IN_CONFIG:
        if key in req and key in settings and settings[key] != req[key]:
            setter = resolved.requirements_from[key].node
            add(
                key,
                f"{settings[key]!r} is overridden by requirements.{key} = {req[key]!r} of {setter}; "
                "Codex would warn at every start",
            )
    sandboxes = req.get("windows", {}).get("allowed_sandbox_implementations")
    sandbox = settings.get("windows", {}).get("sandbox")
    if sandboxes and sandbox is not None and sandbox not in sandboxes:
        setter = resolved.requirements_from["windows"].node
        add(
            "windows",
            f"sandbox {sandbox!r} is forbidden by requirements.windows.allowed_sandbox_"
            f"implementations of {setter}; Codex would fall back with a warning at every start",
        )
    profiles = req.get("allowed_permission_profiles")
    permissions = settings.get("default_permissions")
    if profiles is not None and permissions is not None and not profiles.get(permissions):
        setter = resolved.requirements_from["allowed_permission_profiles"].node
        add(
            "default_permissions",
            f"{permissions!r} is not allowed by requirements.allowed_permission_profiles of "
            f"{setter}; Codex would fall back with a warning at every start",
        )
    workspaces = req.get("allowed_chatgpt_workspaces")
    workspace = settings.get("forced_chatgpt_workspace_id")
    if workspaces and workspace is not None and workspace not in workspaces:
        add(
            "forced_chatgpt_workspace_id",
            f"{workspace!r} is not in requirements.allowed_chatgpt_workspaces; sign-in would fail",
        )
    provider_name = settings.get("model_provider")
    endpoint = policy.endpoints.get(provider_name) if provider_name else None
    if provider_name and endpoint is None:
        known = ", ".join(policy.endpoints) or "none defined"
        add("model_provider", f"names no provider endpoint of {policy.slug} ({known})")
        return issues
    if endpoint is None:
        return issues
    kind = KINDS[endpoint.kind]
    caps = kind.effective_capabilities(endpoint.capabilities)
    tier = settings.get("service_tier")
    if tier in schema.PRIORITY_SERVICE_TIERS and not caps.priority_tier:
        add(
            "service_tier",
            f"{tier!r} needs a priority tier, which {endpoint.name} ({kind.label}) does not offer "
            f"(capabilities as of {caps.as_of})",
        )
    search = settings.get("web_search")
    if search and search != "disabled" and not caps.web_search:
        add(
            "web_search",
            f"{search!r} web search is not available on {endpoint.name} ({kind.label}, "
            f"as of {caps.as_of}); set it to 'disabled'",
        )
    if "model" in settings:
        found = kind.check_model(endpoint.settings, settings["model"])
        if found:
            add("model", f"{found.message} (endpoint {endpoint.name})", found.severity)
    elif kind.builtin_id != "openai":
        add(
            "model_provider",
            f"{endpoint.name} is used without a model; Codex's own default is an OpenAI model "
            f"that {kind.label} does not serve",
        )
    return issues


def _check_requirement_conflicts(resolved: Resolved) -> list[Issue]:
    """Config values that a requirement silently overrides, and pins that break some machines."""
    issues = []
    pins = resolved.requirements.get("features", {})
    for name, flag in resolved.config.get("features", {}).items():
        if name in pins and pins[name] != flag:
            issues.append(
                Issue(
                    "error",
                    f"config.features.{name}",
                    f"is {flag} but requirements pin it to {pins[name]} "
                    f"({resolved.requirements_from[f'features.{name}'].node}); the default is never used",
                    resolved.config_from[f"features.{name}"].node,
                )
            )
    if resolved.requirements.get("cli_auth_credentials_store") == "keyring":
        issues.append(
            Issue(
                "warning",
                "requirements.cli_auth_credentials_store",
                "'keyring' needs an operating-system secret service; on headless Linux (CI, "
                "containers) Codex cannot load its sign-in and stops; 'auto' falls back to a file",
                resolved.requirements_from["cli_auth_credentials_store"].node,
            )
        )
    return issues


def _check_mcp(resolved: Resolved) -> list[Issue]:
    allow = resolved.requirements.get("mcp_servers")
    if allow is None:
        return []
    issues = []
    for name, server in resolved.mcp_servers.items():
        if server.get("enabled") is False:
            # Switched off: Codex never starts it, so the allow-list has nothing to refuse.
            continue
        node = resolved.mcp_servers_from[name].node
        identity = allow.get(name, {}).get("identity")
        if identity is None:
            issues.append(
                Issue(
                    "error",
                    f"mcp_servers.{name}",
                    "is not in the MCP allow-list of the requirements; Codex would disable it",
                    node,
                )
            )
        elif identity in ({"command": server.get("command")}, {"url": server.get("url")}):
            continue
        elif all(isinstance(v, str) for v in identity.values()):
            issues.append(
                Issue(
                    "error",
                    f"mcp_servers.{name}",
                    f"does not match the required identity {identity}; Codex would disable it",
                    node,
                )
            )
    return issues


def used_endpoints(policy: OrgPolicy, resolved: Resolved) -> set[str]:
    """Names of the endpoints a team's files refer to (unknown names are reported elsewhere)."""
    names = [
        resolved.config.get("model_provider"),
        resolved.requirements.get("model_provider"),
        *resolved.requirements.get("model_providers", []),
        *(p.get("model_provider") for p in resolved.profiles.values()),
    ]
    return {n for n in names if isinstance(n, str) and n in policy.endpoints}


def _check_required_providers(policy: OrgPolicy, resolved: Resolved) -> list[Issue]:
    """The pinned endpoint and the endpoints whose definitions are required must exist, and a
    required definition needs a table of its own (Codex's built-in openai provider has none)."""
    issues = []
    pinned = resolved.requirements.get("model_provider")
    if pinned and pinned not in policy.endpoints:
        node = resolved.requirements_from["model_provider"].node
        message = f"names no provider endpoint of {policy.slug}"
        issues.append(Issue("error", "requirements.model_provider", message, node))
    for n, name in enumerate(resolved.requirements.get("model_providers", [])):
        where = f"requirements.model_providers[{n}]"
        node = resolved.requirements_from["model_providers"].node
        endpoint = policy.endpoints.get(name)
        if endpoint is None:
            known = ", ".join(policy.endpoints) or "none defined"
            issues.append(
                Issue("error", where, f"{name!r} names no provider endpoint ({known})", node)
            )
        elif KINDS[endpoint.kind].provider_table(endpoint.settings, endpoint.provider_id) is None:
            issues.append(
                Issue(
                    "error",
                    where,
                    f"{name} renders as Codex's built-in {endpoint.provider_id!r} provider, "
                    "whose definition Codex does not let anyone replace; there is nothing to "
                    "require",
                    node,
                )
            )
    return issues


def _check_provider_ids(policy: OrgPolicy, resolved: Resolved, path: str) -> list[Issue]:
    by_id: dict[str, list[str]] = {}
    for name in sorted(used_endpoints(policy, resolved)):
        by_id.setdefault(policy.endpoints[name].provider_id, []).append(name)
    return [
        Issue(
            "error",
            "model_provider",
            f"endpoints {', '.join(names)} all render as provider id {pid!r}; "
            "one team's files can hold only one of them",
            path or policy.root_label,
        )
        for pid, names in by_id.items()
        if len(names) > 1
    ]


def validate_team(
    policy: OrgPolicy,
    path: str,
    *,
    nodes_checked: bool = False,
    versions: Sequence[Segment] | None = None,
) -> TeamValidation:
    """Resolve one team ("" for the organisation root alone) and check its whole chain.

    Checked for every Codex version of the organisation's window, or only for `versions`.
    """
    chain = policy.chain(path)
    if not nodes_checked:
        issues = [i for label, node in chain for i in validate_node(node, label)]
        if errors_of(issues):
            # Resolution assumes well-formed nodes; the broken ones are reported where they are.
            return TeamValidation(path, Resolved(), issues)
    else:
        issues = []
    resolved = resolve(chain)
    issues += resolved.issues
    rules = resolved.requirements.get("rules", {}).get("prefix_rules", [])
    if len(rules) > limits.PREFIX_RULES:
        issues.append(
            Issue(
                "error",
                "requirements.rules.prefix_rules",
                f"the team's own and inherited prefix rules are {len(rules):,}; at most "
                f"{limits.PREFIX_RULES:,}",
                path or policy.root_label,
            )
        )
    if errors_of(issues):
        return TeamValidation(path, resolved, issues)
    _derive_pins(resolved)
    issues += _check_required_providers(policy, resolved)
    issues += [
        Issue("error", f"requirements.{key}", message, resolved.requirements_from[key].node)
        for key, message in areas.permission_issues(resolved.requirements)
    ]
    # The endpoints this team renders must be valid themselves before their capabilities count.
    for name in sorted(used_endpoints(policy, resolved)):
        found = validate_endpoint(policy.endpoints[name])
        issues += [] if nodes_checked else found
        if errors_of(found):
            return TeamValidation(path, resolved, _dedupe(issues))
    _derive_allowed_defaults(policy, resolved)
    _derive_endpoint_keys(policy, resolved)
    issues += _check_session(policy, resolved, resolved.config, "config", resolved.config_from)
    for name in sorted(resolved.profiles):
        issues += _check_session(
            policy,
            resolved,
            effective_profile(resolved, name),
            f"profiles.{name}",
            resolved.profiles_from[name],
        )
    issues += _check_requirement_conflicts(resolved)
    issues += _check_mcp(resolved)
    issues += _check_provider_ids(policy, resolved, path)
    found = window.window_issues(policy.codex)
    if errors_of(found):
        # Reported once for the organisation by validate_policy; alone, the team carries them.
        issues += [] if nodes_checked else found
    else:
        if versions is None:
            versions = window.team_segments(policy, resolved)
        issues += window.team_window_issues(policy, resolved, versions, path or policy.root_label)
    return TeamValidation(path, resolved, _dedupe(issues))


def validate_policy(
    policy: OrgPolicy, teams: dict[str, TeamValidation] | None = None
) -> dict[str, list[Issue]]:
    """Every finding of an organisation's policy, keyed by "" (organisation-wide) or team path.

    Each node is checked once; a team's effective checks run only when its whole chain is valid
    (otherwise the broken node is already reported where it is).
    """
    root = validate_node(policy.root, policy.root_label)
    found: dict[str, list[Issue]] = {
        "": [
            *window.window_issues(policy.codex),
            *(i for e in policy.endpoints.values() for i in validate_endpoint(e)),
            *root,
        ]
    }
    broken = {policy.root_label} if errors_of(root) else set()
    if not broken and not errors_of(found[""]):
        # The root's own defaults must hold even before any team exists.
        found[""] += validate_team(policy, "", nodes_checked=True).issues
    for path, team in sorted(policy.teams.items()):
        if team.parent_path is not None and team.parent_path not in policy.teams:
            found[path] = [
                Issue("error", f"teams.{path}", f"has no parent team {team.parent_path!r}")
            ]
            broken.add(path)
            continue
        own = validate_node(team.node, path)
        if errors_of(own):
            broken.add(path)
        if broken.intersection(label for label, _ in policy.chain(path)):
            found[path] = own
            continue
        team_validation = validate_team(policy, path, nodes_checked=True)
        found[path] = own + team_validation.issues
        if teams is not None:
            teams[path] = team_validation  # its resolution, for a caller that renders next
    return {k: _dedupe(v) for k, v in found.items() if v}


def flat_findings(found: Mapping[str, list[Issue]]) -> list[Issue]:
    """`validate_policy`'s findings as one list, each once. A finding inherited from an ancestor
    shows under every team below it; listed once, it names the node that set the value (its
    `node`) and the teams it breaks: the first few and how many more."""
    teams: dict[Issue, list[str]] = {}
    for team, issues in found.items():
        for issue in issues:
            teams.setdefault(issue, []).append(team)
    flat = []
    for issue, where in teams.items():
        below = [team for team in where if team and team != issue.node]
        if below:
            more = f" and {len(below) - SHOWN_TEAMS:,} more" if len(below) > SHOWN_TEAMS else ""
            named = ", ".join(below[:SHOWN_TEAMS])
            teams_word = "team" if len(below) == 1 else "teams"
            issue = replace(issue, message=f"{issue.message} (in {teams_word} {named}{more})")
        flat.append(issue)
    return flat


def _dedupe(issues: list[Issue]) -> list[Issue]:
    return list(dict.fromkeys(issues))
