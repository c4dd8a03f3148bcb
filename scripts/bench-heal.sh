#!/usr/bin/env bash
# Self-heal after a node loss, against a plain copy of the same bytes
# between the same two nodes, measured in the same run.
#
# Three nodes on 127.0.0.1-3 (three sites) hold a BENCH_SIZE MiB disk
# (default 1024) of random data with R=2. Node C is killed -9; the others
# detect it and copy what C held to the new placement sets. The table gives
# the time from the kill to a fully replicated disk, the copy phase alone,
# and a plain TCP copy (python3 sockets, written and fsynced on the
# receiver) of the same number of bytes from A's address to B's.
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-heal.XXXXXX")
. "$(dirname "$0")/lib.sh"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

w() { local n=$1; shift; "$WEFT" --home "$WORK/$n" "$@"; }

start() { # start NAME: run the daemon of node NAME, wait until it answers
	"$WEFT" --home "$WORK/$1" daemon --log-level warn --heal-interval 2s 2>"$WORK/$1.log" &
	PIDS+=($!)
	eval "PID_$1=$!"
	await_status "$WORK/$1.log" --home "$WORK/$1"
}

w a init --site site-a --nbd off --http off --listen /ip4/127.0.0.1/tcp/0 >/dev/null
w b init --site site-b --nbd off --http off --listen /ip4/127.0.0.2/tcp/0 --cluster-secret-file "$WORK/a/cluster.secret" >/dev/null
w c init --site site-c --nbd off --http off --listen /ip4/127.0.0.3/tcp/0 --cluster-secret-file "$WORK/a/cluster.secret" >/dev/null
start a; start b; start c
ADDR_A=$(w a id --json | grep -o '"/ip4/[^"]*' | head -1 | tr -d '"')
w b join "$ADDR_A" >/dev/null
w c join "$ADDR_A" >/dev/null

echo "generating and importing a ${SIZE_MB} MiB random disk on A (R=2) ..." >&2
head -c "${SIZE_MB}M" /dev/urandom >"$WORK/src.img"
w a disk import vm "$WORK/src.img" >/dev/null
rm -f "$WORK/src.img"
w a disk commit vm >/dev/null
deadline=$((SECONDS + 600))
until [ "$(w a disk info vm --json | field under_replicated)" = 0 ] &&
	[ "$(w a status --json | field passes)" -gt 0 ]; do
	[ $SECONDS -lt $deadline ] || { echo "vm never got its copies" >&2; exit 1; }
	sleep 0.5
done
copied() { echo $(($(w a status --json | field copied_bytes) + $(w b status --json | field copied_bytes))); }
before=$(copied)
if [ -n "${VERBOSE:-}" ]; then
	for n in a b c; do echo "$n: $(w $n status --json | tr -d '\n ' | grep -o '"blocks":[0-9]*,"bytes":[0-9]*')" >&2; done
fi

alive() { w "$1" peers --json | grep -c '"state": "alive"'; }
t0=$(now)
kill -KILL "$PID_c"
until [ "$(alive b)" = 2 ] && [ "$(alive a)" = 2 ]; do sleep 0.1; done
t1=$(now)
# Healed: both survivors ran a complete pass that found nothing missing.
healed() {
	for n in a b; do
		st=$(w $n status --json)
		[ "$(echo "$st" | field under_replicated)" = 0 ] || return 1
		[ "$(echo "$st" | field pending_blocks)" = 0 ] || return 1
		echo "$st" | grep -q '"running": false' || return 1
	done
}
last=$before
first_copy=""
deadline=$((SECONDS + 900))
while :; do
	c=$(copied)
	if [ "$c" != "$last" ] && [ -z "$first_copy" ]; then first_copy=$(now); fi
	if [ "$c" != "$before" ] && healed; then break; fi
	last=$c
	[ $SECONDS -lt $deadline ] || { echo "heal did not finish" >&2; exit 1; }
	sleep 0.2
done
t2=$(now)
healed_bytes=$(($(copied) - before))
if [ -n "${VERBOSE:-}" ]; then
	for n in a b; do echo "$n: $(w $n status --json | tr -d '\n ' | grep -o '"blocks":[0-9]*,"bytes":[0-9]*')" >&2; done
fi
[ -n "$first_copy" ] || first_copy=$t1

echo "plain copy of the same ${healed_bytes} bytes from 127.0.0.1 to 127.0.0.2 ..." >&2
head -c "$healed_bytes" /dev/urandom >"$WORK/plain.src"
cat "$WORK/plain.src" >/dev/null # in the page cache, like weft's blocks
python3 - "$WORK/plain.src" "$WORK/plain.dst" <<'PY' >"$WORK/plain.secs"
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
print("%.2f" % (time.time() - start))
PY
plain_s=$(cat "$WORK/plain.secs")
mb=$(awk -v b="$healed_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
detect_s=$(secs "$t0" "$t1")
total_s=$(secs "$t0" "$t2")
copy_s=$(secs "$first_copy" "$t2")
rate() { awk -v mb="$mb" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", mb / s; else print "-" }'; }

printf '\nheal of a %s MiB disk (R=2, 3 nodes) after kill -9 of one node: %s MiB re-replicated\n' "$SIZE_MB" "$mb"
printf '%-44s %9s %9s %8s\n' "" "seconds" "MiB/s" "ratio"
printf '%-44s %9s %9s %8s\n' "plain TCP copy + fsync (reference)" "$plain_s" "$(rate "$plain_s")" "1.00"
printf '%-44s %9s %9s %8s\n' "weft heal, copy phase" "$copy_s" "$(rate "$copy_s")" \
	"$(awk -v a="$plain_s" -v b="$copy_s" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
printf '%-44s %9s %9s %8s\n' "weft heal, kill to fully replicated" "$total_s" "$(rate "$total_s")" \
	"$(awk -v a="$plain_s" -v b="$total_s" 'BEGIN { printf "%.2f", a / b }')"
printf '%-44s %9s\n' "  of which failure detection" "$detect_s"
echo "(ratio = plain copy time / weft time: 1.00 means heal moves data as fast as a bare socket copy)"
