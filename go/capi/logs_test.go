package main

import (
	"bytes"
	"errors"
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
