package iscsi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/weft-mesh/weft/node/scsi"
)

// conn is one connection, which is one session (MaxConnections=1).
type conn struct {
	srv    *Server
	nc     net.Conn
	r      *bufio.Reader
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	client netip.Addr

	// Set during login, read-only after it.
	initiator, target string
	discovery         bool
	// loginRules is Server.rules when the login checked the target's
	// rules (Targets.Access).
	loginRules uint64
	isid       [6]byte
	tsih       uint16
	loginITT   uint32
	registered bool
	p          params
	disk       Disk
	lu         *scsi.LU
	budget     *semaphore.Weighted // the connection's share (budget.go)

	wmu  sync.Mutex // serialises sends, and with them StatSN
	wbuf []byte

	mu        sync.Mutex // guards what follows
	statSN    uint32
	expCmdSN  uint32
	maxCmdSN  uint32 // the last MaxCmdSN sent
	windowSet bool
	inflight  int
	tasks     map[uint32]*task // by ITT: commands running or collecting data
	nextTTT   uint32
	text      *textState
	closeOnce sync.Once
	workers   sync.WaitGroup
	// ended is closed once the connection is closed, its commands are
	// done, its disk is closed and it is no longer a session: what a
	// login reinstating it waits for.
	ended chan struct{}
}

// task is a SCSI command between its arrival and its status.
type task struct {
	itt      uint32
	lun      uint64
	cdb      []byte
	edtl     int
	want     int // data-out asked for: the EDTL, cut to the CDB's transfer
	read     bool
	write    bool
	buf      []byte  // data-out: want bytes, or what came unsolicited
	readBuf  *[]byte // pooled data-in buffer, returned by finish
	writeBuf *[]byte // pooled buf, returned by drop
	got      int     // data-out bytes received
	reserved int64   // bytes taken from the budgets (budget.go)
	// ttt is the Target Transfer Tag of the outstanding R2T (reservedTag
	// while unsolicited data may come), r2tEnd the end of its burst.
	ttt     uint32
	r2tEnd  int
	r2tSN   uint32
	dataSN  uint32 // the DataSN the next Data-Out of the burst must have
	running bool
	// dataTimer ends the connection if a write's data is not all in
	// within DataOutTimeout; stopped once the write runs or is dropped.
	dataTimer *time.Timer
	ctx       context.Context
	cancel    context.CancelFunc
	// outcome is taskPending until finish claims the task's response
	// (taskAnswered) or a task management function aborts it
	// (taskAborted), whichever comes first: a task is never both
	// answered and reported aborted.
	outcome atomic.Int32
	done    chan struct{}
}

// A task's outcomes (task.outcome).
const (
	taskPending int32 = iota
	taskAnswered
	taskAborted
)

// textState is a text response sent in pieces (C bit) or a request
// received in pieces.
type textState struct {
	itt     uint32
	ttt     uint32
	pending []byte // response bytes not yet sent
	request []byte // request data continued so far
}

func newConn(ctx context.Context, s *Server, nc net.Conn, client netip.Addr) *conn {
	ctx, cancel := context.WithCancel(ctx)
	c := &conn{
		srv: s, nc: nc, r: bufio.NewReaderSize(nc, 64<<10), ctx: ctx, cancel: cancel, client: client,
		log: s.log.With("client", client.String()), p: defaultParams(), tasks: map[uint32]*task{},
		budget: semaphore.NewWeighted(s.cfg.BufferBytes), ended: make(chan struct{}),
	}
	context.AfterFunc(ctx, func() { nc.Close() })
	return c
}

// close ends the connection; its reader and commands stop.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.nc.Close()
	})
}

// release waits for the connection's commands, drops the writes still
// collecting data-out (giving their budget back) and closes its disk.
func (c *conn) release() {
	c.close()
	c.workers.Wait()
	for _, t := range c.allTasks() {
		c.drop(t)
	}
	if c.disk != nil {
		if err := c.disk.Close(); err != nil {
			c.log.Warn("close target", "err", err)
		}
	}
	if c.registered {
		c.log.Info("iscsi session ended")
	}
}

