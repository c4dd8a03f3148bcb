package torture

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTorture is the 60-second run of make test: the mesh of DefaultConfig
// under the nemesis, every disk read back from every node. The seed comes
// from the clock and is logged; WEFT_TORTURE_SEED replays one.
func TestTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("torture runs a mesh of daemons for a minute; skipped with -short")
	}
	if err := CheckPython(); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("%v (make deps installs it)", err)
		}
		t.Skipf("writers cannot run: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "weft")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/weft-mesh/weft/cmd/weft").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := DefaultConfig()
	cfg.Bin, cfg.Dir = bin, filepath.Join(dir, "run")
	cfg.HealLimit = 75 * time.Second
	cfg.Seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("WEFT_TORTURE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEFT_TORTURE_SEED: %v", err)
		}
		cfg.Seed = seed
	}
	cfg.Namespaces = os.Geteuid() == 0
	t.Logf("seed %d (WEFT_TORTURE_SEED=%d replays it)", cfg.Seed, cfg.Seed)
	rep, err := Run(ctx, cfg)
	for _, s := range rep.Skipped {
		t.Logf("skipped: %s", s)
	}
	for _, c := range rep.Crashes {
		t.Logf("crash: %s", c)
	}
	t.Log(rep.FaultLine())
	t.Log(rep.Line())
	if err != nil || rep.Failed() {
		if b, rerr := os.ReadFile(filepath.Join(cfg.Dir, "torture.log")); rerr == nil {
			lines := strings.Split(string(b), "\n")
			t.Logf("torture.log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
	}
	if err != nil {
		t.Fatalf("seed %d: the run broke: %v", cfg.Seed, err)
	}
	if rep.Failed() {
		t.Fatalf("seed %d: %s, want no lost write, no corrupt read, no unreadable fenced replica and no crash: %q %q", cfg.Seed, rep.Line(), rep.Problems, rep.Crashes)
	}
	if rep.Acked == 0 {
		t.Fatalf("seed %d: no write was acknowledged", cfg.Seed)
	}
}
