#!/usr/bin/env bash
# The test command: lint, then the whole suite against the embedded defaults (SQLite, the
# filesystem broker) and against Postgres + Redis servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_POSTGRES_URL="$(scripts/services.sh)"
export TEST_POSTGRES_URL
export TEST_REQUIRE_SERVICES=1

.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
