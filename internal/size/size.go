// Package size parses and formats byte sizes the way the weft CLI shows
// them: binary units (1K = 1024 bytes), with or without the "iB" spelling.
package size

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("invalid size")

var units = []struct {
	suffix string
	shift  uint
}{
	{"TIB", 40}, {"GIB", 30}, {"MIB", 20}, {"KIB", 10},
	{"TB", 40}, {"GB", 30}, {"MB", 20}, {"KB", 10},
	{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10},
	{"B", 0},
}

// Parse reads a size such as "4096", "64K", "32M", "1.5G", "1T", "64KiB" or
// "2 GiB". Units are binary and case-insensitive: K, KB and KiB all mean
// 1024 bytes. The result is a whole, non-negative number of bytes.
func Parse(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("%w %q: empty", ErrSyntax, s)
	}
	var shift uint
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			shift = u.shift
			break
		}
	}
	if t == "" || strings.ContainsAny(t, "+-eE_xXpP") && !isPlainInt(t) {
		return 0, fmt.Errorf("%w %q: want a number with an optional unit (K, M, G, T)", ErrSyntax, s)
	}
	if n, err := strconv.ParseUint(t, 10, 63); err == nil {
		if shift > 0 && n > math.MaxInt64>>shift {
			return 0, fmt.Errorf("%w %q: too large", ErrSyntax, s)
		}
		return int64(n) << shift, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w %q: want a number with an optional unit (K, M, G, T)", ErrSyntax, s)
	}
	v := f * float64(uint64(1)<<shift)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%w %q: too large", ErrSyntax, s)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes", ErrSyntax, s)
	}
	return int64(v), nil
}

func isPlainInt(t string) bool {
	for _, r := range t {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Format renders n bytes for people: "0 B", "512 B", "64 KiB", "1.5 GiB".
// It shows at most one decimal and drops it when it is zero.
func Format(n int64) string {
	if n < 0 {
		return "-" + Format(-n)
	}
	const names = "KMGTPE"
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v := float64(n)
	i := -1
	for v >= 1024 && i < len(names)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + names[i:i+1] + "iB"
}