// send writes one target PDU, filling StatSN, ExpCmdSN and MaxCmdSN;
// status PDUs (advance) take a StatSN of their own.
func (c *conn) send(p *pdu, advance bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	op := p.opcode()
	if op != opDataIn || advance {
		p.put32(24, c.statSN)
	}
	if advance {
		c.statSN++
	}
	p.put32(28, c.expCmdSN)
	p.put32(32, c.window())
	c.mu.Unlock()
	d := c.p.digests
	if op == opLoginResp {
		d = digests{} // digests start with the full feature phase
	}
	// The header and the data go out in one writev: the data (a read's
	// blocks) is not copied into a buffer first.
	c.wbuf = p.encodeHeader(c.wbuf[:0], d)
	hdr := len(c.wbuf)
	c.wbuf = p.appendTrailer(c.wbuf, d)
	bufs := net.Buffers{c.wbuf[:hdr], p.data, c.wbuf[hdr:]}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	_, err := bufs.WriteTo(c.nc)
	if err != nil {
		c.close()
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// window returns MaxCmdSN: room for QueueDepth commands at once. It
// never goes back (RFC 7143 section 4.2.2.1). Call with c.mu held.
func (c *conn) window() uint32 {
	m := c.expCmdSN + uint32(max(c.srv.cfg.QueueDepth-c.inflight, 0)) - 1
	if int32(m-c.maxCmdSN) > 0 || !c.windowSet {
		c.maxCmdSN, c.windowSet = m, true
	}
	return c.maxCmdSN
}

// reject answers a PDU the target cannot take (RFC 7143 section 11.17).
func (c *conn) reject(p *pdu, reason byte) {
	r := newPDU(opReject, 0x80, reservedTag)
	r.bhs[2] = reason
	r.data = append([]byte(nil), p.bhs[:]...)
	c.send(r, true)
}

// Reject reasons.
const (
	rejectDataDigest    = 0x02
	rejectProtocolError = 0x04
	rejectNotSupported  = 0x05
	rejectInvalidField  = 0x09
)

// serve runs the full feature phase until the initiator logs out or the
// connection fails.
func (c *conn) serve() {
	idle := c.srv.cfg.IdleTimeout
	pinged := false
	for {
		// The idle deadline covers the wait for a PDU's first byte only:
		// a timeout in the middle of a PDU would lose the bytes read so
		// far and the next read would start inside the PDU, parsing
		// data as headers. Once a PDU has begun it must arrive within
		// IdleTimeout, or the connection ends.
		c.nc.SetReadDeadline(time.Now().Add(idle))
		_, err := c.r.Peek(1)
		var p *pdu
		if err == nil {
			c.nc.SetReadDeadline(time.Now().Add(idle))
			p, err = readPDU(c.r, c.srv.cfg.MaxRecvDataSegmentLength, c.p.digests)
			if err != nil && !errors.Is(err, errDigest) {
				if c.ctx.Err() == nil {
					c.log.Debug("iscsi connection read", "err", err)
				}
				return
			}
		}
		var ne net.Error
		switch {
		case err == nil:
			pinged = false
		case errors.As(err, &ne) && ne.Timeout() && c.collecting() > 0:
			// Silent while owing a write's Data-Out: the write holds its
			// share of the server's budget, which other sessions wait
			// for, so a stuck or hostile initiator loses its session
			// (level 0 has no finer recovery) rather than get pinged.
			c.log.Warn("iscsi initiator silent while owing data-out, closing the connection", "idle", idle)
			return
		case errors.As(err, &ne) && ne.Timeout() && !pinged && c.ctx.Err() == nil:
			// Silent for a while: ping, and give up if it stays silent.
			pinged = true
			ping := newPDU(opNopIn, 0x80, reservedTag)
			c.mu.Lock()
			c.nextTTT++
			ttt := c.nextTTT & 0x7fffffff
			c.mu.Unlock()
			ping.put32(20, ttt)
			c.send(ping, false)
			continue
		case errors.Is(err, errDigest) && p != nil:
			// A data digest error at error recovery level 0: the PDU is
			// rejected and the connection ends, as the command cannot be
			// recovered.
			c.reject(p, rejectDataDigest)
			c.log.Warn("iscsi data digest error, closing the connection")
			return
		default:
			if c.ctx.Err() == nil {
				c.log.Debug("iscsi connection read", "err", err)
			}
			return
		}
		goOn := c.handle(p)
		if p.pooled != nil {
			putBuffer(p.pooled)
		}
		if !goOn {
			return
		}
	}
}

// handle acts on one PDU and reports whether the connection goes on.
func (c *conn) handle(p *pdu) bool {
	op := p.opcode()
	switch op {
	case opDataOut:
		return c.dataOut(p)
	case opNopOut:
		if p.itt() == reservedTag {
			return true // the answer to a ping
		}
	case opSNACK:
		c.reject(p, rejectProtocolError) // no SNACK at error recovery level 0
		return true
	case opSCSICmd, opTaskMgmt, opTextReq, opLogoutReq:
	case opLoginReq:
		c.reject(p, rejectProtocolError)
		return true
	default:
		c.reject(p, rejectNotSupported)
		return true
	}
	if !c.acceptCmdSN(p) {
		return true
	}
	switch op {
	case opNopOut:
		r := newPDU(opNopIn, 0x80, p.itt())
		copy(r.bhs[8:16], p.bhs[8:16])
		r.put32(20, reservedTag)
		r.data = p.data[:min(len(p.data), c.p.sendMax)]
		c.send(r, true)
	case opSCSICmd:
		c.command(p)
	case opTaskMgmt:
		c.taskManagement(p)
	case opTextReq:
		c.textRequest(p)
	case opLogoutReq:
		c.logout(p)
		return false
	}
	return true
}

// acceptCmdSN checks a command's CmdSN against the window and advances
// ExpCmdSN. With one connection per session commands arrive in order: a
// CmdSN that is not the expected one, or beyond the advertised window, is
// dropped, as RFC 7143 section 4.2.2.1 asks.
func (c *conn) acceptCmdSN(p *pdu) bool {
	sn := p.u32(24)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.immediate() {
		return true
	}
	if sn != c.expCmdSN || int32(sn-c.window()) > 0 {
		c.log.Debug("iscsi command outside the CmdSN window dropped", "cmdsn", sn, "expcmdsn", c.expCmdSN)
		return false
	}
	c.expCmdSN++
	return true
}

// lun0 reports whether an iSCSI LUN field names LUN 0.
func lun0(l uint64) bool { return l == 0 }

// command starts a SCSI command: it collects the command's data-out, then
// runs it.
func (c *conn) command(p *pdu) {
	if c.discovery {
		c.reject(p, rejectProtocolError)
		return
	}
	flags := p.flags()
	t := &task{
		itt: p.itt(), lun: p.lun(), edtl: int(p.u32(20)),
		read: flags&0x40 != 0, write: flags&0x20 != 0, ttt: reservedTag, done: make(chan struct{}),
	}
	t.cdb = append([]byte(nil), p.bhs[32:48]...)
	if len(p.ahs) > 0 {
		// An extended CDB AHS (type 1) carries the bytes past 16.
		ahsLen := int(p.ahs[0])<<8 | int(p.ahs[1])
		if p.ahs[2] != 1 || ahsLen < 1 || 3+ahsLen > len(p.ahs) {
			c.reject(p, rejectNotSupported)
			return
		}
		t.cdb = append(t.cdb, p.ahs[4:3+ahsLen]...)
	}
	t.ctx, t.cancel = context.WithCancel(c.ctx)
	c.mu.Lock()
	if _, dup := c.tasks[t.itt]; dup {
		c.mu.Unlock()
		c.reject(p, rejectInvalidField)
		return
	}
	c.inflight++
	full := c.inflight > 2*c.srv.cfg.QueueDepth // immediate commands beyond the window
	c.tasks[t.itt] = t
	c.mu.Unlock()

	switch {
	case full:
		c.finish(t, scsi.Result{Status: statusTaskSetFull}, 0)
		return
	case t.read && t.write:
		c.finish(t, checkCondition(senseInvalidField), 0)
		return
	case t.edtl > maxCommandData:
		// Reads too: a read's buffer is sized from its EDTL, and one
		// small PDU asking for 4 GiB would otherwise take the daemon down.
		c.finish(t, checkCondition(senseInvalidField), 0)
		return
	case !t.write:
		if len(p.data) > 0 {
			c.finish(t, checkCondition(senseInvalidField), 0)
			return
		}
		c.run(t)
		return
	}
	if lun0(t.lun) {
		// A write a read-only LUN (a replica, a spacesuit) can only
		// refuse is answered now: no R2T, no budget taken, and its
		// immediate and unsolicited data dropped (dataOut finds no task).
		if res, refused := c.lu.Preflight(t.ctx, t.cdb); refused {
			c.finish(t, res, 0)
			return
		}
	}
	if len(p.data) > 0 && (!c.p.immediateData || len(p.data) > min(c.p.firstBurst, t.edtl)) {
		c.reject(p, rejectProtocolError)
		c.drop(t)
		return
	}
	// Ask for no more than the CDB transfers: an EDTL beyond it is an
	// underflow (residual EDTL minus the CDB's length, RFC 7143 section
	// 11.4.5.1), its excess never solicited. A CDB whose length cannot be
	// read takes no data (scsi.DataOutLen); Execute refuses it.
	need, err := scsi.DataOutLen(t.cdb, scsi.LogicalBlockSize)
	if err != nil {
		need = 0
	}
	t.want = min(t.edtl, need)
	// Unsolicited Data-Out follows unless the command's F bit says none
	// does (it is set whenever InitialR2T=Yes); what comes unasked is
	// held, up to the first burst, even past what the CDB wants.
	unsolicited := flags&0x80 == 0 && !c.p.initialR2T
	size := max(t.want, len(p.data))
	if unsolicited {
		size = max(size, min(c.p.firstBurst, t.edtl))
	}
	if !c.tryReserve(int64(size)) {
		// Waiting here stops the reader, which the writes collecting
		// data-out need: with any of them, the command is answered BUSY
		// (the initiator retries it) rather than deadlock the connection.
		if c.collecting() > 0 {
			c.finish(t, scsi.Result{Status: statusBusy}, 0)
			return
		}
		if err := c.reserve(c.ctx, int64(size)); err != nil {
			c.drop(t)
			return
		}
	}
	t.reserved = int64(size)
	t.dataTimer = time.AfterFunc(c.srv.cfg.DataOutTimeout, func() {
		// A write whose data trickles in holds its budget share however
		// steadily it comes; the idle timeout alone would not end it.
		c.log.Warn("iscsi write data not in within the data-out timeout, closing the connection",
			"itt", t.itt, "timeout", c.srv.cfg.DataOutTimeout)
		c.close()
	})
	t.writeBuf = getBuffer(size)
	t.buf = (*t.writeBuf)[:size]
	t.got = copy(t.buf, p.data)
	if unsolicited {
		t.r2tEnd = min(c.p.firstBurst, t.edtl)
		return
	}
	c.nextBurst(t)
}

// allTasks lists the connection's tasks.
func (c *conn) allTasks() []*task {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.tasks))
}

