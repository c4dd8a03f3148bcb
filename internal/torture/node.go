package torture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
	nodeUp nodeState = iota
	nodeKilled
	nodePaused
)

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

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
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
	// Not CommandContext: the daemon outlives this call; stopAll ends it.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done, n.state = cmd, done, nodeUp
	n.mu.Unlock()

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

// signal sends sig to the daemon; for SIGKILL it waits for the exit.
func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: no daemon", n.Name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", n.Name, sig, err)
	}
	state := nodeUp
	switch sig {
	case syscall.SIGKILL:
		select {
		case <-done:
		case <-time.After(daemonStop):
			return fmt.Errorf("%s: daemon did not exit within %v of SIGKILL", n.Name, daemonStop)
		}
		state = nodeKilled
	case syscall.SIGSTOP:
		state = nodePaused
	}
	n.mu.Lock()
	n.state = state
	if sig == syscall.SIGKILL {
		n.cmd = nil
	}
	n.mu.Unlock()
	return nil
}

// stop ends the daemon for good: SIGCONT (a paused one), then SIGTERM,
// then SIGKILL if it does not exit in time.
func (n *Node) stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(daemonStop):
		cmd.Process.Kill()
		<-done
	}
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
