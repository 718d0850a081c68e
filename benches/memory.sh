#!/usr/bin/env bash
# Peak memory (resident, VmHWM) under a flood and on the sample day, in every
# output mode and thread count (8: more than the cores, which scan caps at
# one a core), and for `watch` catching up on the flood.
# Usage: benches/memory.sh
#
# The flood (benches/attack.rs --generate): 1,000,000 requests, each with a
# different random key, all rejected, from 50,000 clients. Targets: under
# 256 MB for the flood, under 64 MB for the sample day.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'pkill -INT -f "watch --state $work/" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet --benches --bins
attack=$(ls -t target/release/deps/attack-* | grep -v '\.d$' | head -1)
"$attack" --generate "$work/flood.log"
bin=target/release/keywatch
fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key"'
peak() { # peak resident MB of "$@"
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>&1
  awk '{ printf "%.0f", $1 / 1024 }' "$work/rss"
}
echo "flood: 1,000,000 distinct rejected keys from 50,000 clients (target under 256 MB)"
for threads in 1 2 8; do
  for out in text json markdown html; do
    echo "  scan -j $threads -o $out: $(KEYWATCH_KEY_SECRET=memory-benchmark-secret KEYWATCH_CONFIG=/dev/null \
      peak "$bin" --timezone UTC scan --no-progress -j "$threads" -o "$out" -f "$fmt" "$work/flood.log") MB"
  done
done
mkdir -m 700 "$work/state"
KEYWATCH_KEY_SECRET=memory-benchmark-secret KEYWATCH_CONFIG=/dev/null /usr/bin/time -f '%M' -o "$work/rss" \
  "$bin" --timezone UTC watch --state "$work/state" --from-beginning -f "$fmt" "$work/flood.log" >/dev/null 2>&1 &
until KEYWATCH_CONFIG=/dev/null "$bin" status --state "$work/state" 2>/dev/null | grep -q " 1000000 lines"; do sleep 0.1; done
pkill -INT -f "watch --state $work/state"
while pgrep -f "watch --state $work/state" >/dev/null; do sleep 0.1; done
echo "  watch, catching up: $(awk '{ printf "%.0f", $1 / 1024 }' "$work/rss") MB"
# The same lines appended live, 50,000 at a time, to a file watch follows.
mkdir -m 700 "$work/live"
: > "$work/live.log"
KEYWATCH_KEY_SECRET=memory-benchmark-secret KEYWATCH_CONFIG=/dev/null /usr/bin/time -f '%M' -o "$work/rss" \
  "$bin" --timezone UTC watch --state "$work/live" -f "$fmt" "$work/live.log" >/dev/null 2>&1 &
until KEYWATCH_CONFIG=/dev/null "$bin" status --state "$work/live" 2>/dev/null | grep -q "live.log"; do sleep 0.1; done
split -l 50000 -d "$work/flood.log" "$work/part."
for part in "$work"/part.*; do cat "$part" >> "$work/live.log"; sleep 0.2; done
until KEYWATCH_CONFIG=/dev/null "$bin" status --state "$work/live" 2>/dev/null | grep -q " 1000000 lines"; do sleep 0.1; done
pkill -INT -f "watch --state $work/live"
while pgrep -f "watch --state $work/live" >/dev/null; do sleep 0.1; done
echo "  watch, the flood appended live: $(awk '{ printf "%.0f", $1 / 1024 }' "$work/rss") MB"
echo "sample day: samples/access.log (target under 64 MB)"
for out in text json html; do
  echo "  scan -o $out: $(peak "$bin" --config samples/keywatch.toml --timezone UTC scan --no-progress -o "$out" samples/access.log) MB"
done
