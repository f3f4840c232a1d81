"""The trail's tamper evidence: the hash chain, the database's refusal of UPDATE, DELETE and
TRUNCATE, `manage.py audit verify`, and the origin (address, request id) of every event."""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client

from policyhub.accounts.models import Organization
from policyhub.audit.chain import FIELDS, GENESIS, event_hash
from policyhub.audit.models import AuditChain, AuditEvent
from policyhub.audit.services import audit_record
from policyhub.audit.verification import audit_chain_verify
from policyhub.policies.services import policy_apply
from tests.conftest import OPERATOR, make_policy

pytestmark = pytest.mark.django_db


def _record(org: Organization, n: int, **fields: Any) -> None:
    with transaction.atomic():
        for i in range(n):
            audit_record(
                organization_id=org.pk,
                actor=OPERATOR,
                action="test.write",
                object_type="team",
                object_key=f"team t{i}",
                **fields,
            )


def _with_guard_off(sql: str, params: tuple[Any, ...] = ()) -> None:
    """Change the trail behind the trigger's back, as someone with the table owner's rights
    could: the chain, not the trigger, must then show it."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # (see below)
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def test_a_trail_verifies_with_its_count_and_head(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    policy_apply(organization=acme, wanted=make_policy("[teams.platform]\n"), actor=OPERATOR)
    events = AuditEvent.objects.filter(organization=acme).order_by("seq")
    last = events.last()
    assert last is not None
    report = audit_chain_verify(acme.pk)
    assert report.ok and report.count == events.count() == last.seq
    assert report.head == last.hash == AuditChain.objects.get(organization=acme).head
    assert [e.seq for e in events] == list(range(1, last.seq + 1))
    assert events.first().prev_hash == GENESIS  # type: ignore[union-attr]
    # Each organisation has its own chain from 1.
    assert AuditEvent.objects.filter(organization=cast["other"]).order_by("seq").first().seq == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET reason = 'rewritten'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent CASCADE",
        "DELETE FROM audit_auditchain",
        "TRUNCATE audit_auditchain",
    ],
)
def test_the_database_refuses_to_rewrite_the_trail(cast: dict[str, Any], sql: str) -> None:
    count = AuditEvent.objects.count()
    refused = pytest.raises(DatabaseError, match="append-only")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        # The test's own transaction holds deferred foreign-key checks, which PostgreSQL would
        # name instead before a TRUNCATE; run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(sql)
    assert AuditEvent.objects.count() == count
    assert audit_chain_verify(cast["acme"].pk).ok


def test_the_orm_cannot_delete_or_update_events_either(cast: dict[str, Any]) -> None:
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(organization=cast["acme"]).update(reason="x")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(organization=cast["acme"]).delete()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("UPDATE audit_auditevent SET reason = 'rewritten' WHERE id = %s", "content"),
        ("UPDATE audit_auditevent SET after = '{\"x\": 2}' WHERE id = %s", "content"),
        (
            "UPDATE audit_auditevent SET created_at = created_at - interval '1 day' WHERE id = %s",
            "content",
        ),
        ("UPDATE audit_auditevent SET prev_hash = repeat('1', 64) WHERE id = %s", "link"),
        ("DELETE FROM audit_auditevent WHERE id = %s", "missing"),
    ],
)
def test_verification_finds_the_first_altered_event_at_its_position(
    cast: dict[str, Any], change: str, problem: str
) -> None:
    acme = cast["acme"]
    _record(acme, 12, after={"x": 1})
    target = AuditEvent.objects.filter(organization=acme).order_by("seq")[7]
    _with_guard_off(change, (target.pk,))
    report = audit_chain_verify(acme.pk)
    assert not report.ok
    assert report.broken_at == target.seq
    assert problem in report.problem
    assert f"event {target.seq}" in str(report)


def test_a_rehashed_event_still_breaks_the_next_link(cast: dict[str, Any]) -> None:
    """Recomputing the altered event's own hash moves the break to the event after it."""
    acme = cast["acme"]
    _record(acme, 5)
    target = AuditEvent.objects.filter(organization=acme).order_by("seq")[2]
    content = {name: getattr(target, name) for name in FIELDS} | {"reason": "forged"}
    forged = event_hash(acme.pk, target.prev_hash, content)
    _with_guard_off(
        "UPDATE audit_auditevent SET reason = 'forged', hash = %s WHERE id = %s",
        (forged, target.pk),
    )
    report = audit_chain_verify(acme.pk)
    assert report.broken_at == target.seq + 1 and "link" in report.problem


