package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	dashToken  = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	dashCookie = "weft_token_7070"
)

// dashHandler builds the dashboard's handler over a server without stores
// or mesh: enough for the routes that answer without them (transfers,
// replicate) and for everything in front of the API.
func dashHandler(t *testing.T, token string) http.Handler {
	t.Helper()
	s := &server{log: slog.New(slog.DiscardHandler)}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "weft_test_metric 1")
	})
	return dashboardHandler(s, metrics, token, dashCookie)
}

// dashDo sends a request to h as a browser on host 127.0.0.1:7070 would;
// edit, if set, changes the request first.
func dashDo(t *testing.T, h http.Handler, method, target string, edit func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:7070"+target, nil)
	if edit != nil {
		edit(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, want int, what string) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("%s: got status %d, want %d; body: %s", what, w.Code, want, w.Body)
	}
}

// wantCode checks the code of an API error body.
func wantCode(t *testing.T, w *httptest.ResponseRecorder, want, what string) {
	t.Helper()
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: body %q: %v", what, w.Body, err)
	}
	if body.Code != want {
		t.Fatalf("%s: got code %q, want %q (%s)", what, body.Code, want, body.Error)
	}
}

func TestDashboardTokenOffLoopback(t *testing.T) {
	h := dashHandler(t, dashToken)
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, target := range []string{"/", "/app.js", "/metrics", "/api/v1/transfers"} {
		w := dashDo(t, h, "GET", target, nil)
		wantStatus(t, w, http.StatusUnauthorized, "GET "+target+" without a token")
		wantCode(t, w, codeUnauthorized, "GET "+target+" without a token")
	}
	wantStatus(t, dashDo(t, h, "GET", "/api/v1/transfers", bearer("ff"+dashToken[2:])), http.StatusUnauthorized, "a wrong token")
	wantStatus(t, dashDo(t, h, "GET", "/api/v1/transfers", bearer(dashToken)), http.StatusOK, "Authorization: Bearer")
	wantStatus(t, dashDo(t, h, "GET", "/api/v1/transfers?token="+dashToken, nil), http.StatusOK, "?token= on the API")
	// A different host name does not matter once the token is right.
	wantStatus(t, dashDo(t, h, "GET", "/metrics", func(r *http.Request) { bearer(dashToken)(r); r.Host = "weft.example:7070" }), http.StatusOK, "another host")
}

// TestDashboardCookieFlow: /?token= sets the cookie and sends the browser
// to / without the token; the page's own requests then pass with the
// cookie alone.
func TestDashboardCookieFlow(t *testing.T) {
	h := dashHandler(t, dashToken)
	w := dashDo(t, h, "GET", "/?token="+dashToken, nil)
	wantStatus(t, w, http.StatusSeeOther, "GET /?token=")
	if loc := w.Header().Get("Location"); loc != "/" {
		t.Fatalf("redirect to %q, want /", loc)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != dashCookie || cookies[0].Value != dashToken || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies %+v, want one HttpOnly SameSite=Strict %s with the token", cookies, dashCookie)
	}
	withCookie := func(r *http.Request) { r.AddCookie(cookies[0]) }
	wantStatus(t, dashDo(t, h, "GET", "/", withCookie), http.StatusOK, "GET / with the cookie")
	wantStatus(t, dashDo(t, h, "GET", "/api/v1/transfers", withCookie), http.StatusOK, "the API with the cookie")
	stale := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: dashCookie, Value: "ff" + dashToken[2:]}) }
	wantStatus(t, dashDo(t, h, "GET", "/", stale), http.StatusUnauthorized, "GET / with a stale cookie")
	other := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "weft_token_7071", Value: dashToken}) }
	wantStatus(t, dashDo(t, h, "GET", "/", other), http.StatusUnauthorized, "GET / with another port's cookie")
}

// TestDashboardLoopback: no token, but only for a loopback Host, so that a
// name rebound to 127.0.0.1 by a hostile page's DNS gets nothing.
func TestDashboardLoopback(t *testing.T) {
	h := dashHandler(t, "")
	for _, host := range []string{"127.0.0.1:7070", "localhost:7070", "[::1]:7070", "localhost"} {
		w := dashDo(t, h, "GET", "/api/v1/transfers", func(r *http.Request) { r.Host = host })
		wantStatus(t, w, http.StatusOK, "Host "+host)
	}
	for _, host := range []string{"evil.example:7070", "10.0.0.1:7070", ""} {
		w := dashDo(t, h, "GET", "/api/v1/transfers", func(r *http.Request) { r.Host = host })
		wantStatus(t, w, http.StatusForbidden, fmt.Sprintf("Host %q", host))
		wantCode(t, w, codeForbidden, fmt.Sprintf("Host %q", host))
	}
}

