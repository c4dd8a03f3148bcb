package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// diskUsers is one way programs use a disk on this node: NBD connections,
// open files in a FUSE mount, loop devices on those files. Removing a disk
// asks each who uses it.
type diskUsers interface {
	// diskUsers describes who uses disk this way, one entry each, in
	// words for the operator.
	diskUsers(disk string) []string
}

// usersGrace is how long removing a disk waits for users that are going
// away: the kernel reports a closed FUSE file, and the NBD server a
// client's disconnect, a moment after the program has let go.
const usersGrace = time.Second

// diskInUseError refuses to remove a disk that has users.
type diskInUseError struct {
	disk  string
	users []string
}

func (e *diskInUseError) Error() string {
	return fmt.Sprintf("disk %q is in use: %s; stop them or use --force (keeps the disk's content as a replica)", e.disk, strings.Join(e.users, ", "))
}

// usersOf returns who uses disk on this node.
func (s *server) usersOf(disk string) []string {
	var out []string
	for _, u := range s.users {
		out = append(out, u.diskUsers(disk)...)
	}
	return out
}

// usersAfterGrace is usersOf, given up to usersGrace for the users to go.
func (s *server) usersAfterGrace(ctx context.Context, disk string) []string {
	deadline := time.Now().Add(usersGrace)
	for {
		users := s.usersOf(disk)
		if len(users) == 0 || time.Now().After(deadline) {
			return users
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return users
		case <-t.C:
		}
	}
}

// diskUsers names the NBD clients connected to the disk's head (its
// replicas are separate exports that outlive it).
func (s *nbdService) diskUsers(disk string) []string {
	var out []string
	for _, srv := range s.servers {
		for _, c := range srv.Clients(disk) {
			out = append(out, nbdClientName(c))
		}
	}
	return out
}

// disconnect closes the NBD connections to the disk's head and names the
// clients it cut.
func (s *nbdService) disconnect(disk string) []string {
	var out []string
	for _, srv := range s.servers {
		for _, c := range srv.Disconnect(disk) {
			out = append(out, nbdClientName(c))
		}
	}
	return out
}

func nbdClientName(remote string) string {
	if remote == "local" {
		return "NBD connection on the local socket"
	}
	return "NBD connection from " + remote
}

// loopDevices finds the loop devices backed by a disk's file in one of
// the node's FUSE mounts. A loop device keeps the file open in the kernel,
// which the mount counts as a handle; this names the device.
type loopDevices struct {
	sysBlock string // /sys/block
	// files returns the paths of a disk's file in the node's mounts.
	files func(disk string) []string
}

// diskUsers lists the loop devices whose backing file is the disk's file,
// from sysfs: /sys/block/loopN/loop/backing_file holds the path of the
// file a bound loop device reads and writes.
func (l loopDevices) diskUsers(disk string) []string {
	files := map[string]bool{}
	for _, p := range l.files(disk) {
		files[p] = true
	}
	if len(files) == 0 {
		return nil
	}
	devs, _ := filepath.Glob(filepath.Join(l.sysBlock, "loop*", "loop", "backing_file"))
	var out []string
	for _, p := range devs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // unbound meanwhile
		}
		backing := strings.TrimSpace(string(b))
		if files[backing] {
			dev := filepath.Base(filepath.Dir(filepath.Dir(p)))
			out = append(out, fmt.Sprintf("loop device /dev/%s (%s)", dev, backing))
		}
	}
	return out
}
