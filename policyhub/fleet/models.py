"""Enrolment tokens and the developer machines (devices) enrolled with them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from policyhub.accounts.models import Organization
from policyhub.teams.models import Team


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

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_channel__in=["", "native", "agent"]),
                name="device_last_channel_valid",
            ),
        ]
        indexes = [models.Index(fields=["organization", "team"])]
        ordering = ["hostname", "enrolled_at"]

    def __str__(self) -> str:
        return f"{self.hostname or self.pk} ({self.team.path})"
