"""The change set pages: the list by status a page at a time, one change set with its plan,
history and preview (diffs per affected team, per Codex file set, a page of teams at a time),
and the steps from an unpublished edit to a publish run, each offered only to whom it is
allowed and refused to anyone else."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from policyhub.accounts.models import Role
from policyhub.accounts.services import organization_settings_update
from policyhub.audit.models import AuditEvent
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import change_set_discard, change_set_draft_edit
from policyhub.policies import document
from policyhub.policies.domain import Json
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun
from tests.api.conftest import World
from tests.conftest import OPERATOR, acting

pytestmark = [pytest.mark.django_db]

LIST = "/orgs/acme/changes/"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def people(world: World) -> dict[str, Any]:
    return dict(world.ids["people"])


def url(change_set: ChangeSet, step: str = "") -> str:
    return f"/orgs/acme/changes/{change_set.pk}/{step}"


def ci_model(raw: Json) -> None:
    raw["teams"]["platform/ci"]["config"]["model"] = "gpt-5.5"


def admin_draft(world: World, edit: Any = ci_model) -> ChangeSet:
    """The admin's own unpublished change set, made as the browser makes it."""
    admin = people(world)["admin"]
    change_set_discard(
        actor=acting(admin), change_set=ChangeSet.objects.get(pk=world.ids["change_set"])
    )
    return change_set_draft_edit(
        actor=acting(admin), organization=people(world)["acme"], edit=edit, reason="ci model"
    )


def requiring_approval(world: World) -> None:
    organization_settings_update(
        actor=OPERATOR, organization=people(world)["acme"], requires_approval=True
    )


def add_teams(world: World, count: int) -> None:
    acme = people(world)["acme"]
    wanted = document.to_dict(org_policy(acme))
    for index in range(count):
        wanted["teams"][f"t{index:02d}"] = {"name": f"T{index}"}
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)


# --- the whole way, in the browser ----------------------------------------------------------------


def test_from_an_edit_to_a_publish_run(world: World) -> None:
    requiring_approval(world)
    draft = admin_draft(world)
    author = signed_in(people(world)["admin"])

    page = author.get(url(draft)).content.decode()
    assert "Submit change set" in page and "Approve change set" not in page
    assert "~ team platform/ci config.model: &#x27;codex-ci&#x27; -&gt; &#x27;gpt-5.5&#x27;" in page
    # What people read calls it unpublished, never a draft.
    assert "draft" not in re.sub(r"<[^>]*>", "", page).lower()

    preview = author.get(url(draft, "preview/")).content.decode()
    assert "Team platform/ci" in preview and "Team batch" not in preview
    assert '<span class="del">-model = &quot;codex-ci&quot;</span>' in preview
    assert '<span class="add">+model = &quot;gpt-5.5&quot;</span>' in preview
    assert "proposed/platform/ci/" in preview and "Stale" not in preview

    described = author.post(
        url(draft, "-/describe/"), {"title": "CI on gpt-5.5", "reason": "one model everywhere"}
    )
    assert described.status_code == 302
    submitted = author.post(url(draft, "-/submit/"))
    assert submitted.status_code == 302 and submitted["Location"] == url(draft)
    draft.refresh_from_db()
    assert (draft.status, draft.title, draft.reason) == (
        "submitted",
        "CI on gpt-5.5",
        "one model everywhere",
    )

    page = author.get(url(draft)).content.decode()
    assert "Approve change set" not in page and "the author never approves" in page
    forged = author.post(url(draft, "-/approve/"), {"reason": "looks fine to me"})
    assert forged.status_code == 400
    assert "the author can never approve their own change" in forged.content.decode()
    draft.refresh_from_db()
    assert draft.status == "submitted"

    reviewer = signed_in(people(world)[Role.APPROVER])
    page = reviewer.get(url(draft)).content.decode()
    assert "Approve change set" in page and "Reject change set" in page
    assert "Publish now" not in page and "Submit change set" not in page
    # The approval names the version the reviewer read: another one is refused.
    read = re.search(r'name="version" value="([0-9a-f]{64})"', page)
    assert read is not None
    stale = reviewer.post(url(draft, "-/approve/"), {"reason": "ok", "version": "0" * 64})
    assert stale.status_code == 400 and "changed since it was read" in stale.content.decode()
    draft.refresh_from_db()
    assert draft.status == "submitted"
    approved = reviewer.post(
        url(draft, "-/approve/"), {"reason": "checked the diff", "version": read.group(1)}
    )
    assert approved.status_code == 302
    draft.refresh_from_db()
    assert draft.status == "approved" and draft.decision_reason == "checked the diff"
    page = reviewer.get(url(draft)).content.decode()
    assert "checked the diff" in page and "approve" in page

    page = author.get(url(draft)).content.decode()
    assert "Publish now" in page
    runs = set(PublishRun.objects.values_list("pk", flat=True))
    published = author.post(url(draft, "-/publish/"))
    run = PublishRun.objects.exclude(pk__in=runs).get()
    assert published.status_code == 302
    assert published["Location"] == f"/orgs/acme/publishes/{run.pk}/"


