#!/usr/bin/env bash
# Times `keywatch scan` of this checkout against an earlier commit, in one
# run on one generated log (best of three each), and prints the ratios and
# peak memory. Usage: benches/vs_commit.sh REV [LINES]   (default 3000000)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: benches/vs_commit.sh REV [LINES]}
lines=${2:-3000000}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach --quiet "$work/base" "$rev"
# A target directory of its own: a cold build of the dependencies (minutes).
cargo build --release --quiet --manifest-path "$work/base/Cargo.toml" --target-dir "$work/target"
base="$work/target/release/keywatch"
cargo build --release --quiet
log="$work/access.log"
cargo bench --quiet --bench throughput -- --generate "$log" --lines "$lines"
fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key"'
export KEYWATCH_KEY_SECRET=benchmark-secret-0123456789 KEYWATCH_CONFIG=/dev/null
cat "$log" >/dev/null
best() { local b=999999 s e t; for _ in 1 2 3; do s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); t=$(( (e - s) / 1000000 )); (( t < b )) && b=$t; done; echo "$b"; }
peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
for j in 1 0; do
  args=(--timezone UTC scan --no-progress -o json -f "$fmt")
  [ "$j" = 1 ] && args+=(-j 1)
  a=$(best "$base" "${args[@]}" "$log"); b=$(best target/release/keywatch "${args[@]}" "$log")
  label=$([ "$j" = 1 ] && echo "1 thread" || echo "all cores")
  awk -v a="$a" -v b="$b" -v l="$label" -v r="$rev" 'BEGIN { printf "%-10s %s: %.3f s   this checkout: %.3f s   (%.2fx the time)\n", l, r, a/1000, b/1000, b/a }'
done
echo "peak memory, 1 thread: $rev $(( $(peak "$base" --timezone UTC scan --no-progress -o json -j 1 -f "$fmt" "$log") / 1024 )) MB, this checkout $(( $(peak target/release/keywatch --timezone UTC scan --no-progress -o json -j 1 -f "$fmt" "$log") / 1024 )) MB"
