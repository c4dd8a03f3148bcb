package transfer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// Protocol asks a member to receive a root: the pusher sends one JSON
// request, the receiver pulls the blocks (from the pusher and the other
// receivers) and streams JSON progress lines until it ends. Aborting the
// stream cancels the receiver's pull.
const Protocol = "/weft/transfer/1.0.0"

// maxTransferRequest bounds the request and each progress line.
const maxTransferRequest = 64 << 10

// Bounds on a pusher, enforced by aborting the stream, so that a member
// that opens the protocol and sends nothing, or stops reading, holds a
// receiver's goroutine only that long.
const (
	// requestTimeout bounds reading the request: at most 64 KiB, sent at
	// once after the open (crowd joins get 3 s).
	requestTimeout = 10 * time.Second
	// progressWriteTimeout bounds writing one progress line (a few
	// hundred bytes, sent every progressEvery), like crowdWriteTimeout.
	progressWriteTimeout = 10 * time.Second
)

// maxReceivesPerPeer bounds the pulls one pusher has a receiver run at
// once. Further requests wait for a turn, holding their stream and
// nothing else, until the pusher goes or a pull ends: a member cannot
// start pulls without limit by opening streams.
const maxReceivesPerPeer = 8

// progressLine is one line of a receiver's progress: the target's figures
// and, on failure, whether it failed for want of a peer that may be back
// later (the receiver itself still opening its volumes, say), which the
// pusher then takes as meshnet.ErrUnreachable and retries. Receivers
// before the field omit it: their failures are final.
type progressLine struct {
	api.TargetProgress
	Unreachable bool `json:"unreachable,omitempty"`
}

// receiverError is a failure a receiver reported on its progress line.
type receiverError struct {
	msg         string
	unreachable bool
}

func (e *receiverError) Error() string { return e.msg }

// Unwrap makes a failure for want of a peer match meshnet.ErrUnreachable.
func (e *receiverError) Unwrap() error {
	if e.unreachable {
		return meshnet.ErrUnreachable
	}
	return nil
}

// receiveRequest is what a pusher sends a receiver.
type receiveRequest struct {
	ID      string   `json:"id"`
	Source  string   `json:"source"`  // the ref, for the receiver's records
	Entry   []byte   `json:"entry"`   // the catalog entry naming the root (catalog.Encode)
	Sources []string `json:"sources"` // peer IDs to fetch from: the pusher, then the other receivers
	// Swarm lists every receiver of the push, this one included, in the
	// same order for all: they split the blocks to fetch from the pusher
	// among themselves and fetch the rest from each other
	// (datapath.Spec.Swarm). Pushers before it sent none.
	Swarm   []string            `json:"swarm,omitempty"`
	Options api.TransferOptions `json:"options"`
}

// sendTo asks p to receive req and relays its progress until it ends.
func (s *Service) sendTo(ctx context.Context, p meshnet.PeerID, req receiveRequest, report func(api.TargetProgress)) error {
	st, err := s.net.Open(ctx, p, Protocol)
	if err != nil {
		return fmt.Errorf("open transfer to %s: %w", p, err)
	}
	defer st.Close()
	// Abort, not Close: the receiver must see the cancel as one, not as a
	// request that ended.
	stop := context.AfterFunc(ctx, func() { meshnet.Abort(st) })
	defer stop()
	if err := json.NewEncoder(st).Encode(req); err != nil {
		return fmt.Errorf("send transfer request to %s: %w", p, err)
	}
	last, final, err := readProgress(st, report)
	switch {
	case final && State(last.State) == Done:
		return nil
	case final:
		// The state is the transfer's, said by the caller.
		return fmt.Errorf("%s: %w", p, &receiverError{msg: last.Error, unreachable: last.Unreachable})
	case errors.Is(err, errBadProgress):
		return fmt.Errorf("progress from %s: %w", p, err)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("%s: transfer stream ended at state %q: %v", p, last.State, err)
}

// errBadProgress is a progress line that is not one.
var errBadProgress = errors.New("bad progress line")

// readProgress hands report the progress lines a receiver streams on r
// (each at most maxTransferRequest bytes) until one says the transfer
// stopped running, and returns that line with final true. When the stream
// ends first it returns the last line read and why it ended (nil at its
// end, errBadProgress for a line that does not decode).
func readProgress(r io.Reader, report func(api.TargetProgress)) (last progressLine, final bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTransferRequest)
	for sc.Scan() {
		var line progressLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return last, false, fmt.Errorf("%w: %w", errBadProgress, err)
		}
		last = line
		report(line.TargetProgress)
		if State(line.State) != Running {
			return last, true, nil
		}
	}
	return last, false, sc.Err()
}

// receive is a checked receiveRequest.
type receive struct {
	id      string
	ref     volume.Ref
	entry   catalog.Entry
	sources []meshnet.PeerID // without the receiver itself
	swarm   []meshnet.PeerID // the receiver among them, or none
	options api.TransferOptions
}

