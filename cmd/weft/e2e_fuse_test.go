package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fuseTools are the programs the FUSE end-to-end test drives.
var fuseTools = []string{"losetup", "mkfs.ext4", "mount", "umount", "fusermount3"}

// sys runs a system command, bounded by cmdTimeout, and returns its
// trimmed stdout; it fails the test if the command fails.
func sys(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := trySys(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func trySys(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", &sysError{err: err, stderr: strings.TrimSpace(errb.String())}
	}
	return strings.TrimSpace(out.String()), nil
}

type sysError struct {
	err    error
	stderr string
}

func (e *sysError) Error() string { return e.err.Error() + ": " + e.stderr }

// loopMount attaches img to a loop device and mounts its ext4 file system
// at a new directory (read-only: losetup -r, mount -o ro,noload). detach
// undoes both and is also registered with t.Cleanup, so a failing test
// leaves no mount or loop device behind.
func loopMount(t *testing.T, img string, readOnly bool) (dir string, detach func()) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	loArgs := []string{"-f", "--show"}
	mntArgs := []string{"-t", "ext4"}
	if readOnly {
		loArgs = append(loArgs, "-r")
		mntArgs = append(mntArgs, "-o", "ro,noload")
	}
	loop := sys(t, "losetup", append(loArgs, img)...)
	mounted := false
	detach = func() {
		if mounted {
			if _, err := trySys("umount", dir); err != nil {
				t.Errorf("umount %s: %v", dir, err)
				trySys("umount", "-l", dir)
			}
			mounted = false
		}
		if loop != "" {
			if _, err := trySys("losetup", "-d", loop); err != nil {
				t.Errorf("losetup -d %s: %v", loop, err)
			}
			loop = ""
		}
	}
	t.Cleanup(detach)
	sys(t, "mount", append(mntArgs, loop, dir)...)
	mounted = true
	return dir, detach
}

// fsFiles are files in a test file system: name -> SHA-256.
type fsFiles map[string][32]byte

func writeFiles(t *testing.T, dir string, rng *rand.Rand, sizes map[string]int) fsFiles {
	t.Helper()
	out := fsFiles{}
	for name, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = sha256.Sum256(b)
	}
	return out
}

// checkFiles checks that every file in want is in dir with its checksum,
// and that the names in gone are not.
func checkFiles(t *testing.T, what, dir string, want fsFiles, gone ...string) {
	t.Helper()
	for name, sum := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if sha256.Sum256(b) != sum {
			t.Fatalf("%s: %s has SHA-256 %x, want %x", what, name, sha256.Sum256(b), sum)
		}
	}
	for _, name := range gone {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s: %s: got %v, want it absent", what, name, err)
		}
	}
}

// TestFUSEEndToEnd puts an ext4 file system on a disk through its FUSE file
// and a loop device, takes a replica, clones it, changes the disk, and
// checks that the clone and the replica still hold the old file system.
func TestFUSEEndToEnd(t *testing.T) {
	h := fuseNode(t)
	rng := rand.New(rand.NewPCG(rand.Uint64(), 7))

	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	h.fails("no such directory", "mount", "-d", filepath.Join(mnt, "missing"))
	h.ok("mount", "-d", mnt)
	// Registered before any loop device, so it runs after they are gone.
	t.Cleanup(func() {
		if _, err := trySys("fusermount3", "-u", mnt); err == nil {
			return
		}
		trySys("umount", "-l", mnt)
	})
	h.fails("already", "mount", "-d", mnt)
	if out := h.ok("status"); !strings.Contains(out, mnt) {
		t.Fatalf("status does not list the mount %s:\n%s", mnt, out)
	}

	// A disk created while mounted appears at once.
	h.ok("disk", "create", "vm", "--size", "128M")
	img := filepath.Join(mnt, "vm.img")
	if st, err := os.Stat(img); err != nil || st.Size() != 128<<20 {
		t.Fatalf("stat %s: %v, %v; want a 128 MiB file", img, st, err)
	}
	start := time.Now()
	loop := sys(t, "losetup", "-f", "--show", img)
	sys(t, "mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop)
	sys(t, "losetup", "-d", loop)
	t.Logf("mkfs.ext4 through FUSE: %v", time.Since(start).Round(time.Millisecond))

	fs, detach := loopMount(t, img, false)
	v1 := writeFiles(t, fs, rng, map[string]int{"small.txt": 100, "big.bin": 5 << 20, "dir/mid.bin": 300 << 10})
	detach()

	h.ok("replica", "create", "vm", "r1")
	h.ok("disk", "clone", "vm@r1", "vmclone")

	// Change the disk's file system: rewrite, delete, add.
	fs, detach = loopMount(t, img, false)
	checkFiles(t, "disk before changes", fs, v1)
	v2 := writeFiles(t, fs, rng, map[string]int{"big.bin": 2 << 20, "new.bin": 1 << 20})
	if err := os.Remove(filepath.Join(fs, "dir", "mid.bin")); err != nil {
		t.Fatal(err)
	}
	detach()

	fs, detach = loopMount(t, img, false)
	v2["small.txt"] = v1["small.txt"]
	checkFiles(t, "disk after changes", fs, v2, "dir/mid.bin")
	detach()

	fs, detach = loopMount(t, filepath.Join(mnt, "vmclone.img"), false)
	checkFiles(t, "clone of the replica", fs, v1, "new.bin")
	detach()

	fs, detach = loopMount(t, filepath.Join(mnt, "replicas", "vm", "r1.img"), true)
	checkFiles(t, "replica", fs, v1, "new.bin")
	detach()
	if _, err := os.OpenFile(filepath.Join(mnt, "replicas", "vm", "r1.img"), os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("open the replica's file for writing: got %v, want EROFS", err)
	}

	// Asynchronous O_DIRECT I/O (what QEMU's aio=native does on a file):
	// the kernel sends a submission's requests to weft at once, and every
	// block reads back as written.
	t.Run("fio libaio O_DIRECT verify", func(t *testing.T) {
		needTool(t, "fio", "fio")
		h.ok("disk", "create", "aio", "--size", "64M")
		out := toolOK(t, "fio", "--name=verify", "--filename="+filepath.Join(mnt, "aio.img"),
			"--ioengine=libaio", "--direct=1", "--rw=randwrite", "--bsrange=4k-256k", "--size=32M",
			"--iodepth=16", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0")
		if !strings.Contains(out, "err= 0") {
			t.Fatalf("fio:\n%s", out)
		}
	})

	h.ok("umount", mnt)
	if out := h.ok("status"); strings.Contains(out, mnt) {
		t.Fatalf("status still lists the mount %s after umount:\n%s", mnt, out)
	}
	h.fails("not mounted", "umount", mnt)
	h.stopDaemon()
}

// fuseNode starts a node (NBD off) for a FUSE test, or skips the test
// unless it can mount FUSE file systems and loop devices: root,
// /dev/fuse, and fuseTools.
func fuseNode(t *testing.T) *harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE end-to-end test needs root (loop devices, mount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE end-to-end test needs /dev/fuse: %v", err)
	}
	for _, tool := range fuseTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("FUSE end-to-end test needs %s (apt-get install fuse3 e2fsprogs util-linux mount): %v", tool, err)
		}
	}
	h := newHarness(t, filepath.Join(t.TempDir(), "home"))
	h.ok("init", "--nbd", "off")
	h.startDaemon()
	return h
}

