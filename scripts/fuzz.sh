#!/usr/bin/env bash
# Runs every Fuzz target of the module (every `func FuzzX` in a _test.go
# file; with an argument, those whose package or name match that extended
# regexp) for FUZZTIME each (default 10s), one after the other, and ends with
# a table of the executions each made ("baseline": FUZZTIME went on
# re-running the corpus cached from earlier runs). A target that finds a crasher fails
# the run: go test prints it and writes it to the package's
# testdata/fuzz/FuzzX/ (keep it there as a seed once the bug is fixed);
# the other targets still run. A failure that wrote no crasher and says
# only "context deadline exceeded" is Go's own race at the end of
# -fuzztime (go.dev/issue/75804, fixed in Go 1.27): it is named as a flake,
# not counted as a failure.
#
# FUZZMINIMIZE (default 1000x) bounds the minimizing of each new interesting
# input, which Go does before fuzzing on: its minimizer is quadratic in the
# input's length, so the default 60 s let one long input (a transfer
# request of a few hundred bytes) take a short run's whole FUZZTIME.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZMINIMIZE=${FUZZMINIMIZE:-1000x}
match=${1:-.}
log=$(mktemp "${TMPDIR:-/tmp}/weft-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT

rows=() failed=()
while read -r file target; do
	pkg=./$(dirname "$file")
	echo "== $pkg $target ($FUZZTIME)"
	corpus="$(dirname "$file")/testdata/fuzz/$target"
	before=$(ls "$corpus" 2>/dev/null | wc -l)
	if "$GO" test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" "$pkg" >"$log" 2>&1; then
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		rows+=("$(printf '%-28s %-24s %10s' "$pkg" "$target" "${execs:-baseline}")")
	elif [ "$(ls "$corpus" 2>/dev/null | wc -l)" = "$before" ] && grep -q '^    context deadline exceeded$' "$log" &&
		! grep -q -e '^panic:' -e 'Failing input written' "$log"; then
		echo "flake: go.dev/issue/75804 (no crasher written)"
		rows+=("$(printf '%-28s %-24s %10s' "$pkg" "$target" "flake")")
	else
		cat "$log"
		failed+=("$pkg $target")
	fi
done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's|^\./||; s|:func | |' | grep -E -- "$match" | sort)

printf '\n%-28s %-24s %10s\n' package target execs
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}"
	exit 1
fi
