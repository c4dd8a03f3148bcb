package blockfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo, the fields blockfs uses.
type mountEntry struct {
	Device string // major:minor of the mounted device
	Dir    string // mount point, unescaped
	FSType string
	Source string
}

// parseMountinfo reads the kernel's mountinfo format (proc(5)): fields
// separated by spaces, optional fields ended by "-", spaces and other
// bytes in paths escaped as \ooo octal.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		out = append(out, mountEntry{
			Device: f[2], Dir: unescapeOctal(f[4]),
			FSType: f[sep+1], Source: unescapeOctal(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAt returns the top mount at dir (the last one mounted there), if
// any.
func mountAt(dir string) (mountEntry, bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	all, err := parseMountinfo(f)
	if err != nil {
		return mountEntry{}, false, err
	}
	dir = filepath.Clean(dir)
	var top mountEntry
	found := false
	for _, m := range all {
		if m.Dir == dir {
			top, found = m, true
		}
	}
	return top, found, nil
}

// IsMountPoint reports whether something is mounted at dir, from the
// kernel's mount table (it never touches dir, which may not answer).
func IsMountPoint(dir string) (bool, error) {
	_, ok, err := mountAt(dir)
	return ok, err
}

// Mounted reports whether something is mounted at dir (IsMountPoint).
func (Attacher) Mounted(dir string) (bool, error) { return IsMountPoint(dir) }

// loopByDevice returns /dev/loopN for a major:minor that is a loop device,
// "" otherwise.
func loopByDevice(sysDevBlock, majMin string) string {
	target, err := os.Readlink(filepath.Join(sysDevBlock, majMin))
	if err != nil {
		return ""
	}
	name := filepath.Base(target)
	if !strings.HasPrefix(name, "loop") {
		return ""
	}
	return "/dev/" + name
}
