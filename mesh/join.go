package mesh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// Join connects to the nodes at addrs (multiaddrs ending in /p2p/<id>),
// passes admission with each and joins their gossip, which brings in every
// member they know. It returns how many nodes answered; the error is
// non-nil only if none did, and names each node with its reason (the
// caller says it was a join). An address of this node itself is skipped.
func (m *Mesh) Join(ctx context.Context, addrs []string) (int, error) {
	infos, err := parseAddrInfos(addrs)
	if err != nil {
		return 0, err
	}
	var (
		mu       sync.Mutex
		admitted []string
		errs     []error
		wg       sync.WaitGroup
	)
	for _, info := range infos {
		if info.ID == m.ID() {
			continue
		}
		wg.Go(func() {
			err := unreachable(m.host.Connect(joinDial(ctx), info))
			if err == nil {
				err = m.admission.wait(ctx, info.ID)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", info.ID, err))
				return
			}
			admitted = append(admitted, gossipNodeAddr(info.ID))
		})
	}
	wg.Wait()
	if len(admitted) == 0 {
		if len(errs) == 0 {
			return 0, errors.New("no peer to join: every address is this node's")
		}
		return 0, errors.Join(errs...)
	}

	// memberlist's Join takes no context; its push-pull is bounded by the
	// gossip TCPTimeout, so an abandoned one ends by itself.
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := m.ml.Join(admitted)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.n == 0 {
			return 0, fmt.Errorf("gossip: %w", r.err)
		}
		m.log.Info("joined", "answered", r.n)
		return r.n, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// joinDial lets a join dial past libp2p's dial backoff: an operator's
// join is meant as a real attempt, and the rejoin loop paces its own
// retries; the backoff, grown by the dials that failed during a cut (5 s,
// then 6, 9, 14 s... to 5 minutes), held the rejoin of a node back after
// the cut healed. Only joins do: libp2p's resource manager also limits
// connections per remote IP (0.2 a second after a burst of 16, dials and
// accepts counted alike), which the backoff keeps other dials under;
// gossip dialing past it on every packet spent both sides' allowance on
// each other and kept two nodes apart for over a minute (make torture).
// The rejoin loop dials an absent peer 1, 2 and 4 s apart (within the
// limit's burst), then every rejoinMaxBackoff, 5 s: the limit's own pace.
func joinDial(ctx context.Context) context.Context {
	return network.WithForceDirectDial(ctx, "join")
}

// unreachableError is a failed dial said once: libp2p's own message
// repeats "failed to dial" and the peer's ID around the reasons.
type unreachableError struct {
	reasons string
	err     error
}

func (e *unreachableError) Error() string { return "unreachable: " + e.reasons }
func (e *unreachableError) Unwrap() error { return e.err }

// unreachable rewrites a dial error to list only why each address failed;
// other errors (nil included) are returned as they are.
func unreachable(err error) error {
	var de *swarm.DialError
	if !errors.As(err, &de) {
		return err
	}
	var reasons []string
	for _, te := range de.DialErrors {
		reasons = append(reasons, fmt.Sprintf("%s: %v", te.Address, te.Cause))
	}
	if len(reasons) == 0 && de.Cause != nil {
		reasons = append(reasons, de.Cause.Error())
	}
	if len(reasons) == 0 {
		return err
	}
	return &unreachableError{reasons: strings.Join(reasons, "; "), err: err}
}

// parseAddrInfos parses multiaddrs with /p2p/<id>, merging those of the
// same peer.
func parseAddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	var infos []peer.AddrInfo
	index := make(map[peer.ID]int)
	for _, s := range addrs {
		info, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", s, err)
		}
		if i, ok := index[info.ID]; ok {
			infos[i].Addrs = append(infos[i].Addrs, info.Addrs...)
			continue
		}
		index[info.ID] = len(infos)
		infos = append(infos, *info)
	}
	return infos, nil
}
