"""The audit trail: one append-only row per change, written in the same transaction."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from policyhub.actors import LABEL_MAX_LENGTH, ActorKind


class AuditEvent(models.Model):
    """Who changed what, when, from what to what, and why."""

    # Every app writes events, so audit sits below the others and names its organisation by
    # label rather than by import (docs/architecture.md). PROTECT: an organisation with history stays.
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A person (user), a person's API token, the server operator, a system job or a machine
    # (policyhub.actors); the label is kept even if the user is later removed.
    actor_kind = models.CharField(
        max_length=16, choices=[(k.value, k.value) for k in ActorKind], default=ActorKind.USER.value
    )
    actor_label = models.CharField(max_length=LABEL_MAX_LENGTH)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    # Text, not a bounded column: a team path alone may be 1,023 characters, plus label and key.
    object_key = models.TextField()
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["organization", "id"])]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M}" if self.created_at else "(unsaved)"
        return f"{when} {self.actor_label} {self.action} {self.object_type} {self.object_key}"
