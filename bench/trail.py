"""An audit trail of any length for the benchmarks, chained as the services chain it.

`add_audit_events(slug, count)` appends `count` events to the organisation's chain: spread over
a year from 2026-01-01 (31 s apart), seven object types, 50 actors and the organisation's teams.
Python computes each event's hash (policyhub.audit.chain, as the writer does) and COPY stores
them, so `manage.py audit verify` passes on the result: about 60,000 events a second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

OBJECT_TYPES = ["team", "policy_node", "change_set", "release", "device", "membership", "endpoint"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def add_audit_events(slug: str, count: int) -> None:
    from django.db import connection, transaction

    from policyhub.accounts.models import Organization
    from policyhub.audit.chain import GENESIS, event_hash
    from policyhub.audit.models import AuditChain, AuditEvent
    from policyhub.teams.models import Team

    started = time.perf_counter()
    org = Organization.objects.get(slug=slug)
    paths = list(
        Team.objects.filter(organization=org).order_by("path").values_list("path", flat=True)
    )
    columns = (
        "organization_id, actor_kind, actor_label, action, object_type, object_key, before, after,"
        " reason, created_at, source_address, request_id, seq, prev_hash, hash"
    )
    with transaction.atomic():
        AuditChain.objects.bulk_create(
            [AuditChain(organization=org, head=GENESIS)], ignore_conflicts=True
        )
        chain = AuditChain.objects.select_for_update().get(organization=org)
        head, seq = chain.head, chain.length
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {AuditEvent._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            for i in range(count):
                seq += 1
                kind = OBJECT_TYPES[i % 7]
                content = {
                    "seq": seq,
                    "created_at": START + timedelta(seconds=31 * i),
                    "actor_kind": "user",
                    "actor_label": f"bench-actor-{i % 50}",
                    "actor_id": None,
                    "action": f"{kind}.update",
                    "object_type": kind,
                    "object_key": paths[i % len(paths)] if paths else kind,
                    "before": None,
                    "after": {"n": 1},
                    "reason": "",
                    "source_address": "127.0.0.1",
                    "request_id": f"bench-{i:08d}",
                }
                digest = event_hash(org.pk, head, content)
                copy.write_row(
                    (
                        org.pk,
                        "user",
                        content["actor_label"],
                        content["action"],
                        kind,
                        content["object_key"],
                        None,
                        '{"n": 1}',
                        "",
                        content["created_at"],
                        "127.0.0.1",
                        content["request_id"],
                        seq,
                        head,
                        digest,
                    )
                )
                head = digest
        chain.length, chain.head = seq, head
        chain.save(update_fields=["length", "head"])
    print(f"  {slug}: {count:,} audit events in {time.perf_counter() - started:.1f} s", flush=True)
