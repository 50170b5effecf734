#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 10): installs cargo-fuzz when it is
# missing (cached in ~/.cargo/bin), seeds the corpora from the shared data (fuzz/seed.sh), builds
# all targets once, then runs each with libFuzzer and prints one summary line per target:
#
#   fuzz: <target> ok|CRASH runs=<executions> cov=<edges> ft=<features> corpus=<inputs>/<size> time=<s>
#
# Exits non-zero when any target crashed (a panic, a broken law, a timeout or running out of
# memory); the crashing input is in fuzz/artifacts/<target>/ and the target's log in
# fuzz/logs/<target>.log. Reproduce with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/<file>
#
# Only stable Rust is needed: targets are built with `-s none` (no sanitizer; tocsin is safe
# Rust, and the sanitizers need nightly), in release mode with debug assertions and overflow
# checks on. Set FUZZ_TARGETS="a b" to run some targets only, FUZZ_JOBS=2 to run two at a time.
set -euo pipefail

seconds="${1:-10}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS]" >&2
    exit 2
    ;;
esac

repo="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$repo/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --quiet
fi

"$fuzz/seed.sh" >/dev/null

cd "$fuzz"
# FUZZ_DEV=1 builds without optimisations (minutes instead of tens of minutes cold): enough for
# the smoke run CI makes from the seeds; long campaigns want the default release build.
if [ -n "${FUZZ_DEV:-}" ]; then
    cargo fuzz build -s none --dev
    bin_dir="$fuzz/target/x86_64-unknown-linux-gnu/debug"
else
    cargo fuzz build -s none
    bin_dir="$fuzz/target/x86_64-unknown-linux-gnu/release"
fi
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
mkdir -p "$fuzz/logs"

run_one() {
    local t="$1"
    local log="$fuzz/logs/$t.log"
    mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
    local start end rc=0
    start=$(date +%s)
    "$bin_dir/$t" "$fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    # The last status line: "#N DONE cov: C ft: F corp: K/SIZE ...".
    local status runs cov ft corp
    status="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)"
    [ -n "$runs" ] || runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$status")"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")"
    corp="$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$status")"
    local verdict=ok
    if [ "$rc" -ne 0 ]; then
        verdict=CRASH
    fi
    printf 'fuzz: %s %s runs=%s cov=%s ft=%s corpus=%s time=%ss\n' \
        "$t" "$verdict" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$((end - start))"
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $t: exit $rc; log $log; artifacts:" >&2
        ls "$fuzz/artifacts/$t" >&2 || true
        grep -m 20 -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" >&2 || true
        return 1
    fi
}

failed=()
jobs="${FUZZ_JOBS:-1}"
if [ "$jobs" -le 1 ]; then
    for t in $targets; do
        run_one "$t" || failed+=("$t")
    done
else
    # A simple pool: each target's summary line goes to its own file, printed in order.
    tmp="$(mktemp -d)"
    for t in $targets; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
            wait -n || true
        done
        (run_one "$t" >"$tmp/$t.out" 2>"$tmp/$t.err" || touch "$tmp/$t.failed") &
    done
    wait || true
    for t in $targets; do
        cat "$tmp/$t.out"
        cat "$tmp/$t.err" >&2
        [ ! -e "$tmp/$t.failed" ] || failed+=("$t")
    done
    rm -rf "$tmp"
fi

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all $(wc -w <<<"$targets") targets ran ${seconds}s each without a crash"
