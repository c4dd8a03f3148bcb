#!/usr/bin/env bash
# Import and export throughput of weft against cp + sync of the same file on
# the same file system, measured in the same run. BENCH_DIR picks the file
# system (default: a temporary directory under /var/tmp); BENCH_SIZE the
# file size in MiB (default 1024).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
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

"$WEFT" init --listen /ip4/127.0.0.1/tcp/0 --http off --nbd off >/dev/null
start_daemon

echo "generating a ${SIZE_MB} MiB random file in $WORK ..." >&2
head -c "${SIZE_MB}M" /dev/urandom >"$WORK/src.img"
sync
# Both runs read the source from the page cache: it was just written.

t0=$(now); cp "$WORK/src.img" "$WORK/copy.img"; sync; t1=$(now)
cp_s=$(secs "$t0" "$t1")
rm -f "$WORK/copy.img"; sync

t0=$(now); "$WEFT" disk import bench "$WORK/src.img" >/dev/null; t1=$(now)
imp_s=$(secs "$t0" "$t1")

t0=$(now); "$WEFT" disk export bench "$WORK/out.img" >/dev/null; sync; t1=$(now)
exp_s=$(secs "$t0" "$t1")
cmp -s "$WORK/src.img" "$WORK/out.img" || { echo "export differs from the source" >&2; exit 1; }

t0=$(now); "$WEFT" disk export bench - >/dev/null; t1=$(now)
expnull_s=$(secs "$t0" "$t1")

printf '\n%-34s %10s %10s %8s\n' "${SIZE_MB} MiB random file" "seconds" "MiB/s" "vs cp"
printf '%-34s %10s %10s %8s\n' "cp + sync (reference)" "$cp_s" "$(mbps "$cp_s")" "1.00"
printf '%-34s %10s %10s %8s\n' "weft disk import" "$imp_s" "$(mbps "$imp_s")" "$(awk -v a="$cp_s" -v b="$imp_s" 'BEGIN { printf "%.2f", a / b }')"
printf '%-34s %10s %10s %8s\n' "weft disk export to a file + sync" "$exp_s" "$(mbps "$exp_s")" "$(awk -v a="$cp_s" -v b="$exp_s" 'BEGIN { printf "%.2f", a / b }')"
printf '%-34s %10s %10s %8s\n' "weft disk export to /dev/null" "$expnull_s" "$(mbps "$expnull_s")" "-"
echo "(vs cp = cp time / weft time: above 1.00 is faster than cp; the goal for import is >= 0.80)"

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
