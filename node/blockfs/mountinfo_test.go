package blockfs

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	in := `22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
97 29 7:3 / /var/lib/weft/docker/mnt/my\040vol rw,relatime shared:50 master:3 - ext4 /dev/loop3 rw
98 29 0:55 / /home/weft/fuse rw - fuse.weft weft rw,user_id=0
`
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{Device: "0:21", Dir: "/proc", FSType: "proc", Source: "proc"},
		{Device: "7:3", Dir: "/var/lib/weft/docker/mnt/my vol", FSType: "ext4", Source: "/dev/loop3"},
		{Device: "0:55", Dir: "/home/weft/fuse", FSType: "fuse.weft", Source: "weft"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3 4 5 6 no-separator\n")); err == nil {
		t.Fatal("a line without the - separator: got nil error, want one")
	}
}
