// Command weft is the single weft binary: the CLI and `weft daemon`.
//
// Every command takes --home DIR (default $WEFT_HOME, else ~/.weft). All
// commands but init and daemon talk to the daemon of that home over its
// unix socket.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/node"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process's exit code: 0 on
// success, 2 for a bad command line (the CLI's usage errors and the values
// the daemon refuses as invalid), 1 for anything else. Errors are printed
// as one line on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, progress: isTerminal(stderr)}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "weft: %s\n", oneLine(err.Error()))
		return exitCode(err)
	}
	return 0
}

// exitCode is 2 for an error that says the command line is wrong (the
// daemon's answer or node's own check), 1 for any other.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, api.ErrInvalid) || errors.Is(err, node.ErrInvalid) {
		return 2
	}
	return 1
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// isTerminal reports whether w is a terminal (progress bars go there only).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
