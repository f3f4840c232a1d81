"""Real signed bundles, a PolicyHub stand-in that speaks the device API over real sockets, and a
runner for the real agent CLI, for the agent tests that need no database."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import io
import ipaddress
import json
import os
import secrets
import ssl
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from policyhub_agent import cli

from policyhub.releases.signing import (
    canonical_json,
    endorsement_message,
    measurement_message,
    signed_time_message,
)

HOME = "/home/dev"
MISSING_CODEX = "/nonexistent/codex"
REQUIREMENTS = """\
# Managed by PolicyHub for team acme/engineering/web, revision 1. Local edits are overwritten.
allowed_sandbox_modes = ["read-only", "workspace-write"]
allowed_approval_policies = ["on-request"]

[features]
web_search_request = false
"""
CONFIG = """\
# Managed by PolicyHub for team acme/engineering/web, revision 1. Local edits are overwritten.
model = "gpt-5.5"
model_provider = "openai"
"""
PROFILE_CI = 'model = "codex-ci"\nmodel_provider = "azure"\n'
PROFILE_FAST = 'model = "gpt-5.5-mini"\n'


def default_files() -> dict[str, str]:
    return {
        "requirements.toml": REQUIREMENTS,
        "config.toml": CONFIG,
        "profiles/ci.config.toml": PROFILE_CI,
        "profiles/fast.config.toml": PROFILE_FAST,
    }


class Signer:
    """An organisation signing key, made the way the server makes one."""

    def __init__(self, endorsed_by: Signer | None = None) -> None:
        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]
        self.public_key = base64.b64encode(raw).decode()
        self.endorsed_by = endorsed_by
        self.endorsement = (
            endorsed_by.sign(endorsement_message(self.key_id, self.public_key))
            if endorsed_by
            else None
        )

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()

    def key(self, status: str = "active") -> dict[str, Any]:
        """The KEY object of the device API."""
        return {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "status": status,
            "endorsed_by": self.endorsed_by.key_id if self.endorsed_by else None,
            "endorsement": self.endorsement,
        }


def bundle(
    signer: Signer,
    *,
    revision: int = 1,
    files: dict[str, str] | None = None,
    organization: str = "acme",
    team: str = "engineering/web",
    codex: dict[str, Any] | None = None,
    measured_until: str | None = None,
    signed_at: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A bundle exactly as the server builds one: hashes, canonical manifest, signature.

    `codex`: the signed Codex versions the files are for (None: a release made before them);
    `measured_until`: the newest Codex release measured then, signed beside the manifest (None:
    a release made before that was signed); `signed_at`: when it was signed, signed beside the
    manifest too (None: a server that signs no time)."""
    files = default_files() if files is None else files
    hashes = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    digest = hashlib.sha256("".join(sorted(hashes.values())).encode()).hexdigest()
    fields = {
        "organization": organization,
        "team": team,
        "revision": revision,
        "files": hashes,
        "content_digest": digest,
        "key_id": signer.key_id,
    }
    manifest = canonical_json(fields if codex is None else {**fields, "codex": codex})
    made = {
        "organization": organization,
        "team": team,
        "revision": revision,
        "files": files,
        "hashes": hashes,
        "manifest": manifest.decode(),
        "signature": signer.sign(manifest),
        "key_id": signer.key_id,
    }
    if measured_until is not None:
        statement = measurement_message(manifest.decode(), measured_until)
        made["measurement"] = statement.decode()
        made["measurement_signature"] = signer.sign(statement)
    if signed_at is not None:
        stamp = signed_time_message(manifest.decode(), signed_at)
        made["signed_time"], made["signed_time_signature"] = stamp.decode(), signer.sign(stamp)
    return made


