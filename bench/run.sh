#!/usr/bin/env bash
# The standard benchmark runs (about 8 minutes): microbenchmarks, then the
# pigeon-bench scenarios, each against a fresh pigeond (fsync on, default
# configuration), three runs each. Raw results go to bench/results/*.json;
# bench/report.js then writes docs/benchmarks-results.md (medians) and the
# plots in docs/bench/.
#   RUNS=1 bash bench/run.sh     quicker, one run of each
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
OUT=bench/results
mkdir -p "$OUT" docs/bench
rm -f "$OUT"/*.json
ulimit -c 0
node tools/uws_relay/install.mjs  # uWebSockets for --uws (npm registry, pinned and checked)
command -v gnuplot >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq gnuplot-nox >/dev/null; } || true
B="$BUILD/pigeon-bench"
"$BUILD/micro_bench" --benchmark_min_time=0.5 --benchmark_out="$OUT/micro.json" --benchmark_out_format=json
for run in $(seq "$RUNS"); do
  "$B" --json "$OUT/steady-$run.json" steady --rates 5000,10000,15000,20000,25000,30000,40000,50000 --duration 5
  # The same load right after on the CPU line's peer, uWebSockets, and on the bare reference
  # relay (this host's floor): the run's own yardsticks for the CPU line.
  "$B" --uws --json "$OUT/uws-$run.json" steady --rates 5000,10000 --duration 5
  "$B" --relay --json "$OUT/relay-$run.json" steady --rates 5000,10000 --duration 5
  "$B" --json "$OUT/paced-$run.json" steady --pace --rates 5000,10000,25000 --duration 5
  "$B" --json "$OUT/burst-$run.json" burst --messages 20
  "$B" --json "$OUT/catchup-$run.json" catchup --messages 10000
  "$B" --json "$OUT/idle-$run.json" idle --sockets 19000
  "$B" --json "$OUT/storm-$run.json" reconnect-storm --users 10000 --messages 10
done
"$B" --json "$OUT/restart.json" restart --messages 1000000 --runs "$RUNS"
node bench/report.js "$OUT" docs
