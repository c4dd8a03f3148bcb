package main

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress counts bytes for a progress bar on stderr. It is a no-op when
// stderr is not a terminal, so scripts and logs stay clean.
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress starts a bar for total bytes (-1 if unknown).
func newProgress(g *globals, desc string, total int64) *progress {
	if !g.progress {
		return &progress{}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(g.stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionUseIECUnits(true),
	)
	return &progress{bar: bar}
}

// add records n more bytes done.
func (p *progress) add(n int64) {
	if p.bar != nil {
		_ = p.bar.Add64(n)
	}
}

// setOf records that done of total bytes are done, as a daemon reports.
func (p *progress) setOf(done, total int64) {
	if p.bar != nil {
		if total > 0 && total != p.bar.GetMax64() {
			p.bar.ChangeMax64(total)
		}
		_ = p.bar.Set64(done)
	}
}

// done removes the bar.
func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// progressReader counts what is read through it.
type progressReader struct {
	r io.Reader
	p *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(int64(n))
	return n, err
}
