package torture

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFirstPanic(t *testing.T) {
	for _, tc := range []struct{ name, log, want string }{
		{"none", "time=... level=INFO msg=started\ntime=... level=INFO msg=stopping\n", ""},
		{"panic", "level=INFO msg=started\npanic: write segment: no space left on device\n\ngoroutine 7 [running]:\npanic: second\n",
			"panic: write segment: no space left on device"},
		{"fatal", "level=INFO msg=x\nfatal error: concurrent map writes\n", "fatal error: concurrent map writes"},
		{"panic word inside a line", "level=ERROR msg=\"recovered panic: x\"\n", ""},
	} {
		if got := firstPanic(strings.NewReader(tc.log)); got != tc.want {
			t.Errorf("%s: firstPanic = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReportFailsOnCrash(t *testing.T) {
	rep := Report{Faults: map[string]int{"kill": 3, "fill": 1}}
	if rep.Failed() {
		t.Fatalf("a clean report failed")
	}
	if got, want := rep.FaultLine(), "faults by kind: fill 1, kill 3; crashes: 0"; got != want {
		t.Errorf("FaultLine = %q, want %q", got, want)
	}
	rep.Crashes = []string{"daemon node-2 exited on its own: exit status 2; panic: no space left on device"}
	if !rep.Failed() {
		t.Errorf("a report with a crash did not fail")
	}
	if got, want := rep.FaultLine(), "faults by kind: fill 1, kill 3; crashes: 1"; got != want {
		t.Errorf("FaultLine = %q, want %q", got, want)
	}
}

// startProc runs argv as n's daemon, as start does, without waiting for
// an API.
func startProc(t *testing.T, n *Node, argv ...string) *daemonProc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, done: make(chan struct{})}
	n.mu.Lock()
	n.proc, n.state = p, nodeUp
	n.mu.Unlock()
	go n.watch(p)
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	return p
}

// TestWatchTellsOnlyExitsOnTheirOwn: a process that exits by itself is a
// crash told to exited; one the nemesis kills or stop ends is not.
func TestWatchTellsOnlyExitsOnTheirOwn(t *testing.T) {
	crashes := make(chan crash, 4)
	n := &Node{Name: "node-9", logPath: filepath.Join(t.TempDir(), "daemon.log"), exited: func(c crash) { crashes <- c }}

	p := startProc(t, n, "sh", "-c", "exit 2")
	select {
	case c := <-crashes:
		if c.node != n || c.status != "exit status 2" {
			t.Errorf("crash %s %q, want node-9 exit status 2", c.node.Name, c.status)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the exit was not told")
	}
	<-p.done
	if n.State() != nodeKilled || n.signal(syscall.SIGKILL) == nil {
		t.Errorf("after the crash: state %v and a daemon to signal, want killed and none", n.State())
	}

	startProc(t, n, "sleep", "60")
	if err := n.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	startProc(t, n, "sleep", "60")
	n.stop()
	// watch tells a crash before the exit is seen, so it would be here.
	select {
	case c := <-crashes:
		t.Errorf("an exit the harness caused was told: %q", c.status)
	default:
	}
}
