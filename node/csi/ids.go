package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"

	"github.com/weft-mesh/weft/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hashedPrefix starts the disk or replica name of a CSI name that is not
// a valid weft name itself.
const hashedPrefix = "csi-"

// weftName maps a CSI volume or snapshot name to a disk or replica name:
// the name itself when weft accepts it, else a hash of it. The mapping is
// a pure function, so a retried CreateVolume finds what the first made.
func weftName(csiName string) string {
	if volume.ValidateName(csiName) == nil {
		return csiName
	}
	sum := sha256.Sum256([]byte(csiName))
	return hashedPrefix + hex.EncodeToString(sum[:16])
}

// snapshotID is the CSI ID of replica rep of disk.
func snapshotID(disk, rep string) string { return disk + "@" + rep }

// errBadID is an ID this plugin never hands out.
var errBadID = errors.New("not an ID of this plugin")

// parseSnapshotID splits a snapshot ID into its disk and replica. Any ID
// that snapshotID cannot have made fails with errBadID.
func parseSnapshotID(id string) (disk, rep string, err error) {
	disk, rep, ok := strings.Cut(id, "@")
	if !ok || volume.ValidateName(disk) != nil || volume.ValidateName(rep) != nil {
		return "", "", errBadID
	}
	return disk, rep, nil
}

// validVolumeID reports whether id is one this plugin could have made.
func validVolumeID(id string) bool { return volume.ValidateName(id) == nil }

// tokenPrefix starts every pagination token.
const tokenPrefix = "after:"

// listPage sorts ids and answers the page a List call asks for, with the
// status codes the CSI spec gives: INVALID_ARGUMENT for a negative
// max_entries, ABORTED for a token this plugin did not make.
func listPage(ids []string, startingToken string, maxEntries int32) ([]string, string, error) {
	if maxEntries < 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "max_entries %d: negative", maxEntries)
	}
	slices.Sort(ids)
	out, next, err := page(ids, startingToken, maxEntries)
	if err != nil {
		return nil, "", status.Errorf(codes.Aborted, "starting_token %q: %v", startingToken, err)
	}
	return out, next, nil
}

// page returns the entries of ids (sorted, unique) that a List call with
// startingToken and maxEntries answers, and the token of the next page
// ("" at the end). A token this plugin did not make fails with errBadID.
func page(ids []string, startingToken string, maxEntries int32) (out []string, next string, err error) {
	start := 0
	if startingToken != "" {
		after, ok := strings.CutPrefix(startingToken, tokenPrefix)
		if !ok || after == "" {
			return nil, "", errBadID
		}
		start, _ = slices.BinarySearch(ids, after)
		if start < len(ids) && ids[start] == after {
			start++
		}
	}
	out = ids[start:]
	if maxEntries > 0 && int(maxEntries) < len(out) {
		out = out[:maxEntries]
		next = tokenPrefix + out[len(out)-1]
	}
	return out, next, nil
}
