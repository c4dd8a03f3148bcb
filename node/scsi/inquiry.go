package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
)

// VPD pages the unit has, in ascending order (Supported VPD Pages lists
// them so).
var vpdPages = []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}

// Version descriptors of the standard INQUIRY data: SAM-5, SPC-4, SBC-3
// and iSCSI, the standards the unit and its door follow.
var versionDescriptors = []uint16{0x00a0, 0x0460, 0x04c0, 0x0960}

// inquiry is INQUIRY: the standard data, or with EVPD a VPD page, cut to
// the allocation length.
func inquiry(_ context.Context, l *LU, r request) ([]byte, error) {
	alloc := be16(r.cdb[3:5])
	if r.cdb[1]&0x01 == 0 {
		if r.cdb[2] != 0 {
			return nil, invalidCDBField(2, -1) // a page code without EVPD
		}
		return cut(l.standardInquiry(), alloc), nil
	}
	var page []byte
	switch r.cdb[2] {
	case 0x00:
		page = vpdPages
	case 0x80:
		page = []byte(l.serial())
	case 0x83:
		page = l.deviceIdentification()
	case 0xb0:
		page = l.blockLimits()
	case 0xb1:
		page = make([]byte, 0x3c)
		page[1] = 0x01 // MEDIUM ROTATION RATE 0001h: non-rotating
	case 0xb2:
		page = l.provisioning()
	default:
		return nil, invalidCDBField(2, -1)
	}
	out := make([]byte, 4+len(page))
	out[1] = r.cdb[2]
	binary.BigEndian.PutUint16(out[2:4], uint16(len(page)))
	copy(out[4:], page)
	return cut(out, alloc), nil
}

// standardInquiry is the standard INQUIRY data: a direct-access block
// device, SPC-4, not removable, with command queuing and hierarchical
// LUN addressing.
func (l *LU) standardInquiry() []byte {
	d := make([]byte, 66+2*len(versionDescriptors))
	d[0] = 0x00 // connected, direct-access block device
	d[2] = 0x06 // SPC-4
	d[3] = 0x12 // HISUP, response data format 2
	d[4] = byte(len(d) - 5)
	d[7] = 0x02 // CMDQUE: commands may be in flight together
	copy(d[8:16], pad(l.info.Vendor, 8))
	copy(d[16:32], pad(l.info.Product, 16))
	copy(d[32:36], pad(l.info.Revision, 4))
	for i, v := range versionDescriptors {
		binary.BigEndian.PutUint16(d[58+2*i:], v)
	}
	return d
}

// pad fits s to n printable ASCII characters, space-padded: INQUIRY's
// text fields allow 0x20-0x7e only.
func pad(s string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
		if i < len(s) && s[i] >= 0x20 && s[i] <= 0x7e {
			b[i] = s[i]
		}
	}
	return b
}

// serial is the unit serial number: LUInfo.Serial's printable characters,
// or the NAA designator in hex when there are none.
func (l *LU) serial() string {
	var b []byte
	for i := 0; i < len(l.info.Serial); i++ {
		if c := l.info.Serial[i]; c > 0x20 && c <= 0x7e {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return fmt.Sprintf("%016x", l.naa)
	}
	return string(b)
}

// deviceIdentification is the Device Identification VPD page's
// designators: the NAA (binary) and a T10 vendor ID (vendor, product and
// serial, ASCII), both naming the logical unit.
func (l *LU) deviceIdentification() []byte {
	naa := []byte{0x01, 0x03, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0} // binary, LU, NAA
	binary.BigEndian.PutUint64(naa[4:], l.naa)
	t10 := append(append(pad(l.info.Vendor, 8), pad(l.info.Product, 16)...), l.serial()...)
	return append(naa, append([]byte{0x02, 0x01, 0, byte(len(t10))}, t10...)...)
}

// blockLimits is the Block Limits VPD page (SBC-3 6.5.3): the transfer,
// unmap and write-same limits the unit enforces, and the disk's block
// size as the optimal transfer and unmap granularity.
func (l *LU) blockLimits() []byte {
	p := make([]byte, 0x3c)
	p[0] = 0x01 // WSNZ: WRITE SAME of 0 blocks (to the end) is refused
	p[1] = MaxCompareAndWriteBlocks
	binary.BigEndian.PutUint16(p[2:4], uint16(l.lbppb()))
	binary.BigEndian.PutUint32(p[4:8], MaxTransferBlocks)
	binary.BigEndian.PutUint32(p[16:20], MaxUnmapBlocks)
	binary.BigEndian.PutUint32(p[20:24], MaxUnmapDescriptors)
	binary.BigEndian.PutUint32(p[24:28], l.lbppb())
	binary.BigEndian.PutUint32(p[28:32], 0x80000000) // UGAVALID, alignment 0
	binary.BigEndian.PutUint64(p[32:40], MaxWriteSameBlocks)
	return p
}

// provisioning is the Logical Block Provisioning VPD page: thin, with
// UNMAP, WRITE SAME(16) and WRITE SAME(10) unmapping, and unmapped blocks
// reading as zeros (LBPRZ).
func (l *LU) provisioning() []byte {
	return []byte{0, 0xe4, 0x02, 0}
}

// readCapacity10 is READ CAPACITY(10): the last LBA (all ones when it
// does not fit, which sends the initiator to READ CAPACITY(16)) and the
// block length. PMI asks for the last LBA before a delay: there is none,
// so it is answered the same.
func readCapacity10(_ context.Context, l *LU, r request) ([]byte, error) {
	if r.cdb[8]&0x01 == 0 && be32(r.cdb[2:6]) != 0 {
		return nil, invalidCDBField(2, -1) // an LBA without PMI
	}
	d := make([]byte, 8)
	binary.BigEndian.PutUint32(d[0:4], uint32(min(l.lastLBA(), 0xffffffff)))
	binary.BigEndian.PutUint32(d[4:8], LogicalBlockSize)
	return d, nil
}

// lastLBA is the address of the last logical block (0 for an empty unit,
// which has none, as the field cannot say so).
func (l *LU) lastLBA() uint64 {
	if l.blocks == 0 {
		return 0
	}
	return l.blocks - 1
}

// readCapacity16 is READ CAPACITY(16): also the disk block exponent and
// thin provisioning (LBPME, LBPRZ); no protection information.
func readCapacity16(_ context.Context, l *LU, r request) ([]byte, error) {
	d := make([]byte, 32)
	binary.BigEndian.PutUint64(d[0:8], l.lastLBA())
	binary.BigEndian.PutUint32(d[8:12], LogicalBlockSize)
	d[13] = l.lbppbExp
	d[14] = 0xc0 // LBPME, LBPRZ; lowest aligned LBA 0
	return cut(d, be32(r.cdb[10:14])), nil
}

// getLBAStatus is GET LBA STATUS: one descriptor from the LBA asked, as
// "mapped or unknown", the only status always true since a Backend does
// not say which blocks it holds.
func getLBAStatus(_ context.Context, l *LU, r request) ([]byte, error) {
	lba := be64(r.cdb[2:10])
	if lba >= l.blocks {
		return nil, senseLBAOutOfRange
	}
	d := make([]byte, 24)
	binary.BigEndian.PutUint32(d[0:4], 20)
	binary.BigEndian.PutUint64(d[8:16], lba)
	binary.BigEndian.PutUint32(d[16:20], uint32(min(l.blocks-lba, 0xffffffff)))
	return cut(d, be32(r.cdb[10:14])), nil
}
