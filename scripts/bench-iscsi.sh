#!/usr/bin/env bash
# iSCSI against NBD on the same weft disk of the same daemon, side by side
# in one run, both driven by one client, qemu-img bench (qemu's block
# layer: its iscsi driver from qemu-block-extra, its nbd driver), so the
# ratio is the doors' difference: sequential 1 MiB and 4 KiB requests, read
# and write, at a queue depth. Debian's fio has no libiscsi engine, hence
# qemu-img bench. The disk is filled and committed first, so reads read
# data, not holes. BENCH_SIZE is the disk size in MiB (default 1024);
# BENCH_REPEAT how many times each pair runs (default 3; the table shows
# medians and the spread of the per-pair ratios). The last lines are one
# ROW line per job for make bench.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
REPEAT=${BENCH_REPEAT:-3}
command -v qemu-img >/dev/null || { echo "bench-iscsi: qemu-img not found (Debian package qemu-utils)" >&2; exit 1; }
if ! ls /usr/lib/*/qemu/block-iscsi.so >/dev/null 2>&1; then
	echo "bench-iscsi: qemu has no iscsi driver (Debian package qemu-block-extra; make deps installs it)" >&2
	exit 1
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-iscsi.XXXXXX")
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

ISCSI_PORT=$(free_port)
NBD_PORT=$(free_port)
"$WEFT" init --iscsi "127.0.0.1:$ISCSI_PORT" --nbd "127.0.0.1:$NBD_PORT" --listen /ip4/127.0.0.1/tcp/0 --http off >/dev/null
start_daemon ${WEFT_DAEMON_ARGS:-}
"$WEFT" disk create bench --size "${SIZE_MB}M" >/dev/null

ISCSI_URI="iscsi://127.0.0.1:$ISCSI_PORT/iqn.2026-11.io.weft:bench/0"
NBD_URI="nbd://127.0.0.1:$NBD_PORT/bench"

# bench URI SIZE DEPTH [-w] prints the MB/s of one pass over the disk.
bench() {
	local uri=$1 size=$2 depth=$3 bytes count out
	shift 3
	bytes=$(numfmt --from=iec "${size^^}")
	count=$((SIZE_MB * 1048576 / bytes))
	if [ "$bytes" -lt 65536 ]; then count=$((count / 16)); fi # 4 KiB: a sixteenth of the disk
	out=$(qemu-img bench -f raw -c "$count" -s "$size" -d "$depth" "$@" "$uri" 2>&1) || { echo "bench-iscsi: qemu-img bench $uri: $out" >&2; exit 1; }
	awk -v n="$count" -v b="$bytes" '/Run completed in/ { printf "%.0f\n", n * b / $4 / 1e6 }' <<<"$out"
}

echo "filling ${SIZE_MB} MiB..." >&2
qemu-img bench -f raw -q -w -c "$SIZE_MB" -s 1M -d 8 "$NBD_URI" >/dev/null
"$WEFT" disk commit bench >/dev/null

JOBS="read:1M:8 write:1M:8 read:4k:16 write:4k:16"
declare -A RES
for spec in $JOBS; do
	IFS=: read -r rw size depth <<<"$spec"
	flag=""
	[ "$rw" = write ] && flag=-w
	echo "running $rw $size qd$depth (${REPEAT} pairs)..." >&2
	for r in $(seq "$REPEAT"); do
		RES[$spec:iscsi:$r]=$(bench "$ISCSI_URI" "$size" "$depth" $flag)
		"$WEFT" disk commit bench >/dev/null
		RES[$spec:nbd:$r]=$(bench "$NBD_URI" "$size" "$depth" $flag)
		"$WEFT" disk commit bench >/dev/null
	done
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
printf '%-20s%10s%10s%8s   (MB/s, medians of %d runs)\n' job iSCSI NBD ratio "$REPEAT"
rows=()
for spec in $JOBS; do
	IFS=: read -r rw size depth <<<"$spec"
	is=() ns=() ratios=()
	for r in $(seq "$REPEAT"); do
		is+=("${RES[$spec:iscsi:$r]}")
		ns+=("${RES[$spec:nbd:$r]}")
		ratios+=("$(awk -v a="${RES[$spec:iscsi:$r]}" -v b="${RES[$spec:nbd:$r]}" 'BEGIN { printf "%.2f", b ? a / b : 0 }')")
	done
	i=$(median "${is[@]}") n=$(median "${ns[@]}")
	ratio=$(awk -v a="$i" -v b="$n" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
	spread=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n '1p;$p' | paste -sd-)
	printf '%-20s%10s%10s%8s   iSCSI/NBD, pairs %s\n' "$rw $size qd$depth" "$i" "$n" "$ratio" "$spread"
	rows+=("$(printf 'ROW\tiSCSI %s %s qd%s (qemu-img bench)\t%s MB/s\tweft NBD, same disk\t%s MB/s\t%s\t>= 0.8' "$rw" "$size" "$depth" "$i" "$n" "$ratio")")
done
printf '%s\n' "${rows[@]}"
