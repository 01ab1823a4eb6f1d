#!/usr/bin/env bash
# Sets up and runs the demo on the embedded defaults: SQLite in var/, letters into var/outbox/.
# Only the demo action sends, to example.org addresses; nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
unset DISPATCHER_SMTP_URL DISPATCHER_DATABASE_URL
.venv/bin/dispatcher check
.venv/bin/dispatcher supporters import config/demo-supporters.csv
.venv/bin/dispatcher run --once
.venv/bin/dispatcher actions
.venv/bin/dispatcher log --summary
echo "The letters are in $(pwd)/var/outbox/new/ (one file per message)."
