# Shared by the demo and bench scripts; source it after setting WEFT,
# WEFT_HOME and WORK.

# start_daemon runs `weft daemon` in the background (logs in
# $WORK/daemon.log, extra arguments passed on), sets DAEMON to its pid and
# waits up to 30 s for it to answer; on failure it prints the log and exits.
start_daemon() {
	"$WEFT" daemon --log-level warn "$@" 2>"$WORK/daemon.log" &
	DAEMON=$!
	local deadline=$((SECONDS + 30))
	until "$WEFT" status >/dev/null 2>&1; do
		if ! kill -0 "$DAEMON" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
			echo "the daemon did not start:" >&2
			cat "$WORK/daemon.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	for p in $(seq $((20000 + RANDOM % 20000)) 45000); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "no free port" >&2
	return 1
}

# await_status LOG WEFT_ARGS...: waits up to 30 s until `weft WEFT_ARGS...
# status` answers (a daemon just started in the background); on failure it
# prints LOG and exits.
await_status() {
	local log=$1
	shift
	local deadline=$((SECONDS + 30))
	until "$WEFT" "$@" status >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || { cat "$log" >&2; exit 1; }
		sleep 0.1
	done
}

now() { date +%s.%N; }
# secs A B: B - A seconds, two decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# field NAME: the first integer value of "NAME": in JSON on stdin.
field() { grep -o "\"$1\": [0-9]*" | head -1 | grep -o '[0-9]*$'; }

# stop_all kills -9 every daemon whose pid is in PIDS and waits for them;
# cleanup_daemons, the EXIT trap of scripts that start several, also
# removes WORK unless KEEP_WORK is set.
stop_all() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	PIDS=()
}
cleanup_daemons() {
	stop_all
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}

# bridged_namespaces BRIDGE NS_PREFIX DEV_PREFIX N: bridge BRIDGE and N
# network namespaces NS_PREFIX-0 .. NS_PREFIX-(N-1) hung on it, namespace I
# by a veth pair DEV_PREFIX"h"I (on the bridge) / DEV_PREFIX"n"I (inside,
# address $(addr I)/24, the caller's addr function). Sets FORWARD_RULE when
# it let bridged frames through iptables' FORWARD chain: the caller's
# cleanup deletes that rule, the namespaces and the bridge.
bridged_namespaces() {
	local br=$1 nsp=$2 devp=$3 n=$4 i
	ip link add "$br" type bridge
	ip link set "$br" up
	if command -v iptables >/dev/null; then
		# dockerd sets the FORWARD policy to DROP, which bridged frames meet
		# when br_netfilter is loaded.
		iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT
		FORWARD_RULE=yes
	fi
	for i in $(seq 0 $((n - 1))); do
		ip netns add "$nsp-$i"
		ip link add "${devp}h$i" type veth peer name "${devp}n$i"
		ip link set "${devp}n$i" netns "$nsp-$i"
		ip link set "${devp}h$i" master "$br" up
		ip -n "$nsp-$i" addr add "$(addr "$i")/24" dev "${devp}n$i"
		ip -n "$nsp-$i" link set "${devp}n$i" up
		ip -n "$nsp-$i" link set lo up
	done
}

# teardown_bridged BRIDGE NS_PREFIX N: undoes bridged_namespaces after
# stop_all, and removes WORK unless KEEP_WORK is set: an EXIT trap.
teardown_bridged() {
	local br=$1 nsp=$2 n=$3 i
	stop_all
	for i in $(seq 0 $((n - 1))); do ip netns del "$nsp-$i" 2>/dev/null || true; done
	ip link del "$br" 2>/dev/null || true
	[ -z "${FORWARD_RULE:-}" ] || iptables -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null || true
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
