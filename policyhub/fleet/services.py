"""Writes of the fleet: enrolment tokens, enrolling, moving and revoking devices, and the
status devices report (with its history and the release receipts it completes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from policyhub import credentials
from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from policyhub.fleet.models import (
    Device,
    DeviceReceipt,
    DeviceReport,
    EnrollmentToken,
    codex_sort_key,
)
from policyhub.fleet.selectors import token_refusal
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_serves_current
from policyhub.releases.services.keys import signing_key_active
from policyhub.teams.models import Team
from providers.base import Issue

MAX_TOKEN_LIFETIME = timedelta(days=365)


class EnrollmentRefused(ApplicationError):
    """An enrolment token that is unknown, expired, used up or revoked."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [Issue("error", "token", message)])


def _authorize(organization: Organization, actor: Actor, doing: str) -> None:
    authorize(actor, organization, Permission.FLEET_MANAGE, doing=doing)


def _team(organization: Organization, team_path: str, field: str = "team") -> Team:
    team = Team.objects.filter(organization=organization, path=team_path).first()
    if team is None:
        raise ApplicationError(
            f"no team {team_path!r} in {organization.slug}",
            [Issue("error", field, f"no team {team_path!r}")],
        )
    return team


@transaction.atomic
def enrollment_token_create(
    *,
    organization: Organization,
    team_path: str,
    lifetime: timedelta = timedelta(days=7),
    max_uses: int | None = None,
    note: str = "",
    actor: Actor,
) -> tuple[EnrollmentToken, str]:
    """A new token for the team; returns it with its secret, which is shown only this once."""
    _authorize(organization, actor, "create enrolment tokens")
    team = _team(organization, team_path)
    if max_uses is not None and max_uses < 1:
        raise ApplicationError("uses must be at least 1", [Issue("error", "uses", "must be ≥ 1")])
    if not timedelta(0) < lifetime <= MAX_TOKEN_LIFETIME:
        raise ApplicationError(
            "expires must be between 1 minute and 365 days",
            [Issue("error", "expires", "out of range")],
        )
    # Machines pin the organisation's keys when they enrol, before any release may exist: the
    # key must be there already, or they would have nothing to pin and trust no release.
    signing_key_active(organization=organization, actor=actor)
    secret = credentials.new_secret(credentials.ENROLLMENT_PREFIX)
    token = EnrollmentToken(
        organization=organization,
        team=team,
        token_hash=credentials.secret_hash(secret),
        prefix=secret[:10],
        note=note,
        expires_at=timezone.now() + lifetime,
        max_uses=max_uses,
        created_by=actor.user,
    )
    token.full_clean()
    token.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="enrollment_token.create",
        object_type="enrollment_token",
        object_key=str(token.pk),
        after=_token_data(token),
    )
    return token, secret


@transaction.atomic
def enrollment_token_revoke(*, token: EnrollmentToken, actor: Actor) -> EnrollmentToken:
    _authorize(token.organization, actor, "revoke enrolment tokens")
    token = EnrollmentToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        before = _token_data(token)
        token.revoked_at = timezone.now()
        token.full_clean()
        token.save(update_fields=["revoked_at"])
        audit_record(
            organization_id=token.organization_id,
            actor=actor,
            action="enrollment_token.revoke",
            object_type="enrollment_token",
            object_key=str(token.pk),
            before=before,
            after=_token_data(token),
        )
    return token


def _token_data(token: EnrollmentToken) -> dict[str, Any]:
    return {
        "team": token.team.path,
        "prefix": token.prefix,
        "note": token.note,
        "expires_at": token.expires_at.isoformat(),
        "max_uses": token.max_uses,
        "uses": token.uses,
        "revoked": token.revoked_at is not None,
    }


@transaction.atomic
def device_enroll(
    *, token_secret: str, hostname: str, os: str = "", codex_version: str = ""
) -> tuple[Device, str]:
    """Enrol a machine with a team's token; returns the device and its credential, which is
    shown only this once (only its hash is kept, and the hash of its fetch credential)."""
    token = None
    if credentials.well_formed(token_secret, credentials.ENROLLMENT_PREFIX):
        token = (
            EnrollmentToken.objects.select_for_update(of=("self",))
            .select_related("organization", "team")
            .filter(token_hash=credentials.secret_hash(token_secret))
            .first()
        )
    refusal = token_refusal(token, timezone.now())
    if refusal is not None or token is None:
        raise EnrollmentRefused(refusal or "unknown enrolment token")
    token.uses += 1
    token.full_clean()
    token.save(update_fields=["uses"])
    secret = credentials.new_secret(credentials.DEVICE_PREFIX)
    device = Device(
        organization=token.organization,
        team=token.team,
        credential_hash=credentials.secret_hash(secret),
        fetch_credential_hash=credentials.secret_hash(credentials.fetch_credential(secret)),
        hostname=hostname,
        os=os,
        codex_version=codex_version,
        codex_sort_key=codex_sort_key(codex_version),
        enrolled_with=token,
    )
    device.full_clean()
    device.save()
    audit_record(
        organization_id=token.organization_id,
        actor=Actor.device(f"enrolment token {token.prefix}…"),
        action="device.enroll",
        object_type="device",
        object_key=str(device.pk),
        after={"team": token.team.path, "hostname": hostname, "token": token.prefix},
    )
    return device, secret


