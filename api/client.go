package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"syscall"
)

// Client talks to the daemon of one home over its unix socket. It is safe
// for concurrent use. Every error response comes back as an *APIError; a
// home without a daemon gives an error matching ErrNoDaemon.
type Client struct {
	home string
	hc   *http.Client
}

// NewClient returns a client for the daemon serving home.
func NewClient(home string) *Client {
	sock := SocketPath(home)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableCompression: true,
		MaxIdleConns:       4,
		WriteBufferSize:    256 << 10,
		ReadBufferSize:     256 << 10,
	}
	return &Client{home: home, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// ListDisks returns every disk, sorted by name.
func (c *Client) ListDisks(ctx context.Context) ([]DiskInfo, error) {
	var ds []DiskInfo
	return ds, c.do(ctx, http.MethodGet, "/v1/disks", nil, &ds)
}

// CreateDisk creates an empty disk.
func (c *Client) CreateDisk(ctx context.Context, spec DiskSpec) (DiskInfo, error) {
	var info DiskInfo
	req := CreateDiskRequest{Name: spec.Name, Size: spec.Size, BlockSize: spec.BlockSize, Replicas: spec.Replicas, Sync: spec.Sync, Creator: spec.Creator}
	return info, c.do(ctx, http.MethodPost, "/v1/disks", req, &info)
}

// DiskInfo describes one disk.
func (c *Client) DiskInfo(ctx context.Context, name string) (DiskInfo, error) {
	var info DiskInfo
	return info, c.do(ctx, http.MethodGet, "/v1/disks/"+url.PathEscape(name), nil, &info)
}

// RemoveDisk removes a disk head; its replicas stay. It is refused
// (409, code "busy") while the disk is in use on the node: NBD
// connections, open files in a FUSE mount, loop devices on them.
func (c *Client) RemoveDisk(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/disks/"+url.PathEscape(name), nil, nil)
}

// ForceRemoveDisk removes a disk head even while it is in use: it keeps
// the head as a replica first, then cuts the users off.
func (c *Client) ForceRemoveDisk(ctx context.Context, name string) (RemoveDiskResult, error) {
	var res RemoveDiskResult
	return res, c.do(ctx, http.MethodDelete, "/v1/disks/"+url.PathEscape(name)+"?force=true", nil, &res)
}

// SetACL changes who may open a disk, in one request: the client
// networks (CIDR) allowed over NBD TCP and iSCSI, the iSCSI initiator
// names allowed, or both at once (see ACLRequest).
func (c *Client) SetACL(ctx context.Context, name string, req ACLRequest) (DiskInfo, error) {
	var info DiskInfo
	return info, c.do(ctx, http.MethodPut, "/v1/disks/"+url.PathEscape(name)+"/acl", req, &info)
}

// SetCHAP sets a disk's iSCSI CHAP secrets; the zero request turns CHAP
// off.
func (c *Client) SetCHAP(ctx context.Context, name string, req CHAPRequest) (DiskInfo, error) {
	var info DiskInfo
	return info, c.do(ctx, http.MethodPut, "/v1/disks/"+url.PathEscape(name)+"/chap", req, &info)
}

// Mount asks the daemon to mount the node's disks at dir, an absolute path
// of an existing directory, and returns once they are served there.
func (c *Client) Mount(ctx context.Context, dir string) (MountInfo, error) {
	var m MountInfo
	return m, c.do(ctx, http.MethodPost, "/v1/mounts", MountRequest{Dir: dir}, &m)
}

// Unmount unmounts the mount at dir. An error with code "busy" means a
// file in it is open; lazy detaches it anyway, and it goes away when the
// last file closes.
func (c *Client) Unmount(ctx context.Context, dir string, lazy bool) error {
	q := url.Values{"dir": {dir}}
	if lazy {
		q.Set("lazy", "true")
	}
	return c.do(ctx, http.MethodDelete, "/v1/mounts?"+q.Encode(), nil, nil)
}

// WaitMount blocks until the mount at dir is gone (unmounted by anyone, or
// the daemon stopped) or ctx is done.
func (c *Client) WaitMount(ctx context.Context, dir string) error {
	return c.do(ctx, http.MethodGet, "/v1/mounts/wait?"+url.Values{"dir": {dir}}.Encode(), nil, nil)
}

// Commit commits a disk's dirty blocks and returns its new state.
func (c *Client) Commit(ctx context.Context, name string) (DiskInfo, error) {
	var info DiskInfo
	return info, c.do(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(name)+"/commit", nil, &info)
}

// Clone creates disk name from a disk head or a replica; creator is as
// DiskSpec.Creator.
func (c *Client) Clone(ctx context.Context, src Ref, name, creator string) (DiskInfo, error) {
	var info DiskInfo
	return info, c.do(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(src.String())+"/clone", CloneRequest{Name: name, Creator: creator}, &info)
}

// importURL is the URL of an import endpoint ("import", "import-file") for
// the disk spec names, with its block size and replicas when set.
func importURL(spec DiskSpec, endpoint string) string {
	q := url.Values{}
	if spec.BlockSize != 0 {
		q.Set("block_size", strconv.FormatInt(spec.BlockSize, 10))
	}
	if spec.Replicas != 0 {
		q.Set("replicas", strconv.Itoa(spec.Replicas))
	}
	u := "http://weft/v1/disks/" + url.PathEscape(spec.Name) + "/" + endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// Import streams r into the disk named by spec, creating it (with
// spec.BlockSize and spec.Replicas) if absent. size is the length of r if
// known, else -1.
func (c *Client) Import(ctx context.Context, spec DiskSpec, r io.Reader, size int64) (DiskInfo, error) {
	u := importURL(spec, "import")
	// A large read buffer turns the upload into megabyte writes on the
	// socket rather than the 32 KiB of a plain io.Copy.
	body := io.NopCloser(bufio.NewReaderSize(r, 1<<20))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("import %s: %w", spec.Name, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	var info DiskInfo
	return info, c.send(req, &info)
}

// Export opens an export stream of a disk head or replica. The caller must
// Close the returned reader.
func (c *Client) Export(ctx context.Context, ref Ref) (*ExportReader, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://weft/v1/disks/"+url.PathEscape(ref.String())+"/export", nil)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", ref, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	er, err := NewExportReader(resp.Body)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("export %s: %w", ref, err)
	}
	return er, nil
}

// ListReplicas returns a disk's replicas, oldest first.
func (c *Client) ListReplicas(ctx context.Context, disk string) ([]ReplicaInfo, error) {
	var rs []ReplicaInfo
	return rs, c.do(ctx, http.MethodGet, "/v1/disks/"+url.PathEscape(disk)+"/replicas", nil, &rs)
}

// ReplicaDisks returns, sorted, the disks of this node that have
// replicas, removed disks whose replicas remain included.
func (c *Client) ReplicaDisks(ctx context.Context) ([]string, error) {
	var ds []string
	return ds, c.do(ctx, http.MethodGet, "/v1/replicas", nil, &ds)
}

// CreateReplica names the disk's current content; name "" picks a
// timestamp name.
func (c *Client) CreateReplica(ctx context.Context, disk, name string) (ReplicaInfo, error) {
	var r ReplicaInfo
	return r, c.do(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(disk)+"/replicas", CreateReplicaRequest{Name: name}, &r)
}

// Restore moves the disk's head to a replica.
func (c *Client) Restore(ctx context.Context, disk, replica string) (RestoreResult, error) {
	var res RestoreResult
	p := "/v1/disks/" + url.PathEscape(disk) + "/replicas/" + url.PathEscape(replica) + "/restore"
	return res, c.do(ctx, http.MethodPost, p, nil, &res)
}

// RemoveReplica deletes a replica.
func (c *Client) RemoveReplica(ctx context.Context, disk, replica string) error {
	return c.do(ctx, http.MethodDelete, "/v1/disks/"+url.PathEscape(disk)+"/replicas/"+url.PathEscape(replica), nil, nil)
}

// GC collects unreachable blocks.
func (c *Client) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	return st, c.do(ctx, http.MethodPost, "/v1/gc", nil, &st)
}

// Scrub verifies every stored block.
func (c *Client) Scrub(ctx context.Context) (ScrubResult, error) {
	var res ScrubResult
	return res, c.do(ctx, http.MethodPost, "/v1/scrub", nil, &res)
}

// do sends a JSON request (body may be nil) and decodes a JSON response
// into out (may be nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://weft"+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

func (c *Client) send(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// transportError turns a failure to reach the socket into ErrNoDaemon.
func (c *Client) transportError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return &noDaemonError{home: c.home}
	}
	return fmt.Errorf("talk to daemon at %s: %w", c.home, err)
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorLen))
	var eb ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
		return &APIError{Status: resp.StatusCode, Code: CodeInternal, Message: fmt.Sprintf("daemon answered %s", resp.Status)}
	}
	return &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
}