// TestDashboardCSRF: an API request other than GET needs X-Weft, with or
// without a token; the server then hands it to the local API's handler
// (which answers 400 here: the test server has no mesh).
func TestDashboardCSRF(t *testing.T) {
	for _, token := range []string{"", dashToken} {
		h := dashHandler(t, token)
		auth := func(r *http.Request) {
			if token != "" {
				r.AddCookie(&http.Cookie{Name: dashCookie, Value: token})
			}
		}
		w := dashDo(t, h, "POST", "/api/v1/transfers/abc/cancel", auth)
		wantStatus(t, w, http.StatusForbidden, "POST without "+csrfHeader)
		wantCode(t, w, codeForbidden, "POST without "+csrfHeader)
		// Changes other than stopping a transfer are not served over HTTP.
		for _, req := range [][2]string{{"DELETE", "/api/v1/disks/d"}, {"POST", "/api/v1/disks"}, {"PUT", "/api/v1/disks/d/acl"}, {"POST", "/api/v1/join"}} {
			w := dashDo(t, h, req[0], req[1], func(r *http.Request) { auth(r); r.Header.Set(csrfHeader, "1") })
			if w.Code != http.StatusMethodNotAllowed && w.Code != http.StatusNotFound {
				t.Fatalf("%s %s over HTTP: status %d, want it refused (404/405)", req[0], req[1], w.Code)
			}
		}
		w = dashDo(t, h, "POST", "/api/v1/transfers/abc/cancel", func(r *http.Request) { auth(r); r.Header.Set(csrfHeader, "1") })
		wantStatus(t, w, http.StatusBadRequest, "POST with "+csrfHeader)
		if !strings.Contains(w.Body.String(), ErrNoMesh.Error()) {
			t.Fatalf("POST with %s: body %s, want the API's answer (%v)", csrfHeader, w.Body, ErrNoMesh)
		}
		wantStatus(t, dashDo(t, h, "GET", "/api/v1/replicate", auth), http.StatusOK, "GET without "+csrfHeader)
	}
}

