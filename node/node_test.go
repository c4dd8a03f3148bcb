package node

import (
	"bytes"
	"context"
	"errors"
	"github.com/weft-mesh/weft/api"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startNode runs a node on a fresh home until the test ends and returns a
// client for it.
func startNode(t *testing.T) (*Client, Config) {
	t.Helper()
	return startNodeWith(t, func(*Config) {})
}

// startNodeWith is startNode with a config that set changes.
func startNodeWith(t *testing.T, set func(*Config)) (*Client, Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Home = filepath.Join(t.TempDir(), "h")
	cfg.NBD = "" // other test packages run at the same time; keep off the default ports
	cfg.Listen = nil
	cfg.HTTP = ""
	set(&cfg)
	if _, err := Init(cfg, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { err := Run(ctx, cfg); done <- err; close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err, ok := <-done:
			if ok && err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	})
	cl := NewClient(cfg.Home)
	t.Cleanup(cl.Close)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for {
		if _, err := cl.Status(wctx); err == nil {
			return cl, cfg
		} else if wctx.Err() != nil {
			t.Fatalf("node did not answer: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestAPIErrors(t *testing.T) {
	cl, cfg := startNode(t)
	ctx := context.Background()
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		err    error
		status int
		want   error
	}{
		{"info missing", second(cl.DiskInfo(ctx, "nope")), 404, api.ErrNotFound},
		{"create twice", second(cl.CreateDisk(ctx, api.DiskSpec{Name: "d", Size: 1 << 20})), 409, api.ErrExists},
		{"bad name", second(cl.CreateDisk(ctx, api.DiskSpec{Name: "a/b", Size: 1})), 400, api.ErrInvalid},
		{"bad block size", second(cl.CreateDisk(ctx, api.DiskSpec{Name: "e", Size: 1 << 20, BlockSize: 3000})), 400, api.ErrInvalid},
		{"restore missing", second(cl.Restore(ctx, "d", "nope")), 404, api.ErrNotFound},
		{"rm replica missing", cl.RemoveReplica(ctx, "d", "nope"), 404, api.ErrNotFound},
	}
	for _, c := range cases {
		var ae *APIError
		if !errors.As(c.err, &ae) || ae.Status != c.status || !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v (%+v), want status %d matching %v", c.name, c.err, ae, c.status, c.want)
		}
	}

	// A second node on the same home is refused.
	if err := Run(ctx, cfg); !errors.Is(err, ErrHomeInUse) {
		t.Fatalf("second Run: got %v, want ErrHomeInUse", err)
	}
	fi, err := os.Stat(cfg.SocketPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestAPIImportExport(t *testing.T) {
	cl, _ := startNode(t)
	ctx := context.Background()
	img := make([]byte, 300<<10)
	for i := range 70 << 10 {
		img[i] = byte(i*7 + 1)
	}
	info, err := cl.Import(ctx, api.DiskSpec{Name: "d", BlockSize: 64 << 10}, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 320<<10 || info.UsedBytes != 128<<10 {
		t.Fatalf("import: %+v, want size 320 KiB, used 128 KiB", info)
	}
	er, err := cl.Export(ctx, api.Ref{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	defer er.Close()
	got := make([]byte, er.Size())
	for {
		rec, err := er.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		copy(got[rec.Off:], rec.Data) // holes stay zero
	}
	want := append(img, make([]byte, 20<<10)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("export: %d bytes, want %d equal bytes", len(got), len(want))
	}
	if _, err := cl.Export(ctx, api.Ref{Disk: "nope"}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("export missing: got %v, want ErrNotFound", err)
	}
}

// TestAPIFilePassed: import and export through a passed descriptor give
// what the streams give. The import reads from the descriptor's offset; the
// export replaces what the file held, holes where the disk is zero.
func TestAPIFilePassed(t *testing.T) {
	cl, _ := startNode(t)
	ctx := context.Background()
	img := make([]byte, 300<<10)
	for i := range 70 << 10 {
		img[i] = byte(i*7 + 1)
	}
	src, err := os.Create(filepath.Join(t.TempDir(), "src.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Write(append([]byte("skip"), img...)); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var last int64
	info, err := cl.ImportFile(ctx, api.DiskSpec{Name: "d", BlockSize: 64 << 10}, src, func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := cl.Import(ctx, api.DiskSpec{Name: "s", BlockSize: 64 << 10}, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Root != streamed.Root || info.Size != 320<<10 || last != int64(len(img)) {
		t.Fatalf("import of a passed file: %+v (progress %d), want the streamed import's root %s and size 320 KiB", info, last, streamed.Root)
	}

	out, err := os.Create(filepath.Join(t.TempDir(), "out.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.Write(bytes.Repeat([]byte{0xee}, 1<<20)); err != nil {
		t.Fatal(err)
	}
	res, err := cl.ExportFile(ctx, api.Ref{Disk: "d"}, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := append(img, make([]byte, 20<<10)...)
	if !bytes.Equal(got, want) || res.Size != int64(len(want)) || res.Data != 128<<10 {
		t.Fatalf("export to a passed file: %d bytes (equal %v), result %+v, want %d bytes and 128 KiB of data", len(got), bytes.Equal(got, want), res, len(want))
	}
	if hole, err := unix.Seek(int(out.Fd()), 0, unix.SEEK_HOLE); err != nil || hole != 128<<10 {
		t.Fatalf("first hole at %d (%v), want %d: the zero blocks must be holes", hole, err, 128<<10)
	}
}

func TestNoDaemon(t *testing.T) {
	home := t.TempDir()
	cl := NewClient(home)
	defer cl.Close()
	_, err := cl.Status(context.Background())
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no socket: got %v, want ErrNoDaemon", err)
	}
	// A stale socket file (nobody listening) is also "no daemon".
	ln, err := net.Listen("unix", filepath.Join(home, SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := cl.Status(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("stale socket: got %v, want ErrNoDaemon", err)
	}
}
