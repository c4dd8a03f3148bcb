package exchange

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

// The seed corpora in testdata/fuzz hold frames of every request and
// response shape plus broken framing.

func FuzzDecodeRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, input []byte) {
		var buf bytes.Buffer
		body, err := readFrame(bufio.NewReader(bytes.NewReader(input)), into(&buf))
		if err != nil {
			return
		}
		req, err := decodeRequest(body)
		if err != nil {
			return
		}
		// What decodes must survive a round trip unchanged.
		var out bytes.Buffer
		if err := encodeRequest(&out, req); err != nil {
			t.Fatalf("re-encode decoded request: %v", err)
		}
		again, err := decodeRequest(out.Bytes())
		if err != nil {
			t.Fatalf("decode re-encoded request: %v", err)
		}
		if !reflect.DeepEqual(normalRequest(req), normalRequest(again)) {
			t.Fatalf("round trip changed the request: %+v, then %+v", req, again)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, input []byte) {
		var buf bytes.Buffer
		body, err := readFrame(bufio.NewReader(bytes.NewReader(input)), into(&buf))
		if err != nil {
			return
		}
		resp, err := decodeResponse(body)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := encodeResponse(&out, resp); err != nil {
			t.Fatalf("re-encode decoded response: %v", err)
		}
		again, err := decodeResponse(out.Bytes())
		if err != nil {
			t.Fatalf("decode re-encoded response: %v", err)
		}
		if !reflect.DeepEqual(normalResponse(resp), normalResponse(again)) {
			t.Fatalf("round trip changed the response: %+v, then %+v", resp, again)
		}
	})
}

// normalRequest and normalResponse make empty and nil slices compare equal:
// the wire does not tell them apart.
func normalRequest(r request) request {
	for i := range r.blocks {
		if len(r.blocks[i].Data) == 0 {
			r.blocks[i].Data = nil
		}
	}
	return r
}

func normalResponse(r response) response {
	if len(r.has) == 0 {
		r.has = nil
	}
	for i := range r.blocks {
		if len(r.blocks[i].Data) == 0 {
			r.blocks[i].Data = nil
		}
	}
	return r
}
