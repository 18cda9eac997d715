#!/usr/bin/env bash
# Sets up and runs every test of wharf on a Debian machine: installs the packages the tests
# need (real registries and real clients), cargo-deny and Garage, checks formatting, lints and the
# dependency tree, builds the binary, runs the unit, property and end-to-end tests. CI runs
# exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# What the end-to-end tests drive: Debian's CNCF Distribution registry as the upstream,
# skopeo, podman and containerd as clients, htpasswd and openssl for auth and TLS material,
# prometheus (and promtool) to scrape wharf and check the alert rules; nginx and wrk for the
# benchmark suite (cargo bench -p wharf-e2e --bench suite); gnupg for the signing keys of
# crates/sign's tests (skopeo signs through it).
packages=(docker-registry skopeo podman buildah containerd docker.io apache2-utils openssl curl uidmap ca-certificates gcc prometheus nginx wrk gnupg)
echo "== installing test dependencies: ${packages[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# cargo-deny, built once per machine (the bans/licenses/sources checks need no advisory data).
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "== installing cargo-deny (once per machine)"
  cargo install --locked --quiet cargo-deny
fi

# Garage, the S3-compatible object store the replica tests share (crates/tier, e2e_replicas):
# built from crates.io once per machine (about 25 minutes on two cores; then cached in
# ~/.cargo/bin). Started by the tests themselves, on loopback.
if ! command -v garage >/dev/null 2>&1; then
  echo "== installing garage 2.5.0 (once per machine)"
  cargo install --locked --quiet garage --version 2.5.0
fi

echo "== format"
cargo fmt --all --check
echo "== lints"
# Same feature set as the build below (--workspace), so the two share what they compile.
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== dependencies"
cargo deny --workspace check bans licenses sources

echo "== building"
cargo build --workspace --tests --bins
echo "== testing"
cargo test --workspace --no-fail-fast "$@"
if [ "$#" -eq 0 ]; then
  # Criterion's test mode: each micro-benchmark of the hot paths runs once, so they keep
  # building and their assertions hold (cargo bench -p <crate> --bench hot_paths measures).
  echo "== micro-benchmarks, once each"
  # --workspace, not -p: the same feature set as the build above, so nothing is rebuilt.
  cargo test --workspace --bench hot_paths
fi
if [ "$#" -eq 0 ]; then
  # Every fuzz target (tests/fuzz: libFuzzer via cargo-fuzz, on stable) for FUZZ_SECONDS (20)
  # each from the corpus kept in the repo; installs cargo-fuzz once per machine; a crash fails
  # the run and prints the input.
  echo "== fuzzing, ${FUZZ_SECONDS:-20}s per target"
  tests/fuzz/run.sh
fi