def test_a_rejection_needs_a_reason_beside_its_field(world: World) -> None:
    requiring_approval(world)
    draft = admin_draft(world)
    signed_in(people(world)["admin"]).post(url(draft, "-/submit/"))
    reviewer = signed_in(people(world)[Role.APPROVER])
    response = reviewer.post(url(draft, "-/reject/"), {"reason": "  "})
    assert response.status_code == 400
    text = response.content.decode()
    field = text.split('id="reject-reason"', 1)[1].split("</form>", 1)[0]
    assert "must not be empty" in field
    draft.refresh_from_db()
    assert draft.status == "submitted"
    rejected = reviewer.post(url(draft, "-/reject/"), {"reason": "wrong model"})
    assert rejected.status_code == 302
    draft.refresh_from_db()
    assert draft.status == "rejected" and draft.decision_reason == "wrong model"


def test_a_stale_draft_shows_the_warning_and_cannot_be_submitted(world: World) -> None:
    draft = admin_draft(world)
    acme = people(world)["acme"]
    wanted = document.to_dict(org_policy(acme))
    wanted["teams"]["batch"]["name"] = "Batch jobs"
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    author = signed_in(people(world)["admin"])
    preview = author.get(url(draft, "preview/"), HTTP_HX_REQUEST="true").content.decode()
    assert "<strong>Stale:</strong>" in preview and "discard it" in preview
    assert "<html" not in preview  # htmx gets the section alone
    refused = author.post(url(draft, "-/submit/"))
    assert refused.status_code == 400 and "is stale" in refused.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_the_author_describes_and_discards_their_own_draft(world: World) -> None:
    draft = admin_draft(world)
    author = signed_in(people(world)["admin"])
    empty = author.post(url(draft, "-/describe/"), {"title": " ", "reason": "kept"})
    assert empty.status_code == 400
    text = empty.content.decode()
    assert "must not be empty" in text.split('id="describe-title"', 1)[1].split("</div>", 1)[0]
    assert ">kept</textarea>" in text
    assert not AuditEvent.objects.filter(action="change_set.describe").exists()
    other = signed_in(people(world)["owner"])
    assert "Discard change set" not in other.get(url(draft)).content.decode()
    assert other.post(url(draft, "-/discard/")).status_code == 403
    assert other.post(url(draft, "-/describe/"), {"title": "mine"}).status_code == 403
    discarded = author.post(url(draft, "-/discard/"))
    assert discarded.status_code == 302 and discarded["Location"] == LIST
    assert not ChangeSet.objects.filter(pk=draft.pk).exists()


def test_a_named_draft_keeps_its_name_through_later_edits(world: World) -> None:
    draft = admin_draft(world)
    assert draft.title == draft.plan[0]  # unnamed, it is called after its plan
    author = signed_in(people(world)["admin"])
    assert author.post(url(draft, "-/describe/"), {"title": "CI on gpt-5.5", "reason": "r"})
    admin = acting(people(world)["admin"])

    def batch_name(raw: Json) -> None:
        raw["teams"]["batch"]["name"] = "Batch jobs"

    again = change_set_draft_edit(actor=admin, organization=people(world)["acme"], edit=batch_name)
    assert again.pk == draft.pk and len(again.plan) == 2
    assert again.title == "CI on gpt-5.5"


def test_scheduling_a_publish(world: World) -> None:
    requiring_approval(world)
    draft = admin_draft(world)
    admin = signed_in(people(world)["admin"])
    past = admin.post(url(draft, "-/schedule/"), {"publish_at": "2001-01-01T10:00"})
    assert past.status_code == 400
    field = past.content.decode().split('id="schedule-at"', 1)[1].split("</div>", 1)[0]
    assert "is not in the future" in field and "2001-01-01T10:00" in past.content.decode()
    moment = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    later = admin.post(url(draft, "-/schedule/"), {"publish_at": moment.strftime("%Y-%m-%dT%H:%M")})
    assert later.status_code == 302
    draft.refresh_from_db()
    assert draft.publish_at == moment
    assert (
        f"Scheduled to publish at {moment:%Y-%m-%d %H:%M} UTC"
        in admin.get(url(draft)).content.decode()
    )
    cleared = admin.post(url(draft, "-/schedule/"), {"publish_at": "", "clear": "1"})
    assert cleared.status_code == 302
    draft.refresh_from_db()
    assert draft.publish_at is None


