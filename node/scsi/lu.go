package scsi

import (
	"context"
	"errors"
	"hash/fnv"
	"math/bits"
	"sync"

	"github.com/weft-mesh/weft/node/nbd"
)

// LogicalBlockSize is the block size initiators see: 512 bytes, what VMs
// and qemu expect, whatever the disk's block size.
const LogicalBlockSize = 512

// Limits the unit reports in its Block Limits VPD page and enforces.
const (
	// MaxTransferBlocks bounds one READ, WRITE, VERIFY or ORWRITE: 32 MiB,
	// the NBD door's largest payload too. The transport holds a command's
	// whole data in memory; libiscsi's WRITE SAME tests write 65536
	// blocks in one WRITE(16) whatever the Block Limits page says.
	MaxTransferBlocks = 65536
	// MaxUnmapBlocks bounds the blocks one UNMAP command may unmap.
	MaxUnmapBlocks = 1 << 20
	// MaxUnmapDescriptors bounds the block descriptors of one UNMAP.
	MaxUnmapDescriptors = 256
	// MaxWriteSameBlocks bounds one WRITE SAME (1 GiB): zeroing is cheap
	// and a pattern is written 4 MiB at a time.
	MaxWriteSameBlocks = 1 << 21
	// MaxCompareAndWriteBlocks bounds one COMPARE AND WRITE (the Block
	// Limits MAXIMUM COMPARE AND WRITE LENGTH, a one-byte field).
	MaxCompareAndWriteBlocks = 255
)

// Errors a Backend returns (wrapped, checked with errors.Is) to choose the
// sense data. They are the nbd package's sentinels, so node's NBD exports
// serve as Backends with their errors unchanged.
var (
	// ErrReadOnly: a write to a read-only unit. Answered DATA PROTECT,
	// WRITE PROTECTED.
	ErrReadOnly = nbd.ErrReadOnly
	// ErrNoSpace: the store is full. Answered DATA PROTECT, SPACE
	// ALLOCATION FAILED WRITE PROTECT, the thin-provisioning answer that
	// tells the initiator the write may succeed once space is freed.
	ErrNoSpace = nbd.ErrNoSpace
)

// Backend is a logical unit's storage. node's NBD exports (headExport,
// viewExport) have exactly these methods. Its methods are called
// concurrently, and always with ranges inside Size.
type Backend interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64) error
	// Zero makes n bytes at off read as zeros; with punch it may
	// deallocate them (UNMAP, WRITE SAME with UNMAP).
	Zero(ctx context.Context, off, n int64, punch bool) error
	// Flush makes every write that returned before it durable: what
	// SYNCHRONIZE CACHE and FUA mean.
	Flush(ctx context.Context) error
	Size() int64
	// BlockSize is the disk's block size: its preferred I/O size.
	BlockSize() int64
	ReadOnly() bool
}

// LUInfo names a logical unit in INQUIRY data.
type LUInfo struct {
	// Vendor (8 characters), Product (16) and Revision (4) go in the
	// standard INQUIRY data, space-padded or cut. Empty Vendor is "WEFT",
	// empty Product "weft disk", empty Revision "1".
	Vendor, Product, Revision string
	// Serial is the Unit Serial Number VPD page (0x80) and part of the
	// T10 vendor ID designator; it should be unique and stable per disk.
	Serial string
	// NAA is the 8-byte NAA designator of the Device Identification VPD
	// page (0x83): initiators (multipath, VMware) key the disk on it. Zero
	// derives a locally assigned one (NAA 3) from Vendor, Product and
	// Serial, stable across restarts.
	NAA uint64
	// LUNs are the target's LUNs, which REPORT LUNS sent to this unit
	// lists; nil lists LUN 0 alone.
	LUNs []uint64
	// Atomicity, if set, is the lock that makes COMPARE AND WRITE and
	// ORWRITE atomic, shared by every unit over the same storage (one per
	// session, say): a lock of each unit's own would let two sessions'
	// compares both pass. Nil gives the unit its own.
	Atomicity *sync.Mutex
}

// LU is a logical unit over a Backend. Its methods are safe for
// concurrent use: it keeps no per-command state.
type LU struct {
	b Backend
	// cmds is the command table (commands), reached through the unit so
	// that REPORT SUPPORTED OPERATION CODES, a command of the table, can
	// list it without an initialization cycle.
	cmds      *table
	info      LUInfo
	naa       uint64
	blocks    uint64 // logical blocks: the backend's size in 512-byte blocks
	lbppbExp  byte   // log2 of logical blocks per disk block
	readOnly  bool
	atomicity *sync.Mutex // COMPARE AND WRITE and ORWRITE are atomic against each other (LUInfo.Atomicity)
}

// NewLU returns a logical unit serving b. The size, block size and
// read-only flag are read once: a disk does not change them while open.
func NewLU(b Backend, info LUInfo) *LU {
	if info.Vendor == "" {
		info.Vendor = "WEFT"
	}
	if info.Product == "" {
		info.Product = "weft disk"
	}
	if info.Revision == "" {
		info.Revision = "1"
	}
	l := &LU{b: b, cmds: commands, info: info, naa: info.NAA, readOnly: b.ReadOnly(), atomicity: info.Atomicity}
	if l.atomicity == nil {
		l.atomicity = new(sync.Mutex)
	}
	if l.naa == 0 {
		h := fnv.New64a()
		h.Write([]byte(info.Vendor + "\x00" + info.Product + "\x00" + info.Serial))
		l.naa = 3<<60 | h.Sum64()&(1<<60-1)
	}
	if s := b.Size(); s > 0 {
		l.blocks = uint64(s) / LogicalBlockSize
	}
	if bs := b.BlockSize(); bs > LogicalBlockSize && bs%LogicalBlockSize == 0 {
		per := uint64(bs / LogicalBlockSize)
		if per&(per-1) == 0 { // a power of two: the exponent is exact
			l.lbppbExp = byte(min(bits.TrailingZeros64(per), 15))
		}
	}
	return l
}

