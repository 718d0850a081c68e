#!/usr/bin/env bash
# keywatch against the simplest tools, in one run on this machine, as ratios
# (the machines are shared and noisy; only figures of the same run compare).
# Usage:
#   benches/vs_mawk.sh [LINES]        (default 1000000)
#
# On the generated keyed log (benches/throughput.rs --generate):
#   floor     read in 1 MiB blocks, memchr lines, take the key field, count
#             per key in a hash map (benches/throughput.rs --floor);
#   mawk      mawk -F'"' '{ n[$8]++ }', the same per-key count;
#   keywatch  scan -o json, every rule on, one thread and all cores;
#   watch     keywatch watch catching up on the same log as a backlog (CPU time).
# On the same log cut to the combined format (its first 300,000 lines):
#   goaccess  goaccess --log-format=COMBINED -o json, against keywatch scan.
# Each time is the best wall time of three runs.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
for tool in mawk goaccess; do
  command -v "$tool" >/dev/null || { echo "vs_mawk.sh needs $tool (apt-get install $tool)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'pkill -INT -f "watch --state $work/state" 2>/dev/null || true; rm -rf "$work"' EXIT
log="$work/access.log"
cargo build --release --quiet --benches --bins
cargo bench --quiet --bench throughput -- --generate "$log" --lines "$lines"
bench=$(ls -t target/release/deps/throughput-* | grep -v '\.d$' | head -1)
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
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", x / y }'; }
floor() { "$bench" --floor "$log"; }
mawk_count() { mawk -F'"' '{ n[$8]++ } END { for (k in n) print n[k], k }' "$log"; }
kw1() { "$bin" --timezone UTC scan --no-progress -o json -j 1 -f "$fmt" "$log"; }
kwn() { "$bin" --timezone UTC scan --no-progress -o json -f "$fmt" "$log"; }

size=$(stat -c %s "$log")
f=$(best floor); m=$(best mawk_count); a=$(best kw1); b=$(best kwn)
echo "log: $lines lines, $((size / 1000000)) MB; $(nproc) cores"
echo "floor (memchr, per-key count):  ${f} s"
echo "mawk -F'\"' per-key count:      ${m} s"
echo "keywatch scan, 1 thread:        ${a} s  $(ratio "$m" "$a")x mawk (target 2), $(ratio "$a" "$f")x the floor's time (target at most 3)"
echo "keywatch scan, all cores:       ${b} s  $(ratio "$b" "$a") of one thread's time (target at most 0.56)"

# watch catching up: from the start until every line is committed, then
# stopped; its CPU time (one core: watch analyses on one thread) against
# the lines, and the wall time until the last commit (at most one commit
# interval, 1 s, after the last line was read).
mkdir -m 700 "$work/state"
s=$(date +%s%N)
/usr/bin/time -f '%U %S' -o "$work/watch.cpu" "$bin" --timezone UTC watch --state "$work/state" \
  --from-beginning -f "$fmt" "$log" >/dev/null 2>&1 &
until "$bin" status --state "$work/state" 2>/dev/null | grep -q " $lines lines"; do sleep 0.05; done
e=$(date +%s%N)
pkill -INT -f "watch --state $work/state" || true
wait
w=$(( (e - s) / 1000000 ))
cpu=$(awk '{ printf "%.3f", $1 + $2 }' "$work/watch.cpu")
echo "keywatch watch, catching up:    ${cpu} CPU-s, $(awk -v n="$lines" -v t="$cpu" 'BEGIN { printf "%.2f", n / t / 1e6 }') M lines per CPU-second (target 1); all committed after $((w / 1000)).$(printf '%03d' $((w % 1000))) s"

# GoAccess on a combined log.
combined="$work/combined.log"
head -n 300000 "$log" | sed -E 's/ [0-9.]+ "[^"]*"$//' > "$combined"
goaccess_json() { goaccess "$combined" --log-format=COMBINED --no-global-config --no-progress -o "$work/goaccess.json" 2>/dev/null; }
kwc() { "$bin" --timezone UTC scan --no-progress -o json -j 1 -f combined "$combined"; }
g=$(best goaccess_json); c=$(best kwc)
echo "combined log: 300000 lines"
echo "goaccess, json report:          ${g} s"
echo "keywatch scan -f combined:      ${c} s  $(ratio "$g" "$c")x goaccess"
