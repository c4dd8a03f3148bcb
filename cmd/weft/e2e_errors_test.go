package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// doubled reports whether line repeats itself around a colon, as in
// "join: join: x" or "ID: ID: x": an error wrapped twice with the same
// context.
func doubled(line string) bool {
	parts := strings.Split(line, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			return true
		}
	}
	return false
}

// badLine is a command line the CLI must refuse with exit code 2 and one
// line on stderr containing want.
type badLine struct {
	args []string
	want string
}

// wantBad runs each line and checks its exit code and its one-line error.
func (h *harness) wantBad(lines []badLine) {
	h.t.Helper()
	for _, c := range lines {
		r := h.run(nil, c.args...)
		line := strings.TrimRight(r.stderr, "\n")
		switch {
		case r.code != 2:
			h.t.Errorf("weft %s: exit %d, want 2; stderr %q", strings.Join(c.args, " "), r.code, r.stderr)
		case strings.Contains(line, "\n") || !strings.HasPrefix(line, "weft: "):
			h.t.Errorf("weft %s: stderr %q, want one line starting with \"weft: \"", strings.Join(c.args, " "), r.stderr)
		case !strings.Contains(line, c.want):
			h.t.Errorf("weft %s: stderr %q, want it to contain %q", strings.Join(c.args, " "), line, c.want)
		case doubled(line):
			h.t.Errorf("weft %s: stderr %q says something twice", strings.Join(c.args, " "), line)
		}
	}
}

// TestCLIBadCommandLines: every command line that makes no sense (unknown
// command or flag, wrong argument count, a value out of range, whether the
// CLI or the daemon finds it) exits 2 with one line that says what is
// wrong once, and changes nothing.
func TestCLIBadCommandLines(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "home"))
	certs, other := t.TempDir(), t.TempDir()
	writeCert(t, certs)
	writeCert(t, other)
	missing := filepath.Join(certs, "missing.pem")
	h.wantBad([]badLine{
		{[]string{"init", "--nbd", "127.0.0.1:0"}, `port "0" is not a number in 1..65535`},
		{[]string{"init", "--nbd-tls-cert", missing, "--nbd-tls-key", filepath.Join(certs, "server-key.pem")},
			"nbd tls certificate: open " + missing + ": no such file or directory"},
		{[]string{"init", "--nbd-tls-cert", filepath.Join(certs, "server-cert.pem"), "--nbd-tls-key", filepath.Join(other, "server-key.pem")},
			"private key does not match public key"},
		{[]string{"init", "--cluster-secret-file", writeTemp(t, "bad.secret", []byte("not hex"))}, "cluster secret"},
	})
	if _, err := os.Stat(h.home); err == nil {
		if _, err := os.Stat(filepath.Join(h.home, "config.json")); err == nil {
			t.Fatal("a refused init wrote a config")
		}
	}

	h.ok("init", "--site", "lab", "--nbd", "off") // the home socket only: no port shared with other tests
	h.startDaemon()
	img := writeTemp(t, "web.img", []byte(strings.Repeat("weft", 1<<16)))
	h.ok("disk", "import", "web", img)
	h.wantBad([]badLine{
		{[]string{"nope"}, `unknown command "nope" for "weft"`},
		{[]string{"transfer", "nope"}, `unknown command "nope" for "weft transfer"`},
		{[]string{"disk", "ls", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"disk", "create"}, "usage: weft disk create"},
		{[]string{"disk", "ls", "extra"}, "usage: weft disk ls"},
		{[]string{"disk", "create", "x", "--size", "12Q"}, `--size: invalid size "12Q"`},
		{[]string{"disk", "create", "x", "--size", "0"}, "size 0: must be positive"},
		{[]string{"disk", "create", "x", "--size", "4095"}, "size 4095: not a whole number of 65536-byte blocks (65536 would be)"},
		{[]string{"disk", "create", "x", "--size", "1M", "--block-size", "3K"}, "block size 3072: must be a power of two"},
		{[]string{"disk", "create", "x", "--size", "1M", "--replicas", "0"}, "--replicas 0: must be 1 to 16"},
		{[]string{"disk", "create", "x", "--size", "1M", "--replicas", "17"}, "--replicas 17: must be 1 to 16"},
		{[]string{"disk", "import", "x", img, "--replicas", "0"}, "--replicas 0: must be 1 to 16"},
		{[]string{"disk", "create", "a b", "--size", "1M"}, `name "a b": character ' ' not allowed`},
		{[]string{"push", "web", "--to", "lab"}, `target "lab" is this node's own site`},
		{[]string{"push", "web", "--to", "elsewhere", "--block-size", "3K"}, "block size 3072: must be from 65536 (64K) to 16777216 (16M)"},
		{[]string{"pull", "web", "--from", "elsewhere", "--block-size", "32M"}, "block size 33554432: must be from"},
		{[]string{"push", "web", "--to", "elsewhere", "--concurrency", "0"}, "--concurrency 0: must be 1 to 256"},
		{[]string{"push", "web", "--to", "elsewhere", "--priority", "urgent"}, `priority "urgent"`},
		{[]string{"join", "/ip4/127.0.0.1/tcp/1"}, `join: "/ip4/127.0.0.1/tcp/1" is not a member's address`},
		{[]string{"daemon", "--heal-concurrency", "0"}, "--heal-concurrency 0: must be at least 1"},
		{[]string{"daemon", "--reserve", "0"}, "--reserve 0: must be at least 64 MiB"},
		{[]string{"daemon", "--reserve", "1M"}, "--reserve 1M: must be at least 64 MiB"},
		{[]string{"daemon", "--heal-interval", "0s"}, "--heal-interval 0s: must be positive"},
		{[]string{"daemon", "--probe-interval", "10ms"}, "probe interval 10ms: want 100ms to 10s"},
		{[]string{"daemon", "--suspicion-mult", "1"}, "suspicion multiplier 1: want 2 to 20"},
	})
	if out := h.ok("transfers"); !strings.Contains(out, "no transfers") {
		t.Errorf("refused transfers were registered:\n%s", out)
	}
	var disks []struct{ Name string }
	h.jsonOut(&disks, "disk", "ls")
	if len(disks) != 1 || disks[0].Name != "web" {
		t.Errorf("disks after the refusals: %+v, want only web", disks)
	}
	// Errors that are not about the command line keep exit 1, and name
	// what is missing once.
	if line := h.fails("spacesuit ubuntu@1: not found", "disk", "clone", "ubuntu@1", "u"); doubled(line) {
		t.Errorf("clone of a missing spacesuit: %q says something twice", line)
	}
	h.ok("replica", "create", "web", "r1")
	if line := h.fails(`replica "r1" of disk "web": already exists`, "replica", "create", "web", "r1"); strings.Contains(line, "commit") {
		t.Errorf("replica create of an existing name: %q names a commit", line)
	}
	if line := h.fails(`disk "web" already exists in the mesh`, "disk", "create", "web", "--size", "1M"); strings.Count(line, "exists") != 1 {
		t.Errorf("create of an existing disk: %q says it exists twice", line)
	}
	h.stopDaemon()
}
