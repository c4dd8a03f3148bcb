package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
)

// Mode pages the unit has, in the order MODE SENSE's all-pages answer
// lists them. None is changeable, so MODE SELECT only accepts the
// current values back.
const (
	pageCaching             = 0x08
	pageControl             = 0x0a
	pageInformationalExcept = 0x1c
	pageAll                 = 0x3f
	modeDeviceWriteProtect  = 0x80 // device-specific parameter: WP
	modeDeviceDPOFUA        = 0x10 // device-specific parameter: DPO and FUA supported
	pageControlCurrent      = 0
	pageControlChangeable   = 1
	pageControlDefault      = 2
	pageControlSaved        = 3
	subpageAll              = 0xff
)

// modePage returns a mode page's current values, or nil for a page the
// unit does not have.
func modePage(code byte) []byte {
	switch code {
	case pageCaching:
		// WCE: writes are cached until SYNCHRONIZE CACHE (Backend.Flush)
		// or FUA, which is what the backend does.
		p := make([]byte, 20)
		p[0], p[1], p[2] = pageCaching, 18, 0x04
		return p
	case pageControl:
		// QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering: the
		// backend orders nothing between commands in flight), D_SENSE 0
		// (fixed-format sense), no software write protect.
		p := make([]byte, 12)
		p[0], p[1], p[3] = pageControl, 10, 0x10
		return p
	case pageInformationalExcept:
		// DEXCPT: no informational exception reporting (there is no
		// failure prediction to report).
		p := make([]byte, 12)
		p[0], p[1], p[2] = pageInformationalExcept, 10, 0x08
		return p
	}
	return nil
}

var allModePages = []byte{pageCaching, pageControl, pageInformationalExcept}

// modePages returns the pages MODE SENSE asked for (page code and
// subpage code fields at cdb[2] and cdb[3]), with page control pc:
// current and default values are the same, changeable values all zeros.
func modePages(cdb []byte) ([]byte, error) {
	pc, code, sub := cdb[2]>>6, cdb[2]&0x3f, cdb[3]
	if pc == pageControlSaved {
		return nil, senseSavingNotSupported
	}
	codes := []byte{code}
	if code == pageAll {
		codes = allModePages
	}
	// Subpage 0 is the page itself; FFh with a page asks for all its
	// subpages, and the unit has no subpages beyond subpage 0.
	if sub != 0 && sub != subpageAll {
		return nil, invalidCDBField(3, -1)
	}
	var out []byte
	for _, c := range codes {
		p := modePage(c)
		if p == nil {
			return nil, invalidCDBField(2, 5)
		}
		if pc == pageControlChangeable {
			clear(p[2:])
		}
		out = append(out, p...)
	}
	return out, nil
}

// deviceSpecific is the mode parameter header's device-specific byte.
func (l *LU) deviceSpecific() byte {
	b := byte(modeDeviceDPOFUA)
	if l.readOnly {
		b |= modeDeviceWriteProtect
	}
	return b
}

// modeSense6 is MODE SENSE(6): a 4-byte header, an 8-byte block
// descriptor unless DBD, then the pages.
func modeSense6(_ context.Context, l *LU, r request) ([]byte, error) {
	pages, err := modePages(r.cdb)
	if err != nil {
		return nil, err
	}
	var desc []byte
	if r.cdb[1]&0x08 == 0 {
		desc = make([]byte, 8)
		binary.BigEndian.PutUint32(desc[0:4], uint32(min(l.blocks, 0xffffffff)))
		binary.BigEndian.PutUint32(desc[4:8], LogicalBlockSize) // byte 4 reserved, 5-7 block length
	}
	out := []byte{0, 0, l.deviceSpecific(), byte(len(desc))}
	out = append(append(out, desc...), pages...)
	out[0] = byte(min(len(out)-1, 0xff))
	return cut(out, uint64(r.cdb[4])), nil
}

