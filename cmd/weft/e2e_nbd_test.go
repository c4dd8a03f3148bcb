package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// needTool skips the test when a client binary is missing.
func needTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed (Debian package %s; make deps installs it as root)", tool, pkg)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tool runs an external program bounded by timeout and returns its
// combined output and exit code.
func tool(t *testing.T, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	return toolEnv(t, timeout, nil, name, args...)
}

func toolOK(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, code := tool(t, cmdTimeout, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d, want 0\n%s", name, strings.Join(args, " "), code, out)
	}
	return out
}

func sha(b []byte) string { s := sha256.Sum256(b); return fmt.Sprintf("%x", s[:8]) }

// nbdHarness starts a daemon serving NBD on a free port.
func nbdHarness(t *testing.T, initArgs ...string) (*harness, string) {
	t.Helper()
	h := newHarness(t, filepath.Join(t.TempDir(), "home"))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h.ok(append([]string{"init", "--nbd", addr}, initArgs...)...)
	h.startDaemon()
	return h, addr
}

func TestNBDClients(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	needTool(t, "nbdcopy", "libnbd-bin")
	h, addr := nbdHarness(t)
	sock := filepath.Join(h.home, node.NBDSocket)
	h.ok("disk", "create", "web", "--size", "64M")
	uri := "nbd://" + addr + "/web"

	if st := h.status(); st.NBD != addr || st.NBDSocket != sock {
		t.Fatalf("status: nbd %q socket %q, want %q %q", st.NBD, st.NBDSocket, addr, sock)
	}
	if out := h.ok("status"); !strings.Contains(out, "nbd://"+addr) {
		t.Fatalf("status does not show the NBD address:\n%s", out)
	}

	t.Run("qemu-io", func(t *testing.T) {
		out := toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M", uri)
		if strings.Contains(out, "verification failed") {
			t.Fatalf("qemu-io over TCP:\n%s", out)
		}
		unix := "nbd+unix:///web?socket=" + sock
		out = toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0xcd 1M 1M", "-c", "read -P 0xcd 1M 1M", "-c", "read -P 0xab 0 1M", unix)
		if strings.Contains(out, "verification failed") {
			t.Fatalf("qemu-io over the unix socket:\n%s", out)
		}
		img := h.export("web")
		if !bytes.Equal(img[:1<<20], bytes.Repeat([]byte{0xab}, 1<<20)) || !bytes.Equal(img[1<<20:2<<20], bytes.Repeat([]byte{0xcd}, 1<<20)) {
			t.Fatal("weft disk export does not show the patterns qemu-io wrote")
		}
	})

	t.Run("copy in and out", func(t *testing.T) {
		img := padTo(testImage(t, 7), blockSize)
		src := writeTemp(t, "src.img", img)
		for _, c := range []struct{ disk, in, out string }{
			{"viaqemu", "qemu-img", "qemu-img"},
			{"vianbdcopy", "nbdcopy", "nbdcopy"},
		} {
			h.ok("disk", "create", c.disk, "--size", strconv.Itoa(len(img)))
			u := "nbd://" + addr + "/" + c.disk
			dst := filepath.Join(t.TempDir(), c.disk+".img")
			if c.in == "qemu-img" {
				toolOK(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, u)
				toolOK(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", u, dst)
			} else {
				toolOK(t, "nbdcopy", src, u)
				toolOK(t, "nbdcopy", u, dst)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if sha(got) != sha(img) {
				t.Fatalf("%s: copied out %s, want %s", c.disk, sha(got), sha(img))
			}
			h.wantContent(c.disk, img)
		}
	})

	t.Run("fio verify", func(t *testing.T) {
		needTool(t, "fio", "fio")
		h.ok("disk", "create", "fio", "--size", "64M")
		out := toolOK(t, "fio", "--name=verify", "--ioengine=nbd", "--uri=nbd://"+addr+"/fio",
			"--rw=randwrite", "--bs=4k", "--size=32M", "--iodepth=16", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0")
		if !strings.Contains(out, "err= 0") {
			t.Fatalf("fio:\n%s", out)
		}
	})

	t.Run("replica is read-only", func(t *testing.T) {
		h.ok("replica", "create", "web", "snap")
		before := h.export("web@snap")
		out, code := tool(t, cmdTimeout, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", "nbd://"+addr+"/web@snap")
		if code == 0 && !strings.Contains(out, "failed") {
			t.Fatalf("qemu-io write to a replica succeeded:\n%s", out)
		}
		toolOK(t, "qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 0 1M", "nbd://"+addr+"/web@snap")
		h.wantContent("web@snap", before)
	})

	t.Run("acl", func(t *testing.T) {
		needTool(t, "nbdinfo", "libnbd-bin")
		h.ok("disk", "acl", "web", "--allow", "10.0.0.0/8")
		if out := h.ok("disk", "acl", "web"); !strings.Contains(out, "10.0.0.0/8") {
			t.Fatalf("disk acl shows %q, want 10.0.0.0/8", out)
		}
		start := time.Now()
		if out, code := tool(t, 20*time.Second, "nbdinfo", uri); code == 0 {
			t.Fatalf("nbdinfo from 127.0.0.1 on a 10.0.0.0/8 disk: exit 0\n%s", out)
		}
		// qemu names the refusal: NBD_REP_ERR_POLICY is "Denied by server".
		out, code := tool(t, 20*time.Second, "qemu-io", "-f", "raw", "-c", "read 0 1", uri)
		if code == 0 || !strings.Contains(out, "Denied by server") || !strings.Contains(out, "allow-list") {
			t.Fatalf("qemu-io from 127.0.0.1 on a 10.0.0.0/8 disk: exit %d, want a policy refusal\n%s", code, out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("refusals took %v", d)
		}
		// The local socket is trusted.
		toolOK(t, "nbdinfo", "nbd+unix:///web?socket="+sock)
		h.ok("disk", "acl", "web", "--allow", "127.0.0.0/8")
		toolOK(t, "nbdinfo", uri)
		h.ok("disk", "acl", "web", "--clear")
		if out := h.ok("disk", "acl", "web"); !strings.Contains(out, "any client") {
			t.Fatalf("after --clear: %q", out)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		rng := mrand.New(mrand.NewPCG(1, 2))
		junk := make([]byte, 4096)
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		flagsAndGo := func(name string, huge bool) []byte {
			b := binary.BigEndian.AppendUint32(nil, 3)
			b = append(b, "IHAVEOPT"...)
			b = binary.BigEndian.AppendUint32(b, 7)
			if huge {
				return binary.BigEndian.AppendUint32(b, 0xfffffff0)
			}
			data := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
			data = append(append(data, name...), 0, 0)
			return append(binary.BigEndian.AppendUint32(b, uint32(len(data))), data...)
		}
		inputs := [][]byte{
			junk,
			{0, 0},
			flagsAndGo("web", true),
			append(flagsAndGo("web", false), bytes.Repeat([]byte{0xee}, 28)...),
			// A write of 4 GiB - 1 whose payload never comes.
			append(flagsAndGo("web", false), 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3),
		}
		for i, in := range inputs {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			c.Write(in)
			// Half-close, as a client that sent a truncated message and
			// left would; the negotiation deadline covers silent clients.
			c.(*net.TCPConn).CloseWrite()
			_, err = io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("input %d: connection not closed: %v", i, err)
			}
			c.Close()
		}
		toolOK(t, "qemu-io", "-f", "raw", "-c", "read -P 0xab 0 1M", uri)
		h.status() // the daemon still answers
	})

	t.Run("no leaks", func(t *testing.T) {
		st := h.status()
		settle := func() node.Status {
			var s node.Status
			deadline := time.Now().Add(10 * time.Second)
			for {
				s = h.status()
				if s.NBDConns == 0 && s.Goroutines <= st.Goroutines || time.Now().After(deadline) {
					return s
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		st = settle()
		fdsBefore := countFDs(t, st.PID)
		for i := range 200 {
			nbdSession(t, addr, "web", i%3)
		}
		for range 3 {
			toolOK(t, "nbdinfo", uri)
		}
		after := settle()
		fdsAfter := countFDs(t, st.PID)
		if after.Goroutines > st.Goroutines+2 {
			t.Fatalf("goroutines: %d after 200 connections, %d before", after.Goroutines, st.Goroutines)
		}
		if fdsAfter > fdsBefore+2 {
			t.Fatalf("file descriptors: %d after 200 connections, %d before", fdsAfter, fdsBefore)
		}
		t.Logf("goroutines %d -> %d, fds %d -> %d", st.Goroutines, after.Goroutines, fdsBefore, fdsAfter)
	})
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Skipf("cannot count the daemon's file descriptors: %v", err)
	}
	return len(ents)
}

// nbdSession is one short client session: mode 0 negotiates, reads and
// disconnects politely; 1 negotiates and drops the connection; 2 drops it
// during negotiation.
func nbdSession(t *testing.T, addr, name string, mode int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greet := make([]byte, 18)
	if _, err := io.ReadFull(c, greet); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	if mode == 2 {
		c.Write([]byte{0, 0, 0, 3, 'I', 'H'})
		return
	}
	nbdGo(t, c, name)
	if mode == 1 {
		return
	}
	req := []byte{0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0}
	c.Write(req)
	if _, err := io.CopyN(io.Discard, c, 16+4096); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	binary.BigEndian.PutUint16(req[6:], 2) // DISC
	c.Write(req)
}

// nbdGo opens export name with NBD_OPT_GO on c, whose greeting has been
// read, and returns once the server acknowledged it.
func nbdGo(t *testing.T, c net.Conn, name string) {
	t.Helper()
	b := binary.BigEndian.AppendUint32(nil, 3)
	b = append(b, "IHAVEOPT"...)
	b = binary.BigEndian.AppendUint32(b, 7)
	data := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	data = append(append(data, name...), 0, 0)
	b = append(binary.BigEndian.AppendUint32(b, uint32(len(data))), data...)
	c.Write(b)
	for {
		hdr := make([]byte, 20)
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatalf("option reply: %v", err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[16:]))); err != nil {
			t.Fatal(err)
		}
		typ := binary.BigEndian.Uint32(hdr[12:])
		if typ == 1 { // ACK
			break
		}
		if typ != 3 { // INFO
			t.Fatalf("GO %s: reply type %#x", name, typ)
		}
	}
}

func TestNBDTLS(t *testing.T) {
	needTool(t, "nbdinfo", "libnbd-bin")
	dir := t.TempDir()
	writeCert(t, dir)
	h, addr := nbdHarness(t, "--nbd-tls-cert", filepath.Join(dir, "server-cert.pem"),
		"--nbd-tls-key", filepath.Join(dir, "server-key.pem"), "--nbd-tls-required")
	h.ok("disk", "create", "web", "--size", "8M")
	if st := h.status(); st.NBDTLS != "required" {
		t.Fatalf("status nbd_tls %q, want required", st.NBDTLS)
	}
	out := toolOK(t, "nbdinfo", "nbds://"+addr+"/web?tls-certificates="+dir)
	if !strings.Contains(out, "with TLS") || !strings.Contains(out, "8388608") {
		t.Fatalf("nbdinfo over TLS:\n%s", out)
	}
	out, code := tool(t, 20*time.Second, "nbdinfo", "nbd://"+addr+"/web")
	if code == 0 {
		t.Fatalf("nbdinfo without TLS on a TLS-required server: exit 0\n%s", out)
	}
	// The local socket needs no TLS.
	toolOK(t, "nbdinfo", "nbd+unix:///web?socket="+filepath.Join(h.home, node.NBDSocket))
}

// writeCert writes a self-signed CA-capable certificate for 127.0.0.1 as
// server-cert.pem, server-key.pem and ca-cert.pem (the names GnuTLS-based
// clients look for in a certificate directory).
func writeCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		"server-cert.pem": cert,
		"ca-cert.pem":     cert,
		"server-key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
