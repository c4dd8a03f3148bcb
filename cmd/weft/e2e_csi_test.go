package main

import (
	"context"
	"flag"

	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"

	"github.com/weft-mesh/weft/api"
)

// csiVolumeSize is the size of the volumes csi-sanity creates: enough for
// an ext4 file system, small enough to format quickly.
const csiVolumeSize = 64 << 20

// csiRootSpecs are the csi-sanity specs that stage and publish a volume
// on the node: loop devices and mounts, which need root. An unprivileged
// plugin runs every other spec.
var csiRootSpecs = []string{
	"Node Service should work",
	"Node Service should be idempotent",
	"Node Service NodeUnpublishVolume should remove target path",
	"Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path",
}

// csiSkipReasons are why csi-sanity may skip a spec on its own: the
// optional capabilities weft's plugin does not offer (README, "Kubernetes
// (CSI)", says why). A skip for any other reason fails the test.
var csiSkipReasons = []string{
	"ControllerPublishVolume not supported",
	"Controller Publish, UnpublishVolume not supported",
	"ControllerUnpublishVolume not supported",
	"ControllerExpandVolume not supported",
	"Modify volume not supported",
	"Modify Volume not supported",
	"ModifyVolume not supported",
	"NodeExpandVolume not supported",
	"NodeGetVolumeHealth not supported",
	"NodeGetStorageHealth not supported",
	"Service does not have single node multi writer capability",
	"SNAPSHOT_ACCESSIBILITY_CONSTRAINTS not supported",
	"testnodevolumeattachlimit not enabled",
	"ControllerGetVolumeHealth not supported",
	"ControllerListVolumeHealth not supported",
	"GroupControllerService not supported",
}

// TestCSISanity runs the CSI community's conformance suite, csi-sanity,
// against `weft csi` in front of real daemons: as root, every spec in
// block mode and in mount mode; and against a daemon and plugin that run
// unprivileged (uid 65534 when the test is root), every spec but the
// node's stage and publish (csiRootSpecs), in block mode.
func TestCSISanity(t *testing.T) {
	if f := flag.Lookup("test.count"); f != nil && f.Value.String() != "1" {
		// Ginkgo would end the whole test process with an error.
		t.Skip("csi-sanity (Ginkgo) runs only with -count=1; run the test again instead")
	}
	bin := weftBinary(t)
	root := os.Geteuid() == 0
	var skipped []string
	suites := map[string]*sanity.TestConfig{}
	if root {
		_, sock, _ := csiRootNode(t)
		for _, mode := range []string{"block", "mount"} {
			suites[mode+" as root"] = sanityConfig(sock, mode, t.TempDir())
		}
	}
	// Unprivileged: a daemon and a plugin of their own, as nobody.
	dir, cred := unprivilegedDir(t, bin)
	home := filepath.Join(dir, "home")
	startUnprivilegedDaemon(t, filepath.Join(dir, "weft"), home, cred)
	sock, _ := startCSI(t, filepath.Join(dir, "weft"), home, dir, cred)
	suites["block unprivileged"] = sanityConfig(sock, "block", dir)
	for _, s := range csiRootSpecs {
		skipped = append(skipped, "block unprivileged "+s)
	}

	for name, cfg := range suites {
		ginkgo.Describe(name, func() { sanity.GinkgoTest(cfg) })
	}
	var report []string
	ginkgo.ReportAfterSuite("weft csi", func(r ginkgo.Report) {
		for _, s := range r.SpecReports {
			if s.LeafNodeType != types.NodeTypeIt {
				continue
			}
			name := s.FullText()
			switch {
			case s.State == types.SpecStateSkipped && slices.Contains(skipped, name):
				report = append(report, "skipped (needs root): "+name)
			case s.State == types.SpecStateSkipped && slices.ContainsFunc(csiSkipReasons, func(m string) bool { return strings.Contains(s.Failure.Message, m) }):
				report = append(report, "skipped ("+s.Failure.Message+"): "+name)
			case s.State == types.SpecStateSkipped:
				t.Errorf("csi-sanity skipped %q: %q, not a reason weft expects", name, s.Failure.Message)
			case s.State == types.SpecStatePending:
				report = append(report, "pending in csi-sanity: "+name)
			case s.State == types.SpecStatePassed:
				report = append(report, "passed: "+name)
			}
		}
	})
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, rep := ginkgo.GinkgoConfiguration()
	for _, s := range skipped {
		suite.SkipStrings = append(suite.SkipStrings, regexp.QuoteMeta(s))
	}
	rep.Succinct = true
	ginkgo.RunSpecs(t, "weft csi-sanity", suite, rep)
	slices.Sort(report)
	t.Logf("csi-sanity specs:\n%s", strings.Join(report, "\n"))
}

