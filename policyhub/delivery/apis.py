"""The device API beside the bundle: enrolment, status reports and the signing keys. Machines
call it, not people: it is described in the API's schema under the `device` tag, with the device
credential as its security scheme (the bundle itself is served outside DRF, see views.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, NotFound, PermissionDenied
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policyhub import credentials
from policyhub.apis import MAX_INT, ErrorOut, ResilientScopedRateThrottle
from policyhub.delivery.assignment import device_assignment
from policyhub.delivery.authentication import DeviceCredentialAuthentication, calling_device
from policyhub.fleet import services as fleet
from policyhub.releases import signing
from policyhub.releases.models import SigningKey
from policyhub.releases.selectors import revocation_list, self_revoked_keys, signing_keys_by_id
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


def _keys_answer(organization_id: int) -> dict[str, Any]:
    """The keys machines may pin and the revocations they must honour, as the enrolment answer
    and the key list carry them (agents before 0.3.1 read `keys` only and ignore the rest)."""
    listed = revocation_list(organization_id)
    return {
        "keys": _keys(organization_id),
        "revocations": listed.statement if listed else None,
        "revocations_signature": listed.signature if listed else None,
        "revocations_key_id": listed.signing_key.key_id if listed else None,
        "self_revocations": [
            {
                "key_id": key.key_id,
                "public_key": key.public_key,
                "revoked_at": signing.timestamp(key.revoked_at),
                "signature": key.self_revocation,
            }
            for key in self_revoked_keys(organization_id)
            if key.revoked_at is not None
        ],
    }


# A token, a host name, an OS and a version: a few hundred bytes.
ENROLL_MAX_BYTES = 4096


class EnrollIn(serializers.Serializer[None]):
    token = _text(100, help_text="The team's enrolment token (`phe_...`).")
    hostname = _text(255, allow_blank=True, required=False, default="")
    os = _text(128, allow_blank=True, required=False, default="")
    codex_version = _text(64, allow_blank=True, allow_null=True, required=False, default="")


class SelfRevocationOut(serializers.Serializer[Any]):
    key_id = serializers.CharField()
    public_key = serializers.CharField(
        help_text="The revoked key's public half: its id is this key's sha256 prefix, so the "
        "revocation proves itself without any other key."
    )
    revoked_at = serializers.CharField(help_text="UTC, ISO 8601, ending in Z.")
    signature = serializers.CharField(
        help_text="The revoked key's own Ed25519 signature (base64) of the canonical JSON "
        '{"key_id", "organization", "purpose": "policyhub-key-self-revocation", "revoked_at"}.'
    )


class KeysOut(serializers.Serializer[Any]):
    keys = KeyOut(
        many=True,
        help_text="Oldest first; each endorsed by the key before it, or after a revocation of "
        "the active key by the newest retired key. Revoked keys are never listed.",
    )
    revocations = serializers.CharField(
        allow_null=True,
        help_text="Canonical JSON: purpose (policyhub-key-revocations), organization, revoked "
        "([{key_id, revoked_at}]) and issued_at; null before any key was revoked.",
    )
    revocations_signature = serializers.CharField(
        allow_null=True, help_text="Ed25519 signature of `revocations`, base64."
    )
    revocations_key_id = serializers.CharField(
        allow_null=True, help_text="The key that signed `revocations`: the active key then."
    )
    self_revocations = SelfRevocationOut(
        many=True, help_text="Each revoked key's signature over its own revocation."
    )


class EnrolledOut(KeysOut):
    device_id = serializers.UUIDField()
    credential = serializers.CharField(
        help_text="The device credential: shown in this answer only. Keep it private: it "
        "authenticates everything the device API offers."
    )
    fetch_credential = serializers.CharField(
        help_text="The fetch-only credential for Codex's native channel (the config-server URL "
        "in requirements.toml, which every local user can read): it fetches this device's "
        "bundle and nothing else. Derived from the credential (an HMAC keyed by it)."
    )
    organization = serializers.CharField()
    team = serializers.CharField()
    assignment = serializers.IntegerField(
        help_text="The number of the team assignment the device starts with (see "
        "device_assignment): the agent takes a move only with a higher one."
    )


class EnrollApi(APIView):
    """Trade an enrolment token for a device credential, shown only in this answer."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "enroll"
    max_body_bytes = ENROLL_MAX_BYTES

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
                "fetch_credential": credentials.fetch_credential(credential),
                "organization": device.organization.slug,
                "team": device.team.path,
                **_keys_answer(device.organization_id),
                "assignment": device.assignment,
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

    max_body_bytes = "DEVICE_STATUS_MAX_BYTES"

    @extend_schema(
        operation_id="device_status_report",
        tags=TAGS,
        request=StatusIn,
        responses={204: None, 400: BAD_REQUEST, 401: NO_DEVICE, 413: TOO_LARGE},
    )
    def post(self, request: Request) -> Response:
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


class CredentialIn(serializers.Serializer[None]):
    credential = serializers.CharField(
        max_length=100, help_text="The new device credential (`phd_` + 43 URL-safe base64)."
    )


class CredentialOut(serializers.Serializer[None]):
    fetch_credential = serializers.CharField(help_text="The new fetch-only credential.")


class CredentialApi(APIView):
    """Replace the credential of a device enrolled before fetch credentials existed with a new
    one its agent made (256 random bits), paired with a fetch credential; the old credential
    stops working at once. Agents move such devices off the credential their requirements.toml
    exposed this way; a device that has a fetch credential is refused (400)."""

    authentication_classes = [DeviceCredentialAuthentication]
    permission_classes = [IsAuthenticated]
    max_body_bytes = ENROLL_MAX_BYTES

    @extend_schema(
        operation_id="device_credential_rotate",
        tags=TAGS,
        request=CredentialIn,
        responses={200: CredentialOut, 400: BAD_REQUEST, 401: NO_DEVICE, 413: TOO_LARGE},
    )
    def post(self, request: Request) -> Response:
        data = CredentialIn(data=request.data)
        data.is_valid(raise_exception=True)
        new = data.validated_data["credential"]
        rotated = fleet.device_credential_rotate(
            device_id=calling_device(request).device_id, new_credential=new
        )
        if rotated is None:
            raise AuthenticationFailed("unknown or revoked device credential")
        return Response({"fetch_credential": credentials.fetch_credential(new)})


class KeysApi(APIView):
    """The organisation's public signing keys, each endorsed by the key before it."""

    authentication_classes = [DeviceCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="device_signing_keys", tags=TAGS, responses={200: KeysOut, 401: NO_DEVICE}
    )
    def get(self, request: Request) -> Response:
        return Response(_keys_answer(calling_device(request).organization_id))


class AssignmentOut(serializers.Serializer[Any]):
    statement = serializers.CharField(
        help_text="Canonical JSON: purpose, organization, device_id, team and serial (how "
        "many times the device was moved)."
    )
    signature = serializers.CharField(help_text="Ed25519 signature of the statement, base64.")
    key_id = serializers.CharField(help_text="The signing key, one of the organisation's keys.")


class AssignmentApi(APIView):
    """The organisation's signed word that this device belongs to its team: what lets the agent
    take another team's release after a move, and refuse a replayed older move."""

    authentication_classes = [DeviceCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="device_assignment",
        tags=TAGS,
        responses={
            200: AssignmentOut,
            401: NO_DEVICE,
            404: OpenApiResponse(ErrorOut, description="The organisation has no signing key."),
        },
    )
    def get(self, request: Request) -> Response:
        answer = device_assignment(calling_device(request).device_id)
        if answer is None:
            raise NotFound("the organisation has no signing key yet")
        return Response(answer)
