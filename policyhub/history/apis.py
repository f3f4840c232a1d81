"""The history API of one team: its policy, files and release as of any moment, and its
timeline of releases with the changes behind each.

    GET /api/v1/orgs/{slug}/teams/{path}/as-of?at=2026-03-01T12:00:00Z
    GET /api/v1/orgs/{slug}/teams/{path}/timeline

The team is named by its path now (a team deleted since: by its last path; `path_is=then`: by
its path at the moment). Reading the policy as of a moment needs `org.view`, like the policy
itself; the timeline lists who changed what (the audit trail), so it needs `audit.view`.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.permissions import Permission
from policyhub.apis import ERRORS, CursorPage
from policyhub.history import selectors
from policyhub.releases.models import Release
from policyhub.teams.models import Team
from providers.codex_versions import version_text

TAGS = ["history"]
PATH = OpenApiParameter(
    "path",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The team's slug path, e.g. platform/ci.",
)
RELEASE_STATES = ("current", "superseded", "aborted")


class AsOfQuery(serializers.Serializer[None]):
    at = serializers.DateTimeField(
        help_text="The moment, ISO 8601 (e.g. 2026-03-01T12:00:00Z; without an offset: UTC)."
    )
    path_is = serializers.ChoiceField(
        choices=[("now", "now"), ("then", "then")],
        default="now",
        help_text="Whether `path` is the team's path now (default; followed back through the "
        "moves since) or its path at the moment.",
    )


class IssueOut(serializers.Serializer[Any]):
    severity = serializers.ChoiceField(choices=["error", "warning"])
    path = serializers.CharField(help_text="The field, relative to `node`.")
    message = serializers.CharField()
    node = serializers.CharField(help_text="The node of the chain it was found at.")


class EffectiveOut(serializers.Serializer[Any]):
    requirements = serializers.DictField()
    config = serializers.DictField()
    profiles = serializers.DictField(child=serializers.DictField())
    mcp_servers = serializers.DictField(child=serializers.DictField())
    provenance = serializers.DictField(help_text="The node that set each effective value.")


class FileOut(serializers.Serializer[Any]):
    name = serializers.CharField()
    text = serializers.CharField()


class FileSetOut(serializers.Serializer[Any]):
    versions = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(allow_null=True)),
        help_text="[first, until] pairs of Codex versions (until excluded; null: no end).",
    )
    files = FileOut(many=True)


class ReleaseThenOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    url = serializers.CharField()
    revision = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    publish_run = serializers.IntegerField(allow_null=True, help_text="Null for a rollback.")
    rollout_percent = serializers.IntegerField(
        help_text="The share of the team's devices it reached then."
    )
    previous_revision = serializers.IntegerField(
        allow_null=True, help_text="Served the other devices while the rollout was partial."
    )


class TeamAsOfOut(serializers.Serializer[Any]):
    team = serializers.CharField(help_text="The path asked about.")
    at = serializers.DateTimeField()
    path_then = serializers.CharField()
    path_now = serializers.CharField(
        allow_null=True, help_text="Where the team is now; null when it was deleted since."
    )
    name = serializers.CharField(help_text="The team's name then.")
    chain = serializers.ListField(
        child=serializers.CharField(),
        help_text="The nodes it inherited from, the organisation first.",
    )
    codex_window = serializers.ListField(
        child=serializers.CharField(), help_text="The organisation's Codex support window then."
    )
    effective = EffectiveOut()
    findings = IssueOut(many=True, help_text="What validating the policy then finds today.")
    files = FileSetOut(
        many=True,
        help_text="The files the policy then renders to, per Codex version set (rendered now: "
        "`release` holds what the machines were sent).",
    )
    render_error = serializers.CharField(help_text="Why no files could be rendered, if so.")
    release = ReleaseThenOut(allow_null=True, help_text="The release in force then.")


def _release_out(request: Request, slug: str, then: selectors.ReleaseThen) -> dict[str, Any]:
    release = then.release
    return {
        "id": release.pk,
        "url": reverse("release", kwargs={"slug": slug, "pk": release.pk}, request=request),
        "revision": release.revision,
        "created_at": release.created_at,
        "publish_run": release.publish_run_id,
        "rollout_percent": then.rollout_percent,
        "previous_revision": then.previous.revision if then.previous else None,
    }


class TeamAsOfApi(OrgApiView):
    """A team's policy as it stood at a moment, replayed from the audit trail: its effective
    values (with the node that set each), the files it renders to for each Codex version set,
    and the release its machines were served then."""

    serializer_class = TeamAsOfOut

    @extend_schema(
        tags=TAGS,
        operation_id="team_as_of",
        parameters=[PATH, AsOfQuery],
        responses={200: TeamAsOfOut, **ERRORS},
    )
    def get(self, request: Request, slug: str, path: str) -> Response:
        query = AsOfQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        moment = query.validated_data["at"]
        found = selectors.team_as_of(
            self.organization,
            path,
            moment,
            path_is_then=query.validated_data["path_is"] == "then",
        )
        then, resolved = found.then, found.validation.resolved
        spec = then.policy.teams[then.path]
        data = {
            "team": path,
            "at": moment,
            "path_then": then.path,
            "path_now": then.path_now,
            "name": spec.name,
            "chain": [label for label, _ in then.policy.chain(then.path)],
            "codex_window": [then.policy.codex.min_version, then.policy.codex.max_version],
            "effective": {
                "requirements": resolved.requirements,
                "config": resolved.config,
                "profiles": resolved.profiles,
                "mcp_servers": resolved.mcp_servers,
                "provenance": resolved.provenance(),
            },
            "findings": [
                {
                    "severity": issue.severity,
                    "path": issue.path,
                    "message": issue.message,
                    "node": issue.node or "",
                }
                for issue in found.validation.issues
            ],
            "files": [
                {
                    "versions": [
                        [version_text(start), version_text(until) if until else None]
                        for start, until in variant.spans
                    ],
                    "files": [
                        {"name": name, "text": body.decode()}
                        for name, body in sorted(variant.team.files.items())
                    ],
                }
                for variant in found.variants
            ],
            "render_error": found.render_error,
            "release": _release_out(request, slug, found.release) if found.release else None,
        }
        return Response(TeamAsOfOut(data).data)


# --- the timeline ---------------------------------------------------------------------------


class ChangeOut(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The audit event's id.")
    at = serializers.DateTimeField(source="created_at")
    actor = serializers.CharField(source="actor_label")
    action = serializers.CharField(
        help_text="policy.create, policy.change, policy.delete or policy.move."
    )
    object_type = serializers.CharField()
    object_key = serializers.CharField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)
    reason = serializers.CharField()


class ChangeSetRefOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    title = serializers.CharField()
    author = serializers.CharField(source="author_label")
    status = serializers.CharField()


class TimelineEntryOut(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="release.pk")
    revision = serializers.IntegerField(source="release.revision")
    created_at = serializers.DateTimeField(source="release.created_at")
    state = serializers.SerializerMethodField()
    rollout_percent = serializers.IntegerField(source="release.rollout_percent")
    publish_run = serializers.IntegerField(
        source="release.publish_run_id", allow_null=True, help_text="Null for a rollback."
    )
    rollback_of = serializers.IntegerField(
        allow_null=True, help_text="For a rollback: the revision whose files it carries."
    )
    change_sets = serializers.SerializerMethodField()
    changes = ChangeOut(
        many=True,
        help_text="The policy changes behind the release, newest first: those recorded after "
        "the team's previous publish, about the organisation's own objects or a node of the "
        "team's chain.",
    )
    more_changes = serializers.BooleanField(
        source="more", help_text="Whether more changes lie behind it than listed here."
    )

    @extend_schema_field(serializers.ChoiceField(choices=RELEASE_STATES))
    def get_state(self, entry: selectors.ReleaseChanges) -> str:
        release = entry.release
        if release.aborted_at is not None:
            return "aborted"
        return "current" if release.current else "superseded"

    @extend_schema_field(ChangeSetRefOut(many=True))
    def get_change_sets(self, entry: selectors.ReleaseChanges) -> Any:
        """The change sets the publish run applied."""
        return ChangeSetRefOut(entry.release.change_sets.all(), many=True).data


class TimelinePage(CursorPage):
    ordering = "-revision"


class TeamTimelineApi(OrgApiView):
    """A team's releases, newest first, each with the publish run that made it, the change sets
    that run applied and the policy changes recorded since the team's previous publish."""

    required = {"GET": Permission.AUDIT_VIEW}
    doing = "read the audit trail"
    queryset = Release.objects.none()  # the model, for the schema
    serializer_class = TimelineEntryOut
    pagination_class = TimelinePage

    @extend_schema(
        tags=TAGS,
        operation_id="team_timeline",
        parameters=[PATH],
        responses={200: TimelineEntryOut(many=True), **ERRORS},
    )
    def get(self, request: Request, slug: str, path: str) -> Response:
        releases = selectors.team_releases(self.organization, path)
        page = self.paginate_queryset(releases)
        assert page is not None
        if not page and not Team.objects.filter(organization=self.organization, path=path).exists():
            raise Http404(f"no team {path} and no release of it")
        entries = selectors.timeline_changes(self.organization, path, page)
        return self.get_paginated_response(TimelineEntryOut(entries, many=True).data)
