#!/usr/bin/env bash
# Import and export throughput of weft against cp + sync of the same file on
# the same file system, measured in the same run: BENCH_RUNS rounds
# (default 3), each of a fresh random file (the store deduplicates) copied
# by cp + sync, imported, and exported to a file + sync, in turn; the table
# shows medians and the ROW lines the median of each round's ratio.
# BENCH_DIR picks the file system (default: a temporary directory under
# /var/tmp); BENCH_SIZE the file size in MiB (default 1024); BENCH_HEAD=0
# skips the head operations (Go benchmarks) after the table.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
RUNS=${BENCH_RUNS:-3}
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench.XXXXXX")
export WEFT_HOME=$WORK/home
DAEMON=""
cleanup() {
	if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
		kill -TERM "$DAEMON" 2>/dev/null || true
		wait "$DAEMON" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

mbps() { awk -v mb="$SIZE_MB" -v s="$1" 'BEGIN { printf "%.0f", mb / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

"$WEFT" init --listen /ip4/127.0.0.1/tcp/0 --http off --nbd off >/dev/null
start_daemon

# The work disk here is a virtual one whose host absorbs about 2 GiB of
# writes fast and then slows to its device's speed until it catches up, and
# a deleted file's space (discarded) counts no more. So each weft run has a
# cp + sync of its own, made in the same state: before the import (the store
# empty), and beside the export (the store holding the imported disk), the
# two in turn first; every output is deleted and synced before the next.
cpi_all="" cpe_all="" imp_all="" exp_all="" str_all="" imp_r="" exp_r=""
copy() { t0=$(now); cp "$WORK/src.img" "$WORK/copy.img"; sync; t1=$(now); rm -f "$WORK/copy.img"; sync; secs "$t0" "$t1"; }
export_file() { t0=$(now); "$WEFT" disk export "bench$run" "$WORK/out.img" >/dev/null; sync; t1=$(now)
	cmp -s "$WORK/src.img" "$WORK/out.img" || { echo "export differs from the source" >&2; exit 1; }
	rm -f "$WORK/out.img"; sync; secs "$t0" "$t1"; }
for run in $(seq "$RUNS"); do
	echo "round $run of $RUNS: a fresh ${SIZE_MB} MiB random file ..." >&2
	head -c "${SIZE_MB}M" /dev/urandom >"$WORK/src.img"
	sync
	# Every copy reads the source from the page cache: it was just written.
	cpi_s=$(copy)

	t0=$(now); "$WEFT" disk import "bench$run" "$WORK/src.img" >/dev/null; t1=$(now)
	imp_s=$(secs "$t0" "$t1")

	if [ $((run % 2)) = 1 ]; then
		exp_s=$(export_file); cpe_s=$(copy)
	else
		cpe_s=$(copy); exp_s=$(export_file)
	fi

	# The stream every non-file output (stdout, a pipe, a device) gets.
	t0=$(now); "$WEFT" disk export "bench$run" - >/dev/null; t1=$(now)
	str_s=$(secs "$t0" "$t1")

	"$WEFT" disk rm "bench$run" >/dev/null
	"$WEFT" gc >/dev/null
	sync
	echo "  cp + sync ${cpi_s}s, import ${imp_s}s ($(ratio "$cpi_s" "$imp_s")); cp + sync ${cpe_s}s, export ${exp_s}s ($(ratio "$cpe_s" "$exp_s")); stream ${str_s}s" >&2
	cpi_all+=" $cpi_s" cpe_all+=" $cpe_s" imp_all+=" $imp_s" exp_all+=" $exp_s" str_all+=" $str_s"
	imp_r+=" $(ratio "$cpi_s" "$imp_s")" exp_r+=" $(ratio "$cpe_s" "$exp_s")"
done
cpi_m=$(median <<<"$cpi_all") cpe_m=$(median <<<"$cpe_all") imp_m=$(median <<<"$imp_all") exp_m=$(median <<<"$exp_all") str_m=$(median <<<"$str_all")
imp_rm=$(median <<<"$imp_r") exp_rm=$(median <<<"$exp_r")
span() { tr ' ' '\n' | grep . | sort -g | sed -n '1p;$p' | paste -sd- -; }

printf '\n%-38s %10s %10s %16s\n' "${SIZE_MB} MiB random file, median of $RUNS" "seconds" "MiB/s" "vs cp (rounds)"
printf '%-38s %10s %10s %16s\n' "cp + sync, store empty (reference)" "$cpi_m" "$(mbps "$cpi_m")" "1.00"
printf '%-38s %10s %10s %16s\n' "weft disk import (file passed)" "$imp_m" "$(mbps "$imp_m")" "$imp_rm ($(span <<<"$imp_r"))"
printf '%-38s %10s %10s %16s\n' "cp + sync, disk in store (reference)" "$cpe_m" "$(mbps "$cpe_m")" "1.00"
printf '%-38s %10s %10s %16s\n' "weft disk export to a file + sync" "$exp_m" "$(mbps "$exp_m")" "$exp_rm ($(span <<<"$exp_r"))"
printf '%-38s %10s %10s %16s\n' "weft disk export - (stream) >/dev/null" "$str_m" "$(mbps "$str_m")" "-"
echo "(vs cp = cp time / weft time, the median of the rounds' ratios: above 1.00 is faster than cp; the goal is >= 0.80)"

if [ "${BENCH_HEAD:-1}" != 0 ]; then
	# Commit throughput and replica creation come from the volume package's Go
	# benchmarks: they need writes into a head, which the CLI does not offer
	# before NBD and FUSE.
	echo "running the volume benchmarks (commit, replica creation) ..." >&2
	bench_out=$(cd "$(dirname "$0")/.." && go test -run '^$' -bench 'BenchmarkCommit$|BenchmarkReplicaCreate' -benchtime 20x ./volume/)
	field() { awk -v name="$1" -v unit="$2" '$1 ~ "^"name"(-[0-9]+)?$" { for (i = 2; i <= NF; i++) if ($(i+1) == unit) print $i }' <<<"$bench_out"; }
	commit_mbs=$(field BenchmarkCommit MB/s)
	rep1g=$(field 'BenchmarkReplicaCreate/1GiB' ns/op)
	rep1t=$(field 'BenchmarkReplicaCreate/1TiB' ns/op)
	printf '\n%-46s %12s\n' "head operations (in process)" "figure"
	printf '%-46s %9.0f MB/s\n' "commit 64 MiB of dirty 64 KiB blocks" "$commit_mbs"
	printf '%-46s %10.2f ms\n' "replica create, 1 GiB disk (one dirty block)" "$(awk -v n="$rep1g" 'BEGIN { print n / 1e6 }')"
	printf '%-46s %10.2f ms\n' "replica create, 1 TiB disk (one dirty block)" "$(awk -v n="$rep1t" 'BEGIN { print n / 1e6 }')"
	printf '%-46s %12.2f\n' "1 TiB / 1 GiB replica time (O(1): about 1)" "$(awk -v a="$rep1t" -v b="$rep1g" 'BEGIN { print a / b }')"
fi

printf 'ROW\t%s\t%s\t%s\t%s\t%s\t%s\n' "disk import ${SIZE_MB} MiB file" "$(mbps "$imp_m") MiB/s" "cp + sync" "$(mbps "$cpi_m") MiB/s" "$imp_rm" ">= 0.8"
printf 'ROW\t%s\t%s\t%s\t%s\t%s\t%s\n' "disk export ${SIZE_MB} MiB to a file + sync" "$(mbps "$exp_m") MiB/s" "cp + sync" "$(mbps "$cpe_m") MiB/s" "$exp_rm" ">= 0.8"
