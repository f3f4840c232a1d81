"""What the tests with a real Celery worker share."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def broker_to_ourselves() -> Iterator[None]:
    """Real workers share the Redis queue: two tests with one each, in two pytest processes at
    once, would take each other's tasks. Such tests hold this lock, so they run one at a time."""
    with (Path(tempfile.gettempdir()) / "policyhub-test-celery-broker.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
