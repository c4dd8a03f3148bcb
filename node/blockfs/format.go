package blockfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrUnknownData refuses to format a disk that is not empty yet holds no
// file system or partition table blkid can name.
var ErrUnknownData = errors.New("disk holds data of no known type")

// zeroProbe is how much of the start of a disk must be zeros for a disk
// without a signature to count as empty: the places where file systems
// and partition tables keep their superblocks and headers.
const zeroProbe = 1 << 20

// FSType returns the type of file system (or partition table: "PTTYPE:gpt")
// blkid finds on dev, "" if none.
func FSType(ctx context.Context, dev string) (string, error) {
	// -p probes the device itself (no cache); exit status 2 means no
	// signature was found.
	out, err := run(ctx, "blkid", "-p", "-o", "export", dev)
	if exitCode(err) == 2 {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", dev, err)
	}
	var typ, ptType string
	for line := range strings.Lines(out) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "TYPE":
			typ = v
		case "PTTYPE":
			ptType = v
		}
	}
	switch {
	case typ != "":
		return typ, nil
	case ptType != "":
		return "PTTYPE:" + ptType, nil
	}
	return "", nil
}

// Format makes a file system of type fstype (ext4 unless told) on dev if
// dev is empty, and returns the type dev holds and whether it made it. A
// disk with a file system is left as it is, whatever its type; one with
// data blkid cannot name fails with ErrUnknownData.
func Format(ctx context.Context, dev, fstype string) (typ string, made bool, err error) {
	if fstype == "" {
		fstype = "ext4"
	}
	typ, err = FSType(ctx, dev)
	if err != nil {
		return "", false, err
	}
	if strings.HasPrefix(typ, "PTTYPE:") {
		return "", false, fmt.Errorf("format %s: it holds a partition table (%s), not a file system", dev, strings.TrimPrefix(typ, "PTTYPE:"))
	}
	if typ != "" {
		return typ, false, nil
	}
	zero, err := startsWithZeros(dev, zeroProbe)
	if err != nil {
		return "", false, fmt.Errorf("format %s: %w", dev, err)
	}
	if !zero {
		return "", false, fmt.Errorf("format %s: %w (its first MiB is not zeros); refusing to format it", dev, ErrUnknownData)
	}
	args := []string{"-t", fstype}
	if fstype == "ext4" || fstype == "ext3" || fstype == "ext2" {
		// nodiscard: the disk is thin and zeros already; discarding it all
		// would only cost a pass over the FUSE file.
		args = append(args, "-q", "-E", "nodiscard")
	}
	if _, err := run(ctx, "mkfs", append(args, dev)...); err != nil {
		return "", false, fmt.Errorf("format %s: %w", dev, err)
	}
	return fstype, true, nil
}

// startsWithZeros reports whether the first n bytes of path (or all of it,
// if shorter) are zeros.
func startsWithZeros(path string, n int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return len(bytes.Trim(buf, "\x00")) == 0, nil
}
