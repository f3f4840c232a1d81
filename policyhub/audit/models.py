"""The audit trail: one append-only row per change, written in the same transaction."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, F, Func, Q, TextField, When
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from policyhub.actors import LABEL_MAX_LENGTH, ActorKind


class KeyWord(Func):
    """The first or second space-separated word of an event's key."""

    output_field = TextField()

    def __init__(self, position: int) -> None:
        if position not in (1, 2):
            raise ValueError("the first or second word")
        self.position = position
        super().__init__(F("object_key"))

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[str | int, ...]]:
        # The position as a literal, not a parameter: an index expression is matched by its text.
        template = template or f"SPLIT_PART(%(expressions)s, ' ', {self.position})"
        return super().as_sql(compiler, connection, function, template, arg_joiner, **extra_context)

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple[str | int, ...]]:
        # SQLite has no SPLIT_PART (`make run` uses it): the same words by INSTR and SUBSTR. The
        # key is a column, so repeating it repeats no parameter.
        key = "%(expressions)s"
        if self.position == 2:
            key = f"SUBSTR({key}, INSTR({key}, ' ') + 1)"
        return self.as_sql(
            compiler, connection, template=f"SUBSTR({key}, 1, INSTR({key} || ' ', ' ') - 1)"
        )


# The team an event is about, read from its key as the services write it: "team <path> ..."
# for the policy's team objects and moves, "<path> r<revision>" for releases; NULL otherwise.
# Indexed as is, so "events about a team" is an index range at any size of the trail; filters
# must use this very expression for PostgreSQL to match the index.
ABOUT_TEAM = Case(
    When(object_type="team", then=KeyWord(2)),
    When(object_type="release", then=KeyWord(1)),
    output_field=TextField(),
)

# The actions of `policy_apply`'s plan lines (one event per created, changed or deleted object or
# key) and of `team_move`: what the policy's history is replayed from (audit.history).
POLICY_CHANGES = ("policy.create", "policy.change", "policy.delete")
POLICY_MOVE = "policy.move"


class AuditEvent(models.Model):
    """Who changed what, when, from what to what, and why."""

    # Every app writes events, so audit sits below the others and names its organisation by
    # label rather than by import (docs/architecture.md). PROTECT: an organisation with history stays.
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # PROTECT, as the organisation: the trail refuses UPDATE, so a person with history is
    # deactivated, not deleted (the label would survive, but SET NULL would rewrite the row).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A person (user), a person's API token, the server operator, a system job or a machine
    # (policyhub.actors); the label is kept even if the user is later removed.
    actor_kind = models.CharField(
        max_length=16, choices=[(k.value, k.value) for k in ActorKind], default=ActorKind.USER.value
    )
    actor_label = models.CharField(max_length=LABEL_MAX_LENGTH)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    # Text, not a bounded column: a team path alone may be 1,023 characters, plus label and key.
    object_key = models.TextField()
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # Set by `audit_record_many` before hashing (not auto_now_add, which would overwrite it).
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Where the change came from (audit.context): the client's address and the request id the
    # response carried; a task's id for work a job did; empty for commands.
    source_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # The chain (audit.chain): the event's position in its organisation's trail from 1, the
    # previous event's hash and its own.
    seq = models.PositiveBigIntegerField(editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["id"]
        # The audit page lists one organisation's events newest first, by id, filtered by one of
        # these; each index keeps a filter's page an index scan at a million events.
        constraints = [
            # One event per position: two writers that both read the same head cannot both land.
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_org_seq"),
        ]
        indexes = [
            models.Index(fields=["organization", "id"]),
            models.Index(fields=["organization", "object_type", "-id"], name="audit_org_type_id"),
            # One object's history (a change set's page shows its submission and decisions).
            models.Index(
                fields=["organization", "object_type", "object_key", "id"], name="audit_org_object"
            ),
            # Pattern ops: the actor filter matches labels by their beginning (a person's own
            # events and their API tokens'), which a plain index on a non-C collation cannot.
            models.Index(
                fields=["organization", "actor_label", "-id"],
                opclasses=["int8_ops", "varchar_pattern_ops", "int8_ops"],
                name="audit_org_actor_id",
            ),
            models.Index(F("organization"), ABOUT_TEAM, F("id").desc(), name="audit_org_team_id"),
            # Dates become id bounds through this (ids grow with time), then the id order serves.
            models.Index(fields=["organization", "created_at"], name="audit_org_created"),
            # History (audit.history): a team path's policy changes after a position of the
            # trail, without its releases' events, which share the path and outnumber them...
            models.Index(
                F("organization"),
                KeyWord(2),
                F("id"),
                condition=Q(object_type="team", action__in=POLICY_CHANGES),
                name="audit_org_team_policy",
            ),
            # ...and every move since then, which carries whole subtrees to other paths.
            models.Index(
                fields=["organization", "id"],
                condition=Q(action=POLICY_MOVE),
                name="audit_org_moves",
            ),
        ]

    def __str__(self) -> str:
        # An unsaved event's time is a default until `audit_record_many` sets it.
        when = f"{self.created_at:%Y-%m-%d %H:%M}" if self.pk else "(unsaved)"
        return f"{when} {self.actor_label} {self.action} {self.object_type} {self.object_key}"


class AuditChain(models.Model):
    """The head of one organisation's chain: how many events it holds and the last one's hash.
    Appending locks this row, so concurrent writers of one organisation take turns (for the
    length of their transaction) and each links to the event committed before it."""

    organization = models.OneToOneField(
        "accounts.Organization", primary_key=True, on_delete=models.PROTECT, related_name="+"
    )
    length = models.PositiveBigIntegerField(default=0)
    head = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.length} events, head {self.head[:12]}"
