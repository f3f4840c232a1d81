"""The audit log page: events newest first for those who may audit, each filter narrowing in
SQL, pages by id, and a bounded number of queries."""

# ruff: noqa: F811 (the `world` fixture is imported, and named by the tests that use it)

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from policyhub.audit.models import AuditEvent
from policyhub.audit.services import audit_record
from policyhub.web.pages import PAGE_SIZE
from tests.api.conftest import World, world  # noqa: F401
from tests.conftest import OPERATOR, acting, rewrite_events

pytestmark = [pytest.mark.django_db]
AUDIT = reverse("web-audit", args=["acme"])


def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def ids_shown(html: str) -> list[int]:
    """The events on the page, by the id each details toggle names."""
    return [int(found) for found in re.findall(r"\(event (\d+)\)", html)]


def record(org: Any, **fields: Any) -> AuditEvent:
    fields.setdefault("actor", OPERATOR)
    fields.setdefault("action", "test.note")
    fields.setdefault("object_type", "team")
    fields.setdefault("object_key", "team platform")
    fields.setdefault("after", {"noted": True})
    with transaction.atomic():
        return audit_record(organization_id=org.pk, **fields)


def test_admin_sees_events_newest_first_with_details(client: Client, world: World) -> None:
    people = world.ids["people"]
    newest = record(people["acme"], reason="why not", before={"old": 1}, after={"new": 2})
    response = signed_in(client, people["admin"]).get(AUDIT)
    html = response.content.decode()
    assert response.status_code == 200
    shown = ids_shown(html)
    assert shown[0] == newest.pk and shown == sorted(shown, reverse=True)
    assert "why not" in html and "&quot;old&quot;: 1" in html and "&quot;new&quot;: 2" in html
    assert "<details>" in html and 'aria-current="page"' in html
    # Another organisation's events never show.
    other = record(people["other"], object_key="team elsewhere")
    assert other.pk not in ids_shown(signed_in(client, people["admin"]).get(AUDIT).content.decode())


def test_auditor_reads_it_viewer_is_refused_outsider_sees_nothing(
    client: Client, world: World
) -> None:
    people = world.ids["people"]
    assert signed_in(client, people["auditor"]).get(AUDIT).status_code == 200
    viewer = signed_in(client, people["viewer"])
    assert viewer.get(AUDIT).status_code == 403
    settings_page = viewer.get(reverse("web-settings", args=["acme"])).content.decode()
    assert AUDIT not in settings_page  # no navigation link either
    assert signed_in(client, people["outsider"]).get(AUDIT).status_code == 404


def test_the_page_takes_no_post(client: Client, world: World) -> None:
    people = world.ids["people"]
    count = AuditEvent.objects.count()
    assert signed_in(client, people["owner"]).post(AUDIT, {"actor": "x"}).status_code == 403
    assert AuditEvent.objects.count() == count


def test_actor_filter_matches_the_label_and_its_tokens(client: Client, world: World) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    own = record(acme, actor=acting(people["approver"]))
    token_label = f"{people['approver'].email} (API token phk_123…)"
    through_token = AuditEvent.objects.filter(pk=record(acme).pk)
    rewrite_events(through_token, actor_label=token_label)
    someone_else = record(acme, actor=acting(people["viewer"]))
    html = signed_in(client, people["auditor"]).get(AUDIT, {"actor": "approver@"}).content
    shown = ids_shown(html.decode())
    assert own.pk in shown and through_token.get().pk in shown
    assert someone_else.pk not in shown
    assert all(
        label.startswith("approver@")
        for label in AuditEvent.objects.filter(pk__in=shown).values_list("actor_label", flat=True)
    )


def test_team_filter_finds_the_team_policy_and_releases_only(client: Client, world: World) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    node = record(acme, object_key="team platform/ci config.model")
    release = record(acme, object_type="release", object_key="platform/ci r7")
    parent = record(acme, object_key="team platform config.model")
    lookalike = record(acme, object_key="team platform/ci-old config.model")
    device = record(acme, object_type="device", object_key="platform/ci")
    shown = ids_shown(
        signed_in(client, people["auditor"]).get(AUDIT, {"team": "platform/ci"}).content.decode()
    )
    assert node.pk in shown and release.pk in shown
    assert not {parent.pk, lookalike.pk, device.pk} & set(shown)
    # The publish in the world fixture released platform/ci: its events are found too.
    published = AuditEvent.objects.filter(
        organization=acme, object_type="release", object_key__startswith="platform/ci r"
    )
    assert set(published.values_list("pk", flat=True)) <= set(shown)


def test_object_type_filter(client: Client, world: World) -> None:
    people = world.ids["people"]
    shown = ids_shown(
        signed_in(client, people["auditor"])
        .get(AUDIT, {"object_type": "membership"})
        .content.decode()
    )
    expected = AuditEvent.objects.filter(organization=people["acme"], object_type="membership")
    assert shown and sorted(shown) == sorted(expected.values_list("pk", flat=True))


