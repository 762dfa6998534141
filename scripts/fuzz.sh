#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 10s) each.
# A finding (the fuzzer writes the failing input to testdata/fuzz) fails the
# run. Go's fuzzing coordinator sometimes ends a short run with "context
# deadline exceeded" and no finding when a worker answers late on a busy
# machine; such a run is tried once more before it counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
go=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $($go list ./...); do
  dir=$($go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  for t in $targets; do
    for try in 1 2; do
      echo "fuzz $pkg $t ($fuzztime)"
      if $go test "$pkg" -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" >"$log" 2>&1; then
        tail -n 1 "$log"
        break
      fi
      if grep -q "Failing input written to" "$log" || [ "$try" = 2 ] || ! grep -q "context deadline exceeded" "$log"; then
        cat "$log"
        exit 1
      fi
      echo "fuzz $t: the coordinator timed out with no finding; trying once more"
    done
  done
done
