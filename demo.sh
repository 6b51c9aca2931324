#!/usr/bin/env bash
# Run the system on one machine: a hub and one pos-agent, each on its own
# embedded SQLite file under ./demo-data, with a demo store and list.
# Ctrl-C stops both. Run it again and it picks up where it left off.
set -euo pipefail
cd "$(dirname "$0")"

DATA=${DEMO_DATA:-./demo-data}
HUB_ADDR=${DEMO_HUB_ADDR:-127.0.0.1:8080}
AGENT_ADDR=${DEMO_AGENT_ADDR:-127.0.0.1:7878}

cargo build --release -q -p hub -p pos-agent
BIN=./target/release

"$BIN/hub" serve --data "$DATA/hub" --listen "$HUB_ADDR" &
HUB_PID=$!
AGENT_PID=
trap 'kill $HUB_PID $AGENT_PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  curl -sf "http://$HUB_ADDR/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
export HUB_URL="http://$HUB_ADDR" HUB_TOKEN="$(cat "$DATA/hub/admin-token")"

if [ ! -f "$DATA/store-token" ]; then
  "$BIN/hub" stores add --id store-042 --name "Store 42, Main Street" --tz Europe/Berlin
  "$BIN/hub" stores token --store store-042 --label "demo terminal" > "$DATA/store-token"
  # The store's roster: workers sign in at the terminal with these PINs.
  "$BIN/hub" workers add --store store-042 --id w-1007 --name "Ana Lopez" --role cashier --group closers --pin 1234
  "$BIN/hub" workers add --store store-042 --id w-1008 --name "Bo Novak" --role cashier --pin 2345
  "$BIN/hub" workers add --store store-042 --id m-1001 --name "Mia Chen" --role manager --group closers --pin 9999
  "$BIN/hub" lists publish --store store-042 --name "Closing checklist" --date "$(date +%F)" \
    --task "Count the till@21:30" --task "Clean the coffee machine@21:45" --task "Lock the back door@22:00"
fi

"$BIN/pos-agent" run --data "$DATA/agent" --hub "ws://$HUB_ADDR/sync" \
  --token "$(cat "$DATA/store-token")" --store store-042 --terminal pos-1 --http "$AGENT_ADDR" &
AGENT_PID=$!

cat <<MSG

The hub is at http://$HUB_ADDR (admin token in $DATA/hub/admin-token).
The terminal's screen is http://$AGENT_ADDR/ : sign in as Ana Lopez (PIN 1234)
or as the manager Mia Chen (PIN 9999). In another shell:

  $BIN/pos-agent tasks
  $BIN/pos-agent complete <task id> --worker w-1007
  $BIN/pos-agent notifications --worker w-1007
  $BIN/pos-agent --as m-1001 --pin 9999 add list "Spill in aisle 3" --task "Mop the floor@18:00"
  $BIN/pos-agent sync-status

Ctrl-C stops both.
MSG
wait
