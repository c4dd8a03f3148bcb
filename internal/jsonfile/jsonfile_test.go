package jsonfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

type doc struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.json")
	got := doc{Count: 7} // a default the file does not set stays
	if err := Load(path, &got); !errors.Is(err, fs.ErrNotExist) || got.Count != 7 {
		t.Fatalf("load of a missing file: %v, %+v; want fs.ErrNotExist and the value untouched", err, got)
	}
	if err := Save(path, doc{Name: "a", Count: 1}, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v, %v; want mode 0600", fi, err)
	}
	if err := Save(path, doc{Name: "b"}, 0o600); err != nil {
		t.Fatal(err)
	}
	got = doc{}
	if err := Load(path, &got); err != nil || got != (doc{Name: "b"}) {
		t.Fatalf("load: %+v, %v; want the second save whole", got, err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Load(path, &got); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("load of a broken file: %v, want a decode error", err)
	}
}
