"""The files of a rendered set, named as every layer refers to them.

Rendering writes them, releases sign and serve them, delivery packages them, the agent installs
them (docs/codex.md says where Codex reads each one). Plain names here, so that a layer that only
moves files around never has to load the renderer to know what they are called.
"""

from __future__ import annotations

# /etc/codex/requirements.toml: enforced.
REQUIREMENTS = "requirements.toml"
# /etc/codex/config.toml: defaults a developer may override (before Codex 0.134 also the profiles).
CONFIG = "config.toml"
# /etc/codex/managed_config.toml: pins every Codex release enforces over user config.
MANAGED_CONFIG = "managed_config.toml"
# profiles/<name>.config.toml -> $CODEX_HOME/<name>.config.toml (Codex 0.134 and later).
PROFILE_DIR = "profiles"
PROFILE_SUFFIX = ".config.toml"


def profile_file(name: str) -> str:
    """The set's entry for profile `name`."""
    return f"{PROFILE_DIR}/{name}{PROFILE_SUFFIX}"
