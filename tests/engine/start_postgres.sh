#!/usr/bin/env bash
# Start a local PostgreSQL for datago's engine tests (Debian, run as root). Idempotent.
#
# Installs postgresql with apt-get when it is missing, starts the newest cluster listening on
# 127.0.0.1 only, creates the role and database "datago" (password "datago"), and prints on
# stdout one line for the caller to eval:
#   export DATAGO_TEST_POSTGRES_URL=postgresql+psycopg://datago:datago@127.0.0.1:PORT/datago
# Everything else goes to stderr. Usage: eval "$(bash tests/engine/start_postgres.sh)"
set -euo pipefail

log() { echo "start_postgres: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "must run as root (apt-get, pg_ctlcluster)"; exit 1
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
  log "installing postgresql with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi

ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
cluster=main
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver $cluster"; then
  log "creating cluster $ver/$cluster"
  pg_createcluster "$ver" "$cluster" >&2
fi

install -d -o postgres -g postgres -m 2775 /var/run/postgresql
conf_dir=/etc/postgresql/$ver/$cluster/conf.d
install -d -o postgres -g postgres "$conf_dir"
want="listen_addresses = '127.0.0.1'"
changed=0
if [ "$(cat "$conf_dir/datago.conf" 2>/dev/null || true)" != "$want" ]; then
  echo "$want" > "$conf_dir/datago.conf"
  changed=1
fi
port=$(pg_conftool -s "$ver" "$cluster" show port)

status=$(pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1==v && $2==c {print $4}')
if [ "$status" = online ] && [ "$changed" = 1 ]; then
  log "restarting cluster $ver/$cluster to listen on 127.0.0.1"
  pg_ctlcluster "$ver" "$cluster" restart >&2
elif [ "$status" != online ]; then
  log "starting cluster $ver/$cluster on 127.0.0.1:$port"
  pg_ctlcluster "$ver" "$cluster" start >&2
fi

for _ in $(seq 1 60); do
  if su postgres -c "psql -p $port -qtAc 'select 1'" >/dev/null 2>&1; then break; fi
  sleep 0.5
done

psql_admin() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qtAc \"$1\""; }

if [ "$(psql_admin "select 1 from pg_roles where rolname = 'datago'")" != 1 ]; then
  log "creating role datago"
  psql_admin "create role datago login password 'datago'" >&2
else
  psql_admin "alter role datago login password 'datago'" >&2
fi
if [ "$(psql_admin "select 1 from pg_database where datname = 'datago'")" != 1 ]; then
  log "creating database datago"
  psql_admin "create database datago owner datago" >&2
fi

echo "export DATAGO_TEST_POSTGRES_URL=postgresql+psycopg://datago:datago@127.0.0.1:$port/datago"
