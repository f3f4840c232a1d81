"""Redis, the broker and cache, goes away and comes back empty: machines still fetch, people still
sign in, read and ask for publishes (which wait, recorded, and none is lost), and once Redis is
back the worker, which stayed up throughout, publishes every one of them."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db.models import F
from django.test import Client
from django.urls import reverse

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create
from policyhub.fleet.services import device_enroll, enrollment_token_create
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.runs import publish_run_request
from policyhub.releases.tasks import publish_runs_recover_task
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy
from tests.faults.conftest import WorkerStarter
from tests.faults.services import RedisServer, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

FINISHED = ("succeeded", "failed")
# What a request may take while Redis is down: the hand-over to the broker is tried a few
# times within about a second before the run is left for the recovery sweep.
PATIENCE = 5.0


def finished(*runs: PublishRun, seconds: float = 60) -> list[PublishRun]:
    ids = [run.pk for run in runs]
    wait_until(
        lambda: PublishRun.objects.filter(pk__in=ids, status__in=FINISHED).count() == len(ids),
        f"publish runs {ids} finishing",
        seconds,
    )
    return list(PublishRun.objects.filter(pk__in=ids).order_by("pk"))


def test_while_redis_is_down_fetches_pages_and_sign_in_answer_and_no_publish_is_lost(
    cast: dict[str, Any], broker: RedisServer, workers: WorkerStarter
) -> None:
    acme, admin = cast["acme"], cast["admin"]
    policy_apply(organization=acme, wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    (worker,) = workers("outage")
    (first,) = finished(publish_run_request(organization=acme, actor=acting(admin)))
    assert (first.status, first.releases_created) == ("succeeded", 3), first.error
    _, enrol = enrollment_token_create(organization=acme, team_path="batch", actor=OPERATOR)
    _, credential = device_enroll(token_secret=enrol, hostname="laptop")
    _, token = api_token_create(actor=acting(admin), organization=acme, name="ci", role=Role.ADMIN)
    bearer = f"Bearer {token}"
    pages = Client()
    pages.force_login(admin)
    staff = Client()
    staff.force_login(
        get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-root")
    )

    took: dict[str, float] = {}

    def timed(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        answer = call(*args, **kwargs)
        took[what] = time.monotonic() - started
        assert took[what] < PATIENCE, (what, took[what])
        return answer

    broker.kill()
    assert not broker.answers()

    # Machines: both channels answer with the published release (delivery never uses Redis).
    bundle = timed(
        "agent fetch", pages.get, "/api/v1/device/bundle", HTTP_AUTHORIZATION=f"Bearer {credential}"
    )
    assert bundle.status_code == 200 and bundle.json()["revision"] == 1, bundle.content
    native = timed("Codex fetch", pages.get, f"/config-server/{credential}/codex/config/bundle")
    assert native.status_code == 200, native.content

    # People: pages, the admin site and an API read answer.
    for client, url in (
        (pages, reverse("organization", args=["acme"])),
        (pages, reverse("web-publishes", args=["acme"])),
        (staff, "/admin/"),
    ):
        assert timed(url, client.get, url).status_code == 200, url
    read = timed(
        "API read", Client().get, reverse("publish-runs", args=["acme"]), HTTP_AUTHORIZATION=bearer
    )
    assert read.status_code == 200 and read.json()["results"][0]["id"] == first.pk
    # Signing in counts attempts in the cache (Redis): it must not turn into an error page.
    signed_in = timed(
        "sign-in",
        Client().post,
        reverse("account_login"),
        {"login": "owner@example.com", "password": "pw-" + "owner" * 3},
    )
    assert signed_in.status_code == 302, signed_in.content[:2000]
    assert signed_in["Location"] == reverse("home")

    # A change, and publishes asked for from a page and from the API: each is recorded and the
    # asker is told it waits for a worker, not shown an error.
    policy_apply(
        organization=acme,
        wanted=make_policy(THREE_TEAMS.replace("openai.gpt-oss-120b", "openai.gpt-oss-20b")),
        actor=OPERATOR,
    )
    asked = timed("publish from a page", pages.post, reverse("web-publishes", args=["acme"]))
    assert asked.status_code == 302, asked.content[:2000]
    from_page = PublishRun.objects.exclude(pk=first.pk).get()
    assert asked["Location"] == reverse("web-publish-run", args=["acme", from_page.pk])
    told = [str(m) for m in get_messages(asked.wsgi_request)]
    assert told == [f"Publish run {from_page.pk} is queued for a worker."], told
    assert "waiting for a worker" in pages.get(asked["Location"]).content.decode()
    by_api = timed(
        "publish from the API",
        Client().post,
        reverse("publish-runs", args=["acme"]),
        HTTP_AUTHORIZATION=bearer,
    )
    assert by_api.status_code == 202, by_api.content[:2000]
    from_api = PublishRun.objects.get(pk=by_api.json()["id"])
    waiting = [from_page, from_api]
    assert [run.status for run in waiting] == ["pending", "pending"]
    assert worker.process.poll() is None, worker.output()

    # Redis is back, empty: the worker reconnects by itself; the runs' messages never reached
    # the broker (or were lost with it), so the recovery sweep sends them. Celery beat runs it
    # every minute and it takes runs pending for over a minute: here the runs' clock is moved
    # back a minute and the sweep is called as beat calls it.
    broker.start()
    back = time.monotonic()
    wait_until(worker.answers, "the worker reconnecting to Redis", 60)
    took["worker reconnecting"] = time.monotonic() - back
    PublishRun.objects.filter(pk__in=[r.pk for r in waiting]).update(
        created_at=F("created_at") - timedelta(minutes=1, seconds=1)
    )
    swept = time.monotonic()
    assert sorted(publish_runs_recover_task()) == sorted(r.pk for r in waiting)
    done = finished(*waiting)
    took["sweep to both published"] = time.monotonic() - swept
    print("\n" + "\n".join(f"{what}: {seconds:.3f} s" for what, seconds in took.items()))
    assert [run.status for run in done] == ["succeeded", "succeeded"], [r.error for r in done]
    # One of them published the change (batch, revision 2); the other found nothing new.
    assert sorted(run.releases_created for run in done) == [0, 1]
    assert sorted(Release.objects.values_list("team_path", "revision")) == [
        ("batch", 1),
        ("batch", 2),
        ("platform", 1),
        ("platform/ci", 1),
    ]
    assert not PublishRun.objects.exclude(status="succeeded").exists()
