package transfer

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

const (
	fuzzPusher   = "12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6"
	fuzzReceiver = "12D3KooWNBuiMU3cTFGSu63EdCyitGCDrPE9gQNvn1SsEviHAQTk"
)

// receiveRequestJSON builds the request a pusher sends for ref.
func receiveRequestJSON(tb testing.TB, id, ref string, entries int) []byte {
	tb.Helper()
	var es []catalog.Entry
	for i := range entries {
		es = append(es, catalog.Entry{
			Key: catalog.ReplicaKey("d", "r"+string(rune('1'+i))), Root: blockstore.Sum(blockstore.CodecRaw, []byte{byte(i)}),
			Owner: fuzzPusher, Writer: fuzzPusher, Epoch: 1, Version: 1, Size: 1 << 20, BlockSize: 64 << 10, Replicas: 2,
			Created: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		})
	}
	enc, err := catalog.Encode(es)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(receiveRequest{ID: id, Source: ref, Entry: enc, Sources: []string{fuzzPusher, fuzzReceiver}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// withSwarm returns the request b with its swarm set to members.
func withSwarm(tb testing.TB, b []byte, members ...string) []byte {
	tb.Helper()
	var req receiveRequest
	if err := json.Unmarshal(b, &req); err != nil {
		tb.Fatal(err)
	}
	req.Swarm = members
	out, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestDecodeReceiveRequest(t *testing.T) {
	self, err := meshnet.ParsePeerID(fuzzReceiver)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReceiveRequest(bytes.NewReader(receiveRequestJSON(t, "abc123", "d@r1", 1)), self)
	if err != nil {
		t.Fatal(err)
	}
	if got.id != "abc123" || got.ref != (volume.Ref{Disk: "d", Replica: "r1"}) || got.entry.Key != catalog.ReplicaKey("d", "r1") ||
		len(got.sources) != 1 || got.sources[0].String() != fuzzPusher {
		t.Fatalf("decoded %+v: want id abc123, d@r1, its entry and the pusher alone as source", got)
	}
	swarmed, err := decodeReceiveRequest(bytes.NewReader(withSwarm(t, receiveRequestJSON(t, "abc", "d@r1", 1), fuzzReceiver)), self)
	if err != nil || len(swarmed.swarm) != 1 || swarmed.swarm[0] != self {
		t.Fatalf("decoded swarm %v (%v), want the receiver alone", swarmed.swarm, err)
	}
	for name, req := range map[string][]byte{
		"two entries":                receiveRequestJSON(t, "abc", "d@r1", 2),
		"no entry":                   receiveRequestJSON(t, "abc", "d@r1", 0),
		"bad id":                     receiveRequestJSON(t, "a/b", "d@r1", 1),
		"empty id":                   receiveRequestJSON(t, "", "d@r1", 1),
		"bad ref":                    receiveRequestJSON(t, "abc", "d@@r1", 1),
		"bad source":                 bytes.Replace(receiveRequestJSON(t, "abc", "d@r1", 1), []byte(fuzzPusher), []byte("nobody"), 1),
		"not JSON":                   []byte("GET / HTTP/1.1\r\n\r\n"),
		"swarm without the receiver": withSwarm(t, receiveRequestJSON(t, "abc", "d@r1", 1), fuzzPusher),
		"swarm larger than the sources": withSwarm(t, receiveRequestJSON(t, "abc", "d@r1", 1),
			fuzzReceiver, fuzzPusher, "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
		"bad swarm member": withSwarm(t, receiveRequestJSON(t, "abc", "d@r1", 1), fuzzReceiver, "nobody"),
	} {
		if _, err := decodeReceiveRequest(bytes.NewReader(req), self); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeReceiveRequest feeds arbitrary bytes to the decoder of what a
// peer sends on /weft/transfer/1.0.0: an error or a request that holds the
// invariants the receiver relies on, never a panic.
func FuzzDecodeReceiveRequest(f *testing.F) {
	f.Add(receiveRequestJSON(f, "abc123", "d@r1", 1))
	f.Add(receiveRequestJSON(f, "x", "ubuntu@2", 1))
	f.Add([]byte(`{"id":"a","source":"d","entry":"","sources":["x"]}`))
	f.Add([]byte(`{"id":1}`))
	f.Add(withSwarm(f, receiveRequestJSON(f, "abc123", "d@r1", 1), fuzzReceiver))
	self, err := meshnet.ParsePeerID(fuzzReceiver)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeReceiveRequest(bytes.NewReader(b), self)
		if err != nil {
			return
		}
		if got.id == "" || len(got.id) > 64 || strings.ContainsAny(got.id, "/ \n") {
			t.Fatalf("accepted id %q", got.id)
		}
		if _, err := volume.ParseRef(got.ref.String()); err != nil {
			t.Fatalf("accepted ref %q: %v", got.ref, err)
		}
		for _, s := range got.sources {
			if s == self {
				t.Fatal("the receiver is among its own sources")
			}
		}
		if len(got.swarm) > 0 && !slices.Contains(got.swarm, self) {
			t.Fatalf("accepted swarm %v without the receiver", got.swarm)
		}
		if len(got.swarm) > len(got.sources)+1 {
			t.Fatalf("accepted swarm of %d members with %d sources", len(got.swarm), len(got.sources))
		}
	})
}
