#!/usr/bin/env bash
# Sets up and runs the mirror on its embedded default configuration: port 5000, the store in
# ./wharf-data, and container-registry.oracle.com, quay.io and docker.io (the default for bare
# names) as upstreams. Extra arguments go to `wharf serve` (e.g. --config deploy/wharf.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v cc >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends gcc libc6-dev curl ca-certificates >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo build --release --bin wharf
exec ./target/release/wharf serve "$@"
