package main

import "strings"

// rustLogLevel reads the level for datago out of a RUST_LOG value (env_logger's syntax, which
// Photoroom's datago, Rust edition, follows): comma-separated directives, each "level",
// "target=level" or "target". A directive for a target starting with "datago" wins over a bare
// level; the result is one of setLevel's names, ok false when RUST_LOG sets none.
func rustLogLevel(spec string) (level string, ok bool) {
	var bare, ours string
	for _, d := range strings.Split(spec, ",") {
		d = strings.TrimSpace(strings.SplitN(d, "/", 2)[0]) // "/regex" filters are ignored
		if d == "" {
			continue
		}
		target, lvl, hasTarget := strings.Cut(d, "=")
		if !hasTarget {
			if isRustLevel(d) {
				bare = d
			}
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(target), "datago") && isRustLevel(lvl) {
			ours = strings.TrimSpace(lvl)
		}
	}
	if ours != "" {
		return strings.ToLower(ours), true
	}
	if bare != "" {
		return strings.ToLower(bare), true
	}
	return "", false
}

func isRustLevel(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "debug", "info", "warn", "error", "off":
		return true
	}
	return false
}
