#!/usr/bin/env bash
# Runs every Go fuzz target of the module (each `func FuzzXxx(f *testing.F)` in a _test.go
# file, found by name so that a new target is run without editing this script) for TIME each.
# `go test -fuzz` takes one target of one package per run, hence the loop.
#
#   scripts/fuzz.sh [TIME]     TIME: a go test -fuzztime value (default $FUZZTIME, else 1m)
#
# A failing input is written to <package>/testdata/fuzz/<FuzzXxx>/ and fails plain
# `go test` from then on (commit it as a regression seed once fixed). The api target needs
# PostgreSQL and Redis (`make services`).
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-${FUZZTIME:-1m}}
go=${GO:-go}
mapfile -t targets < <(find . -path './.*' -prune -o -name '*_test.go' -type f -print |
	xargs grep -HoE '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' | sort)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi
for t in "${targets[@]}"; do
	file=${t%%:*}
	fn=${t#*:func }
	fn=${fn%%(*}
	pkg=./$(dirname "${file#./}")
	echo "== $fn in $pkg for $time"
	"$go" test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$time"
done
