// Package torture runs a mesh of real weft daemons under a seeded nemesis
// while real NBD clients write to its disks, then heals every fault, reads
// every disk from every node and checks every slot against the write log
// (make torture, and TestTorture in make test).
//
// # Mesh
//
// Sites × nodes daemons of the weft binary. As root each site is a network
// namespace on a bridge (a veth each) and each home a tmpfs; otherwise the
// nodes listen on 127.0.0.x and the faults that need root (cut, slow,
// fill) are skipped, and the run says so. Four disks: async and sync,
// R=2 and R=3, block sizes 16-64 KiB.
//
// # Writers
//
// writer.py (libnbd's Python bindings) writes whole 4 KiB slots, one write
// in flight, each slot's content naming disk, writer, sequence number and
// slot with a hash over them (SlotContent), and FLUSHes every few writes.
// It reports every event on stdout; writer.go keeps the log and, after an
// error or a stall, connects it to whichever node owns the disk then.
//
// A write is acknowledged when a FLUSH issued on the same connection after
// the write was replied to returned success: on an async disk that is
// durability in the owner's overlay, on a sync disk R copies.
//
// # Nemesis
//
// Every 1-3 s, seeded: kill -9 and restart, SIGSTOP past the failure
// detector's timeout and SIGCONT, a site cut off and rejoined, a site's
// link slowed with tbf, a node's file system filled and emptied, a disk
// of a down or cut-off owner taken on another site, bytes flipped in a
// stopped node's block segments then a scrub. The rule: the faults that
// take nodes out (kill, pause, cut, fill) are all in one site at a time,
// at most three faults are in force at once, and corruption hits only a
// node that owns no disk while no node is out. With
// at least as many sites as copies, placement puts the R copies of a
// block on distinct sites, so R-1 of them stay reachable. Meanwhile an
// operator's cron commits the async disks every 5 s and runs weft gc on
// every node every 30 s, and a supervisor watches every daemon: one that
// exits without the nemesis killing it is a crash of weft (a finding that
// fails the run, with the first panic line of its log) and is restarted a
// second later, as systemd's Restart=always would.
//
// # Check
//
// Each slot, read from every node's head, must hold its last acknowledged
// write or a write issued after it (zeros only while none was
// acknowledged). A slot that holds an older write or zeros counts as lost
// unless a fenced replica (fenced-e…, kept by an owner that acknowledged
// writes after its disk was taken) holds that write or a later one, which
// is what weft promises. A slot holding anything never issued to it (torn,
// foreign, damaged) counts as a corrupt read, in heads and fenced replicas.
// The fenced replicas are read from the disk's owner, which must list as
// many replicas as every other node; one that cannot be exported counts
// as unreadable, and fails the run like a lost write. When the mesh does
// not converge the run broke, but what can be read is checked all the
// same.
package torture
