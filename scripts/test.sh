#!/usr/bin/env bash
# Sets up and runs every check: ruff, mypy, the import contracts (lint-imports) and pytest against real SQLite, PostgreSQL and SMTP.
# PostgreSQL: uses DISPATCHER_TEST_PG_URL (default: the local server over its socket); as root on
# Debian it starts the packaged cluster if it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null && [ -z "${DISPATCHER_TEST_PG_URL:-}" ]; then
  version=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
  if [ -n "$version" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    su postgres -c "createuser -s root" 2>/dev/null || true
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
