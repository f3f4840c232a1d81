"""The releases API: publish runs (start one, follow it), the signed releases they made (their
metadata, files and diffs), rollback, staged rollouts and signing keys.

Releases are immutable and their state moves only through actions that name a team (rollback,
rollout start, promote, abort); each runs under the organisation's lock in its service, which
refuses what no longer applies (promoting a rollout someone already ended), so none of them
takes If-Match. Lists are cursor-paginated and filtered in SQL; no list reads a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission
from policyhub.apis import ERRORS, MAX_INT, CursorPage
from policyhub.releases import selectors
from policyhub.releases.models import PublishRun, Release, SigningKey
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.revocation import signing_key_revoke
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)
from policyhub.releases.services.runs import publish_run_request
from policyhub.validators import plain_text
from providers.codex_versions import LEGACY_RELEASE_VERSION, Span, version_text

TAGS = ["releases"]
# A run's detail names this many of its releases; `releases_url` lists them all.
RUN_RELEASES_SHOWN = 100
TEAM_MAX_LENGTH = 1024
# A release is current, was replaced by a newer one, or was a rollout that was aborted.
RELEASE_STATES = ("current", "superseded", "aborted")
# How a file differs between two releases.
FILE_CHANGES = ("added", "removed", "changed", "unchanged")


def _spans_out(spans: list[Span]) -> list[list[str | None]]:
    return [[version_text(start), version_text(until) if until else None] for start, until in spans]


# --- publish runs ---------------------------------------------------------------------------


class ReleaseRefOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team_path")
    revision = serializers.IntegerField()


class PublishRunOut(serializers.Serializer[Any]):
    """A run as it stands; `context` holds the request and the organisation's slug."""

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=PublishRun.Status.choices)
    requested_by = serializers.CharField(source="requested_by_label")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField()
    teams = serializers.IntegerField(
        help_text="The organisation's teams when the run published (0 until it has succeeded)."
    )
    teams_rendered = serializers.IntegerField(
        help_text="Those it rendered: the others' inputs had not changed since their last render."
    )
    releases_created = serializers.IntegerField()
    error = serializers.SerializerMethodField()
    refusals = serializers.SerializerMethodField()
    releases_url = serializers.SerializerMethodField()

    def get_url(self, run: PublishRun) -> str:
        return _url(self.context, "publish-run", pk=run.pk)

    def get_error(self, run: PublishRun) -> str:
        """Why a failed run stored nothing."""
        return run.error if run.status == PublishRun.Status.FAILED else ""

    def get_refusals(self, run: PublishRun) -> list[str]:
        """The due change sets a succeeded run did not apply, each with the reason: the run
        records them in its error field and publishes the rest."""
        succeeded = run.status == PublishRun.Status.SUCCEEDED
        return run.error.splitlines() if succeeded else []

    def get_releases_url(self, run: PublishRun) -> str:
        return f"{_url(self.context, 'releases')}?publish_run={run.pk}"


class PublishRunDetailOut(PublishRunOut):
    releases = serializers.SerializerMethodField()

    @extend_schema_field(ReleaseRefOut(many=True))
    def get_releases(self, run: PublishRun) -> Any:
        """The first releases the run made, by team path (all of them at `releases_url`)."""
        return ReleaseRefOut(
            selectors.publish_run_releases(run, RUN_RELEASES_SHOWN), many=True
        ).data


def _url(context: Mapping[str, Any], name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs={"slug": context["slug"], **kwargs}, request=context["request"])


class PublishRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=PublishRun.Status.choices)


