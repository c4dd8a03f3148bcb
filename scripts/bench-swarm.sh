#!/usr/bin/env bash
# A spacesuit pushed to N sites whose links are capped, against the
# Kumar–Ross lower bound T = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)).
#
# Each case builds its own mesh: N+1 network namespaces (the origin s0 and
# the sites s1..sN) hang on one bridge by veth pairs, with private
# addresses 10.231.0.10+i/24 that exist only inside them; a tbf on each end
# of every veth caps each link each way (RATE Mbit/s, a 50 ms queue: a
# modest buffer, 312 KB at 50 Mbit/s, which drops packets when eight flows
# share it; a 200 ms queue measured the same). One weft daemon runs in each
# namespace; s0 imports and publishes a spacesuit of F MiB of random data
# before the sites join, then pushes it to every site with --json. The
# sites' heal is capped at 1K/s, so only the push moves the blocks.
#
# Cases (CASES, space-separated; default all but stalledpull8):
#   equal4   4 sites, 16 MiB, every link alike
#   equal8   8 sites, 64 MiB, every link alike
#   unequal8 8 sites, 64 MiB, site s8 at a quarter of RATE each way: the
#            bound of the last site is F/d_min; the median site's bound is
#            that of the seven others (helped by s8's upload)
#   killed8  8 sites, 64 MiB, s8 killed -9 at a third of the bound; the
#            others' figures and bound exclude it; then s8 is restarted and
#            the same push is run again to it: it fetches only the blocks it
#            lacks (the table's note gives the share it skipped)
#   replicate8  8 sites, 64 MiB: `weft replicate gold-disk --to s1,...,s8` (one
#            policy per site, run as one cycle); times from the cycle's push
#            start
#   pull8    8 sites, 64 MiB: every site runs `weft pull gold@1 --from s0`
#            at once (the origin tracks them; they fetch from each other)
#   unequalpull8  pull8 with site s8 at a quarter of RATE, as in unequal8
#   stalled8 8 sites, 64 MiB: at a third of the bound every packet from s1
#            to s2 is dropped on the wire (on s2's side of the bridge) for
#            STALL seconds (default 4), then let through again: the TCP
#            flows from s1 to s2 stall, and stay stalled a while after
#            (retransmission backoff), while both sites' other flows go on
#   stalledpull8  the same cut during pull8
# The table gives the last and the median site's time (from the push's
# start to the end of that site's receive), their ratio to the bound, and
# the origin's upload in copies of the spacesuit (from the targets'
# bytes_from). The bound takes tbf's nominal rate as the links' payload
# rate, which no TCP stream reaches (headers, the queue's drops): each case
# also measures one plain TCP stream from s0 to s1 over the same links
# (GOODPUT_MB MiB, default 16) and gives the ratios against the bound at
# that goodput, i.e. against what one plain stream actually carries. N, F and RATE override the eight-site cases' sizes.
#
# Needs root (namespaces, tc; nft for the stalled cases); says so and skips otherwise. About ten
# minutes in all; run it under the bench lock.
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
N=${N:-8}
F=${F:-64}
RATE=${RATE:-50}
CASES=${CASES:-equal4 equal8 unequal8 killed8 replicate8 pull8 unequalpull8 stalled8}

if [ "$(id -u)" != 0 ]; then
	echo "bench-swarm: skipped: needs root for network namespaces and tc"
	printf 'ROW\tswarm push to sites on capped links\tskipped (not root)\tKumar-Ross bound\t-\t-\t<= 1.2\n'
	exit 0
fi
for tool in ip tc python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-swarm: skipped: $tool not found"
		printf 'ROW\tswarm push to sites on capped links\tskipped (no %s)\tKumar-Ross bound\t-\t-\t<= 1.2\n' "$tool"
		exit 0
	fi
done

