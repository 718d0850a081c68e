#!/usr/bin/env bash
# Compares `keywatch scan` with a mawk per-key count on the same generated log,
# in one run on this machine, and prints the ratios. Usage:
#   benches/vs_mawk.sh [LINES]        (default 3000000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-3000000}
command -v mawk >/dev/null || { echo "vs_mawk.sh needs mawk (apt-get install mawk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$work/access.log"
cargo build --release --quiet
cargo bench --quiet --bench throughput -- --generate "$log" --lines "$lines"
bin=target/release/keywatch
fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key"'
export KEYWATCH_KEY_SECRET=benchmark-secret-0123456789 KEYWATCH_CONFIG=/dev/null
cat "$log" >/dev/null # warm the page cache

best() { # best wall time in seconds of 3 runs of "$@"
  local b=999999 s e t
  for _ in 1 2 3; do
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    t=$(( (e - s) / 1000000 )); (( t < b )) && b=$t
  done
  printf '%d.%03d' $((b / 1000)) $((b % 1000))
}
mawk_count() { mawk -F'"' '{ n[$8]++ } END { for (k in n) print n[k], k }' "$log"; }
kw1() { "$bin" --timezone UTC scan --no-progress -o json -j 1 -f "$fmt" "$log"; }
kwn() { "$bin" --timezone UTC scan --no-progress -o json -f "$fmt" "$log"; }

size=$(stat -c %s "$log")
m=$(best mawk_count); a=$(best kw1); b=$(best kwn)
echo "log: $lines lines, $((size / 1000000)) MB; $(nproc) cores"
echo "mawk -F'\"' per-key count:      ${m} s"
echo "keywatch scan, 1 thread:        ${a} s  ($(awk -v x="$m" -v y="$a" 'BEGIN { printf "%.2f", x / y }')x mawk)"
echo "keywatch scan, all cores:       ${b} s  ($(awk -v x="$m" -v y="$b" 'BEGIN { printf "%.2f", x / y }')x mawk)"
