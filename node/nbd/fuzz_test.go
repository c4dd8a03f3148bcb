package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// scriptConn is a net.Conn that reads a fixed script and discards what is
// written: it drives the server with arbitrary bytes and no peer.
type scriptConn struct {
	r *bytes.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.UnixAddr{Net: "unix"} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix"} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// goPrefix is a client's side of a negotiation that enters transmission on
// "disk".
func goPrefix() []byte {
	b := binary.BigEndian.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint32(b, optGo)
	data := infoData("disk", infoName, infoBlockSize)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func fuzzServer(f *testing.F) *Server {
	cfg := DefaultConfig()
	cfg.Exports = newMemExports()
	s, err := NewServer(cfg)
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// FuzzNegotiation feeds arbitrary client bytes to a connection from its
// first byte: the server must end the connection without panicking, and
// must not read past the end of the input.
func FuzzNegotiation(f *testing.F) {
	f.Add(goPrefix())
	f.Add([]byte{0, 0, 0, 3})
	opt := func(o uint32, data []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	f.Add(append([]byte{0, 0, 0, 1}, opt(optList, nil)...))
	f.Add(append([]byte{0, 0, 0, 1}, opt(optExportName, []byte("disk"))...))
	f.Add(append([]byte{0, 0, 0, 3}, opt(optInfo, []byte{0xff, 0xff, 0xff, 0xff, 0, 0})...))
	f.Add(append([]byte{0, 0, 0, 3}, opt(optStartTLS, nil)...))
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		s.serveConn(context.Background(), &scriptConn{r: bytes.NewReader(in)})
	})
}

// FuzzTransmission feeds arbitrary requests to an open export.
func FuzzTransmission(f *testing.F) {
	f.Add(encodeRequest(request{Type: cmdRead, Length: 512}))
	f.Add(append(encodeRequest(request{Type: cmdWrite, Offset: 4000, Length: 200, Flags: cmdFlagFUA}), make([]byte, 200)...))
	f.Add(encodeRequest(request{Type: cmdWriteZeroes, Offset: 1 << 19, Length: 1 << 19, Flags: cmdFlagNoHole}))
	f.Add(encodeRequest(request{Type: cmdWrite, Length: 0xffffffff}))
	f.Add(encodeRequest(request{Type: cmdRead, Offset: 1<<64 - 1, Length: 0xffffffff}))
	f.Add(append(encodeRequest(request{Type: cmdFlush}), encodeRequest(request{Type: cmdDisc})...))
	s := fuzzServer(f)
	prefix := goPrefix()
	f.Fuzz(func(t *testing.T, in []byte) {
		s.serveConn(context.Background(), &scriptConn{r: bytes.NewReader(append(prefix[:len(prefix):len(prefix)], in...))})
	})
}

// FuzzDecoders checks the option and request decoders on arbitrary input:
// no panic, and a decoded request re-encodes to the same bytes.
func FuzzDecoders(f *testing.F) {
	f.Add(infoData("disk", infoName))
	f.Add(encodeRequest(request{Type: cmdWrite, Cookie: 9, Offset: 4096, Length: 4096}))
	f.Fuzz(func(t *testing.T, in []byte) {
		if r, err := decodeInfoRequest(in); err == nil && len(r.Name) > maxNameLen {
			t.Fatalf("decoded a name of %d bytes", len(r.Name))
		}
		decodeOptionHeader(in)
		if len(in) >= requestLen {
			if r, err := decodeRequest(in[:requestLen]); err == nil && !bytes.Equal(encodeRequest(r), in[:requestLen]) {
				t.Fatalf("request %x re-encodes as %x", in[:requestLen], encodeRequest(r))
			}
		}
	})
}

var _ io.Reader = (*scriptConn)(nil)
