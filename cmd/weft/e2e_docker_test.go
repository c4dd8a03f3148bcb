package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/node/blockfs"
)

// dockerTools are the programs the Docker volume test drives.
var dockerTools = []string{"dockerd", "docker", "losetup", "blkid", "mkfs.ext4", "fusermount3"}

// dockerPluginLock serializes the tests that put sockets in dockerd's
// plugin directory, which is one per machine.
const dockerPluginLock = "/run/weft-docker-test.lock"

// dockerEngine is a dockerd of the test's own: its own data root, exec
// root and socket, no iptables, no bridge.
type dockerEngine struct {
	t    *testing.T
	sock string
	cfg  string // DOCKER_CONFIG of the CLI
	cmd  *exec.Cmd
	done chan error
}

func startDockerEngine(t *testing.T) *dockerEngine {
	t.Helper()
	// Short paths: containerd's sockets live under the exec root.
	root, err := os.MkdirTemp("", "wd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	e := &dockerEngine{t: t, sock: filepath.Join(root, "docker.sock"), cfg: filepath.Join(root, "cli"), done: make(chan error, 1)}
	logf, err := os.Create(filepath.Join(t.TempDir(), "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	e.cmd = exec.Command("dockerd", "--data-root", filepath.Join(root, "data"), "--exec-root", filepath.Join(root, "x"),
		"-H", "unix://"+e.sock, "--pidfile", filepath.Join(root, "dockerd.pid"), "--iptables=false", "--bridge=none")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() { e.done <- e.cmd.Wait() }()
	t.Cleanup(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(daemonStop):
			syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			<-e.done
		}
		syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL) // its containerd
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("dockerd.log (tail):\n%s", tail(b, 4000))
			}
		}
	})
	deadline := time.Now().Add(daemonStartup)
	for {
		if _, err := e.try("version"); err == nil {
			return e
		} else if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within %v: %v", daemonStartup, err)
		}
		select {
		case err := <-e.done:
			t.Fatalf("dockerd exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// try runs the docker CLI against the engine, bounded by cmdTimeout.
func (e *dockerEngine) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", "unix://" + e.sock}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+e.cfg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (e *dockerEngine) ok(args ...string) string {
	e.t.Helper()
	out, err := e.try(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// fails runs docker, expects it to fail with want in its error.
func (e *dockerEngine) fails(want string, args ...string) {
	e.t.Helper()
	_, err := e.try(args...)
	if err == nil {
		e.t.Fatalf("docker %s: succeeded, want an error containing %q", strings.Join(args, " "), want)
	}
	if !strings.Contains(err.Error(), want) {
		e.t.Fatalf("docker %s: got %v, want an error containing %q", strings.Join(args, " "), err, want)
	}
}

// importBusybox makes an image of busybox-static (no registry here) and
// returns its name.
func (e *dockerEngine) importBusybox() string {
	e.t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		e.t.Fatalf("busybox-static: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(h *tar.Header) {
		if err := tw.WriteHeader(h); err != nil {
			e.t.Fatal(err)
		}
	}
	hdr(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	hdr(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	if _, err := tw.Write(bb); err != nil {
		e.t.Fatal(err)
	}
	for _, app := range []string{"sh", "cat", "echo", "ls", "sleep", "sync", "mount", "grep"} {
		hdr(&tar.Header{Name: "bin/" + app, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for _, d := range []string{"tmp/", "data/", "proc/", "sys/", "dev/", "etc/"} {
		hdr(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	if err := tw.Close(); err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.t.TempDir(), "busybox.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	const image = "weft-e2e-busybox:1"
	e.ok("import", "--change", "ENV PATH=/bin", path, image)
	return image
}

// dockerPlugin runs `weft docker-plugin` for a harness's daemon.
type dockerPlugin struct {
	h      *harness
	name   string // the driver's name: its socket's, without .sock
	sock   string
	dir    string
	cmd    *exec.Cmd
	done   chan error
	starts int
	logs   []string
}

func newDockerPlugin(h *harness) *dockerPlugin {
	name := fmt.Sprintf("weft-e2e-%d", os.Getpid())
	p := &dockerPlugin{h: h, name: name, sock: "/run/docker/plugins/" + name + ".sock", dir: filepath.Join(h.home, "docker")}
	h.t.Cleanup(func() {
		if p.cmd != nil {
			p.stop()
		}
		if h.t.Failed() {
			for _, l := range p.logs {
				if b, err := os.ReadFile(l); err == nil {
					h.t.Logf("%s:\n%s", filepath.Base(l), b)
				}
			}
		}
	})
	return p
}

func (p *dockerPlugin) start() {
	t := p.h.t
	t.Helper()
	p.starts++
	logf, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("plugin-%d.log", p.starts)))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.logs = append(p.logs, logf.Name())
	p.cmd = exec.Command(p.h.bin, "--home", p.h.home, "docker-plugin", "--socket", p.sock, "--default-size", "64M", "--log-level", "debug")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start docker-plugin: %v", err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	p.waitSocket()
}

// waitSocket waits until a plugin answers on the socket.
func (p *dockerPlugin) waitSocket() {
	t := p.h.t
	t.Helper()
	deadline := time.Now().Add(daemonStartup)
	for {
		if c, err := net.Dial("unix", p.sock); err == nil {
			c.Close()
			return
		}
		if p.cmd != nil {
			select {
			case err := <-p.done:
				p.cmd = nil
				t.Fatalf("docker-plugin exited: %v", err)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-plugin socket %s did not answer within %v", p.sock, daemonStartup)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childrenOf returns the pids of the child processes of pid.
func childrenOf(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var kids []int
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			var k int
			if _, err := fmt.Sscan(f, &k); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// waitChild waits until pid has one child process other than not, and
// returns it.
func waitChild(t *testing.T, pid, not int) int {
	t.Helper()
	deadline := time.Now().Add(daemonStartup)
	for {
		kids := childrenOf(pid)
		if len(kids) == 1 && kids[0] != not {
			return kids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of the daemon (%d): %v, want one other than %d", pid, kids, not)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the plugin with SIGTERM; it must exit cleanly.
func (p *dockerPlugin) stop() {
	t := p.h.t
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("docker-plugin exit: %v, want clean", err)
		}
	case <-time.After(daemonStop):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("docker-plugin did not exit within %v of SIGTERM", daemonStop)
	}
	p.cmd = nil
}

func (p *dockerPlugin) volumeDir(vol string) string { return filepath.Join(p.dir, "volumes", vol) }

// lockFile takes an exclusive flock on path for the rest of the test.
func lockFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("flock %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
}

// TestDockerVolumes drives the plugin with a real Docker engine: volumes
// written and read by containers, cloned from a replica, removed; mounts
// counted per container and kept across a plugin restart; a volume in use
// not removable; and all of it again after the weft daemon restarted.
func TestDockerVolumes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a Docker engine; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run dockerd, loop devices and mounts; CI runs it as root")
	}
	for _, tool := range dockerTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make deps installs docker.io, util-linux, e2fsprogs, fuse3)", tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (make deps installs busybox-static)")
	}
	lockFile(t, dockerPluginLock)
	home := t.TempDir()
	// Runs after the harness killed the daemon (cleanups run last first):
	// the mounts left by a failed test or by the killed daemon go lazily.
	t.Cleanup(func() { detachUnder(filepath.Join(home, "docker")) })
	h := newHarness(t, home)
	h.ok("init")
	h.startDaemon()
	p := newDockerPlugin(h)
	p.start()
	d := startDockerEngine(t)
	img := d.importBusybox()
	t.Cleanup(func() { d.try("rm", "-f", "c1", "c2", "c3", "c4") })

	roundTrip := func(a, b string) {
		t.Helper()
		d.ok("volume", "create", "-d", p.name, "--opt", "size=64M", "--opt", "replicas=1", a)
		if got := h.ok("disk", "ls"); !strings.Contains(got, a) {
			t.Fatalf("weft disk ls after docker volume create %s: %q lacks it", a, got)
		}
		d.ok("run", "--rm", "--network", "none", "-v", a+":/data", img, "sh", "-c", "echo hello from "+a+" > /data/f && sync")
		if got := d.ok("run", "--rm", "--network", "none", "-v", a+":/data", img, "cat", "/data/f"); got != "hello from "+a {
			t.Fatalf("read from a second container: got %q, want %q", got, "hello from "+a)
		}
		if ok, _ := blockfs.IsMountPoint(p.volumeDir(a)); ok {
			t.Fatalf("%s is still mounted with no container on it", a)
		}
		h.ok("replica", "create", a, "r1")
		d.ok("volume", "create", "-d", p.name, "--opt", "from="+a+"@r1", b)
		if got := d.ok("run", "--rm", "--network", "none", "-v", b+":/data", img, "cat", "/data/f"); got != "hello from "+a {
			t.Fatalf("read the clone %s: got %q, want %q", b, got, "hello from "+a)
		}
		// A spacesuit version is a clone source too.
		suit := "gold-" + a
		if out := strings.TrimSpace(h.ok("spacesuit", "publish", suit, a+"@r1")); out != suit+"@1" {
			t.Fatalf("spacesuit publish printed %q, want %s@1", out, suit)
		}
		d.ok("volume", "create", "-d", p.name, "--opt", "from="+suit+"@1", b+"s")
		if got := d.ok("run", "--rm", "--network", "none", "-v", b+"s:/data", img, "cat", "/data/f"); got != "hello from "+a {
			t.Fatalf("read the volume cloned from %s@1: got %q, want %q", suit, got, "hello from "+a)
		}
		d.ok("volume", "rm", b+"s")
		if got := d.ok("volume", "ls", "--format", "{{.Driver}} {{.Name}}"); !strings.Contains(got, p.name+" "+a) || !strings.Contains(got, p.name+" "+b) {
			t.Fatalf("docker volume ls: %q, want %s and %s", got, a, b)
		}
		if got := d.ok("volume", "inspect", "--format", "{{.Status.size}}", a); got != "64 MiB" {
			t.Fatalf("docker volume inspect %s: size %q, want 64 MiB", a, got)
		}
		d.ok("volume", "rm", b)
		if got := h.ok("disk", "ls"); strings.Contains(got, b) {
			t.Fatalf("weft disk ls after docker volume rm %s: %q still has it", b, got)
		}
	}
	roundTrip("vol1", "vol2")

	// Two containers on one volume; the first to stop leaves it mounted.
	d.ok("run", "-d", "--name", "c1", "--network", "none", "-v", "vol1:/data", img, "sleep", "600")
	d.ok("run", "-d", "--name", "c2", "--network", "none", "-v", "vol1:/data", img, "sleep", "600")
	d.fails("volume is in use", "volume", "rm", "vol1")
	h.fails("in use", "disk", "rm", "vol1")
	d.ok("rm", "-f", "c1")
	if ok, _ := blockfs.IsMountPoint(p.volumeDir("vol1")); !ok {
		t.Fatal("vol1 was unmounted when c1 stopped; c2 still uses it")
	}
	if got := d.ok("exec", "c2", "cat", "/data/f"); got != "hello from vol1" {
		t.Fatalf("c2 reads %q after c1 stopped, want hello from vol1", got)
	}

	// A plugin restart keeps c2's mount, and still knows to unmount it.
	p.stop()
	if ok, _ := blockfs.IsMountPoint(p.volumeDir("vol1")); !ok {
		t.Fatal("vol1 was unmounted when the plugin stopped; c2 still uses it")
	}
	p.start()
	d.ok("exec", "c2", "sh", "-c", "echo after restart > /data/g && sync")
	if got := d.ok("volume", "inspect", "--format", "{{.Status.mounts}} {{.Mountpoint}}", "vol1"); got != "1 "+p.volumeDir("vol1") {
		t.Fatalf("inspect vol1 after the plugin restart: got %q, want 1 mount at %s", got, p.volumeDir("vol1"))
	}
	d.ok("rm", "-f", "c2")
	if ok, _ := blockfs.IsMountPoint(p.volumeDir("vol1")); ok {
		t.Fatal("vol1 is still mounted after its last container stopped")
	}
	if got := d.ok("run", "--rm", "--network", "none", "-v", "vol1:/data", img, "cat", "/data/g"); got != "after restart" {
		t.Fatalf("read what c2 wrote: got %q, want after restart", got)
	}

	// The weft daemon and the plugin restart, now as weft daemon
	// --docker-plugin (the plugin a child of the daemon): volumes are
	// still there and everything works again.
	p.stop()
	h.stopDaemon()
	h.daemonArgs = []string{"--docker-plugin", "--docker-socket", p.sock}
	h.startDaemon()
	p.waitSocket()
	if got := d.ok("run", "--rm", "--network", "none", "-v", "vol1:/data", img, "cat", "/data/f", "/data/g"); got != "hello from vol1\nafter restart" {
		t.Fatalf("vol1 after a daemon restart: got %q", got)
	}
	roundTrip("vol3", "vol4")

	// The daemon restarts under a running container: the container's
	// file system loses its disk (the FUSE file under its loop device was
	// the old daemon's), but what it synced before is on the disk, and
	// once the container goes, the volume mounts afresh.
	d.ok("run", "-d", "--name", "c3", "--network", "none", "-v", "vol1:/data", img, "sleep", "600")
	d.ok("exec", "c3", "sh", "-c", "echo synced before the restart > /data/h && sync")
	h.stopDaemon()
	h.startDaemon()
	p.waitSocket()
	d.ok("rm", "-f", "c3")
	if ok, _ := blockfs.IsMountPoint(p.volumeDir("vol1")); ok {
		t.Fatal("vol1 is still mounted after c3 went")
	}
	if got := d.ok("run", "--rm", "--network", "none", "-v", "vol1:/data", img, "cat", "/data/h"); got != "synced before the restart" {
		t.Fatalf("vol1 after a daemon restart under c3: got %q, want what c3 synced", got)
	}

	// The daemon's plugin child is killed under a running container: the
	// daemon starts another, which keeps the mount and unmounts it when
	// the container goes.
	d.ok("run", "-d", "--name", "c4", "--network", "none", "-v", "vol1:/data", img, "sleep", "600")
	old := waitChild(t, h.daemon.Process.Pid, 0)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitChild(t, h.daemon.Process.Pid, old) // the daemon started another
	p.waitSocket()
	if ok, _ := blockfs.IsMountPoint(p.volumeDir("vol1")); !ok {
		t.Fatal("vol1 was unmounted when the plugin was killed; c4 still uses it")
	}
	d.ok("exec", "c4", "sh", "-c", "echo after a kill > /data/k && sync")
	d.ok("rm", "-f", "c4")
	if ok, _ := blockfs.IsMountPoint(p.volumeDir("vol1")); ok {
		t.Fatal("vol1 is still mounted after c4, its last user, went")
	}
	if got := d.ok("run", "--rm", "--network", "none", "-v", "vol1:/data", img, "cat", "/data/k"); got != "after a kill" {
		t.Fatalf("read what c4 wrote: got %q", got)
	}

	// The daemon is killed: its plugin child goes with it, its FUSE mount
	// is left dead, and the next mount detaches that and asks the new
	// daemon for another.
	old = waitChild(t, h.daemon.Process.Pid, 0)
	h.killDaemon()
	deadline := time.Now().Add(daemonStop)
	for syscall.Kill(old, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin child %d outlived its killed daemon by %v", old, daemonStop)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.startDaemon()
	waitChild(t, h.daemon.Process.Pid, old)
	p.waitSocket()
	if got := d.ok("run", "--rm", "--network", "none", "-v", "vol1:/data", img, "cat", "/data/k"); got != "after a kill" {
		t.Fatalf("vol1 after the daemon was killed: got %q", got)
	}
	d.ok("volume", "rm", "vol1", "vol3")
	if got := d.ok("volume", "ls", "-q"); got != "" {
		t.Fatalf("docker volume ls after removing all: %q, want nothing", got)
	}
	t.Logf("volumes written, read, cloned, refcounted across a plugin restart and removed, before and after a daemon restart")
	for _, dev := range strings.Fields(sysOut("losetup", "-n", "-O", "BACK-FILE", "-l")) {
		if strings.HasPrefix(dev, p.dir) {
			t.Errorf("loop device left on %s", dev)
		}
	}
}

// detachUnder lazily unmounts every mount at or below dir, deepest first.
func detachUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var dirs []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			dirs = append(dirs, f[4])
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		unix.Unmount(dirs[i], unix.MNT_DETACH)
	}
}

func sysOut(name string, args ...string) string {
	out, err := trySys(name, args...)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return ""
	}
	return out
}
