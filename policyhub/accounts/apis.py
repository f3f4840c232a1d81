"""The accounts API: the organisations a caller may open, an organisation's settings, its
members, invitations and API tokens.

Every write goes through `accounts.services`, which decides who may do what (owners are made and
unmade only by owners; a token never goes above its person). The settings and a membership are
edited objects: GET gives their ETag, and PATCH or DELETE re-reads them under the organisation's
lock and answers 412 when another write came first (428 without If-Match). Secrets appear once,
in the answer that creates them: an invitation's link, an API token's secret.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from policyhub.accounts.access import request_actor, signed_in_with_sso
from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.models import ApiToken, Invitation, Membership, Organization, Role
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import (
    api_tokens,
    invitation_link,
    invitations_pending,
    members,
    membership_of,
    organization_lock,
    organizations_open_to,
)
from policyhub.accounts.services import (
    MAX_TOKEN_LIFETIME,
    api_token_create,
    api_token_revoke,
    invitation_create,
    invitation_revoke,
    membership_grant,
    membership_remove,
    organization_settings_update,
    ownership_transfer,
)
from policyhub.apis import (
    ERRORS,
    IF_MATCH,
    WRITE_ERRORS,
    CursorPage,
    etag_of,
    require_if_match,
    with_etag,
)
from policyhub.validators import duration_parse, plain_text
from providers.codex_versions import DEFAULT_VERSION

ORGANIZATIONS, MEMBERS, INVITATIONS, TOKENS = (
    ["organisations"],
    ["members"],
    ["invitations"],
    ["api tokens"],
)
# The longest an invitation may stay open (the service refuses more too, naming `expires`).
MAX_INVITATION_LIFETIME = timedelta(days=30)


def _team_field() -> serializers.CharField:
    """A team editor's subtree by path: required for a team editor, null for other roles."""
    return serializers.CharField(
        max_length=1024, required=False, allow_null=True, default=None, validators=[plain_text]
    )


def _lifetime_field(default: str) -> serializers.CharField:
    """A lifetime as the commands take it (parsed by `duration_parse`, which names the field)."""
    return serializers.CharField(
        max_length=16,
        required=False,
        default=default,
        validators=[plain_text],
        help_text="A lifetime: 30m, 12h or 7d.",
    )


# --- organisations ------------------------------------------------------------------------------


class OrgCodexWindowOut(serializers.Serializer[Any]):
    """The Codex versions the organisation's machines run, with the default filled in (an
    empty stored window is the default one); edited through the policy, not here."""

    min_version = serializers.CharField(default=DEFAULT_VERSION)
    max_version = serializers.CharField(default=DEFAULT_VERSION)
    accept_unenforced = serializers.ListField(child=serializers.CharField(), default=list)
    managed_pins = serializers.ListField(child=serializers.CharField(), default=list)


class OrganizationOut(serializers.ModelSerializer[Organization]):
    codex_window = OrgCodexWindowOut(read_only=True)

    class Meta:
        model = Organization
        fields = ["slug", "name", "requires_approval", "sso_required", "codex_window"]
        read_only_fields = fields


class OrganizationSettingsIn(serializers.Serializer[None]):
    requires_approval = serializers.BooleanField(required=False)
    sso_required = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("give requires_approval, sso_required or both")
        return attrs


