package dockervol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// contentType is the media type of every request and answer.
const contentType = "application/vnd.docker.plugins.v1.2+json"

// maxRequestLen bounds a request body: the largest, Create, carries a
// name and a few options.
const maxRequestLen = 64 << 10

// Volume is a volume as Docker sees it.
type Volume struct {
	Name       string         `json:"Name"`
	Mountpoint string         `json:"Mountpoint,omitempty"`
	CreatedAt  string         `json:"CreatedAt,omitempty"`
	Status     map[string]any `json:"Status,omitempty"`
}

// Driver is what the protocol needs of the volumes. Errors are shown to
// the Docker user as they are, so they say what to do.
type Driver interface {
	Create(ctx context.Context, name string, opts map[string]string) error
	Remove(ctx context.Context, name string) error
	// Mount mounts the volume for one user (Docker's mount ID) and
	// returns its directory.
	Mount(ctx context.Context, name, id string) (string, error)
	Unmount(ctx context.Context, name, id string) error
	// Path returns the volume's directory, "" when not mounted.
	Path(ctx context.Context, name string) (string, error)
	Get(ctx context.Context, name string) (Volume, error)
	List(ctx context.Context) ([]Volume, error)
}

// request is the body of every VolumeDriver call; each uses some fields.
type request struct {
	Name string            `json:"Name"`
	ID   string            `json:"ID"`
	Opts map[string]string `json:"Opts"`
}

// response is the body of every answer; Err is "" on success.
type response struct {
	Err        string   `json:"Err"`
	Mountpoint string   `json:"Mountpoint,omitempty"`
	Volume     *Volume  `json:"Volume,omitempty"`
	Volumes    []Volume `json:"Volumes,omitempty"`
	Caps       *caps    `json:"Capabilities,omitempty"`
	Implements []string `json:"Implements,omitempty"`
}

type caps struct {
	Scope string `json:"Scope"`
}

// Scope is "local": a volume is mounted on the node that owns its disk
// (elsewhere weft shows it read-only), so Docker must not assume it is
// the same writable volume on every node of a swarm.
const Scope = "local"

// decodeRequest reads a request body: a JSON object (or nothing, which
// Docker sends to some calls), bounded, with a volume name where one is
// needed.
func decodeRequest(r io.Reader, needName bool) (request, error) {
	var req request
	b, err := io.ReadAll(io.LimitReader(r, maxRequestLen+1))
	if err != nil {
		return req, fmt.Errorf("read request: %w", err)
	}
	if len(b) > maxRequestLen {
		return req, fmt.Errorf("request longer than %d bytes", maxRequestLen)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &req); err != nil {
			return request{}, fmt.Errorf("decode request: %w", err)
		}
	}
	if needName && req.Name == "" {
		return request{}, errors.New("request names no volume")
	}
	return req, nil
}

// NewHandler serves the protocol on top of d.
func NewHandler(d Driver, log *slog.Logger) http.Handler {
	h := &handler{d: d, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		h.write(w, response{Implements: []string{"VolumeDriver"}})
	})
	mux.HandleFunc("POST /VolumeDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		h.write(w, response{Caps: &caps{Scope: Scope}})
	})
	h.route(mux, "Create", true, func(ctx context.Context, req request) (response, error) {
		return response{}, d.Create(ctx, req.Name, req.Opts)
	})
	h.route(mux, "Remove", true, func(ctx context.Context, req request) (response, error) {
		return response{}, d.Remove(ctx, req.Name)
	})
	h.route(mux, "Mount", true, func(ctx context.Context, req request) (response, error) {
		if req.ID == "" {
			return response{}, errors.New("mount request has no ID")
		}
		dir, err := d.Mount(ctx, req.Name, req.ID)
		return response{Mountpoint: dir}, err
	})
	h.route(mux, "Unmount", true, func(ctx context.Context, req request) (response, error) {
		if req.ID == "" {
			return response{}, errors.New("unmount request has no ID")
		}
		return response{}, d.Unmount(ctx, req.Name, req.ID)
	})
	h.route(mux, "Path", true, func(ctx context.Context, req request) (response, error) {
		dir, err := d.Path(ctx, req.Name)
		return response{Mountpoint: dir}, err
	})
	h.route(mux, "Get", true, func(ctx context.Context, req request) (response, error) {
		v, err := d.Get(ctx, req.Name)
		return response{Volume: &v}, err
	})
	h.route(mux, "List", false, func(ctx context.Context, req request) (response, error) {
		vs, err := d.List(ctx)
		return response{Volumes: vs}, err
	})
	return mux
}

type handler struct {
	d   Driver
	log *slog.Logger
}

func (h *handler) route(mux *http.ServeMux, call string, needName bool, do func(context.Context, request) (response, error)) {
	mux.HandleFunc("POST /VolumeDriver."+call, func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeRequest(r.Body, needName)
		if err != nil {
			h.log.Warn("bad request", "call", call, "err", err)
			h.write(w, response{Err: err.Error()})
			return
		}
		resp, err := do(r.Context(), req)
		if err != nil {
			h.log.Info("refused", "call", call, "volume", req.Name, "err", err)
			h.write(w, response{Err: err.Error()})
			return
		}
		h.log.Debug("done", "call", call, "volume", req.Name)
		h.write(w, resp)
	})
}

func (h *handler) write(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", contentType)
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		h.log.Warn("write answer", "err", err)
	}
}
