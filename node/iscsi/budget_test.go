package iscsi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bufferObserver sums the server's Buffer reports and keeps their peak.
// The server reports bytes taken after it holds them and bytes given back
// before it lets them go, so the sum never exceeds what it holds.
type bufferObserver struct{ held, peak atomic.Int64 }

func (o *bufferObserver) Login(string)                             {}
func (o *bufferObserver) Command(string, int, time.Duration, bool) {}

func (o *bufferObserver) Buffer(delta int64) {
	n := o.held.Add(delta)
	for p := o.peak.Load(); n > p && !o.peak.CompareAndSwap(p, n); p = o.peak.Load() {
	}
}

// waitEmpty waits until the server holds no command data: a command
// gives its budget back just after its response is sent.
func (o *bufferObserver) waitEmpty(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); o.held.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d bytes of command data, want 0", o.held.Load())
		}
	}
}

// capServer serves a disk of size bytes with both budgets at their
// minimum, maxCommandData, and returns its address and observer.
func capServer(t *testing.T, size int) (string, *ramDisk, *bufferObserver) {
	t.Helper()
	obs := &bufferObserver{}
	disk := &ramDisk{data: make([]byte, size)}
	addr, _ := startServer(t, fakeTargets{testIQN: {disk: disk}}, func(c *Config) {
		c.Observer = obs
		c.BufferBytes, c.ServerBufferBytes = maxCommandData, maxCommandData
	})
	return addr, disk, obs
}

// bigOps are operational keys for large transfers: bursts of 1 MiB,
// Data-In PDUs of 256 KiB.
func bigOps() textKeys {
	ops := slices.Clone(offer)
	ops[2].value, ops[3].value, ops[4].value = "262144", "1048576", "65536"
	return ops
}

// session logs a new session in with bigOps; isid tells sessions apart.
func session(t *testing.T, addr string, isid byte) *initiator {
	t.Helper()
	in := dial(t, addr)
	in.isid[5] = isid
	in.loginNone(testIQN, bigOps())
	in.nc.SetDeadline(time.Now().Add(2 * time.Minute))
	return in
}

// extent is data at a logical block address.
type extent struct {
	lba  uint32
	data []byte
}

func (e extent) blocks() uint16 { return uint16(len(e.data) / 512) }

// writeAll writes the extents with their commands pipelined, answering
// the target's R2Ts, and sends again a command answered BUSY. It returns
// errors rather than fail the test: it runs on a goroutine of its own.
func (in *initiator) writeAll(exts []extent) (busy int, err error) {
	byITT := map[uint32]extent{}
	issue := func(e extent) error {
		p := in.cmdPDU(cdb10(0x2a, e.lba, e.blocks()), false, true, len(e.data), nil, true)
		byITT[p.itt()] = e
		return in.trySend(p)
	}
	for _, e := range exts {
		if err := issue(e); err != nil {
			return busy, err
		}
	}
	seg := DefaultConfig().MaxRecvDataSegmentLength
	for len(byITT) > 0 {
		r, err := in.tryRecv()
		if err != nil {
			return busy, err
		}
		e, ok := byITT[r.itt()]
		if !ok {
			return busy, fmt.Errorf("opcode %#x for tag %d, none of ours", r.opcode(), r.itt())
		}
		switch {
		case r.opcode() == opR2T:
			off, n := int(r.u32(40)), int(r.u32(44))
			for sn := 0; n > 0; sn++ {
				k := min(n, seg)
				if err := in.trySend(in.dataOutPDU(r.itt(), r.u32(20), uint32(sn), off, e.data[off:off+k], k == n)); err != nil {
					return busy, err
				}
				off, n = off+k, n-k
			}
		case r.opcode() == opSCSIResp && r.bhs[3] == statusBusy:
			busy++
			delete(byITT, r.itt())
			if err := issue(e); err != nil {
				return busy, err
			}
		case r.opcode() == opSCSIResp && r.bhs[3] == 0:
			delete(byITT, r.itt())
		default:
			return busy, fmt.Errorf("write at LBA %d: opcode %#x status %#x, want GOOD", e.lba, r.opcode(), r.bhs[3])
		}
	}
	return busy, nil
}

