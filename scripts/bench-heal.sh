#!/usr/bin/env bash
# Self-heal after a node loss, against a plain copy of the same bytes
# between the same two addresses, measured in the same run.
#
# Three nodes on 127.0.0.1-3 (three sites) hold a BENCH_SIZE MiB disk
# (default 1024) of random data with R=2. Node C is killed -9; the others
# detect it and copy what C held to the new placement sets. For each of
# RUNS fresh meshes (default 3) the table gives: the MiB each survivor
# copied, failure detection (kill until both survivors list C dead), the
# copy phase (the longer of the survivors' time in heal's fetches, from
# their status: the wall time of the copy when one survivor copies, or both
# at once), the time from the kill to fully
# replicated (both survivors ran a pass that found nothing missing), and a
# plain TCP copy (python3 sockets, written and fsynced on the receiver) of
# the same bytes from 127.0.0.1 to 127.0.0.2, run right after. Medians at
# the end. HEAL_ARGS adds daemon flags (e.g. "--probe-interval 1s");
# PROFILE=DIR records perf profiles of the survivors from the kill to
# healed.
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
RUNS=${RUNS:-3}
read -r -a HEAL_ARGS <<<"${HEAL_ARGS:-}"
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-heal.XXXXXX")
. "$(dirname "$0")/lib.sh"
PIDS=()
trap cleanup_daemons EXIT

w() { local n=$1; shift; "$WEFT" --home "$RUN/$n" "$@"; }

start() { # start NAME: run the daemon of node NAME, wait until it answers
	"$WEFT" --home "$RUN/$1" daemon --log-level "${LOG_LEVEL:-warn}" --heal-interval 2s "${HEAL_ARGS[@]}" 2>"$RUN/$1.log" &
	PIDS+=($!)
	eval "PID_$1=$!"
	await_status "$RUN/$1.log" --home "$RUN/$1"
}
sum() { echo $(($(w a status --json | field "$1") + $(w b status --json | field "$1"))); }
# fetch_s: the longer of the survivors' time in heal's fetches, in seconds.
fetch_s() {
	for n in a b; do w $n status --json | grep -o '"fetch_seconds": [0-9.e+-]*' | grep -o '[0-9.e+-]*$'; done |
		awk '{ if ($1 + 0 > m) m = $1 + 0 } END { printf "%.3f", m }'
}
alive() { w "$1" peers --json | grep -c '"state": "alive"'; }
# Healed: both survivors ran a complete pass that found nothing missing.
healed() {
	for n in a b; do
		st=$(w $n status --json)
		[ "$(echo "$st" | field under_replicated)" = 0 ] || return 1
		[ "$(echo "$st" | field pending_blocks)" = 0 ] || return 1
		echo "$st" | grep -q '"running": false' || return 1
	done
}
plain_copy() { # plain_copy BYTES: seconds of a TCP copy + fsync of BYTES
	head -c "$1" /dev/urandom >"$RUN/plain.src"
	cat "$RUN/plain.src" >/dev/null # in the page cache, like weft's blocks
	python3 - "$RUN/plain.src" "$RUN/plain.dst" <<'PY'
import os, socket, sys, threading, time
src, dst = sys.argv[1], sys.argv[2]
ln = socket.socket(); ln.bind(("127.0.0.2", 0)); ln.listen(1)
def receive():
    c, _ = ln.accept()
    with open(dst, "wb") as f:
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            f.write(b)
        f.flush(); os.fsync(f.fileno())
    c.close()
t = threading.Thread(target=receive); t.start()
start = time.time()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.connect(ln.getsockname())
with open(src, "rb") as f:
    s.sendfile(f)
s.close(); t.join()
print("%.3f" % (time.time() - start))
PY
	rm -f "$RUN/plain.src" "$RUN/plain.dst"
}
mibs() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / 1048576 / s; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

head -c "${SIZE_MB}M" /dev/urandom >"$WORK/src.img"
printf 'heal of a %s MiB disk (R=2, 3 nodes on loopback) after kill -9 of one node%s\n' "$SIZE_MB" "${HEAL_ARGS[*]:+, daemons with ${HEAL_ARGS[*]}}"
printf '%-4s %10s %9s %10s %9s %12s %11s %11s %7s\n' run "MiB healed" "by a/b" "detect s" "copy s" "kill->repl s" "copy MiB/s" "plain MiB/s" ratio
DET=() COPY=() TOTAL=() RATE=() PLAIN=() RATIO=()
for run in $(seq "$RUNS"); do
	RUN="$WORK/run$run"
	w a init --site site-a --nbd off --http off --listen /ip4/127.0.0.1/tcp/0 >/dev/null
	w b init --site site-b --nbd off --http off --listen /ip4/127.0.0.2/tcp/0 --cluster-secret-file "$RUN/a/cluster.secret" >/dev/null
	w c init --site site-c --nbd off --http off --listen /ip4/127.0.0.3/tcp/0 --cluster-secret-file "$RUN/a/cluster.secret" >/dev/null
	start a; start b; start c
	ADDR_A=$(w a id --json | grep -o '"/ip4/[^"]*' | head -1 | tr -d '"')
	w b join "$ADDR_A" >/dev/null
	w c join "$ADDR_A" >/dev/null
	w a disk import vm "$WORK/src.img" >/dev/null
	w a disk commit vm >/dev/null
	deadline=$((SECONDS + 600))
	until [ "$(w a disk info vm --json | field under_replicated)" = 0 ] &&
		[ "$(w a status --json | field passes)" -gt 0 ]; do
		[ $SECONDS -lt $deadline ] || { echo "vm never got its copies" >&2; exit 1; }
		sleep 0.5
	done
	before=$(sum copied_bytes)
	before_a=$(w a status --json | field copied_bytes)
	fetch_before=$(fetch_s)

	PERFS=()
	if [ -n "${PROFILE:-}" ]; then
		mkdir -p "$PROFILE"
		for n in a b; do
			pid=PID_$n
			perf record -q -F 499 -g -p "${!pid}" -o "$PROFILE/$n.$run.perf.data" 2>/dev/null &
			PERFS+=($!)
		done
		sleep 0.5
	fi
	t0=$(now)
	kill -KILL "$PID_c"
	wait "$PID_c" 2>/dev/null || true # reaped quietly
	until [ "$(alive b)" = 2 ] && [ "$(alive a)" = 2 ]; do sleep 0.05; done
	t1=$(now)
	deadline=$((SECONDS + 900))
	until [ "$(sum copied_bytes)" != "$before" ] && healed; do
		[ $SECONDS -lt $deadline ] || { echo "heal did not finish" >&2; exit 1; }
		sleep 0.1
	done
	t2=$(now)
	for p in "${PERFS[@]}"; do kill -INT "$p"; wait "$p" || true; done
	bytes=$(($(sum copied_bytes) - before))
	by_a=$(($(w a status --json | field copied_bytes) - before_a))
	copy=$(awk -v a="$fetch_before" -v b="$(fetch_s)" 'BEGIN { printf "%.3f", b - a }')
	stop_all
	plain=$(plain_copy "$bytes")

	DET+=("$(secs "$t0" "$t1")") COPY+=("$copy") TOTAL+=("$(secs "$t0" "$t2")")
	RATE+=("$(mibs "$bytes" "$copy")") PLAIN+=("$(mibs "$bytes" "$plain")") RATIO+=("$(ratio "$plain" "$copy")")
	printf '%-4s %10s %9s %10s %9s %12s %11s %11s %7s\n' "$run" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')" \
		"$(awk -v a="$by_a" -v b="$bytes" 'BEGIN { printf "%.0f/%.0f", a / 1048576, (b - a) / 1048576 }')" "${DET[-1]}" "$copy" "${TOTAL[-1]}" "${RATE[-1]}" "${PLAIN[-1]}" "${RATIO[-1]}"
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$RUN"
done
printf '%-4s %10s %9s %10s %9s %12s %11s %11s %7s\n' median "" "" "$(median "${DET[@]}")" "$(median "${COPY[@]}")" \
	"$(median "${TOTAL[@]}")" "$(median "${RATE[@]}")" "$(median "${PLAIN[@]}")" "$(median "${RATIO[@]}")"
echo "(by a/b = MiB each survivor copied: the owner a keeps every block of its disk, so b copies alone and copy is b's time;"
echo " copy = the longer of the survivors' time in heal's fetches; ratio = plain copy time / copy time: 1.00 means heal copies as fast as a bare socket copy + fsync)"
printf 'ROW\t%s\t%s MiB/s\t%s\t%s MiB/s\t%s\t%s\n' "heal copy phase, ${SIZE_MB} MiB disk R=2, 3 nodes" \
	"$(median "${RATE[@]}")" "plain TCP copy + fsync" "$(median "${PLAIN[@]}")" "$(median "${RATIO[@]}")" ">= 0.8"
printf 'ROW\t%s\t%s s\t%s\t%s s\t%s\t%s\n' "heal kill -9 to fully replicated, ${SIZE_MB} MiB R=2" \
	"$(median "${TOTAL[@]}")" "failure detection" "$(median "${DET[@]}")" "-" "detection + copy"
