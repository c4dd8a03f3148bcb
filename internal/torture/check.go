package torture

import (
	"fmt"
	"io"
)

// SlotRead is what one slot of a disk read back held.
type SlotRead struct {
	State slotState
	// Disk, ID and Slot are what the header of a well-formed write names.
	Disk int
	ID   WriteID
	Slot int64
}

// DiskRead is a disk's content read from one place: a node's head or a
// fenced replica.
type DiskRead struct {
	Where string
	Slots []SlotRead
}

// ReadSlots decodes the first nslots slots of a disk image.
func ReadSlots(r io.ReaderAt, nslots int64) ([]SlotRead, error) {
	out := make([]SlotRead, nslots)
	buf := make([]byte, SlotSize)
	for i := range nslots {
		if _, err := r.ReadAt(buf, i*SlotSize); err != nil {
			return nil, fmt.Errorf("read slot %d: %w", i, err)
		}
		st, disk, id, slot := decodeSlot(buf)
		out[i] = SlotRead{State: st, Disk: disk, ID: id, Slot: slot}
	}
	return out, nil
}

// DiskCheck is everything known about one disk at the end of a run: its
// writes from the log, its head as read from every node, and the fenced
// replicas its fenced owners kept.
type DiskCheck struct {
	Disk   int
	Writes []Write
	Heads  []DiskRead
	Fenced []DiskRead
	// Unreadable describes the fenced replicas that could not be read:
	// Check counts each (and what only they kept counts as lost).
	Unreadable []string
}

// Result is what Check found.
type Result struct {
	// Acked counts the acknowledged writes.
	Acked int
	// Lost counts slots whose last acknowledged write no head holds (nor
	// a later one) and no fenced replica keeps.
	Lost int
	// Corrupt counts slot reads (heads and fenced replicas) that hold
	// none of the writes issued to that slot, nor zeros.
	Corrupt int
	// Unreadable counts the fenced replicas that could not be read.
	Unreadable int
	// KeptFenced counts slots whose last acknowledged write the head lost
	// to a take but a fenced replica keeps, as weft promises.
	KeptFenced int
	// Problems describes the first lost and corrupt slots and unreadable
	// fenced replicas.
	Problems []string
}

// maxProblems bounds Result.Problems.
const maxProblems = 20

func (r *Result) problem(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check compares every slot read against the write log. Each slot must
// hold its last acknowledged write or a write issued after it; zeros only
// while no write to it was acknowledged; never anything else. A slot whose
// head lost its last acknowledged write is not lost when a fenced replica
// holds that write or a later one: the write was acknowledged by an owner
// that was then fenced. Check is pure.
func Check(disks []DiskCheck) Result {
	var res Result
	for _, d := range disks {
		checkDisk(&res, d)
	}
	return res
}

func checkDisk(res *Result, d DiskCheck) {
	for _, u := range d.Unreadable {
		res.Unreadable++
		res.problem("disk %d: a fenced replica cannot be read: %s", d.Disk, u)
	}
	byID := make(map[WriteID]Write, len(d.Writes))
	lastAcked := make(map[int64]Write)
	for _, w := range d.Writes {
		byID[w.ID] = w
		if w.Acked {
			res.Acked++
			if prev, ok := lastAcked[w.Slot]; !ok || w.Order > prev.Order {
				lastAcked[w.Slot] = w
			}
		}
	}
	nslots := int64(0)
	for _, r := range append(append([]DiskRead(nil), d.Heads...), d.Fenced...) {
		nslots = max(nslots, int64(len(r.Slots)))
	}
	for slot := range nslots {
		want, wantAny := lastAcked[slot]
		lostIn := ""
		for _, r := range d.Heads {
			if judge(res, d, byID, r, slot, want, wantAny) == older && lostIn == "" {
				lostIn = r.Where
			}
		}
		kept := false
		for _, r := range d.Fenced {
			// Every fenced replica is checked for corruption; any one of
			// them may keep the write the head lost.
			if judge(res, d, byID, r, slot, want, wantAny) == holds && wantAny {
				kept = true
			}
		}
		switch {
		case lostIn == "":
		case kept:
			res.KeptFenced++
		default:
			res.Lost++
			res.problem("disk %d slot %d (%s): lost acknowledged write writer %d seq %d (acked on %s); reads %s",
				d.Disk, slot, lostIn, want.ID.Writer, want.ID.Seq, want.Node, describe(d, lostIn, slot))
		}
	}
}

// verdict is what one read of a slot holds against its last acknowledged
// write.
type verdict int

const (
	holds   verdict = iota // that write, a later one, or zeros with none acknowledged
	older                  // zeros or an earlier write: the acknowledged write is not there
	corrupt                // anything never issued to this slot
)

// judge says what read r holds at slot, want being its last acknowledged
// write (wantAny false: none), and counts a corrupt read in res.
func judge(res *Result, d DiskCheck, byID map[WriteID]Write, r DiskRead, slot int64, want Write, wantAny bool) verdict {
	if slot >= int64(len(r.Slots)) {
		res.Corrupt++
		res.problem("disk %d slot %d (%s): beyond the %d slots read", d.Disk, slot, r.Where, len(r.Slots))
		return corrupt
	}
	s := r.Slots[slot]
	switch s.State {
	case slotZero:
		if wantAny {
			return older
		}
		return holds
	case slotGarbage:
		res.Corrupt++
		res.problem("disk %d slot %d (%s): garbage (torn or damaged)", d.Disk, slot, r.Where)
		return corrupt
	}
	w, issued := byID[s.ID]
	if s.Disk != d.Disk || s.Slot != slot || !issued || w.Slot != slot {
		res.Corrupt++
		res.problem("disk %d slot %d (%s): foreign content (disk %d writer %d seq %d slot %d)",
			d.Disk, slot, r.Where, s.Disk, s.ID.Writer, s.ID.Seq, s.Slot)
		return corrupt
	}
	if wantAny && w.Order < want.Order {
		return older
	}
	return holds
}

// describe says what the read named where holds at slot.
func describe(d DiskCheck, where string, slot int64) string {
	for _, r := range d.Heads {
		if r.Where != where {
			continue
		}
		s := r.Slots[slot]
		if s.State == slotZero {
			return "zeros"
		}
		return fmt.Sprintf("writer %d seq %d", s.ID.Writer, s.ID.Seq)
	}
	return "?"
}
