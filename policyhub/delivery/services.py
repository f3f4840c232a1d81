"""Writes of the fetch path: counting a device's fetch and its receipt of the release served."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from policyhub.delivery.cache import cache
from policyhub.fleet.models import Device, DeviceReceipt


def fetch_record(
    *, device_id: str, revision: int | None, channel: str, release_id: int | None
) -> None:
    """Count one fetch (last seen, revision served) and the device's receipt of the release
    served (`release_id`; None when its team has none). With the cache on both are written
    behind in a batch by the listener thread; otherwise (SQLite) at once."""
    state = cache()
    if state is not None:
        state.pending.add(device_id, revision, channel, release_id)
        return
    now = timezone.now()
    with transaction.atomic():
        counted = Device.objects.filter(pk=device_id).update(
            last_seen_at=now,
            revision_served=revision,
            last_channel=channel,
            fetch_count=F("fetch_count") + 1,
        )
        if counted and release_id is not None:
            _receipt_fetched(device_id, release_id, channel, now)


def _receipt_fetched(device_id: str, release_id: int, channel: str, now: datetime) -> None:
    """RECEIPTS_SQL (delivery/cache.py) for one fetch, in the ORM: SQLite has no such upsert."""
    receipt = DeviceReceipt.objects.filter(device_id=device_id, release_id=release_id)
    changes = {
        "first_fetched_at": Coalesce("first_fetched_at", Value(now)),
        "first_channel": Case(
            When(first_fetched_at__isnull=True, then=Value(channel)), default=F("first_channel")
        ),
        "last_fetched_at": Value(now),
    }
    if receipt.update(**changes):
        return
    organization_id = Device.objects.values_list("organization_id", flat=True).get(pk=device_id)
    try:
        with transaction.atomic():  # a savepoint: a concurrent fetch may have made it first
            DeviceReceipt.objects.create(
                organization_id=organization_id,
                device_id=device_id,
                release_id=release_id,
                first_fetched_at=now,
                first_channel=channel,
                last_fetched_at=now,
            )
    except IntegrityError:
        receipt.update(**changes)
