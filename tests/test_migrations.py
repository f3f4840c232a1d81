"""The data the access migrations fill in for rows written before actors had kinds and labels:
who the rows name must follow from what the code of the time wrote."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.db import transaction
from django.utils import timezone

from policyhub.audit.models import AuditEvent
from policyhub.audit.services import audit_record
from policyhub.changes.models import ChangeSet
from tests.conftest import OPERATOR, acting, past_the_audit_guard, person, rewrite_events

pytestmark = [pytest.mark.django_db]


def backfill(module: str) -> Any:
    """A migration's module (their names start with digits, so not a plain import)."""
    return importlib.import_module(module)


def test_change_sets_name_their_authors_and_deciders(cast: dict[str, Any]) -> None:
    admin, acme, now = cast["admin"], cast["acme"], timezone.now()

    def change_set(**fields: Any) -> ChangeSet:
        fields.setdefault("author", admin)
        return ChangeSet.objects.create(organization=acme, document="", base_digest="0", **fields)

    reviewed = change_set(status="approved", decided_by=cast["owner"], decided_at=now)
    automatic = change_set(
        status="approved",
        decided_at=now,
        decision_reason="the organisation does not require approval",
    )
    orphan = change_set(author=None, status="draft")  # its author's account was deleted
    refused = change_set(status="rejected", decided_at=now, decision_reason="pending")
    ChangeSet.objects.filter(pk=refused.pk).update(
        decision_reason=f"change set {refused.pk} is stale: re-plan it"
    )
    gone_reviewer = change_set(status="rejected", decided_at=now, decision_reason="no")
    ChangeSet.objects.update(author_kind="", author_label="", decided_by_label="")

    backfill("policyhub.changes.migrations.0002_change_set_author_labels")._labels(apps, None)
    labels = {
        row.pk: (row.author_kind, row.author_label, row.decided_by_label)
        for row in ChangeSet.objects.all()
    }
    assert labels == {
        reviewed.pk: ("user", "admin@example.com", "owner@example.com"),
        automatic.pk: ("user", "admin@example.com", "system:approval-not-required"),
        orphan.pk: ("user", "(deleted account)", ""),
        refused.pk: ("user", "admin@example.com", "system:publish"),
        gone_reviewer.pk: ("user", "admin@example.com", "(deleted account)"),
    }


def test_audit_events_of_the_command_line_are_systems_and_of_gone_people_stay_users(
    cast: dict[str, Any],
) -> None:
    gone = person("gone")
    with transaction.atomic():
        system, theirs = (
            audit_record(
                organization_id=cast["acme"].pk,
                actor=actor,
                action="x",
                object_type="x",
                object_key="x",
            )
            for actor in (OPERATOR, acting(gone))
        )
    # As the rows of the time were: no kind, a command's label, and a person whose account was
    # deleted since (the link cleared, the name kept).
    rewrite_events(AuditEvent.objects.filter(pk=system.pk), actor_label="system")
    rewrite_events(AuditEvent.objects.filter(pk=theirs.pk), actor=None, actor_label="gone")
    rewrite_events(AuditEvent.objects.all(), actor_kind="user")

    with past_the_audit_guard():
        backfill("policyhub.audit.migrations.0004_auditevent_actor_kind")._kinds(apps, None)
    kinds = dict(AuditEvent.objects.values_list("pk", "actor_kind"))
    assert (kinds[system.pk], kinds[theirs.pk]) == ("system", "user")