// collecting counts the tasks waiting for data-out.
func (c *conn) collecting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.tasks {
		if t.write && !t.running {
			n++
		}
	}
	return n
}

// nextBurst asks for a write's next burst of data, or runs the write once
// it has all of it.
func (c *conn) nextBurst(t *task) {
	if t.got >= t.want {
		c.run(t)
		return
	}
	n := min(c.p.maxBurst, t.want-t.got)
	c.mu.Lock()
	c.nextTTT++
	t.ttt = c.nextTTT & 0x7fffffff
	c.mu.Unlock()
	t.r2tEnd = t.got + n
	t.dataSN = 0
	r := newPDU(opR2T, 0x80, t.itt)
	putLUN(r, t.lun)
	r.put32(20, t.ttt)
	r.put32(36, t.r2tSN)
	r.put32(40, uint32(t.got))
	r.put32(44, uint32(n))
	t.r2tSN++
	c.send(r, false)
}

// dataOut takes a Data-Out PDU for a write collecting its data, and
// reports whether the connection goes on. Data out of sequence (DataSN,
// offset, transfer tag) is a protocol error that error recovery level 0
// cannot repair: the PDU is rejected and the connection closed.
func (c *conn) dataOut(p *pdu) bool {
	c.mu.Lock()
	t := c.tasks[p.itt()]
	c.mu.Unlock()
	if t == nil || t.running || !t.write {
		return true // a task aborted or refused: its data is dropped
	}
	off := int(p.u32(40))
	if p.u32(20) != t.ttt || p.u32(36) != t.dataSN || off != t.got || off+len(p.data) > t.r2tEnd {
		c.log.Warn("iscsi data-out out of sequence: command ended with DATA PHASE ERROR",
			"itt", t.itt, "datasn", p.u32(36), "want_datasn", t.dataSN, "offset", off, "want_offset", t.got)
		c.reject(p, rejectProtocolError)
		c.finish(t, checkCondition(senseDataPhaseError), 0)
		return true
	}
	t.dataSN++
	t.got += copy(t.buf[off:], p.data)
	if p.final() || t.got >= t.r2tEnd {
		if t.got < t.r2tEnd && t.ttt != reservedTag {
			c.reject(p, rejectProtocolError)
			c.finish(t, checkCondition(senseDataPhaseError), 0)
			return true
		}
		c.nextBurst(t)
	}
	return true
}

