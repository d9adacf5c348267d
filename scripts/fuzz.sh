#!/usr/bin/env bash
# Runs each libFuzzer target (fuzz/) from the seeds in fuzz/corpus/<target>:
# `runs` inputs from mutation seed `seed` (the same inputs on every machine,
# so that `make test` passes or fails alike everywhere), at most `seconds`
# each. What it finds worth keeping stays in <build>/corpus/<target>; an input
# that fails is written to <build>/artifacts/ and fails the run. To look
# further, give another seed or more runs (FUZZ_SEED=0: a random seed).
# Usage: scripts/fuzz.sh <build> <seconds> <runs> <seed>
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
runs=${3:-400000}
seed=${4:-1}
cd "$(dirname "$0")/.."
mkdir -p "$build/artifacts"
status=0
for target in client_frame ws_frame http_request; do
  mkdir -p "$build/corpus/$target"
  log="$build/fuzz_$target.log"
  if "$build/fuzz_$target" -runs="$runs" -seed="$seed" -max_total_time="$seconds" -max_len=4096 \
      -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" \
      "$build/corpus/$target" "fuzz/corpus/$target" >"$log" 2>&1; then
    done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz_$target: $done_runs inputs (seed $seed), no failure"
  else
    echo "fuzz_$target FAILED (log: $log; the input is in $build/artifacts/):"
    tail -40 "$log"
    status=1
  fi
done
exit $status
