package node

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrHomeInUse means another daemon holds the home's lock.
var ErrHomeInUse = errors.New("in use by another weft daemon")

// homeLock is an exclusive flock on HOME/lock, held for the life of a
// daemon. The kernel drops it when the process dies, so a crash never
// leaves a stale lock behind.
type homeLock struct{ f *os.File }

func lockHome(cfg Config) (*homeLock, error) {
	path := cfg.Path(LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock home: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("weft home %s is %w", cfg.Home, ErrHomeInUse)
		}
		return nil, fmt.Errorf("lock home %s: %w", path, err)
	}
	// Record the holder for people looking at the home; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return &homeLock{f: f}, nil
}

func (l *homeLock) unlock() error {
	// Closing the file releases the flock.
	return l.f.Close()
}