class CredentialRefused(ApplicationError):
    """A new device credential that is not one (wrong shape, or in use)."""


@transaction.atomic
def device_credential_rotate(*, device_id: Any, new_credential: str) -> Device | None:
    """Move a device enrolled before fetch credentials existed off its credential, which its
    world-readable requirements.toml exposed: the credential becomes one its agent made, and the
    fetch credential the one derived from it; the old ones stop working when this commits.
    None when the device is gone or revoked.

    The agent makes the secret (256 random bits, like ours) so that a lost answer costs nothing:
    it keeps the new one before asking, and takes it if the old one is refused afterwards. Only
    a device without a fetch credential may rotate (asking again with the credential it already
    has changes nothing): once its credential was never exposed, whoever held the old file's
    copy cannot use this to take the device over."""
    if not credentials.well_formed(new_credential, credentials.DEVICE_PREFIX):
        raise CredentialRefused(
            "credential must be phd_ followed by 43 URL-safe base64 characters",
            [Issue("error", "credential", "malformed")],
        )
    device = (
        Device.objects.select_for_update(of=("self",))
        .filter(pk=device_id, revoked_at__isnull=True)
        .first()
    )
    if device is None:
        return None
    new_hash = credentials.secret_hash(new_credential)
    if new_hash == device.credential_hash:
        return device
    if device.fetch_credential_hash is not None:
        raise CredentialRefused(
            "this device has a fetch credential already; its credential never left the agent",
            [Issue("error", "credential", "the device has a fetch credential")],
        )
    if Device.objects.filter(credential_hash=new_hash).exists():
        raise CredentialRefused(
            "this credential is in use; make another", [Issue("error", "credential", "in use")]
        )
    device.credential_hash = new_hash
    device.fetch_credential_hash = credentials.secret_hash(
        credentials.fetch_credential(new_credential)
    )
    device.save(update_fields=["credential_hash", "fetch_credential_hash"])
    audit_record(
        organization_id=device.organization_id,
        actor=Actor.device(device.hostname or str(device.pk)),
        action="device.rotate_credential",
        object_type="device",
        object_key=str(device.pk),
        after={"hostname": device.hostname},
    )
    return device


@transaction.atomic
def device_revoke(*, device: Device, actor: Actor, reason: str = "") -> Device:
    """Both channels refuse the device's credential from the moment this commits."""
    device = _device_locked(device, actor, "revoke devices")
    if device.revoked_at is None:
        device.revoked_at = timezone.now()
        _device_save(
            device,
            "revoke",
            ["revoked_at"],
            actor=actor,
            before={"revoked": False},
            after={"revoked": True, "team": device.team.path, "hostname": device.hostname},
            reason=reason,
        )
    return device


@transaction.atomic
def device_move(*, device: Device, team_path: str, actor: Actor, reason: str = "") -> Device:
    """Serve the device another team's release from its next fetch on."""
    device = _device_locked(device, actor, "move devices")
    if device.revoked_at is not None:
        raise ApplicationError(
            "a revoked device cannot be moved", [Issue("error", "device", "revoked")]
        )
    team = _team(device.organization, team_path)
    if team.pk != device.team_id:
        before = {"team": device.team.path, "assignment": device.assignment}
        device.team = team
        device.assignment += 1
        _device_save(
            device,
            "move",
            ["team", "assignment"],
            actor=actor,
            before=before,
            after={"team": team.path, "assignment": device.assignment},
            reason=reason,
        )
    return device


def _device_locked(device: Device, actor: Actor, doing: str) -> Device:
    _authorize(device.organization, actor, doing)
    return Device.objects.select_for_update(of=("self",)).select_related("team").get(pk=device.pk)


def _device_save(
    device: Device,
    verb: str,
    fields: list[str],
    *,
    actor: Actor,
    before: Any,
    after: Any,
    reason: str,
) -> None:
    """Store an admin's change of a device with its audit event. Every web process drops the
    device from its cache when this commits (delivery/receivers.py, and PostgreSQL's
    announcement for the others)."""
    device.full_clean()
    device.save(update_fields=fields)
    audit_record(
        organization_id=device.organization_id,
        actor=actor,
        action=f"device.{verb}",
        object_type="device",
        object_key=str(device.pk),
        before=before,
        after=after,
        reason=reason,
    )


