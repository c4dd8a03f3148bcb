#!/usr/bin/env bash
# The failure detector under load: false suspicions and deaths while the
# members are busy, and the time from kill -9 to dead, for the daemon's
# detector timing (DETECTOR, extra daemon flags such as
# "--probe-interval 1s --suspicion-mult 4"; default: the daemon's default).
#
# Three daemons, each in its own network namespace on a bridge, every link
# capped at RATE Mbit/s each way (default 20) by tbf with a QUEUE ms queue
# (default 50). Load: both cores saturated by LOADERS busy loops (default
# 4) while node a imports an F MiB disk of random data (default 48) with
# R=3 and pushes it to b and c over a's capped uplink, until it is fully
# replicated (about 2F·8/RATE seconds, the link full all that time). Every
# suspicion and death the members log meanwhile is a false one. Then, the
# busy loops still running, c is killed -9 and restarted KILLS times
# (default 3): detection is the time until both a and b list it dead.
#
# The members talk QUIC (TRANSPORT=quic; libp2p prefers it when a member
# listens on both, as weft init's default does) or TCP (TRANSPORT=tcp):
# over TCP every stream to a member shares one connection, and gossip
# waits behind whatever bulk data is queued ahead of it on a full capped
# link. TRANSPORT="quic tcp" (the default) runs the whole bench once for
# each. NOTSENT=BYTES sets net.ipv4.tcp_notsent_lowat in the namespaces.
#
# Needs root (namespaces, tc); says so and skips otherwise.
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
RATE=${RATE:-20} QUEUE=${QUEUE:-50} F=${F:-48} LOADERS=${LOADERS:-4} KILLS=${KILLS:-3}
read -r -a DETECTOR <<<"${DETECTOR:-}"

TRANSPORT=${TRANSPORT:-quic tcp}
if [ "$(wc -w <<<"$TRANSPORT")" -gt 1 ]; then
	for t in $TRANSPORT; do TRANSPORT=$t bash "$0" || exit; done
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "bench-detect: skipped: needs root for network namespaces and tc"
	exit 0
fi
for tool in ip tc python3; do
	command -v "$tool" >/dev/null || { echo "bench-detect: skipped: $tool not found"; exit 0; }
done

TAG=$(($$ % 100000))
BR=wdbr$TAG
NSP=weft-detect-$TAG
NODES=(a b c)
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-detect.XXXXXX")
. "$(dirname "$0")/lib.sh"
PIDS=()
LOAD=()
FORWARD_RULE=""
cleanup() {
	for p in "${LOAD[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	teardown_bridged "$BR" "$NSP" 3
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "$NSP-$1"; }
addr() { echo "10.232.0.$((10 + $1))"; }
w() { local i=$1; shift; "$WEFT" --home "$WORK/${NODES[$i]}" "$@"; }

bridged_namespaces "$BR" "$NSP" "wdv$TAG" 3
for i in 0 1 2; do
	host=wdv${TAG}h$i peer=wdv${TAG}n$i
	tc qdisc add dev "$host" root tbf rate "${RATE}mbit" burst 64kb latency "${QUEUE}ms"
	ip netns exec "$(ns "$i")" tc qdisc add dev "$peer" root tbf rate "${RATE}mbit" burst 64kb latency "${QUEUE}ms"
	[ -z "${NOTSENT:-}" ] || ip netns exec "$(ns "$i")" sysctl -qw net.ipv4.tcp_notsent_lowat="$NOTSENT"
done
listen() { # listen I: node I's mesh address
	case $TRANSPORT in
	tcp) echo "/ip4/$(addr "$1")/tcp/4001" ;;
	quic) echo "/ip4/$(addr "$1")/udp/4001/quic-v1" ;;
	esac
}

declare -a PID_OF=()
start() { # start I: the daemon of node I in its namespace, waited for
	ip netns exec "$(ns "$1")" "$WEFT" --home "$WORK/${NODES[$1]}" daemon --log-level info \
		"${DETECTOR[@]}" 2>>"$WORK/${NODES[$1]}.log" &
	PIDS+=($!)
	PID_OF[$1]=$!
	await_status "$WORK/${NODES[$1]}.log" --home "$WORK/${NODES[$1]}"
}
alive() { w "$1" peers --json | grep -c '"state": "alive"' || true; }
dead_of() { w "$1" peers --json | grep -c '"state": "dead"' || true; }
# suspicions/deaths: what the members logged about each other so far.
suspicions() { cat "$WORK"/?.log | grep -c 'Suspect .* has failed' || true; }
deaths() { cat "$WORK"/?.log | grep -c 'Marking .* as failed' || true; }

