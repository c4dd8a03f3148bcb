package iscsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Opcodes (RFC 7143 section 11.1), initiator then target.
const (
	opNopOut      = 0x00
	opSCSICmd     = 0x01
	opTaskMgmt    = 0x02
	opLoginReq    = 0x03
	opTextReq     = 0x04
	opDataOut     = 0x05
	opLogoutReq   = 0x06
	opSNACK       = 0x10
	opNopIn       = 0x20
	opSCSIResp    = 0x21
	opTaskMgmtRsp = 0x22
	opLoginResp   = 0x23
	opTextResp    = 0x24
	opDataIn      = 0x25
	opLogoutResp  = 0x26
	opR2T         = 0x31
	opReject      = 0x3f
)

const (
	bhsLen = 48
	// reservedTag is the "no tag" value of ITTs and TTTs.
	reservedTag = 0xffffffff
)

var (
	errDigest   = errors.New("iscsi: digest mismatch")
	errTooLarge = errors.New("iscsi: data segment larger than negotiated")
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// pdu is one protocol data unit: the basic header segment, the
// additional header segments and the data segment (unpadded).
type pdu struct {
	bhs  [bhsLen]byte
	ahs  []byte
	data []byte
	// pooled holds data from readBuffers: the reader returns it once the
	// PDU is handled (handlers copy what they keep).
	pooled *[]byte
}

func (p *pdu) opcode() byte      { return p.bhs[0] & 0x3f }
func (p *pdu) immediate() bool   { return p.bhs[0]&0x40 != 0 }
func (p *pdu) final() bool       { return p.bhs[1]&0x80 != 0 }
func (p *pdu) flags() byte       { return p.bhs[1] }
func (p *pdu) lun() uint64       { return binary.BigEndian.Uint64(p.bhs[8:16]) }
func (p *pdu) itt() uint32       { return p.u32(16) }
func (p *pdu) u32(at int) uint32 { return binary.BigEndian.Uint32(p.bhs[at : at+4]) }
func (p *pdu) put32(at int, v uint32) {
	binary.BigEndian.PutUint32(p.bhs[at:at+4], v)
}

// newPDU starts a target PDU with its opcode, flags and initiator task tag.
func newPDU(op, flags byte, itt uint32) *pdu {
	p := &pdu{}
	p.bhs[0] = op
	p.bhs[1] = flags
	p.put32(16, itt)
	return p
}

// digests says which CRC32C digests a connection uses.
type digests struct{ header, data bool }

func pad4(n int) int { return (4 - n%4) % 4 }

// readPDU reads one PDU, refusing a data segment longer than maxData and
// checking the negotiated digests.
func readPDU(r io.Reader, maxData int, d digests) (*pdu, error) {
	p := &pdu{}
	if _, err := io.ReadFull(r, p.bhs[:]); err != nil {
		return nil, err
	}
	ahsLen := int(p.bhs[4]) * 4
	dataLen := int(p.bhs[5])<<16 | int(p.bhs[6])<<8 | int(p.bhs[7])
	if dataLen > maxData {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, dataLen, maxData)
	}
	if ahsLen > 0 {
		p.ahs = make([]byte, ahsLen)
		if _, err := io.ReadFull(r, p.ahs); err != nil {
			return nil, err
		}
	}
	if d.header {
		var sum [4]byte
		if _, err := io.ReadFull(r, sum[:]); err != nil {
			return nil, err
		}
		crc := crc32.Update(crc32.Checksum(p.bhs[:], castagnoli), castagnoli, p.ahs)
		if binary.LittleEndian.Uint32(sum[:]) != crc {
			return nil, fmt.Errorf("header: %w", errDigest)
		}
	}
	if dataLen > 0 {
		var buf []byte
		if n := dataLen + pad4(dataLen); n >= minPooled {
			p.pooled = getBuffer(n)
			buf = (*p.pooled)[:n]
		} else {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if d.data {
			var sum [4]byte
			if _, err := io.ReadFull(r, sum[:]); err != nil {
				return nil, err
			}
			if binary.LittleEndian.Uint32(sum[:]) != crc32.Checksum(buf, castagnoli) {
				p.data = buf[:dataLen]
				return p, fmt.Errorf("data: %w", errDigest)
			}
		}
		p.data = buf[:dataLen]
	}
	return p, nil
}

// encodeHeader appends the BHS, AHS and header digest, with the data
// segment's length set from p.data.
func (p *pdu) encodeHeader(b []byte, d digests) []byte {
	n := len(p.data)
	p.bhs[4] = byte(len(p.ahs) / 4)
	p.bhs[5], p.bhs[6], p.bhs[7] = byte(n>>16), byte(n>>8), byte(n)
	start := len(b)
	b = append(b, p.bhs[:]...)
	b = append(b, p.ahs...)
	if d.header {
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
	}
	return b
}

// appendTrailer appends what follows the data segment: its padding and
// data digest.
func (p *pdu) appendTrailer(b []byte, d digests) []byte {
	var zero [3]byte
	pad := zero[:pad4(len(p.data))]
	b = append(b, pad...)
	if d.data {
		crc := crc32.Update(crc32.Checksum(p.data, castagnoli), castagnoli, pad)
		b = binary.LittleEndian.AppendUint32(b, crc)
	}
	return b
}
