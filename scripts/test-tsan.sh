#!/usr/bin/env bash
# Runs every test of a ThreadSanitizer build ($1, default build-tsan) and fails
# on any race it reports, in a test process or in a pigeond the tests started
# (their reports go to files: a pigeond killed by its test has no exit code to
# fail with). Suppressions: scripts/tsan.supp.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-tsan}
REPORTS="$PWD/$BUILD/tsan-reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp log_path=$REPORTS/report halt_on_error=0"
(cd "$BUILD" && ctest --output-on-failure -j 2)
status=$?
if compgen -G "$REPORTS/report*" >/dev/null; then
  cat "$REPORTS"/report*
  echo "ThreadSanitizer: races reported (above; one file per process in $REPORTS)"
  exit 1
fi
[ $status -eq 0 ] && echo "ThreadSanitizer: no races reported"
exit $status