// lbppb is the number of logical blocks per disk block.
func (l *LU) lbppb() uint32 { return 1 << l.lbppbExp }

// Command is one SCSI command as the transport received it.
type Command struct {
	// CDB is the command descriptor block; it may be longer than the
	// command's own length (iSCSI pads CDBs to 16 bytes).
	CDB []byte
	// DataOut is the data the initiator sent for the command: a
	// transport asks for DataOutLen's bytes (cut to iSCSI's Expected Data
	// Transfer Length) and passes on what it received, all of it or with
	// SentLen saying how much the initiator meant to send.
	DataOut []byte
	// SentLen, optional, is how much data-out the initiator meant to send
	// (iSCSI's Expected Data Transfer Length of a write) when DataOut
	// holds less because the transport asked for less (R2T) or cut the
	// excess: WRITE SAME and COMPARE AND WRITE, which need exactly their
	// CDB's amount, refuse a command whose initiator sent or meant to send
	// any other. 0 means len(DataOut).
	SentLen int
	// AllocLen is the initiator's expected data-in length (iSCSI's
	// Expected Data Transfer Length): DataIn is cut to it.
	AllocLen int
	// Buffer, optional, is memory the transport lends for the data-in:
	// a READ whose data fits its capacity reads into it (DataIn then
	// aliases it) instead of allocating, so a transport that reuses its
	// buffers spares the garbage collector one allocation per read.
	Buffer []byte
}

// SCSI status codes.
const (
	StatusGood           = 0x00
	StatusCheckCondition = 0x02
	// StatusConditionMet is PRE-FETCH's success when the blocks fit the
	// cache; this unit has no cache and answers GOOD, but a transport may
	// treat both as success.
	StatusConditionMet = 0x04
)

// Result is a command's outcome.
type Result struct {
	// Status is StatusGood or StatusCheckCondition.
	Status byte
	// DataIn is the data for the initiator, never longer than AllocLen.
	DataIn []byte
	// Length is how many bytes the command itself would send (its CDB's
	// transfer or allocation length, cut to the data there is), before
	// the cut to AllocLen: the transport's residual is AllocLen-Length,
	// an underflow when positive and an overflow when negative.
	Length int
	// Sense is fixed-format sense data when Status is CHECK CONDITION.
	Sense []byte
}

// Execute runs one command and returns its outcome; every failure is a
// CHECK CONDITION with sense data, never a Go error. It blocks on the
// Backend's I/O under ctx.
func (l *LU) Execute(ctx context.Context, c Command) Result {
	r := l.execute(ctx, c)
	if r.Status != StatusGood {
		return r
	}
	if len(r.DataIn) > max(c.AllocLen, 0) {
		r.DataIn = r.DataIn[:max(c.AllocLen, 0)]
	}
	return r
}

// Preflight answers, before a transport asks for its data-out, a
// command that can only fail whatever its data: one that changes the
// medium (WRITE, WRITE AND VERIFY, WRITE SAME, ORWRITE, COMPARE AND
// WRITE, UNMAP) sent to a read-only unit. It returns the CHECK CONDITION
// Execute would (DATA PROTECT, WRITE PROTECTED, or a fault of the CDB
// that comes first in the order of Validation) and true; false for any
// other command, which the transport collects data for and executes. It
// never touches the backend.
func (l *LU) Preflight(ctx context.Context, cdb []byte) (Result, bool) {
	if !l.readOnly || len(cdb) == 0 {
		return Result{}, false
	}
	if cmd, sense := l.cmds.lookup(cdb); sense != nil || !cmd.writes {
		return Result{}, false
	}
	// Every command marked writes checks the unit's read-only flag before
	// it looks at its data-out or the backend (TestPreflightRefusesWrites
	// runs them all), so executing it without data answers what it would
	// with any.
	return l.execute(ctx, Command{CDB: cdb}), true
}

func (l *LU) execute(ctx context.Context, c Command) Result {
	if len(c.CDB) == 0 {
		return checkCondition(senseInvalidOpcode)
	}
	cmd, sense := l.cmds.lookup(c.CDB)
	if sense != nil {
		return Result{Status: StatusCheckCondition, Sense: sense}
	}
	r := request{cdb: c.CDB[:len(cmd.usage)], dataOut: c.DataOut, sent: max(c.SentLen, len(c.DataOut)), buf: c.Buffer}
	data, err := cmd.run(ctx, l, r)
	if err != nil {
		return Result{Status: StatusCheckCondition, Sense: senseFor(err)}
	}
	return Result{Status: StatusGood, DataIn: data, Length: len(data)}
}

// request is a command's validated CDB (cut to its length), data-out,
// how much data-out the initiator sent or meant to (at least
// len(dataOut)), and the transport's buffer for data-in, if any.
type request struct {
	cdb     []byte
	dataOut []byte
	sent    int
	buf     []byte
}

// backendError turns a Backend error into the sense it means: write
// selects the generic answer for a failed write rather than a read.
func backendError(ctx context.Context, err error, write bool) error {
	switch {
	case errors.Is(err, ErrReadOnly):
		return senseWriteProtected
	case errors.Is(err, ErrNoSpace):
		return senseSpaceAllocationFailed
	case ctx.Err() != nil:
		return senseAborted
	case write:
		return senseWriteError
	}
	return senseReadError
}
