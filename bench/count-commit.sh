#!/usr/bin/env bash
# What committing a message costs, counted rather than timed: callgrind runs
# micro_bench's BM_CommitMessagesCounted with 1,000 and then 2,000 commits of
# 16 messages, collecting inside RocksStore::Commit only, and this prints the
# difference per message: instructions, data reads and writes, and simulated
# L1 and last-level cache misses. The counts do not move with the host, so a
# change too small for this machine's timing noise is still measured before
# and after (run it on both builds). They are not time: the simulated caches
# are the process's own, never evicted by another, and the kernel is not in it.
#   bash bench/count-commit.sh [path/to/micro_bench]   (about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
MICRO=${1:-build/micro_bench}
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 1000 2000; do
  valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$tmp/$n" \
    --toggle-collect='pigeon::RocksStore::Commit(*' "$MICRO" \
    --benchmark_filter="BM_CommitMessagesCounted/16/iterations:$n\$" >/dev/null 2>"$tmp/$n.log"
done
awk -v messages=16000 '
  /^events:/ { if (FILENAME == ARGV[1]) for (i = 2; i <= NF; ++i) name[i - 1] = $i; next }
  /^(summary|totals):/ { for (i = 2; i <= NF; ++i) v[FILENAME, i - 1] = $i; k = NF - 1 }
  END {
    printf "per message committed (RocksStore::Commit, batches of 16):\n"
    for (i = 1; i <= k; ++i)
      printf "  %-5s %10.1f\n", name[i], (v[ARGV[2], i] - v[ARGV[1], i]) / messages
  }' "$tmp/1000" "$tmp/2000"
