"""The one error type services raise for bad input; views, APIs and commands map it to a clean
answer that lists every issue with its field path."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError

from providers.base import Issue


class ApplicationError(Exception):
    """A request PolicyHub refuses: nothing was stored."""

    def __init__(self, message: str, issues: Sequence[Issue] = ()) -> None:
        self.message, self.issues = message, list(issues)
        super().__init__(message)


def invalid_fields(message: str, error: ValidationError) -> ApplicationError:
    """A model's validation error as a refusal naming each field."""
    issues = [
        Issue("error", field, text) for field, texts in error.message_dict.items() for text in texts
    ]
    return ApplicationError(message, issues)


class NotPermitted(ApplicationError):
    """The request is well formed but the acting user's role does not allow it (HTTP 403)."""
