"""Change sets: a wanted policy on its way from draft through review to a published release."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from policyhub.accounts.models import Organization
from policyhub.actors import LABEL_MAX_LENGTH


class ChangeSet(models.Model):
    """One proposed edit of an organisation's whole policy, planned against the live policy."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        SUBMITTED = "submitted"
        APPROVED = "approved"
        REJECTED = "rejected"
        PUBLISHED = "published"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="change_sets"
    )
    # The person who wrote it; None for the server operator (named in author_label).
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who wrote it (policyhub.actors): the publish that applies it acts in their name.
    author_kind = models.CharField(max_length=16, default="user")
    author_label = models.CharField(max_length=LABEL_MAX_LENGTH, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    title = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    document = models.TextField()  # the wanted policy document (TOML)
    # The plan lines against the live policy at creation (at the last edit, for a browser
    # draft, which may be empty again when its edits are undone: it cannot be submitted then).
    plan = models.JSONField(default=list, blank=True)
    # sha256 of the live policy's export text it was planned against: publishing refuses the
    # change set when the live policy has moved on since, rather than overwriting that change.
    base_digest = models.CharField(max_length=64)
    publish_at = models.DateTimeField(null=True, blank=True)  # scheduled publish, when set
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_label = models.CharField(max_length=LABEL_MAX_LENGTH, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_run = models.ForeignKey(
        "releases.PublishRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="change_sets",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["draft", "submitted", "approved", "rejected", "published"]
                ),
                name="change_set_status_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="rejected") | ~models.Q(decision_reason=""),
                name="change_set_rejection_has_reason",
            ),
        ]
        indexes = [models.Index(fields=["organization", "status"])]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"change set {self.pk} ({self.status})"
