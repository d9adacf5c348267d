#!/usr/bin/env bash
# Runs each libFuzzer target (fuzz/) for a bounded time, from the seeds in
# fuzz/corpus/<target>; what it finds worth keeping stays in
# <build>/corpus/<target>, and an input that fails is written to
# <build>/artifacts/ and fails the run. Usage: scripts/fuzz.sh <build> <seconds>
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-20}
cd "$(dirname "$0")/.."
mkdir -p "$build/artifacts"
status=0
for target in client_frame ws_frame http_request; do
  mkdir -p "$build/corpus/$target"
  log="$build/fuzz_$target.log"
  if "$build/fuzz_$target" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" \
      "$build/corpus/$target" "fuzz/corpus/$target" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz_$target: $runs inputs in ${seconds} s, no failure"
  else
    echo "fuzz_$target FAILED (log: $log; the input is in $build/artifacts/):"
    tail -40 "$log"
    status=1
  fi
done
exit $status
