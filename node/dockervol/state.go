package dockervol

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// refs holds which of Docker's mount IDs use each volume, and which weft
// disks the plugin made, kept in a file so that a restarted plugin knows
// which volumes containers still use and which disks are its own.
// Not safe for concurrent use: the plugin serializes calls.
type refs struct {
	path string
	// byVolume maps a volume to the IDs of its mounts, sorted.
	byVolume map[string][]string
	// made holds the disks the plugin created (or cloned): the only ones
	// it lists, mounts or removes, so that it never becomes a second
	// writer of a disk someone else uses.
	made map[string]bool
}

// stateFile is the file's JSON form.
type stateFile struct {
	Mounts  map[string][]string `json:"mounts"`
	Volumes []string            `json:"volumes"`
}

// loadRefs reads the references from path; a missing file is none.
func loadRefs(path string) (*refs, error) {
	r := &refs{path: path, byVolume: map[string][]string{}, made: map[string]bool{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read mount references: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read mount references %s: %w", path, err)
	}
	for v, ids := range f.Mounts {
		if len(ids) > 0 {
			r.byVolume[v] = slices.Sorted(slices.Values(ids))
		}
	}
	for _, v := range f.Volumes {
		r.made[v] = true
	}
	return r, nil
}

// owns reports whether the plugin made the disk volume.
func (r *refs) owns(volume string) bool { return r.made[volume] }

// setOwned records that the plugin made (own) or removed (!own) the disk
// volume, and saves.
func (r *refs) setOwned(volume string, own bool) error {
	if r.made[volume] == own {
		return nil
	}
	if own {
		r.made[volume] = true
	} else {
		delete(r.made, volume)
	}
	if err := r.save(); err != nil {
		if own {
			delete(r.made, volume)
		} else {
			r.made[volume] = true
		}
		return err
	}
	return nil
}

// users returns the mount IDs that use volume.
func (r *refs) users(volume string) []string { return r.byVolume[volume] }

// add records that id uses volume and saves; it reports whether id is the
// volume's first user.
func (r *refs) add(volume, id string) (first bool, err error) {
	ids := r.byVolume[volume]
	if slices.Contains(ids, id) {
		return false, nil
	}
	r.byVolume[volume] = slices.Sorted(slices.Values(append(slices.Clone(ids), id)))
	if err := r.save(); err != nil {
		r.byVolume[volume] = ids
		return false, err
	}
	return len(ids) == 0, nil
}

// lastUser reports whether volume has no user once id is dropped: id is
// its only one, or it has none.
func (r *refs) lastUser(volume, id string) bool {
	ids := r.byVolume[volume]
	return len(ids) == 0 || len(ids) == 1 && ids[0] == id
}

// drop records that id no longer uses volume and saves.
func (r *refs) drop(volume, id string) error {
	ids := r.byVolume[volume]
	i := slices.Index(ids, id)
	if i < 0 {
		return nil
	}
	rest := slices.Delete(slices.Clone(ids), i, i+1)
	if len(rest) == 0 {
		delete(r.byVolume, volume)
	} else {
		r.byVolume[volume] = rest
	}
	if err := r.save(); err != nil {
		r.byVolume[volume] = ids
		return err
	}
	return nil
}

// mounted lists the volumes with users, sorted.
func (r *refs) mounted() []string {
	out := make([]string, 0, len(r.byVolume))
	for v := range r.byVolume {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// save writes the references durably (atomicfile: temporary file, fsync,
// rename, fsync of the directory).
func (r *refs) save() error {
	made := make([]string, 0, len(r.made))
	for v := range r.made {
		made = append(made, v)
	}
	sort.Strings(made)
	b, err := json.MarshalIndent(stateFile{Mounts: r.byVolume, Volumes: made}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save mount references: %w", err)
	}
	return nil
}
