// Command wirefloor is the least a receiver that keeps weft's promises
// must do per byte, to measure what a pull or push between two daemons
// could reach on this machine: a sender streams random 64 KiB blocks with
// their BLAKE3 digests over TLS 1.3 on loopback, and the receiver reads
// them in requests of 4 MiB, hashes every block and checks its digest
// (spread over the cores, as weft does), writes each request as it came
// (digest and block, as a segment record holds CID and block) with one
// pwrite and fdatasyncs it. No
// framing, no index, no multiplexing: scripts/bench-wire.sh prints it
// beside weft and iperf3 so that weft's overhead is told apart from what
// encryption, hashing and a durable write cost here. With --discard the
// receiver verifies every block and writes nothing: the ceiling that TLS
// and BLAKE3 alone leave on this machine, whatever the disk.
//
//	wirefloor [--size MiB] [--request BYTES] [--from IP] [--to IP] [--discard] DIR
//
// writes DIR/floor.img (removed at the end) and prints the rate in MB/s.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// blockSize is weft's default disk block size; each block travels with
// its 32-byte digest, as a block travels with its CID.
const (
	blockSize  = 64 << 10
	digestSize = 32
	recordSize = digestSize + blockSize
)

func main() {
	sizeMiB := flag.Int("size", 1024, "MiB of block payload to move")
	request := flag.Int("request", 4<<20, "payload bytes per request (one pwrite and fdatasync each)")
	from := flag.String("from", "127.0.0.1", "sender's address")
	to := flag.String("to", "127.0.0.2", "receiver's address")
	discard := flag.Bool("discard", false, "verify every block and write nothing (the ceiling without a disk)")
	flag.Parse()
	if flag.NArg() != 1 || *sizeMiB <= 0 || *request < blockSize {
		fmt.Fprintln(os.Stderr, "usage: wirefloor [--size MiB] [--request BYTES] [--from IP] [--to IP] [--discard] DIR")
		os.Exit(2)
	}
	cfg := config{payload: int64(*sizeMiB) << 20, request: *request / blockSize * blockSize, from: *from, to: *to, discard: *discard}
	path := filepath.Join(flag.Arg(0), "floor.img")
	defer os.Remove(path)
	start := time.Now()
	if err := run(context.Background(), cfg, path); err != nil {
		fmt.Fprintln(os.Stderr, "wirefloor:", err)
		os.Exit(1)
	}
	fmt.Printf("%.0f\n", float64(cfg.payload)/1e6/time.Since(start).Seconds())
}

type config struct {
	payload int64 // bytes of block payload, rounded down to whole requests
	request int   // payload bytes per request, whole blocks
	from    string
	to      string
	discard bool // verify and drop each request instead of writing it
}

// run moves cfg.payload bytes from a sender to a receiver writing path,
// both in this process, and returns once the receiver has made the last
// byte durable (or, with cfg.discard, verified it; path is not created).
func run(ctx context.Context, cfg config, path string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.to, "0"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	var f *os.File
	if !cfg.discard {
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return err
		}
		defer f.Close()
	}
	requests := int(cfg.payload / int64(cfg.request))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		conn := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		defer conn.Close()
		return receive(ctx, conn, f, cfg.request, requests)
	})
	g.Go(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(cfg.from)}}
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		conn := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		defer conn.Close()
		return send(conn, cfg.request, requests)
	})
	return g.Wait()
}

// send writes requests × request payload bytes of blocks, each after its
// digest. The same 64 MiB of random blocks are sent over and over.
func send(w io.Writer, request, requests int) error {
	const distinct = 1024
	recs := make([]byte, distinct*recordSize)
	for i := range distinct {
		r := recs[i*recordSize : (i+1)*recordSize]
		if _, err := rand.Read(r[digestSize:]); err != nil {
			return err
		}
		sum := blake3.Sum256(r[digestSize:])
		copy(r, sum[:])
	}
	perRequest := request / blockSize
	next := 0
	for range requests {
		for n := perRequest; n > 0; {
			k := min(n, distinct-next)
			if _, err := w.Write(recs[next*recordSize : (next+k)*recordSize]); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			next = (next + k) % distinct
			n -= k
		}
	}
	return nil
}

// receive reads requests of request payload bytes, verifies every block
// and appends the request to f, durable before its buffer is read into
// again: reading overlaps the previous request's hashing and writing, as
// a client with requests in flight does. A nil f drops each request once
// verified.
func receive(ctx context.Context, r io.Reader, f *os.File, request, requests int) error {
	perRequest := request / blockSize
	type filled struct {
		buf []byte
		n   int
	}
	free := make(chan []byte, 2)
	for range cap(free) {
		free <- make([]byte, perRequest*recordSize)
	}
	full := make(chan filled, 1)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(full)
		for i := range requests {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			if _, err := io.ReadFull(r, buf); err != nil {
				return fmt.Errorf("receive request %d: %w", i, err)
			}
			select {
			case full <- filled{buf: buf, n: i}:
			case <-ctx.Done(): // the writer failed
				return ctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for req := range full {
			if err := verify(req.buf); err != nil {
				return fmt.Errorf("request %d: %w", req.n, err)
			}
			if f == nil {
				free <- req.buf
				continue
			}
			if _, err := unix.Pwrite(int(f.Fd()), req.buf, int64(req.n)*int64(len(req.buf))); err != nil {
				return fmt.Errorf("pwrite: %w", err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				return fmt.Errorf("fdatasync: %w", err)
			}
			free <- req.buf
		}
		return nil
	})
	return g.Wait()
}

// errBadBlock means a block did not hash to the digest sent with it.
var errBadBlock = errors.New("block does not match its digest")

// verify hashes every record of recs, split over the cores, and checks it
// against its digest.
func verify(recs []byte) error {
	n := len(recs) / recordSize
	workers := min(runtime.GOMAXPROCS(0), n)
	per := (n + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * per; i < min((w+1)*per, n); i++ {
				rec := recs[i*recordSize : (i+1)*recordSize]
				sum := blake3.Sum256(rec[digestSize:])
				if string(sum[:]) != string(rec[:digestSize]) {
					errs[w] = fmt.Errorf("block %d: %w", i, errBadBlock)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// selfSigned makes a throwaway ECDSA certificate for the TLS server.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
