package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const testIQN = "iqn.2026-11.io.weft:disk"

func oneTarget(chap CHAP, initiators ...string) fakeTargets {
	return fakeTargets{testIQN: {disk: &ramDisk{data: make([]byte, 1<<20)}, chap: chap, initiators: initiators}}
}

func TestLoginNegotiation(t *testing.T) {
	addr, _ := startServer(t, oneTarget(CHAP{}), nil)
	in := dial(t, addr)
	kv := in.loginNone(testIQN, append(slices.Clone(offer), textKeys{{"DefaultTime2Wait", "0"}, {"DefaultTime2Retain", "4000"},
		{"DataPDUInOrder", "No"}, {"IFMarker", "Yes"}, {"OFMarkInt", "2048~8192"}}...))
	want := map[string]string{
		"HeaderDigest": "None", "DataDigest": "None", "MaxBurstLength": "16384", "FirstBurstLength": "4096",
		"InitialR2T": "Yes", "ImmediateData": "Yes", "MaxOutstandingR2T": "1", "ErrorRecoveryLevel": "0",
		"MaxConnections": "1", "X-weft-unknown": "NotUnderstood",
		"DefaultTime2Wait": "2", "DefaultTime2Retain": "Reject", "DataPDUInOrder": "Yes", "IFMarker": "No", "OFMarkInt": "Irrelevant",
		"MaxRecvDataSegmentLength": strconv.Itoa(DefaultConfig().MaxRecvDataSegmentLength),
	}
	for k, v := range want {
		if got, _ := kv.get(k); got != v {
			t.Errorf("%s answered %q, want %q", k, got, v)
		}
	}
}

// chapLogin runs the security stage with CHAP as an initiator knowing
// user and secret; with targetSecret it challenges the target too and
// checks its answer. It returns the status of the response to CHAP_R.
func chapLogin(t *testing.T, in *initiator, user, secret string, targetChallenge []byte, targetSecret string) loginStatus {
	t.Helper()
	st, kv, _ := in.exchange(stageSecurity, stageOperational, false, textKeys{
		{"InitiatorName", "iqn.2000-01.test:ini"}, {"SessionType", "Normal"}, {"TargetName", testIQN}, {"AuthMethod", "CHAP,None"}})
	if m, _ := kv.get("AuthMethod"); st != statusSuccess || m != "CHAP" {
		t.Fatalf("AuthMethod: status %#04x, answer %q", uint16(st), m)
	}
	st, kv, _ = in.exchange(stageSecurity, stageOperational, false, textKeys{{"CHAP_A", "7,5"}})
	if a, _ := kv.get("CHAP_A"); st != statusSuccess || a != "5" {
		t.Fatalf("CHAP_A: status %#04x, answer %q", uint16(st), a)
	}
	id := num(t, kv, "CHAP_I")
	cs, _ := kv.get("CHAP_C")
	c, err := decodeCHAPBinary(cs)
	if err != nil || len(c) < 16 {
		t.Fatalf("CHAP_C %q: %v", cs, err)
	}
	reply := textKeys{{"CHAP_N", user}, {"CHAP_R", encodeCHAPBinary(chapResponse(byte(id), secret, c))}}
	if targetChallenge != nil {
		reply = append(reply, keyValue{"CHAP_I", "77"}, keyValue{"CHAP_C", encodeCHAPBinary(targetChallenge)})
	}
	st, kv, _ = in.exchange(stageSecurity, stageOperational, true, reply)
	if st == statusSuccess && targetChallenge != nil {
		r, _ := kv.get("CHAP_R")
		got, err := decodeCHAPBinary(r)
		if err != nil || !bytes.Equal(got, chapResponse(77, targetSecret, targetChallenge)) {
			t.Fatalf("the target's CHAP_R %q does not prove the target secret", r)
		}
	}
	return st
}

