#!/usr/bin/env bash
# Runs the benchmark scripts named (default: all of them, in the order
# below), shows each one's own table, and ends with one Markdown table of
# every result row, each beside its reference measured in the same run:
# the table the README keeps. A script reports a row by printing
#   ROW<TAB>what<TAB>weft figure<TAB>reference<TAB>reference figure<TAB>ratio<TAB>goal
# A script that fails or skips (e.g. the swarm needs root) is named under
# the table; the others still run.
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
SCRIPTS=("$@")
[ ${#SCRIPTS[@]} -gt 0 ] || SCRIPTS=(bench.sh bench-wire.sh bench-nbd.sh bench-iscsi.sh bench-fuse.sh bench-heal.sh bench-heal-mesh.sh bench-detect.sh bench-rejoin.sh bench-swarm.sh bench-docker.sh)
logs=$(mktemp -d "${TMPDIR:-/tmp}/weft-bench-table.XXXXXX")
trap 'rm -rf "$logs"' EXIT

failed=()
for s in "${SCRIPTS[@]}"; do
	echo "== scripts/$s"
	"$dir/$s" 2>&1 | tee "$logs/$s.log" | grep -v $'^ROW\t'
	rc=${PIPESTATUS[0]}
	[ "$rc" = 0 ] || failed+=("$s (exit $rc)")
	grep -q $'^ROW\t' "$logs/$s.log" || [ "$rc" != 0 ] || failed+=("$s (no rows: skipped, see its output)")
done

echo
echo "| path | weft | reference | reference figure | ratio | goal |"
echo "| --- | --- | --- | --- | --- | --- |"
for s in "${SCRIPTS[@]}"; do
	grep -h $'^ROW\t' "$logs/$s.log" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7 }'
done
for f in "${failed[@]}"; do echo "not in the table: scripts/$f"; done
[ ${#failed[@]} = 0 ]
