#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace.
# Tests read real data from ../shared/data (next to this repository).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/data ] && [ -z "${TOCSIN_SHARED_DATA:-}" ]; then
  echo "warning: ../shared/data not found: data-driven tests will skip" >&2
fi

# cargo-nextest runs each test in a process of its own (the suite relies on that: global metric
# recorders, environment variables). Installed once per machine from crates.io, in the background
# while the services install.
nextest_log="$(mktemp)"
nextest_pid=
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest (once per machine; log: $nextest_log)"
  cargo install cargo-nextest --locked --quiet >"$nextest_log" 2>&1 &
  nextest_pid=$!
fi

# A released Clair v4 (clair, clairctl) for the tests that run a real Clair beside tocsin, and the
# same Clair built against a newer claircore: built once per machine from the Go module proxy into
# the user's cache (scripts/clair.sh), in the background; the tests wait for them (they call the
# same script, which takes a lock).
clair_log="$(mktemp)"
clair_pid=
if command -v go >/dev/null 2>&1; then
  { scripts/clair.sh && CLAIRCORE_VERSION=v1.5.54 scripts/clair.sh; } >"$clair_log" 2>&1 &
  clair_pid=$!
fi

# Services the tests talk to for real: PostgreSQL, RabbitMQ with its STOMP plugin, NATS with
# JetStream. Installed from Debian's packages and started when missing; see scripts/services.sh.
# shellcheck source=scripts/services.sh
. scripts/services.sh
ensure_services

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if [ -n "$nextest_pid" ] && ! wait "$nextest_pid"; then
  cat "$nextest_log" >&2
  echo "error: cargo install cargo-nextest failed" >&2
  exit 1
fi
rm -f "$nextest_log"
if [ -n "$clair_pid" ] && ! wait "$clair_pid"; then
  cat "$clair_log" >&2
  echo "error: building Clair (scripts/clair.sh) failed" >&2
  exit 1
fi
rm -f "$clair_log"
cargo nextest run --workspace --locked --no-fail-fast
echo "== doc tests"
cargo test --workspace --locked --doc
echo "== fuzz smoke (every target for a few seconds from its seeds; docs/reliability.md has the long runs)"
FUZZ_DEV=1 scripts/fuzz.sh "${TOCSIN_FUZZ_SECONDS:-5}"
echo "== benchmark smoke (N = 10,000; figures are not checked, only that every workload runs)"
# Debug build, fewer report requests, a sampled baseline and fewer webhook sets keep this to a few
# minutes on 2 cores; BENCHMARKS.md has the release figures and how to reproduce them.
cargo build --locked -p tocsin -p tocsin-bench
smoke_dir="$(mktemp -d)"
trap 'rm -rf "$smoke_dir"' EXIT
target/debug/tocsin-bench fleet --manifests 10000 --reports 500 --baseline-every 20 \
  --webhook-sets 5000 --work-dir "$smoke_dir" --out "$smoke_dir/bench-fleet-10000.json"