// readAll reads the extents with their commands pipelined and checks
// that each holds its data.
func (in *initiator) readAll(exts []extent) error {
	type reading struct {
		e   extent
		got []byte
	}
	byITT := map[uint32]*reading{}
	issue := func(e extent) error {
		p := in.cmdPDU(cdb10(0x28, e.lba, e.blocks()), true, false, len(e.data), nil, true)
		byITT[p.itt()] = &reading{e: e, got: make([]byte, len(e.data))}
		return in.trySend(p)
	}
	for _, e := range exts {
		if err := issue(e); err != nil {
			return err
		}
	}
	for len(byITT) > 0 {
		r, err := in.tryRecv()
		if err != nil {
			return err
		}
		rd, ok := byITT[r.itt()]
		if !ok {
			return fmt.Errorf("opcode %#x for tag %d, none of ours", r.opcode(), r.itt())
		}
		done := r.opcode() == opSCSIResp
		switch {
		case r.opcode() == opDataIn && int(r.u32(40))+len(r.data) <= len(rd.got):
			copy(rd.got[r.u32(40):], r.data)
			done = r.flags()&1 != 0
		case r.opcode() != opSCSIResp:
			return fmt.Errorf("read at LBA %d: opcode %#x offset %d length %d", rd.e.lba, r.opcode(), r.u32(40), len(r.data))
		}
		switch {
		case !done:
		case r.bhs[3] == statusBusy:
			delete(byITT, r.itt())
			if err := issue(rd.e); err != nil {
				return err
			}
		case r.bhs[3] != 0:
			return fmt.Errorf("read at LBA %d: status %#x, want GOOD", rd.e.lba, r.bhs[3])
		case !bytes.Equal(rd.got, rd.e.data):
			return fmt.Errorf("read at LBA %d: the data differs from what was written", rd.e.lba)
		default:
			delete(byITT, r.itt())
		}
	}
	return nil
}

