"""The OpenAPI schema, checked by generating requests from it: every operation, with valid and
invalid inputs, against the application on the real database with an owner's token. No answer
may be a 5xx, and every answer must match what the schema says it returns.

The schema is the one the application serves at /api/schema/. Requests go through Django's WSGI
handler in this process (the whole middleware stack a server runs), inside the test's
transaction, in a world that has one of everything for the path ids to point at."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create
from tests.api.conftest import World
from tests.conftest import acting

# Path ids point at the world's objects, so operations reach past "no such object".
OBJECTS = {
    "teams": "team",
    "members": "membership",
    "invitations": "invitation",
    "api-tokens": "api_token",
    "change-sets": "change_set",
    "publish-runs": "publish_run",
    "releases": "release",
    "enrollment-tokens": "enrollment_token",
    "endpoints": "endpoint",
    "devices": "device",
}
EXAMPLES = 30


def operations() -> list[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return sorted(
        (path, method.upper())
        for path, item in paths.items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


@pytest.fixture
def application() -> Iterator[WSGIHandler]:
    """Django's handler, as a server runs it, minus closing the test's own connection at the
    end of each request (Django's test client leaves it open the same way)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def aim(case: Any, world: World) -> None:
    """Point the case's path parameters at the world's objects."""
    parameters = case.path_parameters if case.path_parameters is not None else {}
    if "slug" in parameters:
        parameters["slug"] = "acme"
    segments = case.path.split("/")
    for index, segment in enumerate(segments[1:], start=1):
        if segment.startswith("{") and segment != "{slug}":
            kind = OBJECTS.get(segments[index - 1])
            if kind is not None:
                parameters[segment.strip("{}")] = world.ids[kind]


@pytest.mark.parametrize(("path", "method"), operations())
def test_operation_answers_within_its_schema(
    path: str,
    method: str,
    world: World,
    cast: dict[str, Any],
    application: WSGIHandler,
    settings_for_fuzzing: None,
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operation = schema[path][method]
    _, secret = api_token_create(
        actor=acting(cast["owner"]), organization=cast["acme"], name="st", role=Role.OWNER
    )
    checks = [not_a_server_error, response_schema_conformance]

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            aim(case, world)
            case.call_and_validate(headers={"Authorization": f"Bearer {secret}"}, checks=checks)

        check()


@pytest.fixture
def settings_for_fuzzing(settings: Any) -> None:
    """Generated requests arrive faster than any person: no rate limit on enrolment."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"enroll": "100000/min"},
    }
