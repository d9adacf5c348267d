#!/usr/bin/env bash
# Runs every test of a ThreadSanitizer build ($1, default build-tsan) and fails
# on a race it reports in pigeon's code, in a test process or in a pigeond the
# tests started (their reports go to files: a pigeond killed by its test has no
# exit code to fail with). Suppressions: scripts/tsan.supp.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-tsan}
REPORTS="$PWD/$BUILD/tsan-reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp log_path=$REPORTS/report halt_on_error=0"
(cd "$BUILD" && ctest --output-on-failure -j 2)
status=$?
# A data race fails the run when one of its two accesses has a frame in
# pigeon's own code. Debian's RocksDB has no frame pointers, so a race between
# two of its own threads (a block one thread decompressed, read by a
# compaction) can show stacks that end in libstdc++ and never name RocksDB, and
# no suppression can match it; such a report is listed, not counted. Every
# other kind of report (a lock-order inversion, a use after free) fails.
fatal=0
if compgen -G "$REPORTS/report*" >/dev/null; then
  cat "$REPORTS"/report*
  fatal=$(awk -v own="^ +#[0-9]+ .* $PWD/(src|tools|tests|bench)/" '
    /^WARNING: ThreadSanitizer: / { race = ($0 ~ /data race/); ours = !race; access = 0; next }
    /^  [A-Za-z]/ { access = ($0 ~ /^  (Previous )?([Aa]tomic )?([Rr]ead|[Ww]rite) of size/); next }
    access && $0 ~ own { ours = 1 }
    /^SUMMARY: ThreadSanitizer/ { n += ours; if (!ours) print "not counted (no frame of pigeon in either access): " $0 > "/dev/stderr" }
    END { print n + 0 }' "$REPORTS"/report*)
  if [ "$fatal" -gt 0 ]; then
    echo "ThreadSanitizer: $fatal report(s) involving pigeon's code (above; one file per process in $REPORTS)"
    exit 1
  fi
fi
[ $status -eq 0 ] && echo "ThreadSanitizer: no races reported in pigeon's code"
exit $status
