package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ErrStalled is the cause of a body read that got no data within Settings.ReadTimeout.
var ErrStalled = errors.New("read stalled")

// ErrTooSlow is the cause of a body that delivered less than Settings.MinThroughput.
var ErrTooSlow = errors.New("body too slow")

var errClosed = errors.New("remote: read on a closed stream")

// body is one response body with its idle-read timer: a Read that waits longer than the timeout
// cancels the request, which unblocks the Read with an error. It also measures the throughput
// over the time spent waiting in reads: each time that reaches the window, the bytes received
// must average at least min bytes per second of it.
type body struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	timer   *time.Timer
	stalled atomic.Bool

	min    float64       // bytes per second (<= 0: no minimum)
	window time.Duration // waiting time per throughput check
	waited time.Duration // waiting in reads since the last check
	got    int64         // bytes since the last check
	total  int64         // bytes read from this body
}

func newBody(resp *response, min float64, window time.Duration) *body {
	b := &body{rc: resp.Body, cancel: resp.cancel, min: min, window: window}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.stalled.Store(true)
		b.cancel()
	})
	b.timer.Stop()
	return b
}

func (b *body) read(p []byte, timeout time.Duration) (int, error) {
	b.timer.Reset(timeout)
	start := time.Now()
	n, err := b.rc.Read(p)
	if !b.timer.Stop() && b.stalled.Load() && err != io.EOF {
		err = fmt.Errorf("%w: no data for %v", ErrStalled, timeout)
	}
	b.total += int64(n)
	if b.min > 0 && err == nil {
		b.waited += time.Since(start)
		b.got += int64(n)
		if b.waited >= b.window {
			if rate := float64(b.got) / b.waited.Seconds(); rate < b.min {
				err = fmt.Errorf("%w: %d bytes in %.1f s of waiting (%.0f B/s < %.0f B/s, http_min_throughput)",
					ErrTooSlow, b.got, b.waited.Seconds(), rate, b.min)
			}
			b.waited, b.got = 0, 0
		}
	}
	return n, err
}

func (b *body) close() {
	b.timer.Stop()
	b.cancel()
	b.rc.Close()
}

// Stream is a response body that resumes after a broken read: it asks for the rest with
// "Range: bytes=N-" (and If-Range) and goes on if the server answers 206 with a Content-Range that
// starts at N; otherwise Read fails with an *Error. Bytes are never delivered twice. Failed resumes
// in a row are capped by Settings.MaxRetries (with backoff); progress resets the count.
// A Stream is not safe for concurrent use; ctx (given to Open) cancels it.
type Stream struct {
	c         *Client
	ctx       context.Context
	url       string
	o         *options
	size      int64 // total bytes, -1 when unknown
	validator string
	ctype     string // Content-Type of the first answer

	body     *body
	off      int64 // bytes delivered
	failed   int   // resume attempts since the last healthy body
	timeouts int   // bodies that stalled or were too slow since the last healthy body
	lastErr  error // what broke the last body
	err      error // sticky: io.EOF, ctx.Err(), a fatal *Error
}

// Size is the total length from Content-Length (-1 when unknown).
func (s *Stream) Size() int64 { return s.size }

// Offset is the number of bytes delivered so far.
func (s *Stream) Offset() int64 { return s.off }

// URL is the stream's URL.
func (s *Stream) URL() string { return s.url }

// ContentType is the Content-Type header of the answer ("" when absent).
func (s *Stream) ContentType() string { return s.ctype }

func (s *Stream) attach(resp *response) {
	s.body = newBody(resp, s.c.s.MinThroughput, s.c.s.ReadTimeout)
}

// healthy reports whether the current body made real progress before it broke: at least a
// throughput window's worth of bytes (one byte without a minimum throughput). Only then do the
// counts of failed resumes and timeouts start again (a server that drips a few bytes per
// connection, or cuts every connection after a few bytes, still fails in bounded time).
func (s *Stream) healthy() bool {
	need := int64(1)
	if m := s.c.s.MinThroughput; m > 0 {
		need = max(need, int64(m*s.c.s.ReadTimeout.Seconds()))
	}
	return s.body.total >= need
}

func (s *Stream) detach() {
	if s.body != nil {
		s.body.close()
		s.body = nil
	}
}

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.body == nil {
			if err := s.resume(); err != nil {
				s.err = err
				return 0, err
			}
		}
		n, err := s.body.read(p, s.c.s.ReadTimeout)
		s.off += int64(n)
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (s.size < 0 || s.off >= s.size) {
			s.detach()
			s.err = io.EOF
			return n, io.EOF
		}
		healthy := s.healthy()
		s.detach()
		if s.ctx.Err() != nil {
			s.err = s.ctx.Err()
			return n, s.err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the connection closed before Content-Length bytes
		}
		if healthy {
			s.failed, s.timeouts = 0, 0
		}
		if isTimeout(err) {
			s.c.timeouts.Add(1)
			s.timeouts++
		} else {
			s.c.truncations.Add(1)
		}
		s.lastErr = err
		slog.Debug("datago: HTTP body broke", "url", Redact(s.url), "at_byte", s.off, "error", err)
		if n > 0 {
			return n, nil // resume on the next Read
		}
	}
}

// resume reopens the body at s.off.
func (s *Stream) resume() error {
	if s.failed >= s.c.s.MaxRetries {
		s.c.failures.Add(1)
		return &Error{URL: s.url, Offset: s.off, Err: s.lastErr,
			Note: fmt.Sprintf("could not resume after %d attempts", s.failed)}
	}
	if s.timeouts > maxTimeoutRetries {
		s.c.failures.Add(1)
		return &Error{URL: s.url, Offset: s.off, Err: s.lastErr,
			Note: fmt.Sprintf("could not resume: %d timeouts in a row", s.timeouts)}
	}
	if err := sleep(s.ctx, s.c.backoff(s.failed, 0, false)); err != nil {
		return err
	}
	s.failed++
	s.c.resumes.Add(1)
	resp, err := s.c.open(s.ctx, s.url, s.o, rangeSpec{off: s.off, ifRange: s.validator})
	if err != nil {
		return err
	}
	if s.off > 0 {
		reject := func(note string) error {
			resp.Body.Close()
			resp.cancel()
			s.c.failures.Add(1)
			return &Error{URL: s.url, Offset: s.off, Err: s.lastErr, Note: note}
		}
		if resp.StatusCode != http.StatusPartialContent {
			return reject(fmt.Sprintf("cannot resume: the server answered %q to Range: bytes=%d-", resp.Status, s.off))
		}
		cr := resp.Header.Get("Content-Range")
		start, total, ok := parseContentRange(cr)
		if !ok || start != s.off || (s.size >= 0 && total >= 0 && total != s.size) {
			return reject(fmt.Sprintf("cannot resume: Content-Range %q does not continue at byte %d of %d", cr, s.off, s.size))
		}
	}
	slog.Info("datago: HTTP stream resumed", "url", Redact(s.url), "at_byte", s.off, "after", s.lastErr)
	s.attach(resp)
	return nil
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", giving -1).
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, last, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, false
		}
		total = t
	}
	return start, total, true
}

// Close releases the connection (idempotent).
func (s *Stream) Close() error {
	s.detach()
	if s.err == nil {
		s.err = errClosed
	}
	return nil
}
