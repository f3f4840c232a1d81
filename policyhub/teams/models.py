"""The team tree of an organisation."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

from policyhub.accounts.models import Organization

team_slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$", "lowercase letters, digits and '-'"
)


class Team(models.Model):
    """A team at any depth; `path` is the slash-joined slug path from the top (`platform/ci`)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    slug = models.CharField(max_length=63, validators=[team_slug_validator])
    name = models.CharField(max_length=200)
    # The slug path, materialised: policy documents, pages and the render command address a team
    # by it, and a subtree is one `path__startswith` query.
    path = models.CharField(max_length=1024)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "path"], name="team_path_unique")
        ]
        ordering = ["path"]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.path}"