def test_events_cut_off_the_end_show_at_the_head(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    _record(acme, 3)
    last = AuditEvent.objects.filter(organization=acme).order_by("seq").last()
    assert last is not None
    _with_guard_off("DELETE FROM audit_auditevent WHERE id = %s", (last.pk,))
    report = audit_chain_verify(acme.pk)
    assert not report.ok and "head" in report.problem


def test_the_command_prints_ok_or_fails_naming_the_event(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    _record(acme, 4)
    out = StringIO()
    call_command("audit", "verify", "--org", "acme", stdout=out)
    chain = AuditChain.objects.get(organization=acme)
    assert out.getvalue().strip() == f"OK: {chain.length} events, head {chain.head}"
    target = AuditEvent.objects.get(organization=acme, seq=2)
    _with_guard_off("UPDATE audit_auditevent SET object_key = 'x' WHERE id = %s", (target.pk,))
    with pytest.raises(CommandError, match=rf"BROKEN at event 2 \(id {target.pk}\)"):
        call_command("audit", "verify", "--org", "acme")
    with pytest.raises(CommandError, match="no organisation"):
        call_command("audit", "verify", "--org", "nope")


@pytest.mark.parametrize(
    "value",
    [
        {"big": 1e300, "one": 1.0, "tiny": 1e-7, "neg": -0.0, "half": 0.5, "int": 10**20},
        ["ünïcödé", "עברית\u200f", "emoji 🎉", 'quote " and \\ backslash', "\t\n"],
        {"nested": {"b": [1, {"a": None, "c": True}], "a": False}},
        "plain",
        None,
    ],
)
def test_values_hash_as_the_database_gives_them_back(cast: dict[str, Any], value: Any) -> None:
    """jsonb rewrites numbers and reorders keys; the chain must verify after the round trip."""
    _record(cast["acme"], 1, before=value, after=value, reason="why: ✓")
    assert audit_chain_verify(cast["acme"].pk).ok


def test_events_carry_the_request_id_and_address(cast: dict[str, Any], settings: Any) -> None:
    client = Client()
    client.force_login(cast["owner"])
    response = client.post(
        "/api/v1/orgs/acme/api-tokens",
        {"name": "ci", "role": "viewer"},
        content_type="application/json",
        HTTP_X_REQUEST_ID="req-from-the-proxy-1",
    )
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "req-from-the-proxy-1"
    event = AuditEvent.objects.filter(organization=cast["acme"]).latest("seq")
    assert (event.request_id, event.source_address) == ("req-from-the-proxy-1", "127.0.0.1")
    # A made-up id is replaced; behind one trusted proxy the client is the forwarded address.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    response = client.post(
        "/api/v1/orgs/acme/api-tokens",
        {"name": "ci2", "role": "viewer"},
        content_type="application/json",
        HTTP_X_REQUEST_ID="<script>",
        HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7",
    )
    event = AuditEvent.objects.filter(organization=cast["acme"]).latest("seq")
    assert event.request_id == response["X-Request-ID"] != "<script>"
    assert len(event.request_id) == 32 and event.source_address == "198.51.100.7"
    assert audit_chain_verify(cast["acme"].pk).ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_organisation_keep_one_chain(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    before = AuditChain.objects.get(organization=acme).length
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer() -> None:
        try:
            start.wait()
            for _ in range(15):
                _record(acme, 2)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    report = audit_chain_verify(acme.pk)
    assert report.ok and report.count == before + 4 * 15 * 2


def test_addresses_hash_in_one_form_on_every_python() -> None:
    """str() of an IPv4-mapped IPv6 address differs between Python releases; the chain's form
    must not."""
    from policyhub.audit.chain import canonical_value

    for written in ("::ffff:1.2.3.4", "::ffff:102:304", "0:0:0:0:0:ffff:0102:0304"):
        assert canonical_value("source_address", written) == "::ffff:1.2.3.4"
    assert canonical_value("source_address", "2001:0db8::0001") == "2001:db8::1"
    assert canonical_value("source_address", "10.0.0.1") == "10.0.0.1"
    assert canonical_value("source_address", None) == ""