// ID returns the node's peer ID and dialable addresses.
func (c *Client) ID(ctx context.Context) (IDInfo, error) {
	var out IDInfo
	return out, c.do(ctx, http.MethodGet, "/v1/id", nil, &out)
}

// Join joins the mesh through the members at addrs.
func (c *Client) Join(ctx context.Context, addrs []string) (JoinResult, error) {
	var out JoinResult
	return out, c.do(ctx, http.MethodPost, "/v1/join", JoinRequest{Addrs: addrs}, &out)
}

// Peers lists the members of the mesh.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	return out, c.do(ctx, http.MethodGet, "/v1/peers", nil, &out)
}

// ForgetPeer removes a dead or departed member from the node's view of the
// mesh; the daemon refuses a live member.
func (c *Client) ForgetPeer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/peers/"+url.PathEscape(id), nil, nil)
}

// Move hands disk name over to the member with peer ID to.
func (c *Client) Move(ctx context.Context, name, to string) (DiskInfo, error) {
	var out DiskInfo
	return out, c.do(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(name)+"/move", MoveRequest{To: to}, &out)
}

// Take makes this node the owner of disk name.
func (c *Client) Take(ctx context.Context, name string, force bool) (DiskInfo, error) {
	var out DiskInfo
	return out, c.do(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(name)+"/take", TakeRequest{Force: force}, &out)
}

