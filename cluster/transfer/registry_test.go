package transfer

import (
	"testing"

	"github.com/weft-mesh/weft/api"
)

// TestInfoIsACopy: what Info returned stays as it was while the transfer
// makes progress, so the API can encode it without holding the job's lock
// (they shared the targets' array: a data race, and answers that changed
// as they were written).
func TestInfoIsACopy(t *testing.T) {
	j := &Job{info: api.TransferInfo{
		ID: "t1", Targets: []api.TargetProgress{{Target: "b", State: string(Running)}},
		BytesFrom: map[string]int64{"a": 1},
	}}
	got := j.Info()
	j.update(func(in *api.TransferInfo) {
		in.Targets[0].State, in.Targets[0].Bytes = string(Done), 42
		in.BytesFrom["a"] = 2
	})
	if got.Targets[0].State != string(Running) || got.Targets[0].Bytes != 0 || got.BytesFrom["a"] != 1 {
		t.Fatalf("an earlier Info changed with the job: got %+v, bytes from %v; want target running with 0 bytes, 1 byte from a",
			got.Targets[0], got.BytesFrom)
	}
}
