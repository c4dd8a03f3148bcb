package size

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]int64{
		"0":      0,
		"4096":   4096,
		"4096B":  4096,
		"64K":    64 << 10,
		"64k":    64 << 10,
		"64KiB":  64 << 10,
		"64 KiB": 64 << 10,
		"64KB":   64 << 10,
		"32M":    32 << 20,
		"32MiB":  32 << 20,
		"1.5G":   3 << 29,
		"2GiB":   2 << 30,
		"1T":     1 << 40,
		"1TiB":   1 << 40,
		" 8M ":   8 << 20,
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d, nil", in, got, err, want)
		}
	}
	bad := []string{"", "K", "-1", "-1K", "abc", "12Q", "1e3", "0x10", "1.3B", "99999999999T", "NaN", "+5", "1_000"}
	for _, in := range bad {
		if got, err := Parse(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %d, %v; want ErrSyntax", in, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	cases := map[int64]string{
		0:                 "0 B",
		512:               "512 B",
		1024:              "1 KiB",
		64 << 10:          "64 KiB",
		3 << 29:           "1.5 GiB",
		1 << 40:           "1 TiB",
		-2048:             "-2 KiB",
		1<<20 + 1<<10*100: "1.1 MiB",
	}
	for in, want := range cases {
		if got := Format(in); got != want {
			t.Errorf("Format(%d) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"64K", "1.5G", "4096", "1TiB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err == nil && n < 0 {
			t.Fatalf("Parse(%q) = %d, want non-negative", s, n)
		}
	})
}
