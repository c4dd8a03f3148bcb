package dockervol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeRequest feeds request bodies as dockerd (or anyone who can
// reach the socket) may send them: decoding never panics, a decoded
// request survives a round trip, and its options either parse or are
// refused.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		``,
		`{}`,
		`{"Name":"vol"}`,
		`{"Name":"vol","ID":"0123456789abcdef"}`,
		`{"Name":"vol","Opts":{"size":"10G","replicas":"2"}}`,
		`{"Name":"vol","Opts":{"from":"ubuntu@3"}}`,
		`{"Name":"vol","Opts":{"from":"a@r1","size":"1G"}}`,
		`{"Name":"vol","Opts":null}`,
		`{"Name":3}`,
		`[1,2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRequest(bytes.NewReader(body), false)
		if err != nil {
			return
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", req, err)
		}
		again, err := decodeRequest(bytes.NewReader(b), false)
		if err != nil {
			t.Fatalf("decode the re-encoded %s: %v", b, err)
		}
		if len(req.Opts) == 0 && len(again.Opts) == 0 {
			req.Opts, again.Opts = nil, nil
		}
		if !reflect.DeepEqual(req, again) {
			t.Fatalf("round trip: got %+v, want %+v", again, req)
		}
		o, err := parseCreateOptions(req.Opts)
		if err == nil && o.from != "" && (o.size != 0 || o.replicas != 0) {
			t.Fatalf("options %v: a clone with a size or replicas was accepted", req.Opts)
		}
	})
}
