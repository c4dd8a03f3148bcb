package torture

import (
	"bytes"
	"testing"
)

// w is a hand-made logged write of writer 0 to disk 0.
func w(seq uint64, slot int64, acked bool) Write {
	return Write{ID: WriteID{Seq: seq}, Slot: slot, Node: "n0", Order: int64(seq), Replied: acked, Acked: acked}
}

// read is a hand-made read of a disk of len(slots) slots: -1 is zeros,
// -2 garbage, else the seq of writer 0's write held there.
func read(where string, slots ...int) DiskRead {
	r := DiskRead{Where: where}
	for i, s := range slots {
		switch s {
		case -1:
			r.Slots = append(r.Slots, SlotRead{State: slotZero})
		case -2:
			r.Slots = append(r.Slots, SlotRead{State: slotGarbage})
		default:
			r.Slots = append(r.Slots, SlotRead{State: slotWrite, ID: WriteID{Seq: uint64(s)}, Slot: int64(i)})
		}
	}
	return r
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		d    DiskCheck
		want Result
	}{
		{"acked write held", DiskCheck{Writes: []Write{w(1, 0, true)}, Heads: []DiskRead{read("a", 1, -1)}},
			Result{Acked: 1}},
		{"zeros before any write", DiskCheck{Heads: []DiskRead{read("a", -1, -1)}}, Result{}},
		{"zeros after an unacknowledged write", DiskCheck{Writes: []Write{w(1, 0, false)}, Heads: []DiskRead{read("a", -1)}},
			Result{}},
		{"lost: zeros after an acknowledged write", DiskCheck{Writes: []Write{w(1, 0, true)}, Heads: []DiskRead{read("a", -1)}},
			Result{Acked: 1, Lost: 1}},
		{"lost: an older write", DiskCheck{Writes: []Write{w(1, 0, true), w(2, 0, true)}, Heads: []DiskRead{read("a", 1)}},
			Result{Acked: 2, Lost: 1}},
		{"lost on one node of two", DiskCheck{Writes: []Write{w(1, 0, true), w(2, 0, true)},
			Heads: []DiskRead{read("a", 2), read("b", 1)}}, Result{Acked: 2, Lost: 1}},
		{"a later unacknowledged write over an acknowledged one", DiskCheck{Writes: []Write{w(1, 0, true), w(2, 0, false)},
			Heads: []DiskRead{read("a", 2)}}, Result{Acked: 1}},
		{"an earlier acknowledged write under an unacknowledged one", DiskCheck{Writes: []Write{w(1, 0, true), w(2, 0, false)},
			Heads: []DiskRead{read("a", 1)}}, Result{Acked: 1}},
		{"torn slot", DiskCheck{Writes: []Write{w(1, 0, true)}, Heads: []DiskRead{read("a", -2)}},
			Result{Acked: 1, Corrupt: 1}},
		{"a write never issued", DiskCheck{Writes: []Write{w(1, 0, true)}, Heads: []DiskRead{read("a", 7)}},
			Result{Acked: 1, Corrupt: 1}},
		{"a write issued to another slot", DiskCheck{Writes: []Write{w(1, 1, true)},
			Heads: []DiskRead{{Where: "a", Slots: []SlotRead{{State: slotWrite, ID: WriteID{Seq: 1}, Slot: 1}, {State: slotZero}}}}},
			Result{Acked: 1, Corrupt: 1, Lost: 1}},
		{"a write of another disk", DiskCheck{Disk: 1, Writes: []Write{{Disk: 1, ID: WriteID{Seq: 1}, Order: 1}},
			Heads: []DiskRead{read("a", 1)}}, Result{Corrupt: 1}},
		{"acked by a fenced owner, kept in its fenced replica", DiskCheck{Writes: []Write{w(1, 0, true), w(2, 0, true)},
			Heads: []DiskRead{read("a", 1)}, Fenced: []DiskRead{read("fenced", 2)}}, Result{Acked: 2, KeptFenced: 1}},
		{"acked by a fenced owner, missing from its fenced replica", DiskCheck{Writes: []Write{w(1, 0, true), w(2, 0, true)},
			Heads: []DiskRead{read("a", 1)}, Fenced: []DiskRead{read("fenced", 1)}}, Result{Acked: 2, Lost: 1}},
		{"a corrupt fenced replica", DiskCheck{Writes: []Write{w(1, 0, true)},
			Heads: []DiskRead{read("a", 1)}, Fenced: []DiskRead{read("fenced", -2)}}, Result{Acked: 1, Corrupt: 1}},
		{"an unreadable fenced replica, its writes in the head", DiskCheck{Writes: []Write{w(1, 0, true)},
			Heads: []DiskRead{read("a", 1)}, Unreadable: []string{"export vm@fenced-e2: block 71 lost"}}, Result{Acked: 1, Unreadable: 1}},
		{"a short read", DiskCheck{Heads: []DiskRead{read("a", -1, -1), read("b", -1)}}, Result{Corrupt: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check([]DiskCheck{tt.d})
			if got.Acked != tt.want.Acked || got.Lost != tt.want.Lost || got.Corrupt != tt.want.Corrupt || got.KeptFenced != tt.want.KeptFenced ||
				got.Unreadable != tt.want.Unreadable {
				t.Fatalf("got acked %d lost %d corrupt %d kept %d unreadable %d (%q), want %d %d %d %d %d", got.Acked, got.Lost, got.Corrupt,
					got.KeptFenced, got.Unreadable, got.Problems, tt.want.Acked, tt.want.Lost, tt.want.Corrupt, tt.want.KeptFenced, tt.want.Unreadable)
			}
		})
	}
}

// TestReadSlots decodes what SlotContent writes, and tells damage and
// zeros apart.
func TestReadSlots(t *testing.T) {
	img := make([]byte, 4*SlotSize)
	copy(img[0:], SlotContent(3, WriteID{Writer: 1, Seq: 9}, 0))
	copy(img[2*SlotSize:], SlotContent(3, WriteID{Writer: 2, Seq: 5}, 2))
	torn := SlotContent(3, WriteID{Writer: 2, Seq: 6}, 3)
	copy(torn[SlotSize/2:], make([]byte, SlotSize/2))
	copy(img[3*SlotSize:], torn)
	got, err := ReadSlots(bytes.NewReader(img), 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []SlotRead{
		{State: slotWrite, Disk: 3, ID: WriteID{Writer: 1, Seq: 9}, Slot: 0},
		{State: slotZero},
		{State: slotWrite, Disk: 3, ID: WriteID{Writer: 2, Seq: 5}, Slot: 2},
		{State: slotGarbage},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("slot %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
