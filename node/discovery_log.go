package node

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"runtime"
	"time"
)

// memberlistLogWriter turns the lines memberlist prints through its
// *log.Logger into slog records. memberlist only knows the standard logger
// and marks severity with a "[DEBUG]", "[INFO]", "[WARN]", "[ERR]" (or
// "[ERROR]") prefix; the writer maps that prefix to a slog level, strips it
// and memberlist's own "memberlist: " prefix, and adds component=memberlist.
//
// memberlist logs while holding its internal locks, so the handler behind
// the logger must not call back into discovery.
type memberlistLogWriter struct {
	logger *slog.Logger
}

// newMemberlistLogger returns the *log.Logger to put into
// memberlist.Config.Logger. No flags: slog adds its own time.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&memberlistLogWriter{logger: l.With("component", "memberlist")}, "", 0)
}

// memberlistLogLevels maps memberlist's prefixes to slog levels.
var memberlistLogLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// parseMemberlistLine splits one memberlist log line into level and message.
// Lines without a known prefix are logged at Info, unchanged.
func parseMemberlistLine(p []byte) (slog.Level, string) {
	p = bytes.TrimRight(p, "\r\n")
	level := slog.LevelInfo
	for _, l := range memberlistLogLevels {
		if rest, ok := bytes.CutPrefix(p, []byte(l.prefix)); ok {
			level, p = l.level, bytes.TrimLeft(rest, " ")
			break
		}
	}
	p, _ = bytes.CutPrefix(p, []byte("memberlist: "))
	return level, string(p)
}

// Write logs one line. log.Logger calls Write once per message; p always
// counts as written so that memberlist never sees a logging error.
func (w *memberlistLogWriter) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(p)
	ctx := context.Background()
	if !w.logger.Enabled(ctx, level) {
		return len(p), nil
	}
	// Build the record by hand so that its source is memberlist's call
	// site: skip runtime.Callers, Write, log.(*Logger).output and
	// log.(*Logger).Printf.
	var pcs [1]uintptr
	runtime.Callers(4, pcs[:])
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	_ = w.logger.Handler().Handle(ctx, r)
	return len(p), nil
}
