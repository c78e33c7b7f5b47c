package transform

import "C"

import (
	"context"
	"log/slog"
)

// GLib's log levels (GLogLevelFlags) as datago_glog receives them.
const (
	glogError    = 1 << 2
	glogCritical = 1 << 3
)

// datagoGLog takes GLib's and libvips' log messages (vips.c installs it as GLib's default log
// handler in dg_init), so that they go to datago's log at its level instead of stderr. libvips'
// warnings about damaged data come from its worker threads, one per damaged row, with no file to
// name: they are logged at debug level; the sample they concern is skipped (or not, by
// image_config.fail_on) and logged at warn level with its path and its own message.
// Criticals and errors are logged as errors.
//
//export datagoGLog
func datagoGLog(domain *C.char, level C.int, msg *C.char) {
	lvl := slog.LevelDebug
	if level&(glogError|glogCritical) != 0 {
		lvl = slog.LevelError
	}
	ctx := context.Background()
	if !slog.Default().Enabled(ctx, lvl) {
		return
	}
	slog.Log(ctx, lvl, "datago: libvips", "domain", C.GoString(domain), "message", C.GoString(msg))
}
