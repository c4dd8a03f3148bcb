package scsi

import (
	"context"
	"encoding/binary"
)

// reportLUNs is REPORT LUNS sent to this unit: the target's LUNs from
// LUInfo. SELECT REPORT 00h and 02h list them; 01h (well-known LUNs)
// lists none, as there are none.
func reportLUNs(_ context.Context, l *LU, r request) ([]byte, error) {
	alloc := be32(r.cdb[6:10])
	if alloc < 16 {
		return nil, invalidCDBField(6, -1) // SPC-4: at least 16 bytes
	}
	luns := l.info.LUNs
	if luns == nil {
		luns = []uint64{0}
	}
	switch r.cdb[2] {
	case 0x00, 0x02:
	case 0x01:
		luns = []uint64{}
	default:
		return nil, invalidCDBField(2, -1)
	}
	return reportLUNsData(luns), nil
}

// ReportLUNs returns REPORT LUNS parameter data listing luns, cut to
// allocLen: for a transport that answers REPORT LUNS for a whole target
// (the command is addressed to the target, whatever LUN it names). LUNs
// below 256 use SAM's peripheral device addressing and those below 16384
// flat space addressing; a larger value is taken as an already-encoded
// 8-byte LUN.
func ReportLUNs(luns []uint64, allocLen int) []byte {
	return cut(reportLUNsData(luns), uint64(max(allocLen, 0)))
}

func reportLUNsData(luns []uint64) []byte {
	d := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(d[0:4], uint32(8*len(luns)))
	for i, lun := range luns {
		e := d[8+8*i:]
		switch {
		case lun < 256:
			e[1] = byte(lun)
		case lun < 16384:
			binary.BigEndian.PutUint16(e[0:2], 0x4000|uint16(lun))
		default:
			binary.BigEndian.PutUint64(e[0:8], lun)
		}
	}
	return d
}

// Reporting options of REPORT SUPPORTED OPERATION CODES.
const (
	reportAll        = 0 // every command
	reportOpcode     = 1 // one opcode without service actions
	reportServiceAct = 2 // one opcode and service action
	reportEither     = 3 // one opcode, with its service action if it has them
)

// reportOpcodes is REPORT SUPPORTED OPERATION CODES: the command table,
// all of it or one command with its CDB usage data. With RCTD every
// descriptor carries a command timeouts descriptor (timeouts 0: not
// specified).
func reportOpcodes(_ context.Context, l *LU, r request) ([]byte, error) {
	rctd := r.cdb[2]&0x80 != 0
	opts := r.cdb[2] & 0x07
	op, sa := r.cdb[3], int(be16(r.cdb[4:6]))
	alloc := be32(r.cdb[6:10])
	t := l.cmds
	var out []byte
	switch opts {
	case reportAll:
		out = make([]byte, 4)
		for _, c := range t.list {
			d := make([]byte, 8)
			d[0] = c.usage[0]
			if c.sa >= 0 {
				binary.BigEndian.PutUint16(d[2:4], uint16(c.sa))
				d[5] |= 0x01 // SERVACTV
			}
			binary.BigEndian.PutUint16(d[6:8], uint16(len(c.usage)))
			if rctd {
				d[5] |= 0x02 // CTDP
				d = append(d, timeoutsDescriptor()...)
			}
			out = append(out, d...)
		}
		binary.BigEndian.PutUint32(out[0:4], uint32(len(out)-4))
	case reportOpcode, reportServiceAct, reportEither:
		hasSA := t.hasSA[op]
		if opts == reportOpcode && hasSA || opts == reportServiceAct && !hasSA {
			return nil, invalidCDBField(2, 2)
		}
		c := t.find(op, sa)
		if hasSA && sa > 0x1f {
			c = nil
		}
		out = []byte{0, 0x01, 0, 0} // SUPPORT 001b: not supported
		if c != nil {
			out[1] = 0x03 // SUPPORT 011b: supported as the standard says
			binary.BigEndian.PutUint16(out[2:4], uint16(len(c.usage)))
			out = append(out, c.usage...)
			if rctd {
				out[1] |= 0x80 // CTDP
				out = append(out, timeoutsDescriptor()...)
			}
		}
	default:
		return nil, invalidCDBField(2, 2)
	}
	return cut(out, alloc), nil
}

// timeoutsDescriptor is a command timeouts descriptor with no nominal or
// recommended timeout: the unit's times depend on the mesh, not on it.
func timeoutsDescriptor() []byte {
	return []byte{0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
}