// run executes a task on a worker.
func (c *conn) run(t *task) {
	t.running = true
	if t.dataTimer != nil {
		t.dataTimer.Stop()
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		c.execute(t)
	}()
}

func (c *conn) execute(t *task) {
	if t.read && t.reserved == 0 && t.edtl > 0 {
		n := int64(min(t.edtl, maxCommandData))
		if err := c.reserve(t.ctx, n); err != nil {
			c.drop(t)
			return
		}
		t.reserved = n
	}
	start := time.Now()
	var res scsi.Result
	need := 0
	if !lun0(t.lun) {
		res = c.otherLUN(t)
	} else {
		res, need = c.executeLU(t)
	}
	if o := c.srv.cfg.Observer; o != nil {
		op, n := "other", 0
		switch {
		case t.read:
			op, n = "read", len(res.DataIn)
		case t.write:
			op, n = "write", min(need, t.edtl)
		}
		o.Command(op, n, time.Since(start), res.Status == scsi.StatusGood || res.Status == scsi.StatusConditionMet)
	}
	c.finish(t, res, need)
}

// executeLU runs a command on LUN 0 and returns its result and the
// data-out length its CDB asks for. A READ or WRITE whose Expected Data
// Transfer Length is short of its CDB's transfer length moves only the
// whole blocks the EDTL covers, with an overflow residual, as SAM-5
// section 5.4.1 (and libiscsi's residual tests) ask.
func (c *conn) executeLU(t *task) (scsi.Result, int) {
	alloc := 0
	if t.read {
		alloc = t.edtl
	}
	if !t.write {
		cmd := scsi.Command{CDB: t.cdb, AllocLen: alloc}
		if lba, n, set := readExtent(t.cdb); set != nil && n*scsi.LogicalBlockSize > uint64(alloc) &&
			lba+n >= lba && lba+n <= uint64(c.disk.Size())/scsi.LogicalBlockSize {
			// A READ whose EDTL is short of its CDB reads only the whole
			// blocks the EDTL reaches into (the rest would be cut anyway), so a
			// small EDTL cannot make the unit read and hold its CDB's
			// 32 MiB; the residual still counts the CDB's length.
			cmd.CDB = append([]byte(nil), t.cdb...)
			set(cmd.CDB, uint32((alloc+scsi.LogicalBlockSize-1)/scsi.LogicalBlockSize))
			res := c.lu.Execute(t.ctx, cmd)
			if res.Status == scsi.StatusGood {
				res.Length = int(n * scsi.LogicalBlockSize)
			}
			return res, 0
		}
		if alloc >= minPooled {
			// A read fills a pooled buffer instead of a fresh, zeroed
			// one; finish sends it before it goes back.
			t.readBuf = getBuffer(alloc)
			cmd.Buffer = (*t.readBuf)[:alloc]
		}
		return c.lu.Execute(t.ctx, cmd), 0
	}
	data := t.buf[:t.got]
	need, err := scsi.DataOutLen(t.cdb, scsi.LogicalBlockSize)
	if err != nil {
		return c.lu.Execute(t.ctx, scsi.Command{CDB: t.cdb, DataOut: data}), 0
	}
	switch {
	case t.edtl >= need && blockTransfer(t.cdb) != nil:
		data = data[:need]
	case blockTransfer(t.cdb) != nil:
		cdb := append([]byte(nil), t.cdb...)
		blocks := t.edtl / scsi.LogicalBlockSize
		blockTransfer(cdb)(uint32(blocks))
		return c.lu.Execute(t.ctx, scsi.Command{CDB: cdb, DataOut: data[:blocks*scsi.LogicalBlockSize]}), need
	}
	// Any other command gets the data collected and the EDTL as what the
	// initiator meant to send: the unit refuses a size its CDB does not
	// ask for (WRITE SAME, COMPARE AND WRITE), cuts what it takes (UNMAP,
	// ORWRITE) or ignores data it takes none of (a READ flagged as a
	// write).
	return c.lu.Execute(t.ctx, scsi.Command{CDB: t.cdb, DataOut: data, SentLen: t.edtl}), need
}