func TestLoginCHAP(t *testing.T) {
	chap := CHAP{User: "alice", Secret: "alice-secret-0123", TargetUser: "tgt", TargetSecret: "target-secret-4567"}
	addr, _ := startServer(t, oneTarget(chap), nil)

	if st := chapLogin(t, dial(t, addr), "alice", chap.Secret, nil, ""); st != statusSuccess {
		t.Fatalf("one-way CHAP with the right secret: status %#04x", uint16(st))
	}
	if st := chapLogin(t, dial(t, addr), "alice", "wrong-secret-0123", nil, ""); st != statusAuthFailure {
		t.Fatalf("wrong secret: status %#04x, want 0x0201", uint16(st))
	}
	if st := chapLogin(t, dial(t, addr), "bob", chap.Secret, nil, ""); st != statusAuthFailure {
		t.Fatalf("wrong user: status %#04x, want 0x0201", uint16(st))
	}
	in := dial(t, addr)
	if st := chapLogin(t, in, "alice", chap.Secret, []byte("a challenge of 16+ bytes"), chap.TargetSecret); st != statusSuccess {
		t.Fatalf("mutual CHAP: status %#04x", uint16(st))
	}
	st, _, r := in.exchange(stageOperational, stageFullFeature, true, offer)
	if st != statusSuccess || r.flags()&3 != stageFullFeature {
		t.Fatalf("after CHAP: status %#04x", uint16(st))
	}

	// Skipping the security stage, or offering only None, is refused.
	in = dial(t, addr)
	st, _, _ = in.exchange(stageOperational, stageFullFeature, true, append(textKeys{
		{"InitiatorName", "iqn.2000-01.test:ini"}, {"TargetName", testIQN}}, offer...))
	if st != statusAuthFailure {
		t.Fatalf("security stage skipped: status %#04x, want 0x0201", uint16(st))
	}
	in = dial(t, addr)
	st, _, _ = in.exchange(stageSecurity, stageOperational, true, textKeys{
		{"InitiatorName", "iqn.2000-01.test:ini"}, {"TargetName", testIQN}, {"AuthMethod", "None"}})
	if st != statusAuthFailure {
		t.Fatalf("AuthMethod=None to a CHAP target: status %#04x, want 0x0201", uint16(st))
	}
}

func TestLoginRefusals(t *testing.T) {
	targets := oneTarget(CHAP{}, "iqn.2000-01.test:allowed")
	targets["iqn.2026-11.io.weft:broken"] = &fakeTarget{}
	addr, srv := startServer(t, targets, nil)
	defer func() {
		// The session goes a moment after its connection closes.
		for deadline := time.Now().Add(5 * time.Second); len(srv.Sessions()) != 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%d sessions left by refused logins", len(srv.Sessions()))
				return
			}
		}
	}()
	for _, c := range []struct {
		name string
		keys textKeys
		want loginStatus
	}{
		{"unknown target", textKeys{{"InitiatorName", "iqn.2000-01.test:allowed"}, {"TargetName", "iqn.2026-11.io.weft:nope"}}, statusNotFound},
		{"initiator not allowed", textKeys{{"InitiatorName", "iqn.2000-01.test:other"}, {"TargetName", testIQN}}, statusNotAuthorized},
		{"no initiator name", textKeys{{"TargetName", testIQN}}, statusMissingParameter},
		{"no target name", textKeys{{"InitiatorName", "iqn.2000-01.test:allowed"}}, statusMissingParameter},
		{"target that cannot open", textKeys{{"InitiatorName", "iqn.2000-01.test:allowed"}, {"TargetName", "iqn.2026-11.io.weft:broken"}}, statusTargetError},
	} {
		in := dial(t, addr)
		st, _, _ := in.exchange(stageSecurity, stageFullFeature, true, append(c.keys, keyValue{"AuthMethod", "None"}))
		if st != c.want {
			t.Errorf("%s: status %#04x, want %#04x", c.name, uint16(st), uint16(c.want))
		}
		// The target closes the connection after a refusal.
		if _, err := readPDU(in.r, 1<<20, digests{}); err == nil {
			t.Errorf("%s: the connection stayed open", c.name)
		}
	}
}