def test_since_and_until_narrow_by_time(client: Client, world: World) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    now = timezone.now()
    # Ids grow with time, as they do when the services write: what is there is older still.
    rewrite_events(
        AuditEvent.objects.filter(organization=acme), created_at=now - timedelta(days=60)
    )
    moments = {"old": now - timedelta(days=40), "mid": now - timedelta(days=10)}
    events = {}
    for name, moment in moments.items():
        event = record(acme, object_key=f"team {name}")
        rewrite_events(AuditEvent.objects.filter(pk=event.pk), created_at=moment)
        events[name] = event.pk
    auditor = signed_in(client, people["auditor"])

    def shown(**query: str) -> set[int]:
        return set(ids_shown(auditor.get(AUDIT, query).content.decode()))

    day = (now - timedelta(days=20)).date().isoformat()
    assert events["mid"] in shown(since=day) and events["old"] not in shown(since=day)
    assert events["old"] in shown(until=day) and events["mid"] not in shown(until=day)
    # A date alone as `until` takes in the whole of that day.
    old_day = moments["old"].date().isoformat()
    assert events["old"] in shown(until=old_day)
    assert events["old"] not in shown(until=(moments["old"] - timedelta(days=1)).date().isoformat())
    # A time narrows to the minute.
    exact = moments["mid"].strftime("%Y-%m-%d %H:%M")
    assert events["mid"] not in shown(
        since=(moments["mid"] + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")
    )
    assert events["mid"] in shown(
        since=exact, until=(moments["mid"] + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")
    )


def test_a_bad_date_is_shown_beside_its_field(client: Client, world: World) -> None:
    people = world.ids["people"]
    response = signed_in(client, people["auditor"]).get(AUDIT, {"since": "yesterday-ish"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="errorlist' in html and "Enter a valid date/time" in html
    assert ids_shown(html) == []


def test_events_page_by_id_fifty_at_a_time(client: Client, world: World) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    made = [record(acme, object_type="codex", object_key=f"codex n{n}").pk for n in range(60)]
    auditor = signed_in(client, people["auditor"])
    first = auditor.get(AUDIT, {"object_type": "codex"}).content.decode()
    assert ids_shown(first) == sorted(made, reverse=True)[:PAGE_SIZE]
    after = re.search(r'href="\?([^"]*after=\d+)"', first)
    assert after is not None and "object_type=codex" in after.group(1)
    second = auditor.get(f"{AUDIT}?{after.group(1).replace('&amp;', '&')}").content.decode()
    assert ids_shown(second) == sorted(made, reverse=True)[PAGE_SIZE:]
    assert "First page of events" in second and "Next page of events" not in second


def test_empty_states(client: Client, world: World) -> None:
    people = world.ids["people"]
    auditor = signed_in(client, people["auditor"])
    html = auditor.get(AUDIT, {"team": "no/such/team"}).content.decode()
    assert "No event matches these filters" in html


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"actor": "admin@"},
        {"team": "platform/ci"},
        {"object_type": "release"},
        {"since": "2020-01-01", "until": "2999-01-01"},
        {"actor": "a", "team": "platform", "object_type": "team", "since": "2020-01-01"},
    ],
)
def test_query_count_is_fixed(
    client: Client, world: World, django_assert_max_num_queries: Any, query: dict[str, str]
) -> None:
    people = world.ids["people"]
    for n in range(PAGE_SIZE + 5):
        record(people["acme"], object_key=f"team platform/ci n{n}")
    auditor = signed_in(client, people["auditor"])
    # Session (read, and saved on every request: three), user, organisation, membership (twice),
    # the events, and one id bound per date.
    with django_assert_max_num_queries(11):
        assert auditor.get(AUDIT, query).status_code == 200


def test_since_bound_keeps_events_written_slightly_out_of_order(world: World) -> None:
    """Ids bound the time filters; an event whose time is a little older than an earlier id's
    (two writers interleaving) is still found."""
    from policyhub.audit.selectors import audit_events, audit_events_since

    acme = world.ids["people"]["acme"]
    moment = datetime(2030, 1, 1, tzinfo=timezone.get_current_timezone())
    first, second = record(acme), record(acme)
    rewrite_events(AuditEvent.objects.filter(pk=first.pk), created_at=moment + timedelta(seconds=2))
    rewrite_events(
        AuditEvent.objects.filter(pk=second.pk), created_at=moment + timedelta(seconds=1)
    )
    found = audit_events_since(audit_events(acme.pk), acme.pk, moment)
    assert set(found.values_list("pk", flat=True)) == {first.pk, second.pk}
