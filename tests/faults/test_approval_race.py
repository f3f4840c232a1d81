"""An approval racing the author's new edit of the same change set, on PostgreSQL with each side
on a connection of its own: what is approved is exactly what the reviewer read, and the edit is
never lost (it is in the change set that gets reviewed, or in a new draft).

The races are lined up, not left to chance: the test holds the change set's row lock while both
sides start, so each waits for it in a known order (PostgreSQL grants a row's waiters in turn),
then lets go.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create, organization_settings_update
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import change_set_draft_edit, change_set_submit
from policyhub.policies.services import policy_apply
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy
from tests.faults.services import database_url_of, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

ORG = "/api/v1/orgs/acme"


def api_of(user: Any, organization: Any) -> APIClient:
    _, secret = api_token_create(
        actor=acting(user), organization=organization, name="t", role=Role.ADMIN
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def model_of(team: str, model: str) -> Callable[[Any], None]:
    """A browser edit: one team's model."""

    def edit(raw: Any) -> None:
        raw["teams"][team]["config"]["model"] = model

    return edit


@pytest.fixture
def acme(cast: dict[str, Any]) -> dict[str, Any]:
    policy_apply(organization=cast["acme"], wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    organization_settings_update(organization=cast["acme"], actor=OPERATOR, requires_approval=True)
    return cast


class Side(threading.Thread):
    """One side of the race, on its own thread and so its own database connection."""

    def __init__(self, act: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.act = act
        self.result: Any = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.result = self.act()
        except Exception as error:  # handed to the test, which reports it
            self.error = error
        finally:
            connection.close()


@contextmanager
def row_held(change_set_id: int) -> Iterator[Callable[[int], None]]:
    """Hold the change set's row lock on a connection of the test's own until the block ends;
    yields a function that waits until that many other sessions queue for a lock."""
    with psycopg.connect(database_url_of(connection.settings_dict)) as holder:
        holder.execute("SELECT 1 FROM changes_changeset WHERE id = %s FOR UPDATE", [change_set_id])

        def queued(count: int) -> None:
            def waiting() -> bool:
                with psycopg.connect(database_url_of(connection.settings_dict)) as probe:
                    row = probe.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    ).fetchone()
                return row is not None and row[0] == count

            wait_until(waiting, f"{count} session(s) waiting for the change set's lock", 10)

        yield queued
        holder.commit()


def test_an_approval_of_a_version_the_author_changed_since_is_refused_and_the_edit_kept(
    acme: dict[str, Any],
) -> None:
    author, reviewer = acme["admin"], acme["owner"]
    reviewer_api = api_of(reviewer, acme["acme"])
    draft = change_set_draft_edit(
        actor=acting(author),
        organization=acme["acme"],
        edit=model_of("batch", "openai.gpt-oss-20b"),
    )
    url = f"{ORG}/change-sets/{draft.pk}"
    read = reviewer_api.get(url)  # the reviewer looks at the draft
    assert read.json()["status"] == "draft"
    reviewed = read.json()["document"]
    # The author edits again, then submits while the reviewer approves what they read.
    change_set_draft_edit(
        actor=acting(author), organization=acme["acme"], edit=model_of("platform/ci", "gpt-5.5")
    )
    with row_held(draft.pk) as queued:
        submit = Side(lambda: change_set_submit(actor=acting(author), change_set=draft))
        submit.start()
        queued(1)
        approve = Side(
            lambda: reviewer_api.post(
                f"{url}/approve", {"reason": "read it"}, format="json", HTTP_IF_MATCH=read["ETag"]
            )
        )
        approve.start()
        queued(2)
    for side in (submit, approve):
        side.join(30)
        assert side.error is None, side.error

    # The approval was refused: the change set is not the one the reviewer read.
    assert approve.result.status_code == 412, approve.result.json()
    change_set = ChangeSet.objects.get(pk=draft.pk)
    assert change_set.status == "submitted"
    # Nothing lost: both of the author's edits are in it.
    assert 'model = "openai.gpt-oss-20b"' in change_set.document
    assert change_set.document != reviewed
    assert '[teams."platform/ci".config]\nmodel = "gpt-5.5"' in change_set.document

    # Read again, then approved: what is approved is what was read.
    again = reviewer_api.get(url)
    approved = reviewer_api.post(
        f"{url}/approve", {"reason": "read it"}, format="json", HTTP_IF_MATCH=again["ETag"]
    )
    assert approved.status_code == 200, approved.json()
    assert ChangeSet.objects.get(pk=draft.pk).document == again.json()["document"]


def test_an_edit_during_an_approval_goes_to_a_new_draft_and_the_read_version_is_approved(
    acme: dict[str, Any],
) -> None:
    author, reviewer = acme["admin"], acme["owner"]
    reviewer_api = api_of(reviewer, acme["acme"])
    draft = change_set_draft_edit(
        actor=acting(author),
        organization=acme["acme"],
        edit=model_of("batch", "openai.gpt-oss-20b"),
    )
    submitted = change_set_submit(actor=acting(author), change_set=draft)
    url = f"{ORG}/change-sets/{submitted.pk}"
    read = reviewer_api.get(url)
    reviewed = read.json()["document"]
    with row_held(submitted.pk) as queued:
        approve = Side(
            lambda: reviewer_api.post(
                f"{url}/approve", {"reason": "read it"}, format="json", HTTP_IF_MATCH=read["ETag"]
            )
        )
        approve.start()
        queued(1)
        # The author's next browser edit while the approval waits on the change set: it must
        # neither wait for the approval nor touch the change set under review.
        edit = Side(
            lambda: change_set_draft_edit(
                actor=acting(author),
                organization=acme["acme"],
                edit=model_of("platform/ci", "gpt-5.5"),
            )
        )
        edit.start()
        edit.join(10)
        assert not edit.is_alive(), "the edit waited for the approval of another change set"
        assert edit.error is None, edit.error
    approve.join(30)
    assert approve.error is None, approve.error

    assert approve.result.status_code == 200, approve.result.json()
    approved = ChangeSet.objects.get(pk=submitted.pk)
    assert (approved.status, approved.document) == ("approved", reviewed)
    new = ChangeSet.objects.get(pk=edit.result.pk)
    assert new.pk != approved.pk and new.status == "draft"
    assert '[teams."platform/ci".config]\nmodel = "gpt-5.5"' in new.document
