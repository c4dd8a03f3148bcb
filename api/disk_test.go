package api

import (
	"encoding/json"
	"testing"
)

// TestDiskInfoJSONUnchanged: the daemon's disk JSON, as it was when the
// daemon sent volume.DiskInfo (every field set, in its order), decodes into
// DiskInfo and encodes back byte for byte; so do the omitempty fields left
// out.
func TestDiskInfoJSONUnchanged(t *testing.T) {
	for _, in := range []string{
		`{"name":"web","size":1048576,"block_size":65536,"replicas":2,"sync":true,"root":"bafkr4i","used_bytes":131072,` +
			`"dirty_bytes":65536,"under_replicated":2,"replica_count":1,"owner":"12D3KooW","epoch":3,` +
			`"created":"2026-01-02T03:04:05Z","committed":"2026-01-02T03:04:06Z","allow":["10.0.0.0/8"]}`,
		`{"name":"web","size":0,"block_size":65536,"replicas":1,"sync":false,"root":"","used_bytes":0,` +
			`"dirty_bytes":0,"under_replicated":0,"replica_count":0,` +
			`"created":"0001-01-01T00:00:00Z","committed":"0001-01-01T00:00:00Z"}`,
	} {
		var d DiskInfo
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != in {
			t.Errorf("round trip changed the JSON:\n got %s\nwant %s", out, in)
		}
	}
}

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
		bad  bool
	}{
		{"web", Ref{Disk: "web"}, false},
		{"web@monday", Ref{Disk: "web", Replica: "monday"}, false},
		{"", Ref{}, true},
		{"@monday", Ref{}, true},
		{"web@", Ref{}, true},
	} {
		got, err := ParseRef(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v, error %v", c.in, got, err, c.want, c.bad)
		}
		if err == nil && got.String() != c.in {
			t.Errorf("ParseRef(%q).String() = %q", c.in, got.String())
		}
	}
}
