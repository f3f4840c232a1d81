"""Keeping this process's delivery cache right when it changes a device itself.

PostgreSQL announces every change that alters an answer (delivery migrations 0001 and 0002), and
the host's index writer applies it a few milliseconds after the commit (delivery/cache.py). A
process that saves a device (revokes, moves or rotates it) and serves fetches too reads that
device from PostgreSQL for a few seconds from the commit, so not even its own next fetch can see
the old answer; a revoked device it also drops from the index at once, for every process.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from policyhub.delivery.cache import cache_running
from policyhub.fleet.models import Device


def device_saved(sender: type[Device], instance: Device, **kwargs: Any) -> None:
    state = cache_running()
    if state is not None:
        hashes = [h for h in (instance.credential_hash, instance.fetch_credential_hash) if h]
        revoked = instance.revoked_at is not None
        transaction.on_commit(lambda: state.forget_device(hashes, revoked=revoked))