// All sessions together hold at most ServerBufferBytes of command data,
// not each BufferBytes (a review found 256 sessions could hold 16 GiB):
// four sessions writing, then reading, three pipelined commands of 8 MiB
// each (96 MiB asked for at once) never hold more than the 32 MiB cap
// between them, and every command completes with its data.
func TestServerBufferCap(t *testing.T) {
	const sessions, perSession, size = 4, 3, 8 << 20
	addr, disk, obs := capServer(t, sessions*perSession*size)
	rng := rand.NewChaCha8([32]byte{12})
	work := make([][]extent, sessions)
	ins := make([]*initiator, sessions)
	for i := range sessions {
		for j := range perSession {
			e := extent{lba: uint32((i*perSession + j) * size / 512), data: make([]byte, size)}
			rng.Read(e.data)
			work[i] = append(work[i], e)
		}
		ins[i] = session(t, addr, byte(i))
	}
	var wg sync.WaitGroup
	errs, busy := make([]error, sessions), make([]int, sessions)
	for i, in := range ins {
		wg.Go(func() {
			busy[i], errs[i] = in.writeAll(work[i])
			if errs[i] == nil {
				errs[i] = in.readAll(work[i])
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("session %d: %v", i, err)
		}
	}
	for _, exts := range work {
		for _, e := range exts {
			if !bytes.Equal(disk.at(int(e.lba)*512, size), e.data) {
				t.Fatalf("the disk does not hold the data written at LBA %d", e.lba)
			}
		}
	}
	if peak := obs.peak.Load(); peak > maxCommandData || peak < size {
		t.Fatalf("%d bytes of command data held at the peak, want at most the cap %d (and at least one command's %d)", peak, maxCommandData, size)
	}
	obs.waitEmpty(t)
	t.Logf("peak %d bytes held of a %d-byte cap; %d writes answered BUSY and sent again", obs.peak.Load(), maxCommandData, busy[0]+busy[1]+busy[2]+busy[3])
}

// However a command ends, its budget goes back: aborted while its write
// waits for data, its connection dropped while it waits for data or for
// the budget itself, its session logged out. A read waiting for the
// server's budget gets it once an abort frees it.
func TestServerBufferGivenBack(t *testing.T) {
	addr, disk, obs := capServer(t, 40<<20)
	rand.NewChaCha8([32]byte{7}).Read(disk.data)

	// a: a write of nearly the whole cap waits for its data.
	a := session(t, addr, 1)
	const large = 65535 * 512
	held := a.scsiCmd(cdb10(0x2a, 0, 65535), false, true, large, nil, true)
	if r := a.recv(); r.opcode() != opR2T {
		t.Fatalf("opcode %#x, want an R2T", r.opcode())
	}
	if n := obs.held.Load(); n != large {
		t.Fatalf("%d bytes held, want the write's %d", n, large)
	}
	// b: a read of 1 MiB waits for the server's budget, and its
	// connection drops.
	b := session(t, addr, 2)
	b.scsiCmd(cdb10(0x28, 0, 2048), true, false, 1<<20, nil, true)
	b.nc.Close()
	// c: a read of 1 MiB waits for it too, and gets it when a's write is
	// aborted.
	c := session(t, addr, 3)
	read := c.scsiCmd(cdb10(0x28, 4096, 2048), true, false, 1<<20, nil, true)
	abort := newPDU(opTaskMgmt|0x40, 0x80|tmfAbortTask, 99)
	abort.put32(20, held)
	abort.put32(24, a.cmdSN)
	a.send(abort)
	if r := a.recv(); r.opcode() != opTaskMgmtRsp || r.bhs[2] != tmfComplete {
		t.Fatalf("ABORT TASK: opcode %#x response %d", r.opcode(), r.bhs[2])
	}
	var got []byte
	for {
		r := c.recv()
		if r.opcode() != opDataIn || r.itt() != read {
			t.Fatalf("read: opcode %#x tag %d, want Data-In for %d", r.opcode(), r.itt(), read)
		}
		got = append(got, r.data...)
		if r.flags()&1 != 0 {
			break
		}
	}
	if !bytes.Equal(got, disk.at(4096*512, 1<<20)) {
		t.Fatal("the read that waited for the budget returned other data")
	}
	obs.waitEmpty(t)

	// d: a write waiting for its data when its connection drops.
	d := session(t, addr, 4)
	d.scsiCmd(cdb10(0x2a, 0, 2048), false, true, 1<<20, nil, true)
	if r := d.recv(); r.opcode() != opR2T {
		t.Fatalf("opcode %#x, want an R2T", r.opcode())
	}
	d.nc.Close()
	obs.waitEmpty(t)

	// e: a write waiting for its data when its session logs out.
	e := session(t, addr, 5)
	e.scsiCmd(cdb10(0x2a, 0, 2048), false, true, 1<<20, nil, true)
	if r := e.recv(); r.opcode() != opR2T {
		t.Fatalf("opcode %#x, want an R2T", r.opcode())
	}
	logout := newPDU(opLogoutReq|0x40, 0x80, 98)
	logout.put32(24, e.cmdSN)
	e.send(logout)
	if r := e.recv(); r.opcode() != opLogoutResp {
		t.Fatalf("opcode %#x, want a logout response", r.opcode())
	}
	obs.waitEmpty(t)

	// f: a write larger than the whole cap is refused at once, as one
	// larger than any command may move, and holds nothing.
	f := session(t, addr, 6)
	f.scsiCmd(cdb10(0x2a, 0, 1), false, true, maxCommandData+512, nil, true)
	if r := f.recv(); r.opcode() != opSCSIResp || r.bhs[3] != 0x02 || r.data[2+2]&0x0f != 0x05 {
		t.Fatalf("a write over the cap: opcode %#x status %#x, want CHECK CONDITION, ILLEGAL REQUEST", r.opcode(), r.bhs[3])
	}
	if n := obs.held.Load(); n != 0 {
		t.Fatalf("%d bytes held after a refused write, want 0", n)
	}
	if peak := obs.peak.Load(); peak > maxCommandData {
		t.Fatalf("%d bytes held at the peak, over the cap %d", peak, maxCommandData)
	}
}

// An initiator silent for the idle timeout while it owes a write's
// Data-Out loses its session at once, giving the write's budget back,
// rather than being pinged and kept: otherwise a stalled initiator that
// answers pings would hold its share of the server's budget for as long
// as it liked.
func TestSilentWriterLosesItsSession(t *testing.T) {
	obs := &bufferObserver{}
	addr, _ := startServer(t, oneTarget(CHAP{}), func(c *Config) {
		c.Observer = obs
		c.IdleTimeout = 500 * time.Millisecond
	})
	in := dial(t, addr)
	in.loginNone(testIQN, offer)
	in.scsiCmd(cdb10(0x2a, 0, 8), false, true, 4096, nil, true)
	if r := in.recv(); r.opcode() != opR2T {
		t.Fatalf("opcode %#x, want an R2T", r.opcode())
	}
	if r, err := readPDU(in.r, 1<<20, digests{}); err == nil {
		t.Fatalf("a silent initiator owing data-out got opcode %#x, want its connection closed", r.opcode())
	}
	obs.waitEmpty(t)
}
