# Routine actions. The two that matter: `make run` (PolicyHub with demo data) and `make test`.
# Fast tiers of the suite have their own targets: `make unit` (no services), `make lint`,
# `make check`, `make faults`; `make help` lists them all.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The Codex releases the suite runs against, from the one home of Codex-version facts.
CODEX_VERSIONS := $(shell $(PYTHON) -m providers.codex_versions suite)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# Settings for everything that loads Django outside `make run` (checks, type checks, tests).
UNIT_ENV := SECRET_KEY=test-only-not-a-secret SECURE_SSL_REDIRECT=0
TEST_ENV := $(UNIT_ENV) DATABASE_URL=$(TEST_DATABASE_URL)
HOST ?= 127.0.0.1
PORT ?= 8000
AXE_VERSION := 4.14.1

.PHONY: help run test unit faults lint check pytest hooks venv venv-dev services codex codex-probe browser tools clean

help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## //'

## run: PolicyHub on http://127.0.0.1:8000 with the demo organisation (SQLite and in-process
##   tasks by default; PostgreSQL, Redis and a Celery worker when DATABASE_URL/REDIS_URL are set).
run: venv
	@export LOCAL=$${LOCAL:-1}; \
	$(PY) manage.py migrate --no-input -v0 && $(PY) manage.py seed_demo && \
	if [ -n "$$REDIS_URL" ]; then \
		$(VENV)/bin/celery -A policyhub worker --loglevel=INFO --concurrency=2 & \
		trap 'kill %1 2>/dev/null' EXIT; \
	fi; \
	echo; echo "PolicyHub: http://$(HOST):$(PORT)/  (sign in with the demo login above)"; echo; \
	$(PY) manage.py runserver $(HOST):$(PORT)

## test: everything CI runs: lint and type checks, Django's checks, then the whole suite on
##   PostgreSQL and Redis with the real Codex binaries and a real browser.
test: venv-dev services codex browser tools lint check pytest

## unit: the tests that need no service (no database, Codex or browser), in seconds.
unit: venv-dev
	$(UNIT_ENV) $(VENV)/bin/pytest -n 2 -m "not database and not codex and not browser and not server" $(PYTEST_ARGS)

## faults: the fault tests (tests/faults; docs/faults.md), in under a minute: a PostgreSQL and a
##   Redis of their own, stopped and restarted under real Celery workers, and races on the real
##   database (needs `make services`: the test database, and the servers' programs).
faults: venv-dev
	$(TEST_ENV) $(VENV)/bin/pytest -n 2 tests/faults $(PYTEST_ARGS)

## lint: ruff (lint and format) and mypy, exactly as the pre-commit hook runs them.
lint: venv-dev
	$(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

## check: Django's system checks (also the production deployment checklist), migrations, and
##   the API's OpenAPI schema (generated from the code, validated, no warning allowed).
check: venv-dev
	$(TEST_ENV) $(PY) manage.py check --fail-level WARNING
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	DEBUG=0 SECRET_KEY=$$(head -c 48 /dev/urandom | base64) ALLOWED_HOSTS=policyhub.example \
		SIGNING_KEY_SECRET=$$(head -c 48 /dev/urandom | base64) \
		DATABASE_URL=$(TEST_DATABASE_URL) $(PY) manage.py check --deploy --fail-level WARNING

## pytest: the whole suite (needs `make services codex browser tools`); PYTEST_ARGS narrows it,
##   e.g. PYTEST_ARGS="-k resolution".
pytest: venv-dev
	$(TEST_ENV) REDIS_URL=$(TEST_REDIS_URL) POLICYHUB_REQUIRE_CODEX=1 POLICYHUB_REQUIRE_BROWSER=1 \
		$(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

## hooks: run lint before every commit (pre-commit's git hook).
hooks: venv-dev
	$(VENV)/bin/pre-commit install

## venv, venv-dev: .venv with what running needs, or with the test, lint and type-check tools and
##   the agent on top (its tests run against the server); each reinstalls when its inputs change.
venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e .
	@touch $@
$(VENV)/.installed-dev: pyproject.toml agent/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]' -e ./agent
	@touch $@ $(VENV)/.installed

## services: start PostgreSQL and Redis on loopback if they are down (installing them if missing).
services:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
		command -v pg_ctlcluster >/dev/null || { apt-get update -q && apt-get install -y -q postgresql; }; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | tail -n1) main start; \
		for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
		command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }; \
		mkdir -p /var/lib/redis /var/log/redis; \
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
			--dir /var/lib/redis --logfile /var/log/redis/ci.log; \
		for i in $$(seq 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 1; done; \
	fi
	@pg_isready -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 ping

## codex: the Codex CLI releases of the suite (providers/codex_versions.py SUITE_VERSIONS),
##   project-local and git-ignored (CODEX_VERSIONS="0.170.0" installs another instead).
codex:
	@test -n "$(CODEX_VERSIONS)" || { echo "no Codex versions: $(PYTHON) -m providers.codex_versions suite failed"; exit 1; }
	@for v in $(CODEX_VERSIONS); do \
		bin=.codex-bin/$$v/node_modules/.bin/codex; \
		if ! $$bin --version 2>/dev/null | grep -qx "codex-cli $$v"; then \
			mkdir -p .codex-bin/$$v && \
			npm install --no-audit --no-fund --loglevel=error --prefix .codex-bin/$$v @openai/codex@$$v; \
		fi; \
		$$bin --version; \
	done

## codex-probe: measure a new Codex release on its real binary, offline, beside the newest
##   measured one (both installed as `make codex` does) and print the capability-table entry, the
##   feature rows and the protocol-schema areas to add: `make codex-probe VERSION=0.172.0`
##   (AGAINST=0.171.0 compares with another; docs/adding-a-codex-release.md).
codex-probe: venv-dev
	@test -n "$(VERSION)" || { echo "usage: make codex-probe VERSION=0.172.0 [AGAINST=0.171.0]"; exit 1; }
	$(UNIT_ENV) $(PY) manage.py codex probe $(VERSION) $(if $(AGAINST),--against $(AGAINST))

## browser: Debian's Chromium for the browser tests (Playwright drives it; it downloads nothing)
##   and axe-core, which checks each page's accessibility.
browser:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	@chromium --version
	@# axe-core checks every page's accessibility in the browser tests (injected by Playwright).
	@test -f .browser/node_modules/axe-core/axe.min.js || \
		npm install --no-audit --no-fund --loglevel=error --prefix .browser axe-core@$(AXE_VERSION)

## tools: nginx (TLS in front of the app in the end-to-end tests), curl, and wrk (benchmarks).
tools:
	@if ! { test -x /usr/sbin/nginx && command -v curl && command -v wrk; } >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends nginx-light curl wrk && \
		{ /usr/sbin/nginx -s quit 2>/dev/null || true; }; \
	fi
	@# (the packaged nginx may start on port 80 of every address at install; it is stopped)
	@/usr/sbin/nginx -v && wrk --version 2>&1 | head -n1

## clean: remove .venv, the Codex binaries, the SQLite database and the tool caches.
clean:
	rm -rf $(VENV) .codex-bin policyhub.sqlite3 .mypy_cache .ruff_cache
