package iscsi

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"
)

// FuzzParsePDU feeds arbitrary bytes to the PDU decoder and, through a
// connection, to a server in its login and full feature phases: neither
// may panic, and a decoded PDU encodes back to the bytes it came from.
func FuzzParsePDU(f *testing.F) {
	login := newPDU(opLoginReq|0x40, 0x87, 1)
	login.data = encodeText(textKeys{{"InitiatorName", "iqn.2000-01.test:f"}, {"TargetName", testIQN}, {"AuthMethod", "None"}})
	f.Add(login.encode(nil, digests{}))
	cmd := newPDU(opSCSICmd, 0xa0, 2)
	cmd.put32(20, 512)
	copy(cmd.bhs[32:], cdb10(0x2a, 0, 1))
	cmd.data = make([]byte, 512)
	f.Add(cmd.encode(nil, digests{}))
	f.Add(newPDU(opNopOut|0x40, 0x80, 3).encode(nil, digests{header: true, data: true}))
	f.Add(bytes.Repeat([]byte{0xff}, bhsLen+8))

	targets := oneTarget(CHAP{})
	cfg := DefaultConfig()
	cfg.Targets = targets
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.LoginTimeout, cfg.IdleTimeout = time.Second, time.Second
	srv, err := NewServer(cfg)
	if err != nil {
		f.Fatal(err)
	}
	// A logged-in session's first bytes, for the full feature phase.
	var prefix []byte
	prefix = login.encode(prefix, digests{})

	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range []digests{{}, {header: true, data: true}} {
			p, err := readPDU(bytes.NewReader(b), 1<<16, d)
			if err == nil && len(p.ahs)%4 == 0 {
				again := p.encode(nil, d)
				if n := len(again); n > len(b) || !bytes.Equal(again[:bhsLen], b[:bhsLen]) {
					t.Fatalf("re-encoded PDU differs from its bytes")
				}
			}
		}
		for _, in := range [][]byte{b, append(append([]byte{}, prefix...), b...)} {
			client, server := net.Pipe()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			done := make(chan struct{})
			go func() { defer close(done); srv.serveConn(ctx, server) }()
			go func() {
				client.SetDeadline(time.Now().Add(2 * time.Second))
				client.Write(in)
				client.Close()
			}()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := client.Read(buf); err != nil {
						return
					}
				}
			}()
			<-done
			cancel()
		}
	})
}

// FuzzTextKeys checks that the text decoder never panics, keeps its
// limits, and that what it decodes encodes back to an equal list.
func FuzzTextKeys(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.2000-01.test:x\x00SessionType=Discovery\x00"))
	f.Add([]byte("CHAP_A=5\x00CHAP_R=0x0011223344556677\x00\x00\x00"))
	f.Add([]byte("a=b\x00a=c\x00"))
	f.Add([]byte("=novalue\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kv, err := parseText(b)
		if err != nil {
			return
		}
		if len(kv) > maxKeys {
			t.Fatalf("%d keys", len(kv))
		}
		again, err := parseText(encodeText(kv))
		if err != nil || len(again) != len(kv) {
			t.Fatalf("re-decoded %d keys (%v), want %d", len(again), err, len(kv))
		}
		for i := range kv {
			if kv[i] != again[i] || len(kv[i].key) > maxKeyLen || len(kv[i].value) > maxValueLen {
				t.Fatalf("pair %d: %q, again %q", i, kv[i], again[i])
			}
		}
		if s, ok := kv.get("CHAP_C"); ok {
			decodeCHAPBinary(s)
		}
	})
}