class PublishRunListApi(OrgApiView):
    """Every publish run, newest first; POST asks for a new one."""

    required = {"POST": Permission.PUBLISH}
    doing = "publish"
    queryset = PublishRun.objects.none()  # the model, for the schema
    serializer_class = PublishRunOut
    filterset_class = PublishRunFilter
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[PublishRun]:
        return selectors.publish_runs(self.organization)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "slug": self.organization.slug}

    @extend_schema(
        tags=TAGS,
        operation_id="publish_runs_list",
        responses={200: PublishRunOut(many=True), **ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="publish_runs_start",
        request=None,
        responses={
            202: OpenApiResponse(
                PublishRunOut, description="Queued for a worker; follow `url` (also in Location)."
            ),
            **ERRORS,
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        run = publish_run_request(actor=self.actor, organization=self.organization)
        data = self.get_serializer(run).data
        response = Response(data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = data["url"]
        return response


class PublishRunApi(OrgApiView):
    """One run: poll it until its status is succeeded or failed."""

    queryset = PublishRun.objects.none()  # the model, for the schema
    serializer_class = PublishRunDetailOut

    def get_queryset(self) -> QuerySet[PublishRun]:
        return selectors.publish_runs(self.organization)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "slug": self.organization.slug}

    @extend_schema(tags=TAGS, responses={200: PublishRunDetailOut, **ERRORS})
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(self.get_serializer(self.get_object()).data)


# --- releases -------------------------------------------------------------------------------


class ReleaseCodexSetOut(serializers.Serializer[Any]):
    versions = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(allow_null=True)),
        help_text="[first, until] pairs of Codex versions (until excluded; null: no end).",
    )
    native_channel_from = serializers.CharField(allow_null=True)
    window = serializers.ListField(
        child=serializers.CharField(), help_text="The support window the set was made for."
    )
    measured_until = serializers.CharField(
        allow_null=True,
        help_text="The newest Codex release measured when the set was made: later ones get "
        f"files made for it (null: made before this was recorded, when it was "
        f"{LEGACY_RELEASE_VERSION}).",
    )


def _state(release: Release) -> str:
    if release.aborted_at is not None:
        return "aborted"
    return "current" if release.current else "superseded"


class ReleaseOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team_path")
    revision = serializers.IntegerField()
    state = serializers.SerializerMethodField()
    current = serializers.BooleanField()
    rollout_percent = serializers.IntegerField(
        help_text="Below 100: the share of the team's devices served this release while the "
        "others keep the previous one."
    )
    previous_revision = serializers.IntegerField(source="previous.revision", allow_null=True)
    content_digest = serializers.CharField()
    signing_key_id = serializers.CharField(source="signing_key.key_id")
    publish_run = serializers.IntegerField(
        source="publish_run_id", allow_null=True, help_text="Null for a rollback."
    )
    created_at = serializers.DateTimeField()
    aborted_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.ChoiceField(choices=RELEASE_STATES))
    def get_state(self, release: Release) -> str:
        return _state(release)


class ReleaseDetailOut(ReleaseOut):
    codex_sets = serializers.SerializerMethodField()

    @extend_schema_field(ReleaseCodexSetOut(many=True))
    def get_codex_sets(self, release: Release) -> Any:
        """The Codex versions each file set serves, the release's own set first."""
        return ReleaseCodexSetOut(selectors.codex_sets(release), many=True).data


class RunIdFilter(django_filters.Filter):
    """An object's id: an integer (django-filter's NumberFilter would take 1.5)."""

    field_class = forms.IntegerField


class StrictBooleanField(forms.Field):
    """`true` or `false` (or 1 and 0): anything else is a 400, where Django's field would
    quietly read it as "either" and answer a list the client did not ask for."""

    widget = forms.TextInput  # the value as sent: the boolean widgets map unknown ones to None

    def to_python(self, value: Any) -> bool | None:
        text = str(value).lower() if value is not None else ""
        if text in ("", "true", "false", "1", "0"):
            return None if not text else text in ("true", "1")
        raise forms.ValidationError("must be true or false", code="invalid")


class StrictBooleanFilter(django_filters.Filter):
    field_class = StrictBooleanField


class ReleaseFilter(django_filters.FilterSet):
    team = django_filters.CharFilter(
        field_name="team_path",
        max_length=TEAM_MAX_LENGTH,
        validators=[plain_text],
        help_text="Only this team path (exact).",
    )
    current = StrictBooleanFilter(help_text="Only the current (or other) releases.")
    publish_run = RunIdFilter(
        field_name="publish_run",
        min_value=1,
        max_value=MAX_INT,
        help_text="Only the releases this publish run made.",
    )