// mountDir returns a new directory to mount on, detached lazily at the end
// of the test if something is still mounted there.
func mountDir(t *testing.T) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMounted(t, mnt) {
			trySys("umount", "-l", mnt)
		}
	})
	return mnt
}

// isMounted reports whether dir is a mount point in this mount namespace.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// TestFUSEMountLifecycle runs weft mount in the foreground and stops it
// with SIGINT; refuses to unmount a busy mount; and checks that stopping
// the daemon unmounts what is left.
func TestFUSEMountLifecycle(t *testing.T) {
	h := fuseNode(t)
	h.ok("disk", "create", "a", "--size", "1M")
	mnt := mountDir(t)

	// Foreground: mounted until SIGINT.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var out bytes.Buffer
	fg := exec.CommandContext(ctx, h.bin, "--home", h.home, "mount", mnt)
	fg.Stdout, fg.Stderr = &out, &out
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- fg.Wait() }()
	deadline := time.Now().Add(daemonStartup)
	for !isMounted(t, mnt) {
		select {
		case err := <-exited:
			t.Fatalf("weft mount exited before mounting: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted within %v", mnt, daemonStartup)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "a.img")); err != nil {
		t.Fatal(err)
	}
	if err := fg.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("weft mount after SIGINT: %v, want a clean exit\n%s", err, out.String())
		}
	case <-time.After(daemonStop):
		t.Fatalf("weft mount did not exit within %v of SIGINT", daemonStop)
	}
	if isMounted(t, mnt) {
		t.Fatalf("%s still mounted after SIGINT to weft mount", mnt)
	}

	// Busy: refused, with the reason; lazily, it goes.
	h.ok("mount", "--detach", mnt)
	f, err := os.Open(filepath.Join(mnt, "a.img"))
	if err != nil {
		t.Fatal(err)
	}
	h.fails("busy", "umount", mnt)
	f.Close()

	// Stopping the daemon unmounts.
	h.stopDaemon()
	if isMounted(t, mnt) {
		t.Fatalf("%s still mounted after the daemon stopped", mnt)
	}
}

// TestFUSEDaemonKilled kills the daemon with SIGKILL while a disk file is
// being written: the writer gets an error, not a hang; after a restart,
// weft mount on the same directory detaches the dead mount and serves the
// disk again, with every write fsync acknowledged before the kill.
func TestFUSEDaemonKilled(t *testing.T) {
	h := fuseNode(t)
	const half = 16 << 20
	h.ok("disk", "create", "vm", "--size", "32M")
	mnt := mountDir(t)
	h.ok("mount", "-d", mnt)
	img := filepath.Join(mnt, "vm.img")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, half)
	rand.NewChaCha8([32]byte{5, 6}).Read(want)
	if _, err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}

	// Unacknowledged writes to the second half until the daemon dies.
	var written atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		buf := bytes.Repeat([]byte{0xee}, 1<<20)
		for i := int64(0); ; i++ {
			if _, err := f.WriteAt(buf, half+(i%16)<<20); err != nil {
				writerDone <- err
				return
			}
			written.Add(1)
		}
	}()
	for deadline := time.Now().Add(cmdTimeout); written.Load() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the writer made no progress within %v", cmdTimeout)
		}
	}
	h.killDaemon()
	select {
	case err := <-writerDone:
		t.Logf("the writer stopped after %d writes: %v", written.Load(), err)
	case <-time.After(daemonStop):
		t.Fatalf("a write still hangs %v after the daemon was killed", daemonStop)
	}
	if _, err := os.Stat(img); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat in the dead mount: %v, want ENOTCONN", err)
	}

	h.startDaemon()
	h.ok("mount", "-d", mnt)
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*half || !bytes.Equal(got[:half], want) {
		t.Fatal("after the kill and a new mount, the disk lost writes acknowledged by fsync")
	}
	h.ok("umount", mnt)
	h.stopDaemon()
}
