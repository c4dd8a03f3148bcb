package scsi

import (
	"encoding/binary"
	"testing"
)

func rsocCDB(rctd bool, opts, op byte, sa uint16, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1], c[2], c[3] = 0xa3, 0x0c, opts, op
	if rctd {
		c[2] |= 0x80
	}
	binary.BigEndian.PutUint16(c[4:6], sa)
	binary.BigEndian.PutUint32(c[6:10], alloc)
	return c
}

// TestReportSupportedOpcodes: the list names every command of the table
// once, with SERVACTV only where there are service actions; asking for
// each one gives its CDB length and usage data, and asking the wrong way
// round is INVALID FIELD IN CDB.
func TestReportSupportedOpcodes(t *testing.T) {
	l, _ := newTestLU(t)
	for _, rctd := range []bool{false, true} {
		res := run(l, rsocCDB(rctd, 0, 0, 0, 65535), nil)
		wantSense(t, "all", res, goodStatus)
		d := res.DataIn
		if int(binary.BigEndian.Uint32(d)) != len(d)-4 {
			t.Fatalf("command data length %d for %d bytes", binary.BigEndian.Uint32(d), len(d))
		}
		size := 8
		if rctd {
			size = 20
		}
		if (len(d)-4)/size != len(commands.list) || (len(d)-4)%size != 0 {
			t.Fatalf("RCTD %v: %d bytes of descriptors, want %d of %d bytes", rctd, len(d)-4, len(commands.list), size)
		}
		for i := 4; i < len(d); i += size {
			e := d[i : i+size]
			op, sa, servactv, ctdp := e[0], binary.BigEndian.Uint16(e[2:]), e[5]&1 != 0, e[5]&2 != 0
			if ctdp != rctd || rctd && binary.BigEndian.Uint16(e[8:]) != 0x0a {
				t.Errorf("opcode %#x: CTDP %v (timeouts %x) with RCTD %v", op, ctdp, e[8:], rctd)
			}
			if !servactv && sa != 0 {
				t.Errorf("opcode %#x: service action %#x without SERVACTV", op, sa)
			}
			opts := byte(reportOpcode)
			if servactv {
				opts = reportServiceAct
			}
			one := run(l, rsocCDB(false, opts, op, sa, 65535), nil)
			wantSense(t, "one command", one, goodStatus)
			o := one.DataIn
			n := int(binary.BigEndian.Uint16(o[2:]))
			if o[1]&7 != 3 || n != int(binary.BigEndian.Uint16(e[6:])) || len(o) != 4+n || o[4] != op {
				t.Errorf("opcode %#x/%#x: one-command answer %x", op, sa, o)
			}
			wrong := byte(reportServiceAct)
			if servactv {
				wrong = reportOpcode
			}
			wantSense(t, "wrong reporting option", run(l, rsocCDB(false, wrong, op, sa, 65535), nil), invalidField)
		}
	}
	// READ(10)'s usage data allows DPO and FUA, which MODE SENSE's DPOFUA
	// bit promises.
	r := run(l, rsocCDB(false, reportOpcode, 0x28, 0, 65535), nil)
	if r.DataIn[5]&0x18 != 0x18 {
		t.Errorf("READ(10) usage byte 1 %#x, want DPO and FUA", r.DataIn[5])
	}
	r = run(l, rsocCDB(false, reportOpcode, 0x04, 0, 65535), nil)
	wantSense(t, "unsupported opcode", r, goodStatus)
	if r.DataIn[1]&7 != 1 {
		t.Errorf("unsupported opcode: SUPPORT %d, want 1", r.DataIn[1]&7)
	}
	wantSense(t, "reporting option 7", run(l, rsocCDB(false, 7, 0, 0, 65535), nil), invalidField)
}

// TestUsageDataAcceptsItself: a CDB with every usage bit set passes
// validation (whatever the command then says of its fields), and every
// single other bit is refused with a pointer to it: the usage data is
// what Execute checks.
func TestUsageDataAcceptsItself(t *testing.T) {
	for _, c := range commands.list {
		cdb := make([]byte, len(c.usage))
		copy(cdb, c.usage)
		if err := checkUsage(c, cdb); err != nil {
			t.Errorf("%s: own usage data refused: %v", c.name, err)
		}
		for i := 1; i < len(cdb); i++ {
			for bit := 0; bit < 8; bit++ {
				if c.usage[i]&(1<<bit) != 0 {
					continue
				}
				bad := make([]byte, len(c.usage))
				copy(bad, c.usage)
				bad[i] |= 1 << bit
				err := checkUsage(c, bad)
				if err == nil || err.byteAt != uint16(i) || int(err.bit) != bit {
					t.Errorf("%s: byte %d bit %d: got %v, want a pointer to it", c.name, i, bit, err)
				}
			}
		}
	}
}

