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

var errClosed = errors.New("remote: read on a closed stream")

// body is one response body with its idle-read timer: a Read that waits longer than the timeout
// cancels the request, which unblocks the Read with an error.
type body struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	timer   *time.Timer
	stalled atomic.Bool
}

func newBody(resp *response) *body {
	b := &body{rc: resp.Body, cancel: resp.cancel}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.stalled.Store(true)
		b.cancel()
	})
	b.timer.Stop()
	return b
}

func (b *body) read(p []byte, timeout time.Duration) (int, error) {
	b.timer.Reset(timeout)
	n, err := b.rc.Read(p)
	if !b.timer.Stop() && b.stalled.Load() && err != io.EOF {
		err = fmt.Errorf("%w: no data for %v", ErrStalled, timeout)
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

	body    *body
	off     int64 // bytes delivered
	failed  int   // resume attempts since the last progress
	lastErr error // what broke the last body
	err     error // sticky: io.EOF, ctx.Err(), a fatal *Error
}

// Size is the total length from Content-Length (-1 when unknown).
func (s *Stream) Size() int64 { return s.size }

// Offset is the number of bytes delivered so far.
func (s *Stream) Offset() int64 { return s.off }

// URL is the stream's URL.
func (s *Stream) URL() string { return s.url }

func (s *Stream) attach(resp *response) { s.body = newBody(resp) }

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
		if n > 0 {
			s.failed = 0
		}
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (s.size < 0 || s.off >= s.size) {
			s.detach()
			s.err = io.EOF
			return n, io.EOF
		}
		s.detach()
		if s.ctx.Err() != nil {
			s.err = s.ctx.Err()
			return n, s.err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the connection closed before Content-Length bytes
		}
		s.lastErr = err
		slog.Debug("datago: HTTP body broke", "url", s.url, "at_byte", s.off, "error", err)
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
	slog.Info("datago: HTTP stream resumed", "url", s.url, "at_byte", s.off, "after", s.lastErr)
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
