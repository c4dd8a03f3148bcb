package catalog

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

func TestPutGetListDelete(t *testing.T) {
	c := newTestCatalog(peerA)
	e := mustPut(t, c, diskEntry(t, "web", 1, 1, peerA))
	if e.Version != 1 || e.Writer != peerA || e.Modified.IsZero() {
		t.Fatalf("got version %d, writer %s, modified %v; want 1, %s, set", e.Version, e.Writer, e.Modified, peerA)
	}
	got, ok := c.Get(DiskKey("web"))
	if !ok || !reflect.DeepEqual(got, e) {
		t.Fatalf("get: got %+v, %v; want %+v", got, ok, e)
	}
	mustPut(t, c, diskEntry(t, "db", 2, 1, peerA))
	r := mustPut(t, c, Entry{Key: ReplicaKey("web", "nightly"), Root: e.Root, Owner: peerA})
	if r.Version != 3 {
		t.Fatalf("third write: got version %d, want 3", r.Version)
	}
	var keys []string
	for _, e := range c.List(DiskPrefix) {
		keys = append(keys, e.Key)
	}
	if want := []string{"disk/db", "disk/web"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("list: got %v, want %v", keys, want)
	}

	d, err := c.Delete(DiskKey("web"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Deleted || d.Owner != peerA || d.Version != 4 || d.Root.Defined() {
		t.Fatalf("tombstone: got %+v, want deleted, owner A, version 4, no root", d)
	}
	if _, ok := c.Get(DiskKey("web")); ok {
		t.Fatal("get after delete: found, want not found")
	}
	if n := len(c.List("")); n != 2 {
		t.Fatalf("list after delete: got %d entries, want 2", n)
	}
	if n := len(c.Snapshot()); n != 3 {
		t.Fatalf("snapshot after delete: got %d entries, want 3 (tombstone kept)", n)
	}
	// Deleting an unknown key still writes a tombstone, owned by this node.
	u, err := c.Delete(SpacesuitKey("ubuntu", 3), 0)
	if err != nil || u.Owner != peerA {
		t.Fatalf("delete unknown: got %+v, %v; want a tombstone owned by A", u, err)
	}
}

func TestPutRejectsInvalidEntries(t *testing.T) {
	root := testRoot(t, 1)
	good := Entry{Key: "replica/d/a", Root: root, Owner: peerA}
	mutate := func(f func(*Entry)) Entry { e := good; f(&e); return e }
	for name, e := range map[string]Entry{
		"empty key":          mutate(func(e *Entry) { e.Key = "" }),
		"unknown kind":       mutate(func(e *Entry) { e.Key = "volume/a" }),
		"empty name":         mutate(func(e *Entry) { e.Key = "disk/" }),
		"dot-dot":            mutate(func(e *Entry) { e.Key = "disk/.." }),
		"slash in disk name": mutate(func(e *Entry) { e.Key = "disk/a/b" }),
		"space":              mutate(func(e *Entry) { e.Key = "disk/a b" }),
		"long name":          mutate(func(e *Entry) { e.Key = "disk/" + strings.Repeat("a", 129) }),
		"replica one part":   mutate(func(e *Entry) { e.Key = "replica/a" }),
		"replica 3 parts":    mutate(func(e *Entry) { e.Key = "replica/a/b/c" }),
		"replicate one part": mutate(func(e *Entry) { e.Key = "replicate/a" }),
		"replicate mode x":   mutate(func(e *Entry) { e.Key = "replicate/a/b/push" }),
		"replicate 4 parts":  mutate(func(e *Entry) { e.Key = "replicate/a/b/pull/c" }),
		"spacesuit no @":     mutate(func(e *Entry) { e.Key = "spacesuit/u" }),
		"spacesuit @01":      mutate(func(e *Entry) { e.Key = "spacesuit/u@01" }),
		"spacesuit @x":       mutate(func(e *Entry) { e.Key = "spacesuit/u@x" }),
		"no root":            mutate(func(e *Entry) { e.Root = cid.Undef }),
		"no owner":           mutate(func(e *Entry) { e.Owner = "" }),
		"owner not base58":   mutate(func(e *Entry) { e.Owner = "node-0" }),
		"negative size":      mutate(func(e *Entry) { e.Size = -1 }),
		"negative replicas":  mutate(func(e *Entry) { e.Replicas = -1 }),
		"time out of range":  mutate(func(e *Entry) { e.Created = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }),
	} {
		if _, err := newTestCatalog(peerA).Put(e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	for _, key := range []string{"disk/A-z_0.9", "replica/web/2026-01-01", SpacesuitKey("ubuntu-24.04", 3), "spacesuit/u@0",
		ReplicateKey("vm", "berlin"), ReplicatePullKey("vm", "berlin"), ReplicateKey("vm", "pull")} {
		if err := ValidateKey(key); err != nil {
			t.Errorf("key %s: got %v, want valid", key, err)
		}
	}
	if _, err := newTestCatalog("not a peer id").Put(good); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad self: got %v, want ErrInvalid", err)
	}
}

func TestLowerEpochIsFenced(t *testing.T) {
	a, b := newTestCatalog(peerA), newTestCatalog(peerB)
	old := mustPut(t, a, diskEntry(t, "web", 1, 1, peerA))
	b.Merge([]Entry{old})
	// B takes the disk over from A, raising the epoch.
	taken := mustPut(t, b, diskEntry(t, "web", 2, 2, peerB))

	// A, not yet aware, writes many times: its versions outnumber B's.
	var stale Entry
	for i := range 5 {
		stale = mustPut(t, a, diskEntry(t, "web", 10+i, 1, peerA))
	}
	if stale.Version <= taken.Version {
		t.Fatalf("setup: stale version %d, want above %d", stale.Version, taken.Version)
	}
	if changed := b.Merge([]Entry{stale}); len(changed) != 0 {
		t.Fatalf("merge of stale write changed %v, want nothing", changed)
	}
	if changed := a.Merge([]Entry{taken}); len(changed) != 1 {
		t.Fatalf("merge of takeover changed %d entries, want 1", len(changed))
	}

	_, err := a.Put(diskEntry(t, "web", 20, 1, peerA))
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("put at old epoch: got %v, want ErrFenced", err)
	}
	for _, want := range []string{"disk/web", "epoch 1", "stored epoch 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := a.Delete(DiskKey("web"), 1); !errors.Is(err, ErrFenced) {
		t.Fatalf("delete at old epoch: got %v, want ErrFenced", err)
	}
	for _, c := range []*Catalog{a, b} {
		if got, _ := c.Get(DiskKey("web")); !reflect.DeepEqual(got, taken) {
			t.Fatalf("got %+v, want the takeover %+v", got, taken)
		}
	}
}

func TestTombstones(t *testing.T) {
	a, b := newTestCatalog(peerA), newTestCatalog(peerB)
	v1 := mustPut(t, a, diskEntry(t, "web", 1, 1, peerA))
	b.Merge([]Entry{v1})
	del, err := b.Delete(DiskKey("web"), 1)
	if err != nil {
		t.Fatal(err)
	}

	// The tombstone beats the older value, in either order.
	if changed := a.Merge([]Entry{del}); len(changed) != 1 {
		t.Fatalf("tombstone over older value: changed %d, want 1", len(changed))
	}
	if changed := a.Merge([]Entry{v1}); len(changed) != 0 {
		t.Fatalf("older value over tombstone: changed %v, want nothing", changed)
	}
	c := newTestCatalog(peerC)
	c.Merge([]Entry{del, v1})
	if _, ok := c.Get(DiskKey("web")); ok {
		t.Fatal("tombstone then older value: key live, want deleted")
	}

	// A newer value (recreating the disk) beats the tombstone.
	v2 := mustPut(t, a, diskEntry(t, "web", 2, 1, peerA))
	if v2.Version <= del.Version {
		t.Fatalf("recreate: version %d, want above tombstone's %d", v2.Version, del.Version)
	}
	for _, cat := range []*Catalog{b, c} {
		if changed := cat.Merge([]Entry{v2}); len(changed) != 1 {
			t.Fatalf("newer value over tombstone: changed %d, want 1", len(changed))
		}
		if got, ok := cat.Get(DiskKey("web")); !ok || !reflect.DeepEqual(got, v2) {
			t.Fatalf("got %+v, %v; want %+v", got, ok, v2)
		}
	}

	// A tombstone at an old epoch loses even with a higher version.
	v3 := mustPut(t, b, diskEntry(t, "web", 3, 2, peerB))
	staleDel := Entry{Key: DiskKey("web"), Owner: peerA, Epoch: 1, Version: v3.Version + 10, Writer: peerA, Deleted: true}
	if changed := b.Merge([]Entry{staleDel}); len(changed) != 0 {
		t.Fatalf("stale tombstone: changed %v, want nothing", changed)
	}
}

// Lookup sees what Get hides: the tombstone that fences a key.
func TestLookupReturnsTombstones(t *testing.T) {
	c := newTestCatalog(peerA)
	if _, ok := c.Lookup(DiskKey("web")); ok {
		t.Fatal("unknown key: Lookup found it, want false")
	}
	live := mustPut(t, c, diskEntry(t, "web", 1, 2, peerA))
	if got, ok := c.Lookup(DiskKey("web")); !ok || !reflect.DeepEqual(got, live) {
		t.Fatalf("live key: got %+v, %v; want %+v", got, ok, live)
	}
	del, err := c.Delete(DiskKey("web"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(DiskKey("web")); ok {
		t.Fatal("deleted key: Get found it, want false")
	}
	got, ok := c.Lookup(DiskKey("web"))
	if !ok || !reflect.DeepEqual(got, del) {
		t.Fatalf("deleted key: Lookup got %+v, %v; want the tombstone %+v", got, ok, del)
	}
	if !got.Deleted || got.Epoch != 2 || got.Owner != peerA {
		t.Fatalf("tombstone: deleted %v epoch %d owner %s; want true, 2, %s", got.Deleted, got.Epoch, got.Owner, peerA)
	}
}

// Versions that agree on epoch and version still resolve the same way
// whatever the order they arrive in.
func TestTiesResolveAlike(t *testing.T) {
	base := Entry{Key: "disk/x", Root: testRoot(t, 1), Owner: peerA, Epoch: 3, Version: 7, Writer: peerA}
	with := func(f func(*Entry)) Entry { e := base; f(&e); return e }
	for name, pair := range map[string][2]Entry{
		"writer":  {base, with(func(e *Entry) { e.Writer = peerB })},
		"root":    {base, with(func(e *Entry) { e.Root = testRoot(t, 2) })},
		"deleted": {base, with(func(e *Entry) { e.Deleted = true })},
		"size":    {base, with(func(e *Entry) { e.Size = 1 })},
		"time":    {base, with(func(e *Entry) { e.Modified = time.Unix(5, 0).UTC() })},
		"allow":   {base, with(func(e *Entry) { e.Allow = []string{"10.0.0.0/8"} })},
		"initiators": {with(func(e *Entry) { e.Initiators = []string{"iqn.2026-01.test:a"} }),
			with(func(e *Entry) { e.Initiators = []string{"iqn.2026-01.test:b"} })},
		"chap":    {base, with(func(e *Entry) { e.CHAP = true })},
		"origin":  {base, with(func(e *Entry) { e.Origin = "golden" })},
		"creator": {base, with(func(e *Entry) { e.Creator = "csi" })},
	} {
		x, y := newTestCatalog(peerC), newTestCatalog(peerC)
		x.Merge([]Entry{pair[0], pair[1]})
		y.Merge([]Entry{pair[1], pair[0]})
		if !reflect.DeepEqual(x.Snapshot(), y.Snapshot()) {
			t.Errorf("%s: orders disagree: %+v vs %+v", name, x.Snapshot(), y.Snapshot())
		}
		if compare(pair[0], pair[1]) == 0 {
			t.Errorf("%s: distinct versions compare equal", name)
		}
	}
	if got := newTestCatalog(peerC).Merge([]Entry{base, base}); len(got) != 1 {
		t.Errorf("merging a version twice: changed %d, want 1", len(got))
	}
}

func TestMergeAdvancesClock(t *testing.T) {
	a := newTestCatalog(peerA)
	remote := Entry{Key: "disk/x", Root: testRoot(t, 1), Owner: peerB, Epoch: 1, Version: 41, Writer: peerB}
	a.Merge([]Entry{remote})
	e := mustPut(t, a, diskEntry(t, "x", 2, 1, peerA))
	if e.Version != 42 {
		t.Fatalf("put after merge: got version %d, want 42", e.Version)
	}
}

func TestMergeSkipsInvalid(t *testing.T) {
	a := newTestCatalog(peerA)
	bad := Entry{Key: "disk/../x", Root: testRoot(t, 1), Owner: peerB, Version: 1 << 40, Writer: peerB}
	good := Entry{Key: "disk/x", Root: testRoot(t, 1), Owner: peerB, Version: 2, Writer: peerB}
	if changed := a.Merge([]Entry{bad, good}); len(changed) != 1 || changed[0].Key != "disk/x" {
		t.Fatalf("got %v, want only disk/x", changed)
	}
	if e := mustPut(t, a, diskEntry(t, "y", 1, 0, peerA)); e.Version != 3 {
		t.Fatalf("invalid entry moved the clock: version %d, want 3", e.Version)
	}
}

func TestOnChange(t *testing.T) {
	a := newTestCatalog(peerA)
	type call struct {
		old, new Entry
		ok       bool
	}
	var calls []call
	a.OnChange(func(old, new Entry, ok bool) {
		// Reading from a callback must not deadlock.
		if _, found := a.Get(new.Key); found == new.Deleted {
			t.Errorf("callback for %s: catalog does not show the change yet", new.Key)
		}
		calls = append(calls, call{old, new, ok})
	})
	v1 := mustPut(t, a, diskEntry(t, "web", 1, 1, peerA))
	v2 := mustPut(t, a, diskEntry(t, "web", 2, 1, peerA))
	del, _ := a.Delete(DiskKey("web"), 1)
	a.Merge([]Entry{v1}) // older: no call
	want := []call{{Entry{}, v1, false}, {v1, v2, true}, {v2, del, true}}
	if !reflect.DeepEqual(calls, want) {
		t.Fatalf("got calls %+v, want %+v", calls, want)
	}
}

// Concurrent writers: each watcher call must see the version the previous
// call for that key installed.
func TestOnChangeOrderUnderConcurrency(t *testing.T) {
	a := newTestCatalog(peerA)
	var mu sync.Mutex
	last := map[string]Entry{}
	a.OnChange(func(old, new Entry, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		prev, seen := last[new.Key]
		if ok != seen || !reflect.DeepEqual(old, prev) {
			t.Errorf("%s: callback old %+v (ok %v), want %+v (ok %v)", new.Key, old, ok, prev, seen)
		}
		last[new.Key] = new
	})
	a.now = time.Now // fixedClock is not safe for concurrent use
	var entries []Entry
	for i := range 200 {
		entries = append(entries, diskEntry(t, []string{"a", "b", "c"}[i%3], i, 0, peerA))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range entries {
				if _, err := a.Put(entries[(w+i)%len(entries)]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, e := range a.Snapshot() {
		if !reflect.DeepEqual(last[e.Key], e) {
			t.Fatalf("%s: last callback saw %+v, catalog holds %+v", e.Key, last[e.Key], e)
		}
	}
}
