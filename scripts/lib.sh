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
