package csi

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// keyedMutex serializes operations on the same key (a volume or snapshot
// name) and lets operations on different keys run in parallel. The zero
// value is ready to use.
type keyedMutex struct {
	mu   sync.Mutex
	held map[string]bool
}

// tryLock takes key's lock if no operation holds it and returns its
// release; ok is false when one does (the caller answers Aborted, as the
// CSI spec asks for an operation pending on the same volume: the CO
// retries, and a call never waits behind one that may hang).
func (k *keyedMutex) tryLock(key string) (unlock func(), ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held[key] {
		return nil, false
	}
	if k.held == nil {
		k.held = map[string]bool{}
	}
	k.held[key] = true
	return func() {
		k.mu.Lock()
		delete(k.held, key)
		k.mu.Unlock()
	}, true
}

// lockOp takes the lock of key for one operation, or fails with Aborted
// when another operation on key is pending.
func (p *Plugin) lockOp(key string) (unlock func(), err error) {
	unlock, ok := p.locks.tryLock(key)
	if !ok {
		return nil, status.Errorf(codes.Aborted, "an operation on %s is pending", key)
	}
	return unlock, nil
}
