"""Delivery tests that depend on the cache hearing of changes commit (PostgreSQL announces only
committed changes); there publishing runs its Celery task in-process at commit instead of via the
broker. Tests that only read run in a rolled-back transaction as usual."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from policyhub.celery import app as celery_app
from policyhub.delivery.cache import cache, cache_running
from policyhub.fleet.models import Device
from policyhub.fleet.services import device_enroll, enrollment_token_create
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request
from tests.conftest import THREE_TEAMS, acting, make_policy

# platform/ci gets a profile: the agent writes profiles, the native channel leaves them out.
POLICY = (
    THREE_TEAMS
    + """
[teams."platform/ci".profiles.deep]
model_reasoning_effort = "high"
"""
)


@pytest.fixture(autouse=True)
def fresh_cache(request: pytest.FixtureRequest) -> Iterator[None]:
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    # The index's writer reads the database in a thread, which pytest-django forbids to tests
    # that do not use it: only those that do start from a rebuilt index.
    uses_database = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db"} & set(request.fixturenames)
    )
    state = cache() if uses_database else None
    if state is not None:
        assert state.clear(), "the delivery index was not rebuilt"
    yield
    celery_app.conf.task_always_eager = eager
    state = cache_running() if uses_database else None  # a test may have stopped its own
    if state is not None:
        state.clear()


@pytest.fixture
def publish(cast: dict[str, Any]) -> Callable[..., PublishRun]:
    """Apply a policy (POLICY by default) to acme and publish it; returns the finished run."""

    def run(text: str = POLICY) -> PublishRun:
        policy_apply(
            organization=cast["acme"], wanted=make_policy(text), actor=acting(cast["admin"])
        )
        requested = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
        # Committed (transactional tests), the eager task has run it; otherwise run it here.
        publish_run_execute(run_id=requested.pk)
        requested.refresh_from_db()
        assert requested.status == "succeeded", requested.error
        return requested

    return run


@pytest.fixture
def enrol(cast: dict[str, Any]) -> Callable[..., tuple[Device, str]]:
    """A device enrolled in an acme team; returns it with its credential."""

    def run(team_path: str = "platform/ci", hostname: str = "laptop-1") -> tuple[Device, str]:
        _, secret = enrollment_token_create(
            organization=cast["acme"], team_path=team_path, actor=acting(cast["admin"])
        )
        return device_enroll(token_secret=secret, hostname=hostname)

    return run
