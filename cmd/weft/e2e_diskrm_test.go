package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keptReplica is how disk rm --force names the replica it kept.
var keptReplica = regexp.MustCompile(`kept as replica (\S+@removed-\S+)`)

// TestDiskRmInUseByLoopDevice puts ext4 on a disk through its FUSE file
// and a loop device and writes files: rm in the mount fails, disk rm is
// refused naming the loop device, and disk rm --force keeps a replica
// whose clone mounts with the files intact.
func TestDiskRmInUseByLoopDevice(t *testing.T) {
	h := fuseNode(t)
	mnt := mountDir(t)
	h.ok("mount", "-d", mnt)
	h.ok("disk", "create", "vm", "--size", "64M")
	img := filepath.Join(mnt, "vm.img")

	// Not loopMount: once the disk is gone, unmounting its ext4 may
	// report errors, which must not fail the test.
	loop := sys(t, "losetup", "-f", "--show", img)
	fs := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		t.Fatal(err)
	}
	mounted := false
	t.Cleanup(func() {
		if mounted {
			if _, err := trySys("umount", fs); err != nil {
				trySys("umount", "-l", fs)
			}
		}
		if _, err := trySys("losetup", "-d", loop); err != nil {
			t.Errorf("losetup -d %s: %v", loop, err)
		}
	})
	sys(t, "mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop)
	sys(t, "mount", "-t", "ext4", loop, fs)
	mounted = true
	files := writeFiles(t, fs, rand.New(rand.NewPCG(rand.Uint64(), 10)), map[string]int{"hello.txt": 1000, "data.bin": 1 << 20})
	sys(t, "sync", "-f", filepath.Join(fs, "hello.txt"))

	msg := h.fails("loop device "+loop+" ("+img+")", "disk", "rm", "vm")
	if !strings.Contains(msg, `disk "vm" is in use`) || !strings.Contains(msg, "--force") || strings.Contains(msg, "open file") {
		t.Fatalf("disk rm of a disk in use: %q, want it to say it is in use by the loop device only and offer --force", msg)
	}
	if err := os.Remove(img); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("rm %s: got %v, want EPERM", img, err)
	}
	h.ok("disk", "info", "vm")

	out := h.ok("disk", "rm", "--force", "vm")
	m := keptReplica.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "cut off: ") || !strings.Contains(out, "loop device "+loop) {
		t.Fatalf("disk rm --force:\n%s\nwant the kept replica and the loop device cut off", out)
	}
	h.fails("not found", "disk", "info", "vm")
	// The loop device's reads now fail instead of serving cached pages.
	if _, err := trySys("dd", "if="+loop, "of=/dev/null", "bs=4096", "count=16", "iflag=direct"); err == nil {
		t.Fatalf("read through the loop device of a removed disk succeeded")
	}

	// A file open in the mount is a user too, until it is closed.
	h.ok("disk", "create", "tmp", "--size", "1M")
	f, err := os.Open(filepath.Join(mnt, "tmp.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h.fails("in use: open file "+filepath.Join(mnt, "tmp.img"), "disk", "rm", "tmp")
	f.Close()
	h.ok("disk", "rm", "tmp")

	h.ok("disk", "clone", m[1], "saved")
	saved, detach := loopMount(t, filepath.Join(mnt, "saved.img"), false)
	checkFiles(t, "clone of the replica disk rm --force kept", saved, files)
	detach()
}

// TestDiskRmInUseOverNBD holds an NBD connection to a disk: disk rm is
// refused naming the connection and succeeds once the client has gone;
// disk rm --force closes a connection and keeps what it wrote.
func TestDiskRmInUseOverNBD(t *testing.T) {
	h, addr := nbdHarness(t)
	h.ok("disk", "create", "web", "--size", "16M")
	h.ok("disk", "create", "db", "--size", "16M")
	data := bytes.Repeat([]byte{0xab}, 64<<10)

	c := nbdHold(t, addr, "web")
	c.write(data, 0)
	msg := h.fails("NBD connection from "+c.conn.LocalAddr().String(), "disk", "rm", "web")
	if !strings.Contains(msg, `disk "web" is in use`) {
		t.Fatalf("disk rm over NBD: %q, want it to say the disk is in use", msg)
	}
	c.disconnect()
	h.ok("disk", "rm", "web")

	c = nbdHold(t, addr, "db")
	c.write(data, 4096)
	out := h.ok("disk", "rm", "--force", "db")
	m := keptReplica.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "cut off: NBD connection from "+c.conn.LocalAddr().String()) {
		t.Fatalf("disk rm --force:\n%s\nwant the kept replica and the connection cut off", out)
	}
	c.expectClosed()
	exported := filepath.Join(t.TempDir(), "db.img")
	h.ok("disk", "export", m[1], exported)
	got, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[4096:4096+len(data)], data) || !bytes.Equal(got[:4096], make([]byte, 4096)) {
		t.Fatalf("replica %s does not hold what the NBD client wrote", m[1])
	}
}

// nbdClient is an NBD connection a test holds open, as a VM would.
type nbdClient struct {
	t    *testing.T
	conn net.Conn
}

// nbdHold connects to export name; the connection is closed at the end of
// the test.
func nbdHold(t *testing.T, addr, name string) *nbdClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(cmdTimeout))
	if _, err := io.ReadFull(c, make([]byte, 18)); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	nbdGo(t, c, name)
	return &nbdClient{t: t, conn: c}
}

// NBD request types.
const (
	nbdCmdWrite = 1
	nbdCmdDisc  = 2
	nbdCmdFlush = 3
)

func (c *nbdClient) send(typ uint16, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	req := binary.BigEndian.AppendUint32(nil, 0x25609513)
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint16(req, typ)
	req = binary.BigEndian.AppendUint64(req, 1)
	req = binary.BigEndian.AppendUint64(req, off)
	req = binary.BigEndian.AppendUint32(req, length)
	if _, err := c.conn.Write(append(req, payload...)); err != nil {
		c.t.Fatalf("NBD request %d: %v", typ, err)
	}
}

// request sends one request (payload is a write's data, nil otherwise)
// and returns the errno of its reply (simple replies, one in flight).
func (c *nbdClient) request(typ uint16, off uint64, payload []byte) uint32 {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(cmdTimeout))
	c.send(typ, off, uint32(len(payload)), payload)
	r := make([]byte, 16)
	if _, err := io.ReadFull(c.conn, r); err != nil {
		c.t.Fatalf("NBD reply to %d: %v (the server dropped the connection)", typ, err)
	}
	return binary.BigEndian.Uint32(r[4:])
}

// write writes p at off and flushes.
func (c *nbdClient) write(p []byte, off uint64) {
	c.t.Helper()
	if errno := c.request(nbdCmdWrite, off, p); errno != 0 {
		c.t.Fatalf("NBD write: errno %d", errno)
	}
	if errno := c.request(nbdCmdFlush, 0, nil); errno != 0 {
		c.t.Fatalf("NBD flush: errno %d", errno)
	}
}

// disconnect says goodbye and waits for the server to close the
// connection, which it does once it no longer counts the client.
func (c *nbdClient) disconnect() {
	c.t.Helper()
	c.send(nbdCmdDisc, 0, 0, nil)
	c.expectClosed()
}

// expectClosed fails unless the server closes the connection.
func (c *nbdClient) expectClosed() {
	c.t.Helper()
	if _, err := io.Copy(io.Discard, c.conn); err != nil {
		c.t.Fatalf("NBD connection not closed by the server: %v", err)
	}
}
