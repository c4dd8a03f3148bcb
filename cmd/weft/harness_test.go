package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// Time limits of the end-to-end tests. Every child process runs under one.
const (
	cmdTimeout    = 2 * time.Minute
	daemonStartup = 30 * time.Second
	daemonStop    = 30 * time.Second
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// TestMain removes the binary built for the end-to-end tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// weftBinary builds the weft binary once per test run.
func weftBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "weft-e2e-bin-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "weft")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// harness runs the real weft binary against one home.
type harness struct {
	t      *testing.T
	bin    string
	home   string
	daemon *exec.Cmd
	done   chan error // receives the daemon's exit
	logs   int        // daemons started, for log file names

	daemonLogs []string
	// daemonArgs are added to `weft daemon`; netns, if set, runs the
	// daemon inside that network namespace.
	daemonArgs []string
	netns      string
}

func newHarness(t *testing.T, home string) *harness {
	t.Helper()
	h := &harness{t: t, bin: weftBinary(t), home: home}
	t.Cleanup(func() {
		if h.daemon != nil {
			h.daemon.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			h.dumpLogs()
		}
	})
	return h
}

// result is what a weft invocation did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs weft with --home and args, bounded by cmdTimeout.
func (h *harness) run(stdin []byte, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if len(args) > 0 && args[0] == "init" && !slices.Contains(args, "--listen") {
		// Test packages run at once: a daemon must not take the default
		// mesh port. Port 0 picks a free one at each start.
		args = append(args, "--listen", "/ip4/127.0.0.1/tcp/0")
	}
	if len(args) > 0 && args[0] == "init" && !slices.Contains(args, "--http") {
		args = append(args, "--http", "off") // nor the default dashboard port
	}
	cmd := exec.CommandContext(ctx, h.bin, append([]string{"--home", h.home}, args...)...)
	cmd.Env = append(os.Environ(), "WEFT_HOME=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		h.t.Fatalf("weft %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		h.t.Fatalf("weft %s: timed out after %v", strings.Join(args, " "), cmdTimeout)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok runs weft and fails the test unless it succeeds; it returns stdout.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	r := h.run(nil, args...)
	if r.code != 0 {
		h.t.Fatalf("weft %s: exit %d, want 0; stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs weft, expects a non-zero exit and one line on stderr that
// contains want, and returns that line.
func (h *harness) fails(want string, args ...string) string {
	h.t.Helper()
	r := h.run(nil, args...)
	if r.code == 0 {
		h.t.Fatalf("weft %s: exit 0, want non-zero; stdout: %s", strings.Join(args, " "), r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "weft: ") {
		h.t.Fatalf("weft %s: stderr %q, want one line starting with \"weft: \"", strings.Join(args, " "), r.stderr)
	}
	if !strings.Contains(lines[0], want) {
		h.t.Fatalf("weft %s: stderr %q, want it to contain %q", strings.Join(args, " "), lines[0], want)
	}
	return lines[0]
}

// startDaemon starts `weft daemon` and waits until its socket answers.
func (h *harness) startDaemon() {
	h.t.Helper()
	if h.daemon != nil {
		h.t.Fatal("startDaemon: a daemon is already running")
	}
	h.logs++
	logf, err := os.Create(filepath.Join(h.t.TempDir(), fmt.Sprintf("daemon-%d.log", h.logs)))
	if err != nil {
		h.t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"daemon", "--home", h.home, "--log-level", "debug"}, h.daemonArgs...)
	cmd := exec.Command(h.bin, args...)
	if h.netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", h.netns, h.bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed by the kernel if the test process dies without its cleanups
	// (a timeout's panic): an orphan would hold the e2e lock's file.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		h.t.Fatalf("start daemon: %v", err)
	}
	h.daemon, h.done = cmd, make(chan error, 1)
	h.daemonLogs = append(h.daemonLogs, logf.Name())
	go func() { h.done <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), daemonStartup)
	defer cancel()
	cl := node.NewClient(h.home)
	defer cl.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := cl.Status(ctx)
		if err == nil {
			return
		}
		select {
		case err := <-h.done:
			h.daemon = nil
			h.t.Fatalf("daemon exited before answering: %v", err)
		case <-ctx.Done():
			h.t.Fatalf("daemon did not answer within %v: %v", daemonStartup, err)
		case <-tick.C:
		}
	}
}

// stopDaemon sends SIGTERM and waits for a clean exit.
func (h *harness) stopDaemon() {
	h.t.Helper()
	h.signalDaemon(syscall.SIGTERM, true)
}

// killDaemon kills the daemon with SIGKILL: a crash.
func (h *harness) killDaemon() {
	h.t.Helper()
	h.signalDaemon(syscall.SIGKILL, false)
}

func (h *harness) signalDaemon(sig syscall.Signal, wantClean bool) {
	h.t.Helper()
	if h.daemon == nil {
		h.t.Fatal("no daemon running")
	}
	if err := h.daemon.Process.Signal(sig); err != nil {
		h.t.Fatalf("signal daemon: %v", err)
	}
	select {
	case err := <-h.done:
		h.daemon = nil
		if wantClean && err != nil {
			h.t.Fatalf("daemon exit after %v: %v, want clean exit", sig, err)
		}
	case <-time.After(daemonStop):
		h.t.Fatalf("daemon did not exit within %v of %v", daemonStop, sig)
	}
}

func (h *harness) dumpLogs() {
	for _, name := range h.daemonLogs {
		b, err := os.ReadFile(name)
		if err == nil {
			h.t.Logf("%s:\n%s", filepath.Base(name), b)
		}
	}
}
