"""Keeping this process's delivery cache right when it changes a device itself.

PostgreSQL announces every change that alters an answer to every listening process (delivery
migration 0001, delivery/cache.py), this one included, a few milliseconds after the commit. A
process that saves a device (revokes or moves it; an enrolment, which changes nothing cached,
costs one dropped entry) and serves fetches too drops the entry at the commit itself, so not even
its own next fetch can see the old answer.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from policyhub.delivery.cache import cache_running
from policyhub.fleet.models import Device


def device_saved(sender: type[Device], instance: Device, **kwargs: Any) -> None:
    state = cache_running()
    if state is not None:
        key = f"device:{instance.credential_hash}"
        transaction.on_commit(lambda: state.invalidate(key))
