#!/usr/bin/env bash
# Memory of the in-memory manifest index per indexed package reference (BENCHMARKS.md).
#
# Starts a release `tocsin serve` on a temporary embedded store, stores COPIES copies (distinct
# digests) of four real inventories, and reports the index metrics and the process's resident
# memory before and after. Usage: scripts/bench-index-memory.sh [COPIES] (default 500).
set -euo pipefail
cd "$(dirname "$0")/.."
COPIES="${1:-500}"
D="${TOCSIN_SHARED_DATA:-../shared/data}"
BIN="${CARGO_TARGET_DIR:-target}/release/tocsin"
[ -x "$BIN" ] || cargo build --release -p tocsin
PORT="${PORT:-16060}"
DATA="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
printf 'http_listen_addr: "127.0.0.1:%s"\ntocsin:\n  data_dir: "%s"\n' "$PORT" "$DATA" > "$DATA/c.yaml"
"$BIN" serve --config "$DATA/c.yaml" 2>"$DATA/log" &
PID=$!
until curl -sf "localhost:$PORT/healthz" >/dev/null; do sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
metric() { curl -s "localhost:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
BEFORE="$(rss)"
FILES=(
  "$D/inventories/cyclonedx/SBOM_juice-shop_v11.1.2_bom.json"
  "$D/inventories/cargo/tansu.Cargo.lock"
  "$D/inventories/cyclonedx/SBOM_proton-bridge_proton-bridge-v1.8.0.bom.json"
  "$D/inventories/cyclonedx/SBOM_dropwizard-1.3.15_bom.json"
)
START=$(date +%s.%N)
for i in $(seq 1 "$COPIES"); do
  for f in "${FILES[@]}"; do
    digest="sha256:$(printf '%s %s' "$f" "$i" | sha256sum | cut -c1-64)"
    curl -sf -o /dev/null -X PUT --data-binary "@$f" "localhost:$PORT/api/v1/manifests/$digest"
  done
done
END=$(date +%s.%N)
AFTER="$(rss)"
REFS="$(metric tocsin_index_package_references)"
BITMAP="$(metric tocsin_index_bitmap_bytes)"
MANIFESTS="$(metric tocsin_index_manifests)"
echo "manifests=$MANIFESTS references=$REFS bitmap_bytes=$BITMAP"
echo "rss_before_kib=$BEFORE rss_after_kib=$AFTER put_seconds=$(echo "$END - $START" | bc)"
echo "bitmap_bytes_per_reference=$(echo "scale=3; $BITMAP / $REFS" | bc)"
echo "rss_delta_bytes_per_reference=$(echo "scale=2; ($AFTER - $BEFORE) * 1024 / $REFS" | bc)"
# Restart: the index is rebuilt from the store at start.
kill "$PID"; wait "$PID" 2>/dev/null || true
START=$(date +%s.%N)
"$BIN" serve --config "$DATA/c.yaml" 2>"$DATA/log2" &
PID=$!
until curl -sf "localhost:$PORT/healthz" >/dev/null; do sleep 0.05; done
END=$(date +%s.%N)
echo "restart_to_healthy_seconds=$(echo "$END - $START" | bc) rss_after_rebuild_kib=$(rss)"
grep -o '"indexes built".*\|indexes built.*' "$DATA/log2" | head -1 || true
