package powerloss

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestInjectFaultReportsWhereItFired: the fault fires within 30 changing
// operations, never on an exempt path, and reports the operation it failed,
// which the driver needs to tell a fault no step saw from one never fired.
func TestInjectFaultReportsWhereItFired(t *testing.T) {
	for seed := range uint64(20) {
		fs := New(seed)
		fault := fs.InjectFault(rand.New(rand.NewPCG(seed, 0)), func(path string) bool { return path == "/exempt" })
		if _, err := fs.Create("/exempt", vfs.WriteCategoryUnspecified); err != nil {
			t.Fatalf("seed %d: create on an exempt path: %v", seed, err)
		}
		var failed string
		for i := range 31 {
			name := fmt.Sprintf("/f%d", i)
			if _, err := fs.Create(name, vfs.WriteCategoryUnspecified); err != nil {
				if !errors.Is(err, fault.Err) {
					t.Fatalf("seed %d: create %s: %v, want %v", seed, name, err, fault.Err)
				}
				failed = name
				break
			}
		}
		fired := fault.Fired()
		if failed == "" || len(fired) != 1 || fired[0].Kind != errorfs.OpCreate || fired[0].Path != failed {
			t.Fatalf("seed %d: create of %q failed, fault reports %v", seed, failed, fired)
		}
	}
}
