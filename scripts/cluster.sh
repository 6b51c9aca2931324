#!/usr/bin/env bash
# A 3-node hub cluster on one machine, for trying it out: a throwaway
# PostgreSQL from the distribution's binaries (/usr/lib/postgresql/*/bin)
# in ./cluster-data/pg on port 55432, and three hub nodes on ports 8081,
# 8082 and 8083 sharing it. Ctrl-C stops all of it (the data stays; run it
# again to pick up; rm -rf ./cluster-data to start over).
#
#   ./scripts/cluster.sh          start PostgreSQL and the three nodes
#   hub cluster status --database postgres://postgres@127.0.0.1:55432/hub
#
# The admin token is "admin" on every node (for a demo only). As root,
# PostgreSQL runs as the postgres user (it refuses to run as root).
# CLUSTER_BIN=DIR uses the hub binary in DIR instead of building a release.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${CLUSTER_DATA:-./cluster-data}
PG_PORT=${CLUSTER_PG_PORT:-55432}
BIN=${CLUSTER_BIN:-./target/release}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PGBIN" ]; then
  echo "PostgreSQL is not installed: apt-get install postgresql" >&2
  exit 1
fi
if [ -z "${CLUSTER_BIN:-}" ]; then
  cargo build --release -q -p hub
fi

mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)
  mkdir -p "$DATA/pg" && chown postgres:postgres "$DATA/pg"
fi
if [ ! -f "$DATA/pg/data/PG_VERSION" ]; then
  "${as_pg[@]}" "$PGBIN/initdb" -D "$DATA/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
fi
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$DATA/pg/data" -l "$DATA/pg/server.log" -w \
  -o "-p $PG_PORT -k $DATA/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'hub'" | grep -q 1 ||
  "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE hub"
URL="postgres://postgres@127.0.0.1:$PG_PORT/hub"

pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$DATA/pg/data" -m fast -w stop >/dev/null || true
}
trap stop EXIT INT TERM

for n in 1 2 3; do
  "$BIN/hub" serve --data "$DATA/hub-$n" --listen "127.0.0.1:808$n" --database "$URL" \
    --node "hub-$n" --admin-token admin >>"$DATA/hub-$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:808$n/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
echo "cluster up: PostgreSQL at $URL"
echo "  nodes: http://127.0.0.1:8081, :8082, :8083 (admin token: admin; logs in $DATA)"
echo "  status: $BIN/hub cluster status --database $URL"
echo "Ctrl-C stops it."
wait
