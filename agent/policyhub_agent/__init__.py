"""PolicyHub device agent: pulls a team's signed Codex files and keeps them in place."""

__version__ = "0.3.2"
