package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func inquiryCDB(evpd bool, page byte, alloc uint16) []byte {
	c := []byte{0x12, 0, page, byte(alloc >> 8), byte(alloc), 0}
	if evpd {
		c[1] = 1
	}
	return c
}

// TestStandardInquiry: a direct-access SPC-4 device with the vendor,
// product and revision given, printable, and an additional length that
// matches the data.
func TestStandardInquiry(t *testing.T) {
	m := newMem(testSize, testBlockSize)
	l := NewLU(m, LUInfo{Vendor: "ACME", Product: "weft \x01disk", Revision: "2.0", Serial: "s1"})
	res := run(l, inquiryCDB(false, 0, 260), nil)
	wantSense(t, "inquiry", res, goodStatus)
	d := res.DataIn
	if len(d) < 36 || int(d[4]) != len(d)-5 {
		t.Fatalf("got %d bytes with additional length %d", len(d), d[4])
	}
	if d[0] != 0 || d[1]&0x80 != 0 || d[2] != 6 || d[3]&0x0f != 2 || d[7]&0x02 == 0 {
		t.Errorf("header %x: want direct-access, not removable, SPC-4, format 2, CMDQUE", d[:8])
	}
	if got := string(d[8:36]); got != "ACME    weft  disk      2.0 " {
		t.Errorf("identification %q, want %q", got, "ACME    weft  disk      2.0 ")
	}
	var sbc3 bool
	for i := 58; i+1 < len(d); i += 2 {
		sbc3 = sbc3 || binary.BigEndian.Uint16(d[i:]) == 0x04c0
	}
	if !sbc3 {
		t.Error("no SBC-3 version descriptor")
	}
	// Every allocation length works, and 511 and 512 give the same data.
	for alloc := 0; alloc < 300; alloc++ {
		r := run(l, inquiryCDB(false, 0, uint16(alloc)), nil)
		if r.Status != StatusGood || len(r.DataIn) != min(alloc, len(d)) || !bytes.Equal(r.DataIn, d[:len(r.DataIn)]) {
			t.Fatalf("allocation length %d: status %#x, %d bytes", alloc, r.Status, len(r.DataIn))
		}
	}
	res = run(l, inquiryCDB(false, 1, 255), nil)
	wantSense(t, "page code without EVPD", res, invalidField)
	if inCDB, at, _ := fieldPointer(t, res); !inCDB || at != 2 {
		t.Errorf("field pointer byte %d, want CDB byte 2", at)
	}
}

func vpd(t *testing.T, l *LU, page byte) []byte {
	t.Helper()
	res := run(l, inquiryCDB(true, page, 0xffff), nil)
	wantSense(t, "VPD", res, goodStatus)
	d := res.DataIn
	if len(d) < 4 || d[1] != page || int(binary.BigEndian.Uint16(d[2:4])) != len(d)-4 {
		t.Fatalf("VPD %#x: %x is not a page of its own length", page, d)
	}
	return d
}

// TestVPDPages checks every page's content.
func TestVPDPages(t *testing.T) {
	l, _ := newTestLU(t)
	sup := vpd(t, l, 0x00)
	if !bytes.Equal(sup[4:], []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}) {
		t.Errorf("supported pages %x", sup[4:])
	}
	for _, p := range sup[4:] {
		vpd(t, l, p)
	}
	if got := string(vpd(t, l, 0x80)[4:]); got != "disk-1" {
		t.Errorf("serial %q, want disk-1", got)
	}

	id := vpd(t, l, 0x83)[4:]
	if id[0]&0x0f != 1 || id[1]&0x0f != 3 || id[3] != 8 || id[4]>>4 != 3 {
		t.Errorf("first designator %x: want binary NAA 3 (locally assigned), 8 bytes", id[:12])
	}
	t10 := id[12:]
	if t10[0]&0x0f != 2 || t10[1]&0x0f != 1 || !bytes.HasSuffix(t10[4:4+t10[3]], []byte("disk-1")) {
		t.Errorf("second designator %q: want T10 vendor ID ending in the serial", t10)
	}
	// The NAA is stable for the same identity and differs for another.
	again := NewLU(newMem(testSize, testBlockSize), LUInfo{Serial: "disk-1"})
	other := NewLU(newMem(testSize, testBlockSize), LUInfo{Serial: "disk-2"})
	if again.naa != l.naa || other.naa == l.naa {
		t.Errorf("NAA %x, same identity %x, other %x: want stable and distinct", l.naa, again.naa, other.naa)
	}
	if given := NewLU(newMem(testSize, testBlockSize), LUInfo{NAA: 0x6001405abcdef012}); given.naa != 0x6001405abcdef012 {
		t.Errorf("given NAA not used: %x", given.naa)
	}

	bl := vpd(t, l, 0xb0)
	be := binary.BigEndian
	if len(bl) != 64 || bl[4]&1 != 1 || be.Uint16(bl[6:]) != 128 || be.Uint32(bl[8:]) != MaxTransferBlocks ||
		be.Uint32(bl[20:]) != MaxUnmapBlocks || be.Uint32(bl[24:]) != MaxUnmapDescriptors ||
		be.Uint32(bl[28:]) != 128 || be.Uint32(bl[32:]) != 0x80000000 || be.Uint64(bl[36:]) != MaxWriteSameBlocks {
		t.Errorf("block limits %x: want WSNZ, granularity 128 (64 KiB), the unit's limits", bl)
	}
	if bc := vpd(t, l, 0xb1); be.Uint16(bc[4:]) != 1 {
		t.Errorf("rotation rate %x, want 1 (non-rotating)", bc[4:6])
	}
	if lbp := vpd(t, l, 0xb2); lbp[5] != 0xe4 || lbp[6]&7 != 2 {
		t.Errorf("provisioning %x: want LBPU LBPWS LBPWS10 LBPRZ, thin", lbp)
	}
	wantSense(t, "unknown VPD page", run(l, inquiryCDB(true, 0x86, 255), nil), invalidField)
}

