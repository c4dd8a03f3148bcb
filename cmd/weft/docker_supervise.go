package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Restart pacing of the Docker plugin child: a child that dies at once is
// restarted after a delay that doubles up to the maximum; one that ran a
// while starts the delay over.
const (
	pluginRestartMin    = time.Second
	pluginRestartMax    = 30 * time.Second
	pluginRanLongEnough = time.Minute
	pluginStopGrace     = 30 * time.Second
	// pluginDaemonWait is how long the child waits for the daemon's
	// socket, which node.Run opens after the child starts.
	pluginDaemonWait = 2 * time.Minute
)

// superviseDockerPlugin runs `weft docker-plugin` as a child process of
// the daemon, restarting it when it exits, until ctx is done or stop is
// called; stop then ends the child with SIGTERM and waits for it.
//
// The plugin is a process of its own so that it can die and restart
// without touching a mount (see package dockervol). It dies with the
// daemon (PR_SET_PDEATHSIG), so a killed daemon does not leave a plugin
// behind to race the next one's.
func superviseDockerPlugin(ctx context.Context, home, socket string, stderr io.Writer, log *slog.Logger) (stop func(), err error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("docker plugin: find the weft binary: %w", err)
	}
	args := []string{"--home", home, "--wait", pluginDaemonWait.String(), "docker-plugin"}
	if socket != "" {
		args = append(args, "--socket", socket)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		delay := pluginRestartMin
		for {
			started := time.Now()
			err := runPluginChild(ctx, bin, args, stderr)
			if ctx.Err() != nil {
				return
			}
			if time.Since(started) > pluginRanLongEnough {
				delay = pluginRestartMin
			}
			log.Warn("docker plugin exited: restarting it", "err", err, "in", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, pluginRestartMax)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// runPluginChild runs the child until it exits, or until ctx is done and
// it stopped on SIGTERM (SIGKILL after pluginStopGrace).
func runPluginChild(ctx context.Context, bin string, args []string, stderr io.Writer) error {
	// The parent-death signal follows the thread that forked the child:
	// keep this goroutine on it while the child lives.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s docker-plugin: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(pluginStopGrace):
		cmd.Process.Kill()
		return <-exited
	}
}
