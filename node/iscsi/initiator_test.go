package iscsi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// ramDisk is a LUN in memory.
type ramDisk struct {
	mu      sync.Mutex
	data    []byte
	ro      bool
	maxRead int // the largest read asked of the disk
}

func (d *ramDisk) ReadAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxRead = max(d.maxRead, len(p))
	copy(p, d.data[off:])
	return nil
}

func (d *ramDisk) WriteAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.data[off:], p)
	return nil
}

func (d *ramDisk) Zero(_ context.Context, off, n int64, _ bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.data[off : off+n])
	return nil
}

// at returns a copy of n bytes at off.
func (d *ramDisk) at(off, n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.data[off:off+n]...)
}

func (d *ramDisk) Flush(context.Context) error { return nil }
func (d *ramDisk) Size() int64                 { return int64(len(d.data)) }
func (d *ramDisk) BlockSize() int64            { return 4096 }
func (d *ramDisk) ReadOnly() bool              { return d.ro }
func (d *ramDisk) Close() error                { return nil }

// fakeTarget is a target of fakeTargets.
type fakeTarget struct {
	disk       *ramDisk
	chap       CHAP
	initiators []string // empty: any
}

type fakeTargets map[string]*fakeTarget

func (f fakeTargets) allowed(t *fakeTarget, initiator string) bool {
	if len(t.initiators) == 0 {
		return true
	}
	for _, i := range t.initiators {
		if i == initiator {
			return true
		}
	}
	return false
}

func (f fakeTargets) List(_ context.Context, initiator string, _ netip.Addr) ([]string, error) {
	var out []string
	for name, t := range f {
		if f.allowed(t, initiator) {
			out = append(out, name)
		}
	}
	return out, nil
}

func (f fakeTargets) Access(_ context.Context, target, initiator string, _ netip.Addr) (CHAP, error) {
	t, ok := f[target]
	if !ok {
		return CHAP{}, fmt.Errorf("%s: %w", target, ErrNotFound)
	}
	if !f.allowed(t, initiator) {
		return CHAP{}, fmt.Errorf("%s: %w", initiator, ErrNotAllowed)
	}
	return t.chap, nil
}

func (f fakeTargets) Open(ctx context.Context, target, initiator string, client netip.Addr) (Disk, error) {
	if _, err := f.Access(ctx, target, initiator, client); err != nil {
		return nil, err
	}
	if f[target].disk == nil {
		return nil, errors.New("the disk cannot open")
	}
	return f[target].disk, nil
}

