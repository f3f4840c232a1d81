"""`publish --org ORG`: publish the organisation's policy through a worker and wait for it; warn
when the published window reaches past the newest measured Codex release."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.errors import ApplicationError
from policyhub.policies.document import codex_window
from policyhub.policies.window import window_unmeasured
from policyhub.releases.models import PublishRun
from policyhub.releases.selectors import publish_run_get
from policyhub.releases.services.runs import publish_run_request


class Command(BaseCommand):
    help = "Publish signed releases for every changed team, wait, and print the run's result."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True)
        add_actor_argument(parser)
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        try:
            run = publish_run_request(organization=org, actor=actor_arg(options["actor"]))
        except ApplicationError as exc:
            raise refused(exc, "nothing was published") from None
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
        # The window as the run published it (its change sets may have moved it).
        org.refresh_from_db(fields=["codex_window"])
        found = window_unmeasured(codex_window(org.codex_window))
        if found:
            self.stderr.write(f"warning: codex.max_version: {found}")
