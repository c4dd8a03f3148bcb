package errkind

import (
	"errors"
	"io/fs"
	"testing"
)

func TestErrorfMatchesKindAndWrapped(t *testing.T) {
	cause := errors.New("disk full")
	err := Errorf(fs.ErrNotExist, "replica %q: %w", "web@mon", cause)
	if got, want := err.Error(), `replica "web@mon": disk full`; got != want {
		t.Errorf("message %q, want %q (the kind's text must not be appended)", got, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("does not match its kind")
	}
	if !errors.Is(err, cause) {
		t.Error("does not match the error it wraps")
	}
	if errors.Is(err, fs.ErrExist) {
		t.Error("matches another kind")
	}
}
