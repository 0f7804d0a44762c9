#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server beside it: `.ci/postgres.sh make test`.
#
# Installs Debian's `postgresql` if it is missing, initialises a fresh cluster in a temporary
# directory, starts it on 127.0.0.1 (a free port; no other address, its socket in that directory),
# creates the `bastion` role and database, and runs the command with
#   BASTION_TEST_POSTGRES_URL=postgresql+psycopg://bastion:PASSWORD@127.0.0.1:PORT/bastion
# exported. The role may create databases: the store tests make one per test and drop it after.
# It is also a member of pg_signal_backend: `DROP DATABASE ... WITH (FORCE)` must be able to end
# an autovacuum worker that happens to be in the test database (it belongs to no role, and
# without that membership the drop fails with "must be a member of the role whose process is
# being terminated").
# The cluster is stopped and its directory removed when the command ends, however it ends, and
# the command's exit status is this script's.
#
# PostgreSQL refuses to run as root, so when this runs as root (as CI may) the server runs as the
# `postgres` user the package creates; otherwise as the calling user. The cluster is disposable,
# so it trades durability for speed (fsync off): it must never hold anything worth keeping.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

if ! dpkg -s postgresql >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends postgresql ||
        { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends postgresql; }
fi

PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi

# Run a server-side command as the user the cluster belongs to.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        (cd "$PG_DIR" && runuser -u postgres -- "$@")  # from a directory postgres may enter
    else
        "$@"
    fi
}

PG_DIR=$(mktemp -d /tmp/bastion-ci-postgres.XXXXXX)
chmod 700 "$PG_DIR"
if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; fi
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/server.log"

stop_postgres() {
    local status=$?
    if [ -f "$PG_DATA/postmaster.pid" ]; then
        as_owner "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w >/dev/null 2>&1 ||
            as_owner "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
    exit "$status"
}
trap stop_postgres EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

SUPERUSER_PASSWORD=$(random_hex)
BASTION_PASSWORD=$(random_hex)
PORT=$(free_port)

# Password (SCRAM) authentication over TCP, peer over the socket: nobody else on the machine
# gets in, even while the server listens.
printf '%s\n' "$SUPERUSER_PASSWORD" >"$PG_DIR/superuser-password"
if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR/superuser-password"; fi
as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$PG_DIR/superuser-password" \
    --auth-host=scram-sha-256 --auth-local=peer --encoding=UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$PG_DIR/superuser-password"

if ! as_owner "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories='$PG_DIR' -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null; then
    echo "postgres.sh: PostgreSQL did not start; its log:" >&2
    cat "$PG_LOG" >&2 || true
    exit 1
fi

PGPASSWORD="$SUPERUSER_PASSWORD" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
    -c "CREATE ROLE bastion LOGIN CREATEDB PASSWORD '$BASTION_PASSWORD'" \
    -c "CREATE DATABASE bastion OWNER bastion" \
    -c "GRANT pg_signal_backend TO bastion"

export BASTION_TEST_POSTGRES_URL="postgresql+psycopg://bastion:$BASTION_PASSWORD@127.0.0.1:$PORT/bastion"
echo "postgres.sh: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $PG_DATA)"

"$@"