// blockTransfer returns a setter of the transfer length (in blocks) of a
// WRITE or WRITE AND VERIFY 10, 12 or 16 CDB, nil for any other command.
func blockTransfer(cdb []byte) func(uint32) {
	put16 := func(b []byte) func(uint32) { return func(n uint32) { b[0], b[1] = byte(n>>8), byte(n) } }
	put32 := func(b []byte) func(uint32) {
		return func(n uint32) { b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n) }
	}
	switch {
	case (cdb[0] == 0x2a || cdb[0] == 0x2e) && len(cdb) >= 10:
		return put16(cdb[7:9])
	case (cdb[0] == 0xaa || cdb[0] == 0xae) && len(cdb) >= 12:
		return put32(cdb[6:10])
	case (cdb[0] == 0x8a || cdb[0] == 0x8e) && len(cdb) >= 16:
		return put32(cdb[10:14])
	}
	return nil
}

// readExtent returns the LBA and transfer length (in blocks) of a READ
// 10, 12 or 16 CDB and a setter of its length; nil for any other command.
func readExtent(cdb []byte) (lba, n uint64, set func([]byte, uint32)) {
	be := binary.BigEndian
	switch {
	case cdb[0] == 0x28 && len(cdb) >= 10:
		return uint64(be.Uint32(cdb[2:])), uint64(be.Uint16(cdb[7:])), func(c []byte, n uint32) { be.PutUint16(c[7:], uint16(n)) }
	case cdb[0] == 0xa8 && len(cdb) >= 12:
		return uint64(be.Uint32(cdb[2:])), uint64(be.Uint32(cdb[6:])), func(c []byte, n uint32) { be.PutUint32(c[6:], n) }
	case cdb[0] == 0x88 && len(cdb) >= 16:
		return be.Uint64(cdb[2:]), uint64(be.Uint32(cdb[10:])), func(c []byte, n uint32) { be.PutUint32(c[10:], n) }
	}
	return 0, 0, nil
}

