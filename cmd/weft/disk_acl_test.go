package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/api"
)

// aclDaemon is a daemon's API on HOME/weft.sock that records every request
// and answers a disk's info with the lists the last ACL request set.
type aclDaemon struct {
	mu    sync.Mutex
	calls []string // "METHOD PATH"
	reqs  []api.ACLRequest
}

func startACLDaemon(t *testing.T, home string) *aclDaemon {
	t.Helper()
	d := &aclDaemon{}
	ln, err := net.Listen("unix", api.SocketPath(home))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(d.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *aclDaemon) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, r.Method+" "+r.URL.Path)
	info := api.DiskInfo{Name: "web"}
	if r.Method == http.MethodPut && r.URL.Path == "/v1/disks/web/acl" {
		var req api.ACLRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.reqs = append(d.reqs, req)
		if req.Allow != nil {
			info.Allow = *req.Allow
		}
		if req.Initiators != nil {
			info.Initiators = *req.Initiators
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(info)
}

// TestDiskACLSetsBothListsInOneRequest: weft disk acl with --allow and
// --allow-initiator sends one request carrying both lists, so they change
// together; --clear sends one request emptying both; no flag only reads.
func TestDiskACLSetsBothListsInOneRequest(t *testing.T) {
	cases := []struct {
		name                  string
		args                  []string
		wantCall              string
		wantAllow, wantInitrs *[]string
	}{
		{"both", []string{"--allow", "10.0.0.0/8", "--allow-initiator", "iqn.2000-01.test:a"}, "PUT /v1/disks/web/acl", &[]string{"10.0.0.0/8"}, &[]string{"iqn.2000-01.test:a"}},
		{"initiators", []string{"--allow-initiator", "iqn.2000-01.test:a"}, "PUT /v1/disks/web/acl", nil, &[]string{"iqn.2000-01.test:a"}},
		{"clear", []string{"--clear"}, "PUT /v1/disks/web/acl", &[]string{}, &[]string{}},
		{"show", nil, "GET /v1/disks/web", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			d := startACLDaemon(t, home)
			var out strings.Builder
			g := &globals{home: home, stdout: &out, stderr: io.Discard}
			cmd := newDiskACLCmd(g)
			cmd.SetArgs(append([]string{"web"}, c.args...))
			cmd.SetOut(io.Discard)
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("disk acl %v: %v", c.args, err)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if len(d.calls) != 1 || d.calls[0] != c.wantCall {
				t.Fatalf("requests %q, want one: %s", d.calls, c.wantCall)
			}
			if c.wantAllow == nil && c.wantInitrs == nil {
				return
			}
			req := d.reqs[0]
			if !sameList(req.Allow, c.wantAllow) || !sameList(req.Initiators, c.wantInitrs) {
				t.Fatalf("request allow %v initiators %v, want %v %v", deref(req.Allow), deref(req.Initiators), deref(c.wantAllow), deref(c.wantInitrs))
			}
		})
	}
}

func sameList(a, b *[]string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(*a, *b)
}

func deref(l *[]string) any {
	if l == nil {
		return "absent"
	}
	return *l
}