// Publish publishes source (DISK or DISK@REPLICA) as the next version of
// spacesuit name.
func (c *Client) Publish(ctx context.Context, name, source string) (SpacesuitInfo, error) {
	var out SpacesuitInfo
	return out, c.do(ctx, http.MethodPost, "/v1/spacesuits", PublishRequest{Name: name, Source: source}, &out)
}

// Spacesuits lists the spacesuit versions this node knows.
func (c *Client) Spacesuits(ctx context.Context) ([]SpacesuitInfo, error) {
	var out []SpacesuitInfo
	return out, c.do(ctx, http.MethodGet, "/v1/spacesuits", nil, &out)
}

// RemoveSpacesuit removes spacesuit version ref ("NAME@N").
func (c *Client) RemoveSpacesuit(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/spacesuits/"+url.PathEscape(ref), nil, nil)
}

// StartTransfer starts a push or a pull and returns at once.
func (c *Client) StartTransfer(ctx context.Context, req TransferRequest) (TransferInfo, error) {
	var out TransferInfo
	return out, c.do(ctx, http.MethodPost, "/v1/transfers", req, &out)
}

// Transfers lists running and recent transfers, newest first.
func (c *Client) Transfers(ctx context.Context) ([]TransferInfo, error) {
	var out []TransferInfo
	return out, c.do(ctx, http.MethodGet, "/v1/transfers", nil, &out)
}

// Transfer describes one transfer.
func (c *Client) Transfer(ctx context.Context, id string) (TransferInfo, error) {
	var out TransferInfo
	return out, c.do(ctx, http.MethodGet, "/v1/transfers/"+url.PathEscape(id), nil, &out)
}

// CancelTransfer stops a transfer and returns its final state.
func (c *Client) CancelTransfer(ctx context.Context, id string) (TransferInfo, error) {
	var out TransferInfo
	return out, c.do(ctx, http.MethodPost, "/v1/transfers/"+url.PathEscape(id)+"/cancel", nil, &out)
}

// Replicate sets a scheduled replication policy.
func (c *Client) Replicate(ctx context.Context, req ReplicateRequest) (Policy, error) {
	var out Policy
	return out, c.do(ctx, http.MethodPost, "/v1/replicate", req, &out)
}

// Policies lists the replication policies of the mesh.
func (c *Client) Policies(ctx context.Context) ([]Policy, error) {
	var out []Policy
	return out, c.do(ctx, http.MethodGet, "/v1/replicate", nil, &out)
}

// RemovePolicy stops replicating disk to site by mode (ModePush or
// ModePull; "" for the only policy there is) and says which replicated
// states stay.
func (c *Client) RemovePolicy(ctx context.Context, disk, site, mode string) (PolicyRemoval, error) {
	var out PolicyRemoval
	path := "/v1/replicate/" + url.PathEscape(disk) + "/" + url.PathEscape(site)
	if mode != "" {
		path += "?mode=" + url.QueryEscape(mode)
	}
	return out, c.do(ctx, http.MethodDelete, path, nil, &out)
}

// Recover brings disk back to its last state replicated to site.
func (c *Client) Recover(ctx context.Context, disk, site string) (DiskInfo, error) {
	var out DiskInfo
	return out, c.do(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(disk)+"/recover", RecoverRequest{From: site}, &out)
}

// SocketFile is the name of the daemon's unix socket in its home.
const SocketFile = "weft.sock"

// SocketPath is the daemon's unix socket of home.
func SocketPath(home string) string { return filepath.Join(home, SocketFile) }
