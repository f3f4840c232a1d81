"""Every choice that depends on the Codex version being rendered for, in one place.

Only 0.169.0 is served today, which reads profiles only as `$CODEX_HOME/<name>.config.toml`
files. A later change widens this to a window of versions (shared VERSIONS.md: profile tables
before 0.134, requirement keys that older clients ignore), so callers always pass a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from policyhub.policies.schema import REQUIREMENT_KEYS

DEFAULT_CODEX_VERSION = "0.169.0"


@dataclass(frozen=True)
class CodexTarget:
    """What the renderer may emit for one Codex version."""

    version: str
    # Requirement keys this version enforces (others are silently ignored: fail open).
    requirement_keys: frozenset[str]


# Every requirement key PolicyHub writes (the schema's, plus the pinned provider's definition).
_ALL_REQUIREMENT_KEYS = frozenset(REQUIREMENT_KEYS) | {"model_providers"}

SUPPORTED = {
    "0.169.0": CodexTarget("0.169.0", requirement_keys=_ALL_REQUIREMENT_KEYS),
}


def codex_target(version: str = DEFAULT_CODEX_VERSION) -> CodexTarget:
    try:
        return SUPPORTED[version]
    except KeyError:
        raise ValueError(
            f"Codex {version} is not a supported render target ({', '.join(SUPPORTED)})"
        ) from None