# What a status report says; a report that repeats all of it adds no history row.
REPORTED = ("applied_revision", "codex_version", "os", "agent_version", "errors")


@transaction.atomic
def device_report_record(
    *,
    device_id: Any,
    applied_revision: int | None,
    codex_version: str,
    os: str,
    agent_version: str,
    errors: list[str],
) -> None:
    """Store an agent's status report: on the device, in its history when it differs from the
    report before it, and on its release receipts (the release it applied; the errors on the
    release it is served). Telemetry, not a change of policy: not audited."""
    # The device's lock orders one device's reports, so each is compared with the one before;
    # it is also the lock every writer of the device's receipts takes first (delivery/cache.py).
    device = (
        Device.objects.select_for_update(of=("self",))
        .select_related("team")
        .filter(pk=device_id)
        .first()
    )
    if device is None:
        return
    now = timezone.now()
    reported: dict[str, Any] = {
        "applied_revision": applied_revision,
        "codex_version": codex_version,
        "os": os,
        "agent_version": agent_version,
        "errors": errors,
    }
    changed = device.reported_at is None or any(
        getattr(device, name) != reported[name] for name in REPORTED
    )
    Device.objects.filter(pk=device.pk).update(
        reported_at=now, codex_sort_key=codex_sort_key(codex_version), **reported
    )
    if changed:
        report = DeviceReport(device=device, reported_at=now, **reported)
        report.full_clean(exclude=["device"])
        report.save()
    served = _release_served(device)
    applied = _release_applied(device, applied_revision, served)
    if served is not None:
        _receipt_report(device, served.pk, now, errors=errors, applied=served.pk == applied)
    if applied is not None and (served is None or applied != served.pk):
        _receipt_report(device, applied, now, applied=True)


@dataclass(frozen=True)
class _Served:
    """The release a device is served now."""

    pk: int
    revision: int


def _release_served(device: Device) -> _Served | None:
    """What the fetch path serves the device now (`rollout_serves_current`), without bodies."""
    row = (
        Release.objects.filter(
            organization_id=device.organization_id, team_path=device.team.path, current=True
        )
        .values_list("pk", "revision", "rollout_percent", "previous_id", "previous__revision")
        .first()
    )
    if row is None:
        return None
    pk, revision, percent, previous_pk, previous_revision = row
    if rollout_serves_current(
        release_id=pk,
        percent=percent,
        has_previous=previous_pk is not None,
        device_id=str(device.pk),
    ):
        return _Served(pk, revision)
    return _Served(previous_pk, previous_revision)


def _release_applied(device: Device, revision: int | None, served: _Served | None) -> int | None:
    """The release the agent means by the revision it applied (a revision is a team's).

    The agent reports right after it fetched, before that fetch's receipt is written: a
    revision that is the one served now is that release. Otherwise it is one the device fetched
    before (the previous release it still runs during a rollout, or its former team's when it
    was moved and has not applied its new team's yet): the last fetched with that revision.
    Failing both (fetched before receipts were kept), its team's release of that revision."""
    if revision is None:
        return None
    if served is not None and revision == served.revision:
        return served.pk
    fetched = (
        DeviceReceipt.objects.filter(device=device, release__revision=revision)
        .order_by(F("last_fetched_at").desc(nulls_last=True), "-id")
        .values_list("release_id", flat=True)
        .first()
    )
    if fetched is not None:
        return fetched
    return (
        Release.objects.filter(
            organization_id=device.organization_id, team_path=device.team.path, revision=revision
        )
        .values_list("pk", flat=True)
        .first()
    )


def _receipt_report(
    device: Device,
    release_id: int,
    now: datetime,
    *,
    applied: bool,
    errors: list[str] | None = None,
) -> None:
    """Note a status report on the device's receipt of a release: applied (the first report
    saying so keeps its time) and, for the release it is served, the report's errors. Its fetch
    may not be written yet: the receipt is made then, and the fetch completes it. Under the
    device's lock no other writer makes this receipt meanwhile."""
    changes: dict[str, Any] = {}
    if applied:
        changes["applied_at"] = Coalesce("applied_at", Value(now))
    if errors is not None:
        changes.update(reported_at=now, errors=errors)
    if DeviceReceipt.objects.filter(device=device, release_id=release_id).update(**changes):
        return
    if not applied and not errors:
        return  # a clean report says nothing of a release the device has not fetched yet
    DeviceReceipt.objects.create(
        organization_id=device.organization_id,
        device=device,
        release_id=release_id,
        applied_at=now if applied else None,
        reported_at=now if errors is not None else None,
        errors=errors or [],
    )
