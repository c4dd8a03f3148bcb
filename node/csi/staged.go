package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-mesh/weft/node/blockfs"
)

// stageRecord is what the plugin keeps of a staged volume, in a file of
// its state directory: how it was staged (a retry with another capability
// is refused) and every loop device bound for it (unstaged, each is freed
// even when the disk's file is another by then, after the daemon was
// restarted or the disk's owner committed: matching by the file's path or
// inode would miss them).
type stageRecord struct {
	VolumeID string        `json:"volume_id"`
	Staging  string        `json:"staging"`
	Block    bool          `json:"block"`
	ReadOnly bool          `json:"read_only"`
	Loops    []boundDevice `json:"loops,omitempty"`
}

// boundDevice is a loop device and the file it was bound to.
type boundDevice struct {
	Device  string `json:"device"`
	FileDev uint64 `json:"file_dev"`
	FileIno uint64 `json:"file_ino"`
}

// recordPath is the file of the record of volume id staged at staging.
func (n *nodeService) recordPath(id, staging string) string {
	sum := sha256.Sum256([]byte(staging))
	return filepath.Join(n.stateDir, id+"-"+hex.EncodeToString(sum[:8])+".json")
}

// loadRecord reads the record of volume id staged at staging; ok is false
// when there is none.
func (n *nodeService) loadRecord(id, staging string) (rec stageRecord, ok bool, err error) {
	b, err := os.ReadFile(n.recordPath(id, staging))
	if errors.Is(err, os.ErrNotExist) {
		return stageRecord{}, false, nil
	}
	if err != nil {
		return stageRecord{}, false, fmt.Errorf("read stage record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return stageRecord{}, false, fmt.Errorf("stage record of %s: %w", id, err)
	}
	return rec, true, nil
}

// saveRecord writes rec (a new file renamed over the old one).
func (n *nodeService) saveRecord(rec stageRecord) error {
	if err := os.MkdirAll(n.stateDir, 0o700); err != nil {
		return fmt.Errorf("save stage record: %w", err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	path := n.recordPath(rec.VolumeID, rec.Staging)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("save stage record: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("save stage record: %w", err)
	}
	return nil
}

// recordLoop adds dev, bound to file, to rec and saves it, unless rec
// has it already.
func (n *nodeService) recordLoop(rec *stageRecord, dev, file string) error {
	fd, ino, err := blockfs.FileNumbers(file)
	if err != nil {
		return err
	}
	b := boundDevice{Device: dev, FileDev: fd, FileIno: ino}
	for _, l := range rec.Loops {
		if l == b {
			return nil
		}
	}
	rec.Loops = append(rec.Loops, b)
	return n.saveRecord(*rec)
}

// freeRecorded frees the loop devices of volume id's record at staging
// (those still on the file they were bound to, or on a dead one) and
// drops the record.
func (n *nodeService) freeRecorded(ctx context.Context, id, staging string) error {
	rec, ok, err := n.loadRecord(id, staging)
	if err != nil || !ok {
		return err
	}
	var errs []error
	for _, l := range rec.Loops {
		errs = append(errs, blockfs.DetachIfOn(ctx, l.Device, l.FileDev, l.FileIno))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(n.recordPath(id, staging)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop stage record: %w", err)
	}
	return nil
}

// recordedDevices are the loop devices recorded for volume id, whatever
// its staging path.
func (n *nodeService) recordedDevices(id string) (map[string]bool, error) {
	names, err := filepath.Glob(filepath.Join(n.stateDir, id+"-*.json"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			continue // dropped meanwhile
		}
		var rec stageRecord
		if json.Unmarshal(b, &rec) != nil || rec.VolumeID != id || !strings.HasPrefix(filepath.Base(name), id+"-") {
			continue
		}
		for _, l := range rec.Loops {
			out[l.Device] = true
		}
	}
	return out, nil
}
