"""What other apps hang on teams, and how they take part when teams are deleted.

Teams sit low in the app graph (docs/architecture.md); the fleet, above them, enrols machines
into teams. Deleting a team must still ask the fleet first (its machines would lose their policy)
and let it clean up. So an app that keeps rows on teams registers a `TeamAttachment` from its
`AppConfig.ready()`, and `team_delete_check` and `team_delete` consult every registered one: the
teams app knows that attachments exist, not what they are.
"""

from __future__ import annotations

from typing import Protocol

from django.db.models import QuerySet

from policyhub.accounts.models import Organization
from policyhub.actors import Actor
from policyhub.errors import ApplicationError
from policyhub.teams.models import Team


class TeamAttachment(Protocol):
    """Rows of another app that belong to teams."""

    def deletion_refusal(
        self, organization: Organization, subtree: QuerySet[Team]
    ) -> ApplicationError | None:
        """Why the teams of `subtree` may not be deleted now (None: they may)."""
        ...

    def delete_with(
        self, organization: Organization, subtree: QuerySet[Team], actor: Actor, reason: str
    ) -> None:
        """Delete, with an audit event each, what the teams of `subtree` still hold; runs in the
        deleting transaction, after `deletion_refusal` said yes."""
        ...


_attachments: list[TeamAttachment] = []


def team_attachment_register(attachment: TeamAttachment) -> None:
    """Called from an app's AppConfig.ready(); registering the same kind again changes nothing."""
    if not any(type(known) is type(attachment) for known in _attachments):
        _attachments.append(attachment)


def team_attachments() -> tuple[TeamAttachment, ...]:
    return tuple(_attachments)