// otherLUN answers a command to a LUN other than 0: REPORT LUNS and
// INQUIRY are served (INQUIRY says no unit is there), anything else is
// refused with LOGICAL UNIT NOT SUPPORTED.
func (c *conn) otherLUN(t *task) scsi.Result {
	alloc := 0
	if t.read {
		alloc = t.edtl
	}
	switch t.cdb[0] {
	case 0xa0: // REPORT LUNS
		d := scsi.ReportLUNs([]uint64{0}, alloc)
		return scsi.Result{DataIn: d, Length: len(d)}
	case 0x12: // INQUIRY
		if t.cdb[1]&1 == 0 {
			d := make([]byte, 36)
			d[0] = 0x7f // peripheral qualifier 011b: no unit at this LUN
			d[2], d[3], d[4] = 6, 2, 31
			n := min(len(d), int(t.cdb[3])<<8|int(t.cdb[4]))
			return scsi.Result{DataIn: d[:min(n, alloc)], Length: n}
		}
	}
	return checkCondition(senseLUNNotSupported)
}

// Sense data the transport itself raises (fixed format, ILLEGAL REQUEST).
var (
	senseInvalidField    = fixedSense(0x05, 0x24, 0x00) // INVALID FIELD IN CDB
	senseLUNNotSupported = fixedSense(0x05, 0x25, 0x00) // LOGICAL UNIT NOT SUPPORTED
	senseDataPhaseError  = fixedSense(0x0b, 0x4b, 0x00) // ABORTED COMMAND, DATA PHASE ERROR
)

const (
	statusBusy        = 0x08
	statusTaskSetFull = 0x28
)

func fixedSense(key, asc, ascq byte) []byte {
	s := make([]byte, 18)
	s[0], s[2], s[7], s[12], s[13] = 0x70, key, 10, asc, ascq
	return s
}

func checkCondition(sense []byte) scsi.Result {
	return scsi.Result{Status: scsi.StatusCheckCondition, Sense: sense}
}

// drop forgets a task without answering it (aborted, or its connection
// is closing).
func (c *conn) drop(t *task) {
	c.mu.Lock()
	if c.tasks[t.itt] == t {
		delete(c.tasks, t.itt)
		c.inflight--
	}
	c.mu.Unlock()
	if t.dataTimer != nil {
		t.dataTimer.Stop()
	}
	if t.reserved > 0 {
		c.unreserve(t.reserved)
		t.reserved = 0
	}
	if t.writeBuf != nil {
		putBuffer(t.writeBuf)
		t.writeBuf, t.buf = nil, nil
	}
	t.cancel()
	select {
	case <-t.done:
	default:
		close(t.done)
	}
}

