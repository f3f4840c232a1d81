"""The admin API of the fleet: status per team and per device, moving and revoking devices,
enrolment tokens. Every organisation-scoped view answers 404 to non-members."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policyhub.accounts.access import organization_for_request
from policyhub.accounts.models import Organization
from policyhub.fleet import selectors, services
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.validators import duration_parse, plain_text
from providers.codex_versions import version_text


def _device(organization: Organization, device_id: str) -> Device:
    found = selectors.device_get(organization, device_id)
    if found is None:
        raise Http404("no such device")
    return found


class DeviceStatusOut(serializers.Serializer[Any]):
    id = serializers.UUIDField(source="device.pk")
    team = serializers.CharField(source="device.team.path")
    hostname = serializers.CharField(source="device.hostname")
    state = serializers.CharField()
    expected_revision = serializers.IntegerField(allow_null=True)
    applied_revision = serializers.IntegerField(allow_null=True)
    revision_served = serializers.IntegerField(source="device.revision_served", allow_null=True)
    last_activity = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(source="device.last_seen_at", allow_null=True)
    last_channel = serializers.CharField(source="device.last_channel")
    reported_at = serializers.DateTimeField(source="device.reported_at", allow_null=True)
    codex_version = serializers.CharField(source="device.codex_version")
    # inside, below or above the organisation's Codex support window, or unknown.
    codex_window = serializers.CharField()
    os = serializers.CharField(source="device.os")
    agent_version = serializers.CharField(source="device.agent_version")
    # DRF takes declared fields off the class, so this does not hide Serializer.errors.
    errors = serializers.ListField(  # type: ignore[assignment]
        source="device.errors", child=serializers.CharField()
    )
    enrolled_at = serializers.DateTimeField(source="device.enrolled_at")


class TeamFleetOut(serializers.Serializer[Any]):
    team = serializers.CharField(source="team_path")
    revision = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    rollout = serializers.DictField(allow_null=True)


class FleetTeamsApi(APIView):
    """Per team: devices current, behind, failing, stale or pending, and rollout progress."""

    def get(self, request: Request, slug: str) -> Response:
        org, _ = organization_for_request(request, slug)
        return Response({"teams": TeamFleetOut(selectors.team_fleet(org), many=True).data})


class DevicesQuery(serializers.Serializer[None]):
    team = serializers.CharField(max_length=1024, required=False, validators=[plain_text])
    state = serializers.ChoiceField(choices=selectors.STATES, required=False)
    codex_window = serializers.ChoiceField(
        choices=(*selectors.WINDOW_STATES, "outside"), required=False
    )


class FleetDevicesApi(APIView):
    """Every enrolled device with what it was served, applied and reported."""

    def get(self, request: Request, slug: str) -> Response:
        org, _ = organization_for_request(request, slug)
        query = DevicesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        statuses = selectors.device_statuses(
            org,
            team_path=query.validated_data.get("team"),
            state=query.validated_data.get("state"),
            codex_window=query.validated_data.get("codex_window"),
        )
        return Response({"devices": DeviceStatusOut(statuses, many=True).data})


class CodexVersionOut(serializers.Serializer[Any]):
    version = serializers.CharField()
    devices = serializers.IntegerField()
    window = serializers.CharField()


class FleetCodexVersionsApi(APIView):
    """The Codex versions the fleet runs, against the organisation's support window."""

    def get(self, request: Request, slug: str) -> Response:
        org, _ = organization_for_request(request, slug)
        seen = selectors.codex_versions_seen(org)
        low, high = selectors.window_of(org)
        return Response(
            {
                "window": {"min_version": version_text(low), "max_version": version_text(high)},
                "versions": CodexVersionOut(seen, many=True).data,
                "devices_outside": sum(s.devices for s in seen if s.window in ("below", "above")),
            }
        )


class ReasonIn(serializers.Serializer[None]):
    reason = serializers.CharField(
        max_length=2000, allow_blank=True, required=False, default="", validators=[plain_text]
    )


class MoveIn(ReasonIn):
    team = serializers.CharField(max_length=1024, validators=[plain_text])


class DeviceRevokeApi(APIView):
    def post(self, request: Request, slug: str, device_id: str) -> Response:
        org, actor = organization_for_request(request, slug)
        device = _device(org, device_id)
        data = ReasonIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.device_revoke(device=device, actor=actor, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceMoveApi(APIView):
    def post(self, request: Request, slug: str, device_id: str) -> Response:
        org, actor = organization_for_request(request, slug)
        device = _device(org, device_id)
        data = MoveIn(data=request.data)
        data.is_valid(raise_exception=True)
        device = services.device_move(
            device=device,
            team_path=data.validated_data["team"],
            actor=actor,
            reason=data.validated_data["reason"],
        )
        return Response({"id": str(device.pk), "team": device.team.path})


class TokenOut(serializers.ModelSerializer[EnrollmentToken]):
    team = serializers.CharField(source="team.path")

    class Meta:
        model = EnrollmentToken
        fields = ["id", "team", "prefix", "note", "expires_at", "max_uses", "uses", "revoked_at"]


class TokenIn(serializers.Serializer[None]):
    team = serializers.CharField(max_length=1024, validators=[plain_text])
    expires = serializers.CharField(max_length=16, required=False, default="7d")
    uses = serializers.IntegerField(min_value=1, allow_null=True, required=False, default=None)
    note = serializers.CharField(
        max_length=200, allow_blank=True, required=False, default="", validators=[plain_text]
    )


class EnrollmentTokensApi(APIView):
    def get(self, request: Request, slug: str) -> Response:
        org, _ = organization_for_request(request, slug)
        return Response({"tokens": TokenOut(selectors.enrollment_tokens(org), many=True).data})

    def post(self, request: Request, slug: str) -> Response:
        org, actor = organization_for_request(request, slug)
        data = TokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        given: dict[str, Any] = data.validated_data
        token, secret = services.enrollment_token_create(
            organization=org,
            team_path=given["team"],
            lifetime=duration_parse(given["expires"]),
            max_uses=given["uses"],
            note=given["note"],
            actor=actor,
        )
        return Response({**TokenOut(token).data, "token": secret}, status=status.HTTP_201_CREATED)


class EnrollmentTokenRevokeApi(APIView):
    def post(self, request: Request, slug: str, token_id: int) -> Response:
        org, actor = organization_for_request(request, slug)
        token = selectors.enrollment_token_get(org, token_id)
        if token is None:
            raise Http404("no such enrolment token")
        services.enrollment_token_revoke(token=token, actor=actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
