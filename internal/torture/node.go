package torture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/api"
)

// Time limits of the daemons' lives.
const (
	daemonStartup = 30 * time.Second
	daemonStop    = 30 * time.Second
	callTimeout   = 10 * time.Second
	// slowCallTimeout bounds the calls that wait for the mesh (a take
	// waits for every live member to confirm the new owner) or read a
	// whole store (scrub, gc).
	slowCallTimeout = time.Minute
)

// nodeState is what the nemesis did to a node's daemon.
type nodeState int

const (
	nodeUp     nodeState = iota
	nodeKilled           // by the nemesis, or it exited on its own
	nodePaused
)

// daemonProc is one life of a node's daemon.
type daemonProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited
	// endedWith is the signal the harness sent to end it (SIGKILL from
	// the nemesis, SIGTERM from stop), 0 while none.
	endedWith syscall.Signal
	// crashed: it exited on its own; set before done is closed.
	crashed bool
	// logFrom is the size of the node's log when it started: its own
	// output follows.
	logFrom int64
}

// crash is a daemon that exited without the harness ending it.
type crash struct {
	node    *Node
	status  string // the exit status
	logFrom int64  // where its output starts in the node's log
}

// Node is one weft daemon of the mesh: its home, site and address, and the
// process running it.
type Node struct {
	Name  string
	Site  int
	Home  string
	IP    string
	netns string // "" on loopback
	// logPath collects the daemon's output over its restarts, outside
	// the home so that a full home does not stop it.
	logPath string
	PeerID  string
	client  *api.Client
	// exited is told of every exit the harness did not cause (the
	// mesh's supervisor); nil for none.
	exited func(crash)

	mu    sync.Mutex
	proc  *daemonProc // nil while no daemon runs
	state nodeState
}

// State says whether the node's daemon runs, was killed or is paused.
func (n *Node) State() nodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// start starts the daemon with args appended and waits until it answers.
func (n *Node) start(ctx context.Context, bin string, args []string) error {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	argv := append([]string{bin, "daemon", "--home", n.Home}, args...)
	if n.netns != "" {
		argv = append([]string{"ip", "netns", "exec", n.netns}, argv...)
	}
	logFrom, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	// Not CommandContext: the daemon outlives this call; stop ends it.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	n.mu.Lock()
	if n.proc != nil {
		n.mu.Unlock()
		return fmt.Errorf("start %s: a daemon already runs", n.Name)
	}
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	p := &daemonProc{cmd: cmd, done: make(chan struct{}), logFrom: logFrom}
	n.proc, n.state = p, nodeUp
	n.mu.Unlock()
	go n.watch(p)
	done := p.done

	ctx, cancel := context.WithTimeout(ctx, daemonStartup)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := n.client.Status(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s: daemon exited before answering (see %s)", n.Name, logf.Name())
		case <-ctx.Done():
			return fmt.Errorf("%s: daemon did not answer within %v: %w", n.Name, daemonStartup, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watch waits for p to exit, as a supervisor does: an exit the harness
// did not cause (a SIGKILL it sent shows as death by SIGKILL, a stop
// ends it any way) is a crash of weft, told to n.exited, which must not
// block.
func (n *Node) watch(p *daemonProc) {
	err := p.cmd.Wait()
	n.mu.Lock()
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	expected := p.endedWith == syscall.SIGTERM ||
		p.endedWith == syscall.SIGKILL && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	if !expected {
		p.crashed = true
		if n.proc == p {
			n.proc, n.state = nil, nodeKilled
		}
	}
	n.mu.Unlock()
	// Told before done closes: whoever waited for the exit finds the
	// crash recorded.
	defer close(p.done)
	if expected || n.exited == nil {
		return
	}
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	n.exited(crash{node: n, status: status, logFrom: p.logFrom})
}

// signal sends sig to the daemon; for SIGKILL it waits for the exit.
func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	p := n.proc
	if p == nil {
		n.mu.Unlock()
		return fmt.Errorf("%s: no daemon", n.Name)
	}
	// Under the lock with the signal: watch sees either no signal or
	// this one.
	if sig == syscall.SIGKILL {
		p.endedWith = sig
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.endedWith = 0
		n.mu.Unlock()
		return fmt.Errorf("%s: %v: %w", n.Name, sig, err)
	}
	n.mu.Unlock()
	state := nodeUp
	switch sig {
	case syscall.SIGKILL:
		select {
		case <-p.done:
		case <-time.After(daemonStop):
			return fmt.Errorf("%s: daemon did not exit within %v of SIGKILL", n.Name, daemonStop)
		}
		if p.crashed {
			return fmt.Errorf("%s: the daemon exited on its own before the SIGKILL", n.Name)
		}
		state = nodeKilled
	case syscall.SIGSTOP:
		state = nodePaused
	}
	n.mu.Lock()
	if n.proc == p {
		n.state = state
		if sig == syscall.SIGKILL {
			n.proc = nil
		}
	}
	n.mu.Unlock()
	return nil
}

// stop ends the daemon for good: SIGCONT (a paused one), then SIGTERM,
// then SIGKILL if it does not exit in time.
func (n *Node) stop() {
	n.mu.Lock()
	p := n.proc
	n.proc = nil
	if p != nil {
		p.endedWith = syscall.SIGTERM
	}
	n.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(daemonStop):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// firstPanic is the first line of a daemon's output r that says why the
// Go runtime ended it ("panic: ..." or "fatal error: ..."), or "".
func firstPanic(r io.Reader) string {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			return line
		}
	}
	return ""
}

// call runs f against the node's API, bounded by callTimeout.
func call[T any](ctx context.Context, n *Node, f func(*api.Client, context.Context) (T, error)) (T, error) {
	return callWithin(ctx, n, callTimeout, f)
}

// callWithin runs f against the node's API, bounded by limit.
func callWithin[T any](ctx context.Context, n *Node, limit time.Duration, f func(*api.Client, context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	v, err := f(n.client, ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%s: %w", n.Name, err)
	}
	return v, err
}
