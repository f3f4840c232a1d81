"""Signing keys, publish runs and the immutable, signed releases they produce."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from policyhub.accounts.models import Organization
from policyhub.actors import LABEL_MAX_LENGTH


class BodyField(models.TextField[str, str]):
    """A served body (kilobytes of JSON holding TOML): stored like any text column.

    Its `get_placeholder` keeps `bulk_create` on PostgreSQL to plain `VALUES` rows. Django 5.2
    otherwise sends each column as one array (`UNNEST`), and psycopg escapes every quote of
    every body in Python to build it; for a publish of 5,000 teams that took 7.6 s instead of
    3.4 s (bench/publish.py), far more than the query planning UNNEST saves.
    """

    def get_placeholder(self, value: object, compiler: object, connection: object) -> str:
        return "%s"


class SigningKey(models.Model):
    """An organisation's Ed25519 key; the private half is stored encrypted at rest."""

    class Status(models.TextChoices):
        ACTIVE = "active"  # signs new releases
        RETIRED = "retired"  # verifies releases it signed, signs nothing new
        # Compromised: trusted for nothing any more. What it signed is signed again by the active
        # key, and machines drop it from their pinned keys (releases/services/revocation.py).
        REVOKED = "revoked"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="signing_keys"
    )
    key_id = models.CharField(max_length=32, unique=True)
    public_key = models.CharField(max_length=64)  # base64 of the raw 32-byte key
    private_key_encrypted = models.BinaryField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # The key that was active when this one was made, and its signature over this key's id and
    # public half: machines that pinned the older key follow the chain to trust this one.
    endorsed_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    endorsement = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.TextField(max_length=2000, blank=True)
    # The key's own signature over its revocation (signing.self_revocation_message): a machine
    # that trusts no other key of the organisation still learns that this one is revoked.
    self_revocation = models.CharField(max_length=128, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(status="active"),
                name="one_active_signing_key",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "retired", "revoked"]),
                name="signing_key_status_valid",
            ),
            # A revoked key says when, and only a revoked key does.
            models.CheckConstraint(
                condition=models.Q(status="revoked", revoked_at__isnull=False)
                | (~models.Q(status="revoked") & models.Q(revoked_at__isnull=True)),
                name="signing_key_revoked_at_iff_revoked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.status})"


class RevocationList(models.Model):
    """The organisation's signed list of revoked keys, as machines are served it beside the keys:
    issued anew, signed by the active key, at every revocation."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="revocation_list"
    )
    statement = models.TextField()  # canonical JSON (signing.revocations_message)
    signature = models.CharField(max_length=128)
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="+")
    issued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"revocations of {self.organization_id} issued {self.issued_at:%Y-%m-%d %H:%M}"


class PublishRun(models.Model):
    """One publish job: who asked, its status, timings, counts and error."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="publish_runs"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who asked (policyhub.actors): the worker publishes, and audits, in their name.
    requested_by_kind = models.CharField(max_length=16, default="user")
    requested_by_label = models.CharField(max_length=LABEL_MAX_LENGTH, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Until then the claiming worker owns the run; after it, another may claim it again.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The organisation's teams when the run published, and how many of them it rendered: the
    # others' inputs had not changed since they were last rendered (rendering/inputs.py).
    teams = models.PositiveIntegerField(default=0)
    teams_rendered = models.PositiveIntegerField(default=0)
    releases_created = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "running", "succeeded", "failed"]),
                name="publish_run_status_valid",
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"publish run {self.pk} ({self.status})"