for i in 0 1 2; do
	secret=()
	[ "$i" = 0 ] || secret=(--cluster-secret-file "$WORK/a/cluster.secret")
	w "$i" init --site "site-$i" --nbd off --http off --listen "$(listen "$i")" "${secret[@]}" >/dev/null
	start "$i"
done
A=$(w 0 id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer_id"])')
for i in 1 2; do w "$i" join "$(listen 0)/p2p/$A" >/dev/null; done
deadline=$((SECONDS + 60))
until [ "$(alive 0)" = 3 ] && [ "$(alive 1)" = 3 ] && [ "$(alive 2)" = 3 ]; do
	[ $SECONDS -lt $deadline ] || { echo "bench-detect: the mesh never formed" >&2; exit 1; }
	sleep 0.2
done

echo "bench-detect: ${DETECTOR[*]:-default detector}; $TRANSPORT over links of ${RATE} Mbit/s (tbf queue ${QUEUE} ms), $LOADERS busy loops" >&2
for _ in $(seq "$LOADERS"); do
	(while :; do :; done) &
	LOAD+=($!)
done
head -c "${F}M" /dev/urandom >"$WORK/src.img"
t0=$(now)
w 0 disk import vm "$WORK/src.img" --replicas 3 >/dev/null
w 0 disk commit vm >/dev/null
deadline=$((SECONDS + 600))
falsedead=0
until [ "$(w 0 disk info vm --json | field under_replicated)" = 0 ]; do
	[ $SECONDS -lt $deadline ] || { echo "bench-detect: vm never got its copies" >&2; exit 1; }
	for i in 0 1 2; do [ "$(dead_of "$i")" = 0 ] || falsedead=1; done
	sleep 0.5
done
load_s=$(secs "$t0" "$(now)")
load_susp=$(suspicions) load_deaths=$(deaths)

DETECT=()
for k in $(seq "$KILLS"); do
	t0=$(now)
	kill -KILL "${PID_OF[2]}"
	wait "${PID_OF[2]}" 2>/dev/null || true
	deadline=$((SECONDS + 120))
	until [ "$(dead_of 0)" = 1 ] && [ "$(dead_of 1)" = 1 ]; do
		[ $SECONDS -lt $deadline ] || { echo "bench-detect: c never declared dead" >&2; exit 1; }
		sleep 0.05
	done
	DETECT+=("$(secs "$t0" "$(now)")")
	[ "$k" = "$KILLS" ] && break
	start 2
	deadline=$((SECONDS + 60))
	until [ "$(alive 0)" = 3 ] && [ "$(alive 1)" = 3 ] && [ "$(alive 2)" = 3 ]; do
		[ $SECONDS -lt $deadline ] || { echo "bench-detect: c never came back" >&2; exit 1; }
		sleep 0.2
	done
	sleep 2
done
median=$(printf '%s\n' "${DETECT[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')

printf '\nfailure detector: %s\n' "${DETECTOR[*]:-default (weft daemon --help)}"
printf 'under load (%s busy loops, %d MiB pushed to 2 members over %s at %s Mbit/s, %s s):\n' "$LOADERS" "$F" "$TRANSPORT" "$RATE" "$load_s"
printf '  false suspicions %s, false deaths %s%s\n' "$load_susp" "$load_deaths" "$([ "$falsedead" = 0 ] || echo ' (a member was listed dead)')"
printf 'kill -9 to dead on both survivors, busy loops running: %s s (median %s)\n' "${DETECT[*]}" "$median"
printf 'ROW\t%s\t%s in %s s\t%s\t%s\t%s\t%s\n' "false deaths under load (3 nodes, $TRANSPORT $RATE Mbit/s, CPU saturated, link full)" "$load_deaths" "$load_s" \
	"-" "-" "-" "0"
printf 'ROW\t%s\t%s s\t%s\t%s\t%s\t%s\n' "failure detection after kill -9 (3 nodes, $TRANSPORT $RATE Mbit/s, CPU saturated)" "$median" \
	"-" "-" "-" "about 3 s"
