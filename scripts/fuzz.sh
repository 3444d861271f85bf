#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and fails on the first crash.
#   bash scripts/fuzz.sh                 # each target FUZZ_SECONDS (default 60) seconds
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh message index_file
# Seeds: fuzz/seeds/<target>/ plus the repo's mail fixtures for the mail targets. New corpus entries go to
# a scratch directory (the repo is not changed). A crash leaves its input in fuzz/artifacts/<target>/: turn it
# into a fixture and a regression test. Prints executions per target (the closing note quotes them).
# libFuzzer needs no nightly here: --sanitizer none (the code is safe Rust, `unsafe_code = "forbid"`),
# with debug assertions on (-a) so integer overflow panics too.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
JOBS="${FUZZ_JOBS:-2}"
ALL=(message delivery_report envelope index_file config search_query api_body)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}"
FLAGS=(--sanitizer none -O -a)
cargo fuzz build "${FLAGS[@]}" --fuzz-dir fuzz

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

seeds_of() {
  local target="$1"
  [ -d "fuzz/seeds/$target" ] && echo "fuzz/seeds/$target"
  case "$target" in
    message) echo tests/fixtures/mime tests/fixtures/corpus-mime tests/fixtures/threads tests/fixtures/bounces examples/maildir ;;
    delivery_report) echo tests/fixtures/bounces ;;
  esac
}

run_one() {
  local target="$1" corpus="$SCRATCH/$1" log="$SCRATCH/$1.log" dirs=()
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  # libFuzzer takes directories only; the fixture trees are flattened into one seed directory.
  for d in $(seeds_of "$target"); do
    find "$d" -type f ! -name '*.md' ! -name '*.json' -size -1M -exec cp -t "$corpus" {} + 2>/dev/null || true
  done
  dirs=("$corpus")
  if cargo fuzz run "${FLAGS[@]}" --fuzz-dir fuzz "$target" "${dirs[@]}" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1; then
    local execs
    execs="$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')"
    printf '%-16s ok   %10s executions in %ss (%s exec/s), corpus %s\n' "$target" "${execs:-?}" "$SECONDS_EACH" \
      "$(( ${execs:-0} / SECONDS_EACH ))" "$(find "$corpus" -type f | wc -l)"
  else
    printf '%-16s FAILED (log below; input in fuzz/artifacts/%s/)\n' "$target" "$target"
    tail -60 "$log"
    return 1
  fi
}

failed=0
running=0
pids=()
names=()
for target in "${TARGETS[@]}"; do
  run_one "$target" > "$SCRATCH/$target.out" 2>&1 &
  pids+=($!)
  names+=("$target")
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed=1
    cat "$SCRATCH/${names[0]}.out"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
    running=$((running - 1))
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed=1
  cat "$SCRATCH/${names[$i]}.out"
done
[ "$failed" = 0 ] || { echo "fuzzing found a crash"; exit 1; }
echo "fuzzing: no crash in ${#TARGETS[@]} targets"