class OrganizationListApi(GenericAPIView[Organization]):
    """The organisations the caller may open: a token's own, or a person's memberships (those
    requiring single sign-on only to a session signed in through it)."""

    queryset = Organization.objects.none()  # names the model for the schema; get_queryset reads
    serializer_class = OrganizationOut
    pagination_class = type("OrganizationPage", (CursorPage,), {"ordering": "slug"})

    def get_queryset(self) -> QuerySet[Organization]:
        request = self.request
        # As organization_for_request decides: tokens and session-less requests are not asked.
        through_sso = (
            isinstance(request.auth, ApiToken)
            or getattr(request, "session", None) is None
            or signed_in_with_sso(request._request)
        )
        return organizations_open_to(request_actor(request), through_sso=through_sso)

    @extend_schema(
        tags=ORGANIZATIONS,
        responses={200: OrganizationOut(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(OrganizationOut(page, many=True).data)


class OrganizationApi(OrgApiView):
    """One organisation and its settings: whether change sets need a second person's approval,
    and whether members must sign in through single sign-on."""

    required = {"PATCH": Permission.ORG_SETTINGS}
    doing = "change the organisation's settings"
    serializer_class = OrganizationOut

    @extend_schema(
        tags=ORGANIZATIONS,
        responses={200: OrganizationOut, **ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        return with_etag(OrganizationOut(self.organization).data)

    @extend_schema(
        tags=ORGANIZATIONS,
        request=OrganizationSettingsIn,
        parameters=[IF_MATCH],
        responses={200: OrganizationOut, **WRITE_ERRORS},
    )
    def patch(self, request: Request, slug: str) -> Response:
        given = OrganizationSettingsIn(data=request.data)
        given.is_valid(raise_exception=True)
        with transaction.atomic():
            organization = organization_lock(self.organization.pk)
            require_if_match(request, etag_of(OrganizationOut(organization).data))
            organization = organization_settings_update(
                actor=self.actor, organization=organization, **given.validated_data
            )
        return with_etag(OrganizationOut(organization).data)


# --- members ------------------------------------------------------------------------------------


class MemberOut(serializers.ModelSerializer[Membership]):
    user = serializers.SerializerMethodField()
    # A team editor's subtree; null for every other role.
    team = serializers.CharField(source="team.path", allow_null=True, default=None)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "team"]
        read_only_fields = fields

    def get_user(self, membership: Membership) -> str:
        """The person as the audit trail names them: their address, else their username."""
        return membership.user.email or membership.user.username


class MemberFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices)
    email = django_filters.CharFilter(
        field_name="user__email", lookup_expr="iexact", max_length=254, help_text="One person."
    )

    class Meta:
        model = Membership
        fields: list[str] = []


class MemberIn(serializers.Serializer[None]):
    role = serializers.ChoiceField(choices=Role.choices)
    # Required for a team editor (the root of the subtree they may edit), null for other roles.
    team = _team_field()


class OwnershipTransferIn(serializers.Serializer[None]):
    user = serializers.EmailField(max_length=254, help_text="The member who becomes an owner.")


def _member_rows(organization: Organization) -> QuerySet[Membership]:
    return members(organization).only("id", "role", "user__email", "user__username", "team__path")


class MemberListApi(OrgApiView):
    """The organisation's members and their roles; any member may read it."""

    queryset = Membership.objects.none()  # names the model for the schema; get_queryset reads
    serializer_class = MemberOut
    filterset_class = MemberFilter
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[Membership]:
        return _member_rows(self.organization)

    @extend_schema(tags=MEMBERS, responses={200: MemberOut(many=True), **ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(MemberOut(page, many=True).data)


class MemberApi(OrgApiView):
    """One membership: its role changed or removed (an owner's only by an owner; the
    organisation keeps one)."""

    required = {"PATCH": Permission.MEMBERS_MANAGE, "DELETE": Permission.MEMBERS_MANAGE}
    doing = "manage the organisation's members"
    serializer_class = MemberOut

    def _member(self, pk: int) -> Membership:
        found = _member_rows(self.organization).filter(pk=pk).first()
        if found is None:
            raise Http404("no such member")
        return found

    @extend_schema(tags=MEMBERS, responses={200: MemberOut, **ERRORS})
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return with_etag(MemberOut(self._member(pk)).data)

    @extend_schema(
        tags=MEMBERS,
        request=MemberIn,
        parameters=[IF_MATCH],
        responses={200: MemberOut, **WRITE_ERRORS},
    )
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        given = MemberIn(data=request.data)
        given.is_valid(raise_exception=True)
        with transaction.atomic():
            organization = organization_lock(self.organization.pk)
            membership = self._member(pk)
            require_if_match(request, etag_of(MemberOut(membership).data))
            membership_grant(
                actor=self.actor,
                organization=organization,
                user=membership.user,
                role=given.validated_data["role"],
                team_path=given.validated_data["team"],
            )
        return with_etag(MemberOut(self._member(pk)).data)

    @extend_schema(tags=MEMBERS, parameters=[IF_MATCH], responses={204: None, **WRITE_ERRORS})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        with transaction.atomic():
            organization_lock(self.organization.pk)
            membership = self._member(pk)
            require_if_match(request, etag_of(MemberOut(membership).data))
            membership_remove(actor=self.actor, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OwnershipTransferApi(OrgApiView):
    """Make another member an owner; the acting owner stays on as an admin."""

    required = {"POST": Permission.OWNERS_MANAGE}
    doing = "transfer ownership"
    serializer_class = MemberOut

    @extend_schema(
        tags=MEMBERS,
        request=OwnershipTransferIn,
        responses={200: MemberOut, **ERRORS},
    )
    def post(self, request: Request, slug: str) -> Response:
        given = OwnershipTransferIn(data=request.data)
        given.is_valid(raise_exception=True)
        email = given.validated_data["user"]
        # Only members are looked up: whether someone else has an account is not told.
        target = membership_of(self.organization, email)
        if target is None:
            raise serializers.ValidationError(
                {"user": [f"{email} is not a member of {self.organization.slug}"]}
            )
        ownership_transfer(actor=self.actor, organization=self.organization, to=target.user)
        return with_etag(MemberOut(_member_rows(self.organization).get(pk=target.pk)).data)


# --- invitations --------------------------------------------------------------------------------


class InvitationOut(serializers.ModelSerializer[Invitation]):
    team = serializers.CharField(source="team_path", allow_null=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "team",
            "invited_by",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Invitation) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["team"] = data["team"] or None
        return data


class InvitationCreatedOut(InvitationOut):
    # The link to accept it, shown only in this answer (and mailed to the address).
    link = serializers.CharField()

    class Meta(InvitationOut.Meta):
        fields = [*InvitationOut.Meta.fields, "link"]
        read_only_fields = fields


class InvitationFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices)
    email = django_filters.CharFilter(
        lookup_expr="iexact", max_length=254, help_text="The invitations to one address."
    )

    class Meta:
        model = Invitation
        fields: list[str] = []


class InvitationIn(serializers.Serializer[None]):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)
    # Required for a team editor, and only for one.
    team = _team_field()
    expires = _lifetime_field("7d")


class InvitationListApi(OrgApiView):
    """Pending invitations (neither used, withdrawn nor expired), and inviting someone."""

    required = {"GET": Permission.MEMBERS_MANAGE, "POST": Permission.MEMBERS_MANAGE}
    doing = "manage the organisation's members"
    queryset = Invitation.objects.none()  # names the model for the schema; get_queryset reads
    serializer_class = InvitationOut
    filterset_class = InvitationFilter
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[Invitation]:
        return invitations_pending(self.organization).defer("secret_hash")

    @extend_schema(tags=INVITATIONS, responses={200: InvitationOut(many=True), **ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(InvitationOut(page, many=True).data)

    @extend_schema(
        tags=INVITATIONS, request=InvitationIn, responses={201: InvitationCreatedOut, **ERRORS}
    )
    def post(self, request: Request, slug: str) -> Response:
        given = InvitationIn(data=request.data)
        given.is_valid(raise_exception=True)
        invitation, secret = invitation_create(
            actor=self.actor,
            organization=self.organization,
            email=given.validated_data["email"],
            role=given.validated_data["role"],
            team_path=given.validated_data["team"] or "",
            lifetime=duration_parse(
                given.validated_data["expires"], maximum=MAX_INVITATION_LIFETIME
            ),
        )
        shown = {**InvitationOut(invitation).data, "link": invitation_link(secret)}
        return Response(shown, status=status.HTTP_201_CREATED)


class InvitationRevokeApi(OrgApiView):
    """Withdraw an invitation (one for an owner takes an owner); a used one stays used."""

    required = {"POST": Permission.MEMBERS_MANAGE}
    doing = "manage the organisation's members"
    serializer_class = InvitationOut

    @extend_schema(tags=INVITATIONS, request=None, responses={200: InvitationOut, **ERRORS})
    def post(self, request: Request, slug: str, pk: int) -> Response:
        found = Invitation.objects.filter(organization=self.organization, pk=pk).first()
        if found is None:
            raise Http404("no such invitation")
        return Response(InvitationOut(invitation_revoke(actor=self.actor, invitation=found)).data)


# --- API tokens ---------------------------------------------------------------------------------


class ApiTokenOut(serializers.ModelSerializer[ApiToken]):
    user = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "role",
            "user",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields

    def get_user(self, token: ApiToken) -> str:
        return token.user.email or token.user.username


class ApiTokenCreatedOut(ApiTokenOut):
    # `Authorization: Bearer <secret>`; shown only in this answer, stored only as a hash.
    secret = serializers.CharField()

    class Meta(ApiTokenOut.Meta):
        fields = [*ApiTokenOut.Meta.fields, "secret"]
        read_only_fields = fields


class ApiTokenIn(serializers.Serializer[None]):
    name = serializers.CharField(max_length=100, validators=[plain_text])
    # The ceiling: never above the creator's own role.
    role = serializers.ChoiceField(choices=Role.choices)
    expires = _lifetime_field("90d")


class ApiTokensQuery(serializers.Serializer[None]):
    all = serializers.BooleanField(required=False, default=False)


ALL_TOKENS = OpenApiParameter(
    "all",
    bool,
    description="Everyone's tokens in the organisation, not only yours (takes members.manage).",
)


class ApiTokenListApi(OrgApiView):
    """The caller's API tokens in this organisation (everyone's with `all`, for whoever manages
    members), and a new one for the signed-in person."""

    required = {"GET": Permission.API_TOKENS, "POST": Permission.API_TOKENS}
    doing = "hold API tokens"
    queryset = ApiToken.objects.none()  # names the model for the schema; get_queryset reads
    serializer_class = ApiTokenOut
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[ApiToken]:
        query = ApiTokensQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["all"]:
            authorize(
                self.actor, self.organization, Permission.MEMBERS_MANAGE, doing="see all API tokens"
            )
            found = api_tokens(self.organization)
        else:
            found = api_tokens(self.organization, user=self.actor.user)
        return found.defer("secret_hash")

    @extend_schema(
        tags=TOKENS, parameters=[ALL_TOKENS], responses={200: ApiTokenOut(many=True), **ERRORS}
    )
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiTokenOut(page, many=True).data)

    @extend_schema(tags=TOKENS, request=ApiTokenIn, responses={201: ApiTokenCreatedOut, **ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        given = ApiTokenIn(data=request.data)
        given.is_valid(raise_exception=True)
        token, secret = api_token_create(
            actor=self.actor,
            organization=self.organization,
            name=given.validated_data["name"],
            role=given.validated_data["role"],
            lifetime=duration_parse(given.validated_data["expires"], maximum=MAX_TOKEN_LIFETIME),
        )
        shown = {**ApiTokenOut(token).data, "secret": secret}
        return Response(shown, status=status.HTTP_201_CREATED)


class ApiTokenRevokeApi(OrgApiView):
    """Revoke a token at once: one's own, or anyone's for whoever manages members."""

    required = {"POST": Permission.API_TOKENS}
    doing = "revoke API tokens"
    serializer_class = ApiTokenOut

    @extend_schema(tags=TOKENS, request=None, responses={200: ApiTokenOut, **ERRORS})
    def post(self, request: Request, slug: str, pk: int) -> Response:
        found = api_tokens(self.organization).filter(pk=pk).first()
        if found is None:
            raise Http404("no such API token")
        return Response(ApiTokenOut(api_token_revoke(actor=self.actor, token=found)).data)
