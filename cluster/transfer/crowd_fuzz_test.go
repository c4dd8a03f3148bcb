package transfer

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// FuzzReadCrowdJoin feeds a tracker the lines a puller sends: the join,
// then the done line. Whatever they hold, reading them does not panic,
// and a join read has a root.
func FuzzReadCrowdJoin(f *testing.F) {
	root := blockstore.Sum(blockstore.CodecRaw, []byte("a root")).String()
	f.Add([]byte(`{"root":"` + root + `"}` + "\n" + `{"done":true}` + "\n"))
	f.Add([]byte(`{"root":"` + root + `"}` + "\n" + `{"done":false}` + "\n"))
	f.Add([]byte(`{"root":"not a cid"}` + "\n"))
	f.Add([]byte(`{"root":"` + root + `"}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		root, err := readCrowdJoin(r)
		if err != nil {
			return
		}
		if !root.Defined() {
			t.Fatalf("join of %q read with no root", b)
		}
		readCrowdDone(r)
	})
}

// FuzzCrowdList feeds a puller the lines a tracker sends: whatever they
// hold, reading one does not panic, a line over maxCrowdLine is refused,
// and the view taken from it lists each valid peer once and nothing else.
func FuzzCrowdList(f *testing.F) {
	f.Add([]byte(`{"members":["` + fuzzPusher + `","` + fuzzReceiver + `"],"done":["` + fuzzPusher + `"]}` + "\n"))
	f.Add([]byte(`{"members":["` + fuzzPusher + `","` + fuzzPusher + `","not a peer"],"done":["nobody"]}` + "\n"))
	f.Add([]byte(`{"members":null,"done":null}` + "\n"))
	f.Add([]byte(`{"members":["` + strings.Repeat("x", 5000) + `"]}` + "\n"))
	f.Add([]byte(`{"members":[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l crowdList
		err := readCrowdList(bufio.NewReaderSize(bytes.NewReader(b), 16), &l)
		if i := bytes.IndexByte(b, '\n'); err == nil && i >= maxCrowdLine {
			t.Fatalf("line of %d bytes read, want at most %d", i+1, maxCrowdLine)
		}
		if err != nil {
			return
		}
		v := &crowdView{changed: make(chan struct{})}
		v.set(l)
		members, _ := v.Members()
		for i, m := range members {
			if _, err := meshnet.ParsePeerID(meshnet.PeerID(m).String()); err != nil {
				t.Fatalf("member %q listed: %v", m, err)
			}
			if slices.Contains(members[:i], m) {
				t.Fatalf("member %q listed twice", m)
			}
			if !slices.ContainsFunc(l.Members, func(s string) bool { id, err := meshnet.ParsePeerID(s); return err == nil && string(id) == m }) {
				t.Fatalf("member %q listed but not sent", m)
			}
		}
	})
}
