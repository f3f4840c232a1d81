"""Fixtures every page test can use: the API tests' `world` (one of everything in acme)."""

from tests.api.conftest import world

__all__ = ["world"]
