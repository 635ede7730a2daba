#!/usr/bin/env bash
# Runs Phoenix's whole test suite on a fresh machine: installs what the tests need
# (scripts/setup.sh), then builds and runs every test of every crate.
#
# The cargo target directory lives outside the clone (default ~/.cache/phoenix/target)
# so that CI and repeated runs reuse compiled dependencies; the AWS SDK alone takes
# minutes to build.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/phoenix/target}"
export PHOENIX_VENV="${PHOENIX_VENV:-$HOME/.cache/phoenix/venv}"
# Tests talk only to services they start on loopback; never to real cloud metadata.
export AWS_EC2_METADATA_DISABLED=true
# Benchmarks run at their small size inside the test suite, so they keep compiling and working.
export PHOENIX_BENCH_SIZE="${PHOENIX_BENCH_SIZE:-small}"

scripts/setup.sh

echo "test: cargo fmt --check"
cargo fmt --all -- --check

echo "test: cargo test (target dir: $CARGO_TARGET_DIR)"
cargo test --workspace --all-targets --no-fail-fast

# Every benchmark at its small size, on the debug build the tests just made (nothing heavy
# is compiled again), so a broken benchmark fails CI. Speed is never asserted; the
# figures go to a scratch copy of docs/benchmarks.md, not the committed one.
echo "test: scripts/bench.sh small"
BENCH_DOC="$(mktemp /tmp/phoenix-benchmarks.XXXXXX.md)" scripts/bench.sh small
