package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Captured records keep their level, message and attributes; a full queue counts what it drops;
// without capture the records go to the text writer (stderr for C users).
func TestLogCaptureAndDrops(t *testing.T) {
	var stderr bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo)
	log := slog.New(newLogHandler(&stderr, level)).With("stage", "process")
	defer logs.capture.Store(false)

	log.Warn("datago: skipping sample", "path", "/data/a b.jpg", "error", errors.New("bad"))
	if !strings.Contains(stderr.String(), `path="/data/a b.jpg"`) {
		t.Fatalf("stderr %q, want the record as text", stderr.String())
	}

	logs.capture.Store(true)
	log.Debug("below the level")
	log.WithGroup("g").Warn("datago: skipping sample", "path", "/data/x.jpg", "n", 3)
	recs, dropped, ok := logs.drain(0)
	if !ok || dropped != 0 || len(recs) != 1 {
		t.Fatalf("drained %v, %d dropped, %v", recs, dropped, ok)
	}
	r := recs[0]
	if r.Level != "WARN" || r.Message != "datago: skipping sample" || r.Attrs["g.path"] != "/data/x.jpg" ||
		r.Attrs["g.n"] != int64(3) || r.Attrs["stage"] != "process" || r.Time <= 0 {
		t.Errorf("record %+v", r)
	}
	if _, _, ok := logs.drain(0); ok {
		t.Error("a second drain found records")
	}

	for i := 0; i < maxQueuedLogs+5; i++ {
		log.Info("datago: a record")
	}
	recs, dropped, _ = logs.drain(10)
	if len(recs) != 10 || dropped != 5 {
		t.Fatalf("%d records, %d dropped; want 10 and 5", len(recs), dropped)
	}
	recs, dropped, _ = logs.drain(0)
	if len(recs) != maxQueuedLogs-10 || dropped != 0 {
		t.Fatalf("%d records, %d dropped; want the rest and 0", len(recs), dropped)
	}
}

// No log line shows a presigned URL's signature: in the message, a string attribute or an error,
// on stderr and in captured records.
func TestLogsRedactSignatures(t *testing.T) {
	var stderr bytes.Buffer
	level := new(slog.LevelVar)
	log := slog.New(newLogHandler(&stderr, level)).With("base", "http://h/x?token=t0p")
	defer logs.capture.Store(false)
	url := "https://b.s3.amazonaws.com/k.tar?X-Amz-Signature=hush&X-Amz-Credential=AKIA"
	for _, capture := range []bool{false, true} {
		logs.capture.Store(capture)
		log.Warn("datago: GET "+url, "url", url, "error", errors.New(`Get "`+url+`": refused`),
			slog.Group("g", "u", url))
	}
	recs, _, _ := logs.drain(0)
	text := stderr.String() + fmt.Sprint(recs)
	for _, secret := range []string{"hush", "AKIA", "t0p"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q in the logs: %s", secret, text)
		}
	}
	if !strings.Contains(text, "k.tar?X-Amz-Signature=REDACTED") || len(recs) != 1 {
		t.Errorf("logs %s", text)
	}
}
