package node

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// HTTPTokenFile holds, in the home, the token the dashboard asks for when
// it listens on an address other than loopback.
const HTTPTokenFile = "http.token"

// csrfHeader must be on every API request over HTTP that is not a GET or
// HEAD. A cross-site form cannot set a header, and a cross-site fetch that
// sets one needs a CORS preflight this server never grants, so a page of
// another origin cannot make the browser cancel a transfer or delete a
// disk with the user's cookie.
const csrfHeader = "X-Weft"

// Error codes of the dashboard's own refusals, next to those of errors.go.
const (
	codeUnauthorized = "unauthorized"
	codeForbidden    = "forbidden"
)

// dashboardAssets is the page: plain HTML, CSS and JavaScript, no build
// step, nothing loaded from elsewhere.
//
//go:embed dashboard
var dashboardAssets embed.FS

// httpService is the dashboard's HTTP server.
type httpService struct {
	hs        *http.Server
	ln        net.Listener
	served    chan struct{} // closed when Serve returned
	stopAfter func() bool   // releases the shutdown tied to ctx
	once      sync.Once
}

// startHTTP serves the dashboard, its JSON API (the local API's routes
// under /api/) and /metrics on cfg.HTTP until ctx ends or stop is called.
// When cfg.HTTP is not a loopback address every request must carry the
// token of HOME/http.token (created at the first start, 0600), as
// "Authorization: Bearer TOKEN", as ?token=TOKEN (kept then in a cookie, so
// the page's own requests carry it) or as that cookie. On loopback no token
// is asked, but the Host header must name loopback too, so that a web page
// whose name resolves to 127.0.0.1 (DNS rebinding) cannot read the API. It
// returns nil, with nothing served, when cfg.HTTP is "".
func startHTTP(ctx context.Context, cfg Config, s *server, metrics http.Handler) (*httpService, error) {
	if cfg.HTTP == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	var token string
	if !isLoopback(host) {
		if token, err = loadHTTPToken(cfg.Path(HTTPTokenFile)); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http: listen on %s: %w", cfg.HTTP, err)
	}
	// Browsers share cookies between the ports of a host: name the cookie
	// after the port so two nodes' dashboards on one host keep their own.
	cookie := "weft_token_" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	h := &httpService{
		hs: &http.Server{
			Handler:           dashboardHandler(s, metrics, token, cookie),
			ReadHeaderTimeout: 10 * time.Second,
		},
		ln:     ln,
		served: make(chan struct{}),
	}
	go func() {
		defer close(h.served)
		if err := h.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dashboard stopped serving", "err", err)
		}
	}()
	h.stopAfter = context.AfterFunc(ctx, h.shutdown)
	if token != "" {
		s.log.Info("dashboard listening", "url", "http://"+ln.Addr().String()+"/?token=TOKEN", "token_file", cfg.Path(HTTPTokenFile))
	} else {
		s.log.Info("dashboard listening", "url", "http://"+ln.Addr().String()+"/")
	}
	return h, nil
}

// addr returns the address the dashboard listens on ("" for a nil
// service).
func (h *httpService) addr() string {
	if h == nil {
		return ""
	}
	return h.ln.Addr().String()
}

// stop stops serving and returns once the server is down: requests in
// flight get shutdownGrace to finish, then their connections are cut. A
// nil service does nothing.
func (h *httpService) stop() {
	if h == nil {
		return
	}
	h.stopAfter()
	h.shutdown()
	<-h.served
}

func (h *httpService) shutdown() {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := h.hs.Shutdown(ctx); err != nil {
			h.hs.Close()
		}
	})
}

// dashboardHandler routes the page, the API and the metrics, behind the
// token check when token is set and the loopback Host check otherwise.
func dashboardHandler(s *server, metrics http.Handler, token, cookie string) http.Handler {
	mux := http.NewServeMux()
	// Over HTTP the API is what the page needs: every read, and stopping a
	// transfer. Changes to disks, the mesh or the config stay on the
	// local socket, whose file mode guards them.
	api := http.StripPrefix("/api", s.routes())
	mux.Handle("GET /api/v1/", api)
	mux.Handle("POST /api/v1/transfers/{id}/cancel", requireCSRFHeader(s, api))
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	// fs.Sub fails only on an invalid name; "dashboard" is embedded above.
	page, _ := fs.Sub(dashboardAssets, "dashboard")
	files := http.FileServerFS(page)
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /{file}", files)
	var h http.Handler = mux
	if token != "" {
		h = requireToken(s, h, token, cookie)
	} else {
		h = requireLoopbackHost(s, h)
	}
	return securityHeaders(h)
}

// securityHeaders forbids the page from loading or framing anything
// foreign: a framed Stop button could be clicked by a page on top of it.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "+
			"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func requireCSRFHeader(s *server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(csrfHeader) == "" {
			s.writeError(w, r, fmt.Errorf("%s %s over HTTP needs the header %s: 1", r.Method, r.URL.Path, csrfHeader), http.StatusForbidden, codeForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func requireLoopbackHost(s *server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host // no port
		}
		if !isLoopback(host) {
			s.writeError(w, r, fmt.Errorf("host %q: the dashboard listens on loopback and answers only for a loopback name", r.Host), http.StatusForbidden, codeForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func requireToken(s *server, next http.Handler, token, cookie string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, fromQuery := presentedToken(r, cookie)
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
			s.writeError(w, r, fmt.Errorf("token required: open /?token=TOKEN, TOKEN from the node's %s, or send Authorization: Bearer TOKEN", HTTPTokenFile),
				http.StatusUnauthorized, codeUnauthorized)
			return
		}
		if fromQuery {
			http.SetCookie(w, &http.Cookie{Name: cookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			if r.URL.Path == "/" && r.Method == http.MethodGet {
				// Keep the token out of the address bar and the history.
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// presentedToken returns the token r carries and whether it came in the
// query.
func presentedToken(r *http.Request, cookie string) (string, bool) {
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(a), false
	}
	if q := r.URL.Query().Get("token"); q != "" {
		return q, true
	}
	if c, err := r.Cookie(cookie); err == nil {
		return c.Value, false
	}
	return "", false
}

// isLoopback reports whether host (a name or an address, without port)
// is loopback. An empty host means every interface, so it is not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadHTTPToken reads the token file, first creating it (0600) with 32
// random bytes in hex.
func loadHTTPToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", fmt.Errorf("http token: %w", err)
		}
		tok := hex.EncodeToString(raw[:])
		if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("http token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("http token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if _, err := hex.DecodeString(tok); err != nil || len(tok) < 32 {
		return "", fmt.Errorf("http token %s: want a hex string of at least 16 bytes (remove the file to get a new one)", path)
	}
	return tok, nil
}
