#!/usr/bin/env bash
# Heal in a larger mesh: NODES daemons (default 10) on 127.0.0.1-NODES in
# SITES sites (default 5) hold a BENCH_SIZE MiB disk (default 64) of random
# data with R copies (default 3); KILL non-owner nodes (default 2) are
# killed -9 at once. For each of RUNS fresh meshes (default 3) it prints the
# failure detection time (until the owner sees them dead), the time from
# the kill to the owner's under_replicated reaching 0, and the owner's
# under_replicated figures on the way, then how many runs were fully
# replicated within detection + 3 s. The daemons keep the default
# --heal-interval (30 s): heal must not wait for it; DAEMON_ARGS adds
# daemon flags (e.g. "--probe-interval 1s").
set -euo pipefail

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
NODES=${NODES:-10} SITES=${SITES:-5} R=${R:-3} KILL=${KILL:-2} RUNS=${RUNS:-3}
SIZE_MB=${BENCH_SIZE:-64}
read -r -a DAEMON_ARGS <<<"${DAEMON_ARGS:-}"
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-heal-mesh.XXXXXX")
. "$(dirname "$0")/lib.sh"
PIDS=()
trap cleanup_daemons EXIT

w() { local n=$1; shift; "$WEFT" --home "$RUN/n$n" "$@"; }
alive() { w 0 peers --json | grep -c '"state": "alive"'; }
under() { w 0 disk info vm --json | field under_replicated; }

head -c "${SIZE_MB}M" /dev/urandom >"$WORK/src.img"
printf '%d nodes, %d sites, %d MiB disk, R=%d, kill -9 of %d non-owners\n' "$NODES" "$SITES" "$SIZE_MB" "$R" "$KILL"
printf '%-4s %12s %22s %12s  %s\n' run "detection s" "kill to replicated s" "after det. s" "owner's under_replicated"
DET=() TOTAL=() AFTER=()
for run in $(seq "$RUNS"); do
	RUN="$WORK/run$run"
	declare -a PID_OF=()
	for i in $(seq 0 $((NODES - 1))); do
		secret=()
		[ "$i" = 0 ] || secret=(--cluster-secret-file "$RUN/n0/cluster.secret")
		w "$i" init --site "site-$((i % SITES))" --nbd off --http off \
			--listen "/ip4/127.0.0.$((i + 1))/tcp/0" "${secret[@]}" >/dev/null
		"$WEFT" --home "$RUN/n$i" daemon --log-level "${LOG_LEVEL:-warn}" "${DAEMON_ARGS[@]}" 2>"$RUN/n$i.log" &
		PIDS+=($!)
		PID_OF[i]=$!
	done
	deadline=$((SECONDS + 60))
	for i in $(seq 0 $((NODES - 1))); do
		until w "$i" status >/dev/null 2>&1; do
			[ $SECONDS -lt $deadline ] || { cat "$RUN/n$i.log" >&2; exit 1; }
			sleep 0.1
		done
	done
	addr=$(w 0 id --json | grep -o '"/ip4/[^"]*' | head -1 | tr -d '"')
	for i in $(seq 1 $((NODES - 1))); do w "$i" join "$addr" >/dev/null; done
	until [ "$(alive)" = "$NODES" ]; do
		[ $SECONDS -lt $deadline ] || { echo "the mesh never formed" >&2; exit 1; }
		sleep 0.2
	done
	w 0 disk import vm "$WORK/src.img" --replicas "$R" >/dev/null
	w 0 disk commit vm >/dev/null
	deadline=$((SECONDS + 300))
	until [ "$(under)" = 0 ]; do
		[ $SECONDS -lt $deadline ] || { echo "vm never got its copies" >&2; exit 1; }
		sleep 0.2
	done

	t0=$(now)
	for i in $(seq 1 "$KILL"); do kill -KILL "${PID_OF[i]}"; done
	for i in $(seq 1 "$KILL"); do wait "${PID_OF[i]}" 2>/dev/null || true; done # reaped quietly
	t1=""
	steps=""
	last=""
	deadline=$((SECONDS + 300))
	while :; do
		[ -n "$t1" ] || [ "$(alive)" != $((NODES - KILL)) ] || t1=$(now)
		u=$(under)
		[ "$u" = "$last" ] || { steps="$steps${steps:+ > }$u"; last=$u; }
		[ -z "$t1" ] || [ "$u" != 0 ] || break
		[ $SECONDS -lt $deadline ] || { echo "heal did not finish: $steps" >&2; exit 1; }
		sleep 0.1
	done
	t2=$(now)
	DET+=("$(secs "$t0" "$t1")") TOTAL+=("$(secs "$t0" "$t2")") AFTER+=("$(secs "$t1" "$t2")")
	printf '%-4s %12s %22s %12s  %s\n' "$run" "${DET[-1]}" "${TOTAL[-1]}" "${AFTER[-1]}" "$steps"
	stop_all
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$RUN"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
within=$(printf '%s\n' "${AFTER[@]}" | awk '$1 <= 3 { n++ } END { print n + 0 }')
worst=$(printf '%s\n' "${AFTER[@]}" | sort -g | tail -1)
printf 'median detection %s s, kill to replicated %s s; replicated within detection + 3 s in %d of %d runs (worst %s s after)\n' \
	"$(median "${DET[@]}")" "$(median "${TOTAL[@]}")" "$within" "$RUNS" "$worst"
printf 'ROW\t%s\t%s s\t%s\t%s s\t%s\t%s\n' "heal ${NODES} nodes, kill -9 of ${KILL}, ${SIZE_MB} MiB R=${R}: kill to replicated (median)" \
	"$(median "${TOTAL[@]}")" "failure detection (median)" "$(median "${DET[@]}")" "$within/$RUNS within det.+3 s" "<= detection + 3 s every run"