TAG=$(($$ % 100000))
CASE_NO=0 # in interface names: a namespace's veth outlives its deletion a while
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-swarm.XXXXXX")
. "$(dirname "$0")/lib.sh"
NS=()
PIDS=()
FORWARD_RULE=""
CUT_TABLE=""
teardown() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	[ -z "${BR:-}" ] || ip link del "$BR" 2>/dev/null || true
	[ -z "$FORWARD_RULE" ] || iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || true
	[ -z "$CUT_TABLE" ] || nft delete table bridge "$CUT_TABLE" 2>/dev/null || true
	NS=() PIDS=() FORWARD_RULE="" CUT_TABLE=""
}
cleanup() {
	teardown
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

addr() { echo "10.231.0.$((10 + $1))"; }
w() { local i=$1; shift; "$WEFT" --home "$HOMES/s$i" "$@"; }

start() { # start I: the daemon of node I in its namespace, waited for
	local extra=()
	# The sites' heal is all but stopped (1K/s), so only the push moves the
	# spacesuit's blocks.
	[ "$1" = 0 ] || extra=(--heal-bandwidth 1K)
	ip netns exec "${NS[$1]}" "$WEFT" --home "$HOMES/s$1" daemon --log-level "${LOG_LEVEL:-warn}" "${extra[@]}" 2>>"$HOMES/s$1.log" &
	PIDS[$1]=$!
	await_status "$HOMES/s$1.log" --home "$HOMES/s$1"
}

# mesh CASE N F RATES...: the bridge, N+1 namespaces whose links are capped
# at RATES (Mbit/s, one per node, origin first), the daemons, the
# spacesuit gold@1 of F MiB published on s0 and every site joined.
mesh() {
	local name=$1 n=$2 f=$3
	shift 3
	local rates=("$@")
	CASE_NO=$((CASE_NO + 1))
	BR=wsbr$TAG$CASE_NO
	HOMES=$WORK/$name-$CASE_NO # a case may run more than once
	mkdir -p "$HOMES"
	local nsp=weft-swarm-$TAG-$CASE_NO devp=wsv$TAG$CASE_NO
	for i in $(seq 0 "$n"); do NS+=("$nsp-$i"); done # teardown's, even if set-up fails
	bridged_namespaces "$BR" "$nsp" "$devp" $((n + 1))
	for i in $(seq 0 "$n"); do
		# Download (bridge to site) and upload (site to bridge).
		tc qdisc add dev "${devp}h$i" root tbf rate "${rates[$i]}mbit" burst 64kb latency 50ms
		ip netns exec "$nsp-$i" tc qdisc add dev "${devp}n$i" root tbf rate "${rates[$i]}mbit" burst 64kb latency 50ms
	done
	for i in $(seq 0 "$n"); do
		local secret=()
		[ "$i" = 0 ] || secret=(--cluster-secret-file "$HOMES/s0/cluster.secret")
		w "$i" init --site "s$i" --nbd off --http off --listen "/ip4/$(addr "$i")/tcp/4001" "${secret[@]}" >/dev/null
	done
	# The origin imports and publishes alone, so its replication push
	# (R=1) sends nothing to the sites before the measured push.
	start 0
	head -c "${f}M" /dev/urandom >"$HOMES/gold.img"
	w 0 disk import gold-disk "$HOMES/gold.img" --replicas 1 >/dev/null
	w 0 spacesuit publish gold gold-disk >/dev/null
	ORIGIN=$(w 0 id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer_id"])')
	for i in $(seq 1 "$n"); do
		start "$i"
		w "$i" join "/ip4/$(addr 0)/tcp/4001/p2p/$ORIGIN" >/dev/null
	done
	await_alive $((n + 1))
	GOODPUT=$(goodput)
}

# goodput: one plain TCP stream of GOODPUT_MB MiB from s0 to s1 over the
# capped links, in bits/s of payload (timed on the sender, from connect
# until the receiver has read the last byte and answered).
goodput() {
	local port=5399
	ip netns exec "${NS[1]}" python3 - "$(addr 1)" "$port" <<'EOF' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
while c.recv(1 << 20):
    pass
c.sendall(b"k")
EOF
	local rx=$!
	ip netns exec "${NS[0]}" python3 - "$(addr 1)" "$port" "${GOODPUT_MB:-16}" <<'EOF'
import socket, sys, time
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(100):
    try:
        s = socket.create_connection((host, port), timeout=60)
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
t = time.monotonic()
buf = bytes(1 << 20)
for _ in range(mib):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(mib * (1 << 20) * 8 / (time.monotonic() - t))
EOF
	wait "$rx"
}

# await_alive K: waits up to 60 s until the origin sees K members alive.
await_alive() {
	local deadline=$((SECONDS + 60))
	until [ "$(w 0 peers --json | python3 -c 'import json,sys; print(sum(p["state"] == "alive" for p in json.load(sys.stdin)))')" = "$1" ]; do
		[ $SECONDS -lt $deadline ] || { echo "bench-swarm: the origin never saw $1 members alive" >&2; exit 1; }
		sleep 0.2
	done
}

# report CASE N F KILLED RESUME RATES...: the case's table row, from the
# push's JSON and every site's transfers (the killed site, if any, left
# out); RESUME is the resumed push's JSON file, or "".
report() {
	local name=$1 n=$2 f=$3 killed=$4 resume=$5
	shift 5
	python3 - "$HOMES" "$name" "$n" "$f" "$killed" "$resume" "$START" "$ORIGIN" "$GOODPUT" "$@" >>"$WORK/rows" <<'EOF'
import datetime, json, os, statistics, sys
homes, name, n, f, killed, resume, start, origin, goodput = sys.argv[1:10]
n, f, killed = int(n), int(f), int(killed)
rates = [float(r) * 1e6 for r in sys.argv[10:]]  # bits/s, origin first
# The links' payload rate, as one plain TCP stream measured it (s0 to s1,
# both at the nominal rate in every case).
efficiency = float(goodput) / rates[1]
push = json.load(open(f"{homes}/push.json"))

def stamp(e):
    e = e.replace("Z", "+00:00")
    # Go prints nanoseconds; Python takes microseconds.
    if "." in e:
        head, tail = e.split(".", 1)
        frac, zone = tail[:tail.index("+")], tail[tail.index("+"):]
        e = f"{head}.{frac[:6].ljust(6, '0')}{zone}"
    return datetime.datetime.fromisoformat(e).timestamp()

# A replication cycle's push starts on the owner's schedule: timed from it.
start = stamp(push["started"]) if start == "push" else float(start)
bits = (f << 20) * 8
sites = [i for i in range(1, n + 1) if i != killed]

def bound(receivers, helpers):
    # Kumar-Ross for these receivers, the origin and helpers uploading.
    return max(bits / rates[0], bits / min(rates[i] for i in receivers),
               len(receivers) * bits / (rates[0] + sum(rates[i] for i in helpers)))

def ended(i, pid):
    # The site's receive of the push, or (pid None) its own pull.
    ts = [t for t in json.load(open(f"{homes}/transfers-{i}.json"))
          if (t["id"] == pid and t["kind"] == "receive") or (pid is None and t["kind"] == "pull")]
    if not ts or ts[0]["state"] != "done":
        sys.exit(f"bench-swarm: {name}: site s{i} did not finish: {ts and ts[0].get('error')}")
    return stamp(ts[0]["ended"]) - start

times = {i: ended(i, push["id"]) for i in sites}
last = max(times.values())
median = statistics.median(times.values())
t_last = bound(sites, sites)
# The median site's bound: that of the sites at least as fast as it.
fast = [i for i in sites if rates[i] >= sorted(rates[j] for j in sites)[len(sites) // 2]]
t_median = bound(fast, sites)
copies = sum(t.get("bytes_from", {}).get(origin, 0) for t in push["targets"]) / (f << 20)
note = ""
if resume:
    r = json.load(open(resume))
    t = r["targets"][0]
    skipped = t.get("skipped_blocks", 0)
    note = f"s{killed} killed; pushed again: {r['state']}, {t.get('bytes', 0) / (1 << 20):.1f} MiB moved, {skipped} blocks skipped"
elif killed:
    note = f"s{killed} killed"
if os.environ.get("CUT_S"):
    note = f"s1 to s2 cut for {os.environ['CUT_S']} s"
print("\t".join([name, str(n), str(f), f"{t_last:.1f}", f"{last:.1f}", f"{t_median:.1f}", f"{median:.1f}",
                 f"{last / t_last:.2f}", f"{median / t_median:.2f}", f"{copies:.2f}",
                 f"{float(goodput) / 1e6:.1f}", f"{t_last / efficiency:.1f}", f"{t_median / efficiency:.1f}",
                 f"{last * efficiency / t_last:.2f}", f"{median * efficiency / t_median:.2f}", note]))
EOF
}

# stall SECONDS F: from a third of the bound (F MiB) on, drops every packet from s1
# to s2 for SECONDS in the bridge (nft, bridge family: a wire drop, s1's
# stack only sees no acknowledgements come back), in the background.
stall() {
	CUT_TABLE=weftcut$TAG$CASE_NO
	(
		sleep "$(awk -v f="$2" -v r="$RATE" 'BEGIN { print f * 8.388608 / r / 3 }')"
		nft -f - <<EOF
table bridge $CUT_TABLE {
	chain cut {
		type filter hook forward priority 0; policy accept;
		ip saddr $(addr 1) ip daddr $(addr 2) drop
	}
}
EOF
		sleep "$1"
		nft delete table bridge "$CUT_TABLE"
	) &
	STALLER=$!
}

# run CASE N F SLOW KILL [HOW [STALL]]: one case; SLOW is the site at a
# quarter of RATE (0: none), KILL the site killed mid-push (0: none); HOW
# is push (the default), replicate or pull; STALL, if set, the seconds of
# the s1-to-s2 cut (see stall).
run() {
	local name=$1 n=$2 f=$3 slow=$4 kill=$5 how=${6:-push} cut=${7:-}
	local rates=("$RATE")
	for i in $(seq 1 "$n"); do
		if [ "$i" = "$slow" ]; then rates+=("$(awk -v r="$RATE" 'BEGIN { print r / 4 }')"); else rates+=("$RATE"); fi
	done
	echo "bench-swarm: $name: ${f} MiB spacesuit on s0 to $n sites at ${RATE} Mbit/s ..." >&2
	mesh "$name" "$n" "$f" "${rates[@]}"
	local targets resume=""
	targets=$(seq -s, -f 's%g' 1 "$n")
	START=$(now)
	STALLER=""
	[ -z "$cut" ] || stall "$cut" "$f"
	if [ "$how" = replicate ]; then
		START=push
		w 0 replicate gold-disk --to "$targets" --every 1h --keep 1 >/dev/null
		local deadline=$((SECONDS + 600))
		until [ "$(w 0 replicate ls --json | python3 -c 'import json,sys; print(sum(p["status"] == "ok" for p in json.load(sys.stdin)))')" = "$n" ]; do
			[ $SECONDS -lt $deadline ] || { echo "bench-swarm: $name: the policies never all succeeded" >&2; exit 1; }
			sleep 0.5
		done
		w 0 transfers --json | python3 -c 'import json,sys; print(json.dumps([t for t in json.load(sys.stdin) if t["kind"] == "push"][-1]))' >"$HOMES/push.json"
	elif [ "$how" = pull ]; then
		local pullers=()
		for i in $(seq 1 "$n"); do
			w "$i" pull gold@1 --from s0 --json >"$HOMES/pull-$i.json" &
			pullers+=($!)
		done
		wait "${pullers[@]}"
		python3 - "$HOMES" "$n" >"$HOMES/push.json" <<'EOF2'
import json, sys
homes, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"id": None, "targets": [json.load(open(f"{homes}/pull-{i}.json")) for i in range(1, n + 1)]}))
EOF2
	elif [ "$kill" = 0 ]; then
		w 0 push gold@1 --to "$targets" --json >"$HOMES/push.json"
	else
		w 0 push gold@1 --to "$targets" --json >"$HOMES/push.json" || true &
		local pusher=$!
		# A third of the bound: mid-push.
		sleep "$(awk -v f="$f" -v r="$RATE" 'BEGIN { print f * 8.388608 / r / 3 }')"
		kill -KILL "${PIDS[$kill]}"
		{ wait "${PIDS[$kill]}"; } 2>/dev/null || true # reaped without the shell's "Killed" line
		wait "$pusher" || true
	fi
	[ -z "$STALLER" ] || wait "$STALLER"
	for i in $(seq 1 "$n"); do
		[ "$i" = "$kill" ] || w "$i" transfers --json >"$HOMES/transfers-$i.json"
	done
	if [ "$kill" != 0 ]; then
		# The killed site comes back and the same push is run again to it,
		# once the origin sees it alive again (pushed to at once, it was
		# at times still taken for dead).
		start "$kill"
		await_alive $((n + 1))
		resume=$HOMES/resume.json
		w 0 push gold@1 --to "s$kill" --json >"$resume" || true
	fi
	CUT_S=$cut report "$name" "$n" "$f" "$kill" "$resume" "${rates[@]}"
	teardown
}

: >"$WORK/rows"
for c in $CASES; do
	if [[ $c == stalled* ]] && ! command -v nft >/dev/null; then
		echo "bench-swarm: $c skipped: nft not found (Debian package nftables)" >&2
		continue
	fi
	case $c in
	equal4) run equal4 4 16 0 0 ;;
	equal8) run equal8 "$N" "$F" 0 0 ;;
	unequal8) run unequal8 "$N" "$F" "$N" 0 ;;
	killed8) run killed8 "$N" "$F" 0 "$N" ;;
	replicate8) run replicate8 "$N" "$F" 0 0 replicate ;;
	pull8) run pull8 "$N" "$F" 0 0 pull ;;
	unequalpull8) run unequalpull8 "$N" "$F" "$N" 0 pull ;;
	stalled8) run stalled8 "$N" "$F" 0 0 push "${STALL:-4}" ;;
	stalledpull8) run stalledpull8 "$N" "$F" 0 0 pull "${STALL:-4}" ;;
	*) echo "bench-swarm: unknown case $c" >&2; exit 2 ;;
	esac
