"""`seed_demo`: the demo organisation `acme` and its admin login (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from policyhub.accounts.models import Membership
from policyhub.accounts.services import membership_grant, organization_create
from policyhub.env import env_str
from policyhub.policies import document
from policyhub.policies.selectors import organization_get
from policyhub.policies.services import policy_apply

DEMO_POLICY = Path(__file__).resolve().parents[2] / "demo" / "acme.toml"


class Command(BaseCommand):
    help = "Create (or bring back) the demo organisation acme with its teams, providers and admin."

    def handle(self, *args: Any, **options: Any) -> None:
        username = env_str("DEMO_ADMIN_USERNAME", "admin")
        password = env_str("DEMO_ADMIN_PASSWORD", "policyhub-demo")
        wanted = document.parse(DEMO_POLICY.read_text())
        with transaction.atomic():
            user_model = get_user_model()
            admin = user_model.objects.filter(username=username).first()
            if admin is None:
                admin = user_model.objects.create_superuser(
                    username, f"{username}@acme.example", password
                )
            org = organization_get(wanted.slug) or organization_create(
                slug=wanted.slug, name=wanted.name, actor=admin
            )
            if not Membership.objects.filter(
                organization=org, user=admin, role=Membership.Role.OWNER
            ).exists():
                membership_grant(
                    organization=org, user=admin, role=Membership.Role.OWNER, actor=admin
                )
            changes = policy_apply(organization=org, wanted=wanted, actor=admin, reason="demo seed")
        self.stdout.write(
            f"Demo organisation {org.slug}: {len(wanted.teams)} teams, {len(changes)} change(s) applied."
        )
        self.stdout.write(f"Demo admin login: {username} / {password}")
