package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/nbd"
	"github.com/weft-mesh/weft/volume"
)

// nbdExports serves a node's disks over NBD: "DISK" is the disk's live head,
// read-write on the disk's owner, "DISK@REPLICA" a read-only view of a
// replica, and "SPACESUIT@VERSION" a read-only view of a golden image
// (local, or named by the mesh's catalog and fetched on read).
//
// TCP clients must be in the disk's allow-list; clients on the unix socket
// (the zero address) are local, trusted by the socket's mode. Spacesuits
// are images for everyone to clone and boot from: any client may read them.
type nbdExports struct {
	vols *volume.Manager
	mesh *meshNode // nil when the node runs alone
}

// spacesuit reports whether name is a spacesuit version this node can
// serve.
func (e nbdExports) spacesuit(ctx context.Context, name string) bool {
	sname, v, err := volume.ParseSpacesuitRef(name)
	if err != nil {
		return false
	}
	for _, s := range e.vols.ListSpacesuits(ctx) {
		if s.Name == sname && s.Version == v {
			return true
		}
	}
	if e.mesh != nil {
		_, ok := e.mesh.cat.Get(catalog.SpacesuitKey(sname, v))
		return ok
	}
	return false
}

func (e nbdExports) allowed(disk string, client netip.Addr) (bool, error) {
	if !client.IsValid() {
		return true, nil
	}
	return e.vols.Allowed(disk, client)
}

// List returns the disks and replicas the client may open.
func (e nbdExports) List(ctx context.Context, client netip.Addr) ([]string, error) {
	disks, err := e.vols.ListDisks(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range disks {
		if ok, err := e.allowed(d.Name, client); err != nil || !ok {
			continue
		}
		names = append(names, d.Name)
		reps, err := e.vols.ListReplicas(ctx, d.Name)
		if err != nil {
			continue
		}
		for _, r := range reps {
			names = append(names, d.Name+"@"+r.Name)
		}
	}
	for _, s := range e.vols.ListSpacesuits(ctx) {
		names = append(names, s.Ref)
	}
	return names, nil
}

// Open opens a disk head or a replica view for a client.
func (e nbdExports) Open(ctx context.Context, name string, client netip.Addr) (nbd.Export, error) {
	ref, err := volume.ParseRef(name)
	if err != nil {
		return nil, fmt.Errorf("export %q: %w", name, nbd.ErrUnknown)
	}
	if ref.Replica != "" && e.spacesuit(ctx, name) {
		v, err := openView(ctx, e.vols, e.mesh, ref)
		if err != nil {
			return nil, nbdError(err)
		}
		return &viewExport{v: v, ref: ref}, nil
	}
	ok, err := e.allowed(ref.Disk, client)
	switch {
	case errors.Is(err, volume.ErrNotFound) && ref.Replica != "":
		// The disk is gone but its replicas live on, without the
		// allow-list that guarded them: only local clients may read them.
		return nil, fmt.Errorf("export %q: disk removed, its replicas are served on the local socket only: %w", name, nbd.ErrPolicy)
	case errors.Is(err, volume.ErrNotFound):
		return nil, fmt.Errorf("export %q: %w", name, nbd.ErrUnknown)
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("export %q: client %s not in the disk's allow-list: %w", name, client, nbd.ErrPolicy)
	}
	if ref.Replica == "" {
		h, err := e.vols.Head(ref.Disk)
		if err == nil {
			return &headExport{h: h}, nil
		}
		if v, ok := e.remoteView(ctx, ref, err); ok {
			return v, nil
		}
		return nil, nbdError(err)
	}
	v, err := e.vols.OpenView(ctx, ref)
	if err != nil {
		if v, ok := e.remoteView(ctx, ref, err); ok {
			return v, nil
		}
		return nil, nbdError(err)
	}
	return &viewExport{v: v, ref: ref}, nil
}

// remoteView opens, read-only, a disk or replica this node does not hold
// but the mesh's catalog names (err says it is not here): the disk's last
// committed state, its blocks fetched from their holders on read. Only
// local-socket clients get this far for a disk that is not here, since the
// disk's allow-list lives on its owner.
func (e nbdExports) remoteView(ctx context.Context, ref volume.Ref, err error) (nbd.Export, bool) {
	if !errors.Is(err, volume.ErrNotFound) || e.mesh == nil {
		return nil, false
	}
	v, verr := e.mesh.cl.Open(ctx, ref)
	if verr != nil {
		return nil, false
	}
	return &viewExport{v: v, ref: ref}, true
}

// nbdError adds the nbd sentinel matching a volume error, which picks the
// errno or refusal the client gets.
func nbdError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, volume.ErrNotFound):
		return fmt.Errorf("%w: %w", nbd.ErrUnknown, err)
	case errors.Is(err, volume.ErrInvalid):
		return fmt.Errorf("%w: %w", nbd.ErrInvalid, err)
	case errors.Is(err, volume.ErrReadOnly):
		return fmt.Errorf("%w: %w", nbd.ErrReadOnly, err)
	case errors.Is(err, volume.ErrNoSpace):
		return fmt.Errorf("%w: %w", nbd.ErrNoSpace, err)
	}
	return err
}

