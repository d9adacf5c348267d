#!/usr/bin/env bash
# Runs every test of a sanitizer build and fails on what the sanitizer reports,
# in a test process or in a pigeond a test started. Reports go to files, one
# per process, in <build>/sanitizer-reports: a pigeond's stderr goes to its
# test's log file, which the test removes; UBSan reports and goes on; and a
# pigeond killed by its test has no exit code to fail with.
#   asan [build-asan]   AddressSanitizer, UndefinedBehaviorSanitizer and
#                       LeakSanitizer (at exit): any report fails the run.
#   tsan [build-tsan]   ThreadSanitizer, with scripts/tsan.supp: see below.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}
BUILD=${2:-build-$MODE}
REPORTS="$PWD/$BUILD/sanitizer-reports"
case "$MODE" in
  asan)
    export ASAN_OPTIONS="detect_leaks=1 log_path=$REPORTS/asan"
    export UBSAN_OPTIONS="print_stacktrace=1 log_path=$REPORTS/ubsan" ;;
  tsan) export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp log_path=$REPORTS/report halt_on_error=0" ;;
  *) echo "usage: $0 asan|tsan [build directory]" >&2; exit 2 ;;
esac
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
(cd "$BUILD" && ctest --output-on-failure -j 2)
status=$?
if [ "$MODE" = asan ]; then
  if compgen -G "$REPORTS/*" >/dev/null; then
    cat "$REPORTS"/*
    echo "AddressSanitizer/UndefinedBehaviorSanitizer: $(ls "$REPORTS" | wc -l) report file(s) (above; one per process in $REPORTS)"
    exit 1
  fi
  [ $status -eq 0 ] && echo "AddressSanitizer/UndefinedBehaviorSanitizer: no reports"
  exit $status
fi
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
