package csi

import (
	"fmt"

	"golang.org/x/sys/unix"
)

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
