"""The admin API of the fleet: status per team and per device, moving and revoking devices,
enrolment tokens, and each release's receipts (which devices fetched and applied it). Lists are
pages filtered in SQL (a fleet has 100,000 machines); members (auditors among them) read,
`fleet.manage` writes, and anyone else learns nothing (404)."""

from __future__ import annotations

import uuid
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.permissions import Permission
from policyhub.apis import ERRORS, MAX_INT, CursorPage
from policyhub.fleet import selectors, services
from policyhub.fleet.models import Device, DeviceReceipt, EnrollmentToken
from policyhub.teams.models import Team
from policyhub.validators import duration_parse, plain_text
from providers.codex_versions import NEWEST_MEASURED, version_text

TAGS = ["fleet"]
TEAM_HELP = "A team's path (`platform/ci`)."


def _choices(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, name) for name in names]


def _subtree(field: str, path: str) -> Q:
    """The team at `path` and every team below it."""
    return Q(**{field: path}) | Q(**{f"{field}__startswith": f"{path}/"})


# --- devices ------------------------------------------------------------------------------------


class DeviceOut(serializers.Serializer[Device]):
    """A device from `selectors.device_states`: what it should have, has, and last said."""

    id = serializers.UUIDField()
    team = serializers.CharField(source="team.path")
    hostname = serializers.CharField()
    state = serializers.ChoiceField(choices=_choices(selectors.DEVICE_STATES))
    expected_revision = serializers.IntegerField(allow_null=True)
    # What the agent reported writing, or for a Codex-only machine what it was served.
    applied_revision = serializers.IntegerField(source="applied", allow_null=True)
    revision_served = serializers.IntegerField(allow_null=True)
    last_activity = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    last_channel = serializers.CharField()
    reported_at = serializers.DateTimeField(allow_null=True)
    codex_version = serializers.CharField()
    # Against the organisation's Codex support window.
    codex_window = serializers.ChoiceField(choices=_choices(selectors.WINDOW_STATES))
    codex_unmeasured = serializers.BooleanField(
        help_text="The reported Codex is newer than the newest release PolicyHub has measured: "
        "its files were made for that release."
    )
    os = serializers.CharField()
    agent_version = serializers.CharField()
    # DRF takes declared fields off the class, so this does not hide Serializer.errors.
    errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
    enrolled_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class DeviceFilter(django_filters.FilterSet):
    team = django_filters.CharFilter(
        field_name="team__path", max_length=1024, validators=[plain_text], help_text=TEAM_HELP
    )
    team_subtree = django_filters.CharFilter(
        method="in_subtree",
        max_length=1024,
        validators=[plain_text],
        help_text="A team's path: its devices and those of every team below it.",
    )
    state = django_filters.ChoiceFilter(field_name="state", choices=_choices(selectors.STATES))
    codex_window = django_filters.ChoiceFilter(
        method="in_window",
        choices=_choices((*selectors.WINDOW_STATES, selectors.OUTSIDE, selectors.UNMEASURED)),
        help_text="Where the reported Codex lies against the support window; "
        "`outside` is below or above; `unmeasured` is newer than the newest measured release.",
    )
    hostname = django_filters.CharFilter(
        field_name="hostname", max_length=255, validators=[plain_text]
    )

    class Meta:
        model = Device
        fields: list[str] = []

    def in_subtree(self, found: QuerySet[Device], name: str, value: str) -> QuerySet[Device]:
        return found.filter(_subtree("team__path", value))

    def in_window(
        self, found: QuerySet[selectors.StatedDevice], name: str, value: str
    ) -> QuerySet[selectors.StatedDevice]:
        return selectors.in_codex_window(found, value)


class DevicePage(CursorPage):
    # The newest enrolments first (an index of unrevoked devices by organisation).
    # The id breaks ties, so the order is total. DRF takes a tuple; the base names a string.
    ordering = ("-enrolled_at", "-id")  # type: ignore[assignment]