// TestDashboardRoutes: the page and its files at /, the API under /api/
// and the metrics handler as given.
func TestDashboardRoutes(t *testing.T) {
	h := dashHandler(t, "")
	w := dashDo(t, h, "GET", "/", nil)
	wantStatus(t, w, http.StatusOK, "GET /")
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET /: Content-Type %q, want text/html", ct)
	}
	for _, want := range []string{`src="app.js"`, `href="style.css"`, `id="members"`, `id="transfers"`, `id="disks"`, `id="heal"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Fatalf("GET /: page lacks %s", want)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("GET /: Content-Security-Policy %q", csp)
	}
	for file, ct := range map[string]string{"/app.js": "text/javascript", "/style.css": "text/css"} {
		w := dashDo(t, h, "GET", file, nil)
		wantStatus(t, w, http.StatusOK, "GET "+file)
		if got := w.Header().Get("Content-Type"); !strings.HasPrefix(got, ct) {
			t.Fatalf("GET %s: Content-Type %q, want %s", file, got, ct)
		}
	}
	wantStatus(t, dashDo(t, h, "POST", "/", nil), http.StatusMethodNotAllowed, "POST /")
	wantStatus(t, dashDo(t, h, "GET", "/nothing.js", nil), http.StatusNotFound, "GET /nothing.js")

	w = dashDo(t, h, "GET", "/metrics", nil)
	wantStatus(t, w, http.StatusOK, "GET /metrics")
	if w.Body.String() != "weft_test_metric 1\n" {
		t.Fatalf("GET /metrics: %q, want what the metrics handler wrote", w.Body)
	}

	w = dashDo(t, h, "GET", "/api/v1/transfers", nil)
	wantStatus(t, w, http.StatusOK, "GET /api/v1/transfers")
	if strings.TrimSpace(w.Body.String()) != "[]" {
		t.Fatalf("GET /api/v1/transfers: %s, want []", w.Body)
	}
	w = dashDo(t, h, "GET", "/api/v1/nothing", nil)
	wantStatus(t, w, http.StatusNotFound, "GET /api/v1/nothing")
	wantCode(t, w, codeNotFound, "GET /api/v1/nothing")
}

func TestHTTPToken(t *testing.T) {
	path := t.TempDir() + "/" + HTTPTokenFile
	tok, err := loadHTTPToken(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(tok); err != nil || len(b) != 32 {
		t.Fatalf("token %q: want 32 bytes in hex", tok)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if again, err := loadHTTPToken(path); err != nil || again != tok {
		t.Fatalf("second load: %q, %v, want the same token %q", again, err, tok)
	}
	if err := os.WriteFile(path, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadHTTPToken(path); err == nil {
		t.Fatal("load of a garbled token file: got no error")
	}
}

// dashFreePort returns a TCP port that was free a moment ago.
func dashFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func dashGet(t *testing.T, url, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestStartHTTP serves on a real port: on loopback without a token file,
// on every interface with one; stop and the end of ctx both stop it.
func TestStartHTTP(t *testing.T) {
	s := &server{log: slog.New(slog.DiscardHandler)}

	home := t.TempDir()
	cfg := Config{Home: home, HTTP: fmt.Sprintf("127.0.0.1:%d", dashFreePort(t))}
	h, err := startHTTP(context.Background(), cfg, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.addr() != cfg.HTTP {
		t.Fatalf("addr %q, want %q", h.addr(), cfg.HTTP)
	}
	if code := dashGet(t, "http://"+h.addr()+"/", ""); code != http.StatusOK {
		t.Fatalf("GET / on loopback: %d, want 200", code)
	}
	if _, err := os.Stat(cfg.Path(HTTPTokenFile)); !os.IsNotExist(err) {
		t.Fatalf("token file on loopback: stat says %v, want none", err)
	}
	h.stop()
	h.stop() // a second stop is harmless
	if _, err := net.DialTimeout("tcp", cfg.HTTP, time.Second); err == nil {
		t.Fatal("still listening after stop")
	}

	port := dashFreePort(t)
	cfg = Config{Home: home, HTTP: fmt.Sprintf("0.0.0.0:%d", port)}
	ctx, cancel := context.WithCancel(context.Background())
	h, err = startHTTP(ctx, cfg, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(cfg.Path(HTTPTokenFile))
	if err != nil {
		t.Fatalf("token file off loopback: %v", err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/transfers", port)
	if code := dashGet(t, url, ""); code != http.StatusUnauthorized {
		t.Fatalf("GET without the token: %d, want 401", code)
	}
	if code := dashGet(t, url, strings.TrimSpace(string(tok))); code != http.StatusOK {
		t.Fatalf("GET with the token of %s: %d, want 200", HTTPTokenFile, code)
	}
	cancel()
	select {
	case <-h.served:
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("still serving after ctx ended")
	}
	h.stop()

	h, err = startHTTP(context.Background(), Config{Home: home}, s, nil)
	if h != nil || err != nil {
		t.Fatalf("startHTTP without an address: %v, %v, want nil, nil", h, err)
	}
	h.stop() // a nil service stops as nothing
}

// TestDashboardRefusesCrossSite: what a browser sends for a page of
// another origin gets nothing. A cross-site form POST carries the cookie
// but cannot set X-Weft: refused. A cross-site fetch that sets X-Weft must
// first pass a CORS preflight, and the server grants none; nor does it let
// such a page read a GET's answer.
func TestDashboardRefusesCrossSite(t *testing.T) {
	for _, token := range []string{"", dashToken} {
		h := dashHandler(t, token)
		crossSite := func(r *http.Request) {
			r.Header.Set("Origin", "http://evil.example")
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			if token != "" {
				r.AddCookie(&http.Cookie{Name: dashCookie, Value: token})
			}
		}
		w := dashDo(t, h, "POST", "/api/v1/transfers/abc/cancel", func(r *http.Request) {
			crossSite(r)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		})
		wantStatus(t, w, http.StatusForbidden, "cross-site form POST")
		wantCode(t, w, codeForbidden, "cross-site form POST")

		w = dashDo(t, h, "OPTIONS", "/api/v1/transfers/abc/cancel", func(r *http.Request) {
			crossSite(r)
			r.Header.Set("Access-Control-Request-Method", "POST")
			r.Header.Set("Access-Control-Request-Headers", "x-weft")
		})
		if w.Code < 300 && w.Code >= 200 {
			t.Errorf("cross-site preflight: status %d, want it refused", w.Code)
		}
		for _, name := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Credentials"} {
			if v := w.Header().Get(name); v != "" {
				t.Errorf("cross-site preflight answered %s: %s", name, v)
			}
		}
		w = dashDo(t, h, "GET", "/api/v1/transfers", crossSite)
		if v := w.Header().Get("Access-Control-Allow-Origin"); v != "" {
			t.Errorf("cross-site GET answered Access-Control-Allow-Origin: %s", v)
		}
	}
}