// decodeReceiveRequest reads and checks the request a pusher sends: one
// JSON object naming a transfer ID, a ref, exactly one catalog entry and
// the peers to fetch from. Anything else is an error for the pusher.
func decodeReceiveRequest(r io.Reader, self meshnet.PeerID) (receive, error) {
	var req receiveRequest
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		return receive{}, fmt.Errorf("transfer request: %w", err)
	}
	if req.ID == "" || len(req.ID) > 64 || strings.ContainsAny(req.ID, "/ \n") {
		return receive{}, fmt.Errorf("transfer request: bad id %q", req.ID)
	}
	es, err := catalog.Decode(req.Entry)
	if err != nil || len(es) != 1 {
		return receive{}, fmt.Errorf("transfer request: want one catalog entry, got %d: %v", len(es), err)
	}
	ref, err := volume.ParseRef(req.Source)
	if err != nil {
		return receive{}, fmt.Errorf("transfer request: %w", err)
	}
	out := receive{id: req.ID, ref: ref, entry: es[0], options: req.Options}
	for _, str := range req.Sources {
		id, err := meshnet.ParsePeerID(str)
		if err != nil {
			return receive{}, fmt.Errorf("transfer request: source %q: %w", str, err)
		}
		if id != self {
			out.sources = append(out.sources, id)
		}
	}
	if err := out.decodeSwarm(req.Swarm, self); err != nil {
		return receive{}, fmt.Errorf("transfer request: %w", err)
	}
	return out, nil
}

// decodeSwarm sets r.swarm from the pusher's list, which must name this
// receiver and otherwise only its sources other than the pusher; the
// transfer spec checks the rest.
func (r *receive) decodeSwarm(swarm []string, self meshnet.PeerID) error {
	if len(swarm) == 0 {
		return nil
	}
	if len(swarm) > len(r.sources)+1 {
		return fmt.Errorf("swarm of %d members, %d sources", len(swarm), len(r.sources))
	}
	for _, str := range swarm {
		id, err := meshnet.ParsePeerID(str)
		if err != nil {
			return fmt.Errorf("swarm member %q: %w", str, err)
		}
		r.swarm = append(r.swarm, id)
	}
	if !slices.Contains(r.swarm, self) {
		return fmt.Errorf("swarm does not name this receiver")
	}
	return nil
}

// serveReceive runs a pull a pusher asked for and streams its progress.
func (s *Service) serveReceive(ctx context.Context, from meshnet.PeerID, st io.ReadWriteCloser) {
	writeLine := func(line progressLine) error {
		b, _ := json.Marshal(line)
		stalled := time.AfterFunc(progressWriteTimeout, func() { meshnet.Abort(st) })
		defer stalled.Stop()
		_, err := st.Write(append(b, '\n'))
		return err
	}
	fail := func(err error) {
		_ = writeLine(progressLine{
			TargetProgress: api.TargetProgress{State: string(Failed), Error: err.Error()},
			Unreachable:    errors.Is(err, meshnet.ErrUnreachable),
		})
	}
	expire := time.AfterFunc(requestTimeout, func() { meshnet.Abort(st) })
	req, err := decodeReceiveRequest(io.LimitReader(st, maxTransferRequest), s.self)
	if !expire.Stop() {
		s.log.Warn("no transfer request in time", "peer", from, "timeout", requestTimeout)
		return
	}
	if err != nil {
		s.log.Warn("bad transfer request", "peer", from, "err", err)
		fail(err)
		return
	}
	// The pusher closing or aborting the stream ends the wait for a turn,
	// and later cancels the pull.
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, st)
		close(gone)
	}()
	done, ok := s.receives.TryTake(from.String())
	if !ok {
		// The pusher's other pulls hold every turn: say so with a line
		// of a transfer running at 0 bytes, so that the pusher shows the
		// target as started rather than silent, then wait.
		s.log.Info("transfer request queued: the pusher's other pulls hold every turn", "peer", from, "id", req.id)
		if writeLine(progressLine{TargetProgress: api.TargetProgress{State: string(Running)}}) != nil {
			return
		}
		if done, err = s.receives.Take(ctx, gone, from.String()); err != nil {
			s.log.Debug("transfer request dropped while waiting for a turn", "peer", from, "err", err)
			return
		}
	}
	defer done()
	if err := s.awaitVolumes(ctx); err != nil {
		fail(err)
		return
	}
	s.cat.Merge([]catalog.Entry{req.entry})
	spec, err := transferSpec(req.id, req.entry, peerStrings(req.sources), req.options)
	if err == nil && len(req.swarm) > 0 {
		spec.Swarm, spec.Self = peerStrings(req.swarm), string(s.self)
		err = spec.Validate()
	}
	if err != nil {
		fail(err)
		return
	}
	job, t, err := s.runPull(context.Background(), "receive", req.ref, req.entry, spec)
	if err != nil {
		fail(err)
		return
	}
	go func() {
		<-gone
		select {
		case <-job.done:
		default:
			t.Cancel()
		}
	}()
	tick := s.clock.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-job.done:
			_ = writeLine(progressLine{TargetProgress: targetProgress(job.Info())})
			return
		case <-tick.C():
			if writeLine(progressLine{TargetProgress: targetProgress(job.Info())}) != nil {
				t.Cancel()
			}
		}
	}
}

// sumTargets totals a push's figures over its targets; the ETA is the
// slowest target's.
func sumTargets(i *api.TransferInfo) {
	i.BytesSent, i.BlocksSent, i.TotalBytes, i.Skipped, i.Rate, i.ETA = 0, 0, 0, 0, 0, 0
	for _, tp := range i.Targets {
		i.Skipped += tp.Skipped
		i.BytesSent += tp.Bytes
		i.BlocksSent += tp.Blocks
		i.TotalBytes += tp.Total
		i.Rate += tp.Rate
		i.ETA = max(i.ETA, tp.ETA)
	}
}

func targetProgress(i api.TransferInfo) api.TargetProgress {
	return api.TargetProgress{State: i.State, Bytes: i.BytesSent, Blocks: i.BlocksSent, Skipped: i.Skipped,
		Total: i.TotalBytes, Rate: i.Rate, ETA: i.ETA, BytesFrom: i.BytesFrom, Error: i.Error}
}
