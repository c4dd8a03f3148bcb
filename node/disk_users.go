package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// diskDoor is one way programs use a disk on this node: NBD connections,
// or files in a FUSE mount (open, or backing a loop device). Removing a
// disk asks each door who uses it.
type diskDoor interface {
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
	for _, d := range s.doors {
		out = append(out, d.diskUsers(disk)...)
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

func nbdClientName(remote string) string {
	if remote == "local" {
		return "NBD connection on the local socket"
	}
	return "NBD connection from " + remote
}

// loopDevices reads from sysfs which files back the loop devices:
// /sys/block/loopN/loop/backing_file holds the path of the file a bound
// loop device reads and writes.
type loopDevices struct {
	sysBlock string // /sys/block
}

// byBackingFile maps the path of each bound loop device's backing file to
// the devices (/dev/loopN) on it.
func (l loopDevices) byBackingFile() map[string][]string {
	paths, _ := filepath.Glob(filepath.Join(l.sysBlock, "loop*", "loop", "backing_file"))
	out := map[string][]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // unbound meanwhile
		}
		backing := strings.TrimSpace(string(b))
		out[backing] = append(out[backing], "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
	}
	return out
}
