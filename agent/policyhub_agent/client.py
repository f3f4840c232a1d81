"""The PolicyHub device API over HTTPS (plain HTTP only to loopback), with the standard library."""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from policyhub_agent import __version__
from policyhub_agent.errors import (
    AgentError,
    MalformedAnswer,
    NetworkError,
    ServerError,
    UsageError,
)
from policyhub_agent.verify import MAX_BUNDLE_BYTES, unicode_clean

TIMEOUT = 30.0
MAX_JSON_BYTES = 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
# What of an error answer's text is shown and reported (a hostile server may send a lot).
MAX_DETAIL_CHARS = 500
ETAG_RE = re.compile(r'(W/)?"[\x21\x23-\x7e]{0,200}"')


def normalize_server(url: str) -> str:
    """The server base URL without a trailing slash; refuses what the agent must not talk to."""
    url = url.strip().rstrip("/")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise UsageError(f"--server must be an https:// URL, got {url!r}")
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise UsageError("--server must not carry a user, password, query or fragment")
    if not url.isascii() or not url.isprintable() or any(c in url for c in ' "\\'):
        raise UsageError("--server must be a plain ASCII URL without spaces or quotes")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise UsageError(
            "refusing plain http to a remote server: the enrolment token, the device credential "
            "and the policy would cross the network readable and forgeable; use https:// "
            "(plain http is allowed only to localhost for development)"
        )
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are errors: following one would hand the bearer credential to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    """One server, optionally one device credential."""

    def __init__(
        self, server: str, credential: str | None = None, ca_bundle: str | None = None
    ) -> None:
        self.server = server
        self._credential = credential
        try:
            context = ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise AgentError(f"cannot load the CA bundle {ca_bundle}: {exc}") from exc
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=context)
        )

    def enroll(
        self, *, token: str, hostname: str, os_name: str, codex_version: str | None
    ) -> dict[str, Any]:
        """Exchange an enrolment token for this device's id and credential."""
        body = {"token": token, "hostname": hostname, "os": os_name, "codex_version": codex_version}
        response = self._call("enrolment", "POST", "/api/v1/device/enroll", body, (201,))
        return _json_object("enrolment", response.body)

    def bundle(self, *, etag: str | None, codex_version: str | None) -> Response:
        """The team's current bundle: 200 with a body, 304 when `etag` is current, 404 when none."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if codex_version:
            headers["X-Codex-Version"] = codex_version
        return self._call(
            "bundle download",
            "GET",
            "/api/v1/device/bundle",
            None,
            (200, 304, 404),
            headers,
            limit=MAX_BUNDLE_BYTES,
        )

    def keys(self) -> list[Any]:
        """The organisation's signing keys as the server lists them (not yet trusted)."""
        response = self._call("key list", "GET", "/api/v1/keys", None, (200,))
        keys = _json_object("key list", response.body).get("keys")
        if not isinstance(keys, list):
            raise MalformedAnswer("key list: the server's answer has no 'keys' list")
        return keys

    def key_answer(self) -> dict[str, Any]:
        """The organisation's signing keys and its revocations as the server lists them (not yet
        trusted): `keys`, and from servers that revoke keys `revocations` with its signature
        and key id, and `self_revocations`."""
        response = self._call("key list", "GET", "/api/v1/keys", None, (200,))
        answer = _json_object("key list", response.body)
        if not isinstance(answer.get("keys"), list):
            raise MalformedAnswer("key list: the server's answer has no 'keys' list")
        return answer

    def assignment(self) -> dict[str, Any]:
        """The server's signed assignment of this device to its team."""
        response = self._call("team assignment", "GET", "/api/v1/device/assignment", None, (200,))
        return _json_object("team assignment", response.body)

    def rotate_credential(self, new_credential: str) -> dict[str, Any]:
        """Replace this device's credential with `new_credential`; the answer names the new
        fetch credential. From then on this client authenticates with the new credential."""
        body = {"credential": new_credential}
        response = self._call(
            "credential rotation", "POST", "/api/v1/device/credential", body, (200,)
        )
        self._credential = new_credential
        return _json_object("credential rotation", response.body)

    def use_credential(self, credential: str) -> None:
        self._credential = credential

    def post_status(self, body: dict[str, Any]) -> None:
        """Report what this device applied and what went wrong."""
        self._call("status report", "POST", "/api/v1/device/status", body, (204, 200))

    def _call(
        self,
        action: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        expected: tuple[int, ...],
        headers: dict[str, str] | None = None,
        limit: int = MAX_JSON_BYTES,
    ) -> Response:
        request = urllib.request.Request(self.server + path, method=method)
        request.add_header("User-Agent", f"policyhub-agent/{__version__}")
        request.add_header("Accept", "application/json")
        if self._credential:
            request.add_header("Authorization", f"Bearer {self._credential}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if body is not None:
            request.data = json.dumps(body, ensure_ascii=False).encode()
            request.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with self._opener.open(request, timeout=TIMEOUT) as reply:
                status, data = reply.status, _read(reply, limit, action)
                reply_headers = {k.lower(): v for k, v in reply.headers.items()}
        except urllib.error.HTTPError as exc:
            status, reply_headers = exc.code, {k.lower(): v for k, v in exc.headers.items()}
            data = b"" if status == 304 else _read(exc, MAX_ERROR_BYTES, action, strict=False)
            if 300 <= status < 400 and status != 304:
                location = reply_headers.get("location", "?")
                raise AgentError(
                    f"{action}: the server redirected to {location}; enrol with that URL instead"
                ) from None
        except urllib.error.URLError as exc:
            raise NetworkError(f"{action}: cannot reach {self.server}: {_reason(exc)}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"{action}: the connection to {self.server} failed: {exc}") from exc
        if status not in expected:
            detail, errors = _error_body(data)
            raise ServerError(action, status, detail, errors)
        return Response(status, reply_headers, data)


def _read(reply: Any, limit: int, action: str, strict: bool = True) -> bytes:
    """The whole body, refusing more than `limit` bytes and a body shorter than announced."""
    length_header = reply.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    if length is not None and length > limit:
        raise MalformedAnswer(
            f"{action}: the answer is {length} bytes, more than the {limit} allowed"
        )
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := reply.read(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise MalformedAnswer(
                    f"{action}: the answer is more than the {limit} bytes allowed"
                )
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as exc:
        if strict:
            raise NetworkError(f"{action}: the download broke off: {exc!r}") from exc
    data = b"".join(chunks)
    if strict and length is not None and len(data) != length:
        raise NetworkError(f"{action}: the download broke off after {len(data)} of {length} bytes")
    return data


def _reason(exc: urllib.error.URLError) -> str:
    reason = exc.reason
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed ({reason.verify_message}); if the server uses "
            "a private CA, enrol with --ca-bundle"
        )
    return str(reason)


def _json_object(action: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedAnswer(f"{action}: the server's answer is not valid JSON") from exc
    if not isinstance(value, dict):
        raise MalformedAnswer(f"{action}: the server's answer is not a JSON object")
    if not unicode_clean(value):
        raise MalformedAnswer(f"{action}: the server's answer holds text that is not valid Unicode")
    return value


def _error_body(data: bytes) -> tuple[str, dict[str, list[str]]]:
    """`detail` and `errors` of a JSON error body; a short plain excerpt of anything else."""
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        text = data.decode(errors="replace").strip()
        return (" ".join(text.split())[:200] or "no details given"), {}
    if not isinstance(value, dict):
        return "no details given", {}
    detail = value.get("detail")
    errors: dict[str, list[str]] = {}
    raw_errors = value.get("errors")
    if isinstance(raw_errors, dict):
        for field, messages in raw_errors.items():
            if isinstance(messages, list):
                errors[str(field)] = [str(m) for m in messages]
            else:
                errors[str(field)] = [str(messages)]
    return (str(detail)[:MAX_DETAIL_CHARS] if detail else "no details given"), {
        field[:MAX_DETAIL_CHARS]: [m[:MAX_DETAIL_CHARS] for m in messages[:10]]
        for field, messages in list(errors.items())[:10]
    }


def valid_etag(value: str | None) -> str | None:
    """The ETag if it is a well-formed quoted string (it goes back into a header), else None."""
    return value if value and ETAG_RE.fullmatch(value) else None
