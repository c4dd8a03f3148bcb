#!/usr/bin/env bash
# A site cut off and back: how long after its link comes back until the
# mesh is whole again, and until what was written on the cut side during
# the cut has its copies.
#
# Three daemons (a, b, c), each in its own network namespace on a bridge.
# c's link is cut (its veth on the bridge set down: the others' packets to
# c go nowhere, as over a cut WAN link) for CUT seconds (default 150, the
# torture's long cut); during the cut c imports a 4 MiB disk with R=2,
# whose second copy can only go to a or b. Then c's link comes back, and
# the script times, from that moment, when every node lists the other two
# alive and when c's disk has no block short of its copies. RUNS (default
# 1) repeats the cut.
#
# During the cut every node's dials to the other side fail; libp2p keeps
# the failed addresses in a dial backoff that grows with each failure (to 5
# minutes), and each side has declared the other dead, so gossip no longer
# probes across: only the nodes' rejoins of known peers bring the two sides
# together again.
#
# Needs root (namespaces); says so and skips otherwise.
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
CUT=${CUT:-150} RUNS=${RUNS:-1}

if [ "$(id -u)" != 0 ]; then
	echo "bench-rejoin: skipped: needs root for network namespaces"
	printf 'ROW\tmesh whole after a cut heals\tskipped (not root)\t-\t-\t-\ta few seconds\n'
	exit 0
fi
for tool in ip python3; do
	command -v "$tool" >/dev/null || { echo "bench-rejoin: skipped: $tool not found"; exit 0; }
done

TAG=$(($$ % 100000))
BR=wrbr$TAG
NSP=weft-rejoin-$TAG
NODES=(a b c)
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-rejoin.XXXXXX")
. "$(dirname "$0")/lib.sh"
PIDS=()
FORWARD_RULE=""
trap 'teardown_bridged "$BR" "$NSP" 3' EXIT
trap 'exit 130' INT TERM

ns() { echo "$NSP-$1"; }
addr() { echo "10.234.0.$((10 + $1))"; }
w() { local i=$1; shift; "$WEFT" --home "$WORK/${NODES[$i]}" "$@"; }
listen() { echo "/ip4/$(addr "$1")/tcp/4001"; }

bridged_namespaces "$BR" "$NSP" "wrv$TAG" 3
CUT_DEV=wrv${TAG}h2

for i in 0 1 2; do
	secret=()
	[ "$i" = 0 ] || secret=(--cluster-secret-file "$WORK/a/cluster.secret")
	w "$i" init --site "site-$i" --nbd off --http off --listen "$(listen "$i")" "${secret[@]}" >/dev/null
	ip netns exec "$(ns "$i")" "$WEFT" --home "$WORK/${NODES[$i]}" daemon --log-level info 2>>"$WORK/${NODES[$i]}.log" &
	PIDS+=($!)
	await_status "$WORK/${NODES[$i]}.log" --home "$WORK/${NODES[$i]}"
done
A=$(w 0 id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer_id"])')
for i in 1 2; do w "$i" join "$(listen 0)/p2p/$A" >/dev/null; done
alive() { w "$1" peers --json | grep -c '"state": "alive"' || true; }
whole() { [ "$(alive 0)" = 3 ] && [ "$(alive 1)" = 3 ] && [ "$(alive 2)" = 3 ]; }
deadline=$((SECONDS + 60))
until whole; do
	[ $SECONDS -lt $deadline ] || { echo "bench-rejoin: the mesh never formed" >&2; exit 1; }
	sleep 0.2
done

head -c 4M /dev/urandom >"$WORK/src.img"
WHOLE=() COPIED=()
for r in $(seq "$RUNS"); do
	ip link set "$CUT_DEV" down
	deadline=$((SECONDS + 60))
	until [ "$(alive 0)" = 2 ] && [ "$(alive 2)" = 1 ]; do
		[ $SECONDS -lt $deadline ] || { echo "bench-rejoin: the cut was never seen" >&2; exit 1; }
		sleep 0.2
	done
	w 2 disk import "cut$r" "$WORK/src.img" --replicas 2 >/dev/null
	sleep "$CUT"
	t0=$(now)
	ip link set "$CUT_DEV" up
	whole_s="" copied_s=""
	deadline=$((SECONDS + 600))
	until [ -n "$whole_s" ] && [ -n "$copied_s" ]; do
		[ $SECONDS -lt $deadline ] || { echo "bench-rejoin: not whole within 600 s of the link's return" >&2; exit 1; }
		[ -n "$whole_s" ] || ! whole || whole_s=$(secs "$t0" "$(now)")
		[ -n "$copied_s" ] || [ "$(w 2 disk info "cut$r" --json | field under_replicated)" != 0 ] || copied_s=$(secs "$t0" "$(now)")
		sleep 0.1
	done
	echo "bench-rejoin: run $r: cut ${CUT} s; every node sees the others alive ${whole_s} s after the link is back, c's disk has its copies after ${copied_s} s" >&2
	WHOLE+=("$whole_s") COPIED+=("$copied_s")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '\na site cut off for %s s, from its link'"'"'s return (%s runs):\n' "$CUT" "$RUNS"
printf '  every node sees the others alive: %s s (median %s)\n' "${WHOLE[*]}" "$(median "${WHOLE[@]}")"
printf '  the disk written on the cut side during the cut has its copies: %s s (median %s)\n' "${COPIED[*]}" "$(median "${COPIED[@]}")"
printf 'ROW\t%s\t%s s\t%s\t%s\t%s\t%s\n' "mesh whole after a ${CUT} s cut heals (3 nodes)" "$(median "${WHOLE[@]}")" "-" "-" "-" "a few seconds"
printf 'ROW\t%s\t%s s\t%s\t%s\t%s\t%s\n' "cut side's new disk replicated after a ${CUT} s cut heals" "$(median "${COPIED[@]}")" "-" "-" "-" "-"
