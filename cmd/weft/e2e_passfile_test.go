package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/weft-mesh/weft/api"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/node"
)

// TestExportImportPassFile covers import and export of regular files, which
// the CLI passes to the daemon as open descriptors: the export writes the
// same bytes as the stream, leaves holes exactly where the disk has zero
// blocks, replaces what the file held, and leaves an existing file alone
// when the export is refused; the daemon refuses files it must not or
// cannot use, and requests that pass none.
func TestExportImportPassFile(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	h := newHarness(t, home)
	h.ok("init", "--nbd", "off")
	h.startDaemon()
	defer h.stopDaemon()

	img := padTo(testImage(t, 7), blockSize)
	src := writeTemp(t, "src.img", img)
	h.ok("disk", "import", "web", src)

	stream := h.run(nil, "disk", "export", "web", "-")
	if stream.code != 0 || !bytes.Equal([]byte(stream.stdout), img) {
		t.Fatalf("export web -: exit %d, %d bytes, want the %d bytes of the image", stream.code, len(stream.stdout), len(img))
	}
	// The output file held more than the disk: the export replaces it.
	out := writeTemp(t, "out.img", bytes.Repeat([]byte{0xee}, len(img)+3<<20))
	h.ok("disk", "export", "web", out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(stream.stdout)) {
		t.Fatalf("export to a file: %d bytes, first difference with the stream at %d", len(got), firstDiff(got, []byte(stream.stdout)))
	}
	wantHoles(t, out, img)

	// A refused export leaves an existing file as it was.
	h.fails(`"nope"`, "disk", "export", "nope", out)
	if again, err := os.ReadFile(out); err != nil || !bytes.Equal(again, got) {
		t.Fatalf("a refused export changed the existing file (%v)", err)
	}

	// The daemon refuses files it cannot write in place, and pipes.
	cl := node.NewClient(home)
	defer cl.Close()
	ctx := context.Background()
	ref := api.Ref{Disk: "web"}
	ro, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	wantInvalid(t, "export to a read-only descriptor", "not open for writing", func() error {
		_, err := cl.ExportFile(ctx, ref, ro, nil)
		return err
	})
	app, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	wantInvalid(t, "export to an appending descriptor", "appending", func() error {
		_, err := cl.ExportFile(ctx, ref, app, nil)
		return err
	})
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	wantInvalid(t, "export to a pipe", "not a regular file", func() error {
		_, err := cl.ExportFile(ctx, ref, pw, nil)
		return err
	})
	wantInvalid(t, "import from a pipe", "not a regular file", func() error {
		_, err := cl.ImportFile(ctx, api.DiskSpec{Name: "piped"}, pr, nil)
		return err
	})
	if again, err := os.ReadFile(out); err != nil || !bytes.Equal(again, got) {
		t.Fatalf("a refused descriptor changed the file (%v)", err)
	}

	// A request that passes no file is refused.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", node.Config{Home: home}.SocketPath())
	}}}
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/v1/disks/web/export-file", "/v1/disks/web2/import-file"} {
		resp, err := hc.Post("http://weft"+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "no open file was passed") {
			t.Fatalf("POST %s without a file: %d %s, want 400 naming the missing file", path, resp.StatusCode, body)
		}
	}
	h.fails(`"web2"`, "disk", "info", "web2")
}

// wantInvalid checks that call fails with an invalid-request error whose
// message contains want.
func wantInvalid(t *testing.T, what, want string, call func() error) {
	t.Helper()
	err := call()
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: %v, want an invalid-request error containing %q", what, err, want)
	}
}

// wantHoles checks that the file at path has data exactly where img has a
// non-zero block (SEEK_DATA/SEEK_HOLE, as cp --sparse and qemu-img see it).
func wantHoles(t *testing.T, path string, img []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	zeros := make([]byte, blockSize)
	for off := 0; off < len(img); off += blockSize {
		zero := bytes.Equal(img[off:off+blockSize], zeros)
		next, err := unix.Seek(fd, int64(off), unix.SEEK_DATA)
		isData := err == nil && next == int64(off)
		if errors.Is(err, unix.ENXIO) {
			isData = false
		} else if err != nil {
			t.Fatalf("SEEK_DATA at %d: %v", off, err)
		}
		if isData == zero {
			t.Fatalf("block at %d: data in the file %v, zero in the image %v", off, isData, zero)
		}
	}
}
