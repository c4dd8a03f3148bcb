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
