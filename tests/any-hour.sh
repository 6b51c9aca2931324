#!/usr/bin/env bash
# Run every test binary of the workspace with the clock set to each of the
# given UTC times (libfaketime; the clock keeps running from there), so a
# test that only passes at some hours of the day fails here and not in CI.
# Needs Debian's `faketime` package (apt-get install faketime).
#
#   tests/any-hour.sh                        # the default times below
#   tests/any-hour.sh '2027-03-28 00:59:30'  # or your own
#
# The defaults sit just before and after midnight in the zones the tests
# use (UTC, Europe/Berlin, America/New_York) and at a year's end.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v faketime >/dev/null || { echo "needs faketime (apt-get install faketime)" >&2; exit 2; }
times=("$@")
if [ ${#times[@]} -eq 0 ]; then
  d=$(date -u -d tomorrow +%F)
  times=("$d 21:45:00" "$d 22:45:00" "$d 23:30:00" "$d 23:59:20" "$d 04:30:00" "$d 05:20:00" "$(date -u +%Y)-12-31 23:59:10")
fi
list=$(mktemp)
trap 'rm -f "$list"' EXIT
# Package directory and executable of every test target, as cargo runs them.
cargo test --workspace --no-run --message-format=json | python3 -c '
import sys, json, os
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]), m["executable"])' > "$list"
# The process tests build these themselves; build them now, with the real
# clock: compilers under libfaketime can hang.
cargo build -q -p hub -p pos-agent --bins
failed=0
for t in "${times[@]}"; do
  echo "== $t UTC"
  while read -r dir bin; do
    # NO_FAKE_STAT: file times stay real (nested cargo builds);
    # DONT_FAKE_MONOTONIC: timers and timeouts keep real time.
    if out=$(cd "$dir" && DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1 timeout 600 \
        faketime "$t" "$bin" --test-threads=2 2>&1); then
      :
    else
      rc=$?
      failed=1
      echo "FAILED (exit $rc; 124 = still running after 600 s): $bin"
      echo "$out" | grep -E "^test .*FAILED|panicked" | head -20 || true
    fi
  done < "$list"
done
[ $failed -eq 0 ] && echo "every test binary passed at every time" || exit 1
