#!/usr/bin/env bash
# Sequential 1 MiB read and write throughput of a weft disk through its
# FUSE file (weft mount) against a local file on the same file system,
# measured side by side in one run with fio (ioengine=psync, one job).
# Page cache and O_DIRECT runs; the page cache is dropped before every
# buffered read when running as root. BENCH_DIR picks the file system
# (default: a temporary directory under /var/tmp); BENCH_SIZE the size in
# MiB (default 1024); BENCH_REPEAT how many times each pair runs (default
# 3; the table shows medians). weft keeps verified blocks in its own
# memory cache, which dropping the page cache does not empty: the first
# row reads a disk weft has never read (its cache cold too), the second
# the same data again. After each FUSE write run the disk is committed,
# outside the timing, so that weft's background commit does not land in
# the next measurement. Needs root (or fusermount3), /dev/fuse and fio.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
REPEAT=${BENCH_REPEAT:-3}
command -v fio >/dev/null || { echo "bench-fuse: fio is not installed (apt-get install fio)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench-fuse: /dev/fuse is missing" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-fuse.XXXXXX")
export WEFT_HOME=$WORK/home
MNT=$WORK/mnt
DAEMON=""
cleanup() {
	if mountpoint -q "$MNT" 2>/dev/null; then
		"$WEFT" umount --lazy "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true
	fi
	if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
		kill -TERM "$DAEMON" 2>/dev/null || true
		wait "$DAEMON" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

"$WEFT" init --nbd off --listen /ip4/127.0.0.1/tcp/0 --http off >/dev/null
start_daemon
mkdir "$MNT"
"$WEFT" mount -d "$MNT" >/dev/null

echo "generating a ${SIZE_MB} MiB random file in $WORK and importing it ..." >&2
head -c "${SIZE_MB}M" /dev/urandom >"$WORK/local.img"
"$WEFT" disk import bench "$WORK/local.img" >/dev/null
sync

CAN_DROP=0
if [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then CAN_DROP=1; fi
drop() { if [ $CAN_DROP = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }

# run FILE RW DIRECT -> MiB/s. fio's terse output: field 7 is the read
# bandwidth, field 48 the write bandwidth, in KiB/s.
run() {
	local file=$1 rw=$2 direct=$3 field=7 extra=()
	if [ "$rw" = write ]; then field=48; extra=(--end_fsync=1); fi
	fio --name=seq --filename="$file" --rw="$rw" --bs=1M --size="${SIZE_MB}M" \
		--ioengine=psync --direct="$direct" --fallocate=none --invalidate=1 \
		--numjobs=1 --minimal "${extra[@]}" | awk -F';' -v f="$field" '{ printf "%.0f", $f / 1024 }'
}

row() { # label local weft
	printf '%-48s %10s %10s %8s\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", b / a }')"
}

# pairs LOCALRUN FUSERUN: runs both REPEAT times, alternating, dropping
# the page cache before each, and prints "local-median fuse-median".
pairs() {
	local l=() f=() r
	for r in $(seq "$REPEAT"); do
		drop; l+=("$($1)")
		drop; f+=("$($2)")
	done
	printf '%s\n' "${l[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%s ", a[int((NR + 1) / 2)] }'
	printf '%s\n' "${f[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

FUSE=$MNT/bench.img
commit() { "$WEFT" disk commit bench >/dev/null; }
fuse_write() { run "$FUSE" write "$1"; commit; }

drop; lr=$(run "$WORK/local.img" read 0)
drop; fr=$(run "$FUSE" read 0)
read -r lr2 fr2 < <(pairs "run $WORK/local.img read 0" "run $FUSE read 0")
read -r lrd frd < <(pairs "run $WORK/local.img read 1" "run $FUSE read 1")
read -r lw fw < <(pairs "run $WORK/local.img write 0" "fuse_write 0")
read -r lwd fwd < <(pairs "run $WORK/local.img write 1" "fuse_write 1")

cold="page cache dropped"
[ $CAN_DROP = 1 ] || cold="page cache NOT dropped (not root)"
printf '\n%-48s %10s %10s %8s\n' "seq 1 MiB, ${SIZE_MB} MiB, fio psync" "local MiB/s" "FUSE MiB/s" "FUSE/local"
row "read, $cold, weft cache cold (1 run)" "$lr" "$fr"
row "read, $cold, weft cache warm" "$lr2" "$fr2"
row "read, O_DIRECT" "$lrd" "$frd"
row "write + fsync, page cache" "$lw" "$fw"
row "write, O_DIRECT + fsync" "$lwd" "$fwd"
echo "(local = a file on the same file system as the weft home; FUSE = the same data as DIR/<disk>.img; medians of $REPEAT runs unless marked)"