class FleetDevicesApi(ListModelMixin, OrgApiView):
    """Every enrolled device with what it should have, was served, applied and reported."""

    serializer_class = DeviceOut
    pagination_class = DevicePage
    filterset_class = DeviceFilter

    def get_queryset(self) -> QuerySet[Device]:
        if getattr(self, "swagger_fake_view", False):  # the schema's generator has no request
            return Device.objects.none()
        return selectors.device_states(self.organization)

    @extend_schema(
        operation_id="fleet_devices_list", tags=TAGS, responses={200: DeviceOut, **ERRORS}
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list(request)


def _device(view: OrgApiView, device_id: uuid.UUID) -> Device:
    found = selectors.device_get(view.organization, device_id)
    if found is None:
        raise Http404("no such device")
    return found


class DeviceApi(OrgApiView):
    """One device, revoked or not."""

    serializer_class = DeviceOut

    @extend_schema(operation_id="device_get", tags=TAGS, responses={200: DeviceOut, **ERRORS})
    def get(self, request: Request, slug: str, device_id: uuid.UUID) -> Response:
        return Response(DeviceOut(_device(self, device_id)).data)


class ReasonIn(serializers.Serializer[None]):
    reason = serializers.CharField(
        max_length=2000, allow_blank=True, required=False, default="", validators=[plain_text]
    )


class MoveIn(ReasonIn):
    team = serializers.CharField(max_length=1024, validators=[plain_text], help_text=TEAM_HELP)


class DeviceRevokeApi(OrgApiView):
    """Both channels refuse the device's credential from now on."""

    required = {"POST": Permission.FLEET_MANAGE}
    doing = "revoke devices"
    serializer_class = ReasonIn

    @extend_schema(
        operation_id="device_revoke", tags=TAGS, request=ReasonIn, responses={204: None, **ERRORS}
    )
    def post(self, request: Request, slug: str, device_id: uuid.UUID) -> Response:
        device = _device(self, device_id)
        data = ReasonIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.device_revoke(device=device, actor=self.actor, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceMoveApi(OrgApiView):
    """Serve the device another team's release from its next fetch on."""

    required = {"POST": Permission.FLEET_MANAGE}
    doing = "move devices"
    serializer_class = MoveIn

    @extend_schema(
        operation_id="device_move", tags=TAGS, request=MoveIn, responses={200: DeviceOut, **ERRORS}
    )
    def post(self, request: Request, slug: str, device_id: uuid.UUID) -> Response:
        device = _device(self, device_id)
        data = MoveIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.device_move(
            device=device,
            team_path=data.validated_data["team"],
            actor=self.actor,
            reason=data.validated_data["reason"],
        )
        return Response(DeviceOut(_device(self, device_id)).data)


# --- per team -----------------------------------------------------------------------------------


class StateCountsOut(serializers.Serializer[Any]):
    current = serializers.IntegerField()
    behind = serializers.IntegerField()
    failing = serializers.IntegerField()
    stale = serializers.IntegerField()
    pending = serializers.IntegerField()


class RolloutOut(serializers.Serializer[Any]):
    revision = serializers.IntegerField()
    percent = serializers.IntegerField()
    devices_targeted = serializers.IntegerField(help_text="Devices inside the rollout.")
    devices_applied = serializers.IntegerField(
        help_text="Devices inside the rollout that applied its revision."
    )


class TeamFleetOut(serializers.Serializer[Any]):
    team = serializers.CharField(source="team_path")
    revision = serializers.IntegerField(allow_null=True, help_text="Of the current release.")
    total = serializers.IntegerField()
    counts = StateCountsOut()
    rollout = RolloutOut(allow_null=True, help_text="While a staged rollout runs.")


class TeamFleetFilter(django_filters.FilterSet):
    team = django_filters.CharFilter(
        field_name="path", max_length=1024, validators=[plain_text], help_text=TEAM_HELP
    )
    team_subtree = django_filters.CharFilter(
        method="in_subtree",
        max_length=1024,
        validators=[plain_text],
        help_text="A team's path: it and every team below it.",
    )

    class Meta:
        model = Team
        fields: list[str] = []

    def in_subtree(self, found: QuerySet[Team], name: str, value: str) -> QuerySet[Team]:
        return found.filter(_subtree("path", value))


class TeamPage(CursorPage):
    ordering = "path"


class FleetTeamsApi(ListModelMixin, OrgApiView):
    """Per team with a release or a device: devices current, behind, failing, stale or
    pending, and the progress of a staged rollout."""

    serializer_class = TeamFleetOut
    pagination_class = TeamPage
    filterset_class = TeamFleetFilter

    def get_queryset(self) -> QuerySet[Team]:
        if getattr(self, "swagger_fake_view", False):
            return Team.objects.none()
        return selectors.fleet_teams(self.organization)

    @extend_schema(
        operation_id="fleet_teams_list", tags=TAGS, responses={200: TeamFleetOut, **ERRORS}
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        teams = self.paginate_queryset(self.filter_queryset(self.get_queryset())) or []
        shown = selectors.team_fleet(self.organization, teams)
        return self.get_paginated_response(TeamFleetOut(shown, many=True).data)


# --- Codex versions -----------------------------------------------------------------------------


class WindowOut(serializers.Serializer[Any]):
    min_version = serializers.CharField()
    max_version = serializers.CharField()


class CodexVersionOut(serializers.Serializer[Any]):
    version = serializers.CharField(help_text='As reported; "" for devices that never said.')
    devices = serializers.IntegerField()
    window = serializers.ChoiceField(choices=_choices(selectors.WINDOW_STATES))
    unmeasured = serializers.BooleanField(
        help_text="Newer than the newest measured release: files made for that release."
    )


class CodexVersionsOut(serializers.Serializer[Any]):
    window = WindowOut()
    newest_measured = serializers.CharField(
        help_text="The newest Codex release PolicyHub has measured; later ones get its files."
    )
    versions = CodexVersionOut(many=True)
    devices_outside = serializers.IntegerField(help_text="Below or above the window.")
    devices_unmeasured = serializers.IntegerField(
        help_text="On a Codex newer than the newest measured release."
    )


class FleetCodexVersionsApi(OrgApiView):
    """The Codex versions the fleet runs, newest first, against the organisation's support
    window (one row per distinct version: a fleet runs a few dozen)."""

    serializer_class = CodexVersionsOut

    @extend_schema(
        operation_id="fleet_codex_versions", tags=TAGS, responses={200: CodexVersionsOut, **ERRORS}
    )
    def get(self, request: Request, slug: str) -> Response:
        seen = selectors.codex_versions_seen(self.organization)
        low, high = selectors.window_of(self.organization)
        outside = sum(s.devices for s in seen if s.window in ("below", "above"))
        answer = {
            "window": {"min_version": version_text(low), "max_version": version_text(high)},
            "newest_measured": version_text(NEWEST_MEASURED),
            "versions": seen,
            "devices_outside": outside,
            "devices_unmeasured": sum(s.devices for s in seen if s.unmeasured),
        }
        return Response(CodexVersionsOut(answer).data)


# --- release receipts ---------------------------------------------------------------------------


class ReceiptOut(serializers.Serializer[DeviceReceipt]):
    """What one device did with the release."""

    id = serializers.IntegerField()
    device_id = serializers.UUIDField()
    hostname = serializers.CharField(source="device.hostname")
    team = serializers.CharField(source="device.team.path", help_text="The device's team now.")
    first_fetched_at = serializers.DateTimeField(
        allow_null=True, help_text="Null until the device's first fetch of it is written."
    )
    first_channel = serializers.ChoiceField(
        choices=[("", ""), *Device.Channel.choices], help_text="The channel of that first fetch."
    )
    last_fetched_at = serializers.DateTimeField(allow_null=True)
    applied_at = serializers.DateTimeField(
        allow_null=True, help_text="The agent's first status report that it applied it."
    )
    reported_at = serializers.DateTimeField(
        allow_null=True, help_text="The last status report while the device was served it."
    )
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.CharField(), help_text="The errors of that report."
    )


class ReceiptFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        method="in_state",
        choices=_choices(selectors.RECEIPT_STATES),
        help_text="fetched: fetched, not reported applied; applied: the agent reported it "
        "applied; errors: the last report while served it carried errors.",
    )

    class Meta:
        model = DeviceReceipt
        fields: list[str] = []

    def in_state(
        self, found: QuerySet[DeviceReceipt], name: str, value: str
    ) -> QuerySet[DeviceReceipt]:
        return selectors.receipts_in_state(found, value)


class ReleaseReceiptsApi(ListModelMixin, OrgApiView):
    """Which devices fetched and which applied one release, and when: newest receipts first."""

    serializer_class = ReceiptOut
    pagination_class = CursorPage
    filterset_class = ReceiptFilter

    def get_queryset(self) -> QuerySet[DeviceReceipt]:
        if getattr(self, "swagger_fake_view", False):
            return DeviceReceipt.objects.none()
        release = selectors.receipts_release(self.organization, self.kwargs["pk"])
        if release is None:
            raise Http404("no such release")
        return selectors.release_receipts(self.organization, release.pk)

    @extend_schema(
        operation_id="release_receipts_list", tags=TAGS, responses={200: ReceiptOut, **ERRORS}
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list(request)


# --- enrolment tokens ---------------------------------------------------------------------------


class TokenOut(serializers.ModelSerializer[EnrollmentToken]):
    team = serializers.CharField(source="team.path")
    active = serializers.SerializerMethodField(help_text="Whether it can enrol a machine now.")

    class Meta:
        model = EnrollmentToken
        fields = [
            "id",
            "team",
            "prefix",
            "note",
            "created_at",
            "expires_at",
            "max_uses",
            "uses",
            "revoked_at",
            "active",
        ]

    def get_active(self, token: EnrollmentToken) -> bool:
        return selectors.token_refusal(token, timezone.now()) is None


class TokenCreatedOut(TokenOut):
    token = serializers.CharField(help_text="The secret: shown in this answer only.")

    class Meta(TokenOut.Meta):
        fields = [*TokenOut.Meta.fields, "token"]


class TokenIn(serializers.Serializer[None]):
    team = serializers.CharField(max_length=1024, validators=[plain_text], help_text=TEAM_HELP)
    expires = serializers.CharField(
        max_length=16, required=False, default="7d", help_text="A lifetime: 30m, 12h, 7d (365d)."
    )
    uses = serializers.IntegerField(
        min_value=1,
        max_value=MAX_INT,
        allow_null=True,
        required=False,
        default=None,
        help_text="How many machines it may enrol; null: any number until it expires.",
    )
    note = serializers.CharField(
        max_length=200, allow_blank=True, required=False, default="", validators=[plain_text]
    )


class TokenFilter(django_filters.FilterSet):
    team = django_filters.CharFilter(
        field_name="team__path", max_length=1024, validators=[plain_text], help_text=TEAM_HELP
    )
    active = django_filters.ChoiceFilter(
        method="usable",
        choices=_choices(("true", "false")),
        help_text="true: tokens that can enrol a machine now; false: revoked, expired or used up.",
    )

    class Meta:
        model = EnrollmentToken
        fields: list[str] = []

    def usable(
        self, found: QuerySet[EnrollmentToken], name: str, value: str
    ) -> QuerySet[EnrollmentToken]:
        usable = selectors.token_usable(timezone.now())
        return found.filter(usable) if value == "true" else found.exclude(usable)


class EnrollmentTokensApi(ListModelMixin, OrgApiView):
    """The organisation's enrolment tokens, newest first (never their secrets), and new ones."""

    required = {"POST": Permission.FLEET_MANAGE}
    doing = "create enrolment tokens"
    serializer_class = TokenOut
    pagination_class = CursorPage
    filterset_class = TokenFilter

    def get_queryset(self) -> QuerySet[EnrollmentToken]:
        if getattr(self, "swagger_fake_view", False):
            return EnrollmentToken.objects.none()
        return selectors.enrollment_tokens(self.organization)

    @extend_schema(
        operation_id="enrollment_tokens_list", tags=TAGS, responses={200: TokenOut, **ERRORS}
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list(request)

    @extend_schema(
        operation_id="enrollment_token_create",
        tags=TAGS,
        request=TokenIn,
        responses={201: TokenCreatedOut, **ERRORS},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = TokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        given: dict[str, Any] = data.validated_data
        token, secret = services.enrollment_token_create(
            organization=self.organization,
            team_path=given["team"],
            lifetime=duration_parse(given["expires"]),
            max_uses=given["uses"],
            note=given["note"],
            actor=self.actor,
        )
        return Response({**TokenOut(token).data, "token": secret}, status=status.HTTP_201_CREATED)


class EnrollmentTokenRevokeApi(OrgApiView):
    """No machine enrols with the token from now on (those it enrolled stay)."""

    required = {"POST": Permission.FLEET_MANAGE}
    doing = "revoke enrolment tokens"

    @extend_schema(
        operation_id="enrollment_token_revoke",
        tags=TAGS,
        request=None,
        responses={204: None, **ERRORS},
    )
    def post(self, request: Request, slug: str, token_id: int) -> Response:
        token = selectors.enrollment_token_get(self.organization, token_id)
        if token is None:
            raise Http404("no such enrolment token")
        services.enrollment_token_revoke(token=token, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
