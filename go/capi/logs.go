package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/datago-dev/datago/go/remote"
)

// maxQueuedLogs bounds the log records waiting for datago_drain_logs; more are counted as dropped.
const maxQueuedLogs = 4096

// logRecord is one log record as datago_drain_logs hands it over (JSON).
type logRecord struct {
	Time    float64        `json:"time"` // unix seconds
	Level   string         `json:"level"`
	Message string         `json:"message"`
	Attrs   map[string]any `json:"attrs"`
}

// logQueue holds the records of the core while a binding captures them (datago_capture_logs).
// Go never calls into the binding: the binding polls datago_drain_logs from its own threads.
type logQueue struct {
	capture atomic.Bool
	mu      sync.Mutex
	recs    []logRecord
	dropped int64
}

var logs logQueue

func (q *logQueue) push(r logRecord) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recs) >= maxQueuedLogs {
		q.dropped++
		return
	}
	q.recs = append(q.recs, r)
}

// drain takes up to max records (max <= 0: all) and the count of dropped records; ok is false when
// there is nothing to report.
func (q *logQueue) drain(max int) (recs []logRecord, dropped int64, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recs) == 0 && q.dropped == 0 {
		return nil, 0, false
	}
	n := len(q.recs)
	if max > 0 && max < n {
		n = max
	}
	recs = slices.Clone(q.recs[:n])
	q.recs = append(q.recs[:0], q.recs[n:]...)
	dropped, q.dropped = q.dropped, 0
	return recs, dropped, true
}

// logHandler writes records as text to stderr, or queues them while a binding captures them.
type logHandler struct {
	text  slog.Handler
	attrs []slog.Attr // from WithAttrs (groups are flattened into dotted keys)
	group string      // prefix of the keys, from WithGroup
	level slog.Leveler
}

func newLogHandler(w io.Writer, level slog.Leveler) *logHandler {
	return &logHandler{text: slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), level: level}
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	r = redactRecord(r)
	if !logs.capture.Load() {
		return h.text.Handle(ctx, r)
	}
	rec := logRecord{
		Time: float64(r.Time.UnixNano()) / 1e9, Level: r.Level.String(), Message: r.Message,
		Attrs: map[string]any{},
	}
	for _, a := range h.attrs {
		addAttr(rec.Attrs, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(rec.Attrs, h.group, a)
		return true
	})
	logs.push(rec)
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	as = slices.Clone(as)
	for i, a := range as {
		as[i] = redactAttr(a)
	}
	c := *h
	c.text = h.text.WithAttrs(as)
	c.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		if h.group != "" {
			a.Key = h.group + a.Key
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.text = h.text.WithGroup(name)
	c.group = h.group + name + "."
	return &c
}

// redactRecord is r with the credentials in its URLs redacted (remote.RedactText: presigned URLs'
// signatures, tokens), in the message and in every string or error attribute.
func redactRecord(r slog.Record) slog.Record {
	nr := slog.NewRecord(r.Time, r.Level, remote.RedactText(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(redactAttr(a))
		return true
	})
	return nr
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, remote.RedactText(v.String()))
	case slog.KindGroup:
		g := slices.Clone(v.Group())
		for i := range g {
			g[i] = redactAttr(g[i])
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(g...)}
	case slog.KindAny:
		return slog.String(a.Key, remote.RedactText(fmt.Sprint(v.Any())))
	}
	return a
}

// addAttr stores a in m as a JSON-friendly value (strings, numbers, booleans; anything else, e.g.
// an error, as its text).
func addAttr(m map[string]any, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			addAttr(m, prefix+a.Key+".", g)
		}
		return
	}
	if a.Key == "" {
		return
	}
	switch v.Kind() {
	case slog.KindString:
		m[prefix+a.Key] = v.String()
	case slog.KindInt64:
		m[prefix+a.Key] = v.Int64()
	case slog.KindUint64:
		m[prefix+a.Key] = v.Uint64()
	case slog.KindFloat64:
		m[prefix+a.Key] = v.Float64()
	case slog.KindBool:
		m[prefix+a.Key] = v.Bool()
	default:
		m[prefix+a.Key] = fmt.Sprint(v.Any())
	}
}

//export datago_capture_logs
func datago_capture_logs(on C.int32_t) C.int32_t {
	if logs.capture.Swap(on != 0) {
		return 1
	}
	return 0
}

//export datago_drain_logs
func datago_drain_logs(maxRecords C.int32_t) *C.char {
	recs, dropped, ok := logs.drain(int(maxRecords))
	if !ok {
		return nil
	}
	if recs == nil {
		recs = []logRecord{}
	}
	b, err := json.Marshal(struct {
		Dropped int64       `json:"dropped"`
		Records []logRecord `json:"records"`
	}{dropped, recs})
	if err != nil { // every value is a string, number or boolean: cannot happen
		b = []byte(fmt.Sprintf(`{"dropped": %d, "records": []}`, dropped+int64(len(recs))))
	}
	return C.CString(string(b))
}
