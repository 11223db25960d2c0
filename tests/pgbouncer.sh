#!/usr/bin/env bash
# `make test-pgbouncer`: Debian's PgBouncer on loopback, in transaction mode, in front of the test
# Postgres, and the integration and e2e suites through it with server-side prepares off. The
# runtime's URLs (DATABASE_URL, DATABASE_SYSTEM_URL) go through the pooler; DATABASE_ADMIN_URL
# (migrations, CREATE DATABASE) goes straight to Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}

command -v pgbouncer >/dev/null || { echo "test-pgbouncer: pgbouncer is not installed (apt-get install pgbouncer)" >&2; exit 1; }
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d /tmp/adsapp-pgbouncer.XXXXXX)
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$PG_HOST port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = $dir/userlist.txt
default_pool_size = 20
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
# Trust, as the test Postgres on loopback: PgBouncer still wants every login role named.
printf '"%s" ""\n' adsapp_app adsapp_system postgres >"$dir/userlist.txt"

# PgBouncer refuses to run as root.
as_owner=()
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$dir"
  as_owner=(runuser -u postgres --)
fi
"${as_owner[@]}" pgbouncer -d "$dir/pgbouncer.ini"
stop() {
  if [ -s "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap stop EXIT
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p "$port" || { cat "$dir/pgbouncer.log" >&2; exit 1; }
echo "test-pgbouncer: PgBouncer $(pgbouncer --version | head -n1 | cut -d' ' -f2) on 127.0.0.1:$port (transaction mode)"

# Arguments name other tests (`bash tests/pgbouncer.sh tests/integration/db`).
[ $# -gt 0 ] || set -- tests/integration tests/e2e
ADSAPP_TEST_POOLER="127.0.0.1:$port" DATABASE_PREPARE_THRESHOLD=none .venv/bin/pytest -q "$@"
