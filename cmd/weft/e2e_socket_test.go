package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobodyUID is the unprivileged user the test runs the CLI as.
const nobodyUID = 65534

// TestSocketRefusesOtherUsers: a local user other than the home's owner
// cannot use the daemon through the home's socket, even when the home
// itself is open to them: the CLI says permission denied and nothing
// changes. Opening the socket's mode lets the same command through, so
// the refusal is the socket's mode and nothing else.
func TestSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the CLI as another user")
	}
	open := openDir(t)
	h := newHarness(t, filepath.Join(open, "home"))
	h.ok("init", "--site", "site-a", "--nbd", "off")
	h.startDaemon()
	if err := os.Chmod(h.home, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(openDir(t), "weft")
	data, err := os.ReadFile(h.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}

	code, stderr := runAs(t, bin, h.home, "disk", "create", "intruder", "--size", "1M")
	if code == 0 || !strings.Contains(stderr, "permission denied") {
		t.Fatalf("disk create as uid %d: exit %d, stderr %q; want a permission denied error", nobodyUID, code, stderr)
	}
	t.Logf("refused: %s", strings.TrimSpace(stderr))
	if out := h.ok("disk", "ls"); strings.Contains(out, "intruder") {
		t.Fatalf("the refused command created a disk:\n%s", out)
	}

	if err := os.Chmod(filepath.Join(h.home, "weft.sock"), 0o666); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runAs(t, bin, h.home, "disk", "ls"); code != 0 {
		t.Fatalf("disk ls as uid %d with the socket opened: exit %d, stderr %q; want it to pass", nobodyUID, code, stderr)
	}
}

// openDir is a temporary directory every user can enter.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "weft-e2e-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runAs runs the weft binary bin on home as nobodyUID and returns its exit
// code and stderr.
func runAs(t *testing.T, bin, home string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--home", home}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "WEFT_HOME="}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyUID, Gid: nobodyUID}}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("weft %s as uid %d: timed out", strings.Join(args, " "), nobodyUID)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("weft %s as uid %d: %v", strings.Join(args, " "), nobodyUID, err)
	}
	return cmd.ProcessState.ExitCode(), errb.String()
}