# --- who is offered what --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", Role.VIEWER])
def test_readers_are_offered_no_step_and_forged_steps_are_refused(world: World, role: str) -> None:
    requiring_approval(world)
    draft = admin_draft(world)
    client = signed_in(people(world)[role])
    page = client.get(url(draft)).content.decode()
    assert '<form method="post" action="/orgs/' not in page
    for step in ("describe", "submit", "discard", "approve", "reject", "schedule", "publish"):
        assert client.post(url(draft, f"-/{step}/"), {"reason": "x"}).status_code == 403, step
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_outsider_gets_404(world: World) -> None:
    client = signed_in(people(world)["outsider"])
    pk = world.ids["change_set"]
    for path in (LIST, f"/orgs/acme/changes/{pk}/", f"/orgs/acme/changes/{pk}/preview/"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/orgs/acme/changes/{pk}/-/submit/").status_code == 404


def test_missing_change_set_is_404(world: World) -> None:
    client = signed_in(people(world)["admin"])
    assert client.get("/orgs/acme/changes/999999/").status_code == 404
    assert client.post("/orgs/acme/changes/999999/-/submit/").status_code == 404


def test_a_step_takes_no_get(world: World) -> None:
    client = signed_in(people(world)["admin"])
    assert client.get(f"/orgs/acme/changes/{world.ids['change_set']}/-/submit/").status_code == 405


# --- the list -------------------------------------------------------------------------------------


def many_change_sets(world: World, count: int) -> list[ChangeSet]:
    acme = people(world)["acme"]
    return ChangeSet.objects.bulk_create(
        ChangeSet(
            organization=acme,
            author_label="someone@example.com",
            status="rejected" if index % 2 else "published",
            decision_reason="no" if index % 2 else "",
            title=f"change number {index:03d}",
            document="",
            base_digest="0" * 64,
        )
        for index in range(count)
    )


def test_list_newest_first_filtered_by_status_a_page_at_a_time(
    world: World, django_assert_max_num_queries: Any
) -> None:
    made = many_change_sets(world, 120)
    client = signed_in(people(world)["auditor"])
    with django_assert_max_num_queries(10):
        first = client.get(LIST).content.decode()
    assert first.index("change number 119") < first.index("change number 118")
    assert "change number 070" in first and "change number 069" not in first
    assert "Older change sets" in first
    with django_assert_max_num_queries(10):
        rejected = client.get(LIST + "?status=rejected").content.decode()
    assert "change number 119" in rejected and "change number 118" not in rejected
    assert "change number 021" in rejected and "change number 019" not in rejected
    after = rejected.split('href="?status=rejected&amp;after=', 1)[1].split('"', 1)[0]
    assert after == str(made[21].pk)
    with django_assert_max_num_queries(10):
        older = client.get(f"{LIST}?status=rejected&after={after}").content.decode()
    assert "change number 019" in older and "change number 001" in older
    assert "change number 021" not in older and "Older change sets" not in older
    empty = client.get(LIST + "?status=approved").content.decode()
    assert "No change set is approved" in empty


def test_empty_list_says_so(cast: dict[str, Any]) -> None:
    assert "No change sets yet" in signed_in(cast["admin"]).get(LIST).content.decode()


def test_detail_renders_at_a_fixed_query_count(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(people(world)["admin"])
    pk = world.ids["change_set"]
    with django_assert_max_num_queries(10):
        response = client.get(f"/orgs/acme/changes/{pk}/")
    assert response.status_code == 200
    assert f"/orgs/acme/changes/{pk}/preview/" in response.content.decode()


# --- the preview ----------------------------------------------------------------------------------


def test_the_preview_pages_through_teams_per_codex_version(
    world: World, django_assert_max_num_queries: Any
) -> None:
    add_teams(world, 25)

    def root_web_search(raw: Json) -> None:
        raw["config"]["web_search"] = "disabled"

    draft = admin_draft(world, root_web_search)
    client = signed_in(people(world)["viewer"])
    # 16: the first read of the live digest also keeps it (one read, one update).
    with django_assert_max_num_queries(16):
        first = client.get(url(draft, "preview/")).content.decode()
    # 28 teams in path order: batch, platform, platform/ci, t00 ... t24; platform/ci and batch
    # set web_search themselves, so they are not affected.
    assert "Team platform</h3>" in first and "Team t16</h3>" in first
    assert "Team t17</h3>" not in first and "Team batch</h3>" not in first
    assert '<option value="0.169.0"' in first and "Codex 0.169.0" in first
    nxt = first.split("Next teams", 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    with django_assert_max_num_queries(16):
        second = client.get(nxt.replace("&amp;", "&")).content.decode()
    assert "Team t17</h3>" in second and "Team t24</h3>" in second
    assert "Team t16</h3>" not in second and "Next teams" not in second
    assert "First teams" in second
    versioned = client.get(url(draft, "preview/?codex_version=0.169.0")).content.decode()
    assert '<option value="0.169.0" selected>' in versioned and "Team t00</h3>" in versioned


def test_no_preview_once_published(world: World) -> None:
    change_set = many_change_sets(world, 1)[0]
    client = signed_in(people(world)["admin"])
    page = client.get(url(change_set)).content.decode()
    assert 'id="preview"' not in page
    assert (
        "only a change set still on its way"
        in client.get(url(change_set, "preview/")).content.decode()
    )
