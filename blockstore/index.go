package blockstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"
)

// The index is a Pebble database. Keys:
//
//	'b' + CID bytes -> segment u32 | offset u64 | length u32 | generation u64 (little-endian)
//	"m/gen"         -> current GC generation u64
//	"m/checkpoint"  -> segment id u32: the index names every acknowledged
//	                   record of the segments below it (see recover.go)
const (
	blockPrefix = 'b'
	locSize     = 24
)

var (
	genKey        = []byte("m/gen")
	checkpointKey = []byte("m/checkpoint")
	blockLower    = []byte{blockPrefix}
	blockUpper    = []byte{blockPrefix + 1}
)

type index struct {
	db *pebble.DB
}

func openIndex(dir string, o Options, log *slog.Logger) (*index, error) {
	cache := pebble.NewCache(o.IndexCacheBytes)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{
		Cache:              cache,
		MemTableSize:       uint64(o.IndexMemTableBytes),
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log.With("sub", "pebble")},
		FS:                 o.fsOf(),
	})
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, noSpace(err))
	}
	return &index{db: db}, nil
}

func blockKey(c cid.Cid) []byte {
	return append([]byte{blockPrefix}, c.Bytes()...)
}

func encodeLoc(l location) []byte {
	b := make([]byte, locSize)
	binary.LittleEndian.PutUint32(b[0:], l.seg)
	binary.LittleEndian.PutUint64(b[4:], uint64(l.off))
	binary.LittleEndian.PutUint32(b[12:], l.len)
	binary.LittleEndian.PutUint64(b[16:], l.gen)
	return b
}

func decodeLoc(key, v []byte) (location, error) {
	if len(v) != locSize || len(key) < 2 || len(key)-1 > 0xffff {
		return location{}, fmt.Errorf("index entry %x: malformed value %x", key, v)
	}
	return location{
		seg:  binary.LittleEndian.Uint32(v[0:]),
		off:  int64(binary.LittleEndian.Uint64(v[4:])),
		len:  binary.LittleEndian.Uint32(v[12:]),
		gen:  binary.LittleEndian.Uint64(v[16:]),
		klen: uint16(len(key) - 1),
	}, nil
}

// get returns the location of key, and false if it is absent.
func (ix *index) get(key []byte) (location, bool, error) {
	v, closer, err := ix.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return location{}, false, nil
	}
	if err != nil {
		return location{}, false, fmt.Errorf("index get: %w", err)
	}
	defer closer.Close()
	l, err := decodeLoc(key, v)
	return l, err == nil, err
}

func (ix *index) loadGen() (uint64, error) {
	v, closer, err := ix.db.Get(genKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("index: load generation: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("index: generation value %x malformed", v)
	}
	return binary.LittleEndian.Uint64(v), nil
}

func (ix *index) storeGen(gen uint64) error {
	if err := ix.db.Set(genKey, binary.LittleEndian.AppendUint64(nil, gen), pebble.Sync); err != nil {
		return fmt.Errorf("index: store generation: %w", noSpace(err))
	}
	return nil
}

// loadCheckpoint returns the stored checkpoint, and false if there is none
// (a store made before checkpoints, whose every put committed its index
// entries with a synced write).
func (ix *index) loadCheckpoint() (uint32, bool, error) {
	v, closer, err := ix.db.Get(checkpointKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("index: load checkpoint: %w", err)
	}
	defer closer.Close()
	if len(v) != 4 {
		return 0, false, fmt.Errorf("index: checkpoint value %x malformed", v)
	}
	return binary.LittleEndian.Uint32(v), true, nil
}

// storeCheckpoint stores seg as the checkpoint with a synced write, which
// also makes every index write committed before it durable.
func (ix *index) storeCheckpoint(seg uint32) error {
	if err := ix.db.Set(checkpointKey, binary.LittleEndian.AppendUint32(nil, seg), pebble.Sync); err != nil {
		return fmt.Errorf("index: store checkpoint: %w", noSpace(err))
	}
	return nil
}

// sync makes every index write committed before it durable.
func (ix *index) sync() error {
	if err := ix.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("index: sync: %w", noSpace(err))
	}
	return nil
}

// chunk calls fn for up to n block entries with keys after after (from the
// first when after is nil), and returns the last key seen (a copy) and how
// many entries it visited. Holding no iterator between chunks keeps long
// scans from pinning memtables or blocking Close.
func (ix *index) chunk(after []byte, n int, fn func(key []byte, l location) error) ([]byte, int, error) {
	lower := blockLower
	if after != nil {
		lower = append(append([]byte(nil), after...), 0)
	}
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: blockUpper})
	if err != nil {
		return nil, 0, fmt.Errorf("index scan: %w", err)
	}
	var last []byte
	count := 0
	for ok := it.First(); ok && count < n; ok = it.Next() {
		key := it.Key()
		l, err := decodeLoc(key, it.Value())
		if err != nil {
			it.Close()
			return nil, count, err
		}
		if err := fn(key, l); err != nil {
			it.Close()
			return nil, count, err
		}
		last = append(last[:0], key...)
		count++
	}
	if err := it.Close(); err != nil {
		return nil, count, fmt.Errorf("index scan: %w", err)
	}
	return last, count, nil
}

func (ix *index) close() error { return ix.db.Close() }

// pebbleLogger routes Pebble's logs to slog: informational messages at
// debug level, errors at warn. Pebble requires Fatalf not to return; it
// logs at error level and panics.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg)
	panic("blockstore index: " + msg)
}
