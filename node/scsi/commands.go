package scsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// command is one supported operation: its CDB usage data (its length is
// the CDB's; byte 0 is the opcode and, for an opcode with service
// actions, the service action sits in byte 1's low five bits; every other
// bit set is one the initiator may set), how many bytes of data-out it
// takes, and what it does.
type command struct {
	name string
	// sa is the service action, or -1 for an opcode without.
	sa    int
	usage []byte
	// dataOut returns the bytes of data-out the CDB asks for, with
	// logical blocks of bs bytes; nil: none.
	dataOut func(cdb []byte, bs uint64) uint64
	// writes marks a command that changes the medium: refused on a
	// read-only unit before its data is looked at (LU.Preflight).
	writes bool
	run    func(ctx context.Context, l *LU, r request) ([]byte, error)
}

// table is the unit's command set, indexed for lookup.
type table struct {
	list     []*command          // in opcode, service action order: REPORT SUPPORTED OPERATION CODES lists them so
	byOpcode map[byte]*command   // opcodes without service actions
	bySA     map[uint16]*command // opcode<<8 | service action
	hasSA    map[byte]bool       // opcodes with service actions
}

func newTable(cmds []command) *table {
	t := &table{byOpcode: map[byte]*command{}, bySA: map[uint16]*command{}, hasSA: map[byte]bool{}}
	for i := range cmds {
		c := &cmds[i]
		op := c.usage[0]
		if c.sa >= 0 {
			t.hasSA[op] = true
			t.bySA[uint16(op)<<8|uint16(c.sa)] = c
		} else {
			t.byOpcode[op] = c
		}
		t.list = append(t.list, c)
	}
	return t
}

// find returns the command for an opcode and, if the opcode has service
// actions, the service action; nil if unsupported.
func (t *table) find(op byte, sa int) *command {
	if t.hasSA[op] {
		return t.bySA[uint16(op)<<8|uint16(sa&0x1f)]
	}
	return t.byOpcode[op]
}

// lookup finds a CDB's command and checks the CDB against it: its length,
// and no bit set outside the command's usage data.
func (t *table) lookup(cdb []byte) (*command, []byte) {
	op := cdb[0]
	var c *command
	if t.hasSA[op] {
		if len(cdb) < 2 {
			return nil, invalidCDBField(1, -1).bytes()
		}
		c = t.find(op, int(cdb[1]&0x1f))
		if c == nil {
			// The opcode is known but not this service action: SPC-4
			// answers that as an invalid field, not an invalid opcode.
			return nil, invalidCDBField(1, 4).bytes()
		}
	} else if c = t.find(op, 0); c == nil {
		return nil, senseInvalidOpcode.bytes()
	}
	if err := checkUsage(c, cdb); err != nil {
		return nil, err.bytes()
	}
	return c, nil
}

// checkUsage refuses a CDB shorter than c's or with a bit set that c's
// usage data does not allow, pointing at the first such byte and its
// highest such bit.
func checkUsage(c *command, cdb []byte) *senseError {
	if len(cdb) < len(c.usage) {
		return invalidCDBField(len(cdb), -1)
	}
	for i := 1; i < len(c.usage); i++ {
		if bad := cdb[i] &^ c.usage[i]; bad != 0 {
			return invalidCDBField(i, bits.Len8(bad)-1)
		}
	}
	return nil
}

// ErrInvalidCDB is what DataOutLen returns for a CDB shorter than its
// command or asking to send more data than the unit takes.
var ErrInvalidCDB = errors.New("invalid CDB")

// DataOutLen tells the transport how many bytes of data-out a CDB
// transfers to the target, so that it can ask for them (iSCSI's R2T): the
// CDB's own transfer length, whatever the initiator's expected length
// says. blockSize is the logical block size (LogicalBlockSize). A CDB of
// an unsupported command transfers nothing (Execute refuses it). On an
// error (wrapping ErrInvalidCDB) the transport should take no data and
// still pass the command to Execute, which answers it with the matching
// CHECK CONDITION.
func DataOutLen(cdb []byte, blockSize int) (int, error) {
	if len(cdb) == 0 {
		return 0, fmt.Errorf("empty CDB: %w", ErrInvalidCDB)
	}
	if commands.hasSA[cdb[0]] && len(cdb) < 2 {
		return 0, fmt.Errorf("opcode %#02x: CDB of %d bytes: %w", cdb[0], len(cdb), ErrInvalidCDB)
	}
	c := commands.find(cdb[0], int(cdb[min(1, len(cdb)-1)]))
	if c == nil || c.dataOut == nil {
		return 0, nil
	}
	if len(cdb) < len(c.usage) {
		return 0, fmt.Errorf("%s: CDB of %d bytes, want %d: %w", c.name, len(cdb), len(c.usage), ErrInvalidCDB)
	}
	bs := uint64(max(blockSize, 1))
	n := c.dataOut(cdb, bs)
	if n > MaxTransferBlocks*bs {
		return 0, fmt.Errorf("%s: %d bytes of data-out, over the unit's limit: %w", c.name, n, ErrInvalidCDB)
	}
	return int(n), nil
}

