"""Writes of the fetch path: counting a device's fetch."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from policyhub.delivery.cache import cache
from policyhub.fleet.models import Device


def fetch_record(*, device_id: str, revision: int | None, channel: str) -> None:
    """Count one fetch (last seen, revision served). With the cache on it is written behind in a
    batch by the listener thread; otherwise (SQLite) at once."""
    state = cache()
    if state is not None:
        state.pending.add(device_id, revision, channel)
        return
    Device.objects.filter(pk=device_id).update(
        last_seen_at=timezone.now(),
        revision_served=revision,
        last_channel=channel,
        fetch_count=F("fetch_count") + 1,
    )