// TestReadCapacity: last LBA and 512-byte blocks; READ CAPACITY(16) adds
// the disk block exponent and LBPME/LBPRZ.
func TestReadCapacity(t *testing.T) {
	l, _ := newTestLU(t)
	res := run(l, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil)
	wantSense(t, "rc10", res, goodStatus)
	if binary.BigEndian.Uint32(res.DataIn) != testBlocks-1 || binary.BigEndian.Uint32(res.DataIn[4:]) != 512 {
		t.Errorf("READ CAPACITY(10) %x", res.DataIn)
	}
	wantSense(t, "rc10 LBA without PMI", run(l, []byte{0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0}, nil), invalidField)

	rc16 := func(alloc uint32) Result {
		c := cdb16(0x9e, 0x10, 0, alloc)
		return run(l, c, nil)
	}
	res = rc16(32)
	wantSense(t, "rc16", res, goodStatus)
	d := res.DataIn
	if binary.BigEndian.Uint64(d) != testBlocks-1 || binary.BigEndian.Uint32(d[8:]) != 512 || d[12] != 0 || d[13] != 7 || d[14]&0xc0 != 0xc0 {
		t.Errorf("READ CAPACITY(16) %x: want exponent 7 (128 blocks of 512 in 64 KiB), LBPME, LBPRZ", d)
	}
	for alloc := uint32(0); alloc < 16; alloc++ {
		if r := rc16(alloc); r.Status != StatusGood || len(r.DataIn) != int(alloc) {
			t.Errorf("allocation length %d: status %#x, %d bytes", alloc, r.Status, len(r.DataIn))
		}
	}

	// A unit too big for READ CAPACITY(10) says all ones.
	huge := NewLU(&sizeOnly{size: 4 << 40}, LUInfo{})
	res = run(huge, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil)
	if binary.BigEndian.Uint32(res.DataIn) != 0xffffffff {
		t.Errorf("4 TiB unit: READ CAPACITY(10) %x, want ffffffff", res.DataIn[:4])
	}
}

// sizeOnly is a Backend with a size and nothing in it, for geometry.
type sizeOnly struct {
	memBackend
	size int64
}

func (s *sizeOnly) Size() int64      { return s.size }
func (s *sizeOnly) BlockSize() int64 { return 4096 }

// TestGetLBAStatus: one "mapped or unknown" descriptor from the LBA to
// the end; past the end is LBA OUT OF RANGE.
func TestGetLBAStatus(t *testing.T) {
	l, _ := newTestLU(t)
	res := run(l, cdb16(0x9e, 0x12, 100, 24), nil)
	wantSense(t, "get lba status", res, goodStatus)
	d := res.DataIn
	if len(d) != 24 || binary.BigEndian.Uint32(d) != 20 || binary.BigEndian.Uint64(d[8:]) != 100 ||
		binary.BigEndian.Uint32(d[16:]) != testBlocks-100 || d[20]&0x0f != 0 {
		t.Errorf("GET LBA STATUS %x", d)
	}
	for _, lba := range []uint64{testBlocks, testBlocks + 1, 1 << 63, ^uint64(0)} {
		wantSense(t, "past end", run(l, cdb16(0x9e, 0x12, lba, 24), nil), lbaOutOfRange)
	}
}
