#!/usr/bin/env bash
# NBD throughput of weft against nbdkit's file plugin serving a file on the
# same file system, side by side in one run, both through fio's nbd engine:
# sequential 1 MiB and random 4 KiB, read and write, each at iodepth 4 and
# 16.
# Both exports are filled with data first (and weft's committed), so reads
# read data, not holes. BENCH_DIR picks the file system (default: a
# temporary directory under /var/tmp); BENCH_SIZE the disk size in MiB
# (default 1024); BENCH_RUNTIME the seconds per job (default 5);
# BENCH_REPEAT how many times each pair runs (default 3); BENCH_JOBS a
# subset of the jobs. The machines this
# runs on are shared and noisy: each job alternates weft and nbdkit
# BENCH_REPEAT times and the table shows the medians, and the spread of the
# per-pair ratios. The last lines are one ROW line per job for make bench.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
SIZE_MB=${BENCH_SIZE:-1024}
RUNTIME=${BENCH_RUNTIME:-5}
REPEAT=${BENCH_REPEAT:-3}
for tool in fio nbdkit python3; do
	command -v "$tool" >/dev/null || { echo "bench-nbd: $tool not found (Debian packages fio nbdkit python3; make deps installs them)" >&2; exit 1; }
done
if ! fio --enghelp 2>/dev/null | grep -qw nbd; then
	echo "bench-nbd: this fio has no nbd engine" >&2
	exit 1
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/weft-bench-nbd.XXXXXX")
export WEFT_HOME=$WORK/home
DAEMON=""
NBDKIT_PID=""
cleanup() {
	if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
		kill -TERM "$DAEMON" 2>/dev/null || true
		wait "$DAEMON" 2>/dev/null || true
	fi
	if [ -n "$NBDKIT_PID" ]; then
		kill -TERM "$NBDKIT_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEFT_PORT=$(freeport)
KIT_PORT=$(freeport)

"$WEFT" init --nbd "127.0.0.1:$WEFT_PORT" --listen /ip4/127.0.0.1/tcp/0 --http off >/dev/null
# WEFT_DAEMON_ARGS go to the daemon, e.g. "--cpu-profile FILE".
start_daemon ${WEFT_DAEMON_ARGS:-}
"$WEFT" disk create bench --size "${SIZE_MB}M" >/dev/null

truncate -s "${SIZE_MB}M" "$WORK/nbdkit.img"
nbdkit --pidfile "$WORK/nbdkit.pid" -i 127.0.0.1 -p "$KIT_PORT" file "file=$WORK/nbdkit.img"
for _ in $(seq 100); do [ -s "$WORK/nbdkit.pid" ] && break; sleep 0.1; done
NBDKIT_PID=$(cat "$WORK/nbdkit.pid")

WEFT_URI="nbd://127.0.0.1:$WEFT_PORT/bench"
KIT_URI="nbd://127.0.0.1:$KIT_PORT/"

# fill writes every byte of an export once.
fill() {
	fio --name=fill --ioengine=nbd --uri="$1" --rw=write --bs=1M --iodepth=8 \
		--size="${SIZE_MB}M" --output-format=json >/dev/null
}

# job NAME RW BS IODEPTH URI OUT runs one timed fio job.
job() {
	fio --name="$1" --ioengine=nbd --uri="$5" --rw="$2" --bs="$3" --iodepth="$4" \
		--size="${SIZE_MB}M" --time_based --runtime="$RUNTIME" --ramp_time=1 \
		--randrepeat=0 --output-format=json >"$6"
}

echo "filling ${SIZE_MB} MiB on both servers..." >&2
fill "$WEFT_URI"
"$WEFT" disk commit bench >/dev/null
fill "$KIT_URI"

# BENCH_JOBS picks jobs, as NAME:RW:BS:IODEPTH words.
JOBS=${BENCH_JOBS:-}
if [ -z "$JOBS" ]; then
	for depth in 4 16; do
		JOBS+=" seqread:read:1M:$depth seqwrite:write:1M:$depth randread:randread:4k:$depth randwrite:randwrite:4k:$depth"
	done
fi
for spec in $JOBS; do
	IFS=: read -r name rw bs depth <<<"$spec"
	name+="-qd$depth"
	echo "running $name (${RUNTIME}s each, ${REPEAT} pairs)..." >&2
	for r in $(seq "$REPEAT"); do
		job "$name" "$rw" "$bs" "$depth" "$WEFT_URI" "$WORK/weft-$name-$r.json"
		# Commit what the job wrote now, outside the timed runs, so that
		# weft's background commit (hashing and storing) does not land in
		# the middle of the next measurement, nbdkit's or weft's.
		"$WEFT" disk commit bench >/dev/null
		job "$name" "$rw" "$bs" "$depth" "$KIT_URI" "$WORK/nbdkit-$name-$r.json"
	done
done

PYTHONPATH="$(dirname "$0")" python3 - "$WORK" "$REPEAT" $JOBS <<'PY'
import sys
from fio_stats import median, stats
work, repeat, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

rows = []
print(f"{'job':<22}{'server':<8}{'MB/s':>10}{'IOPS':>10}{'p99 µs':>10}   (medians of {repeat} runs)")
for spec in specs:
    base, rw, bs, depth = spec.split(":")
    name = f"{base}-qd{depth}"
    ws = [stats(f"{work}/weft-{name}-{r}.json", rw) for r in range(1, repeat + 1)]
    ks = [stats(f"{work}/nbdkit-{name}-{r}.json", rw) for r in range(1, repeat + 1)]
    w, k = median(ws), median(ks)
    pairs = sorted(a[0] / b[0] for a, b in zip(ws, ks) if b[0])
    label = f"{base} {bs} qd{depth}"
    print(f"{label:<22}{'weft':<8}{w[0]:>10.0f}{w[1]:>10.0f}{w[2]:>10.0f}")
    print(f"{'':<22}{'nbdkit':<8}{k[0]:>10.0f}{k[1]:>10.0f}{k[2]:>10.0f}")
    r = w[0] / k[0] if k[0] else float("nan")
    lat = w[2] / k[2] if k[2] else float("nan")
    spread = f"pairs {pairs[0]:.2f}-{pairs[-1]:.2f}" if pairs else ""
    print(f"{'':<22}{'ratio':<8}{r:>10.2f}{r:>10.2f}{lat:>10.2f}   weft/nbdkit, {spread}; latency: lower is better")
    rows.append(f"ROW\tNBD {base} {bs} qd{depth} (fio nbd)\t{w[0]:.0f} MB/s\tnbdkit file\t{k[0]:.0f} MB/s\t{r:.2f}\t>= 1.0")
print("\n".join(rows))
PY
