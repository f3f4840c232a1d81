"""`publish --org ORG`: publish the organisation's policy through a worker and wait for it."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policyhub.accounts.cli import organization_arg, user_arg
from policyhub.releases.models import PublishRun
from policyhub.releases.selectors import publish_run_get
from policyhub.releases.services.runs import publish_run_request


class Command(BaseCommand):
    help = "Publish signed releases for every changed team, wait, and print the run's result."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True)
        parser.add_argument("--as", dest="actor", help="username recorded as the publisher")
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        actor = user_arg(options["actor"])
        run = publish_run_request(organization=org, actor=actor)
        deadline = time.monotonic() + options["timeout"]
        finished = (PublishRun.Status.SUCCEEDED, PublishRun.Status.FAILED)
        while True:
            current = publish_run_get(run.pk)
            if current is not None and current.status in finished:
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"run {run.pk} still {current.status if current else '?'} after the timeout"
                )
            time.sleep(0.2)
        self.stdout.write(
            f"run {current.pk} {current.status} {current.releases_created} new release(s)"
        )
        if current.status == PublishRun.Status.FAILED:
            raise CommandError(current.error)
