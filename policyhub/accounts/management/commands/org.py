"""`org`: organisations and their people from the command line.

    org create --slug acme --name "Acme" --owner alice@acme.example
    org show --org acme
    org settings --org acme [--requires-approval on|off] [--sso-required on|off]
    org invite --org acme --email bob@acme.example --role admin [--team platform] [--expires 7d]
    org revoke-invitation ID --org acme
    org role --org acme --email bob@acme.example --role approver [--team platform]
    org remove --org acme --email bob@acme.example
    org transfer --org acme --to bob@acme.example

Every change acts as `--as EMAIL` (with what that person's role allows) or, without it, as the
server operator named after the login running it; all of it is audited.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from policyhub.accounts.cli import actor_arg, add_actor_argument, organization_arg, refused
from policyhub.accounts.models import Invitation, Role
from policyhub.accounts.selectors import (
    invitation_link,
    invitations_pending,
    members,
    membership_of,
    user_by_key,
)
from policyhub.accounts.services import (
    invitation_create,
    invitation_revoke,
    membership_grant,
    membership_remove,
    organization_create,
    organization_settings_update,
    ownership_transfer,
)
from policyhub.errors import ApplicationError
from policyhub.validators import duration_parse

ON_OFF = {"on": True, "off": False}


class Command(BaseCommand):
    help = "Create organisations; invite, change, remove and transfer their people; settings."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new organisation with its first owner")
        create.add_argument("--slug", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--owner", required=True, metavar="EMAIL")
        show = sub.add_parser("show", help="settings, members and pending invitations")
        show.add_argument("--org", required=True)
        config = sub.add_parser("settings", help="approval and single sign-on requirements")
        config.add_argument("--requires-approval", choices=ON_OFF)
        config.add_argument("--sso-required", choices=ON_OFF)
        invite = sub.add_parser("invite", help="mail an invitation with a role (prints its link)")
        invite.add_argument("--email", required=True)
        invite.add_argument("--role", required=True, choices=Role.values)
        invite.add_argument("--team", default="", help="a team editor's subtree")
        invite.add_argument("--expires", default="7d", help="lifetime: 30m, 12h, 7d (max 30d)")
        revoke = sub.add_parser("revoke-invitation", help="withdraw a pending invitation")
        revoke.add_argument("id", type=int)
        role = sub.add_parser("role", help="give an existing user a role, or change theirs")
        role.add_argument("--email", required=True)
        role.add_argument("--role", required=True, choices=Role.values)
        role.add_argument("--team", help="a team editor's subtree")
        remove = sub.add_parser("remove", help="take a member out (their API tokens go too)")
        remove.add_argument("--email", required=True)
        transfer = sub.add_parser("transfer", help="make a member the owner; you stay as admin")
        transfer.add_argument("--to", required=True, metavar="EMAIL")
        for action in (config, invite, revoke, role, remove, transfer):
            action.add_argument("--org", required=True)
        for action in (create, config, invite, revoke, role, remove, transfer):
            add_actor_argument(action)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "create":
                self._create(options)
                return
            org = organization_arg(options["org"])
            if action == "show":
                self._show(org)
                return
            actor = actor_arg(options["actor"])
            if action == "settings":
                org = organization_settings_update(
                    actor=actor,
                    organization=org,
                    requires_approval=ON_OFF.get(options["requires_approval"] or ""),
                    sso_required=ON_OFF.get(options["sso_required"] or ""),
                )
                self.stdout.write(
                    f"{org.slug}: requires approval {org.requires_approval}, "
                    f"single sign-on required {org.sso_required}"
                )
            elif action == "invite":
                invitation, secret = invitation_create(
                    actor=actor,
                    organization=org,
                    email=options["email"],
                    role=options["role"],
                    team_path=options["team"],
                    lifetime=duration_parse(options["expires"], maximum=timedelta(days=30)),
                )
                self.stderr.write(
                    f"invitation {invitation.pk} mailed to {invitation.email}; its link (shown "
                    "only now):"
                )
                self.stdout.write(invitation_link(secret))
            elif action == "revoke-invitation":
                found = Invitation.objects.filter(organization=org, pk=options["id"]).first()
                if found is None:
                    raise CommandError(f"no invitation {options['id']} in {org.slug}")
                invitation_revoke(actor=actor, invitation=found)
                self.stdout.write(f"invitation {found.pk} withdrawn")
            elif action == "role":
                membership = membership_grant(
                    actor=actor,
                    organization=org,
                    user=_user(options["email"]),
                    role=options["role"],
                    team_path=options["team"],
                )
                self.stdout.write(f"{options['email']} is {membership.role} of {org.slug}")
            elif action == "remove":
                found_member = membership_of(org, options["email"])
                if found_member is None:
                    raise CommandError(f"{options['email']} is not a member of {org.slug}")
                membership_remove(actor=actor, membership=found_member)
                self.stdout.write(f"{options['email']} removed from {org.slug}")
            else:
                ownership_transfer(actor=actor, organization=org, to=_user(options["to"]))
                self.stdout.write(f"{options['to']} is an owner of {org.slug}")
        except ApplicationError as exc:
            raise refused(exc, "nothing was changed") from None

    def _create(self, options: dict[str, Any]) -> None:
        email = options["owner"].strip().lower()
        with transaction.atomic():
            owner, made = _user_or_new(email)
            org = organization_create(
                actor=actor_arg(options["actor"]),
                slug=options["slug"],
                name=options["name"],
                owner=owner,
            )
        self.stdout.write(f"organisation {org.slug} created; {email} is its owner")
        if made:
            reset = f"{settings.BASE_URL.rstrip('/')}/accounts/password/reset/"
            send_mail(
                f"You own {org.name} on PolicyHub",
                f"An account was made for {email} as the owner of {org.name} ({org.slug}).\n\n"
                f"Choose your password at {reset} (enter {email}); the address is verified the "
                "first time you sign in.\n",
                None,
                [email],
            )
            self.stdout.write(f"a new account: {email} chooses a password at {reset}")

    def _show(self, org: Any) -> None:
        self.stdout.write(
            f"{org.slug}  {org.name}  requires approval: {org.requires_approval}  "
            f"single sign-on required: {org.sso_required}"
        )
        for member in members(org):
            scope = f" ({member.team.path})" if member.team else ""
            self.stdout.write(
                f"  {member.user.email or member.user.get_username()}\t{member.role}{scope}"
            )
        for invitation in invitations_pending(org):
            self.stdout.write(
                f"  invited {invitation.pk}: {invitation.email}\t{invitation.role}\t"
                f"expires {invitation.expires_at:%Y-%m-%d %H:%M}"
            )


def _user(key: str) -> User:
    user = user_by_key(key)
    if user is None:
        raise CommandError(f"no user {key!r}: invite them instead (org invite)")
    return user


def _user_or_new(email: str) -> tuple[User, bool]:
    """The user with this address, or a new account with no usable password yet."""
    user = user_by_key(email)
    if user is not None:
        return user, False
    user = User(username=email[:150], email=email)
    user.set_unusable_password()
    user.full_clean()
    user.save()
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
    return user, True
