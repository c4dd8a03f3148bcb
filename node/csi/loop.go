package csi

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// loopReadOnly reports whether the loop device dev refuses writes.
func loopReadOnly(dev string) bool {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "ro"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// attachLoop binds a free loop device to file, read-only if asked.
func attachLoop(ctx context.Context, file string, readOnly bool) (string, error) {
	args := []string{"--find", "--show", file}
	if readOnly {
		args = append([]string{"--read-only"}, args...)
	}
	out, err := exec.CommandContext(ctx, "losetup", args...).Output()
	if err != nil {
		var msg string
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("losetup %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return strings.TrimSpace(string(out)), nil
}

// mountOptions are the mount flags a volume capability may ask for.
var mountOptions = map[string]uintptr{
	"defaults":   0,
	"rw":         0,
	"ro":         unix.MS_RDONLY,
	"noatime":    unix.MS_NOATIME,
	"nodiratime": unix.MS_NODIRATIME,
	"relatime":   unix.MS_RELATIME,
	"nosuid":     unix.MS_NOSUID,
	"nodev":      unix.MS_NODEV,
	"noexec":     unix.MS_NOEXEC,
	"sync":       unix.MS_SYNCHRONOUS,
	"dirsync":    unix.MS_DIRSYNC,
}

// mountFlags turns a capability's mount flags into mount(2) flags.
func mountFlags(opts []string) (uintptr, error) {
	var flags uintptr
	for _, o := range opts {
		f, ok := mountOptions[o]
		if !ok {
			return 0, fmt.Errorf("mount flag %q unknown", o)
		}
		flags |= f
	}
	return flags, nil
}
