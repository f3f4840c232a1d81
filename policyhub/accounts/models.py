"""Organisations (tenants) and who may do what in them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from policyhub.actors import LABEL_MAX_LENGTH

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,62}$", "lowercase letters, digits and '-'")


class Organization(models.Model):
    """A tenant: one company's endpoints, team tree, policies and people."""

    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    # Four eyes: a submitted change set waits for an owner, admin or approver other than its author.
    requires_approval = models.BooleanField(default=False)
    # Members reach this organisation only in a session signed in through single sign-on.
    sso_required = models.BooleanField(default=False)
    # The Codex versions its machines run (policies.domain.CodexWindow; empty: the default).
    # Part of the policy: written by `policy_apply`, audited and diffed like the rest.
    codex_window = models.JSONField(default=dict, blank=True)
    # Counts the writes of the live policy (policies.services bumps it in each write's
    # transaction); the digest of the live policy's export is kept for the version it was
    # computed at, so pages and checks that compare a change set's base with the live policy
    # need not export the whole organisation each time (changes.selectors.live_policy_digest).
    policy_version = models.PositiveBigIntegerField(default=0)
    policy_digest = models.CharField(max_length=64, blank=True)
    policy_digest_version = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    """What a member may do in an organisation."""

    OWNER = "owner"
    ADMIN = "admin"
    TEAM_EDITOR = "team_editor"
    APPROVER = "approver"
    AUDITOR = "auditor"
    VIEWER = "viewer"


class Membership(models.Model):
    """A user's role in one organisation; team editors are scoped to a subtree."""

    Role = Role

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    # Only for team editors: the root of the subtree they may edit. PROTECT: deleting a team must
    # never silently delete an editor's membership (`team_delete` refuses first, with their names).
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org"),
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} in {self.organization}"


class Invitation(models.Model):
    """An invitation to join an organisation with a role: sent by email, used once, expiring.
    Only the sha256 of its secret is stored."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices)
    # A team editor's scope, by path: checked again when the invitation is accepted.
    team_path = models.CharField(max_length=1024, blank=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    # Who sent it (the actor's label, kind and person): accepting it checks that they still may.
    invited_by = models.CharField(max_length=LABEL_MAX_LENGTH)
    invited_by_kind = models.CharField(max_length=20)
    invited_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="invitation_role_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(team_path="") | models.Q(role=Role.TEAM_EDITOR),
                name="invitation_team_only_for_editors",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} as {self.role} in {self.organization}"


class ApiToken(models.Model):
    """A person's credential for the API in one organisation, at most at `role`: shown once,
    stored as a sha256, expiring, revocable."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The ceiling: the token acts with what both this role and its user's current role allow.
    role = models.CharField(max_length=20, choices=Role.choices)
    secret_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the secret, to tell tokens apart without revealing them.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="api_token_role_valid"
            ),
        ]
        indexes = [models.Index(fields=["organization", "user"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"
