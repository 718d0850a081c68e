#!/usr/bin/env bash
# Remakes docs/report.png, the README's picture: the HTML report of
# samples/access.log rendered by headless Chromium. Usage: docs/screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "screenshot.sh needs chromium (apt-get install chromium)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run --quiet --release -- --config samples/keywatch.toml scan -o html samples/access.log > "$work/report.html"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1000,1500 --hide-scrollbars \
  --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "docs/report.png remade"
