"""The API of the policy document (export, plan, apply) and of change sets (list, propose, read
with plan and rendered diff, submit, approve, reject, schedule).

Refusals name the document's own field paths (`providers.azure.resource_url`,
`teams.platform/ci.config.model`), and `document` for text that is not TOML at all. Applying a
document names, in If-Match, the export it was edited from: a document edited from an export
that another write has overtaken gets 412 instead of undoing that write. A change set's ETag is
the digest of what its GET shows; approving it and moving its publish time name it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.permissions import Permission
from policyhub.accounts.selectors import organization_lock
from policyhub.apis import (
    ERRORS,
    IF_MATCH,
    WRITE_ERRORS,
    CursorPage,
    ErrorOut,
    etag_of,
    require_if_match,
    with_etag,
)
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import (
    WAITING,
    PolicyExport,
    change_set_diff,
    change_set_get,
    change_set_list,
    change_set_locked,
    live_policy_digest,
    policy_document_parse,
    policy_export,
    policy_plan_report,
)
from policyhub.changes.services import (
    change_set_approve,
    change_set_create,
    change_set_reject,
    change_set_schedule,
    change_set_submit,
)
from policyhub.errors import ApplicationError
from policyhub.policies import document, limits
from policyhub.policies.services import policy_apply
from policyhub.validators import plain_text
from providers.base import Issue
from providers.codex_versions import parse_version

POLICY_TAGS = ["policy document"]
CHANGE_SET_TAGS = ["change sets"]
TOO_LARGE = {413: OpenApiResponse(ErrorOut, description="The body is too large.")}
# Teams rendered for one page of a diff (each twice: live and proposed).
DIFF_PAGE_SIZE = 50
DIFF_MAX_PAGE_SIZE = 200


def _text(max_length: int, **kwargs: Any) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, validators=[plain_text], **kwargs)


def _reason(*, required: bool = False) -> serializers.CharField:
    if required:
        return _text(2000, help_text="Why (kept in the audit trail).")
    return _text(2000, required=False, default="", allow_blank=True, help_text="Why.")


# --- the policy document ------------------------------------------------------------------------


class PolicyDocumentOut(serializers.Serializer[PolicyExport]):
    document = serializers.CharField(source="text", help_text="The whole policy as TOML.")
    digest = serializers.CharField(help_text="sha256 of the document (a change set's base).")


class PolicyDocumentIn(serializers.Serializer[None]):
    document = _text(limits.DOCUMENT_CHARS, help_text="A whole policy document (TOML).")


class PolicyApplyIn(PolicyDocumentIn):
    reason = _reason()


class PolicyChangeOut(serializers.Serializer[document.Change]):
    action = serializers.ChoiceField(choices=["create", "change", "delete"])
    object = serializers.CharField(help_text='What changes: "team platform/ci", "provider x".')
    key = serializers.CharField(help_text='The key changed ("config.model"); empty for objects.')
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)
    text = serializers.CharField(source="__str__", help_text="The change as one line.")


class PolicyIssueOut(serializers.Serializer[Issue]):
    severity = serializers.ChoiceField(choices=["error", "warning"])
    path = serializers.CharField(help_text="The field path in the document.")
    message = serializers.CharField()
    node = serializers.CharField(
        help_text="The node whose effective policy it concerns (a team path, or the "
        "organisation's own); empty where the path says it all."
    )


class PolicyPlanOut(serializers.Serializer[Any]):
    changes = PolicyChangeOut(many=True)
    # DRF takes declared fields off the class, so this does not hide Serializer.errors.
    errors = PolicyIssueOut(  # type: ignore[assignment]
        many=True, help_text="What an apply or a submit would refuse for."
    )
    warnings = PolicyIssueOut(many=True)


class PolicyAppliedOut(serializers.Serializer[Any]):
    changes = PolicyChangeOut(many=True, help_text="The plan that was applied (empty: no change).")
    digest = serializers.CharField(help_text="sha256 of the live policy's document now.")


def _export_shown(export: PolicyExport) -> dict[str, Any]:
    return dict(PolicyDocumentOut(export).data)


class PolicyDocumentApi(OrgApiView):
    """The whole live policy as one document, with the ETag an apply names."""

    doing = "read the policy"
    serializer_class = PolicyDocumentOut

    @extend_schema(
        operation_id="policy_document_export",
        responses={200: PolicyDocumentOut, **ERRORS},
        tags=POLICY_TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        return with_etag(_export_shown(policy_export(self.organization)))


class PolicyPlanApi(OrgApiView):
    """What a document would change and what would stop it. It writes nothing, so whoever may
    read the policy may plan: a reviewer or an auditor can check a proposal before anyone
    applies it, and learns nothing the export does not show."""

    max_body_bytes = "DOCUMENT_BODY_MAX_BYTES"

    required = {"POST": Permission.ORG_VIEW}
    doing = "plan a policy"
    serializer_class = PolicyDocumentIn

    @extend_schema(
        operation_id="policy_document_plan",
        request=PolicyDocumentIn,
        responses={200: PolicyPlanOut, **ERRORS, **TOO_LARGE},
        tags=POLICY_TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        given = PolicyDocumentIn(data=request.data)
        given.is_valid(raise_exception=True)
        with document.in_document_paths():
            wanted = policy_document_parse(self.organization, given.validated_data["document"])
        report = policy_plan_report(self.organization, wanted)
        shown = {
            "changes": report.changes,
            "errors": [document.document_path(issue) for issue in report.errors],
            "warnings": [document.document_path(issue) for issue in report.warnings],
        }
        return Response(PolicyPlanOut(shown).data)


class PolicyApplyApi(OrgApiView):
    """Make the live policy equal the document, if it is still the policy the document was
    edited from (If-Match: the export's ETag). An organisation that requires approval takes
    change sets instead."""

    max_body_bytes = "DOCUMENT_BODY_MAX_BYTES"

    required = {"POST": Permission.POLICY_EDIT}
    doing = "change the policy"
    serializer_class = PolicyApplyIn

    @extend_schema(
        operation_id="policy_document_apply",
        request=PolicyApplyIn,
        responses={200: PolicyAppliedOut, **WRITE_ERRORS, **TOO_LARGE},
        parameters=[IF_MATCH],
        tags=POLICY_TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        given = PolicyApplyIn(data=request.data)
        given.is_valid(raise_exception=True)
        with transaction.atomic(), document.in_document_paths():
            # The lock every policy write takes: the export compared is the one written over.
            organization = organization_lock(self.organization.pk)
            require_if_match(request, etag_of(_export_shown(policy_export(organization))))
            changes = policy_apply(
                organization=organization,
                wanted=policy_document_parse(organization, given.validated_data["document"]),
                actor=self.actor,
                reason=given.validated_data["reason"],
            )
            organization.refresh_from_db()  # the apply may have renamed it or moved its window
            digest = policy_export(organization).digest
        return Response(PolicyAppliedOut({"changes": changes, "digest": digest}).data)


# --- change sets --------------------------------------------------------------------------------


class ChangeSetFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=ChangeSet.Status.choices, help_text="Only change sets in this state."
    )

    class Meta:
        model = ChangeSet
        fields = ["status"]


# What a list shows of each change set: its document and plan stay unread.
SUMMARY_FIELDS = [
    "id",
    "status",
    "title",
    "author",
    "created_at",
    "submitted_at",
    "publish_at",
    "decided_by",
    "decided_at",
    "published_at",
]
SUMMARY_COLUMNS = [
    {"author": "author_label", "decided_by": "decided_by_label"}.get(name, name)
    for name in SUMMARY_FIELDS
]


class ChangeSetSummaryOut(serializers.ModelSerializer[ChangeSet]):
    author = serializers.CharField(source="author_label", help_text="Who wrote it.")
    decided_by = serializers.CharField(
        source="decided_by_label", help_text="Who approved or rejected it (empty: nobody yet)."
    )

    class Meta:
        model = ChangeSet
        fields = SUMMARY_FIELDS


class ChangeSetOut(ChangeSetSummaryOut):
    stale = serializers.SerializerMethodField()
    published_run = serializers.IntegerField(
        source="published_run_id", allow_null=True, read_only=True
    )

    class Meta:
        model = ChangeSet
        fields = [
            *SUMMARY_FIELDS,
            "author_kind",
            "reason",
            "document",
            "base_digest",
            "stale",
            "decision_reason",
            "updated_at",
            "published_run",
        ]

    @extend_schema_field(
        serializers.BooleanField(
            allow_null=True,
            help_text="Whether the live policy changed since it was planned (a publish would "
            "refuse it); null once published or rejected.",
        )
    )
    def get_stale(self, change_set: ChangeSet) -> bool | None:
        live = self.context.get("live_digest")
        return None if live is None else bool(live != change_set.base_digest)


def _change_set_shown(change_set: ChangeSet) -> dict[str, Any]:
    """The detail representation, whose digest is the change set's ETag."""
    waiting = change_set.status in WAITING
    live = live_policy_digest(change_set.organization) if waiting else None
    return dict(ChangeSetOut(change_set, context={"live_digest": live}).data)


def _locked_as_read(
    view: OrgApiView, request: Request, pk: int, *, any_version: bool = True
) -> ChangeSet:
    """The change set, locked until the caller's transaction ends, once its If-Match names what
    its GET shows now (`*` too, where `any_version`): compared under the lock, so no edit or
    submit slips in between the comparison and the caller's write."""
    locked = change_set_locked(view.organization, pk)
    if locked is None:
        raise Http404("no such change set")
    require_if_match(request, etag_of(_change_set_shown(locked)), any_version=any_version)
    return locked


def _change_set(view: OrgApiView, pk: int) -> ChangeSet:
    found = change_set_get(pk, organization=view.organization)
    if found is None:
        raise Http404("no such change set")
    return found


class ChangeSetIn(PolicyDocumentIn):
    title = _text(
        200, required=False, default="", allow_blank=True, help_text="Default: the plan, shortened."
    )
    reason = _reason()
    publish_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Publish on its own at this time once approved (takes the publish permission).",
    )
    submit = serializers.BooleanField(
        required=False, default=False, help_text="Submit it at once (else it stays a draft)."
    )


