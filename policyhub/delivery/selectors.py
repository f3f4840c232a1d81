"""Reads on the fetch path: which device a credential is, and which release it is served."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policyhub import credentials
from policyhub.delivery.cache import DeliveryCache, cache
from policyhub.delivery.entries import DeviceEntry, Served
from policyhub.delivery.loaders import device_load, team_load
from policyhub.releases.selectors import rollout_serves_current


def bearer_credential(meta: Mapping[str, Any]) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header; None without one."""
    scheme, _, credential = str(meta.get("HTTP_AUTHORIZATION", "")).partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def device_for_credential(credential: object, *, fetch_only: bool = False) -> DeviceEntry | None:
    """The enrolled, unrevoked device holding `credential`; None for anything else.

    Only a device credential (`phd_`) is accepted, unless `fetch_only`: the native channel's
    fetch also takes the device's fetch credential (`phf_`), which opens nothing else."""
    if not (
        credentials.well_formed(credential, credentials.DEVICE_PREFIX)
        or (fetch_only and credentials.well_formed(credential, credentials.FETCH_PREFIX))
    ):
        return None
    digest = credentials.secret_hash(credential)
    state = cache()
    if state is None:
        return device_load(digest)
    return state.device(digest, lambda: device_load(digest))


def release_served(device: DeviceEntry) -> Served | None:
    """What the device gets now: its team's current release, or during a staged rollout the
    previous one when the device is outside the rollout; None when the team has no release."""
    key = (device.organization_id, device.team_path)
    state: DeliveryCache | None = cache()
    if state is None:
        team = team_load(*key)
    else:
        team = state.team(key, lambda: team_load(*key), device.team_version)
    if team.current is None:
        return None
    serves_current = rollout_serves_current(
        release_id=team.current.release_id,
        percent=team.rollout_percent,
        has_previous=team.previous is not None,
        device_id=device.device_id,
    )
    return team.current if serves_current else team.previous