func TestDiscovery(t *testing.T) {
	targets := oneTarget(CHAP{})
	targets["iqn.2026-11.io.weft:hidden"] = &fakeTarget{disk: &ramDisk{data: make([]byte, 4096)}, initiators: []string{"iqn.2000-01.test:someone-else"}}
	addr, _ := startServer(t, targets, nil)
	in := dial(t, addr)
	in.loginNone("", offer)
	p := newPDU(opTextReq|0x40, 0x80, 9)
	p.put32(20, reservedTag)
	p.put32(24, in.cmdSN)
	p.data = encodeText(textKeys{{"SendTargets", "All"}})
	in.send(p)
	r := in.recv()
	if r.opcode() != opTextResp || r.itt() != 9 || r.flags()&0x80 == 0 {
		t.Fatalf("text response: opcode %#x itt %d flags %#x", r.opcode(), r.itt(), r.flags())
	}
	want := "TargetName=" + testIQN + "\x00TargetAddress=" + addr + ",1\x00"
	if string(r.data) != want {
		t.Fatalf("SendTargets=All answered %q, want %q", r.data, want)
	}
	// A discovery session takes no SCSI command.
	in.scsiCmd([]byte{0}, false, false, 0, nil, true)
	if r := in.recv(); r.opcode() != opReject {
		t.Fatalf("SCSI command in a discovery session: opcode %#x, want a reject", r.opcode())
	}
}

// fullFeature logs in to a fresh target and returns the initiator and
// the target's disk.
func fullFeature(t *testing.T, ops textKeys) (*initiator, *ramDisk) {
	t.Helper()
	targets := oneTarget(CHAP{})
	addr, _ := startServer(t, targets, func(c *Config) { c.FirstBurstLength = 4096 })
	in := dial(t, addr)
	in.loginNone(testIQN, ops)
	return in, targets[testIQN].disk
}

