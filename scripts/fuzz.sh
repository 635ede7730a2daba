#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets, cargo-fuzz / libFuzzer) for SECONDS each
# (default 60) and prints, per target, the executions run and the crashes found.
#
#   scripts/fuzz.sh 600        # the figure docs/fuzzing.md records: 10 minutes a target
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address); where only a stable
# toolchain exists, RUSTC_BOOTSTRAP=1 lets it pass them (set below). Each run starts from
# a scratch copy of the committed corpus (fuzz/corpus/<target>/), so the repository only
# changes when a person adds a finding. A crash leaves its input in
# fuzz/artifacts/<target>/: add it to the corpus, which makes it a test on stable
# (crates/*/tests/it/fuzz_bodies.rs), and fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/phoenix/fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd fuzz
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
# Only plan_document needs the daemon crate (and so the AWS SDK); see fuzz/Cargo.toml.
features() { [ "$1" = plan_document ] && echo "--features=daemon" || true; }
status=0
printf '%-16s %14s %8s\n' target executions crashes
for target in $targets; do
  work="$(mktemp -d)"
  cp -r "corpus/$target/." "$work/"
  mkdir -p "artifacts/$target"
  log="$(mktemp)"
  # shellcheck disable=SC2046
  if cargo fuzz run --release $(features "$target") "$target" "$work" -- \
      -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    crashes=0
  else
    crashes=$(find "artifacts/$target" -type f | wc -l)
    [ "$crashes" -gt 0 ] || crashes="1 (see $log)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  printf '%-16s %14s %8s\n' "$target" "${execs:-?}" "$crashes"
  rm -rf "$work"
done
exit $status
