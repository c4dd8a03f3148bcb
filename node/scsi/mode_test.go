package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func modeSense6CDB(dbd bool, pc, page, sub, alloc byte) []byte {
	c := []byte{0x1a, 0, pc<<6 | page, sub, alloc, 0}
	if dbd {
		c[1] = 0x08
	}
	return c
}

func modeSense10CDB(llbaa, dbd bool, pc, page byte, alloc uint16) []byte {
	c := make([]byte, 10)
	c[0], c[2] = 0x5a, pc<<6|page
	if llbaa {
		c[1] |= 0x10
	}
	if dbd {
		c[1] |= 0x08
	}
	binary.BigEndian.PutUint16(c[7:9], alloc)
	return c
}

// pagesOf splits mode pages into a map by page code.
func pagesOf(t *testing.T, p []byte) map[byte][]byte {
	t.Helper()
	m := map[byte][]byte{}
	for len(p) > 0 {
		if len(p) < 2 || len(p) < 2+int(p[1]) {
			t.Fatalf("truncated mode page %x", p)
		}
		m[p[0]&0x3f] = p[:2+p[1]]
		p = p[2+p[1]:]
	}
	return m
}

// TestModeSense6: header, block descriptor, and the caching (WCE),
// control and informational exceptions pages, alone or all at once.
func TestModeSense6(t *testing.T) {
	l, _ := newTestLU(t)
	res := run(l, modeSense6CDB(false, 0, 0x3f, 0, 255), nil)
	wantSense(t, "all pages", res, goodStatus)
	d := res.DataIn
	if int(d[0]) != len(d)-1 || d[2] != 0x10 || d[3] != 8 {
		t.Fatalf("header %x: want length, DPOFUA, no WP, 8-byte block descriptor", d[:4])
	}
	if binary.BigEndian.Uint32(d[4:]) != testBlocks || be24(d[9:12]) != 512 {
		t.Errorf("block descriptor %x", d[4:12])
	}
	pages := pagesOf(t, d[12:])
	if c := pages[0x08]; len(c) != 20 || c[2]&0x04 == 0 {
		t.Errorf("caching page %x: want 20 bytes with WCE", c)
	}
	if c := pages[0x0a]; len(c) != 12 || c[2]&0x04 != 0 {
		t.Errorf("control page %x: want 12 bytes, D_SENSE 0", c)
	}
	if c := pages[0x1c]; len(c) != 12 || c[2]&0x08 == 0 {
		t.Errorf("informational exceptions page %x: want DEXCPT", c)
	}
	for code, want := range pages {
		r := run(l, modeSense6CDB(true, 0, code, 0, 255), nil)
		wantSense(t, "one page", r, goodStatus)
		if r.DataIn[3] != 0 || !bytes.Equal(r.DataIn[4:], want) {
			t.Errorf("page %#x alone with DBD: %x, want %x", code, r.DataIn, want)
		}
	}
	ch := run(l, modeSense6CDB(true, 1, 0x0a, 0, 255), nil)
	wantSense(t, "changeable", ch, goodStatus)
	if !allZero(ch.DataIn[6:]) {
		t.Errorf("changeable control page %x: want nothing changeable", ch.DataIn)
	}
	wantSense(t, "saved values", run(l, modeSense6CDB(false, 3, 0x3f, 0, 255), nil), savingNotSupported)
	wantSense(t, "unknown page", run(l, modeSense6CDB(false, 0, 0x19, 0, 255), nil), invalidField)
	wantSense(t, "unknown subpage", run(l, modeSense6CDB(false, 0, 0x0a, 1, 255), nil), invalidField)
	wantSense(t, "all subpages", run(l, modeSense6CDB(false, 0, 0x3f, 0xff, 255), nil), goodStatus)
	// Allocation length 4: exactly 4 bytes, Length 4 (no overflow).
	r := run(l, modeSense6CDB(false, 0, 0x3f, 0, 4), nil)
	if len(r.DataIn) != 4 || r.Length != 4 {
		t.Errorf("allocation length 4: %d bytes, Length %d", len(r.DataIn), r.Length)
	}
}

