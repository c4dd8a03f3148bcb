#!/usr/bin/env bash
# The weft story so far: one node, a disk, replicas, time travel, clones;
# then two more sites join, the disk gets its second copy, a golden image
# is pushed to both, and the first node dies: the others heal.
# Runs in a temporary home and cleans up after itself. KEEP=1 leaves the
# node running until Ctrl-C.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WEFT=${WEFT:-$(cd "$(dirname "$0")/.." && pwd)/bin/weft}
KEEP=${KEEP:-}
WORK=$(mktemp -d /tmp/weft-demo.XXXXXX)
export WEFT_HOME=$WORK/home
DAEMON=""
DAEMON_B=""
DAEMON_C=""

cleanup() {
	for pid in "$DAEMON" "$DAEMON_B" "$DAEMON_C"; do
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
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
run init --site demo-lab --nbd off --listen /ip4/127.0.0.1/tcp/0 --http "127.0.0.1:$(free_port)"
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

step "10. Two more sites join the mesh (same cluster secret, their own addresses)"
HOME_A=$WEFT_HOME
ADDR_A=$("$WEFT" id --json | grep -o '"/ip4/[^"]*' | head -1 | tr -d '"')
site() { # site N NAME IP: init and start a site's node, joined to the first
	local home=$WORK/$2
	"$WEFT" --home "$home" init --site "$2" --nbd off --listen "/ip4/$3/tcp/0" \
		--http "127.0.0.1:$(free_port)" --cluster-secret-file "$HOME_A/cluster.secret" >/dev/null
	"$WEFT" --home "$home" daemon --log-level warn --heal-interval 2s --join "$ADDR_A" 2>"$WORK/daemon-$2.log" &
	eval "DAEMON_$1=$!"
	until "$WEFT" --home "$home" status >/dev/null 2>&1; do sleep 0.1; done
}
site B demo-lab-2 127.0.0.2
site C demo-lab-3 127.0.0.3
HOME_B=$WORK/demo-lab-2
HOME_C=$WORK/demo-lab-3
w2() { printf '%s$ weft --home demo-lab-2 %s%s\n' "$dim" "$*" "$reset"; "$WEFT" --home "$HOME_B" "$@"; }
w3() { printf '%s$ weft --home demo-lab-3 %s%s\n' "$dim" "$*" "$reset"; "$WEFT" --home "$HOME_C" "$@"; }
until [ "$("$WEFT" peers --json | grep -c '"state": "alive"')" = 3 ]; do sleep 0.2; done
run peers

step "11. vm1-test wants 2 copies in 2 sites: the mesh places them"
wait_healthy() { # wait_healthy HOME DISK: no block of DISK under-replicated
	local deadline=$((SECONDS + 60))
	until "$WEFT" --home "$1" disk info "$2" --json | grep -q '"under_replicated": 0,' &&
		"$WEFT" --home "$1" status --json | grep -q '"passes": [1-9]'; do
		[ $SECONDS -lt $deadline ] || { say "(not healthy within 60 s)"; break; }
		sleep 0.5
	done
}
wait_healthy "$HOME_A" vm1-test
run disk info vm1-test

step "12. A golden image: publish vm1-test as a spacesuit, push it to both other sites"
run spacesuit publish base vm1-test
run push base@1 --to demo-lab-2,demo-lab-3
w3 disk clone base@1 web1
say "web1 at site 3, cloned from base@1, says: $("$WEFT" --home "$HOME_C" disk export web1 - | dd bs=1M skip=100 count=1 iflag=fullblock status=none | tr -d '\0')"

step "13. Site one dies (kill -9): the others heal vm1-test back to 2 copies"
kill -KILL "$DAEMON"
wait "$DAEMON" 2>/dev/null || true
DAEMON=""
until [ "$("$WEFT" --home "$HOME_B" peers --json | grep -c '"state": "alive"')" = 2 ]; do sleep 0.2; done
wait_healthy "$HOME_B" vm1-test
w2 status
say "vm1-test, read at site 2: $("$WEFT" --home "$HOME_B" disk export vm1-test - | dd bs=1M skip=100 count=1 iflag=fullblock status=none | tr -d '\0')"
say ""
say "Dashboard of site 2: http://$(grep -o '"http": "[^"]*' "$HOME_B/config.json" | cut -d'"' -f4)/"

if [ -n "$KEEP" ]; then
	step "Sites two and three keep running (Ctrl-C to stop and clean up). In another shell:"
	say "  export WEFT_HOME=$HOME_B"
	say "  $WEFT peers; $WEFT disk ls; $WEFT transfers"
	wait "$DAEMON_B" || true
else
	step "Done: the demo cleans up after itself (make demo KEEP=1 keeps the mesh and its dashboards up)."
fi