class Release(models.Model):
    """One team's signed file set at one revision. Its content never changes after it is stored;
    only `current` moves to the next release of the team."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="releases"
    )
    # The path, not a foreign key: the history of a team outlives the team.
    team_path = models.CharField(max_length=1024)
    revision = models.PositiveIntegerField()
    current = models.BooleanField(default=True)
    files = models.JSONField()  # relative path -> file text
    hashes = models.JSONField()  # relative path -> sha256 of the file bytes
    # sha256 over the bodies (headers excluded): equal content, equal digest, whatever revision.
    # With variants, one sha256 over every file set and the versions it is for.
    content_digest = models.CharField(max_length=64)
    # The Codex versions `files` is for (rendering.render.RenderedVariant.codex); the window's
    # other versions get a `variants` row each. Empty for releases made before windows.
    codex = models.JSONField(default=dict, blank=True)
    manifest = models.TextField()  # the canonical JSON that was signed
    signature = models.CharField(max_length=128)  # base64 Ed25519 signature of the manifest
    # What machines are sent, built once here (releases/wire.py): the agent's bundle, Codex's
    # config-server bundle, and their entity tag.
    etag = models.CharField(max_length=32)
    agent_body = BodyField()
    native_body = BodyField()
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="releases")
    # None for a release made outside a publish run (a rollback).
    publish_run = models.ForeignKey(
        PublishRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="releases"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Staged rollout: while below 100 the current release reaches only this share of the team's
    # devices (chosen stably by device id) and `previous` serves the rest.
    rollout_percent = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    # The release this one replaced as current: where an aborted rollout falls back to. It can
    # never be deleted on its own (RESTRICT), only together with the release that points at it.
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    # Set when a staged rollout was aborted; such a release is kept but never current again.
    aborted_at = models.DateTimeField(null=True, blank=True)
    # Which node set every effective value ("why does this team get Y"), as it was at publish.
    provenance = models.JSONField(default=dict, blank=True)
    # The change sets applied by the publish run that made this release.
    change_sets = models.ManyToManyField("changes.ChangeSet", blank=True, related_name="releases")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "team_path", "revision"], name="release_revision_unique"
            ),
            models.UniqueConstraint(
                fields=["organization", "team_path"],
                condition=models.Q(current=True),
                name="one_current_release_per_team",
            ),
            models.CheckConstraint(
                condition=models.Q(rollout_percent__gte=1, rollout_percent__lte=100),
                name="release_rollout_percent_range",
            ),
            # A partial rollout always has a release to serve the other devices.
            models.CheckConstraint(
                condition=models.Q(rollout_percent=100) | models.Q(previous__isnull=False),
                name="release_partial_rollout_has_previous",
            ),
            models.CheckConstraint(
                condition=models.Q(aborted_at__isnull=True) | models.Q(current=False),
                name="release_aborted_not_current",
            ),
        ]
        ordering = ["team_path", "-revision"]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.team_path} r{self.revision}"


class TeamRender(models.Model):
    """What a team's inputs rendered to when a publish last rendered it: their digest
    (rendering/inputs.py) and the content digest of the files they made. A publish that finds the
    same inputs, and that content still current or last published for the team, knows the files
    would come out the same and does not render the team at all."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="team_renders"
    )
    team_path = models.CharField(max_length=1024)
    inputs_digest = models.CharField(max_length=64)
    content_digest = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "team_path"], name="team_render_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team_path}: {self.inputs_digest[:12]} -> {self.content_digest[:12]}"


class ReleaseVariant(models.Model):
    """Another file set of a release, for Codex versions of the window that need other files
    than the release's own set (profile tables before 0.134, say). One row per distinct set,
    however many versions it serves; signed and immutable like the release."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="variants")
    # {"versions": [[from, until | null], ...], "native_channel_from", "window", "measured_until"}
    codex = models.JSONField()
    files = models.JSONField()
    hashes = models.JSONField()
    content_digest = models.CharField(max_length=64)
    manifest = models.TextField()
    signature = models.CharField(max_length=128)
    etag = models.CharField(max_length=32)
    agent_body = BodyField()

    class Meta:
        ordering = ["release", "id"]

    def __str__(self) -> str:
        return f"{self.release} for Codex {self.codex.get('versions')}"