// finish sends a task's data-in and status, unless it was aborted.
// need is what a write's CDB asks for (its residual's reference).
func (c *conn) finish(t *task, res scsi.Result, need int) {
	if t.readBuf != nil {
		defer putBuffer(t.readBuf)
	}
	// The task is done (drop closes t.done) only once its response is
	// out: an ABORT TASK waits for t.done before it answers, so its answer
	// never precedes this response, which the initiator could otherwise
	// take for a new command reusing the tag.
	defer c.drop(t)
	if !t.outcome.CompareAndSwap(taskPending, taskAnswered) {
		return // aborted: a task management function answers for it
	}
	flags, residual := byte(0), 0
	switch {
	case t.read && res.Status == scsi.StatusGood || t.read && res.Status == scsi.StatusConditionMet:
		residual = t.edtl - res.Length
	case t.write && res.Status == scsi.StatusGood:
		residual = t.edtl - need
	case !t.read && !t.write && res.Status == scsi.StatusGood:
		residual = -res.Length
	}
	switch {
	case residual > 0:
		flags |= 0x02 // U: underflow
	case residual < 0:
		flags |= 0x04 // O: overflow
		residual = -residual
	}
	dataSN := uint32(0)
	good := res.Status == scsi.StatusGood || res.Status == scsi.StatusConditionMet
	if t.read && len(res.DataIn) > 0 {
		data := res.DataIn
		for off := 0; off < len(data); {
			n := min(c.p.sendMax, len(data)-off)
			// A burst ends at MaxBurstLength: its last PDU has F set.
			if burstEnd := (off/c.p.maxBurst + 1) * c.p.maxBurst; off+n > burstEnd {
				n = burstEnd - off
			}
			last := off+n == len(data)
			d := newPDU(opDataIn, 0, t.itt)
			if last || (off+n)%c.p.maxBurst == 0 {
				d.bhs[1] |= 0x80
			}
			putLUN(d, t.lun)
			d.put32(20, reservedTag)
			d.put32(36, dataSN)
			d.put32(40, uint32(off))
			d.data = data[off : off+n]
			status := last && good && len(res.Sense) == 0
			if status {
				d.bhs[1] |= 0x01 | flags
				d.bhs[3] = res.Status
				d.put32(44, uint32(residual))
			}
			dataSN++
			if c.send(d, status) != nil {
				return
			}
			if status {
				return
			}
			off += n
		}
	}
	r := newPDU(opSCSIResp, 0x80|flags, t.itt)
	r.bhs[3] = res.Status
	r.put32(36, dataSN+t.r2tSN)
	r.put32(44, uint32(residual))
	if len(res.Sense) > 0 {
		r.data = append([]byte{byte(len(res.Sense) >> 8), byte(len(res.Sense))}, res.Sense...)
	}
	c.send(r, true)
}

func putLUN(p *pdu, lun uint64) {
	for i := range 8 {
		p.bhs[8+i] = byte(lun >> (56 - 8*i))
	}
}

// Task management functions and responses (RFC 7143 section 11.5, 11.6).
const (
	tmfAbortTask      = 1
	tmfAbortTaskSet   = 2
	tmfClearACA       = 3
	tmfClearTaskSet   = 4
	tmfLUNReset       = 5
	tmfTargetWarm     = 6
	tmfTargetCold     = 7
	tmfTaskReassign   = 8
	tmfComplete       = 0
	tmfNoTask         = 1
	tmfNoLUN          = 2
	tmfNoReassign     = 4
	tmfNotSupported   = 5
	tmfRejected       = 255
	abortWaitForTasks = 30 * time.Second
)

// taskManagement aborts tasks and answers once they are gone. A task whose
// response is already claimed is not aborted: it ends answered, and an
// ABORT TASK of it answers "Task does not exist" after its response.
func (c *conn) taskManagement(p *pdu) {
	fn := p.flags() & 0x7f
	var victims []*task
	response := byte(tmfComplete)
	closeAfter := false
	switch fn {
	case tmfAbortTask:
		c.mu.Lock()
		t := c.tasks[p.u32(20)]
		c.mu.Unlock()
		if t == nil {
			response = tmfNoTask
		} else {
			victims = []*task{t}
		}
	case tmfAbortTaskSet, tmfClearTaskSet, tmfLUNReset, tmfTargetWarm, tmfTargetCold:
		if fn == tmfLUNReset && !lun0(p.lun()) {
			response = tmfNoLUN
			break
		}
		victims = c.allTasks()
		closeAfter = fn == tmfTargetCold
	case tmfClearACA:
		response = tmfNotSupported // NACA is not supported: there is no ACA
	case tmfTaskReassign:
		response = tmfNoReassign
	default:
		response = tmfRejected
	}
	for _, t := range victims {
		if !t.outcome.CompareAndSwap(taskPending, taskAborted) {
			// Its response is being sent: the abort still waits for it
			// below, so that its own answer comes after.
			if fn == tmfAbortTask {
				response = tmfNoTask
			}
			continue
		}
		t.cancel()
		if !t.running {
			c.drop(t)
		}
	}
	r := newPDU(opTaskMgmtRsp, 0x80, p.itt())
	r.bhs[2] = response
	answer := func() {
		timeout := time.NewTimer(abortWaitForTasks)
		defer timeout.Stop()
		for _, t := range victims {
			select {
			case <-t.done:
			case <-timeout.C:
				c.log.Warn("iscsi abort: a task did not stop, closing the connection")
				c.close()
				return
			}
		}
		c.send(r, true)
		if closeAfter {
			c.close()
		}
	}
	if len(victims) == 0 {
		answer()
		return
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		answer()
	}()
}

