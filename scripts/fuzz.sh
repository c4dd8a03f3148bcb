#!/usr/bin/env bash
# Runs every Fuzz target of the module (every `func FuzzX` in a _test.go
# file) for FUZZTIME each (default 10s), one after the other, and ends with
# a table of the executions each made. A target that finds a crasher fails
# the run: go test prints it and writes it to the package's
# testdata/fuzz/FuzzX/ (keep it there as a seed once the bug is fixed);
# the other targets still run.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
log=$(mktemp "${TMPDIR:-/tmp}/weft-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT

rows=() failed=()
while read -r file target; do
	pkg=./$(dirname "$file")
	echo "== $pkg $target ($FUZZTIME)"
	if "$GO" test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		rows+=("$(printf '%-28s %-24s %10s' "$pkg" "$target" "${execs:-?}")")
	else
		cat "$log"
		failed+=("$pkg $target")
	fi
done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's|^\./||; s|:func | |' | sort)

printf '\n%-28s %-24s %10s\n' package target execs
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}"
	exit 1
fi
