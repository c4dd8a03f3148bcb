package transfer

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
)

// FuzzReadProgress feeds a pusher the progress lines a receiver streams:
// whatever they hold, reading them does not panic, reports only lines
// that decode, stops at the first line that ends the transfer, and refuses
// a line over maxTransferRequest.
func FuzzReadProgress(f *testing.F) {
	f.Add([]byte(`{"state":"running","bytes":10,"blocks":1,"total":100}` + "\n" + `{"state":"done","bytes":100,"blocks":10,"total":100}` + "\n"))
	f.Add([]byte(`{"state":"failed","error":"volumes not open","unreachable":true}` + "\n"))
	f.Add([]byte(`{"state":"running"}` + "\n" + `{"state":"running"`))
	f.Add([]byte(`{"state":"running","bytes":"many"}` + "\n"))
	f.Add([]byte(`{"state":"` + strings.Repeat("r", maxTransferRequest) + `"}` + "\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var reported []api.TargetProgress
		last, final, err := readProgress(bytes.NewReader(b), func(tp api.TargetProgress) { reported = append(reported, tp) })
		if final && err != nil {
			t.Fatalf("final line with error %v", err)
		}
		if final && State(last.State) == Running {
			t.Fatalf("running line %+v taken as final", last)
		}
		for i, tp := range reported {
			if i < len(reported)-1 && State(tp.State) != Running {
				t.Fatalf("line %d of state %q reported before the last", i, tp.State)
			}
		}
		if len(reported) > 0 && !reflect.DeepEqual(reported[len(reported)-1], last.TargetProgress) {
			t.Fatalf("last line %+v, last reported %+v", last.TargetProgress, reported[len(reported)-1])
		}
		if len(reported) > bytes.Count(b, []byte("\n"))+1 {
			t.Fatalf("%d lines reported from %d newlines", len(reported), bytes.Count(b, []byte("\n")))
		}
		if i := bytes.IndexByte(b, '\n'); err == nil && i >= maxTransferRequest {
			t.Fatalf("line of %d bytes read, want at most %d", i+1, maxTransferRequest)
		}
		if !final && err != nil && !errors.Is(err, errBadProgress) && len(b) < maxTransferRequest {
			t.Fatalf("stream of %d bytes ended with %v", len(b), err)
		}
	})
}

// FuzzDecodePolicy decodes the replication policy a catalog entry holds:
// whatever it holds, decoding does not panic, a decoded policy has a mode
// and no status, and encoding it and decoding again gives it back.
func FuzzDecodePolicy(f *testing.F) {
	f.Add([]byte(`{"disk":"vm1","site":"b","mode":"push","every":300000000000,"options":{},"keep":3}`))
	f.Add([]byte(`{"disk":"vm1","site":"b","every":60000000000,"puller":"12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6","keep":1,` +
		`"last_replica":"repl-20260101-000000","last_success":"2026-01-01T00:00:00Z","cycles":4,"last_error":"x","status":"failing"}`))
	f.Add([]byte(`{"disk":"vm1","last_success":"2026-01-01T00:00:00+05:30","last_try":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"every":"5m"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"disk":"vm1"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := catalog.Entry{Key: catalog.ReplicateKey("vm1", "b"), Policy: b}
		p, err := decodePolicy(e)
		if err != nil {
			return
		}
		if p.Mode != api.ModePush && p.Mode != api.ModePull || (p.Mode == api.ModePull) != (p.Puller != "") {
			t.Fatalf("policy decoded with mode %q, puller %q", p.Mode, p.Puller)
		}
		if p.Status != "" || p.Lag != nil {
			t.Fatalf("policy decoded with status %q, lag %v", p.Status, p.Lag)
		}
		enc, err := json.Marshal(p)
		if err != nil {
			return // a time the file may hold but JSON cannot say (year 10000)
		}
		again, err := decodePolicy(catalog.Entry{Key: e.Key, Policy: enc})
		if err != nil {
			t.Fatalf("policy %s does not decode again: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("policy round trip:\n%s\n%s", enc, enc2)
		}
	})
}