class ReleaseListApi(OrgApiView):
    """Every stored release, newest first: metadata only."""

    queryset = Release.objects.none()  # the model, for the schema
    serializer_class = ReleaseOut
    filterset_class = ReleaseFilter
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[Release]:
        return selectors.release_list(self.organization)

    @extend_schema(tags=TAGS, responses={200: ReleaseOut(many=True), **ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


def _release(organization: Organization, release_id: int) -> Release:
    found = selectors.release_get(organization, release_id)
    if found is None:
        raise Http404("no such release")
    return found


class ReleaseApi(OrgApiView):
    serializer_class = ReleaseDetailOut

    @extend_schema(tags=TAGS, responses={200: ReleaseDetailOut, **ERRORS})
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(ReleaseDetailOut(_release(self.organization, pk)).data)


class ReleaseFileOut(serializers.Serializer[Any]):
    name = serializers.CharField()
    sha256 = serializers.CharField()
    text = serializers.CharField()


class ReleaseFileSetOut(ReleaseCodexSetOut):
    files = ReleaseFileOut(many=True)
    manifest = serializers.CharField(help_text="The canonical JSON that was signed.")
    signature = serializers.CharField(help_text="Base64 Ed25519 signature of the manifest.")


class ReleaseFilesOut(serializers.Serializer[Release]):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team_path")
    revision = serializers.IntegerField()
    signing_key_id = serializers.CharField(source="signing_key.key_id")
    sets = serializers.SerializerMethodField()

    @extend_schema_field(ReleaseFileSetOut(many=True))
    def get_sets(self, release: Release) -> Any:
        """Every file set, the release's own first, with the versions it serves."""
        return ReleaseFileSetOut(
            [
                {
                    **stored.codex,
                    "files": [
                        {"name": name, "sha256": stored.hashes[name], "text": text}
                        for name, text in sorted(stored.files.items())
                    ],
                    "manifest": stored.manifest,
                    "signature": stored.signature,
                }
                for stored in selectors.file_sets(release)
            ],
            many=True,
        ).data


class ReleaseFilesApi(OrgApiView):
    """Every file of every Codex version set of one release, as signed."""

    serializer_class = ReleaseFilesOut

    @extend_schema(tags=TAGS, responses={200: ReleaseFilesOut, **ERRORS})
    def get(self, request: Request, slug: str, pk: int) -> Response:
        release = selectors.release_with_files(self.organization, pk)
        if release is None:
            raise Http404("no such release")
        return Response(ReleaseFilesOut(release).data)


class ReleaseDiffQuery(serializers.Serializer[None]):
    team = serializers.CharField(max_length=TEAM_MAX_LENGTH, validators=[plain_text])
    to = serializers.IntegerField(min_value=1, max_value=MAX_INT)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # `from` is a Python keyword, so it cannot be declared as a class attribute.
        return {
            **super().get_fields(),
            "from": serializers.IntegerField(min_value=1, max_value=MAX_INT),
        }


class ReleaseFileDiffOut(serializers.Serializer[Any]):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=FILE_CHANGES)
    diff = serializers.CharField(help_text="Unified diff; empty when unchanged.")


class ReleaseVersionsDiffOut(serializers.Serializer[Any]):
    versions = serializers.SerializerMethodField()
    files = ReleaseFileDiffOut(many=True)

    @extend_schema_field(
        serializers.ListField(
            child=serializers.ListField(child=serializers.CharField(allow_null=True))
        )
    )
    def get_versions(self, diff: selectors.VersionsDiff) -> list[list[str | None]]:
        """The Codex versions whose files changed so: [first, until] pairs (until excluded)."""
        return _spans_out(diff.spans)


class ReleaseDiffOut(serializers.Serializer[dict[str, Any]]):
    team = serializers.CharField()
    from_revision = serializers.IntegerField()
    to_revision = serializers.IntegerField()
    versions = ReleaseVersionsDiffOut(many=True)


class ReleaseDiffApi(OrgApiView):
    """What changed between any two revisions of one team, per Codex versions and file."""

    serializer_class = ReleaseDiffOut

    @extend_schema(
        tags=TAGS, parameters=[ReleaseDiffQuery], responses={200: ReleaseDiffOut, **ERRORS}
    )
    def get(self, request: Request, slug: str) -> Response:
        query = ReleaseDiffQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        team, old, new = (query.validated_data[key] for key in ("team", "from", "to"))
        older, newer = (
            selectors.release_of_team_with_files(self.organization, team, revision)
            for revision in (old, new)
        )
        if older is None or newer is None:
            missing = old if older is None else new
            raise Http404(f"team {team} has no release r{missing}")
        diff = {
            "team": team,
            "from_revision": old,
            "to_revision": new,
            "versions": selectors.release_diff(older, newer),
        }
        return Response(ReleaseDiffOut(diff).data)


# --- rollback and rollouts ------------------------------------------------------------------


class ReleaseTeamIn(serializers.Serializer[None]):
    team = serializers.CharField(max_length=TEAM_MAX_LENGTH, validators=[plain_text])


class RollbackIn(ReleaseTeamIn):
    to_revision = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    reason = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, validators=[plain_text]
    )


