#!/usr/bin/env bash
# Times `keywatch scan` of this checkout against an earlier commit, in one
# run on one generated log (best of three each), and prints the ratios and
# peak memory; checks that both write the same JSON, on one thread and on
# all cores (exit 1 if not). Usage: benches/vs_commit.sh REV [LINES]
# (default 3000000)
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
# The output must not change unless a change means it to: both binaries'
# JSON on the same log, on one thread and on all cores, byte for byte.
same=0
for j in 1 0; do
  args=(--timezone UTC scan --no-progress -o json -f "$fmt")
  [ "$j" = 1 ] && args+=(-j 1)
  "$base" "${args[@]}" "$log" > "$work/base.json"
  target/release/keywatch "${args[@]}" "$log" > "$work/this.json"
  label=$([ "$j" = 1 ] && echo "1 thread" || echo "all cores")
  if cmp -s "$work/base.json" "$work/this.json"; then
    echo "output ($label): identical to $rev"
  else
    echo "output ($label): DIFFERS from $rev: $(cmp "$work/base.json" "$work/this.json" | head -1)"
    same=1
  fi
done
echo "peak memory, 1 thread: $rev $(( $(peak "$base" --timezone UTC scan --no-progress -o json -j 1 -f "$fmt" "$log") / 1024 )) MB, this checkout $(( $(peak target/release/keywatch --timezone UTC scan --no-progress -o json -j 1 -f "$fmt" "$log") / 1024 )) MB"
exit $same
