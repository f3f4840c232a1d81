"""`seed_demo`: the demo organisation `acme` and its admin login, created once.

`make run` calls it every time, so it never overwrites: an existing organisation keeps the policy
and memberships its admins gave it, and an existing admin user keeps its password.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from policyhub.accounts.models import Membership
from policyhub.accounts.services import membership_grant, organization_create
from policyhub.env import env_str
from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.selectors import organization_get
from policyhub.policies.services import policy_apply
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request


class Command(BaseCommand):
    help = "Create the demo organisation acme with its teams, providers and admin, if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        username = env_str("DEMO_ADMIN_USERNAME", "admin")
        password = env_str("DEMO_ADMIN_PASSWORD", "policyhub-demo")
        wanted = document.parse(ACME.read_text())
        with transaction.atomic():
            user_model = get_user_model()
            admin = user_model.objects.filter(username=username).first()
            admin_created = admin is None
            if admin is None:
                admin = user_model.objects.create_superuser(
                    username, f"{username}@acme.example", password
                )
            org = organization_get(wanted.slug)
            created = org is None
            if org is None:
                org = organization_create(slug=wanted.slug, name=wanted.name, actor=admin)
                membership_grant(
                    organization=org, user=admin, role=Membership.Role.OWNER, actor=admin
                )
                changes = policy_apply(
                    organization=org, wanted=wanted, actor=admin, reason="demo seed"
                )
                summary = (
                    f"Demo organisation {org.slug} created: {len(wanted.teams)} teams, "
                    f"{len(changes)} change(s) applied."
                )
            else:
                summary = f"Demo organisation {org.slug} exists; its policy was left as it is."
        self.stdout.write(summary)
        if created:
            # A first signed release of every team, now, whether or not a worker is running yet;
            # the queued task later finds the run done (runs are claimed once).
            run = publish_run_request(organization=org, actor=admin)
            publish_run_execute(run_id=run.pk)
            run.refresh_from_db()
            self.stdout.write(
                f"First publish: run {run.pk} {run.status}, {run.releases_created} release(s)."
            )
        if admin_created:
            self.stdout.write(f"Demo admin login: {username} / {password}")
        else:
            self.stdout.write(
                f"Demo admin login: {username} (existing user; its password was kept)"
            )
