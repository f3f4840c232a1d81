"""The failures the agent reports: each is one line for the user and maps to an exit code."""

from __future__ import annotations


class AgentError(Exception):
    """A failure of the command (exit 1); its text is the one-line reason shown on stderr."""

    exit_code = 1


class UsageError(AgentError):
    """A wrong invocation or a missing enrolment (exit 2)."""

    exit_code = 2


class NotEnrolled(UsageError):
    """There is no enrolment on this machine yet."""

    def __init__(self) -> None:
        super().__init__("this device is not enrolled; run `policyhub-agent enroll` first")


class VerificationError(AgentError):
    """A bundle or key failed verification; nothing from it may be written."""


class UnknownSigningKey(VerificationError):
    """The bundle names a signing key that is not pinned (yet)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"the bundle is signed by key {key_id}, which is not pinned")
        self.key_id = key_id


class MalformedAnswer(AgentError):
    """The server's answer is not what the protocol says: not JSON, nested too deep, larger than
    allowed, or of another shape. Reported to the server like a refused bundle."""


class NetworkError(AgentError):
    """The server could not be reached or the transfer broke off."""


class ServerError(AgentError):
    """The server answered with an error status; `detail` and `errors` come from its JSON body."""

    def __init__(
        self, action: str, status: int, detail: str, errors: dict[str, list[str]] | None = None
    ) -> None:
        text = f"{action}: the server answered {status}: {detail}"
        for field, messages in (errors or {}).items():
            text += f"; {field}: {' '.join(messages)}"
        super().__init__(text)
        self.status = status
        self.detail = detail
        self.errors = errors or {}