// zeros is written by WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE. Writers only
// read it.
var zeros = make([]byte, 1<<20)

// headExport is a disk's live head. Every connection to a disk gets the
// same *volume.Head, which is what makes NBD multi-conn safe.
type headExport struct {
	h *volume.Head
}

func (e *headExport) ReadAt(ctx context.Context, p []byte, off int64) error {
	_, err := e.h.ReadAtContext(ctx, p, off)
	return nbdError(err)
}

// ReadShared serves a read from the cache's verified blocks without
// copying them (nbd.SharedReader).
func (e *headExport) ReadShared(ctx context.Context, p []byte, off int64) ([][]byte, error) {
	data, err := e.h.ReadShared(ctx, p, off)
	return data, nbdError(err)
}

func (e *headExport) WriteAt(ctx context.Context, p []byte, off int64) error {
	_, err := e.h.WriteAtContext(ctx, p, off)
	return nbdError(err)
}

// WriteFrom lets the NBD server splice a write's payload into the
// overlay (nbd.FileWriter).
func (e *headExport) WriteFrom(ctx context.Context, off, n int64, fill func(dst *os.File) error) error {
	return nbdError(e.h.WriteFrom(ctx, off, n, fill))
}

// Zero punches whole blocks, or, without punch, writes zeros through the
// overlay so that the range stays allocated in it until the next commit;
// either way a commit stores no zero block.
func (e *headExport) Zero(ctx context.Context, off, n int64, punch bool) error {
	if punch {
		return nbdError(e.h.Zero(ctx, off, n))
	}
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := e.h.WriteAtContext(ctx, zeros[:k], off); err != nil {
			return nbdError(err)
		}
		off += k
		n -= k
	}
	return nil
}

func (e *headExport) Flush(ctx context.Context) error { return nbdError(e.h.Flush(ctx)) }
func (e *headExport) Size() int64                     { return e.h.Size() }
func (e *headExport) BlockSize() int64                { return e.h.BlockSize() }
func (e *headExport) ReadOnly() bool                  { return false }
func (e *headExport) Close() error                    { return nil }
func (e *headExport) Description() string {
	return fmt.Sprintf("weft disk %s (read-write head)", e.h.Name())
}

// viewExport is a read-only replica, pinned against GC while open.
type viewExport struct {
	v   *volume.View
	ref volume.Ref
}

func (e *viewExport) ReadAt(ctx context.Context, p []byte, off int64) error {
	_, err := e.v.ReadAt(p, off)
	return nbdError(err)
}

func (e *viewExport) ReadShared(ctx context.Context, p []byte, off int64) ([][]byte, error) {
	data, err := e.v.ReadShared(ctx, p, off)
	return data, nbdError(err)
}

func (e *viewExport) WriteAt(context.Context, []byte, int64) error {
	return fmt.Errorf("replica %s: %w", e.ref, nbd.ErrReadOnly)
}

func (e *viewExport) Zero(context.Context, int64, int64, bool) error {
	return fmt.Errorf("replica %s: %w", e.ref, nbd.ErrReadOnly)
}

func (e *viewExport) Flush(context.Context) error { return nil }
func (e *viewExport) Size() int64                 { return e.v.Size() }
func (e *viewExport) BlockSize() int64            { return e.v.BlockSize() }
func (e *viewExport) ReadOnly() bool              { return true }
func (e *viewExport) Close() error                { return e.v.Close() }
func (e *viewExport) Description() string {
	return fmt.Sprintf("weft %s (read-only)", e.ref)
}
