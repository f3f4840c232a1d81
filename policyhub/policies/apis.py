"""The policy API, one object at a time: provider endpoints, the team tree, each node's
requirements, config defaults, profiles and MCP servers, and the Codex support window.

Every write edits the organisation's policy document and applies it through `policy_apply`, the
one write path of policy data: the same validation, field paths, permissions (a team editor's
subtree), approval rule and audit events as a whole document. Field paths in refusals are the
document's (`providers.azure.resource_url`, `teams.platform.requirements...`). Each object's
ETag is the digest of what GET shows; a write re-reads it under the organisation's lock and
answers 412 when it moved on (428 when the client sent no If-Match).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission
from policyhub.accounts.selectors import organization_lock
from policyhub.apis import (
    ERRORS,
    IF_MATCH,
    WRITE_ERRORS,
    CursorPage,
    etag_of,
    require_if_match,
    with_etag,
)
from policyhub.policies import document
from policyhub.policies.domain import Json
from policyhub.policies.models import PolicyNode, ProviderEndpoint
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply, team_move
from policyhub.teams.models import Team
from policyhub.validators import plain_text
from providers import KINDS

TAGS = ["policy"]
# The provider kinds an endpoint can be (one choice set in the schema).
KIND_CHOICES = [(name, kind.label) for name, kind in KINDS.items()]
# Keys of an endpoint's document entry that are not its kind-specific settings.
ENDPOINT_KEYS = ("kind", "provider_id", "capabilities")


REASON = OpenApiParameter(
    "reason",
    str,
    OpenApiParameter.QUERY,
    required=False,
    description="Why (kept in the audit trail).",
)


class ReasonIn(serializers.Serializer[None]):
    reason = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, validators=[plain_text]
    )


def _reason(request: Request) -> str:
    given = ReasonIn(data=request.query_params)
    given.is_valid(raise_exception=True)
    return str(given.validated_data["reason"])


def _apply(view: OrgApiView, organization: Organization, change: Callable[[Json], None]) -> None:
    """Apply one edit of the organisation's policy document (call under its lock); refusals
    name document paths (`teams.platform/ci.config.model`)."""
    raw = document.to_dict(org_policy(organization))
    change(raw)
    with document.in_document_paths():
        policy_apply(
            organization=organization,
            wanted=document.from_dict(raw),
            actor=view.actor,
            reason=_reason(view.request),
        )


def _edit(
    view: OrgApiView, shown: Callable[[], Any] | None, change: Callable[[Json], None]
) -> None:
    """Apply one edit if the client saw the current `shown()` (None: a new object, which has
    no version to name). Under the organisation's lock, which every policy write takes, so of
    two clients sending the same ETag the second finds the object changed and gets 412."""
    with transaction.atomic():
        organization = organization_lock(view.organization.pk)
        if shown is not None:
            require_if_match(view.request, etag_of(shown()))
        _apply(view, organization, change)


class ByName(CursorPage):
    ordering = "name"


class ByPath(CursorPage):
    ordering = "path"


# --- provider endpoints -------------------------------------------------------------------------


class EndpointOut(serializers.ModelSerializer[ProviderEndpoint]):
    class Meta:
        model = ProviderEndpoint
        fields = [
            "name",
            "kind",
            "provider_id",
            "settings",
            "capabilities",
            "version",
            "updated_at",
        ]


class EndpointIn(serializers.Serializer[None]):
    kind = serializers.ChoiceField(choices=KIND_CHOICES)
    # Defaults to the kind's own provider id.
    provider_id = serializers.CharField(max_length=63, required=False, validators=[plain_text])
    settings = serializers.DictField(required=False, default=dict)
    capabilities = serializers.DictField(
        child=serializers.BooleanField(), required=False, default=dict
    )

    def validate_settings(self, value: Json) -> Json:
        clash = sorted(set(value) & set(ENDPOINT_KEYS))
        if clash:
            raise serializers.ValidationError(
                f"may not set {', '.join(clash)} (fields of their own)"
            )
        return value


class EndpointCreateIn(EndpointIn):
    name = serializers.CharField(max_length=63, validators=[plain_text])


def _endpoint_entry(given: Json) -> Json:
    """An endpoint as its document entry (`[providers.NAME]`)."""
    entry: Json = {"kind": given["kind"], **given["settings"]}
    if "provider_id" in given:
        entry["provider_id"] = given["provider_id"]
    if given["capabilities"]:
        entry["capabilities"] = given["capabilities"]
    return entry


class EndpointListApi(OrgApiView):
    """The organisation's provider endpoints (direct OpenAI, Azure, Bedrock, OCI, gateways)."""

    required = {"POST": Permission.POLICY_EDIT}
    doing = "change provider endpoints"
    serializer_class = EndpointOut
    queryset = ProviderEndpoint.objects.none()  # the model, for the schema
    pagination_class = ByName

    def get_queryset(self) -> QuerySet[ProviderEndpoint]:
        return ProviderEndpoint.objects.filter(organization=self.organization)

    @extend_schema(tags=TAGS, responses={200: EndpointOut(many=True), **ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(EndpointOut(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        request=EndpointCreateIn,
        parameters=[REASON],
        responses={201: EndpointOut, **ERRORS},
    )
    def post(self, request: Request, slug: str) -> Response:
        given = EndpointCreateIn(data=request.data)
        given.is_valid(raise_exception=True)
        name = given.validated_data["name"]

        def add(raw: Json) -> None:
            if name in raw.get("providers", {}):
                raise serializers.ValidationError({"name": [f"endpoint {name!r} exists"]})
            raw.setdefault("providers", {})[name] = _endpoint_entry(given.validated_data)

        _edit(self, None, add)
        return with_etag(EndpointOut(self.get_queryset().get(name=name)).data, 201)


class EndpointApi(OrgApiView):
    required = {"PUT": Permission.POLICY_EDIT, "DELETE": Permission.POLICY_EDIT}
    doing = "change provider endpoints"
    serializer_class = EndpointOut

    def _shown(self, name: str) -> Json:
        found = ProviderEndpoint.objects.filter(organization=self.organization, name=name).first()
        if found is None:
            raise Http404("no such endpoint")
        return dict(EndpointOut(found).data)

    @extend_schema(tags=TAGS, responses={200: EndpointOut, **ERRORS})
    def get(self, request: Request, slug: str, name: str) -> Response:
        return with_etag(self._shown(name))

    @extend_schema(
        tags=TAGS,
        request=EndpointIn,
        parameters=[IF_MATCH, REASON],
        responses={200: EndpointOut, **WRITE_ERRORS},
    )
    def put(self, request: Request, slug: str, name: str) -> Response:
        given = EndpointIn(data=request.data)
        given.is_valid(raise_exception=True)

        def replace(raw: Json) -> None:
            raw["providers"][name] = _endpoint_entry(given.validated_data)

        _edit(self, lambda: self._shown(name), replace)
        return with_etag(self._shown(name))

    @extend_schema(tags=TAGS, parameters=[IF_MATCH, REASON], responses={204: None, **WRITE_ERRORS})
    def delete(self, request: Request, slug: str, name: str) -> Response:
        _edit(self, lambda: self._shown(name), lambda raw: raw["providers"].pop(name))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- teams --------------------------------------------------------------------------------------


class TeamOut(serializers.ModelSerializer[Team]):
    # DRF takes declared fields off the class, so this does not hide Field.parent.
    parent = serializers.CharField(  # type: ignore[assignment]
        source="parent.path", allow_null=True, default=None
    )

    class Meta:
        model = Team
        fields = ["id", "path", "slug", "name", "parent", "created_at"]


class TeamFilter(django_filters.FilterSet):
    path = django_filters.CharFilter(field_name="path", max_length=1024)
    parent = django_filters.CharFilter(
        field_name="parent__path", max_length=1024, help_text="Children of this team."
    )
    top = django_filters.BooleanFilter(
        field_name="parent", lookup_expr="isnull", help_text="Only top-level teams."
    )
    under = django_filters.CharFilter(
        method="filter_under", max_length=1024, help_text="The subtree below this team path."
    )
    q = django_filters.CharFilter(
        method="filter_q", max_length=200, help_text="Part of the path or name."
    )

    class Meta:
        model = Team
        fields: list[str] = []

    def filter_under(self, queryset: QuerySet[Team], name: str, value: str) -> QuerySet[Team]:
        return queryset.filter(path__startswith=f"{value}/")

    def filter_q(self, queryset: QuerySet[Team], name: str, value: str) -> QuerySet[Team]:
        return queryset.filter(Q(path__icontains=value) | Q(name__icontains=value))


class TeamCreateIn(serializers.Serializer[None]):
    slug = serializers.CharField(max_length=63, validators=[plain_text])
    name = serializers.CharField(max_length=200, required=False, validators=[plain_text])
    parent = serializers.CharField(  # type: ignore[assignment]
        max_length=1024, required=False, allow_null=True, default=None, validators=[plain_text]
    )


class TeamChangeIn(serializers.Serializer[None]):
    name = serializers.CharField(max_length=200, required=False, validators=[plain_text])
    # Another team's path to move under, or null for the top level.
    parent = serializers.CharField(  # type: ignore[assignment]
        max_length=1024, required=False, allow_null=True, validators=[plain_text]
    )


class TeamListApi(OrgApiView):
    """The team tree, by path; 10,000 teams page by page."""

    required = {"POST": Permission.POLICY_EDIT}
    doing = "change teams"
    serializer_class = TeamOut
    queryset = Team.objects.none()  # the model, for the schema
    filterset_class = TeamFilter
    pagination_class = ByPath

    def get_queryset(self) -> QuerySet[Team]:
        return Team.objects.filter(organization=self.organization).select_related("parent")

    @extend_schema(tags=TAGS, responses={200: TeamOut(many=True), **ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(TeamOut(page, many=True).data)

    @extend_schema(
        tags=TAGS, request=TeamCreateIn, parameters=[REASON], responses={201: TeamOut, **ERRORS}
    )
    def post(self, request: Request, slug: str) -> Response:
        given = TeamCreateIn(data=request.data)
        given.is_valid(raise_exception=True)
        parent, team_slug = given.validated_data["parent"], given.validated_data["slug"]
        path = f"{parent}/{team_slug}" if parent else team_slug

        def add(raw: Json) -> None:
            teams = raw.setdefault("teams", {})
            if parent and parent not in teams:
                raise serializers.ValidationError({"parent": [f"no team {parent!r}"]})
            if path in teams:
                raise serializers.ValidationError({"slug": [f"team {path!r} exists"]})
            teams[path] = {"name": given.validated_data.get("name", team_slug)}

        _edit(self, None, add)
        return with_etag(TeamOut(self.get_queryset().get(path=path)).data, 201)


class TeamApi(OrgApiView):
    required = {"PATCH": Permission.POLICY_EDIT, "DELETE": Permission.POLICY_EDIT}
    doing = "change teams"
    serializer_class = TeamOut

    def _team(self, pk: int) -> Team:
        found = (
            Team.objects.filter(organization=self.organization, pk=pk)
            .select_related("parent")
            .first()
        )
        if found is None:
            raise Http404("no such team")
        return found

    @extend_schema(tags=TAGS, responses={200: TeamOut, **ERRORS})
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return with_etag(TeamOut(self._team(pk)).data)

    @extend_schema(
        tags=TAGS,
        request=TeamChangeIn,
        parameters=[IF_MATCH, REASON],
        responses={200: TeamOut, **WRITE_ERRORS},
        description="Rename (`name`) or move (`parent`: a team path, or null for the top level).",
    )
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        given = TeamChangeIn(data=request.data)
        given.is_valid(raise_exception=True)
        with transaction.atomic():
            organization = organization_lock(self.organization.pk)
            team = self._team(pk)
            require_if_match(request, etag_of(TeamOut(team).data))
            if "name" in given.validated_data:
                name = given.validated_data["name"]
                _apply(self, organization, lambda raw: raw["teams"][team.path].update(name=name))
            if "parent" in given.validated_data:
                team_move(
                    team=self._team(pk),
                    parent_path=given.validated_data["parent"],
                    actor=self.actor,
                    reason=_reason(request),
                )
        return with_etag(TeamOut(self._team(pk)).data)

    @extend_schema(
        tags=TAGS,
        parameters=[IF_MATCH, REASON],
        responses={204: None, **WRITE_ERRORS},
        description="Delete the team with its subtree (refused while devices are enrolled there).",
    )
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        team = self._team(pk)

        def remove(raw: Json) -> None:
            teams = raw.get("teams", {})
            for path in [p for p in teams if p == team.path or p.startswith(f"{team.path}/")]:
                del teams[path]

        _edit(self, lambda: TeamOut(self._team(pk)).data, remove)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- policy nodes -------------------------------------------------------------------------------


class NodeOut(serializers.Serializer[Any]):
    team = serializers.CharField(allow_null=True, help_text="null for the organisation's own node")
    requirements = serializers.DictField()
    config = serializers.DictField()
    profiles = serializers.DictField(child=serializers.DictField())
    mcp_servers = serializers.DictField(child=serializers.DictField())


class NodeIn(serializers.Serializer[None]):
    requirements = serializers.DictField()
    config = serializers.DictField()
    profiles = serializers.DictField(child=serializers.DictField())
    mcp_servers = serializers.DictField(child=serializers.DictField())


def _node_shown(team: Team | None, organization_id: int) -> Json:
    node = (
        PolicyNode.objects.filter(organization_id=organization_id, team=team)
        .prefetch_related("profiles", "mcp_servers")
        .first()
    )
    return {
        "team": team.path if team is not None else None,
        "requirements": node.requirements if node else {},
        "config": node.config if node else {},
        "profiles": {p.name: p.settings for p in node.profiles.all()} if node else {},
        "mcp_servers": {m.name: m.definition for m in node.mcp_servers.all()} if node else {},
    }


_NODE_READ = extend_schema(tags=TAGS, responses={200: NodeOut, **ERRORS})
_NODE_WRITE = extend_schema(
    tags=TAGS,
    request=NodeIn,
    parameters=[IF_MATCH, REASON],
    responses={200: NodeOut, **WRITE_ERRORS},
)


@extend_schema_view(get=_NODE_READ, put=_NODE_WRITE, patch=_NODE_WRITE)
class RootNodeApi(OrgApiView):
    """What the organisation itself sets, for every team: GET shows the node's four sections,
    PUT replaces all four, PATCH those it names."""

    required = {"PUT": Permission.POLICY_EDIT, "PATCH": Permission.POLICY_EDIT}
    doing = "change the policy"
    serializer_class = NodeOut

    def _team(self, kwargs: dict[str, Any]) -> Team | None:
        return None

    def _write(self, request: Request, kwargs: dict[str, Any], partial: bool) -> Response:
        given = NodeIn(data=request.data, partial=partial)
        given.is_valid(raise_exception=True)
        team = self._team(kwargs)

        def replace(raw: Json) -> None:
            table = raw if team is None else raw["teams"][team.path]
            for section, value in given.validated_data.items():
                if value:
                    table[section] = value
                else:
                    table.pop(section, None)

        _edit(self, lambda: _node_shown(team, self.organization.pk), replace)
        return with_etag(_node_shown(team, self.organization.pk))

    def get(self, request: Request, **kwargs: Any) -> Response:
        return with_etag(_node_shown(self._team(kwargs), self.organization.pk))

    def put(self, request: Request, **kwargs: Any) -> Response:
        return self._write(request, kwargs, partial=False)

    def patch(self, request: Request, **kwargs: Any) -> Response:
        return self._write(request, kwargs, partial=True)


@extend_schema_view(get=_NODE_READ, put=_NODE_WRITE, patch=_NODE_WRITE)
class TeamNodeApi(RootNodeApi):
    """What one team sets, on top of its ancestors."""

    def _team(self, kwargs: dict[str, Any]) -> Team | None:
        found = Team.objects.filter(organization=self.organization, pk=kwargs["pk"]).first()
        if found is None:
            raise Http404("no such team")
        return found


# --- the Codex support window -------------------------------------------------------------------


class CodexWindowOut(serializers.Serializer[Any]):
    min_version = serializers.CharField(max_length=32, validators=[plain_text])
    max_version = serializers.CharField(max_length=32, validators=[plain_text])
    accept_unenforced = serializers.ListField(
        child=serializers.CharField(max_length=200, validators=[plain_text]),
        max_length=1000,
        required=False,
        default=list,
    )
    managed_pins = serializers.ListField(
        child=serializers.CharField(max_length=200, validators=[plain_text]),
        max_length=1000,
        required=False,
        default=list,
    )


def _window_shown(stored: Json) -> Json:
    window = document.codex_window(stored)
    return {
        "min_version": window.min_version,
        "max_version": window.max_version,
        "accept_unenforced": list(window.accept_unenforced),
        "managed_pins": list(window.managed_pins),
    }


class CodexWindowApi(OrgApiView):
    """The Codex releases the organisation's machines run: every file is validated for each."""

    required = {"PUT": Permission.POLICY_EDIT}
    doing = "change the Codex support window"
    serializer_class = CodexWindowOut

    def _shown(self) -> Json:
        # Read again: under a write's lock, the window as it is now.
        organization = Organization.objects.get(pk=self.organization.pk)
        return _window_shown(organization.codex_window)

    @extend_schema(tags=TAGS, responses={200: CodexWindowOut, **ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        return with_etag(self._shown())

    @extend_schema(
        tags=TAGS,
        request=CodexWindowOut,
        parameters=[IF_MATCH, REASON],
        responses={200: CodexWindowOut, **WRITE_ERRORS},
    )
    def put(self, request: Request, slug: str) -> Response:
        given = CodexWindowOut(data=request.data)
        given.is_valid(raise_exception=True)

        def replace(raw: Json) -> None:
            raw["codex"] = {k: v for k, v in given.validated_data.items() if v}

        _edit(self, self._shown, replace)
        return with_etag(self._shown())
