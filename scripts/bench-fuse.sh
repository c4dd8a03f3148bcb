#!/usr/bin/env bash
# A weft disk through its FUSE file (weft mount) against a local file on
# the same file system and against the FUSE ceiling, side by side in one
# run with fio: sequential 1 MiB reads and writes (psync, page cache and
# O_DIRECT), random 4 KiB reads and writes (libaio, iodepth 16, O_DIRECT)
# and random 4 KiB writes from 4 threads (psync, O_DIRECT), as a table of
# MB/s, IOPS and p99 latency with the weft/local and weft/ceiling ratios.
# The ceiling is cmd/fuseceiling, a FUSE server mounted like
# weft's that does no work at all (writes thrown away, reads zeros):
# no FUSE server can beat it on this machine, so ceiling/local is what
# FUSE itself costs here and weft/ceiling is what weft adds to it.
# The page cache is dropped before every buffered read when running as
# root. weft keeps verified blocks in its own memory cache, which dropping
# the page cache does not empty: the first row reads a disk weft has never
# read (its cache cold too), the second the same data again. After each
# weft write run the disk is committed, outside the timing, so that
# weft's background commit does not land in the next measurement.
# BENCH_DIR picks the file system (default: a temporary directory under
# /var/tmp); BENCH_SIZE the size in MiB (default 1024); BENCH_RUNTIME the
# seconds per random job (default 5); BENCH_REPEAT how many times each
# set runs, alternating (default 3; the table shows medians). Needs root
# (or fusermount3), /dev/fuse, fio, go and python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WEFT=${WEFT:-$ROOT/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
RUNTIME=${BENCH_RUNTIME:-5}
REPEAT=${BENCH_REPEAT:-3}
for tool in fio go python3; do
	command -v "$tool" >/dev/null || { echo "bench-fuse: $tool is not installed" >&2; exit 1; }
