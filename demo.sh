#!/usr/bin/env bash
# Run the system on one machine: a hub and one pos-agent, each on its own
# embedded SQLite file under ./demo-data, with a demo store and list.
#
#   ./demo.sh             start both; Ctrl-C stops both. Run it again and it
#                         picks up where it left off.
#   ./demo.sh hub stop    (from another shell) stop only the hub: the
#                         terminal keeps working offline
#   ./demo.sh hub start   start the hub again: the terminal catches up
#
# DEMO_BIN=DIR uses the binaries in DIR instead of building release ones.
set -euo pipefail
cd "$(dirname "$0")"

DATA=${DEMO_DATA:-./demo-data}
HUB_ADDR=${DEMO_HUB_ADDR:-127.0.0.1:8080}
AGENT_ADDR=${DEMO_AGENT_ADDR:-127.0.0.1:7878}
BIN=${DEMO_BIN:-./target/release}
HUB_PID_FILE="$DATA/hub.pid"

# The hub's pid if it is running, else nothing.
hub_pid() {
  local pid
  pid=$(cat "$HUB_PID_FILE" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

wait_for_hub() {
  for _ in $(seq 1 100); do
    curl -sf "http://$HUB_ADDR/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the hub did not answer at http://$HUB_ADDR within 10 s (log: $DATA/hub.log)" >&2
  return 1
}

# Start the hub in the background, its log in $DATA/hub.log.
start_hub() {
  mkdir -p "$DATA"
  "$BIN/hub" serve --data "$DATA/hub" --listen "$HUB_ADDR" >>"$DATA/hub.log" 2>&1 &
  echo $! >"$HUB_PID_FILE"
  wait_for_hub
}

case "${1:-}" in
  hub)
    case "${2:-}" in
      stop)
        pid=$(hub_pid)
        if [ -z "$pid" ]; then echo "the hub is not running"; exit 0; fi
        kill "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$HUB_PID_FILE"
        echo "hub stopped; the terminal works offline (pos-agent sync-status says so)"
        exit 0 ;;
      start)
        if [ -n "$(hub_pid)" ]; then echo "the hub is already running (pid $(hub_pid))"; exit 0; fi
        start_hub
        echo "hub started at http://$HUB_ADDR (log: $DATA/hub.log); the terminal catches up"
        exit 0 ;;
      *) echo "usage: $0 [hub stop|hub start]" >&2; exit 2 ;;
    esac ;;
  "") ;;
  *) echo "usage: $0 [hub stop|hub start]" >&2; exit 2 ;;
esac

if [ -z "${DEMO_BIN:-}" ]; then
  cargo build --release -q -p hub -p pos-agent
fi

if [ -n "$(hub_pid)" ]; then
  echo "a hub from an earlier run still runs (pid $(hub_pid)); stop it first: $0 hub stop" >&2
  exit 1
fi

AGENT_PID=
# Whichever hub runs at the end (it may have been restarted from another
# shell) stops with the agent.
trap 'kill $AGENT_PID $(hub_pid) 2>/dev/null || true; rm -f "$HUB_PID_FILE"; wait 2>/dev/null || true' EXIT INT TERM
start_hub
export HUB_URL="http://$HUB_ADDR" HUB_TOKEN="$(cat "$DATA/hub/admin-token")"

if [ ! -f "$DATA/store-token" ]; then
  "$BIN/hub" stores add --id store-042 --name "Store 42, Main Street" --tz Europe/Berlin
  # Only this user may read the store token; it never goes on a command line.
  (umask 077; "$BIN/hub" stores token --store store-042 --label "demo terminal" > "$DATA/store-token")
  # The store's roster: workers sign in at the terminal with these PINs.
  "$BIN/hub" workers add --store store-042 --id w-1007 --name "Ana Lopez" --role cashier --group closers --pin 1234
  "$BIN/hub" workers add --store store-042 --id w-1008 --name "Bo Novak" --role cashier --pin 2345
  "$BIN/hub" workers add --store store-042 --id m-1001 --name "Mia Chen" --role manager --group closers --pin 9999
  "$BIN/hub" lists publish --store store-042 --name "Closing checklist" --date "$(date +%F)" \
    --task "Count the till@21:30" --task "Clean the coffee machine@21:45" --task "Lock the back door@22:00"
fi

# --require-pin-for-cli: a shell records work only with the worker's PIN.
"$BIN/pos-agent" run --data "$DATA/agent" --hub "ws://$HUB_ADDR/sync" \
  --token-file "$DATA/store-token" --store store-042 --terminal pos-1 --http "$AGENT_ADDR" \
  --require-pin-for-cli &
AGENT_PID=$!

cat <<MSG

The hub is at http://$HUB_ADDR (admin token in $DATA/hub/admin-token, log in $DATA/hub.log).
The terminal's screen is http://$AGENT_ADDR/ : sign in as Ana Lopez (PIN 1234)
or as the manager Mia Chen (PIN 9999). In another shell:

  export POS_AGENT_URL=http://$AGENT_ADDR
  $BIN/pos-agent tasks
  $BIN/pos-agent complete <task id> --worker w-1007 --pin 1234
  $BIN/pos-agent notifications --worker w-1007
  $BIN/pos-agent --as m-1001 --pin 9999 assign <task id> --to w-1008
  $BIN/pos-agent --as m-1001 --pin 9999 add list "Spill in aisle 3" --task "Mop the floor@18:00"
  $BIN/pos-agent sync-status

Work offline: $0 hub stop, keep completing tasks (sync-status: offline,
changes waiting), then $0 hub start and the terminal catches up.
Ctrl-C here stops both.
MSG
wait
