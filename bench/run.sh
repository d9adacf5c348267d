#!/usr/bin/env bash
# The standard benchmark runs: microbenchmarks, then pigeon-bench scenarios
# against a fresh pigeond (fsync on). Results go to bench/results/ as JSON;
# docs/benchmarks.md quotes them with these commands.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=bench/results
mkdir -p "$OUT"
ulimit -c 0
"$BUILD/micro_bench" --benchmark_min_time=0.5 --benchmark_out="$OUT/micro.json" --benchmark_out_format=json
for rate in 5000 10000 15000; do
  for run in 1 2 3; do
    "$BUILD/pigeon-bench" --json "$OUT/steady-$rate-$run.json" steady --rate "$rate" --duration 5
  done
done
for run in 1 2 3; do
  "$BUILD/pigeon-bench" --json "$OUT/catchup-10000-$run.json" catchup --messages 10000
done
"$BUILD/pigeon-bench" --json "$OUT/idle-5000.json" idle --sockets 5000
"$BUILD/pigeon-bench" --json "$OUT/idle-19000.json" idle --sockets 19000 --source-addrs 4
echo "results in $OUT/"
