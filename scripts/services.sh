#!/usr/bin/env bash
# Start the Postgres server the test suite uses, on 127.0.0.1 only, in its own throw-away
# cluster (Redis servers are started by the tests themselves, so they can stop and restart
# them). Prints the URL to export as TEST_POSTGRES_URL. Safe to run again.
set -euo pipefail

PG_PORT="${TEST_POSTGRES_PORT:-55432}"
PG_ROOT="${TMPDIR:-/tmp}/radraft-test-postgres"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$PG_BIN" ]; then
  echo "services.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi

run_as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  mkdir -p "$PG_ROOT"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PG_ROOT"; fi
  if [ ! -f "$PG_ROOT/data/PG_VERSION" ]; then
    run_as_postgres "$PG_BIN/initdb" -D "$PG_ROOT/data" -U postgres --auth=trust >/dev/null
  fi
  # fsync off: a test cluster is thrown away; radraft's own durability is tested on SQLite
  # and by killing processes, not by crashing this server's machine.
  run_as_postgres "$PG_BIN/pg_ctl" -s -D "$PG_ROOT/data" -l "$PG_ROOT/server.log" -w start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_ROOT -c fsync=off -c max_connections=300"
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
