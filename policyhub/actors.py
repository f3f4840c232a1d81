"""Who does something. Every service that changes anything takes an `Actor`, checks what it may
do (accounts.permissions) and records it on the audit event; nobody acts as "None".

- a person, signed in (`user`);
- an API token: a person, at most at the token's role, in the token's organisation (`token`);
- the server operator at the command line, named after their login (`operator`);
- a job acting on its own, such as the scheduler publishing a change set that is due (`system`);
- a machine: an enrolled device, or an enrolment token (`device`).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import StrEnum

from django.contrib.auth.models import User

# Room for the longest label: a 254-character email address and a token's " (API token …)".
LABEL_MAX_LENGTH = 300


class ActorKind(StrEnum):
    USER = "user"
    TOKEN = "token"
    OPERATOR = "operator"
    SYSTEM = "system"
    DEVICE = "device"


@dataclass(frozen=True)
class Actor:
    """One actor; build it with the class methods, which keep the fields consistent."""

    kind: ActorKind
    label: str  # as the audit trail shows it: an email, "operator:root", "system:scheduler"
    user: User | None = None  # the person behind a user or token actor
    token_id: int | None = None
    token_role: str = ""  # the token's role ceiling
    token_organization_id: int | None = None

    @classmethod
    def for_user(cls, user: User) -> Actor:
        if not user.is_authenticated or not user.pk:
            raise ValueError("an actor is a stored, signed-in user")
        return cls(ActorKind.USER, user.email or user.get_username(), user=user)

    @classmethod
    def for_token(
        cls, *, user: User, token_id: int, token_prefix: str, role: str, organization_id: int
    ) -> Actor:
        label = f"{user.email or user.get_username()} (API token {token_prefix}…)"
        return cls(
            ActorKind.TOKEN,
            label,
            user=user,
            token_id=token_id,
            token_role=role,
            token_organization_id=organization_id,
        )

    @classmethod
    def operator(cls, name: str | None = None) -> Actor:
        """The person running `manage.py` on the server, named after their login."""
        return cls(ActorKind.OPERATOR, f"operator:{name or getpass.getuser()}")

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(ActorKind.SYSTEM, f"system:{job}")

    @classmethod
    def device(cls, name: str) -> Actor:
        return cls(ActorKind.DEVICE, f"device:{name}")

    @classmethod
    def recorded(cls, kind: str, label: str, user: User | None) -> Actor:
        """An actor as a row recorded it (who asked for a publish run, who wrote a change set),
        for the work done later on their behalf."""
        return cls(ActorKind(kind), label, user=user)

    @property
    def is_person(self) -> bool:
        """A user or an API token: someone whose membership decides what they may do."""
        return self.kind in (ActorKind.USER, ActorKind.TOKEN)

    def __str__(self) -> str:
        return self.label


SCHEDULER = Actor.system("scheduler")
