#!/usr/bin/env bash
# The weft story so far: one node, a disk, replicas, time travel, clones.
# Runs in a temporary home and cleans up after itself. KEEP=1 leaves the
# node running until Ctrl-C.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
KEEP=${KEEP:-}
WORK=$(mktemp -d /tmp/weft-demo.XXXXXX)
export WEFT_HOME=$WORK/home
DAEMON=""

cleanup() {
	if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
		kill -TERM "$DAEMON" 2>/dev/null || true
		wait "$DAEMON" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold=$(tput bold 2>/dev/null || true)
dim=$(tput dim 2>/dev/null || true)
reset=$(tput sgr0 2>/dev/null || true)

step() { printf '\n%s== %s%s\n' "$bold" "$*" "$reset"; }
say() { printf '%s\n' "$*"; }
run() {
	printf '%s$ weft %s%s\n' "$dim" "$*" "$reset"
	"$WEFT" "$@"
}
# message REF: the text the "VM" wrote at 100 MiB into the disk.
message() {
	"$WEFT" disk export "$1" - | dd bs=1M skip=100 count=1 iflag=fullblock status=none | tr -d '\0'
	echo
}

step "1. A node is a home directory and a daemon"
# NBD on the home's unix socket only: the demo never fights over a TCP port.
run init --site demo-lab --nbd off --listen /ip4/127.0.0.1/tcp/0
start_daemon
run status

step "2. Import a VM image: 256 MiB, mostly empty"
IMG=$WORK/vm.img
truncate -s 256M "$IMG"
head -c 16M /dev/urandom | dd of="$IMG" conv=notrunc status=none
printf 'monday: the database holds 1042 orders' | dd of="$IMG" bs=1M seek=100 conv=notrunc status=none
run disk import vm1 "$IMG"
say "Zero blocks are never stored: 256 MiB of disk, 16 MiB of data."
run disk info vm1

step "3. Take a replica: instant, and independent of the disk"
run replica create vm1 monday

step "4. The VM keeps writing"
dd if=/dev/zero of="$IMG" bs=1M seek=100 count=1 conv=notrunc status=none
printf 'tuesday: a bad migration dropped every order' | dd of="$IMG" bs=1M seek=100 conv=notrunc status=none
if command -v nbdcopy >/dev/null; then
	say "The VM's writes arrive over NBD (here nbdcopy; QEMU connects the same way):"
	printf '%s$ nbdcopy vm.img "nbd+unix:///vm1?socket=%s"%s\n' "$dim" "$WEFT_HOME/nbd.sock" "$reset"
	nbdcopy "$IMG" "nbd+unix:///vm1?socket=$WEFT_HOME/nbd.sock"
else
	say "(nbdcopy from libnbd-bin is not installed: writing by import instead of over NBD)"
	run disk import vm1 "$IMG"
fi
say "vm1 now says:         $(message vm1)"
say "vm1@monday still says: $(message vm1@monday)"

step "5. Time travel: put vm1 back to monday"
run replica restore vm1 monday
say "vm1 now says: $(message vm1)"
run replica ls vm1

step "6. Clone: a new writable disk from any replica or disk, in O(1)"
BACKUP=$("$WEFT" replica ls vm1 --json | grep '"name"' | sed -n 2p | cut -d'"' -f4)
run disk clone "vm1@$BACKUP" tuesday-forensics
run disk clone vm1 vm1-test
run disk ls
say "tuesday-forensics says: $(message tuesday-forensics)"

step "7. Replicas do not depend on their disk"
run disk rm vm1
say "vm1 is gone; vm1@monday still says: $(message vm1@monday)"

step "8. Replicas cost nothing up front, whatever the disk size"
run disk create huge --size 1T
start=$(date +%s%N)
run replica create huge before-install
say "replica of a 1 TiB disk took $(( ($(date +%s%N) - start) / 1000000 )) ms (including starting the CLI)"

step "9. Garbage collection frees what no disk, replica or clone reaches"
run replica rm vm1 "$BACKUP"
run disk rm tuesday-forensics
run gc
run scrub
run status

if [ -n "$KEEP" ]; then
	step "The node keeps running (Ctrl-C to stop and clean up). In another shell:"
	say "  export WEFT_HOME=$WEFT_HOME"
	say "  $WEFT disk ls"
	wait "$DAEMON" || true
else
	step "Done: the demo cleans up after itself (make demo KEEP=1 keeps the node running)."
fi
