package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// readmeSkipMark, in an HTML comment on the line right before a ```sh
// fence, keeps that block out of TestReadmeRuns; the comment says why.
const readmeSkipMark = "not run by the README test"

// readmeTimeout bounds the whole README script.
const readmeTimeout = 4 * time.Minute

// readmeBlock is one ```sh block of the README.
type readmeBlock struct {
	line int // of the fence
	text string
}

// readmeShellBlocks returns the ```sh blocks of the markdown at path, in
// order, leaving out those marked with readmeSkipMark.
func readmeShellBlocks(path string) ([]readmeBlock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		blocks      []readmeBlock
		cur         *readmeBlock
		prev        string
		skip, inAny bool
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		fence := strings.HasPrefix(strings.TrimSpace(line), "```")
		switch {
		case cur != nil && fence:
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case inAny && fence:
			inAny = false
		case strings.TrimSpace(line) == "```sh":
			skip = strings.HasPrefix(strings.TrimSpace(prev), "<!--") && strings.Contains(prev, readmeSkipMark)
			if skip {
				inAny = true
			} else {
				cur = &readmeBlock{line: n}
			}
		case fence:
			inAny = true
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil || inAny {
		return nil, fmt.Errorf("%s: a code block is not closed", path)
	}
	return blocks, nil
}

// hasCommands reports whether every named program is on PATH.
func hasCommands(names ...string) bool {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return false
		}
	}
	return true
}

// TestReadmeRuns runs every ```sh block of README.md in order as one bash
// script (set -e) against the binary under test, with /tmp/ moved to a
// temporary directory, so that every command the README shows works as
// shown. Run as root, the script gets a network namespace of its own, so
// the defaults' fixed ports (4001, 7070, 10809) meet no other test.
func TestReadmeRuns(t *testing.T) {
	bin := weftBinary(t)
	blocks, err := readmeShellBlocks(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < 5 {
		t.Fatalf("README.md: %d sh blocks found, want the tour and the mesh at least", len(blocks))
	}
	sandbox := t.TempDir()
	var script strings.Builder
	script.WriteString("set -e\nset -x\n")
	for _, b := range blocks {
		fmt.Fprintf(&script, "\n# README.md line %d\n", b.line)
		script.WriteString(strings.ReplaceAll(b.text, "/tmp/", sandbox+"/"))
	}
	scriptPath := filepath.Join(sandbox, "readme.sh")
	if err := os.WriteFile(scriptPath, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(sandbox, "readme.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	ctx, cancel := context.WithTimeout(context.Background(), readmeTimeout)
	defer cancel()
	args := []string{"bash", scriptPath}
	if os.Geteuid() == 0 && hasCommands("unshare", "ip") {
		args = []string{"unshare", "--net", "--", "bash", "-c", "ip link set lo up && exec bash " + scriptPath}
	} else {
		t.Log("not root or no unshare/ip: the README script shares the network, and the default ports, with the machine")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = sandbox
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+sandbox, "WEFT_HOME=")
	// Output to a file, not a pipe: the daemons the script leaves in the
	// background would hold a pipe open past the script's end.
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own: the daemons started with & are in it
	// and are killed with it, however the script ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killGroup := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	defer killGroup()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		killGroup()
		<-done
		err = fmt.Errorf("not done within %v", readmeTimeout)
	}
	killGroup()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(sandbox, "*.log"))
		for _, name := range logs {
			if b, rerr := os.ReadFile(name); rerr == nil {
				t.Logf("%s (the daemon log the README names):\n%s", filepath.Base(name), b)
			}
		}
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("README script: %v\n%s", err, b)
	}
}

// TestInitForceKeepsSecret: `init --force` on a home rewrites its config
// but keeps its cluster secret and identity, and says so; --new-secret
// replaces the secret.
func TestInitForceKeepsSecret(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "home"))
	h.ok("init", "--site", "one")
	secretPath := filepath.Join(h.home, node.ClusterSecretFile)
	secret, err := os.ReadFile(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	id, err := node.LoadIdentity(filepath.Join(h.home, node.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	out := h.ok("init", "--site", "two", "--force")
	if !strings.Contains(out, "kept  "+node.ClusterSecretFile) || !strings.Contains(out, "kept  "+node.IdentityFile) || !strings.Contains(out, id.ID()) {
		t.Errorf("init --force said %q, want the kept identity %s and secret named", out, id.ID())
	}
	if got, _ := os.ReadFile(secretPath); !bytes.Equal(got, secret) {
		t.Errorf("cluster secret after init --force: %q, want %q", got, secret)
	}
	if cfg, err := node.Load(h.home); err != nil || cfg.Site != "two" {
		t.Errorf("config after init --force: %+v, %v; want site two", cfg, err)
	}
	h.fails("--force", "init", "--new-secret")
	h.ok("init", "--force", "--new-secret")
	if got, _ := os.ReadFile(secretPath); bytes.Equal(got, secret) {
		t.Error("init --force --new-secret kept the old secret")
	}
}
