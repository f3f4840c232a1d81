"""`seed_demo`: the demo organisation `acme` and its owner's login, created once.

`make run` calls it every time, so it never overwrites: an existing organisation keeps the policy
and memberships its admins gave it, and an existing admin user keeps its password.
"""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from policyhub.accounts.selectors import user_by_key
from policyhub.accounts.services import organization_create
from policyhub.actors import Actor
from policyhub.env import env_str
from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.selectors import organization_get
from policyhub.policies.services import policy_apply
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request


class Command(BaseCommand):
    help = "Create the demo organisation acme with its teams, providers and owner, if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        email = env_str("DEMO_OWNER_EMAIL", "admin@acme.example")
        password = env_str("DEMO_OWNER_PASSWORD", "policyhub-demo")
        wanted = document.parse(ACME.read_text())
        operator = Actor.operator()
        with transaction.atomic():
            owner = user_by_key(email)
            owner_created = owner is None
            if owner is None:
                # An ordinary person, the demo organisation's owner: not a superuser of the
                # deployment. Their address counts as verified, so they can sign in at once.
                owner = get_user_model().objects.create_user(email[:150], email, password)
                EmailAddress.objects.create(user=owner, email=email, primary=True, verified=True)
            org = organization_get(wanted.slug)
            created = org is None
            if org is None:
                org = organization_create(
                    actor=operator, slug=wanted.slug, name=wanted.name, owner=owner
                )
                changes = policy_apply(
                    organization=org, wanted=wanted, actor=operator, reason="demo seed"
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
            run = publish_run_request(organization=org, actor=operator)
            publish_run_execute(run_id=run.pk)
            run.refresh_from_db()
            self.stdout.write(
                f"First publish: run {run.pk} {run.status}, {run.releases_created} release(s)."
            )
        if owner_created:
            self.stdout.write(f"Demo login (owner of {wanted.slug}): {email} / {password}")
        else:
            self.stdout.write(f"Demo login: {email} (existing user; its password was kept)")
