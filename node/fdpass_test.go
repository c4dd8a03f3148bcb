package node

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// unixPair returns the two ends of a connected unix stream socket: the
// server's as a fileConn.
func unixPair(t *testing.T) (*fileConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	srv, cli := &fileConn{UnixConn: conn(fds[0])}, conn(fds[1])
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return srv, cli
}

func tempFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFileConnKeepsOnePassedFile: a connection keeps the last file passed
// to it, closes every other one at once, and closes the kept one with the
// connection, so a client cannot make the daemon hold descriptors.
func TestFileConnKeepsOnePassedFile(t *testing.T) {
	srv, cli := unixPair(t)
	a, b, c := tempFile(t, "a"), tempFile(t, "b"), tempFile(t, "c")
	if _, _, err := cli.WriteMsgUnix([]byte("x"), unix.UnixRights(int(a.Fd()), int(b.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli.WriteMsgUnix([]byte("y"), unix.UnixRights(int(c.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, 2)
	for len(got) < 2 {
		buf := make([]byte, 2)
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "xy" {
		t.Fatalf("read %q, want %q", got, "xy")
	}
	kept := srv.take()
	if kept == nil {
		t.Fatal("no file kept, want the last one passed")
	}
	defer kept.Close()
	want, _ := c.Stat()
	if fi, err := kept.Stat(); err != nil || !os.SameFile(fi, want) {
		t.Fatalf("kept %v (%v), want file c", fi, err)
	}
	if again := srv.take(); again != nil {
		t.Fatalf("a second take got %s, want nil: a file is taken once", again.Name())
	}
	if n := openDescriptorsOf(t, a) + openDescriptorsOf(t, b); n != 2 {
		t.Fatalf("files a and b are open %d times in this process, want 2 (the test's own): the passed copies must be closed", n)
	}
}

// openDescriptorsOf counts this process's descriptors open on f's file.
func openDescriptorsOf(t *testing.T, f *os.File) int {
	t.Helper()
	want, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join("/proc/self/fd", e.Name())); err == nil && os.SameFile(fi, want) {
			n++
		}
	}
	return n
}