// modeSense10 is MODE SENSE(10): an 8-byte header, a block descriptor
// unless DBD (16 bytes with LLBAA, else 8), then the pages.
func modeSense10(_ context.Context, l *LU, r request) ([]byte, error) {
	pages, err := modePages(r.cdb)
	if err != nil {
		return nil, err
	}
	var desc []byte
	long := r.cdb[1]&0x10 != 0
	if r.cdb[1]&0x08 == 0 {
		if long {
			desc = make([]byte, 16)
			binary.BigEndian.PutUint64(desc[0:8], l.blocks)
			binary.BigEndian.PutUint32(desc[12:16], LogicalBlockSize)
		} else {
			desc = make([]byte, 8)
			binary.BigEndian.PutUint32(desc[0:4], uint32(min(l.blocks, 0xffffffff)))
			binary.BigEndian.PutUint32(desc[4:8], LogicalBlockSize)
		}
	}
	out := make([]byte, 8, 8+len(desc)+len(pages))
	out[3] = l.deviceSpecific()
	if long && desc != nil {
		out[4] = 0x01 // LONGLBA
	}
	binary.BigEndian.PutUint16(out[6:8], uint16(len(desc)))
	out = append(append(out, desc...), pages...)
	binary.BigEndian.PutUint16(out[0:2], uint16(len(out)-2))
	return cut(out, be16(r.cdb[7:9])), nil
}

func modeSelect6(_ context.Context, l *LU, r request) ([]byte, error) {
	return nil, l.modeSelect(r, uint64(r.cdb[4]), 4)
}

func modeSelect10(_ context.Context, l *LU, r request) ([]byte, error) {
	return nil, l.modeSelect(r, be16(r.cdb[7:9]), 8)
}

// modeSelect is MODE SELECT: nothing is changeable, so a parameter list
// is accepted when it sets every field to its current value (what an
// initiator that read the page and wrote it back sends) and refused with
// INVALID FIELD IN PARAMETER LIST otherwise. SP (save) is refused: there
// is nothing to save.
func (l *LU) modeSelect(r request, n uint64, header int) error {
	if r.cdb[1]&0x01 != 0 {
		return invalidCDBField(1, 0)
	}
	if n == 0 {
		return nil
	}
	if n < uint64(header) {
		return senseParamListLength
	}
	p, err := data(r.dataOut, int64(n))
	if err != nil {
		return err
	}
	var descLen int
	if header == 4 {
		descLen = int(p[3])
	} else {
		descLen = int(be16(p[6:8]))
	}
	if header+descLen > len(p) {
		return senseParamListLength
	}
	if err := l.checkBlockDescriptors(p[header:header+descLen], header, header == 8 && p[4]&0x01 != 0); err != nil {
		return err
	}
	for off := header + descLen; off < len(p); {
		if len(p)-off < 2 {
			return senseParamListLength
		}
		code := p[off] & 0x3f
		if p[off]&0x40 != 0 { // SPF: a subpage, and the unit has none
			return invalidParamField(off)
		}
		cur := modePage(code)
		end := off + 2 + int(p[off+1])
		if cur == nil || end > len(p) || end-off != len(cur) {
			return invalidParamField(off)
		}
		got := append([]byte{code}, p[off+1:end]...) // PS is reserved in MODE SELECT
		if !bytes.Equal(got, cur) {
			for i := range got {
				if got[i] != cur[i] {
					return invalidParamField(off + i)
				}
			}
		}
		off = end
	}
	return nil
}

// checkBlockDescriptors accepts block descriptors that restate the
// unit's block length (or leave it 0) and its block count (or 0).
func (l *LU) checkBlockDescriptors(d []byte, at int, long bool) error {
	size := 8
	if long {
		size = 16
	}
	if len(d)%size != 0 {
		return senseParamListLength
	}
	for i := 0; i < len(d); i += size {
		var count, length uint64
		if long {
			count, length = be64(d[i:i+8]), be32(d[i+12:i+16])
		} else {
			count, length = be32(d[i:i+4]), be24(d[i+5:i+8])
		}
		if length != 0 && length != LogicalBlockSize {
			return invalidParamField(at + i + size - 3)
		}
		if count != 0 && count != l.blocks && !(count == 0xffffffff && !long && l.blocks > 0xffffffff) {
			return invalidParamField(at + i)
		}
	}
	return nil
}