func TestWriteWithR2TAndRead(t *testing.T) {
	in, disk := fullFeature(t, offer)
	// 40 KiB at LBA 8: 1 KiB of immediate data, then R2Ts of at most
	// MaxBurstLength (16 KiB) each.
	data := make([]byte, 40<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	itt := in.scsiCmd(cdb10(0x2a, 8, 80), false, true, len(data), data[:1024], true)
	got, r2ts := 1024, 0
	for got < len(data) {
		r := in.recv()
		if r.opcode() != opR2T || r.itt() != itt {
			t.Fatalf("want an R2T, got opcode %#x", r.opcode())
		}
		off, n := int(r.u32(40)), int(r.u32(44))
		if off != got || n > 16384 || r.u32(36) != uint32(r2ts) {
			t.Fatalf("R2T %d: offset %d length %d R2TSN %d", r2ts, off, n, r.u32(36))
		}
		for sn := 0; n > 0; sn++ {
			k := min(n, 8192)
			in.dataOut(itt, r.u32(20), uint32(sn), got, data[got:got+k], k == n)
			got, n = got+k, n-k
		}
		r2ts++
	}
	r := in.recv()
	if r.opcode() != opSCSIResp || r.itt() != itt || r.bhs[3] != 0 || r.bhs[2] != 0 {
		t.Fatalf("write response: opcode %#x status %#x", r.opcode(), r.bhs[3])
	}
	if r2ts != 3 || !bytes.Equal(disk.at(8*512, len(data)), data) {
		t.Fatalf("%d R2Ts, or the disk does not hold the data", r2ts)
	}

	// Read it back with an EDTL 512 bytes larger: Data-In PDUs of at
	// most 8 KiB, status and an underflow residual in the last.
	itt = in.scsiCmd(cdb10(0x28, 8, 80), true, false, len(data)+512, nil, true)
	var back []byte
	for sn := uint32(0); ; sn++ {
		r := in.recv()
		if r.opcode() != opDataIn || r.itt() != itt || r.u32(36) != sn || int(r.u32(40)) != len(back) || len(r.data) > 8192 {
			t.Fatalf("data-in %d: opcode %#x DataSN %d offset %d length %d", sn, r.opcode(), r.u32(36), r.u32(40), len(r.data))
		}
		back = append(back, r.data...)
		if r.flags()&1 != 0 {
			if r.flags()&0x02 == 0 || r.u32(44) != 512 || r.bhs[3] != 0 {
				t.Fatalf("last data-in: flags %#x residual %d status %#x", r.flags(), r.u32(44), r.bhs[3])
			}
			break
		}
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read back differs")
	}
}

func TestUnsolicitedData(t *testing.T) {
	ops := slices.Clone(offer)
	for i := range ops {
		if ops[i].key == "InitialR2T" {
			ops[i].value = "No"
		}
	}
	in, disk := fullFeature(t, ops)
	data := bytes.Repeat([]byte("weft"), 2048) // 8 KiB: 1 KiB immediate, 3 KiB unsolicited, 4 KiB by R2T
	itt := in.scsiCmd(cdb10(0x2a, 0, 16), false, true, len(data), data[:1024], false)
	in.dataOut(itt, reservedTag, 0, 1024, data[1024:4096], true)
	r := in.recv()
	if r.opcode() != opR2T || r.u32(40) != 4096 || r.u32(44) != 4096 {
		t.Fatalf("R2T after the first burst: opcode %#x offset %d length %d", r.opcode(), r.u32(40), r.u32(44))
	}
	in.dataOut(itt, r.u32(20), 0, 4096, data[4096:], true)
	if r := in.recv(); r.opcode() != opSCSIResp || r.bhs[3] != 0 {
		t.Fatalf("response: opcode %#x status %#x", r.opcode(), r.bhs[3])
	}
	if !bytes.Equal(disk.at(0, len(data)), data) {
		t.Fatal("the disk does not hold the data")
	}
}

func TestBadDataSN(t *testing.T) {
	in, _ := fullFeature(t, offer)
	itt := in.scsiCmd(cdb10(0x2a, 0, 8), false, true, 4096, nil, true)
	r := in.recv()
	in.dataOut(itt, r.u32(20), 5, 0, make([]byte, 4096), true)
	if r := in.recv(); r.opcode() != opReject {
		t.Fatalf("DataSN 5: opcode %#x, want a reject", r.opcode())
	}
	r = in.recv()
	if r.opcode() != opSCSIResp || r.bhs[3] != 0x02 || r.data[2+2]&0x0f != 0x0b {
		t.Fatalf("DataSN 5: response opcode %#x status %#x, want CHECK CONDITION, ABORTED COMMAND", r.opcode(), r.bhs[3])
	}
}

func TestNopTaskManagementLogout(t *testing.T) {
	in, _ := fullFeature(t, offer)
	// A ping is echoed with its data.
	p := newPDU(opNopOut|0x40, 0x80, 41)
	p.put32(20, reservedTag)
	p.put32(24, in.cmdSN)
	p.data = []byte("ping")
	in.send(p)
	if r := in.recv(); r.opcode() != opNopIn || r.itt() != 41 || string(r.data) != "ping" {
		t.Fatalf("NOP-In: opcode %#x itt %d data %q", r.opcode(), r.itt(), r.data)
	}
	// Aborting a task that does not exist.
	p = newPDU(opTaskMgmt|0x40, 0x80|tmfAbortTask, 42)
	p.put32(20, 999)
	p.put32(24, in.cmdSN)
	in.send(p)
	if r := in.recv(); r.opcode() != opTaskMgmtRsp || r.bhs[2] != tmfNoTask {
		t.Fatalf("ABORT TASK of no task: opcode %#x response %d", r.opcode(), r.bhs[2])
	}
	// Aborting a write waiting for its data: the write never answers,
	// the abort does.
	itt := in.scsiCmd(cdb10(0x2a, 0, 8), false, true, 4096, nil, true)
	if r := in.recv(); r.opcode() != opR2T {
		t.Fatalf("opcode %#x, want an R2T", r.opcode())
	}
	p = newPDU(opTaskMgmt|0x40, 0x80|tmfAbortTask, 43)
	p.put32(20, itt)
	p.put32(24, in.cmdSN)
	in.send(p)
	if r := in.recv(); r.opcode() != opTaskMgmtRsp || r.itt() != 43 || r.bhs[2] != tmfComplete {
		t.Fatalf("ABORT TASK: opcode %#x itt %d response %d", r.opcode(), r.itt(), r.bhs[2])
	}
	// LUN RESET of LUN 0, then an unknown opcode is rejected.
	p = newPDU(opTaskMgmt|0x40, 0x80|tmfLUNReset, 44)
	p.put32(20, reservedTag)
	in.send(p)
	if r := in.recv(); r.opcode() != opTaskMgmtRsp || r.bhs[2] != tmfComplete {
		t.Fatalf("LUN RESET: response %d", r.bhs[2])
	}
	in.send(newPDU(0x1c, 0x80, 45))
	if r := in.recv(); r.opcode() != opReject || r.bhs[2] != rejectNotSupported || !bytes.Equal(r.data[:1], []byte{0x1c}) {
		t.Fatalf("unknown opcode: opcode %#x reason %#x", r.opcode(), r.bhs[2])
	}
	// A command with a CmdSN outside the window is dropped: the next one
	// in order is answered.
	in.cmdSN += 1000
	in.scsiCmd([]byte{0}, false, false, 0, nil, true) // TEST UNIT READY
	in.cmdSN -= 1001
	itt = in.scsiCmd([]byte{0}, false, false, 0, nil, true)
	if r := in.recv(); r.opcode() != opSCSIResp || r.itt() != itt {
		t.Fatalf("after a dropped command: opcode %#x itt %d, want the response to %d", r.opcode(), r.itt(), itt)
	}
	p = newPDU(opLogoutReq|0x40, 0x80, 46)
	p.put32(24, in.cmdSN)
	in.send(p)
	if r := in.recv(); r.opcode() != opLogoutResp || r.bhs[2] != 0 {
		t.Fatalf("logout: opcode %#x response %d", r.opcode(), r.bhs[2])
	}
	if _, err := readPDU(in.r, 1<<20, digests{}); err == nil {
		t.Fatal("the connection stayed open after logout")
	}
}

func TestDigests(t *testing.T) {
	ops := slices.Clone(offer)
	ops[0].value, ops[1].value = "CRC32C,None", "CRC32C"
	targets := oneTarget(CHAP{})
	addr, _ := startServer(t, targets, nil)
	in := dial(t, addr)
	kv := in.loginNone(testIQN, ops)
	if h, _ := kv.get("HeaderDigest"); h != "CRC32C" {
		t.Fatalf("HeaderDigest answered %q", h)
	}
	in.d = digests{header: true, data: true}
	copy(targets[testIQN].disk.data, "digest")
	itt := in.scsiCmd(cdb10(0x28, 0, 1), true, false, 512, nil, true)
	r := in.recv()
	if r.opcode() != opDataIn || r.itt() != itt || !strings.HasPrefix(string(r.data), "digest") {
		t.Fatalf("read with digests: opcode %#x data %q", r.opcode(), r.data[:6])
	}
	// A PDU whose header digest is wrong ends the connection.
	b := newPDU(opNopOut|0x40, 0x80, 50).encode(nil, in.d)
	binary.LittleEndian.PutUint32(b[bhsLen:], 0)
	in.nc.Write(b)
	if _, err := readPDU(in.r, 1<<20, in.d); err == nil {
		t.Fatal("a bad header digest was answered")
	}
}

func TestSessionsAndReinstatement(t *testing.T) {
	addr, srv := startServer(t, oneTarget(CHAP{}), nil)
	a, b := dial(t, addr), dial(t, addr)
	b.isid[5] = 9
	a.loginNone(testIQN, offer)
	b.loginNone(testIQN, offer)
	if n := len(srv.Sessions()); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	// A second connection to a session is refused (MaxConnections=1),
	// and so is one naming no session.
	for tsih, want := range map[uint16]loginStatus{b.tsih: statusTooManyConns, 999: statusNoSession} {
		x := dial(t, addr)
		x.isid, x.tsih = b.isid, tsih
		if st, _, _ := x.exchange(stageSecurity, stageOperational, true, textKeys{
			{"InitiatorName", "iqn.2000-01.test:ini"}, {"TargetName", testIQN}, {"AuthMethod", "None"}}); st != want {
			t.Errorf("login with TSIH %d: status %#04x, want %#04x", tsih, uint16(st), uint16(want))
		}
	}
	// A new login with a's ISID replaces a's session.
	c := dial(t, addr)
	c.loginNone(testIQN, offer)
	if _, err := readPDU(a.r, 1<<20, digests{}); err == nil {
		t.Fatal("the reinstated session's connection stayed open")
	}
	if n := srv.Disconnect(testIQN); n != 2 {
		t.Fatalf("Disconnect ended %d sessions, want 2", n)
	}
}

func TestIdlePing(t *testing.T) {
	// 500 ms, not less: the idle timeout is also the time to answer the
	// ping, and a loaded CI machine can pause the test that long.
	addr, _ := startServer(t, oneTarget(CHAP{}), func(c *Config) { c.IdleTimeout = 500 * time.Millisecond })
	in := dial(t, addr)
	in.loginNone(testIQN, offer)
	r := in.recv()
	if r.opcode() != opNopIn || r.itt() != reservedTag || r.u32(20) == reservedTag {
		t.Fatalf("idle: opcode %#x itt %#x ttt %#x, want a NOP-In ping", r.opcode(), r.itt(), r.u32(20))
	}
	// Answered, the session goes on; unanswered, it ends.
	p := newPDU(opNopOut|0x40, 0x80, reservedTag)
	p.put32(20, r.u32(20))
	in.send(p)
	if r := in.recv(); r.opcode() != opNopIn {
		t.Fatalf("after the answer: opcode %#x, want the next ping", r.opcode())
	}
	if _, err := readPDU(in.r, 1<<20, digests{}); err == nil {
		t.Fatal("an initiator that does not answer pings kept its connection")
	}
}

func TestLongSendTargets(t *testing.T) {
	targets := fakeTargets{}
	for i := range 40 {
		targets[fmt.Sprintf("iqn.2026-11.io.weft:disk-with-a-long-name-%02d", i)] = &fakeTarget{disk: &ramDisk{data: make([]byte, 4096)}}
	}
	addr, _ := startServer(t, targets, nil)
	in := dial(t, addr)
	ops := slices.Clone(offer)
	ops[2].value = "512" // MaxRecvDataSegmentLength: the answer comes in pieces
	in.loginNone("", ops)
	p := newPDU(opTextReq|0x40, 0x80, 7)
	p.put32(20, reservedTag)
	p.data = encodeText(textKeys{{"SendTargets", "All"}})
	in.send(p)
	var all []byte
	for pieces := 1; ; pieces++ {
		r := in.recv()
		if r.opcode() != opTextResp || len(r.data) > 512 {
			t.Fatalf("piece %d: opcode %#x, %d bytes", pieces, r.opcode(), len(r.data))
		}
		all = append(all, r.data...)
		if r.flags()&0x40 == 0 {
			if pieces < 2 || r.flags()&0x80 == 0 {
				t.Fatalf("%d pieces, flags %#x", pieces, r.flags())
			}
			break
		}
		q := newPDU(opTextReq|0x40, 0x80, 7)
		q.put32(20, r.u32(20))
		in.send(q)
	}
	if n := strings.Count(string(all), "TargetName="); n != 40 {
		t.Fatalf("%d targets in the joined answer, want 40", n)
	}
}

// A read whose EDTL is larger than any command may move is refused before
// a buffer is sized from it: one small PDU asking for 4 GiB used to make
// the target allocate 4 GiB (a review found it), and 64 of them would take
// the daemon down.
func TestHugeReadEDTLIsRefused(t *testing.T) {
	in, _ := fullFeature(t, offer)
	var heap runtime.MemStats
	itt := in.scsiCmd(make([]byte, 6), true, false, 0xfffffff0, nil, true) // TEST UNIT READY flagged read
	r := in.recv()
	if r.opcode() != opSCSIResp || r.itt() != itt || r.bhs[3] != 0x02 || r.data[2+2]&0x0f != 0x05 {
		t.Fatalf("read with a 4 GiB EDTL: opcode %#x status %#x, want CHECK CONDITION, ILLEGAL REQUEST", r.opcode(), r.bhs[3])
	}
	runtime.ReadMemStats(&heap)
	if heap.HeapAlloc > 1<<30 {
		t.Fatalf("heap %d bytes after a refused 4 GiB read", heap.HeapAlloc)
	}
	// The connection still serves.
	in.scsiCmd(make([]byte, 6), false, false, 0, nil, true)
	if r := in.recv(); r.opcode() != opSCSIResp || r.bhs[3] != 0 {
		t.Fatalf("TEST UNIT READY after the refusal: opcode %#x status %#x", r.opcode(), r.bhs[3])
	}
}

// emfileListener fails its first accepts as a process out of file
// descriptors does.
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of file descriptors for a moment does not close the door
// until a restart (a review found Serve returned on the first such error).
func TestAcceptErrorsDoNotCloseTheDoor(t *testing.T) {
	srv := newTestServer(t, oneTarget(CHAP{}), nil)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: tcp}
	ln.fails.Store(5)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	in := dial(t, tcp.Addr().String())
	in.loginNone(testIQN, offer)
	select {
	case err := <-served:
		t.Fatalf("Serve returned after accept errors: %v", err)
	default:
	}
}