// logout answers a Logout Request once the session's commands are done.
func (c *conn) logout(p *pdu) {
	reason := p.flags() & 0x7f
	r := newPDU(opLogoutResp, 0x80, p.itt())
	if reason == 2 {
		r.bhs[2] = 2 // connection recovery is not supported at level 0
	}
	done := make(chan struct{})
	go func() {
		c.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(abortWaitForTasks):
		c.log.Warn("iscsi logout: commands still running")
	}
	c.send(r, true)
	c.log.Debug("iscsi logout", "reason", reason)
}

// textRequest answers SendTargets (RFC 7143 appendix C) and refuses any
// other key, sending long answers in pieces.
func (c *conn) textRequest(p *pdu) {
	ttt := p.u32(20)
	c.mu.Lock()
	st := c.text
	c.mu.Unlock()
	if ttt != reservedTag {
		// The initiator asks for the rest of a long answer.
		if st == nil || st.ttt != ttt || st.itt != p.itt() {
			c.reject(p, rejectInvalidField)
			return
		}
		c.sendText(p, st)
		return
	}
	if st == nil || st.itt != p.itt() {
		st = &textState{itt: p.itt()}
	}
	if len(st.request)+len(p.data) > maxTextData {
		c.reject(p, rejectProtocolError)
		c.setText(nil)
		return
	}
	st.request = append(st.request, p.data...)
	if p.flags()&0x40 != 0 { // C: more request data follows
		c.setText(st)
		r := newPDU(opTextResp, 0, p.itt())
		r.put32(20, reservedTag)
		c.send(r, true)
		return
	}
	keys, err := parseText(st.request)
	st.request = nil
	if err != nil {
		c.reject(p, rejectProtocolError)
		c.setText(nil)
		return
	}
	var reply textKeys
	for _, kv := range keys {
		if kv.key != "SendTargets" {
			reply = append(reply, keyValue{kv.key, "NotUnderstood"})
			continue
		}
		reply = append(reply, c.sendTargets(kv.value)...)
	}
	st.pending = encodeText(reply)
	c.sendText(p, st)
}

func (c *conn) setText(st *textState) {
	c.mu.Lock()
	c.text = st
	c.mu.Unlock()
}

// sendText sends the next piece of a text answer.
func (c *conn) sendText(p *pdu, st *textState) {
	r := newPDU(opTextResp, 0x80, p.itt())
	r.put32(20, reservedTag)
	n := min(len(st.pending), c.p.sendMax)
	r.data = st.pending[:n]
	st.pending = st.pending[n:]
	if len(st.pending) > 0 {
		r.bhs[1] = 0x40 // C: the answer goes on
		c.mu.Lock()
		c.nextTTT++
		st.ttt = c.nextTTT & 0x7fffffff
		c.mu.Unlock()
		r.put32(20, st.ttt)
		c.setText(st)
	} else {
		c.setText(nil)
	}
	c.send(r, true)
}

// sendTargets lists targets with this portal's address: all the
// initiator may see (All, in a discovery session), or the session's own.
func (c *conn) sendTargets(v string) textKeys {
	var names []string
	switch {
	case v == "All" && c.discovery:
		list, err := c.srv.cfg.Targets.List(c.ctx, c.initiator, c.client)
		if err != nil {
			c.log.Warn("iscsi discovery", "err", err)
		}
		names = list
	case v == "All" || v == "" || v == c.target:
		if !c.discovery {
			names = []string{c.target}
		}
	case c.discovery:
		list, _ := c.srv.cfg.Targets.List(c.ctx, c.initiator, c.client)
		for _, n := range list {
			if n == v {
				names = []string{n}
			}
		}
	}
	addr := c.nc.LocalAddr().String()
	portal := fmt.Sprintf("%s,%d", addr, c.srv.cfg.PortalGroupTag)
	var out textKeys
	for _, n := range names {
		out = append(out, keyValue{"TargetName", n}, keyValue{"TargetAddress", portal})
	}
	return out
}

// serialOf is a target's unit serial number: stable, and unique per name.
func serialOf(target string) string {
	h := fnv.New64a()
	h.Write([]byte(target))
	return fmt.Sprintf("%016x", h.Sum64())
}
