package main

import "testing"

func TestRustLogLevel(t *testing.T) {
	for spec, want := range map[string]string{
		"INFO":                     "info",
		"warn":                     "warn",
		"trace":                    "trace",
		"reqwest=debug,error":      "error",
		"error,datago=debug":       "debug",
		"datago::client=Info,warn": "info",
		" off ":                    "off",
		"hyper=trace":              "",
		"":                         "",
		"loud":                     "",
		"info/some regex":          "info",
	} {
		got, ok := rustLogLevel(spec)
		if got != want || ok != (want != "") {
			t.Errorf("RUST_LOG=%q: got %q %v, want %q", spec, got, ok, want)
		}
		if ok && !setLevel(got) {
			t.Errorf("RUST_LOG=%q: %q is not a level setLevel knows", spec, got)
		}
	}
	setLevel("warn")
}