// csiRootNode starts a daemon and `weft csi` in front of it, as root,
// with the tools the node service runs, and returns the plugin's socket.
func csiRootNode(t *testing.T) (h *harness, sock string, stop func()) {
	t.Helper()
	for _, tool := range []string{"losetup", "blkid", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make deps installs util-linux, e2fsprogs)", tool)
		}
	}
	h = newHarness(t, filepath.Join(t.TempDir(), "home"))
	h.ok("init", "--nbd", "off")
	h.startDaemon()
	sock, stop = startCSI(t, h.bin, h.home, t.TempDir(), nil)
	// Before the daemon stops (cleanups run last first): the disks' FUSE
	// mount the plugin asked for, which outlives the plugin.
	// Loop devices on its files go first: a test that failed, or whose
	// plugin died, may not have unstaged.
	t.Cleanup(func() {
		for _, dev := range loopsUnder(h.home) {
			trySys("losetup", "--detach", dev)
		}
		trySys("umount", "-l", filepath.Join(h.home, "csi", "disks"))
	})
	return h, sock, stop
}

// sanityConfig is csi-sanity's configuration for the plugin at sock with
// volumes of the access type mode, its target and staging paths in base
// (where the plugin can reach them).
func sanityConfig(sock, mode, base string) *sanity.TestConfig {
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + sock
	cfg.TargetPath = filepath.Join(base, "target")
	cfg.StagingPath = filepath.Join(base, "staging")
	cfg.TestVolumeSize = csiVolumeSize
	cfg.TestVolumeAccessType = mode
	cfg.IdempotentCount = 3
	return &cfg
}

// unprivilegedDir makes a directory that the unprivileged daemon and
// plugin own, with a copy of the binary they can run (the built one is in
// a root-only directory). cred is nil when the test is not root: then
// every process is unprivileged already.
func unprivilegedDir(t *testing.T, bin string) (string, *syscall.Credential) {
	dir, err := os.MkdirTemp("", "weft-csi-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	in, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(dir, "weft"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return dir, nil
	}
	const nobody = 65534
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir, &syscall.Credential{Uid: nobody, Gid: nobody}
}

// startProc starts bin with args as cred (nil: as the test), logging to a
// file shown if the test fails. stop sends SIGTERM to its process group
// and waits (SIGKILL after daemonStop); it runs at cleanup too.
func startProc(t *testing.T, bin string, cred *syscall.Credential, args ...string) (stop func()) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(bin)+"-"+args[2]+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "WEFT_HOME=")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test process that dies without its cleanups (Ginkgo
	// exits on a bad configuration) takes its daemons along, and with
	// them the e2e lock they inherited.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(args, " "), err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(daemonStop):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s %s:\n%s", bin, strings.Join(args, " "), b)
		}
	})
	return stop
}

// startUnprivilegedDaemon inits home and runs its daemon as cred.
func startUnprivilegedDaemon(t *testing.T, bin, home string, cred *syscall.Credential) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--home", home, "init", "--nbd", "off", "--http", "off", "--listen", "/ip4/127.0.0.1/tcp/0")
	cmd.Env = append(os.Environ(), "WEFT_HOME=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("weft init as uid %v: %v\n%s", cred, err, out)
	}
	startProc(t, bin, cred, "--home", home, "daemon", "--log-level", "debug")
	waitFor(t, "the unprivileged daemon", func() error {
		cl := api.NewClient(home)
		defer cl.Close()
		_, err := cl.Status(context.Background())
		return err
	})
}

// startCSI runs `weft csi` for home, its socket in dir, and returns the
// socket's path once it answers, and how to stop it.
func startCSI(t *testing.T, bin, home, dir string, cred *syscall.Credential) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(dir, "csi.sock")
	stop = startProc(t, bin, cred, "--home", home, "csi", "--endpoint", "unix://"+sock, "--node-id", "sanity-node", "--log-level", "debug")
	waitFor(t, "weft csi", func() error {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err
	})
	return sock, stop
}

// waitFor polls ready until it succeeds, for daemonStartup at most.
func waitFor(t *testing.T, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(daemonStartup)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %v: %v", what, daemonStartup, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