// CHAP's challenges and responses never reach the log.
func TestLoginLogLeavesCHAPOut(t *testing.T) {
	keys := textKeys{{"CHAP_N", "host1"}, {"CHAP_R", "0xabcdef"}, {"CHAP_C", "0x0102"}, {"AuthMethod", "CHAP"}}
	got := fmt.Sprint(keys.withoutCHAP())
	for _, secret := range []string{"host1", "0xabcdef", "0x0102"} {
		if strings.Contains(got, secret) {
			t.Fatalf("logged keys %s hold %q", got, secret)
		}
	}
	if !strings.Contains(got, "AuthMethod") || keys[1].value != "0xabcdef" {
		t.Fatalf("logged keys %s, or the keys themselves changed", got)
	}
}

// A target name typed in upper case is the same target: one name for the
// session, so Disconnect (disk rm --force) finds it.
func TestTargetNameCaseIsFolded(t *testing.T) {
	addr, srv := startServer(t, oneTarget(CHAP{}), nil)
	in := dial(t, addr)
	in.loginNone(strings.ToUpper(testIQN), offer)
	if n := srv.Disconnect(testIQN); n != 1 {
		t.Fatalf("Disconnect of %s ended %d sessions, want the one logged in as %s", testIQN, n, strings.ToUpper(testIQN))
	}
}

