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
