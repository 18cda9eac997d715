#!/usr/bin/env bash
# Runs every fuzz target of wharf (libFuzzer, through cargo-fuzz) for a bounded time each, on the
# stable toolchain; CI runs it after the tests (tests/run.sh). Any crash, failed assertion,
# timeout or out-of-memory fails the run, and the input that did it is printed.
#
#   tests/fuzz/run.sh                  every target, FUZZ_SECONDS (default 20) each
#   tests/fuzz/run.sh manifest tags_link  only those
#   FUZZ_SECONDS=600 tests/fuzz/run.sh manifest
#
# Each target starts from its seed corpus in corpus/<target>/ (kept in git, small) and writes
# what it finds to a temporary directory, so the repo corpus does not grow by itself; crashing
# inputs land in artifacts/<target>/ (ignored by git). Replay one with
#   ~/.cache/wharf/fuzz-target/<host>/release/<target> tests/fuzz/artifacts/<target>/crash-…
# then make it a regression test next to the parser.
#
# Why stable works: cargo-fuzz's only nightly-only flags are the sanitizers (-Zsanitizer);
# `--sanitizer none` leaves the SanitizerCoverage instrumentation (-Cpasses=sancov-module and
# -Cllvm-args, both stable) that guides libFuzzer. wharf forbids unsafe code, so AddressSanitizer
# would find little that a Rust panic does not already report.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
all=(route_path oci_reference range_header accept_header www_authenticate redirect_location tags_link manifest)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
# Pinned: a newer cargo-fuzz may add flags the stable toolchain refuses.
cargo_fuzz_version="0.13.2"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# libfuzzer-sys compiles libFuzzer itself (C++).
if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz: installing g++ (libFuzzer is C++)"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version (once per machine)"
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

# Its own target directory: the instrumented build must not replace the main workspace's. It
# lives outside the checkout (a build cache, like ~/.cargo/registry), so CI's fresh clone builds
# only what changed rather than every dependency again (7 minutes on 2 cores).
export CARGO_TARGET_DIR="${WHARF_FUZZ_TARGET:-$HOME/.cache/wharf/fuzz-target}"
host="$(rustc -vV | sed -n 's/^host: //p')"
bin="$CARGO_TARGET_DIR/$host/release"

echo "fuzz: building every target (cargo fuzz build --sanitizer none)"
start=$SECONDS
cargo fuzz build --sanitizer none --fuzz-dir .
echo "fuzz: built in $((SECONDS - start))s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A libFuzzer -print_final_stats value of the current target's log.
fstat() { sed -n "s/^stat::$1: *//p" "$work/$t.log" | tail -1; }
passed=0
failed=0
for t in "${targets[@]}"; do
    [ -x "$bin/$t" ] || { echo "fuzz: $t: no binary at $bin/$t"; failed=$((failed + 1)); continue; }
    seeds="corpus/$t"
    rm -rf "artifacts/$t"
    mkdir -p "$work/$t" "artifacts/$t"
    # JSON documents are larger than headers.
    max_len=4096
    [ "$t" = manifest ] && max_len=16384
    rc=0
    "$bin/$t" "$work/$t" "$seeds" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        >"$work/$t.log" 2>&1 || rc=$?
    cov="$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1 | cut -d' ' -f2 || true)"
    n_seeds="$(find "$seeds" -type f | wc -l)"
    n_found="$(find "$work/$t" -type f | wc -l)"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "fuzz: $t: ok, $(fstat number_of_executed_units) runs in ${seconds}s," \
            "$(fstat average_exec_per_sec) exec/s, coverage ${cov:-?}," \
            "corpus $n_seeds seeds + $n_found found"
    else
        failed=$((failed + 1))
        echo "fuzz: $t: FAILED (libFuzzer exit $rc); its log ends:"
        grep -v '^#[0-9]' "$work/$t.log" | tail -40 || true
        for a in "artifacts/$t"/*; do
            [ -f "$a" ] || continue
            echo "fuzz: $t: input tests/fuzz/$a (base64): $(base64 -w0 "$a")"
        done
    fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
