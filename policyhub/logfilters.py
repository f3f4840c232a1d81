"""Log filters: no secret handed to a machine may reach a log line."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

# Device credentials (phd_), enrolment tokens (phe_), API tokens (pht_) and invitations (phi_)
# (policyhub.credentials); the native channel carries the credential in its URL, so Django's
# "Unauthorized: /config-server/..." line would show it.
_SECRET_RE = re.compile(r"\b(ph[deti]_)[A-Za-z0-9_-]{8,}")


def redact(text: str) -> str:
    return _SECRET_RE.sub(r"\1…", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class RedactingGunicornLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's access log (`--logger-class policyhub.logfilters.RedactingGunicornLogger`):
    request lines and headers without secrets."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        return {
            key: redact(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }
