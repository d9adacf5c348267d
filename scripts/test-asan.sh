#!/usr/bin/env bash
# Runs every test of an AddressSanitizer + UndefinedBehaviorSanitizer build
# ($1, default build-asan) and fails on any report, from a test process or
# from a pigeond the tests started. A pigeond's stderr goes to its test's log
# file, which the test removes when it ends, and UBSan reports and goes on:
# without report files of their own, a pigeond's findings were never seen
# unless they failed the test. Leaks count too (LeakSanitizer, at exit).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-asan}
REPORTS="$PWD/$BUILD/sanitizer-reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export ASAN_OPTIONS="detect_leaks=1 log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1 log_path=$REPORTS/ubsan"
(cd "$BUILD" && ctest --output-on-failure -j 2)
status=$?
if compgen -G "$REPORTS/*" >/dev/null; then
  cat "$REPORTS"/*
  echo "AddressSanitizer/UndefinedBehaviorSanitizer: $(ls "$REPORTS" | wc -l) report file(s) (above; one per process in $REPORTS)"
  exit 1
fi
[ $status -eq 0 ] && echo "AddressSanitizer/UndefinedBehaviorSanitizer: no reports"
exit $status