class ChangeSetsApi(ListModelMixin, OrgApiView):
    """The organisation's change sets, newest first; proposing one."""

    max_body_bytes = "DOCUMENT_BODY_MAX_BYTES"

    required = {"POST": Permission.POLICY_EDIT}
    doing = "propose policy changes"
    serializer_class = ChangeSetSummaryOut
    pagination_class = CursorPage
    filterset_class = ChangeSetFilter

    def get_queryset(self) -> QuerySet[ChangeSet]:
        if getattr(self, "swagger_fake_view", False):  # the schema, described without a request
            return ChangeSet.objects.none()
        return change_set_list(self.organization).only(*SUMMARY_COLUMNS)

    @extend_schema(
        operation_id="change_sets_list",
        responses={200: ChangeSetSummaryOut(many=True), **ERRORS},
        tags=CHANGE_SET_TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        operation_id="change_set_create",
        request=ChangeSetIn,
        responses={201: ChangeSetOut, **ERRORS, **TOO_LARGE},
        tags=CHANGE_SET_TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        """A draft planned against the live policy, submitted at once with `submit`. All or
        nothing: a submit that is refused leaves no draft behind."""
        given = ChangeSetIn(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        with transaction.atomic(), document.in_document_paths():
            change_set = change_set_create(
                actor=self.actor,
                organization=self.organization,
                document_text=data["document"],
                reason=data["reason"],
                title=data["title"],
                publish_at=data["publish_at"],
            )
            if data["submit"]:
                change_set = change_set_submit(actor=self.actor, change_set=change_set)
        response = with_etag(_change_set_shown(change_set), status.HTTP_201_CREATED)
        response["Location"] = reverse("change-set", kwargs={"slug": slug, "pk": change_set.pk})
        return response


class ChangeSetApi(OrgApiView):
    """One change set, with the ETag that moving its publish time names."""

    doing = "read change sets"
    serializer_class = ChangeSetOut

    @extend_schema(
        operation_id="change_set_get", responses={200: ChangeSetOut, **ERRORS}, tags=CHANGE_SET_TAGS
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return with_etag(_change_set_shown(_change_set(self, pk)))


class ChangeSetPlanOut(serializers.Serializer[ChangeSet]):
    plan = serializers.ListField(
        child=serializers.CharField(), help_text="One line per change, as planned at creation."
    )


class ChangeSetPlanApi(OrgApiView):
    """The plan lines recorded when the change set was made (its diff is against today)."""

    doing = "read change sets"
    serializer_class = ChangeSetPlanOut

    @extend_schema(
        operation_id="change_set_plan",
        responses={200: ChangeSetPlanOut, **ERRORS},
        tags=CHANGE_SET_TAGS,
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(ChangeSetPlanOut(_change_set(self, pk)).data)


class ChangeSetDiffQuery(serializers.Serializer[None]):
    team = _text(1024, required=False, help_text="Only this team (its slug path).")
    codex_version = serializers.RegexField(
        r"^\d{1,4}\.\d{1,4}\.\d{1,4}$",
        max_length=14,
        required=False,
        help_text="The files this Codex version would receive (default: the checks of the "
        "whole window, and the files of its newest version).",
    )
    after = _text(
        1024, required=False, help_text="The last team of the previous page (`next` sets it)."
    )
    page_size = serializers.IntegerField(
        min_value=1,
        max_value=DIFF_MAX_PAGE_SIZE,
        default=DIFF_PAGE_SIZE,
        help_text="How many teams to look at (a page lists only those affected).",
    )


class ChangeSetFileDiffOut(serializers.Serializer[Any]):
    name = serializers.CharField(help_text="The file, as Codex reads it.")
    diff = serializers.CharField(help_text="Unified diff from the live to the proposed file.")


class ChangeSetTeamDiffOut(serializers.Serializer[Any]):
    team = serializers.CharField(source="path")
    files = ChangeSetFileDiffOut(many=True)
    # DRF takes declared fields off the class, so this does not hide Serializer.errors.
    errors = PolicyIssueOut(  # type: ignore[assignment]
        many=True, help_text="Why the proposed policy cannot be rendered for this team."
    )


class ChangeSetDiffOut(serializers.Serializer[Any]):
    stale = serializers.BooleanField()
    codex_version = serializers.CharField(allow_null=True)
    next = serializers.URLField(allow_null=True, help_text="The next page (null: the last).")
    results = ChangeSetTeamDiffOut(many=True)


class ChangeSetDiffApi(OrgApiView):
    """The files each affected team would receive, as diffs from what it receives now.

    Teams come a page at a time (`page_size` teams looked at, in path order, each rendered
    live and proposed): rendering is the cost, and an organisation of ten thousand teams
    cannot be rendered in one request. A page lists only the teams whose files differ, so it
    can be short, or empty, with a `next` page still to come."""

    doing = "read change sets"
    serializer_class = ChangeSetDiffOut

    @extend_schema(
        operation_id="change_set_diff",
        parameters=[ChangeSetDiffQuery],
        responses={200: ChangeSetDiffOut, **ERRORS},
        tags=CHANGE_SET_TAGS,
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        query = ChangeSetDiffQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        given = query.validated_data
        change_set = _change_set(self, pk)
        if change_set.status not in WAITING:
            raise ApplicationError(
                f"change set {change_set.pk} is {change_set.status}: only a waiting one has a "
                "diff from the live policy",
                [Issue("error", "status", f"is {change_set.status}")],
            )
        version = given.get("codex_version")
        page = change_set_diff(
            change_set,
            team=given.get("team"),
            codex_version=parse_version(version) if version else None,
            after=given.get("after"),
            limit=given["page_size"],
        )
        url = request.build_absolute_uri()
        shown = {
            "stale": page.stale,
            "codex_version": version,
            "next": replace_query_param(url, "after", page.last) if page.last else None,
            "results": [
                replace(team, errors=[document.document_path(issue) for issue in team.errors])
                for team in page.teams
            ],
        }
        return Response(ChangeSetDiffOut(shown).data)


# --- change set actions -------------------------------------------------------------------------


class ChangeSetSubmitIn(serializers.Serializer[None]):
    publish_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Publish on its own at this time once approved (takes the publish permission).",
    )


class ChangeSetApproveIn(serializers.Serializer[None]):
    reason = _reason()


class ChangeSetRejectIn(serializers.Serializer[None]):
    reason = _reason(required=True)


class ChangeSetScheduleIn(serializers.Serializer[None]):
    publish_at = serializers.DateTimeField(
        allow_null=True, help_text="When it goes out on its own; null: with the next publish."
    )


def _acted(change_set: ChangeSet) -> Response:
    return with_etag(_change_set_shown(change_set))


class ChangeSetSubmitApi(OrgApiView):
    """Validate a draft and put it up for review (approved at once where no approval is
    required)."""

    required = {"POST": Permission.POLICY_EDIT}
    doing = "submit policy changes"
    serializer_class = ChangeSetSubmitIn

    @extend_schema(
        operation_id="change_set_submit",
        request=ChangeSetSubmitIn,
        responses={200: ChangeSetOut, **ERRORS},
        tags=CHANGE_SET_TAGS,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        given = ChangeSetSubmitIn(data=request.data)
        given.is_valid(raise_exception=True)
        with document.in_document_paths():
            change_set = change_set_submit(
                actor=self.actor,
                change_set=_change_set(self, pk),
                publish_at=given.validated_data["publish_at"],
            )
        return _acted(change_set)


class _ChangeSetDecisionApi(OrgApiView):
    """A reviewer's decision on a submitted change set, with its reason (rejections; an
    approval also names the version read: ChangeSetApproveApi)."""

    required = {"POST": Permission.CHANGE_SET_REVIEW}
    decide: ClassVar[Callable[..., ChangeSet]]

    def post(self, request: Request, slug: str, pk: int) -> Response:
        given = self.get_serializer(data=request.data)
        given.is_valid(raise_exception=True)
        change_set = self.decide(
            actor=self.actor,
            change_set=_change_set(self, pk),
            reason=given.validated_data["reason"],
        )
        return _acted(change_set)


def _decision_schema(name: str, request: type[serializers.Serializer[None]]) -> Any:
    return extend_schema_view(
        post=extend_schema(
            operation_id=f"change_set_{name}",
            request=request,
            responses={200: ChangeSetOut, **ERRORS},
            tags=CHANGE_SET_TAGS,
        )
    )


class ChangeSetApproveApi(OrgApiView):
    """Approve someone else's submitted change set: the next publish (or its publish time)
    applies it. The approval names the version its reviewer read (If-Match): a reviewer who
    read a draft its author has edited since, or submitted, learns of it (412) instead of
    approving content nobody reviewed. (A rejection needs none: it publishes nothing.)"""

    required = {"POST": Permission.CHANGE_SET_REVIEW}
    doing = "approve change sets"
    serializer_class = ChangeSetApproveIn

    @extend_schema(
        operation_id="change_set_approve",
        request=ChangeSetApproveIn,
        responses={200: ChangeSetOut, **WRITE_ERRORS},
        parameters=[IF_MATCH],
        tags=CHANGE_SET_TAGS,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        given = ChangeSetApproveIn(data=request.data)
        given.is_valid(raise_exception=True)
        with transaction.atomic():
            # Not `*`: an approval says which version its reviewer read.
            locked = _locked_as_read(self, request, pk, any_version=False)
            change_set = change_set_approve(
                actor=self.actor, change_set=locked, reason=given.validated_data["reason"]
            )
        return _acted(change_set)


@_decision_schema("reject", ChangeSetRejectIn)
class ChangeSetRejectApi(_ChangeSetDecisionApi):
    """Send a submitted change set back, saying why."""

    doing = "reject change sets"
    serializer_class = ChangeSetRejectIn
    decide = staticmethod(change_set_reject)


class ChangeSetScheduleApi(OrgApiView):
    """Set, move or clear when a waiting change set goes out. It edits the change set in
    place, so it names the version read (If-Match): of two people moving the time at once,
    the second learns of the first instead of silently overriding it."""

    required = {"POST": Permission.PUBLISH}
    doing = "schedule a publish"
    serializer_class = ChangeSetScheduleIn

    @extend_schema(
        operation_id="change_set_schedule",
        request=ChangeSetScheduleIn,
        responses={200: ChangeSetOut, **WRITE_ERRORS},
        parameters=[IF_MATCH],
        tags=CHANGE_SET_TAGS,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        given = ChangeSetScheduleIn(data=request.data)
        given.is_valid(raise_exception=True)
        with transaction.atomic():
            locked = _locked_as_read(self, request, pk)
            change_set = change_set_schedule(
                actor=self.actor, change_set=locked, publish_at=given.validated_data["publish_at"]
            )
        return _acted(change_set)
