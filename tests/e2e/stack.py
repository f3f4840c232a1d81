"""A production-shaped PolicyHub for end-to-end tests: granian on the test database behind nginx
terminating TLS with a throw-away CA, inside a network namespace of its own. A "machine" (the
agent, Codex) runs in the same namespace and reaches https://127.0.0.1:8443; nothing else can.

The app server stays in the host namespace (it needs PostgreSQL on the host's loopback) and listens on
a Unix socket, which crosses namespaces; nginx proxies to it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db import connection

from policyhub.delivery.cache import DeliveryCache
from policyhub.delivery.index import HostIndex, index_path
from tests.codex.harness import REPO_ROOT

PORT = 8443
# The production server as docker/Dockerfile runs it (granian; bench/fetch.py chose it).
PRODUCTION_SERVER_ARGS = ["--interface", "wsgi", "--workers", "2", "--blocking-threads", "2"]

NGINX_CONF = """
# Workers as root: they must reach the socket in a private temp folder.
user root;
worker_processes 1;
daemon on;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {work}/server.pem;
        ssl_certificate_key {work}/server.key;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-Proto https;
        location / {{
            proxy_pass http://unix:{socket}:;
        }}
        # The native channel's URL carries the device credential, and the error log quotes the
        # request line of a request nginx could not pass on (at levels up to crit).
        location /config-server/ {{
            proxy_pass http://unix:{socket}:;
            error_log {work}/nginx-error.log emerg;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Stack:
    url: str
    ca: Path
    netns: str
    work: Path

    def run(
        self, command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """A command on the machine: inside the namespace, where the server is reachable."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *command],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=REPO_ROOT,
        )


def _write_tls(work: Path) -> Path:
    """A CA and a certificate for 127.0.0.1 signed by it; returns the CA's PEM."""
    now = dt.datetime.now(dt.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policyhub test CA")])
    ca_cert = certificate("policyhub test CA", ca_key, ca_name, ca_key, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("127.0.0.1", server_key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    (work / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (work / "server.pem").write_bytes(server_cert.public_bytes(pem))
    (work / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return work / "ca.pem"


def database_url(port: int | None = None) -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{port or db['PORT']}/{db['NAME']}"


def _wait(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:g}s")


def wait_for_index(database_port: int | None = None) -> None:
    """Wait until the stack's delivery index has a writer that holds every change committed
    before the call. Its server's workers start the writer at their first request; until it has
    built the index, a fetch is answered from PostgreSQL alone."""
    database = {
        **connection.settings_dict,
        "PORT": database_port or connection.settings_dict["PORT"],
    }
    reader = DeliveryCache(HostIndex(index_path(settings.DELIVERY_INDEX_DIR, database)))
    try:
        _wait(lambda: reader.catch_up(timeout=1), "the delivery index's writer")
    finally:
        reader.index.close()


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(sock))
        except OSError:
            return False
    return True


class TcpProxy:
    """A loopback TCP forwarder to simulate an outage: `cut()` drops every connection and
    refuses new ones, `mend()` accepts them again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for end in self.open:
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            self.open.clear()

    def mend(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@contextmanager
def running_stack(*, database_port: int | None = None) -> Iterator[Stack]:
    """Start server, nginx and the namespace; tear everything down afterwards. With
    `database_port`, server reaches PostgreSQL through that port (a TcpProxy)."""
    for tool in ("nginx", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise RuntimeError(f"{tool} is not installed (make test installs it)")
    # A short path: a Unix socket path may not exceed 107 bytes.
    work = Path(tempfile.mkdtemp(prefix="ph-e2e-", dir="/tmp"))
    netns = f"policyhub-{uuid.uuid4().hex[:8]}"
    sock = work / "app.sock"
    ca = _write_tls(work)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(database_port),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "1",  # as in production: nginx says the request came over TLS
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("granian")),
            *PRODUCTION_SERVER_ARGS,
            "--uds",
            str(sock),
            "--uds-permissions",
            "0o600",
            "--log-level",
            "warning",
            "policyhub.wsgi:application",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    nginx_conf = work / "nginx.conf"
    nginx_conf.write_text(NGINX_CONF.format(work=work, port=PORT, socket=sock))
    nginx = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(nginx_conf), "-p", str(work)]
    netns_made = False
    try:
        _wait(lambda: _answers(sock), "server")
        subprocess.run(["ip", "netns", "add", netns], check=True)
        netns_made = True
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", netns, *nginx], check=True, capture_output=True)
        stack = Stack(url=f"https://127.0.0.1:{PORT}", ca=ca, netns=netns, work=work)
        _wait(
            lambda: stack.run([sys.executable, "-c", PROBE.format(port=PORT)]).returncode == 0,
            "nginx",
        )
        yield stack
    finally:
        if netns_made:
            subprocess.run(
                ["ip", "netns", "exec", netns, *nginx, "-s", "stop"], capture_output=True
            )
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


PROBE = "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
