package torture

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
)

// SlotSize is the unit the writers write and the checker checks: every
// write covers one whole slot at a slot-aligned offset. It is smaller than
// every disk block size, so a disk block holds several slots and a write
// is a read-modify-write inside weft.
const SlotSize = 4096

// slotMagic opens every slot a writer wrote.
var slotMagic = []byte("WEFTTORT")

// headerLen is the magic, disk, writer, seq and slot of a slot's content;
// the rest is the SHA-256 of the header, repeated.
const headerLen = 8 + 4 + 4 + 8 + 8

// WriteID names one write: the writer that issued it and its sequence
// number in that writer (from 1, in issue order).
type WriteID struct {
	Writer int
	Seq    uint64
}

// SlotContent is what writer w puts in slot of disk for its write seq: a
// header naming all four and the header's SHA-256 repeated to fill the
// slot, so that a torn, stale or foreign slot is told apart from every
// write. writer.py computes the same bytes.
func SlotContent(disk int, id WriteID, slot int64) []byte {
	b := make([]byte, SlotSize)
	copy(b, slotMagic)
	binary.LittleEndian.PutUint32(b[8:], uint32(disk))
	binary.LittleEndian.PutUint32(b[12:], uint32(id.Writer))
	binary.LittleEndian.PutUint64(b[16:], id.Seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(slot))
	sum := sha256.Sum256(b[:headerLen])
	for off := headerLen; off < SlotSize; off += len(sum) {
		copy(b[off:], sum[:])
	}
	return b
}

// slotState is what a slot read back holds.
type slotState int

const (
	slotZero    slotState = iota // never written (or written zeros)
	slotWrite                    // a well-formed write, named by decodeSlot
	slotGarbage                  // neither: torn, foreign or damaged
)

// decodeSlot says what b, one slot read from a disk, holds and, for a
// well-formed write, which disk, write and slot its header names.
func decodeSlot(b []byte) (state slotState, disk int, id WriteID, slot int64) {
	if isZero(b) {
		return slotZero, 0, WriteID{}, 0
	}
	if len(b) != SlotSize || !bytes.Equal(b[:8], slotMagic) {
		return slotGarbage, 0, WriteID{}, 0
	}
	sum := sha256.Sum256(b[:headerLen])
	for off := headerLen; off < SlotSize; off += len(sum) {
		if !bytes.Equal(b[off:min(off+len(sum), SlotSize)], sum[:min(len(sum), SlotSize-off)]) {
			return slotGarbage, 0, WriteID{}, 0
		}
	}
	disk = int(binary.LittleEndian.Uint32(b[8:]))
	id = WriteID{Writer: int(binary.LittleEndian.Uint32(b[12:])), Seq: binary.LittleEndian.Uint64(b[16:])}
	slot = int64(binary.LittleEndian.Uint64(b[24:]))
	return slotWrite, disk, id, slot
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
