#!/usr/bin/env bash
# A weft Docker volume (weft docker-plugin: FUSE file, loop device, ext4)
# against Docker's own local volume driver (a directory on the same file
# system), side by side in one run, from busybox containers on a dockerd
# the script starts: a sequential write of BENCH_SIZE MiB of random data
# (dd conv=fsync), its sequential read after the page cache is dropped,
# and the time `docker run --rm -v VOL:/data IMAGE true` takes on a volume
# used before (mount and unmount: for weft the loop device and ext4
# mount). The first use of a new weft volume, which makes its ext4, is
# shown apart. BENCH_RUNS rounds (default 3), weft and local in turn; the
# table shows medians. BENCH_DIR picks the file system (default: a
# temporary directory under /var/tmp). Needs root, dockerd (docker.io) and
# /bin/busybox (busybox-static).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-512}
RUNS=${BENCH_RUNS:-3}
[ "$(id -u)" = 0 ] || { echo "bench-docker: needs root (dockerd, loop devices, mounts)" >&2; exit 1; }
for tool in dockerd docker; do
	command -v "$tool" >/dev/null || { echo "bench-docker: $tool is not installed (make deps)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "bench-docker: /bin/busybox is missing (make deps installs busybox-static)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/wbd.XXXXXX")
export WEFT_HOME=$WORK/home
NAME=weft-bench-$$
SOCK=/run/docker/plugins/$NAME.sock
DSOCK=$WORK/docker.sock
DAEMON="" PLUGIN="" DOCKERD=""
dk() { docker -H "unix://$DSOCK" "$@"; }
stop() { if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() {
	[ -z "$DOCKERD" ] || dk volume rm -f wref >/dev/null 2>&1 || true
	stop "$DOCKERD"
	stop "$PLUGIN"
	stop "$DAEMON"
	grep -o " $WORK[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
# One plugin directory per machine: wait for the e2e test using it.
exec 9>/run/weft-docker-test.lock
flock 9

"$WEFT" init --listen /ip4/127.0.0.1/tcp/0 --http off --nbd off >/dev/null
start_daemon
"$WEFT" docker-plugin --socket "$SOCK" 2>"$WORK/plugin.log" &
PLUGIN=$!
dockerd --data-root "$WORK/data" --exec-root "$WORK/x" -H "unix://$DSOCK" --pidfile "$WORK/dockerd.pid" \
	--iptables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
DOCKERD=$!
deadline=$((SECONDS + 60))
until dk version >/dev/null 2>&1 && [ -S "$SOCK" ]; do
	[ $SECONDS -lt $deadline ] || { echo "bench-docker: dockerd or the plugin did not start" >&2; cat "$WORK/dockerd.log" "$WORK/plugin.log" >&2; exit 1; }
	sleep 0.2
done
mkdir -p "$WORK/img/bin" "$WORK/img/data" "$WORK/img/src" "$WORK/img/proc" "$WORK/img/sys" "$WORK/img/dev"
cp /bin/busybox "$WORK/img/bin/"
for a in sh dd true sync cat; do ln -s busybox "$WORK/img/bin/$a"; done
tar -C "$WORK/img" -cf "$WORK/img.tar" .
dk import --change "ENV PATH=/bin" "$WORK/img.tar" weft-bench:1 >/dev/null
IMG=weft-bench:1
head -c "${SIZE_MB}M" /dev/urandom >"$WORK/rand"
dk volume create wref >/dev/null

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v mb="$SIZE_MB" -v s="$1" 'BEGIN { printf "%.0f", mb / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); secs "$t0" "$t1"; }
write() { dk run --rm --network none -v "$1:/data" -v "$WORK/rand:/src/rand:ro" "$IMG" dd if=/src/rand of=/data/f bs=1M conv=fsync 2>/dev/null; }
read_back() { dk run --rm --network none -v "$1:/data" "$IMG" dd if=/data/f of=/dev/null bs=1M 2>/dev/null; }
start() { dk run --rm --network none -v "$1:/data" "$IMG" true; }

declare -A W R S
first=""
for run in $(seq "$RUNS"); do
	echo "round $run of $RUNS ..." >&2
	dk volume create -d "$NAME" --opt size=$((SIZE_MB * 2))M "wb$run" >/dev/null
	first+=" $(timed start "wb$run")"
	for v in "wb$run" wref; do
		drop; W[$v]=$(timed write "$v")
		drop; R[$v]=$(timed read_back "$v")
		S[$v]=$(timed start "$v")
	done
	ww+=" ${W[wb$run]}" wr+=" ${W[wref]}" rw+=" ${R[wb$run]}" rr+=" ${R[wref]}" sw+=" ${S[wb$run]}" sr+=" ${S[wref]}"
	dk volume rm "wb$run" >/dev/null
	dk run --rm --network none -v wref:/data "$IMG" sh -c 'rm -f /data/f' >/dev/null
done
mw=$(echo "$ww" | median) mr=$(echo "$wr" | median)
rw_=$(echo "$rw" | median) rr_=$(echo "$rr" | median)
msw=$(echo "$sw" | median) msr=$(echo "$sr" | median) mf=$(echo "$first" | median)
printf '%-44s %12s %12s %7s\n' "docker run, ${SIZE_MB} MiB, median of $RUNS" "weft volume" "local volume" "ratio"
printf '%-44s %9s MB/s %9s MB/s %7s\n' "write (dd conv=fsync, random data)" "$(mbps "$mw")" "$(mbps "$mr")" "$(ratio "$(mbps "$mw")" "$(mbps "$mr")")"
printf '%-44s %9s MB/s %9s MB/s %7s\n' "read (page cache dropped)" "$(mbps "$rw_")" "$(mbps "$rr_")" "$(ratio "$(mbps "$rw_")" "$(mbps "$rr_")")"
printf '%-44s %10s s %10s s %7s\n' "run --rm true (mount + unmount)" "$msw" "$msr" "$(ratio "$msw" "$msr")"
printf '%-44s %10s s\n' "run --rm true, first use (mkfs.ext4)" "$mf"
printf 'ROW\tDocker volume write, %s MiB (dd conv=fsync)\t%s MB/s\tDocker local volume\t%s MB/s\t%s\t-\n' "$SIZE_MB" "$(mbps "$mw")" "$(mbps "$mr")" "$(ratio "$(mbps "$mw")" "$(mbps "$mr")")"
printf 'ROW\tDocker volume read, %s MiB (cold)\t%s MB/s\tDocker local volume\t%s MB/s\t%s\t-\n' "$SIZE_MB" "$(mbps "$rw_")" "$(mbps "$rr_")" "$(ratio "$(mbps "$rw_")" "$(mbps "$rr_")")"
printf 'ROW\tdocker run --rm -v VOL true\t%s s\tDocker local volume\t%s s\t%s\t-\n' "$msw" "$msr" "$(ratio "$msw" "$msr")"
