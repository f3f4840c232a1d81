"""Fixtures for the agent tests: an empty machine root, a signing key, a PolicyHub stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.support import HOME, FakeHub, Signer, bundle, serve


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory standing for `/`, with a developer's home of /home/dev."""
    monkeypatch.setenv("HOME", HOME)
    monkeypatch.delenv("CODEX_HOME", raising=False)
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def hub(signer: Signer) -> Iterator[FakeHub]:
    """A plain-http stand-in on loopback serving revision 1."""
    fake = FakeHub(signer)
    fake.publish(bundle(signer))
    with serve(fake):
        yield fake
