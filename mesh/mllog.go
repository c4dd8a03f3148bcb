package mesh

import (
	"context"
	"log/slog"
	"strings"
)

// memberlistLog turns memberlist's log lines ("[WARN] memberlist: ...")
// into slog records at the matching level.
type memberlistLog struct{ log *slog.Logger }

func (w memberlistLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{
		"[DEBUG]": slog.LevelDebug,
		"[INFO]":  slog.LevelInfo,
		"[WARN]":  slog.LevelWarn,
		"[ERR]":   slog.LevelError,
	} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			level, line = l, strings.TrimSpace(rest)
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}
