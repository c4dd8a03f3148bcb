package main

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNoTestingInBinary: no weft package the binary links imports the
// testing package; test helpers live in _test files or in packages only
// tests import. (The binary still links testing: go-libp2p-kad-dht's own
// options import it, which no change here can avoid.)
func TestNoTestingInBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "github.com/weft-mesh/weft/") {
			continue
		}
		if slices.Contains(f[1:], "testing") {
			t.Errorf("%s imports testing, and the weft binary links it", f[0])
		}
	}
}
