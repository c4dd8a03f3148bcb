package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/weft-mesh/weft/api"
)

// TestAPISetACLBothInOneRequest: one PUT /v1/disks/{name}/acl sets the
// allow-list and the initiators together; a request with one invalid list
// changes neither; a list left out stays; a request of no list is invalid.
func TestAPISetACLBothInOneRequest(t *testing.T) {
	cl, _ := startNode(t)
	ctx := context.Background()
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lists := func(d api.DiskInfo) string { return fmt.Sprint(d.Allow, d.Initiators) }
	d, err := cl.SetACL(ctx, "d", api.ACLRequest{Allow: &[]string{"10.1.2.3/8"}, Initiators: &[]string{"IQN.2000-01.test:A"}})
	if err != nil {
		t.Fatal(err)
	}
	const both = "[10.0.0.0/8] [iqn.2000-01.test:a]"
	if lists(d) != both {
		t.Fatalf("answer to one request of both lists: %s, want %s", lists(d), both)
	}
	if d, err = cl.DiskInfo(ctx, "d"); err != nil || lists(d) != both {
		t.Fatalf("disk info after one request of both lists: %s, %v; want %s", lists(d), err, both)
	}
	_, err = cl.SetACL(ctx, "d", api.ACLRequest{Allow: &[]string{"192.0.2.0/24"}, Initiators: &[]string{"has space"}})
	if !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("a request with an invalid initiator: got %v, want ErrInvalid", err)
	}
	if d, err = cl.SetACL(ctx, "d", api.ACLRequest{Initiators: &[]string{}}); err != nil || lists(d) != "[10.0.0.0/8] []" {
		t.Fatalf("after a refused request and one clearing the initiators: %s, %v; want [10.0.0.0/8] []", lists(d), err)
	}
	if _, err := cl.SetACL(ctx, "d", api.ACLRequest{}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("a request of no list: got %v, want ErrInvalid", err)
	}
}
