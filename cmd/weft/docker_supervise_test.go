package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// TestPluginChildGroupIsKilled: a plugin child that ignores SIGTERM is
// killed after the grace with everything it started (its process group),
// such as an mkfs in flight.
func TestPluginChildGroupIsKilled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	script := `trap '' TERM; sleep 300 & echo $! > ` + pidFile + `; wait`
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runPluginChild(ctx, "/bin/sh", []string{"-c", script}, io.Discard, 200*time.Millisecond)
	}()
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not start its own child")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("runPluginChild did not return after its grace")
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if syscall.Kill(pid, 0) != nil {
			break // gone
		}
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			break // a zombie waiting for init: killed
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child's child %d outlived it", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDaemonDockerPluginFlag: --docker-plugin on the command line wins
// over the config's docker_plugin both ways; left out, the config's holds.
func TestDaemonDockerPluginFlag(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		config bool
		want   bool
	}{
		{nil, true, true},
		{nil, false, false},
		{[]string{"--docker-plugin"}, false, true},
		{[]string{"--docker-plugin=false"}, true, false},
	} {
		c := newDaemonCmd(&globals{})
		if err := c.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var opts daemonOptions
		opts.docker.pluginSet = c.Flags().Changed("docker-plugin")
		opts.docker.plugin, _ = c.Flags().GetBool("docker-plugin")
		cfg := node.Config{DockerPlugin: tc.config}
		opts.applyDocker(&cfg)
		if cfg.DockerPlugin != tc.want {
			t.Errorf("%v with docker_plugin %v in the config: got %v, want %v", tc.args, tc.config, cfg.DockerPlugin, tc.want)
		}
	}
}
