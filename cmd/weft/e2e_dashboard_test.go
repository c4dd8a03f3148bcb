package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// chromiumBin is where Debian's chromium package puts the browser.
const chromiumBin = "/usr/bin/chromium"

// webdriverCall bounds one WebDriver command; starting a session starts
// the browser, which takes longer.
const (
	webdriverCall  = 30 * time.Second
	webdriverStart = 60 * time.Second
)

// webElementKey names an element reference in W3C WebDriver answers.
const webElementKey = "element-6066-11e4-a52e-4f735466cecf"

// TestDashboardStopsTransfer drives A's dashboard in headless Chromium:
// the page lists both members and the throttled push A runs, and its Stop
// button cancels the push.
func TestDashboardStopsTransfer(t *testing.T) {
	if _, err := os.Stat(chromiumBin); err != nil {
		t.Skipf("%s not installed (Debian packages chromium and chromium-driver; make deps installs them as root)", chromiumBin)
	}
	if _, err := exec.LookPath("chromedriver"); err != nil {
		t.Skip("chromedriver not installed (Debian packages chromium and chromium-driver; make deps installs them as root)")
	}
	dash := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := meshMember(t, "site-a", "127.0.0.1", "", "--http", dash)
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	b.ok("join", a.addr())
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })

	img := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{41}).Read(img)
	a.ok("disk", "import", "vm", writeTemp(t, "vm.img", img), "--replicas", "1")
	// At 64 KiB/s the blocks B lacks take a minute or more: the push is
	// still running when the page's button stops it.
	id := strings.TrimSpace(a.ok("push", "vm", "--to", "site-b", "--bwlimit", "64K", "--block-size", "64K", "--detach"))

	wd := startWebDriver(t)
	wd.navigate("http://" + dash + "/")
	eventually(t, "the page lists two members", func() (bool, string) {
		n := len(wd.find("tr.member"))
		return n == 2, fmt.Sprintf("%d rows tr.member", n)
	})
	row := fmt.Sprintf("tr.transfer[data-id=%q]", id)
	eventually(t, "the page shows the push running", func() (bool, string) {
		state := wd.text(row + " .state")
		return state == "running", fmt.Sprintf("state cell %q", state)
	})
	buttons := wd.find(row + " button.stop")
	if len(buttons) != 1 {
		t.Fatalf("%s button.stop: got %d elements, want 1", row, len(buttons))
	}
	wd.click(buttons[0])

	eventually(t, "weft transfers shows the push cancelled", func() (bool, string) {
		var list []node.TransferInfo
		a.jsonOut(&list, "transfers")
		for _, tr := range list {
			if tr.ID == id {
				return tr.State == "cancelled", fmt.Sprintf("%+v", tr)
			}
		}
		return false, "transfer " + id + " not listed"
	})
	eventually(t, "the page shows the push cancelled", func() (bool, string) {
		state := wd.text(row + " .state")
		return state == "cancelled", fmt.Sprintf("state cell %q", state)
	})
}

// webDriver is a session of chromedriver's W3C WebDriver HTTP API.
type webDriver struct {
	t       *testing.T
	session string // http://127.0.0.1:PORT/session/ID
}

// startWebDriver starts chromedriver and a headless Chromium session, both
// ended when the test ends.
func startWebDriver(t *testing.T) *webDriver {
	t.Helper()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	logf, err := os.Create(filepath.Join(t.TempDir(), "chromedriver.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chromedriver", fmt.Sprintf("--port=%d", port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that the cleanup also ends the browsers
	// it started should the session not close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("chromedriver.log (tail):\n%s", tail(b, 4<<10))
			}
		}
	})

	deadline := time.Now().Add(webdriverStart)
	for {
		var st struct {
			Ready bool `json:"ready"`
		}
		err := webdriverDo(base+"/status", http.MethodGet, nil, &st, webdriverCall)
		if err == nil && st.Ready {
			break
		}
		select {
		case <-exited:
			t.Fatal("chromedriver exited before answering")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver not ready within %v: %v", webdriverStart, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromiumBin,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--window-size=1280,1024", "--user-data-dir=" + t.TempDir()},
		},
	}}}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	if err := webdriverDo(base+"/session", http.MethodPost, caps, &created, webdriverStart); err != nil {
		t.Fatalf("new browser session: %v", err)
	}
	wd := &webDriver{t: t, session: base + "/session/" + created.SessionID}
	t.Cleanup(func() {
		if t.Failed() {
			var src string
			if err := webdriverDo(wd.session+"/source", http.MethodGet, nil, &src, webdriverCall); err == nil {
				t.Logf("page source (tail):\n%s", tail([]byte(src), 8<<10))
			}
		}
		webdriverDo(wd.session, http.MethodDelete, nil, nil, webdriverCall)
	})
	return wd
}

func tail(b []byte, n int) []byte {
	return b[max(0, len(b)-n):]
}

// webdriverDo sends one WebDriver command and decodes the "value" of its
// answer into out (if not nil); an error answer becomes an error.
func webdriverDo(url, method string, body, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("webdriver %s %s: %w", method, url, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("webdriver %s %s: %w", method, url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webdriver %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	var answer struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("webdriver %s %s: status %d, answer: %w", method, url, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		json.Unmarshal(answer.Value, &e)
		return fmt.Errorf("webdriver %s %s: status %d: %s: %s", method, url, resp.StatusCode, e.Error, e.Message)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer.Value, out); err != nil {
		return fmt.Errorf("webdriver %s %s: value %s: %w", method, url, answer.Value, err)
	}
	return nil
}

func (wd *webDriver) navigate(url string) {
	wd.t.Helper()
	if err := webdriverDo(wd.session+"/url", http.MethodPost, map[string]string{"url": url}, nil, webdriverCall); err != nil {
		wd.t.Fatalf("open %s: %v", url, err)
	}
}

// find returns the references of the elements matching a CSS selector
// (none is no error: the page may not show them yet).
func (wd *webDriver) find(css string) []string {
	wd.t.Helper()
	var els []map[string]string
	if err := webdriverDo(wd.session+"/elements", http.MethodPost, map[string]string{"using": "css selector", "value": css}, &els, webdriverCall); err != nil {
		wd.t.Fatalf("find %s: %v", css, err)
	}
	refs := make([]string, len(els))
	for i, e := range els {
		refs[i] = e[webElementKey]
	}
	return refs
}

// text returns the rendered text of the first element matching css, ""
// when there is none.
func (wd *webDriver) text(css string) string {
	wd.t.Helper()
	els := wd.find(css)
	if len(els) == 0 {
		return ""
	}
	var s string
	if err := webdriverDo(wd.session+"/element/"+els[0]+"/text", http.MethodGet, nil, &s, webdriverCall); err != nil {
		// The row went away between the two calls: the caller polls again.
		return ""
	}
	return s
}

func (wd *webDriver) click(ref string) {
	wd.t.Helper()
	if err := webdriverDo(wd.session+"/element/"+ref+"/click", http.MethodPost, map[string]any{}, nil, webdriverCall); err != nil {
		wd.t.Fatalf("click: %v", err)
	}
}