// A PDU that stops arriving halfway ends the connection, rather than the
// idle deadline firing inside it, pinging, and the next read starting in
// the middle of the PDU (a review found the split PDU's rest parsed as a
// header). Its first half arrived in time, so no ping is sent.
func TestPDUStalledMidwayEndsTheConnection(t *testing.T) {
	addr, _ := startServer(t, oneTarget(CHAP{}), func(c *Config) { c.IdleTimeout = 500 * time.Millisecond })
	in := dial(t, addr)
	in.loginNone(testIQN, offer)
	p := newPDU(opNopOut|0x40, 0x80, 5)
	p.put32(20, reservedTag)
	p.put32(24, in.cmdSN)
	b := p.encode(nil, in.d)
	if _, err := in.nc.Write(b[:24]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	in.nc.Write(b[24:])
	r, err := readPDU(in.r, 1<<20, digests{})
	if err == nil {
		t.Fatalf("a PDU stalled past the idle timeout got opcode %#x, want the connection closed", r.opcode())
	}
}

// Connections that never finish logging in are bounded too: past twice
// the sessions allowed, a new connection is closed at once (a review
// found them uncounted, each holding buffers for up to the login timeout).
func TestConnectionsLoggingInAreBounded(t *testing.T) {
	addr, _ := startServer(t, oneTarget(CHAP{}), func(c *Config) { c.MaxSessions = 2 })
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for range 4 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, nc)
	}
	// A fifth is closed by the target without a word (once it has
	// accepted the four, which stay open for their 15-s login timeout).
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = nc.Read(make([]byte, 1))
		nc.Close()
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a fifth connection beyond twice MaxSessions was kept open")
		}
	}
}

