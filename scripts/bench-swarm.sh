#!/usr/bin/env bash
# A spacesuit pushed to N sites whose links are capped, against the
# Kumar–Ross lower bound T = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)).
#
# N+1 network namespaces (the origin s0 and the sites s1..sN) hang on one
# bridge by veth pairs, with private addresses 10.231.0.10+i/24 that exist
# only inside them; a tbf on each end of every veth caps each site's link
# at RATE Mbit/s each way. One weft daemon runs in each namespace; s0
# publishes a spacesuit of F MiB of random data and pushes it to every
# site with --json. The table gives the last and the median site's time
# (from the push's start to the end of that site's receive), their ratio
# to the bound, and the origin's upload in copies of the spacesuit (from
# the targets' bytes_from).
#
# Needs root (namespaces, tc); says so and skips otherwise. Defaults: N=4,
# F=16 (MiB), RATE=50 (Mbit/s), about a minute in all.
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
N=${N:-4}
F=${F:-16}
RATE=${RATE:-50}

if [ "$(id -u)" != 0 ]; then
	echo "bench-swarm: skipped: needs root for network namespaces and tc"
	exit 0
fi
for tool in ip tc python3; do
	command -v "$tool" >/dev/null || { echo "bench-swarm: skipped: $tool not found"; exit 0; }
done

TAG=$(($$ % 100000))
BR=wsbr$TAG
NS=()
for i in $(seq 0 "$N"); do NS+=("weft-swarm-$TAG-$i"); done
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-swarm.XXXXXX")
. "$(dirname "$0")/lib.sh"
PIDS=()
FORWARD_RULE=""
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	ip link del "$BR" 2>/dev/null || true
	[ -z "$FORWARD_RULE" ] || iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || true
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

addr() { echo "10.231.0.$((10 + $1))"; }
w() { local i=$1; shift; "$WEFT" --home "$WORK/s$i" "$@"; }

# The bridge, one namespace per node, a capped veth pair each.
ip link add "$BR" type bridge
ip link set "$BR" up
if command -v iptables >/dev/null; then
	# dockerd sets the FORWARD policy to DROP, which bridged frames meet
	# when br_netfilter is loaded.
	iptables -I FORWARD -i "$BR" -o "$BR" -j ACCEPT
	FORWARD_RULE=yes
fi
for i in $(seq 0 "$N"); do
	ns=${NS[$i]} host=wsv${TAG}h$i peer=wsv${TAG}n$i
	ip netns add "$ns"
	ip link add "$host" type veth peer name "$peer"
	ip link set "$peer" netns "$ns"
	ip link set "$host" master "$BR" up
	ip -n "$ns" addr add "$(addr "$i")/24" dev "$peer"
	ip -n "$ns" link set "$peer" up
	ip -n "$ns" link set lo up
	# Download (bridge to site) and upload (site to bridge).
	tc qdisc add dev "$host" root tbf rate "${RATE}mbit" burst 64kb latency 50ms
	ip netns exec "$ns" tc qdisc add dev "$peer" root tbf rate "${RATE}mbit" burst 64kb latency 50ms
done

start() { # start I: the daemon of node I in its namespace, waited for
	local extra=()
	# The sites' heal is all but stopped (1K/s), so only the push moves the
	# spacesuit's blocks.
	[ "$1" = 0 ] || extra=(--heal-bandwidth 1K)
	ip netns exec "${NS[$1]}" "$WEFT" --home "$WORK/s$1" daemon --log-level warn "${extra[@]}" 2>"$WORK/s$1.log" &
	PIDS+=($!)
	await_status "$WORK/s$1.log" --home "$WORK/s$1"
}

for i in $(seq 0 "$N"); do
	secret=()
	[ "$i" = 0 ] || secret=(--cluster-secret-file "$WORK/s0/cluster.secret")
	w "$i" init --site "s$i" --nbd off --http off --listen "/ip4/$(addr "$i")/tcp/4001" "${secret[@]}" >/dev/null
done
# The origin imports and publishes alone, so its replication push (R=1)
# sends nothing to the sites before the measured push.
echo "bench-swarm: publishing a ${F} MiB spacesuit on s0, pushing it to $N sites at ${RATE} Mbit/s ..." >&2
start 0
head -c "${F}M" /dev/urandom >"$WORK/gold.img"
w 0 disk import gold "$WORK/gold.img" --replicas 1 >/dev/null
w 0 spacesuit publish gold gold >/dev/null
ORIGIN=$(w 0 id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer_id"])')
for i in $(seq 1 "$N"); do
	start "$i"
	w "$i" join "/ip4/$(addr 0)/tcp/4001/p2p/$ORIGIN" >/dev/null
done
deadline=$((SECONDS + 60))
until [ "$(w 0 peers --json | python3 -c 'import json,sys; print(sum(p["state"] == "alive" for p in json.load(sys.stdin)))')" = $((N + 1)) ]; do
	[ $SECONDS -lt $deadline ] || { echo "bench-swarm: the $((N + 1)) members never all saw each other" >&2; exit 1; }
	sleep 0.2
done

TARGETS=$(seq -s, -f 's%g' 1 "$N")
START=$(now)
w 0 push gold@1 --to "$TARGETS" --json >"$WORK/push.json"
for i in $(seq 1 "$N"); do w "$i" transfers --json >"$WORK/transfers-$i.json"; done

python3 - "$WORK" "$N" "$F" "$RATE" "$START" "$ORIGIN" <<'EOF'
import datetime, json, statistics, sys
work, n, f, rate, start, origin = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
push = json.load(open(f"{work}/push.json"))
if push["state"] != "done":
    sys.exit(f"bench-swarm: push ended {push['state']}: {push.get('error', '')}")
size = f << 20
bits = size * 8
u = rate * 1e6  # every link alike: u_s = d_min = u_i
bound = max(bits / u, bits / u, n * bits / (u + n * u))
def ended(i):
    ts = [t for t in json.load(open(f"{work}/transfers-{i}.json")) if t["id"] == push["id"] and t["kind"] == "receive"]
    e = ts[0]["ended"].replace("Z", "+00:00")
    # Go prints nanoseconds; Python takes microseconds.
    if "." in e:
        head, tail = e.split(".", 1)
        frac, zone = tail[:tail.index("+")], tail[tail.index("+"):]
        e = f"{head}.{frac[:6].ljust(6, '0')}{zone}"
    return datetime.datetime.fromisoformat(e).timestamp() - start
times = sorted(ended(i) for i in range(1, n + 1))
last, median = times[-1], statistics.median(times)
copies = sum(t.get("bytes_from", {}).get(origin, 0) for t in push["targets"]) / size
print("| sites N | F MiB | link Mbit/s | bound s | last site s | median site s | last/bound | median/bound | origin upload (copies) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
print(f"| {n} | {f} | {rate:g} | {bound:.1f} | {last:.1f} | {median:.1f} | {last / bound:.2f} | {median / bound:.2f} | {copies:.2f} |")
EOF