// Big-endian fields of CDBs and parameter data.
func be16(b []byte) uint64 { return uint64(binary.BigEndian.Uint16(b)) }
func be24(b []byte) uint64 { return uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2]) }
func be32(b []byte) uint64 { return uint64(binary.BigEndian.Uint32(b)) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// cut returns the first n bytes of data, or all of it when shorter: an
// allocation length applied.
func cut(data []byte, n uint64) []byte {
	if uint64(len(data)) > n {
		return data[:n]
	}
	return data
}

// Transfer lengths, in logical blocks, of the read/write CDB forms.
func blocks6(cdb []byte) uint64 {
	if cdb[4] == 0 {
		return 256 // READ(6)/WRITE(6): zero means 256 blocks
	}
	return uint64(cdb[4])
}
func blocks10(cdb []byte) uint64 { return be16(cdb[7:9]) }
func blocks12(cdb []byte) uint64 { return be32(cdb[6:10]) }
func blocks16(cdb []byte) uint64 { return be32(cdb[10:14]) }

// Data-out of the write forms: their transfer length in blocks.
func blocksOut(blocks func([]byte) uint64) func([]byte, uint64) uint64 {
	return func(cdb []byte, bs uint64) uint64 { return blocks(cdb) * bs }
}

// Data-out of VERIFY: BYTCHK 01b sends the blocks to compare, 11b one
// block compared with each, 00b nothing.
func verifyOut(blocks func([]byte) uint64) func([]byte, uint64) uint64 {
	return func(cdb []byte, bs uint64) uint64 {
		switch cdb[1] >> 1 & 3 {
		case 1:
			return blocks(cdb) * bs
		case 3:
			return bs
		}
		return 0
	}
}

// Data-out of WRITE SAME: one block, none with NDOB (WRITE SAME(16)'s
// "no data-out buffer": the block is zeros).
func writeSameOut(cdb []byte, bs uint64) uint64 {
	if cdb[0] == 0x93 && cdb[1]&0x01 != 0 {
		return 0
	}
	return bs
}

// Data-out of a parameter list: its length, at byte at (one byte in a
// 6-byte CDB, two in a larger one).
func paramListOut(at int) func([]byte, uint64) uint64 {
	return func(cdb []byte, _ uint64) uint64 {
		if len(cdb) == 6 {
			return uint64(cdb[at])
		}
		return be16(cdb[at : at+2])
	}
}

// commands is the unit's command set. Usage data per SPC-4/SBC-3, with
// RDPROTECT/WRPROTECT/VRPROTECT, ANCHOR, LBDATA/PBDATA, NACA and LINK
// left out since the unit does not support them.
var commands = newTable([]command{
	{name: "TEST UNIT READY", sa: -1, usage: []byte{0x00, 0, 0, 0, 0, 0}, run: good},
	{name: "REQUEST SENSE", sa: -1, usage: []byte{0x03, 0, 0, 0, 0xff, 0}, run: requestSense},
	{name: "READ(6)", sa: -1, usage: []byte{0x08, 0x1f, 0xff, 0xff, 0xff, 0}, run: onExtent(extent6, (*LU).read)},
	{name: "WRITE(6)", sa: -1, usage: []byte{0x0a, 0x1f, 0xff, 0xff, 0xff, 0}, dataOut: blocksOut(blocks6), writes: true, run: onExtent(extent6, (*LU).writeBlocks)},
	{name: "INQUIRY", sa: -1, usage: []byte{0x12, 0x01, 0xff, 0xff, 0xff, 0}, run: inquiry},
	{name: "MODE SELECT(6)", sa: -1, usage: []byte{0x15, 0x11, 0, 0, 0xff, 0}, dataOut: paramListOut(4), run: modeSelect6},
	{name: "MODE SENSE(6)", sa: -1, usage: []byte{0x1a, 0x08, 0xff, 0xff, 0xff, 0}, run: modeSense6},
	{name: "START STOP UNIT", sa: -1, usage: []byte{0x1b, 0x01, 0, 0x0f, 0xf7, 0}, run: good},
	{name: "PREVENT ALLOW MEDIUM REMOVAL", sa: -1, usage: []byte{0x1e, 0, 0, 0, 0x03, 0}, run: good},
	{name: "READ CAPACITY(10)", sa: -1, usage: []byte{0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0}, run: readCapacity10},
	{name: "READ(10)", sa: -1, usage: []byte{0x28, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, run: onExtent(extent10, (*LU).read)},
	{name: "WRITE(10)", sa: -1, usage: []byte{0x2a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, dataOut: blocksOut(blocks10), writes: true, run: onExtent(extent10, (*LU).writeBlocks)},
	{name: "WRITE AND VERIFY(10)", sa: -1, usage: []byte{0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, dataOut: blocksOut(blocks10), writes: true, run: onExtent(extent10, (*LU).writeVerify)},
	{name: "VERIFY(10)", sa: -1, usage: []byte{0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, dataOut: verifyOut(blocks10), run: onExtent(extent10, (*LU).verify)},
	{name: "PRE-FETCH(10)", sa: -1, usage: []byte{0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, run: onExtent(extent10, (*LU).prefetch)},
	{name: "SYNCHRONIZE CACHE(10)", sa: -1, usage: []byte{0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, run: onExtent(extent10, (*LU).syncCache)},
	{name: "WRITE SAME(10)", sa: -1, usage: []byte{0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}, dataOut: writeSameOut, writes: true, run: onExtent(extent10, (*LU).writeSame)},
	{name: "UNMAP", sa: -1, usage: []byte{0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0}, dataOut: paramListOut(7), writes: true, run: unmap},
	{name: "MODE SELECT(10)", sa: -1, usage: []byte{0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0}, dataOut: paramListOut(7), run: modeSelect10},
	{name: "MODE SENSE(10)", sa: -1, usage: []byte{0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0}, run: modeSense10},
	{name: "READ(16)", sa: -1, usage: []byte{0x88, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, run: onExtent(extent16, (*LU).read)},
	{name: "COMPARE AND WRITE", sa: -1, usage: []byte{0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0}, dataOut: func(c []byte, bs uint64) uint64 { return 2 * uint64(c[13]) * bs }, writes: true, run: compareAndWrite},
	{name: "WRITE(16)", sa: -1, usage: []byte{0x8a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: blocksOut(blocks16), writes: true, run: onExtent(extent16, (*LU).writeBlocks)},
	{name: "ORWRITE(16)", sa: -1, usage: []byte{0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: blocksOut(blocks16), writes: true, run: onExtent(extent16, (*LU).orWrite)},
	{name: "WRITE AND VERIFY(16)", sa: -1, usage: []byte{0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: blocksOut(blocks16), writes: true, run: onExtent(extent16, (*LU).writeVerify)},
	{name: "VERIFY(16)", sa: -1, usage: []byte{0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: verifyOut(blocks16), run: onExtent(extent16, (*LU).verify)},
	{name: "PRE-FETCH(16)", sa: -1, usage: []byte{0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, run: onExtent(extent16, (*LU).prefetch)},
	{name: "SYNCHRONIZE CACHE(16)", sa: -1, usage: []byte{0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, run: onExtent(extent16, (*LU).syncCache)},
	{name: "WRITE SAME(16)", sa: -1, usage: []byte{0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: writeSameOut, writes: true, run: onExtent(extent16, (*LU).writeSame)},
	{name: "READ CAPACITY(16)", sa: 0x10, usage: []byte{0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, run: readCapacity16},
	{name: "GET LBA STATUS", sa: 0x12, usage: []byte{0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, run: getLBAStatus},
	{name: "REPORT LUNS", sa: -1, usage: []byte{0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, run: reportLUNs},
	{name: "REPORT SUPPORTED OPERATION CODES", sa: 0x0c, usage: []byte{0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, run: reportOpcodes},
	{name: "READ(12)", sa: -1, usage: []byte{0xa8, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, run: onExtent(extent12, (*LU).read)},
	{name: "WRITE(12)", sa: -1, usage: []byte{0xaa, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: blocksOut(blocks12), writes: true, run: onExtent(extent12, (*LU).writeBlocks)},
	{name: "WRITE AND VERIFY(12)", sa: -1, usage: []byte{0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: blocksOut(blocks12), writes: true, run: onExtent(extent12, (*LU).writeVerify)},
	{name: "VERIFY(12)", sa: -1, usage: []byte{0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}, dataOut: verifyOut(blocks12), run: onExtent(extent12, (*LU).verify)},
})

// good answers a command that has nothing to do: TEST UNIT READY (the
// unit is always ready), START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL
// (the medium is not removable and never stops).
func good(context.Context, *LU, request) ([]byte, error) { return nil, nil }

// requestSense answers NO SENSE: sense goes back with each failed command
// (autosense), so there is none pending.
func requestSense(_ context.Context, _ *LU, r request) ([]byte, error) {
	s := (&senseError{key: keyNoSense}).bytes()
	return cut(s, uint64(r.cdb[4])), nil
}
