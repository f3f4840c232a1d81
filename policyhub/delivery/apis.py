"""The device API beside the bundle: enrolment, status reports and the signing keys. Machines
call it, not people: it is described in the API's schema under the `device` tag, with the device
credential as its security scheme (the bundle itself is served outside DRF, see views.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policyhub.apis import MAX_INT, ErrorOut, ResilientScopedRateThrottle, body_too_large
from policyhub.delivery.authentication import DeviceCredentialAuthentication, calling_device
from policyhub.fleet import services as fleet
from policyhub.releases.models import SigningKey
from policyhub.releases.selectors import signing_keys_by_id
from policyhub.validators import plain_text

TAGS = ["device"]
BAD_REQUEST = OpenApiResponse(ErrorOut, description="Malformed; `errors` names each field.")
NO_DEVICE = OpenApiResponse(ErrorOut, description="No, an unknown or a revoked credential.")
TOO_LARGE = OpenApiResponse(ErrorOut, description="The body is larger than the limit.")


def _text(max_length: int, **kwargs: Any) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, validators=[plain_text], **kwargs)


class KeyOut(serializers.ModelSerializer[SigningKey]):
    endorsed_by = serializers.SlugRelatedField[SigningKey](slug_field="key_id", read_only=True)
    endorsement = serializers.SerializerMethodField()

    class Meta:
        model = SigningKey
        fields = ["key_id", "public_key", "status", "endorsed_by", "endorsement"]

    def get_endorsement(self, key: SigningKey) -> str | None:
        return key.endorsement or None


def _keys(organization_id: int) -> list[dict[str, Any]]:
    return list(KeyOut(signing_keys_by_id(organization_id), many=True).data)


# A token, a host name, an OS and a version: a few hundred bytes.
ENROLL_MAX_BYTES = 4096


class EnrollIn(serializers.Serializer[None]):
    token = _text(100, help_text="The team's enrolment token (`phe_...`).")
    hostname = _text(255, allow_blank=True, required=False, default="")
    os = _text(128, allow_blank=True, required=False, default="")
    codex_version = _text(64, allow_blank=True, allow_null=True, required=False, default="")


class KeysOut(serializers.Serializer[Any]):
    keys = KeyOut(many=True, help_text="Oldest first; each endorsed by the key before it.")


class EnrolledOut(KeysOut):
    device_id = serializers.UUIDField()
    credential = serializers.CharField(
        help_text="The device credential: shown in this answer only."
    )
    organization = serializers.CharField()
    team = serializers.CharField()


class EnrollApi(APIView):
    """Trade an enrolment token for a device credential, shown only in this answer."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "enroll"

    @extend_schema(
        operation_id="device_enroll",
        tags=TAGS,
        request=EnrollIn,
        responses={
            201: EnrolledOut,
            400: BAD_REQUEST,
            403: OpenApiResponse(
                ErrorOut, description="The token is unknown, expired, used up or revoked."
            ),
            413: TOO_LARGE,
            429: OpenApiResponse(ErrorOut, description="Too many enrolments from this address."),
        },
    )
    def post(self, request: Request) -> Response:
        if too_large := body_too_large(request, ENROLL_MAX_BYTES):
            return too_large
        data = EnrollIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            device, credential = fleet.device_enroll(
                token_secret=data.validated_data["token"],
                hostname=data.validated_data["hostname"],
                os=data.validated_data["os"],
                codex_version=data.validated_data["codex_version"] or "",
            )
        except fleet.EnrollmentRefused as refused:
            raise PermissionDenied(refused.message) from None
        return Response(
            {
                "device_id": str(device.pk),
                "credential": credential,
                "organization": device.organization.slug,
                "team": device.team.path,
                "keys": _keys(device.organization_id),
            },
            status=status.HTTP_201_CREATED,
        )


class StatusIn(serializers.Serializer[None]):
    applied_revision = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, allow_null=True, required=False, default=None
    )
    codex_version = _text(64, allow_blank=True, allow_null=True, required=False, default="")
    os = _text(128, allow_blank=True, required=False, default="")
    agent_version = _text(64, allow_blank=True, required=False, default="")
    # DRF takes declared fields off the class, so this does not hide Serializer.errors.
    errors = serializers.ListField(  # type: ignore[assignment]
        child=_text(2000), max_length=20, required=False, default=list
    )


class StatusApi(APIView):
    """What the agent applied, with which Codex, and what went wrong."""

    authentication_classes = [DeviceCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="device_status_report",
        tags=TAGS,
        request=StatusIn,
        responses={204: None, 400: BAD_REQUEST, 401: NO_DEVICE, 413: TOO_LARGE},
    )
    def post(self, request: Request) -> Response:
        if too_large := body_too_large(request, settings.DEVICE_STATUS_MAX_BYTES):
            return too_large
        data = StatusIn(data=request.data)
        data.is_valid(raise_exception=True)
        report = data.validated_data
        fleet.device_report_record(
            device_id=calling_device(request).device_id,
            applied_revision=report["applied_revision"],
            codex_version=report["codex_version"] or "",
            os=report["os"],
            agent_version=report["agent_version"],
            errors=report["errors"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeysApi(APIView):
    """The organisation's public signing keys, each endorsed by the key before it."""

    authentication_classes = [DeviceCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="device_signing_keys", tags=TAGS, responses={200: KeysOut, 401: NO_DEVICE}
    )
    def get(self, request: Request) -> Response:
        return Response({"keys": _keys(calling_device(request).organization_id)})