// TestModeSenseWriteProtect: the WP bit is set for a read-only unit.
func TestModeSenseWriteProtect(t *testing.T) {
	m := newMem(testSize, testBlockSize)
	m.readOnly = true
	l := NewLU(m, LUInfo{})
	r := run(l, modeSense6CDB(true, 0, 0x08, 0, 255), nil)
	if r.DataIn[2]&0x80 == 0 {
		t.Errorf("read-only unit: device-specific %#x, want WP", r.DataIn[2])
	}
	r = run(l, modeSense10CDB(false, true, 0, 0x08, 255), nil)
	if r.DataIn[3]&0x80 == 0 {
		t.Errorf("read-only unit, MODE SENSE(10): device-specific %#x, want WP", r.DataIn[3])
	}
}

// TestModeSense10: the 8-byte header and short or long block descriptors.
func TestModeSense10(t *testing.T) {
	l, _ := newTestLU(t)
	r := run(l, modeSense10CDB(false, false, 0, 0x3f, 1024), nil)
	wantSense(t, "mode sense 10", r, goodStatus)
	d := r.DataIn
	if int(binary.BigEndian.Uint16(d)) != len(d)-2 || binary.BigEndian.Uint16(d[6:]) != 8 || d[4]&1 != 0 {
		t.Fatalf("header %x", d[:8])
	}
	r = run(l, modeSense10CDB(true, false, 0, 0x0a, 1024), nil)
	d = r.DataIn
	if binary.BigEndian.Uint16(d[6:]) != 16 || d[4]&1 != 1 || binary.BigEndian.Uint64(d[8:]) != testBlocks || binary.BigEndian.Uint32(d[20:]) != 512 {
		t.Fatalf("LLBAA: %x, want a 16-byte descriptor with LONGLBA", d[:24])
	}
	if len(pagesOf(t, d[24:])[0x0a]) != 12 {
		t.Fatal("no control page after the long descriptor")
	}
}

// TestModeSelect accepts the current values written back (with or
// without the block descriptor) and refuses any change, unknown pages and
// saving.
func TestModeSelect(t *testing.T) {
	l, _ := newTestLU(t)
	cur := run(l, modeSense6CDB(false, 0, 0x3f, 0, 255), nil).DataIn
	list := bytes.Clone(cur)
	list[0] = 0 // MODE DATA LENGTH is reserved in MODE SELECT
	sel6 := func(p []byte, flags byte) Result {
		return run(l, []byte{0x15, flags, 0, 0, byte(len(p)), 0}, p)
	}
	wantSense(t, "current values back", sel6(list, 0x10), goodStatus)
	wantSense(t, "empty", sel6(nil, 0x10), goodStatus)
	changed := bytes.Clone(list)
	pages := 12
	changed[pages+2] &^= 0x04 // caching page: clear WCE
	res := sel6(changed, 0x10)
	wantSense(t, "WCE cleared", res, invalidParam)
	if inCDB, at, _ := fieldPointer(t, res); inCDB || at != pages+2 {
		t.Errorf("field pointer cdb=%v byte %d, want parameter list byte %d", inCDB, at, pages+2)
	}
	unknown := append(bytes.Clone(list[:4]), 0x19, 2, 0, 0)
	unknown[3] = 0
	wantSense(t, "unknown page", sel6(unknown, 0x10), invalidParam)
	wantSense(t, "save", sel6(list, 0x11), invalidField)
	wantSense(t, "short header", sel6(list[:3], 0x10), paramListLength)
	badBlock := bytes.Clone(list)
	badBlock[10] = 0x10 // block length 4096
	wantSense(t, "block length 4096", sel6(badBlock, 0x10), invalidParam)

	cur10 := run(l, modeSense10CDB(false, false, 0, 0x3f, 1024), nil).DataIn
	list10 := bytes.Clone(cur10)
	list10[0], list10[1] = 0, 0
	c := make([]byte, 10)
	c[0], c[1] = 0x55, 0x10
	binary.BigEndian.PutUint16(c[7:9], uint16(len(list10)))
	wantSense(t, "MODE SELECT(10)", run(l, c, list10), goodStatus)
}
