package iscsi

import (
	"bufio"
	"context"
	"net"
	"testing"
	"testing/synctest"
)

// An ABORT TASK that arrives while its task's response is already on its
// way does not abort it: the initiator gets the response, then "Task
// does not exist", never both a GOOD status and "Function complete"
// (RFC 7143 section 11.5.1: the task ended, it was not terminated).
// libiscsi's iSCSITMF.AbortTaskSimpleAsync failed about once in a hundred
// runs on that: finish checked the abort mark, then sent, while the
// abort, finding the task still listed, marked it and answered
// "Function complete" once the response was out.
//
// The connection runs over net.Pipe in a synctest bubble, so the
// interleaving is exact: the test does not read while the write's
// response is being sent, and synctest.Wait returns once that send is
// blocked on the pipe, past any check finish makes before sending.
func TestAbortOfATaskBeingAnsweredFindsNoTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, oneTarget(CHAP{}), nil)
		cli, nc := net.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		served := make(chan struct{})
		go func() {
			defer close(served)
			srv.serveConn(ctx, nc)
		}()
		defer func() {
			cli.Close()
			cancel()
			<-served
		}()
		in := &initiator{t: t, nc: cli, r: bufio.NewReader(cli), isid: [6]byte{0x80, 1, 2, 3, 4, 5}, cmdSN: 1}
		in.loginNone(testIQN, offer)

		// Immediate data: the write runs at once, and its response
		// blocks on the pipe the test is not reading.
		itt := in.scsiCmd(cdb10(0x2a, 0, 1), false, true, 512, make([]byte, 512), true)
		synctest.Wait()

		abort := newPDU(opTaskMgmt|0x40, 0x80|tmfAbortTask, 1000)
		abort.put32(20, itt)
		abort.put32(24, in.cmdSN)
		in.send(abort)

		r := in.recv()
		if r.opcode() != opSCSIResp || r.itt() != itt || r.bhs[3] != 0 {
			t.Fatalf("first answer: opcode %#x itt %d status %#x, want the write's GOOD response (itt %d)", r.opcode(), r.itt(), r.bhs[3], itt)
		}
		r = in.recv()
		if r.opcode() != opTaskMgmtRsp || r.itt() != 1000 || r.bhs[2] != tmfNoTask {
			t.Fatalf("ABORT TASK of an answered write: opcode %#x itt %d response %d, want response %d (task does not exist)",
				r.opcode(), r.itt(), r.bhs[2], tmfNoTask)
		}
	})
}
