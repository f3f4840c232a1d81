"""Log filters: no secret handed to a machine may reach a log line."""

from __future__ import annotations

import logging
import re
import string
from typing import Any

from gunicorn.glogging import Logger

from policyhub.credentials import (
    API_TOKEN_PREFIX,
    DEVICE_PREFIX,
    ENROLLMENT_PREFIX,
    FETCH_PREFIX,
    INVITATION_PREFIX,
)


def _character(characters: str) -> str:
    """One of `characters`, in either letter case, as written or percent-encoded: once (%70),
    twice (%2570) or more. Servers log the request line as the client sent it, and Django
    decodes the path, so `/config-server/%70hd_...` is a working credential."""
    characters = "".join(dict.fromkeys(characters.lower() + characters.upper()))
    codes = "|".join(f"{ord(c):02X}" for c in characters)
    return f"(?:[{re.escape(characters)}]|%(?:25)*(?:{codes}))"


# Device credentials (phd_) and their fetch credentials (phf_), enrolment tokens (phe_), API
# tokens (pht_) and invitations (phi_) (policyhub.credentials); the native channel carries a
# credential in its URL, so request
# lines, Referers and Django's "Unauthorized: /config-server/..." would show it. Matched in any
# encoding and letter case (hex digits too), the prefix kept as written. The prefixes differ only
# in their third character, so they are matched a column at a time (p, h, [detfi], _): three
# times faster than as five alternatives.
_PREFIXES = (DEVICE_PREFIX, FETCH_PREFIX, ENROLLMENT_PREFIX, API_TOKEN_PREFIX, INVITATION_PREFIX)
_SECRET_RE = re.compile(
    "("
    + "".join(_character("".join(column)) for column in zip(*_PREFIXES, strict=True))
    + ")"
    + _character(string.ascii_letters + string.digits + "_-")
    + "{8,}",
    re.IGNORECASE,
)
# Whatever an Authorization header carries after its scheme is a secret, in any encoding (Basic
# is base64 of user:password, and a client may send a credential that way by mistake).
_AUTHORIZATION_RE = re.compile(
    r"(?<![a-z])(basic|bearer)(\s+|%20|\+)[a-z0-9._~+/=%-]{8,}", re.IGNORECASE
)


def redact(text: str) -> str:
    return _SECRET_RE.sub(r"\1…", _AUTHORIZATION_RE.sub(r"\1\2…", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        # A traceback may quote a secret too (an exception's message, a request line).
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# One instance, so that adding it again (gunicorn sets its logger up again on reload) is a no-op.
_REDACT = RedactSecrets()
# The loggers of the production servers, outside Django's LOGGING: granian's access log (off in
# docker/Dockerfile, GRANIAN_LOG_ACCESS_ENABLED turns it on) and gunicorn's, whatever logger
# class it runs with.
SERVER_LOGGERS = ("granian.access", "_granian", "gunicorn.access", "gunicorn.error")


def redact_server_logs() -> None:
    """Redact what the WSGI server logs in this process (its workers load policyhub.wsgi, which
    calls this, after the server has set up its logging)."""
    for name in SERVER_LOGGERS:
        logging.getLogger(name).addFilter(_REDACT)


class RedactingGunicornLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logs (`--logger-class policyhub.logfilters.RedactingGunicornLogger`): request
    lines and headers without secrets, in the access log and in the error log (which may quote a
    request line it refused)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):  # the master's too, set up before the app
            log.addFilter(_REDACT)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        return {
            key: redact(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }
