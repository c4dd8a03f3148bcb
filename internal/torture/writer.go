package torture

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed writer.py
var writerScript []byte

// Python is the interpreter of the writers: Debian's, which has libnbd's
// bindings (python3-libnbd), not a pyenv shim.
const Python = "/usr/bin/python3"

// CheckPython says why the writers cannot run, or nil.
func CheckPython() error {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, Python, "-c", "import nbd").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import libnbd's bindings (Debian package python3-libnbd; make deps installs it as root): %v: %s",
			Python, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Writer tuning: one write in flight per writer, a FLUSH every
// flushEvery writes, a pause between writes so that the 2 shared cores
// are not all the writers'.
const (
	flushEvery   = 8
	writePauseMS = 5
	// stallTimeout: a writer silent this long (its node paused, a
	// connection hung) is killed and started again.
	stallTimeout = 5 * time.Second
	// reconnectPause spaces the tries of a writer that lost its node.
	reconnectPause = 300 * time.Millisecond
)

// writer keeps one writer.py process writing to one disk, connected to
// whichever node owns the disk.
type writer struct {
	disk    int
	id      int
	writers int
	seed    uint64
	mesh    *Mesh
	log     *Log
	script  string // path of writer.py
	seq     uint64 // the last sequence number issued
	node    *Node  // the node of the current connection
}

// run keeps the writer going until ctx ends.
func (w *writer) run(ctx context.Context) {
	for restarts := uint64(0); ctx.Err() == nil; restarts++ {
		if err := w.runOnce(ctx, restarts); err != nil && ctx.Err() == nil {
			w.log.Note("writer disk=%d writer=%d: %v; starting it again", w.disk, w.id, err)
			select {
			case <-ctx.Done():
			case <-time.After(reconnectPause):
			}
		}
	}
}

// runOnce runs one writer.py process until it stalls, exits or ctx ends.
func (w *writer) runOnce(ctx context.Context, restarts uint64) error {
	spec := Disks[w.disk]
	slots := w.mesh.diskSize / SlotSize
	cmd := exec.Command(Python, w.script, spec.Name, strconv.Itoa(w.disk), strconv.Itoa(w.id), strconv.Itoa(w.writers),
		strconv.FormatInt(slots, 10), strconv.FormatUint(w.seq, 10), strconv.FormatUint(w.seed+restarts, 10),
		strconv.Itoa(flushEvery), strconv.Itoa(writePauseMS))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start writer.py: %w", err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	defer func() {
		cmd.Process.Kill()
		stdin.Close()
		// Record what the process said before it died: a write it issued
		// is on the disk whether or not this side read the line, and the
		// next process starts after the last sequence number recorded.
		for line := range lines {
			w.record(line)
		}
		cmd.Wait()
	}()
	if err := w.connect(ctx, stdin); err != nil {
		return err
	}
	stall := time.NewTimer(stallTimeout)
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stall.C:
			return fmt.Errorf("silent for %v on %s", stallTimeout, w.node.Name)
		case line, ok := <-lines:
			if !ok {
				return fmt.Errorf("writer.py exited")
			}
			failed, err := w.record(line)
			if err != nil {
				return err
			}
			if failed {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(reconnectPause):
				}
				if err := w.connect(ctx, stdin); err != nil {
					return err
				}
			}
			// The silence counts from the last line or the last
			// connection, whichever came later.
			stall.Reset(stallTimeout)
		}
	}
}

// record logs one line of writer.py; failed says it reported an error
// (it waits for the socket of a node then).
func (w *writer) record(line string) (failed bool, err error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false, fmt.Errorf("empty line from writer.py")
	}
	num := func(i int) uint64 {
		if i >= len(f) {
			return 0
		}
		v, _ := strconv.ParseUint(f[i], 10, 64)
		return v
	}
	switch f[0] {
	case "C":
		w.log.Note("connect disk=%d writer=%d node=%s", w.disk, w.id, w.node.Name)
	case "W":
		w.seq = num(1)
		w.log.Issued(w.disk, WriteID{w.id, w.seq}, int64(num(2)), w.node.Name)
	case "R":
		w.log.Replied(w.disk, WriteID{w.id, num(1)})
	case "FA":
		w.log.FlushAcked(w.disk, w.id, num(1), num(2))
	case "E":
		w.log.Note("error disk=%d writer=%d node=%s: %s", w.disk, w.id, w.node.Name, strings.Join(f[1:], " "))
		return true, nil
	default:
		return false, fmt.Errorf("unexpected line from writer.py: %q", line)
	}
	return false, nil
}

// connect finds the node that owns the disk now and hands writer.py its
// NBD socket; it waits while no running node answers.
func (w *writer) connect(ctx context.Context, stdin io.Writer) error {
	name := Disks[w.disk].Name
	for {
		if o := w.mesh.owner(ctx, name); o != nil && o.State() == nodeUp {
			w.node = o
			_, err := fmt.Fprintln(stdin, filepath.Join(o.Home, "nbd.sock"))
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(reconnectPause):
		}
	}
}
