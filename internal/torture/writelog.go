package torture

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Write is one write a writer issued, as the log knows it.
type Write struct {
	Disk int
	ID   WriteID
	Slot int64
	// Node is the node the writer was connected to when it issued it.
	Node string
	// Order is the write's place in the issue order of the whole log.
	Order int64
	// Replied: the server answered the write with success.
	Replied bool
	// Acked: a FLUSH issued on the same connection after the write was
	// replied to returned success (see the package doc).
	Acked bool
}

// Log records every write the writers issue and what the server answered,
// and appends each event as a line to a file. It is safe for concurrent
// use.
type Log struct {
	mu     sync.Mutex
	out    io.Writer
	start  time.Time
	order  int64
	writes map[int]map[WriteID]*Write
}

// NewLog returns an empty log that appends its events to out.
func NewLog(out io.Writer) *Log {
	return &Log{out: out, start: time.Now(), writes: make(map[int]map[WriteID]*Write)}
}

func (l *Log) line(format string, args ...any) {
	fmt.Fprintf(l.out, "%9.3f "+format+"\n", append([]any{time.Since(l.start).Seconds()}, args...)...)
}

// Issued records that writer id.Writer issued write id to slot of disk on
// node.
func (l *Log) Issued(disk int, id WriteID, slot int64, node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order++
	m := l.writes[disk]
	if m == nil {
		m = make(map[WriteID]*Write)
		l.writes[disk] = m
	}
	m[id] = &Write{Disk: disk, ID: id, Slot: slot, Node: node, Order: l.order}
	l.line("issue disk=%d writer=%d seq=%d slot=%d node=%s", disk, id.Writer, id.Seq, slot, node)
}

// Replied records that the server answered write id with success.
func (l *Log) Replied(disk int, id WriteID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.writes[disk][id]; w != nil {
		w.Replied = true
	}
	l.line("reply disk=%d writer=%d seq=%d", disk, id.Writer, id.Seq)
}

// FlushAcked records that a FLUSH of writer's connection to disk returned
// success; it covers the writes of seq from..to that were replied to
// (those the writer issued on that connection before the flush).
func (l *Log) FlushAcked(disk, writer int, from, to uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for seq := from; seq <= to; seq++ {
		if w := l.writes[disk][WriteID{writer, seq}]; w != nil && w.Replied {
			w.Acked = true
			n++
		}
	}
	l.line("flush-ack disk=%d writer=%d seq=%d..%d acked=%d", disk, writer, from, to, n)
}

// Note appends a free-form line (a connection, an error) to the log file.
func (l *Log) Note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line(format, args...)
}

// Writes returns a copy of disk's writes in issue order.
func (l *Log) Writes(disk int) []Write {
	l.mu.Lock()
	defer l.mu.Unlock()
	ws := make([]Write, 0, len(l.writes[disk]))
	for _, w := range l.writes[disk] {
		ws = append(ws, *w)
	}
	slices.SortFunc(ws, func(a, b Write) int { return int(a.Order - b.Order) })
	return ws
}