def resign(data: dict[str, Any], signer: Signer, **manifest_changes: Any) -> dict[str, Any]:
    """`data` with its manifest changed and signed again (a server signing something bad)."""
    manifest = json.loads(data["manifest"])
    manifest.update(manifest_changes)
    text = canonical_json(manifest)
    return {**data, "manifest": text.decode(), "signature": signer.sign(text)}


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class Seen:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeHub:
    """What the PolicyHub stand-in answers; tests change it between agent runs."""

    signer: Signer
    token: str = "phe_" + "t" * 43
    organization: str = "acme"
    team: str = "engineering/web"
    enroll_keys: list[dict[str, Any]] | None = None
    listed_keys: list[dict[str, Any]] = field(default_factory=list)
    body: bytes | None = None
    etag: str = '"r1"'
    credential: str = field(default_factory=lambda: "phd_" + secrets.token_urlsafe(32))
    device_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    revoked: bool = False
    status_code: int = 204
    # A network or server fault on the next bundle download: "truncate", "oversize", "redirect".
    fault: str | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    # The signed team assignment it answers: the team (None: `team`), its number, and the key
    # that signs it (None: `signer`).
    assigned_team: str | None = None
    assignment: int = 0
    assignment_signer: Signer | None = None
    # path -> (status, raw body) answered instead of the usual answer: a hostile server.
    overrides: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def assignment_answer(self) -> dict[str, Any]:
        signer = self.assignment_signer or self.signer
        statement = canonical_json(
            {
                "device_id": self.device_id,
                "organization": self.organization,
                "purpose": "policyhub-device-assignment",
                "serial": self.assignment,
                "team": self.assigned_team or self.team,
            }
        )
        return {
            "statement": statement.decode(),
            "signature": signer.sign(statement),
            "key_id": signer.key_id,
        }

    def publish(self, data: dict[str, Any] | bytes, etag: str | None = None) -> None:
        self.body = data if isinstance(data, bytes) else encode(data)
        self.etag = etag or f'"{hashlib.sha256(self.body).hexdigest()[:32]}"'

    def requests(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def _fault(self, fault: str) -> None:
        """Break the answer the way networks and misconfigured servers do."""
        body = self.hub.body or b""
        if fault == "redirect":
            self._reply(302, b"", {"Location": "https://elsewhere.example/api/v1/device/bundle"})
            return
        self.send_response(200)
        self.send_header("ETag", self.hub.etag)
        self.send_header("Content-Type", "application/json")
        if fault == "oversize":
            self.send_header("Content-Length", str(9 * 1024 * 1024))
            self.end_headers()
        else:  # "truncate": the full length announced, half of the body sent, then the close
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def _error(self, status: int, detail: str, errors: dict[str, list[str]] | None = None) -> None:
        body: dict[str, Any] = {"detail": detail}
        if errors:
            body["errors"] = errors
        self._reply(status, json.dumps(body).encode())

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.hub.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        return body

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.hub.credential}" or self.hub.revoked:
            self._error(401, "unknown or revoked device credential")
            return False
        return True

    def do_GET(self) -> None:
        self._record()
        hub = self.hub
        if not self._authorised():
            return
        if self.path in hub.overrides:
            status, raw = hub.overrides[self.path]
            self._reply(status, raw, {"ETag": '"hostile"'})
        elif self.path == "/api/v1/keys":
            self._reply(200, json.dumps({"keys": hub.listed_keys}).encode())
        elif self.path == "/api/v1/device/assignment":
            self._reply(200, json.dumps(hub.assignment_answer()).encode())
        elif self.path == "/api/v1/device/bundle":
            if hub.fault:
                self._fault(hub.fault)
            elif hub.body is None:
                self._error(404, "this team has no published release yet")
            elif self.headers.get("If-None-Match") == hub.etag:
                self._reply(304, headers={"ETag": hub.etag})
            else:
                self._reply(200, hub.body, {"ETag": hub.etag})
        else:
            self._error(404, "not found")

    def do_POST(self) -> None:
        body = self._record()
        hub = self.hub
        if self.path == "/api/v1/device/enroll":
            if body.get("token") != hub.token:
                self._error(401, "unknown enrolment token")
                return
            keys = hub.enroll_keys if hub.enroll_keys is not None else [hub.signer.key()]
            answer = {
                "device_id": hub.device_id,
                "credential": hub.credential,
                "organization": hub.organization,
                "team": hub.team,
                "keys": keys,
                "assignment": hub.assignment,
            }
            self._reply(201, json.dumps(answer).encode())
        elif self.path == "/api/v1/device/status":
            if not self._authorised():
                return
            if hub.status_code == 204:
                self._reply(204)
            else:
                self._error(hub.status_code, "status reports are switched off")
        else:
            self._error(404, "not found")


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policyhub test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def serve(hub: FakeHub, tls_dir: Path | None = None) -> Iterator[Path | None]:
    """Run the stand-in on a free loopback port (https when `tls_dir` is given); yields the CA."""
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ca = None
    if tls_dir is not None:
        ca, key = _certificate(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ca, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls_dir is not None else "http"
    hub.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield ca
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(root: Path, *args: str) -> Result:
    """The agent CLI in this process, re-rooted at `root`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["--root", str(root), *args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every directory, file (bytes and mode) and link under `root`, by relative path."""
    tree: dict[str, Any] = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(directory) / name
            rel = str(path.relative_to(root))
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                tree[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                tree[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                tree[rel] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode))
    return tree


def enroll(root: Path, hub: FakeHub, *extra: str) -> Result:
    """`enroll` against the stand-in (which also runs the first sync)."""
    return run(
        root,
        "enroll",
        "--server",
        hub.url,
        "--token",
        hub.token,
        "--codex-bin",
        MISSING_CODEX,
        *extra,
    )
