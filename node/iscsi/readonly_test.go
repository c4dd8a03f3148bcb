package iscsi

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// A write of any form to a read-only LUN (a replica or a spacesuit) is
// answered CHECK CONDITION, DATA PROTECT, WRITE PROTECTED at once: no R2T
// asks for its data, its immediate and unsolicited data are dropped, the
// disk is not touched, and the session goes on serving (a review found
// the target collecting a whole write before refusing it).
func TestReadOnlyWriteRefusedBeforeData(t *testing.T) {
	disk := &ramDisk{data: make([]byte, 1<<20), ro: true}
	copy(disk.data, "golden")
	targets := fakeTargets{testIQN: {disk: disk}}
	addr, _ := startServer(t, targets, nil)
	in := dial(t, addr)
	ops := slices.Clone(offer)
	for i := range ops {
		if ops[i].key == "InitialR2T" {
			ops[i].value = "No" // unsolicited data may follow each command
		}
	}
	in.loginNone(testIQN, ops)

	block := bytes.Repeat([]byte{0xaa}, 512)
	unmap := make([]byte, 24)
	binary.BigEndian.PutUint16(unmap[0:], 22)
	binary.BigEndian.PutUint16(unmap[2:], 16)
	binary.BigEndian.PutUint32(unmap[16:], 1) // LBA 0, one block
	write16 := make([]byte, 16)
	write16[0] = 0x8a
	binary.BigEndian.PutUint32(write16[10:], 8)
	for _, c := range []struct {
		name string
		cdb  []byte
		data []byte
	}{
		{"WRITE(10)", cdb10(0x2a, 0, 8), bytes.Repeat(block, 8)},
		{"WRITE(16)", write16, bytes.Repeat(block, 8)},
		{"WRITE SAME(10)", cdb10(0x41, 0, 8), block},
		{"WRITE AND VERIFY(10)", cdb10(0x2e, 0, 8), bytes.Repeat(block, 8)},
		{"UNMAP", unmapCDB(len(unmap)), unmap},
	} {
		// Immediate data, then an unsolicited Data-Out the target must
		// drop: the response comes first and no R2T ever does.
		imm := c.data[:min(len(c.data), 1024)]
		itt := in.scsiCmd(c.cdb, false, true, len(c.data), imm, len(imm) == len(c.data))
		r := in.recv()
		if r.opcode() != opSCSIResp || r.itt() != itt {
			t.Fatalf("%s: got opcode %#x itt %d, want the SCSI response to %d", c.name, r.opcode(), r.itt(), itt)
		}
		if r.bhs[3] != 0x02 || len(r.data) < 2+14 || r.data[2+2]&0x0f != 0x07 || r.data[2+12] != 0x27 {
			t.Fatalf("%s: got status %#x sense %x, want CHECK CONDITION, DATA PROTECT, WRITE PROTECTED", c.name, r.bhs[3], r.data)
		}
		if len(imm) < len(c.data) {
			in.dataOut(itt, reservedTag, 0, len(imm), c.data[len(imm):min(len(c.data), 4096)], true)
		}
	}
	// The session still serves, and the disk holds what it held.
	itt := in.scsiCmd(cdb10(0x28, 0, 1), true, false, 512, nil, true)
	r := in.recv()
	if r.opcode() != opDataIn || r.itt() != itt || !bytes.HasPrefix(r.data, []byte("golden")) {
		t.Fatalf("read after the refusals: got opcode %#x itt %d data %q, want the disk's first block", r.opcode(), r.itt(), r.data[:min(len(r.data), 6)])
	}
}

// unmapCDB is UNMAP with a parameter list of n bytes.
func unmapCDB(n int) []byte {
	c := make([]byte, 10)
	c[0] = 0x42
	binary.BigEndian.PutUint16(c[7:9], uint16(n))
	return c
}
