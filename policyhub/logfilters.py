"""Log filters: no secret handed to a machine may reach a log line."""

from __future__ import annotations

import logging
import re

# Device credentials (phd_) and enrolment tokens (phe_); the native channel carries the
# credential in its URL, so Django's "Unauthorized: /config-server/..." line would show it.
_SECRET_RE = re.compile(r"\b(ph[de]_)[A-Za-z0-9_-]{8,}")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_RE.sub(r"\1…", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
