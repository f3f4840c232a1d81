"""Enrolment tokens and the developer machines (devices) enrolled with them, what each device
did with each release (receipts) and the history of its status reports, and the two facts about
a device that fleet status computes in SQL: where its Codex version sorts, and whether it is
inside a staged rollout."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql.compiler import SQLCompiler

from policyhub.accounts.models import Organization
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_includes
from policyhub.teams.models import Team
from providers.codex_versions import Version, parse_version


class EnrollmentToken(models.Model):
    """A team's invitation for machines to enrol: expires, has a use limit, can be revoked.
    Only the sha256 of the secret is stored."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="enrollment_tokens"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="enrollment_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the secret, to tell tokens apart in lists without revealing them.
    prefix = models.CharField(max_length=12)
    note = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(null=True, blank=True)  # None: unlimited until expiry
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_uses__isnull=True)
                | models.Q(uses__lte=models.F("max_uses")),
                name="enrollment_token_uses_within_limit",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.team.path})"


class Device(models.Model):
    """One enrolled developer machine: its team, its credential (hashed) and what it last
    fetched and reported."""

    class Channel(models.TextChoices):
        NATIVE = "native"  # Codex's own config-server protocol
        AGENT = "agent"  # policyhub-agent

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="devices")
    # PROTECT: a team cannot be deleted while machines are enrolled in it; move them first.
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="devices")
    credential_hash = models.CharField(max_length=64, unique=True)
    # The hash of the fetch-only credential the native channel's URL carries (credentials.py);
    # empty for devices enrolled before there was one, until their agent rotates.
    fetch_credential_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    enrolled_with = models.ForeignKey(
        EnrollmentToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    enrolled_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Fetches, written behind the request path in batches (see delivery/cache.py).
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    revision_served = models.PositiveIntegerField(null=True, blank=True)
    fetch_count = models.PositiveBigIntegerField(default=0)
    # The agent's last status report.
    reported_at = models.DateTimeField(null=True, blank=True)
    applied_revision = models.PositiveIntegerField(null=True, blank=True)
    codex_version = models.CharField(max_length=64, blank=True)
    os = models.CharField(max_length=128, blank=True)
    agent_version = models.CharField(max_length=64, blank=True)
    errors = models.JSONField(default=list, blank=True)
    # `codex_version` as text that sorts as the version does (version_sort_key), "" when it is
    # not a version: the support window becomes a range in SQL. Written with codex_version.
    codex_sort_key = models.CharField(max_length=20, blank=True, editable=False)
    # How many times the device was moved: the number of its signed team assignment, which the
    # agent needs newer than the last it saw before it takes another team's release.
    assignment = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_channel__in=["", "native", "agent"]),
                name="device_last_channel_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "team"]),
            # Fleet lists: the enrolled machines, newest first, a page at a time.
            models.Index(
                fields=["organization", "-enrolled_at"],
                condition=models.Q(revoked_at__isnull=True),
                name="device_enrolled_newest",
            ),
        ]
        ordering = ["hostname", "enrolled_at"]

    def __str__(self) -> str:
        return f"{self.hostname or self.pk} ({self.team.path})"


class DeviceReceipt(models.Model):
    """What one device did with one release: when it first and last fetched it (and through
    which channel first), when its agent reported it applied, and the errors of its last status
    report while it was served the release."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="receipts")
    # The release itself, not the team's path and revision: a device moved to another team, or
    # served the previous release during a staged rollout, still names exactly what it got.
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="+")
    # Fetches, written behind the request path with the device's counts (delivery/cache.py).
    # Empty until the first fetch is written: a status report can arrive before it.
    first_fetched_at = models.DateTimeField(null=True, blank=True)
    first_channel = models.CharField(max_length=16, choices=Device.Channel.choices, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    # The first status report that named this release as the one applied.
    applied_at = models.DateTimeField(null=True, blank=True)
    # The last status report made while the device was served this release, and its errors
    # (the agent's errors concern what it was just served: a refused bundle, a restored file).
    reported_at = models.DateTimeField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "release"], name="device_receipt_unique"),
            models.CheckConstraint(
                condition=models.Q(first_channel__in=["", "native", "agent"]),
                name="device_receipt_channel_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(first_fetched_at__isnull=True, last_fetched_at__isnull=True)
                | models.Q(first_fetched_at__lte=models.F("last_fetched_at")),
                name="device_receipt_fetch_times_ordered",
            ),
        ]
        indexes = [
            # A release's receipts, newest first, a page at a time (and its counts).
            models.Index(fields=["release", "-id"], name="device_receipt_release"),
            # The organisation's receipts in a stable order, for exports.
            models.Index(fields=["organization", "id"], name="device_receipt_organization"),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.device_id} / release {self.release_id}"


class DeviceReport(models.Model):
    """One status report of a device's agent that changed what the device reports; a report
    identical to the one before it is not stored again."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="reports")
    reported_at = models.DateTimeField()
    applied_revision = models.PositiveIntegerField(null=True, blank=True)
    codex_version = models.CharField(max_length=64, blank=True)
    os = models.CharField(max_length=128, blank=True)
    agent_version = models.CharField(max_length=64, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [
            # A device's history, newest first, a page at a time; the id breaks ties.
            models.Index(fields=["device", "-reported_at", "-id"], name="device_report_newest"),
        ]
        ordering = ["-reported_at", "-id"]

    def __str__(self) -> str:
        return f"{self.device_id} at {self.reported_at:%Y-%m-%d %H:%M:%S}"


def version_sort_key(version: Version) -> str:
    """A version as text that sorts as the version does: (0, 169, 0) is "000000.000169.000000"."""
    return ".".join(f"{part:06d}" for part in version)


def codex_sort_key(reported: str) -> str:
    """What Device.codex_sort_key holds for a reported Codex version: "" when it is none."""
    try:
        return version_sort_key(parse_version(reported))
    except ValueError:
        return ""


class RolloutIncludes(models.Func):
    """`releases.selectors.rollout_includes` as SQL: whether the device is inside the release's
    staged rollout at `percent`, so fleet status can count and filter by it in the database.

    PostgreSQL computes the same draw: the first 8 bytes of sha256("<release>:<device>") as an
    unsigned big-endian integer, mod 100. `bit(64)::bigint` reads them signed, 2**64 short of
    the unsigned value when negative, and 2**64 mod 100 is 16: such a draw moves up by 16.
    SQLite calls the Python rule itself (registered on each connection below)."""

    function = "policyhub_rollout_includes"
    output_field = models.BooleanField()

    def __init__(self, release_id: Any, device_id: Any, percent: Any) -> None:
        super().__init__(release_id, device_id, percent)

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        (release, release_params), (device, device_params), (percent, percent_params) = (
            compiler.compile(argument) for argument in self.get_source_expressions()
        )
        draw = (
            "('x' || encode(substr(sha256(convert_to("
            f"({release})::text || ':' || ({device})::text, 'UTF8')), 1, 8), 'hex'))::bit(64)::bigint"
        )
        bucket = f"mod(mod({draw}, 100) + 100 + CASE WHEN {draw} < 0 THEN 16 ELSE 0 END, 100)"
        sql = f"({bucket} < {percent})"
        params = [*release_params, *device_params]
        return sql, [*params, *params, *percent_params]


def _sqlite_rollout_includes(release_id: int, device_id: str, percent: int) -> bool:
    # SQLite stores a UUID as 32 hex digits; the rule hashes its hyphenated form.
    return rollout_includes(
        release_id=release_id, device_id=str(uuid.UUID(device_id)), percent=percent
    )


def sqlite_functions_register(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """SQLite (`make run`) has no sha256: the rollout draw runs as the Python rule there."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            RolloutIncludes.function, 3, _sqlite_rollout_includes, deterministic=True
        )
