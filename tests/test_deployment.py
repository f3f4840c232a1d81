"""What a production deployment is held to: `check --deploy` refuses a weak signing-key secret
(and `make check` passes with a strong one), and docker/compose.yaml passes what the app needs
behind its proxy."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.checks import run_checks

from policyhub.releases.checks import signing_key_secret_check

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
# Variables of this (test) environment that a production check must not inherit.
NOT_PRODUCTION = ("SIGNING_KEY_SECRET", "SECURE_SSL_REDIRECT", "LOCAL", "DEBUG", "REDIS_URL")
STRONG = secrets.token_urlsafe(48)

WEAK = {
    "missing, so SECRET_KEY": (None, "releases.E002"),
    "equal to SECRET_KEY": ("SECRET_KEY", "releases.E002"),
    "empty": ("", "releases.E001"),
    "31 characters": (STRONG[:31], "releases.E003"),
    "one sequence repeated": (STRONG[:11] * 3, "releases.E004"),
    "seven different characters": ("correct" * 5, "releases.E004"),
    "all one character": ("a" * 64, "releases.E004"),
}


def secret_value(value: str | None, settings: Any) -> str:
    """The setting as settings.py leaves it: unset falls back to SECRET_KEY."""
    return settings.SECRET_KEY if value in (None, "SECRET_KEY") else value


@pytest.mark.parametrize("name", sorted(WEAK))
def test_a_weak_signing_key_secret_fails_the_deployment_check(name: str, settings: Any) -> None:
    value, check_id = WEAK[name]
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.SIGNING_KEY_SECRET = secret_value(value, settings)
    (error,) = signing_key_secret_check(None)
    assert error.id == check_id and error.is_serious()
    assert "SIGNING_KEY_SECRET" in error.msg and "SIGNING_KEY_SECRET" in (error.hint or "")
    assert settings.SIGNING_KEY_SECRET not in error.msg + (error.hint or "") or value == ""


def test_a_strong_signing_key_secret_passes(settings: Any) -> None:
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    for strong in (STRONG, secrets.token_hex(16), secrets.token_urlsafe(24)):
        settings.SIGNING_KEY_SECRET = strong
        assert signing_key_secret_check(None) == []


def test_only_the_deployment_checks_ask_for_it(settings: Any) -> None:
    """The tests and `make run` (LOCAL) fall back to SECRET_KEY, and Django's ordinary checks
    (run by runserver, migrate and the tests) stay quiet about it."""
    settings.SIGNING_KEY_SECRET = settings.SECRET_KEY
    ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert "releases.E002" in ids
    assert not {m.id for m in run_checks()} & {check_id for _, check_id in WEAK.values()}


def check_deploy(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_PRODUCTION}
    env.update(
        DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="policyhub.example", **extra
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_names_the_missing_secret_and_passes_with_a_strong_one() -> None:
    missing = check_deploy({})
    assert missing.returncode != 0
    assert "releases.E002" in missing.stderr and "SIGNING_KEY_SECRET" in missing.stderr
    assert check_deploy({"SIGNING_KEY_SECRET": "x" * 40}).returncode != 0
    strong = check_deploy({"SIGNING_KEY_SECRET": STRONG})
    assert strong.returncode == 0, strong.stderr


def test_make_check_runs_the_deployment_check_with_a_strong_secret() -> None:
    """`make check`'s production line, as make runs it (`make -n` prints it)."""
    printed = subprocess.run(
        ["make", "-n", "check"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    (line,) = [line for line in printed.splitlines() if "check --deploy" in line]
    assert "SIGNING_KEY_SECRET=" in line
    env = {k: v for k, v in os.environ.items() if k not in NOT_PRODUCTION}
    run = subprocess.run(
        ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --- docker/compose.yaml -------------------------------------------------------------------------


def compose_environments() -> dict[str, dict[str, str]]:
    """Each service of the app image (the `x-app` anchor) and its environment."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    app = {name: s for name, s in services.items() if "build" in s}
    assert {"web", "worker", "beat", "migrate"} <= set(app), sorted(services)
    return {name: service["environment"] for name, service in app.items()}


def test_compose_passes_the_signing_secret_and_the_proxy_count() -> None:
    for name, environment in compose_environments().items():
        # Required: compose refuses to start without it (`${VAR:?message}`).
        assert re.fullmatch(
            r"\$\{SIGNING_KEY_SECRET:\?[^}]+\}", str(environment.get("SIGNING_KEY_SECRET"))
        ), name
        # Overridable, 1 by default: the TLS-terminating proxy the file documents.
        proxies = re.fullmatch(r"\$\{NUM_PROXIES:-(\d+)\}", str(environment.get("NUM_PROXIES")))
        assert proxies and proxies.group(1) == "1", (name, environment.get("NUM_PROXIES"))
    # web is reachable only through that proxy: the count is exact.
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]
    assert all(port.startswith("127.0.0.1:") for port in web["ports"]), web["ports"]