done

echo "| case | sites N | F MiB | bound s | last site s | median bound s | median site s | last/bound | median/bound | origin upload (copies) | TCP goodput Mbit/s | bound at goodput s | last/it | median/it | note |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
while IFS=$'\t' read -r name n f tl last tm median rl rm copies gp tlg tmg rlg rmg note; do
	echo "| $name | $n | $f | $tl | $last | $tm | $median | $rl | $rm | $copies | $gp | $tlg | $rlg | $rmg | $note |"
done <"$WORK/rows"
while IFS=$'\t' read -r name n f tl last tm median rl rm copies gp tlg tmg rlg rmg note; do
	verb="swarm push"
	case $name in replicate*) verb="replicate" ;; *pull*) verb="concurrent pulls" ;; esac
	what="$verb $name ($n sites x $f MiB, ${RATE} Mbit/s, origin $copies copies)"
	printf 'ROW\t%s: last site\t%s s\tKumar-Ross bound\t%s s\t%s\t<= 1.2\n' "$what" "$last" "$tl" "$rl"
	printf 'ROW\t%s: median site\t%s s\tKumar-Ross bound\t%s s\t%s\t<= 1.1\n' "$what" "$median" "$tm" "$rm"
	printf 'ROW\t%s: last site\t%s s\tbound at one TCP stream goodput (%s Mbit/s)\t%s s\t%s\t-\n' "$what" "$last" "$gp" "$tlg" "$rlg"
	printf 'ROW\t%s: median site\t%s s\tbound at one TCP stream goodput (%s Mbit/s)\t%s s\t%s\t-\n' "$what" "$median" "$gp" "$tmg" "$rmg"
done <"$WORK/rows"
