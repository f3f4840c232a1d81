"""The fixed cast every test can use, and helpers to build policies from TOML snippets."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from policyhub.actors import Actor
from policyhub.policies import document
from policyhub.policies.domain import OrgPolicy

BASE = """
[organization]
slug = "acme"
name = "Acme"

[providers.openai]
kind = "openai"
auth_method = "chatgpt"

[providers.azure-eng]
kind = "azure"
provider_id = "azure"
resource_url = "https://acme-eng.openai.azure.com/openai"
api_version = "2025-04-01-preview"
env_key = "AZURE_OPENAI_API_KEY"
deployments = ["gpt-5.5", "codex-ci"]

[providers.bedrock]
kind = "amazon-bedrock"
aws_profile = "batch"
region = "us-west-2"

[providers.oci]
kind = "oracle-oci"
region = "us-chicago-1"
auth_command = "oci-codex-token"
"""

# Three teams on three providers (OpenAI at the root, Azure for platform/ci, Bedrock for batch):
# the policy the change, publish and delivery tests work on.
THREE_TEAMS = """
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.platform]
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
[teams.batch.config]
model = "openai.gpt-oss-120b"
model_provider = "bedrock"
web_search = "disabled"
"""


def make_policy(extra: str = "", base: str = BASE) -> OrgPolicy:
    """A policy built from the base organisation plus a TOML snippet (teams, sections...)."""
    return document.parse(base + textwrap.dedent(extra))


@pytest.fixture
def policy_from() -> Callable[..., OrgPolicy]:
    return make_policy


@pytest.fixture(autouse=True)
def _own_cache_namespace(settings: Any) -> None:
    """Each test its own cache keys: sign-in rate limits live in the cache, which is the real
    Redis in the full suite and outlives a run, so a mail sent by one test (or one run) would
    otherwise throttle the next."""
    settings.CACHES = {
        alias: {**conf, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
        for alias, conf in settings.CACHES.items()
    }


# The server operator, as tests that set things up act (everything allowed, under this name).
OPERATOR = Actor.operator("tests")


def acting(user: Any) -> Actor:
    """A signed-in person as the actor of a service call."""
    return Actor.for_user(user)


def person(name: str, email: str | None = None) -> Any:
    """A user who signs in with a verified address, as allauth requires."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    email = email or f"{name}@example.com"
    user = get_user_model().objects.create_user(name, email, "pw-" + name * 3)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


@pytest.fixture
def cast(db: Any) -> dict[str, Any]:
    """owner, admin and auditor of acme; outsider owns another organisation."""
    from policyhub.accounts.models import Role
    from policyhub.accounts.services import membership_grant, organization_create

    users = {name: person(name) for name in ("owner", "admin", "auditor", "outsider")}
    acme = organization_create(actor=OPERATOR, slug="acme", name="Acme", owner=users["owner"])
    other = organization_create(actor=OPERATOR, slug="other", name="Other", owner=users["outsider"])
    for name, role in (("admin", Role.ADMIN), ("auditor", Role.AUDITOR)):
        membership_grant(actor=OPERATOR, organization=acme, user=users[name], role=role)
    return {**users, "acme": acme, "other": other}


@pytest.fixture
def codex_ready() -> None:
    """Skip when the Codex CLI is not installed, unless POLICYHUB_REQUIRE_CODEX makes it a failure."""
    import os

    from tests.codex.harness import CodexBinaryMissing, codex_binary, codex_install_dir

    if not codex_install_dir().is_dir() and not os.environ.get("POLICYHUB_REQUIRE_CODEX"):
        pytest.skip(f"Codex CLI not installed in {codex_install_dir()}; run `make codex`")
    try:
        codex_binary()
    except CodexBinaryMissing as exc:
        pytest.fail(str(exc))


# Fixtures that reach the database; a test using one is marked `database` (make unit skips them).
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the database: the fast tier (`make unit`) runs the others with
    no services at all, and pytest-django refuses any database access they would still try."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("django_db") or fixtures & DATABASE_FIXTURES:
            item.add_marker(pytest.mark.database)


@pytest.fixture(scope="session", autouse=True)
def delivery_listener_stopped(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delivery tests start a thread that LISTENs on the test database; it must let go of the
    database before pytest-django drops it (depending on the database set-up, this fixture is
    torn down first). A run without database tests sets no database up."""
    if any(item.get_closest_marker("database") for item in request.session.items):
        request.getfixturevalue("django_db_setup")
    yield
    from policyhub.delivery.cache import cache_stop

    cache_stop()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """The cast's passwords need no key stretching (Django's advice for test suites)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def flush_past_the_audit_guard() -> Iterator[None]:
    """Transactional tests end by emptying every table with TRUNCATE, which the audit trail's
    trigger refuses (audit migration 0007). The test database's superuser may run the flush as
    a replica, for which ordinary triggers do not fire; the application's role cannot, and
    tests/audit prove the refusal on its connection."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: DatabaseOperations, sql_list: list[str]) -> None:
        original(self, ["SET LOCAL session_replication_role = replica", *sql_list])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield


@contextmanager
def past_the_audit_guard() -> Iterator[None]:
    """Write to the audit trail past its append-only trigger, as tests that stage history must
    (the chain then no longer verifies; the chain's tests do that on purpose). Only the test
    database's superuser can: as a replica, ordinary triggers do not fire for it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            yield
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def rewrite_events(events: Any, **values: Any) -> int:
    """Update audit events past the trail's guard (above)."""
    with past_the_audit_guard():
        return int(events.update(**values))
