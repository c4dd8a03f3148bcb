package iscsi

import (
	"bytes"
	"testing"
)

// A write whose EDTL differs from its CDB's transfer length: the target
// asks (R2T) for no more than the CDB transfers, writes no more than the
// CDB says, and answers with the residual (RFC 7143 section 11.4.5.1):
// an EDTL over the CDB's length is an underflow by the excess, which is
// never solicited (a review found the target asking for, and holding,
// all of the EDTL); one short of it an overflow, writing only the whole
// blocks the EDTL covers.
func TestWriteResiduals(t *testing.T) {
	in, disk := fullFeature(t, offer) // InitialR2T=Yes: every byte is asked for
	fill := bytes.Repeat([]byte{0x11}, 8*512)
	copy(disk.data, fill)
	for _, c := range []struct {
		name     string
		blocks   uint16 // the CDB's transfer length
		edtl     int
		asked    int // bytes the R2Ts ask for, in all
		written  int // bytes the disk takes
		flag     byte
		residual int
	}{
		{"EDTL over the CDB", 1, 8192, 512, 512, 0x02, 8192 - 512},
		{"EDTL short of the CDB", 4, 1024 + 100, 1124, 1024, 0x04, 4*512 - 1124},
		{"EDTL equal to the CDB", 2, 1024, 1024, 1024, 0, 0},
	} {
		copy(disk.data, fill)
		data := bytes.Repeat([]byte{0xee}, c.edtl)
		itt := in.scsiCmd(cdb10(0x2a, 0, c.blocks), false, true, c.edtl, nil, true)
		asked := 0
		var r *pdu
		for {
			r = in.recv()
			if r.opcode() != opR2T {
				break
			}
			off, n := int(r.u32(40)), int(r.u32(44))
			asked += n
			for sn := 0; n > 0; sn++ {
				k := min(n, 8192)
				in.dataOut(itt, r.u32(20), uint32(sn), off, data[off:off+k], k == n)
				off, n = off+k, n-k
			}
		}
		if asked != c.asked {
			t.Errorf("%s: got R2Ts for %d bytes, want %d", c.name, asked, c.asked)
		}
		if r.opcode() != opSCSIResp || r.itt() != itt || r.bhs[3] != 0 {
			t.Fatalf("%s: got opcode %#x itt %d status %#x, want GOOD for %d", c.name, r.opcode(), r.itt(), r.bhs[3], itt)
		}
		if got := r.flags() & 0x06; got != c.flag || int(r.u32(44)) != c.residual {
			t.Errorf("%s: got flags %#x residual %d, want flags %#x residual %d", c.name, got, r.u32(44), c.flag, c.residual)
		}
		want := append(bytes.Repeat([]byte{0xee}, c.written), fill[c.written:]...)
		if got := disk.at(0, len(fill)); !bytes.Equal(got, want) {
			t.Errorf("%s: the disk took %d bytes, want %d", c.name, bytes.Count(got, []byte{0xee}), c.written)
		}
	}
}
