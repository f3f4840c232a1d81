"""Every choice that depends on the Codex version being rendered for, in one place.

Only 0.169.0 is served today; a later change widens this to a window of versions
(shared VERSIONS.md), so callers always pass a target instead of assuming one.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CODEX_VERSION = "0.169.0"


@dataclass(frozen=True)
class CodexTarget:
    """What the renderer may emit for one Codex version."""

    version: str
    # From 0.134.0 profiles are `$CODEX_HOME/<name>.config.toml` files; before, `[profiles.<name>]`.
    profiles_as_files: bool
    # Requirement keys this version enforces (others are silently ignored: fail open).
    requirement_keys: frozenset[str]


_ALL_REQUIREMENT_KEYS = frozenset(
    {
        "allowed_approval_policies", "allowed_approvals_reviewers", "allowed_sandbox_modes",
        "allowed_web_search_modes", "allowed_login_methods", "allowed_chatgpt_workspaces",
        "cli_auth_credentials_store", "enforce_residency", "model_provider", "model_providers",
        "allow_login_shell", "allow_managed_hooks_only", "check_for_update_on_startup",
        "additional_developer_instructions", "features", "mcp_servers", "rules",
    }
)  # fmt: skip

SUPPORTED = {
    "0.169.0": CodexTarget(
        "0.169.0", profiles_as_files=True, requirement_keys=_ALL_REQUIREMENT_KEYS
    ),
}


def codex_target(version: str = DEFAULT_CODEX_VERSION) -> CodexTarget:
    try:
        return SUPPORTED[version]
    except KeyError:
        raise ValueError(
            f"Codex {version} is not a supported render target ({', '.join(SUPPORTED)})"
        ) from None