// newTestServer returns a server of targets with the default limits,
// changed by tune when it is not nil, logging nowhere.
func newTestServer(t *testing.T, targets fakeTargets, tune func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Targets = targets
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tune != nil {
		tune(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// startServer serves targets on a loopback port with cfg's limits.
func startServer(t *testing.T, targets fakeTargets, tune func(*Config)) (string, *Server) {
	t.Helper()
	srv := newTestServer(t, targets, tune)
	return serve(t, srv), srv
}

// serve serves srv on a loopback port until the test ends.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// encode appends the PDU's wire form, with the data segment's length set
// from p.data, to b.
func (p *pdu) encode(b []byte, d digests) []byte {
	b = p.encodeHeader(b, d)
	if len(p.data) > 0 {
		b = append(b, p.data...)
		b = p.appendTrailer(b, d)
	}
	return b
}

// initiator is a minimal iSCSI initiator, written for these tests.
type initiator struct {
	t         *testing.T
	nc        net.Conn
	r         *bufio.Reader
	d         digests
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
	isid      [6]byte
	tsih      uint16
}

func dial(t *testing.T, addr string) *initiator {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &initiator{t: t, nc: nc, r: bufio.NewReader(nc), isid: [6]byte{0x80, 1, 2, 3, 4, 5}, cmdSN: 1}
}

func (in *initiator) send(p *pdu) {
	in.t.Helper()
	if err := in.trySend(p); err != nil {
		in.t.Fatal(err)
	}
}

// trySend is send for a goroutine other than the test's: it returns the
// error.
func (in *initiator) trySend(p *pdu) error {
	if _, err := in.nc.Write(p.encode(nil, in.d)); err != nil {
		return fmt.Errorf("send PDU: %w", err)
	}
	return nil
}

func (in *initiator) recv() *pdu {
	in.t.Helper()
	p, err := in.tryRecv()
	if err != nil {
		in.t.Fatal(err)
	}
	return p
}

// tryRecv is recv for a goroutine other than the test's.
func (in *initiator) tryRecv() (*pdu, error) {
	p, err := readPDU(in.r, 1<<24, in.d)
	if err != nil {
		return nil, fmt.Errorf("read PDU: %w", err)
	}
	if p.opcode() != opDataIn || p.flags()&1 != 0 {
		in.expStatSN = p.u32(24) + 1
	}
	return p, nil
}

// loginPDU is one Login Request.
func (in *initiator) loginPDU(csg, nsg byte, transit bool, keys textKeys) *pdu {
	p := newPDU(opLoginReq|0x40, csg<<2|nsg, in.itt)
	if transit {
		p.bhs[1] |= 0x80
	}
	copy(p.bhs[8:14], in.isid[:])
	p.bhs[14], p.bhs[15] = byte(in.tsih>>8), byte(in.tsih)
	p.put32(24, in.cmdSN)
	p.put32(28, in.expStatSN)
	p.data = encodeText(keys)
	return p
}

// exchange sends a login request and returns the response's status and
// keys.
func (in *initiator) exchange(csg, nsg byte, transit bool, keys textKeys) (loginStatus, textKeys, *pdu) {
	in.t.Helper()
	in.send(in.loginPDU(csg, nsg, transit, keys))
	r := in.recv()
	if r.opcode() != opLoginResp {
		in.t.Fatalf("opcode %#x, want a login response", r.opcode())
	}
	kv, err := parseText(r.data)
	if err != nil {
		in.t.Fatal(err)
	}
	return loginStatus(binary.BigEndian.Uint16(r.bhs[36:38])), kv, r
}

// operational keys an initiator offers.
var offer = textKeys{
	{"HeaderDigest", "None"}, {"DataDigest", "None"}, {"MaxRecvDataSegmentLength", "8192"},
	{"MaxBurstLength", "16384"}, {"FirstBurstLength", "4096"}, {"InitialR2T", "Yes"}, {"ImmediateData", "Yes"},
	{"MaxOutstandingR2T", "1"}, {"ErrorRecoveryLevel", "0"}, {"MaxConnections", "1"}, {"X-weft-unknown", "1"},
}

// loginNone logs in without authentication with the given operational
// keys and fails the test unless the session reaches the full feature
// phase.
func (in *initiator) loginNone(target string, ops textKeys) textKeys {
	in.t.Helper()
	first := textKeys{{"InitiatorName", "iqn.2000-01.test:ini"}, {"SessionType", "Normal"}, {"TargetName", target}, {"AuthMethod", "None"}}
	if target == "" {
		first = textKeys{{"InitiatorName", "iqn.2000-01.test:ini"}, {"SessionType", "Discovery"}, {"AuthMethod", "None"}}
	}
	st, kv, _ := in.exchange(stageSecurity, stageOperational, true, first)
	if st != statusSuccess {
		in.t.Fatalf("security stage: status %#04x", uint16(st))
	}
	if v, _ := kv.get("AuthMethod"); v != "None" {
		in.t.Fatalf("AuthMethod answered %q", v)
	}
	st, kv, r := in.exchange(stageOperational, stageFullFeature, true, ops)
	if st != statusSuccess || r.flags()&0x80 == 0 || r.flags()&3 != stageFullFeature {
		in.t.Fatalf("operational stage: status %#04x flags %#x", uint16(st), r.flags())
	}
	in.tsih = binary.BigEndian.Uint16(r.bhs[14:16])
	if in.tsih == 0 {
		in.t.Fatal("no TSIH in the final login response")
	}
	return kv
}

// scsiCmd sends a SCSI Command; immediate is sent as immediate data.
func (in *initiator) scsiCmd(cdb []byte, read, write bool, edtl int, immediate []byte, final bool) uint32 {
	in.t.Helper()
	p := in.cmdPDU(cdb, read, write, edtl, immediate, final)
	in.send(p)
	return p.itt()
}

// cmdPDU returns the next SCSI Command, with a tag and CmdSN of its own.
func (in *initiator) cmdPDU(cdb []byte, read, write bool, edtl int, immediate []byte, final bool) *pdu {
	in.itt++
	p := newPDU(opSCSICmd, 0, in.itt)
	if final {
		p.bhs[1] |= 0x80
	}
	if read {
		p.bhs[1] |= 0x40
	}
	if write {
		p.bhs[1] |= 0x20
	}
	p.put32(20, uint32(edtl))
	p.put32(24, in.cmdSN)
	p.put32(28, in.expStatSN)
	in.cmdSN++
	copy(p.bhs[32:48], cdb)
	p.data = immediate
	return p
}

func (in *initiator) dataOut(itt, ttt, dataSN uint32, off int, data []byte, final bool) {
	in.t.Helper()
	in.send(in.dataOutPDU(itt, ttt, dataSN, off, data, final))
}

func (in *initiator) dataOutPDU(itt, ttt, dataSN uint32, off int, data []byte, final bool) *pdu {
	p := newPDU(opDataOut, 0, itt)
	if final {
		p.bhs[1] = 0x80
	}
	p.put32(20, ttt)
	p.put32(28, in.expStatSN)
	p.put32(36, dataSN)
	p.put32(40, uint32(off))
	p.data = data
	return p
}

func cdb10(op byte, lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:6], lba)
	binary.BigEndian.PutUint16(c[7:9], blocks)
	return c
}

func num(t *testing.T, kv textKeys, key string) int {
	t.Helper()
	v, ok := kv.get(key)
	if !ok {
		t.Fatalf("no %s in %v", key, kv)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q", key, v)
	}
	return n
}