class RolloutStartIn(ReleaseTeamIn):
    percent = serializers.IntegerField(min_value=1, max_value=100)


class RolloutPromoteIn(ReleaseTeamIn):
    percent = serializers.IntegerField(
        min_value=1,
        max_value=100,
        required=False,
        default=100,
        help_text="Widen the rollout to this share; 100 (the default) ends it.",
    )


def _given(serializer_class: type[serializers.Serializer[None]], request: Request) -> Any:
    given = serializer_class(data=request.data)
    given.is_valid(raise_exception=True)
    return given.validated_data


class ReleaseRollbackApi(OrgApiView):
    """A new current revision of the team with the content of an earlier one, signed afresh."""

    required = {"POST": Permission.RELEASE_MANAGE}
    doing = "roll teams back"
    serializer_class = RollbackIn

    @extend_schema(tags=TAGS, request=RollbackIn, responses={201: ReleaseDetailOut, **ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        given = _given(RollbackIn, request)
        release = release_rollback(
            organization=self.organization,
            team_path=given["team"],
            to_revision=given["to_revision"],
            actor=self.actor,
            reason=given["reason"],
        )
        return Response(
            ReleaseDetailOut(_release(self.organization, release.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class RolloutApi(OrgApiView):
    required = {"POST": Permission.RELEASE_MANAGE}
    doing = "manage staged rollouts"

    def _answer(self, release: Release) -> Response:
        """The team's current release after the action."""
        return Response(ReleaseDetailOut(_release(self.organization, release.pk)).data)


class RolloutStartApi(RolloutApi):
    """Serve the team's current release to a share of its devices (again: widen or narrow)."""

    serializer_class = RolloutStartIn

    @extend_schema(tags=TAGS, request=RolloutStartIn, responses={200: ReleaseDetailOut, **ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        given = _given(RolloutStartIn, request)
        return self._answer(
            release_rollout_start(
                organization=self.organization,
                team_path=given["team"],
                percent=given["percent"],
                actor=self.actor,
            )
        )


class RolloutPromoteApi(RolloutApi):
    """Widen the team's staged rollout, to every device unless `percent` says less."""

    serializer_class = RolloutPromoteIn

    @extend_schema(tags=TAGS, request=RolloutPromoteIn, responses={200: ReleaseDetailOut, **ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        given = _given(RolloutPromoteIn, request)
        return self._answer(
            release_rollout_promote(
                organization=self.organization,
                team_path=given["team"],
                percent=given["percent"],
                actor=self.actor,
            )
        )


class RolloutAbortApi(RolloutApi):
    """Serve the release the rollout replaced to every device again; answers that release."""

    serializer_class = ReleaseTeamIn

    @extend_schema(tags=TAGS, request=ReleaseTeamIn, responses={200: ReleaseDetailOut, **ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        given = _given(ReleaseTeamIn, request)
        return self._answer(
            release_rollout_abort(
                organization=self.organization, team_path=given["team"], actor=self.actor
            )
        )


# --- signing keys ---------------------------------------------------------------------------


# What the API reads of a key: never its private half, not even to leave it out.
SIGNING_KEY_SHOWN = (
    "id",
    "key_id",
    "public_key",
    "status",
    "created_at",
    "retired_at",
    "revoked_at",
    "revocation_reason",
    "endorsed_by",
    "endorsement",
)


class SigningKeyOut(serializers.Serializer[Any]):
    """A key's public half and state; the private half never leaves the server."""

    key_id = serializers.CharField()
    public_key = serializers.CharField(help_text="Base64 of the raw 32-byte Ed25519 key.")
    status = serializers.ChoiceField(choices=SigningKey.Status.choices)
    created_at = serializers.DateTimeField()
    retired_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(
        allow_null=True, help_text="When the key was revoked: it is trusted for nothing since."
    )
    revocation_reason = serializers.CharField(help_text="Why it was revoked (empty if not).")
    endorsed_by = serializers.CharField(
        source="endorsed_by.key_id",
        allow_null=True,
        help_text="The key that signed this one when it was made: the key it replaced, or after "
        "the active key was revoked the newest retired key (null: no key vouched for it).",
    )
    endorsement = serializers.CharField(
        help_text="That key's signature over this key's id and public half."
    )


class SigningKeyFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SigningKey.Status.choices)


class SigningKeyListApi(OrgApiView):
    """The organisation's signing keys: the active one first, then those it replaced (retired
    keys verify what they signed; revoked keys are trusted for nothing)."""

    queryset = SigningKey.objects.none()  # the model, for the schema
    serializer_class = SigningKeyOut
    filterset_class = SigningKeyFilter
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[SigningKey]:
        return (
            selectors.signing_keys(self.organization)
            .select_related("endorsed_by")
            .only(*SIGNING_KEY_SHOWN, "endorsed_by__key_id")
        )

    @extend_schema(
        tags=TAGS,
        operation_id="signing_keys_list",
        responses={200: SigningKeyOut(many=True), **ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class SigningKeyRotateApi(OrgApiView):
    """A new active key; the previous one is retired and keeps verifying what it signed."""

    required = {"POST": Permission.SIGNING_KEY_ROTATE}
    doing = "rotate the organisation's signing key"
    serializer_class = SigningKeyOut

    @extend_schema(tags=TAGS, request=None, responses={201: SigningKeyOut, **ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        key = signing_key_rotate(actor=self.actor, organization=self.organization)
        return Response(SigningKeyOut(key).data, status=status.HTTP_201_CREATED)


class SigningKeyRevokeIn(serializers.Serializer[None]):
    reason = serializers.CharField(
        max_length=2000,
        validators=[plain_text],
        help_text="Why the key is revoked (recorded with the revocation).",
    )


class SigningKeyRevocationOut(serializers.Serializer[Any]):
    revoked = SigningKeyOut()
    active = SigningKeyOut(help_text="The key that signs from now on (new if `rotated`).")
    rotated = serializers.BooleanField(
        help_text="The revoked key was the active one, so a new active key was made first."
    )
    reenrolment_needed = serializers.BooleanField(
        help_text="No retired key was left to endorse the new active key: every machine must "
        "be enrolled again before it applies another release."
    )
    teams_to_resign = serializers.IntegerField(
        help_text="Teams that were served a release signed by a revoked key: each gets a new "
        "revision with the same files, signed by the active key, from a worker."
    )


class SigningKeyRevokeApi(OrgApiView):
    """Revoke a compromised key: machines stop trusting it, and every release a team is served
    that it signed is signed again by the active key. Revoking the active key makes a new one
    first, endorsed by the newest retired key that is not revoked (never by the revoked key)."""

    required = {"POST": Permission.SIGNING_KEY_REVOKE}
    doing = "revoke the organisation's signing keys"
    serializer_class = SigningKeyRevokeIn

    @extend_schema(
        tags=TAGS,
        request=SigningKeyRevokeIn,
        responses={200: SigningKeyRevocationOut, **ERRORS},
    )
    def post(self, request: Request, slug: str, key_id: str) -> Response:
        if selectors.signing_key_of(self.organization, key_id) is None:
            raise Http404("no such signing key")
        given = _given(SigningKeyRevokeIn, request)
        revocation = signing_key_revoke(
            actor=self.actor,
            organization=self.organization,
            key_id=key_id,
            reason=given["reason"],
        )
        return Response(
            SigningKeyRevocationOut(
                {
                    "revoked": revocation.revoked,
                    "active": revocation.active,
                    "rotated": revocation.rotated,
                    "reenrolment_needed": revocation.reenrolment_needed,
                    "teams_to_resign": revocation.teams_to_resign,
                }
            ).data
        )