done
[ -e /dev/fuse ] || { echo "bench-fuse: /dev/fuse is missing" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-fuse.XXXXXX")
export WEFT_HOME=$WORK/home
MNT=$WORK/mnt
CEIL_MNT=$WORK/ceiling
DAEMON=""
CEILING=""
cleanup() {
	if mountpoint -q "$MNT" 2>/dev/null; then
		"$WEFT" umount --lazy "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true
	fi
	if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
		kill -TERM "$DAEMON" 2>/dev/null || true
		wait "$DAEMON" 2>/dev/null || true
	fi
	if [ -n "$CEILING" ] && kill -0 "$CEILING" 2>/dev/null; then
		kill -TERM "$CEILING" 2>/dev/null || true
		wait "$CEILING" 2>/dev/null || true
	fi
	if mountpoint -q "$CEIL_MNT" 2>/dev/null; then umount -l "$CEIL_MNT" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && go build -o "$WORK/fuseceiling" ./cmd/fuseceiling)
mkdir "$MNT" "$CEIL_MNT"
"$WORK/fuseceiling" --size $((SIZE_MB << 20)) "$CEIL_MNT" &
CEILING=$!
"$WEFT" init --nbd off --listen /ip4/127.0.0.1/tcp/0 --http off >/dev/null
start_daemon
"$WEFT" mount -d "$MNT" >/dev/null
for _ in $(seq 100); do [ -e "$CEIL_MNT/ceiling.img" ] && break; sleep 0.1; done
[ -e "$CEIL_MNT/ceiling.img" ] || { echo "bench-fuse: the ceiling server did not mount" >&2; exit 1; }

echo "generating a ${SIZE_MB} MiB random file in $WORK and importing it ..." >&2
head -c "${SIZE_MB}M" /dev/urandom >"$WORK/local.img"
"$WEFT" disk import bench "$WORK/local.img" >/dev/null
sync

CAN_DROP=0
if [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then CAN_DROP=1; fi
drop() { if [ $CAN_DROP = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }

LOCAL=$WORK/local.img
CEIL=$CEIL_MNT/ceiling.img
FUSE=$MNT/bench.img

# run FILE JOB OUT writes fio's JSON report of JOB on FILE to OUT. A job
# is RW:BS:DEPTH:DIRECT:THREADS; a write job ends with an fsync; a job with
# a queue (libaio) or several threads (psync, like QEMU's aio=threads) is
# timed, the others go through the file once.
run() {
	local file=$1 rw bs depth direct threads extra=()
	IFS=: read -r rw bs depth direct threads <<<"$2"
	case $rw in *write) extra+=(--end_fsync=1) ;; esac
	if [ "$depth" = 1 ]; then
		extra+=(--ioengine=psync)
	else
		extra+=(--ioengine=libaio --iodepth="$depth")
	fi
	if [ "$depth" != 1 ] || [ "$threads" != 1 ]; then
		extra+=(--time_based --runtime="$RUNTIME" --randrepeat=0)
	fi
	fio --name=job --filename="$file" --rw="$rw" --bs="$bs" --size="${SIZE_MB}M" \
		--direct="$direct" --fallocate=none --invalidate=1 --numjobs="$threads" \
		--group_reporting --output-format=json "${extra[@]}" >"$3"
	if [ "$file" = "$FUSE" ] && [ "${rw%write}" != "$rw" ]; then
		"$WEFT" disk commit bench >/dev/null
	fi
}

# JOBS: NAME:LABEL:RW:BS:DEPTH:DIRECT:THREADS. "cold" runs once, first:
# weft's block cache has not seen the disk yet.
JOBS=(
	"cold:seq read 1M, weft cache cold (1 run):read:1M:1:0:1"
	"seqread:seq read 1M:read:1M:1:0:1"
	"seqread-direct:seq read 1M O_DIRECT:read:1M:1:1:1"
	"seqwrite:seq write 1M + fsync:write:1M:1:0:1"
	"seqwrite-direct:seq write 1M O_DIRECT + fsync:write:1M:1:1:1"
	"randread:rand read 4K qd16 O_DIRECT:randread:4k:16:1:1"
	"randwrite:rand write 4K qd16 O_DIRECT + fsync:randwrite:4k:16:1:1"
	"randwrite-threads:rand write 4K 4 threads O_DIRECT + fsync:randwrite:4k:1:1:4"
)
for spec in "${JOBS[@]}"; do
	IFS=: read -r name label job <<<"$spec"
	repeat=$REPEAT
	[ "$name" = cold ] && repeat=1
	echo "running $label ..." >&2
	# Alternate the three targets, dropping the page cache before each.
	for r in $(seq "$repeat"); do
		drop; run "$LOCAL" "$job" "$WORK/local-$name-$r.json"
		drop; run "$CEIL" "$job" "$WORK/ceiling-$name-$r.json"
		drop; run "$FUSE" "$job" "$WORK/weft-$name-$r.json"
	done
done

cold="page cache dropped before each read"
[ $CAN_DROP = 1 ] || cold="page cache NOT dropped (not root)"
PYTHONPATH="$(dirname "$0")" python3 - "$WORK" "$REPEAT" "${JOBS[@]}" <<'PY'
import sys
from fio_stats import median, stats
work, repeat, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def ratio(a, b):
    return a / b if b else float("nan")

rows = []
print(f"{'job':<42}{'target':<9}{'MB/s':>9}{'IOPS':>9}{'p99 µs':>10}")
for spec in specs:
    name, label, rw = spec.split(":")[:3]
    n = 1 if name == "cold" else repeat
    m = {t: median([stats(f"{work}/{t}-{name}-{r}.json", rw) for r in range(1, n + 1)])
         for t in ("local", "ceiling", "weft")}
    for i, t in enumerate(("local", "ceiling", "weft")):
        print(f"{label if i == 0 else '':<42}{t:<9}{m[t][0]:>9.0f}{m[t][1]:>9.0f}{m[t][2]:>10.0f}")
    for base, tag in (("local", "vs local"), ("ceiling", "vs ceil")):
        print(f"{'':<42}{tag:<9}{ratio(m['weft'][0], m[base][0]):>9.2f}"
              f"{ratio(m['weft'][1], m[base][1]):>9.2f}{ratio(m['weft'][2], m[base][2]):>10.2f}")
    rows.append(f"ROW\tFUSE {label}\t{m['weft'][0]:.0f} MB/s\ta local file\t{m['local'][0]:.0f} MB/s"
                f"\t{ratio(m['weft'][0], m['local'][0]):.2f}\t>= 1.00 (issue 4)")
for r in rows:
    print(r)
PY
echo "(vs local, vs ceil: weft's figure over theirs, higher is better for MB/s and IOPS, lower for p99 latency; local = a file on the same file system as the weft home; ceiling = a FUSE server that does no work; weft = the same data as DIR/<disk>.img; $cold; medians of $REPEAT alternating runs unless marked)"