// A READ whose EDTL is short of its CDB reads only what the EDTL covers
// (a review found a 512-byte EDTL making the unit read and hold the CDB's
// 32 MiB), and still answers with the CDB's overflow residual.
func TestShortReadEDTLReadsOnlyWhatItCovers(t *testing.T) {
	in, disk := fullFeature(t, offer)
	copy(disk.data, bytes.Repeat([]byte{0x5a}, 512))
	itt := in.scsiCmd(cdb10(0x28, 0, 64), true, false, 512, nil, true)
	var got []byte
	for {
		r := in.recv()
		if r.itt() != itt {
			t.Fatalf("opcode %#x itt %d", r.opcode(), r.itt())
		}
		if r.opcode() == opDataIn {
			got = append(got, r.data...)
		}
		if r.opcode() == opSCSIResp || r.opcode() == opDataIn && r.flags()&1 != 0 {
			if r.bhs[3] != 0 || r.flags()&0x04 == 0 || r.u32(44) != 63*512 {
				t.Fatalf("status %#x flags %#x residual %d, want GOOD with an overflow of 63 blocks", r.bhs[3], r.flags(), r.u32(44))
			}
			break
		}
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, 512)) {
		t.Fatalf("read %d bytes, want the first block", len(got))
	}
	disk.mu.Lock()
	defer disk.mu.Unlock()
	if disk.maxRead > 512 {
		t.Fatalf("the disk was asked for %d bytes for a 512-byte EDTL", disk.maxRead)
	}
}

// TestLoginSpanningARulesChangeIsRefused: a login that checked its
// target's rules before a DisconnectIf (a change of those rules) is
// refused with 0x0301 at its end, not let in under the old rules; the
// next login passes.
func TestLoginSpanningARulesChangeIsRefused(t *testing.T) {
	addr, srv := startServer(t, oneTarget(CHAP{}), nil)
	in := dial(t, addr)
	keys := textKeys{{"InitiatorName", "iqn.2000-01.test:ini"}, {"TargetName", testIQN}, {"AuthMethod", "None"}}
	if st, _, _ := in.exchange(stageSecurity, stageOperational, true, keys); st != statusSuccess {
		t.Fatalf("security stage: status %#04x", uint16(st))
	}
	if n := srv.DisconnectIf(func(SessionInfo) bool { return true }); n != 0 {
		t.Fatalf("DisconnectIf ended %d sessions, want none (the login is not one yet)", n)
	}
	if st, _, _ := in.exchange(stageOperational, stageFullFeature, true, offer); st != statusUnavailable {
		t.Fatalf("login spanning a rules change: status %#04x, want 0x0301", uint16(st))
	}
	in = dial(t, addr)
	in.loginNone(testIQN, offer)
}