// TestReportLUNs lists the LUNs given (LUN 0 by default), encoded per SAM.
func TestReportLUNs(t *testing.T) {
	rl := func(sel byte, alloc uint32) []byte {
		c := make([]byte, 12)
		c[0], c[2] = 0xa0, sel
		binary.BigEndian.PutUint32(c[6:10], alloc)
		return c
	}
	l, _ := newTestLU(t)
	res := run(l, rl(0, 512), nil)
	wantSense(t, "report luns", res, goodStatus)
	if string(res.DataIn) != string([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("default: %x, want LUN 0 alone", res.DataIn)
	}
	wantSense(t, "allocation length 15", run(l, rl(0, 15), nil), invalidField)
	wantSense(t, "select report 0x42", run(l, rl(0x42, 512), nil), invalidField)
	if r := run(l, rl(1, 512), nil); len(r.DataIn) != 8 || r.DataIn[3] != 0 {
		t.Errorf("well-known LUNs: %x, want none", r.DataIn)
	}

	d := ReportLUNs([]uint64{0, 1, 300}, 1024)
	want := []byte{0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0}
	if string(d) != string(want) {
		t.Errorf("ReportLUNs: %x, want %x", d, want)
	}
	if d := ReportLUNs([]uint64{0, 1, 300}, 12); len(d) != 12 || d[3] != 24 {
		t.Errorf("ReportLUNs cut to 12: %x", d)
	}
}

// TestDataOutLen: the bytes each writing CDB asks for, none for the
// others, and an error for a short CDB or an oversized transfer.
func TestDataOutLen(t *testing.T) {
	cases := []struct {
		name string
		cdb  []byte
		want int
	}{
		{"WRITE(6) 0=256", cdb6(opWrite6, 0, 0), 256 * 512},
		{"WRITE(10)", cdb10(opWrite10, 0, 0, 3), 3 * 512},
		{"WRITE(12)", cdb12(opWrite12, 0, 0, 4), 4 * 512},
		{"WRITE(16)", cdb16(opWrite16, 0, 0, 5), 5 * 512},
		{"READ(10)", cdb10(opRead10, 0, 0, 3), 0},
		{"VERIFY BYTCHK 0", cdb10(opVerify10, 0, 0, 3), 0},
		{"VERIFY BYTCHK 1", cdb10(opVerify10, 0x02, 0, 3), 3 * 512},
		{"VERIFY BYTCHK 3", cdb16(opVerify16, 0x06, 0, 3), 512},
		{"WRITE SAME(10)", cdb10(opWriteSame10, 0x08, 0, 300), 512},
		{"WRITE SAME(16) NDOB", cdb16(opWriteSame16, 0x01, 0, 300), 0},
		{"UNMAP", unmapCDB(40), 40},
		{"COMPARE AND WRITE", cawCDB(0, 2), 4 * 512},
		{"MODE SELECT(6)", []byte{0x15, 0x10, 0, 0, 28, 0}, 28},
		{"unknown opcode", []byte{0xc0, 0, 0, 0, 0, 0}, 0},
	}
	for _, c := range cases {
		got, err := DataOutLen(c.cdb, LogicalBlockSize)
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.name, got, err, c.want)
		}
	}
	for _, bad := range [][]byte{nil, {opWrite10, 0, 0}, cdb16(opWrite16, 0, 0, 0xffffffff)} {
		if n, err := DataOutLen(bad, LogicalBlockSize); err == nil {
			t.Errorf("CDB %x: got %d, want an error", bad, n)
		}
	}
}

// TestSmallCommands: TEST UNIT READY, START STOP UNIT, PREVENT ALLOW
// MEDIUM REMOVAL succeed; REQUEST SENSE says NO SENSE; PRE-FETCH checks
// its range.
func TestSmallCommands(t *testing.T) {
	l, _ := newTestLU(t)
	wantSense(t, "TEST UNIT READY", run(l, make([]byte, 6), nil), goodStatus)
	wantSense(t, "START STOP UNIT", run(l, []byte{0x1b, 0x01, 0, 0, 0x01, 0}, nil), goodStatus)
	wantSense(t, "PREVENT ALLOW", run(l, []byte{0x1e, 0, 0, 0, 0x01, 0}, nil), goodStatus)
	wantSense(t, "PRE-FETCH(16)", run(l, cdb16(0x90, 0, 0, 256), nil), goodStatus)
	r := run(l, []byte{0x03, 0, 0, 0, 252, 0}, nil)
	wantSense(t, "REQUEST SENSE", r, goodStatus)
	if len(r.DataIn) != 18 || r.DataIn[0] != 0x70 || r.DataIn[2] != 0 || r.DataIn[12] != 0 {
		t.Errorf("REQUEST SENSE: %x, want fixed NO SENSE", r.DataIn)
	}
	wantSense(t, "REQUEST SENSE DESC", run(l, []byte{0x03, 1, 0, 0, 252, 0}, nil), invalidField)
}
