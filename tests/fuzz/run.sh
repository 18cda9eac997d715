#!/usr/bin/env bash
# Runs every cargo-fuzz target of wharf for a bounded time each (default 60 s: FUZZ_SECONDS).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without them it says
# so and exits 0, because CI must not depend on nightly. The same parsers are covered by
# proptest in the normal test suite (cargo test -p wharf-proxy -p wharf-oci -p wharf-upstream).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz)"
    exit 0
fi
targets=(route_path oci_reference range_header accept_header www_authenticate)
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${seconds}s"
    cargo +nightly fuzz run --fuzz-dir . "$t" -- -max_total_time="$seconds" -max_len=4096
done
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a crash"
