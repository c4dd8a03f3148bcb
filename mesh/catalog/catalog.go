package catalog

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Catalog is one node's copy of the replicated catalog. It is safe for
// concurrent use. It does no I/O except in Save; moving entries between
// nodes is the caller's job (Snapshot and Merge, Encode and Decode).
type Catalog struct {
	self string
	now  func() time.Time

	mu       sync.Mutex
	entries  map[string]Entry // newest version of each key, tombstones included
	clock    uint64           // largest Version ever seen
	watchers []func(old, new Entry, ok bool)
	tickets  uint64 // batches of changes handed to watchers so far

	// Watchers run without mu held, yet must see batches in the order
	// they were made: a batch takes a ticket under mu and waits for its
	// turn here.
	turnMu sync.Mutex
	turn   *sync.Cond // signalled when served grows
	served uint64     // batches the watchers are done with
}

// change is one replacement of a key's version, for the watchers.
type change struct {
	old, new Entry
	ok       bool
}

// New returns an empty catalog for the node whose peer ID string is self.
// Writes made through it carry self as Writer, so self must be a base58
// peer ID: otherwise every Put and Delete fails with ErrInvalid.
func New(self string) *Catalog {
	c := &Catalog{self: self, now: time.Now, entries: make(map[string]Entry)}
	c.turn = sync.NewCond(&c.turnMu)
	return c
}

// Get returns the live entry of key. A deleted or unknown key gives false.
func (c *Catalog) Get(key string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.Deleted {
		return Entry{}, false
	}
	return e, true
}

// Lookup returns the newest version of key the catalog holds, tombstone
// included (Deleted set): what a decision about the key must see, since a
// tombstone fences and removes as surely as a live entry names. Get is
// Lookup for readers that want only live entries. An unknown key gives
// false.
func (c *Catalog) Lookup(key string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok
}

// List returns the live entries whose key starts with prefix, sorted by key.
func (c *Catalog) List(prefix string) []Entry {
	c.mu.Lock()
	var es []Entry
	for k, e := range c.entries {
		if !e.Deleted && strings.HasPrefix(k, prefix) {
			es = append(es, e)
		}
	}
	c.mu.Unlock()
	sortByKey(es)
	return es
}

// Snapshot returns every entry, tombstones included, sorted by key: the
// full state to send to a peer for push-pull, or to save.
func (c *Catalog) Snapshot() []Entry {
	c.mu.Lock()
	es := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		es = append(es, e)
	}
	c.mu.Unlock()
	sortByKey(es)
	return es
}

func sortByKey(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
}

// Put writes e as this node's new version of e.Key and returns the entry
// stored, to be broadcast to the other nodes. It sets Version to one more
// than any version the catalog has seen, Writer to this node and Modified
// to now; the caller sets the other fields, Epoch included. A tombstone
// (Deleted) without an Owner keeps the key's owner, as in Delete.
//
// Put refuses with an error wrapping ErrFenced when the catalog holds a
// version of the key with a higher epoch than e.Epoch (the caller has lost
// ownership), and with ErrInvalid when e breaks the catalog's rules.
func (c *Catalog) Put(e Entry) (Entry, error) {
	e, err := c.write(e)
	if err != nil {
		return Entry{}, fmt.Errorf("put: %w", err)
	}
	return e, nil
}

// Delete writes a tombstone for key at the given ownership epoch, with the
// same rules and errors as Put, and returns it. The tombstone keeps the
// key's owner (or names this node if the key is unknown) and no metadata.
func (c *Catalog) Delete(key string, epoch uint64) (Entry, error) {
	e, err := c.write(Entry{Key: key, Epoch: epoch, Deleted: true})
	if err != nil {
		return Entry{}, fmt.Errorf("delete: %w", err)
	}
	return e, nil
}

// write is Put, except that a tombstone without an owner gets one.
func (c *Catalog) write(e Entry) (Entry, error) {
	if err := ValidateKey(e.Key); err != nil {
		return Entry{}, err
	}
	c.mu.Lock()
	cur, ok := c.entries[e.Key]
	if ok && cur.Epoch > e.Epoch {
		c.mu.Unlock()
		return Entry{}, fmt.Errorf("%s: epoch %d, stored epoch %d: %w", e.Key, e.Epoch, cur.Epoch, ErrFenced)
	}
	if e.Deleted && e.Owner == "" {
		e.Owner = c.self
		if ok {
			e.Owner = cur.Owner
		}
	}
	e.Version = c.clock + 1
	e.Writer = c.self
	e.Modified = c.now()
	e = e.normalized()
	if err := e.validate(); err != nil {
		c.mu.Unlock()
		return Entry{}, err
	}
	// e is newer than cur: its epoch is at least as high and its version
	// higher than any seen.
	c.notify([]change{c.store(e)})
	return e, nil
}

// Merge merges entries from another node: it keeps each that is newer than
// the stored version of its key and returns those, in order (the same key
// may appear twice). Invalid entries are skipped. Merge advances the clock
// past every version it sees, so that later local writes win over them.
func (c *Catalog) Merge(es []Entry) []Entry {
	var changes []change
	var kept []Entry
	c.mu.Lock()
	for _, e := range es {
		e = e.normalized()
		if e.validate() != nil {
			continue
		}
		c.clock = max(c.clock, e.Version)
		if cur, ok := c.entries[e.Key]; ok && compare(e, cur) <= 0 {
			continue
		}
		changes = append(changes, c.store(e))
		kept = append(kept, e)
	}
	c.notify(changes)
	return kept
}

// store replaces the version of e.Key by e. It must be called with mu held.
func (c *Catalog) store(e Entry) change {
	old, ok := c.entries[e.Key]
	c.entries[e.Key] = e
	c.clock = max(c.clock, e.Version)
	return change{old: old, new: e, ok: ok}
}

// notify releases mu and calls the watchers for each change. It must be
// called with mu held.
func (c *Catalog) notify(changes []change) {
	if len(changes) == 0 || len(c.watchers) == 0 {
		c.mu.Unlock()
		return
	}
	watchers := c.watchers
	ticket := c.tickets
	c.tickets++
	c.mu.Unlock()

	c.turnMu.Lock()
	for c.served != ticket {
		c.turn.Wait()
	}
	c.turnMu.Unlock()
	defer func() {
		c.turnMu.Lock()
		c.served++
		c.turn.Broadcast()
		c.turnMu.Unlock()
	}()
	for _, ch := range changes {
		for _, fn := range watchers {
			fn(ch.old, ch.new, ch.ok)
		}
	}
}

// OnChange registers fn to be called after a Put, Delete or Merge replaced
// the version of a key: old is the version replaced (possibly a tombstone)
// and ok is false when the key was unknown. Calls come one at a time, in the
// order the changes were made, without the catalog's lock held: fn may read
// the catalog but must not write to it (that would deadlock) and should
// return quickly, since the write that caused the change waits for it.
func (c *Catalog) OnChange(fn func(old, new Entry, ok bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers = append(c.watchers, fn)
}
