// Package remote is datago's HTTP layer, shared by the remote sources (WebDataset shards, the db
// source's pages and images) and the fetch stage (URL payloads).
//
// One Client per pipeline holds one tuned *http.Client, so connections are reused across requests.
// Every request has a connect timeout, a response-header (first byte) timeout, an idle read
// timeout (a body read that stalls longer fails) and a minimum throughput (a body that delivers
// fewer than MinThroughput bytes per second over ReadTimeout of waiting fails: a server that drips
// bytes cannot hold a request forever). Connection errors, 408, 429 and 5xx answers are retried
// with exponential backoff and jitter, honouring Retry-After; a timeout (connect, headers, stall,
// too slow) is retried once only, so that an unresponsive server surfaces in about two timeouts.
// A redirect loop (a URL seen twice, or more than maxRedirects redirects) fails at once. Any other
// non-2xx answer is an error naming the URL (404 and 410 are of kind errs.NotFound, the rest
// errs.OS), never an empty body. URLs in errors and logs have their query string redacted
// (presigned URLs carry their signature there): see Redact.
//
// Open returns a Stream: a body that survives a broken connection by resuming from the byte where
// it broke with a Range request (the server must answer 206 with a matching Content-Range;
// otherwise the failure is reported). Readers above it (a tar reader) never see the break.
// Get reads a whole file into C memory; the bytes of concurrent Gets are capped by a budget
// (a semaphore weighted by Content-Length).
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
)

// Settings tune a Client. Zero durations and sizes take the defaults (see Defaults).
type Settings struct {
	ConnectTimeout time.Duration // dial + TLS handshake
	HeaderTimeout  time.Duration // from the request written to the response headers
	ReadTimeout    time.Duration // longest a body read may wait for data; the window of MinThroughput
	// MinThroughput is the least a body must deliver, in bytes per second of waiting, averaged
	// over each ReadTimeout spent waiting in reads (time the caller spends elsewhere does not
	// count). 0 takes the default; < 0 turns the check off (only the idle ReadTimeout is left).
	MinThroughput float64
	MaxRetries    int           // retries after the first attempt (connection errors, 408, 429, 5xx)
	RetryBackoff  time.Duration // first backoff; doubled per retry, with jitter
	MaxBackoff    time.Duration // backoff cap
	MaxRetryAfter time.Duration // cap on a server's Retry-After
	// MaxConnsPerHost caps connections per host (idle ones are kept up to the same number).
	MaxConnsPerHost int
	// MaxBytesInFlight caps the bytes of concurrent Gets (weighted by Content-Length).
	MaxBytesInFlight int64
	// MaxBytes caps one Get (0: no cap); WithMaxBytes overrides it per call.
	MaxBytes  int64
	UserAgent string
}

// Defaults are the settings used for zero fields.
func Defaults() Settings {
	return Settings{
		ConnectTimeout:   10 * time.Second,
		HeaderTimeout:    15 * time.Second,
		ReadTimeout:      15 * time.Second,
		MinThroughput:    1024,
		MaxRetries:       5,
		RetryBackoff:     500 * time.Millisecond,
		MaxBackoff:       15 * time.Second,
		MaxRetryAfter:    60 * time.Second,
		MaxConnsPerHost:  64,
		MaxBytesInFlight: 512 << 20,
		UserAgent:        "datago",
	}
}

func (s Settings) withDefaults() Settings {
	d := Defaults()
	for _, f := range []struct{ v, def *time.Duration }{
		{&s.ConnectTimeout, &d.ConnectTimeout}, {&s.HeaderTimeout, &d.HeaderTimeout},
		{&s.ReadTimeout, &d.ReadTimeout}, {&s.RetryBackoff, &d.RetryBackoff},
		{&s.MaxBackoff, &d.MaxBackoff}, {&s.MaxRetryAfter, &d.MaxRetryAfter},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if s.MaxRetries < 0 {
		s.MaxRetries = 0
	}
	if s.MinThroughput == 0 {
		s.MinThroughput = d.MinThroughput
	}
	if s.MaxConnsPerHost <= 0 {
		s.MaxConnsPerHost = d.MaxConnsPerHost
	}
	if s.MaxBytesInFlight <= 0 {
		s.MaxBytesInFlight = d.MaxBytesInFlight
	}
	if s.UserAgent == "" {
		s.UserAgent = d.UserAgent
	}
	return s
}

// SettingsFrom reads the http_* keys of the client config (errs.Value for invalid values).
func SettingsFrom(c *config.Config) (Settings, error) {
	s := Defaults()
	for _, f := range []struct {
		key string
		v   float64
		dst *time.Duration
	}{
		{"http_connect_timeout", c.HTTPConnectTimeout, &s.ConnectTimeout},
		{"http_header_timeout", c.HTTPHeaderTimeout, &s.HeaderTimeout},
		{"http_read_timeout", c.HTTPReadTimeout, &s.ReadTimeout},
		{"http_retry_backoff", c.HTTPRetryBackoff, &s.RetryBackoff},
	} {
		if f.v < 0 {
			return s, errs.Errorf(errs.Value, "config key %s must be >= 0 seconds, got %g", f.key, f.v)
		}
		if f.v > 0 {
			*f.dst = time.Duration(f.v * float64(time.Second))
		}
	}
	if c.HTTPMaxRetries != nil {
		if *c.HTTPMaxRetries < 0 {
			return s, errs.Errorf(errs.Value, "config key http_max_retries must be >= 0, got %d", *c.HTTPMaxRetries)
		}
		s.MaxRetries = *c.HTTPMaxRetries
	}
	if c.HTTPMinThroughput != nil {
		switch v := *c.HTTPMinThroughput; {
		case v < 0:
			return s, errs.Errorf(errs.Value, "config key http_min_throughput must be >= 0 bytes per second (0: no minimum), got %g", v)
		case v == 0:
			s.MinThroughput = -1 // off
		default:
			s.MinThroughput = v
		}
	}
	if c.HTTPMaxConnsPerHost < 0 {
		return s, errs.Errorf(errs.Value, "config key http_max_conns_per_host must be >= 0, got %d", c.HTTPMaxConnsPerHost)
	}
	if c.HTTPMaxConnsPerHost > 0 {
		s.MaxConnsPerHost = c.HTTPMaxConnsPerHost
	}
	if c.HTTPMaxBytesInFlight < 0 {
		return s, errs.Errorf(errs.Value, "config key http_max_bytes_in_flight must be >= 0, got %d", c.HTTPMaxBytesInFlight)
	}
	if c.HTTPMaxBytesInFlight > 0 {
		s.MaxBytesInFlight = c.HTTPMaxBytesInFlight
	}
	s.MaxBytes = c.MaxFileBytes
	return s, nil
}

// NewFor builds the pipeline's shared client for config c (one per pipeline, built by pipeline.New
// and passed to the sources and the fetch stage). Invalid http_* settings fall back to the
// defaults here; sources that use HTTP call SettingsFrom first to report them.
func NewFor(c *config.Config) *Client {
	s, err := SettingsFrom(c)
	if err != nil {
		s = Defaults()
		s.MaxBytes = c.MaxFileBytes
	}
	return New(s)
}

// Counters are a Client's running totals.
type Counters struct {
	Requests    int64 `json:"requests"`    // HTTP requests sent (attempts, retries, resumes and redirects included)
	Retries     int64 `json:"retries"`     // attempts repeated after a retryable failure
	Resumes     int64 `json:"resumes"`     // streams resumed with a Range request after a broken read
	Truncations int64 `json:"truncations"` // bodies that ended early (closed or reset before their end)
	Timeouts    int64 `json:"timeouts"`    // connects, headers or body reads that timed out or were too slow
	Failures    int64 `json:"failures"`    // requests or streams that failed for good
}

// Map is the counters by their JSON names (the "http" object of the pipeline's stats).
func (c Counters) Map() map[string]int64 {
	return map[string]int64{
		"requests": c.Requests, "retries": c.Retries, "resumes": c.Resumes,
		"truncations": c.Truncations, "timeouts": c.Timeouts, "failures": c.Failures,
	}
}

// Sub is the counts since before (a snapshot taken earlier).
func (c Counters) Sub(before Counters) Counters {
	return Counters{
		Requests: c.Requests - before.Requests, Retries: c.Retries - before.Retries,
		Resumes: c.Resumes - before.Resumes, Truncations: c.Truncations - before.Truncations,
		Timeouts: c.Timeouts - before.Timeouts, Failures: c.Failures - before.Failures,
	}
}

// Client is a pipeline's HTTP client. It is safe for concurrent use.
type Client struct {
	s      Settings
	hc     *http.Client
	budget *budget

	requests, retries, resumes, truncations, timeouts, failures atomic.Int64
}

// New builds a client with its own connection pool.
func New(s Settings) *Client {
	s = s.withDefaults()
	dialer := &net.Dialer{Timeout: s.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: dialer.DialContext,
		// HTTP/1.1: bulk downloads want several TCP connections (HTTP/2 would multiplex every shard
		// of a host onto one connection, one congestion window)
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   s.MaxConnsPerHost,
		MaxConnsPerHost:       s.MaxConnsPerHost,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   s.ConnectTimeout,
		ResponseHeaderTimeout: s.HeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// bytes as stored: transparent gzip would break Content-Length and Range arithmetic
		DisableCompression: true,
		ReadBufferSize:     64 << 10,
		WriteBufferSize:    16 << 10,
	}
	c := &Client{s: s, budget: newBudget(s.MaxBytesInFlight)}
	c.hc = &http.Client{Transport: tr, CheckRedirect: c.checkRedirect}
	return c
}

// Settings returns the effective settings.
func (c *Client) Settings() Settings { return c.s }

// Counters returns the running totals.
func (c *Client) Counters() Counters {
	return Counters{
		Requests: c.requests.Load(), Retries: c.retries.Load(),
		Resumes: c.resumes.Load(), Truncations: c.truncations.Load(),
		Timeouts: c.timeouts.Load(), Failures: c.failures.Load(),
	}
}

// CloseIdle closes the idle connections of the pool.
func (c *Client) CloseIdle() { c.hc.CloseIdleConnections() }

// Option changes one request.
type Option func(*options)

type options struct {
	header   http.Header
	maxBytes int64
	setMax   bool
}

// WithBearer sends "Authorization: Bearer token" (nothing when token is empty).
func WithBearer(token string) Option {
	return func(o *options) {
		if token != "" {
			o.header.Set("Authorization", "Bearer "+token)
		}
	}
}

// WithHeader sets a request header.
func WithHeader(key, value string) Option { return func(o *options) { o.header.Set(key, value) } }

// WithMaxBytes caps the size of a Get (0: no cap).
func WithMaxBytes(n int64) Option { return func(o *options) { o.maxBytes, o.setMax = n, true } }

func (c *Client) opts(list []Option) *options {
	o := &options{header: http.Header{}, maxBytes: c.s.MaxBytes}
	for _, f := range list {
		f(o)
	}
	return o
}

// StatusError is a non-2xx answer that is not retried (or still failed after the retries).
type StatusError struct {
	URL    string
	Code   int
	Status string
	Body   string // the start of the answer's body, one line (servers explain a 400 there)
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("GET %s: HTTP %s", Redact(e.URL), e.Status)
	if e.Body != "" {
		msg += ": " + RedactText(e.Body)
	}
	return msg
}

// maxErrorBody is how much of an error answer's body a StatusError quotes.
const maxErrorBody = 200

// errorBody reads the start of an error answer's body as one printable line.
func errorBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxErrorBody))
	s := strings.Map(func(c rune) rune {
		switch {
		case c == '\n' || c == '\r' || c == '\t':
			return ' '
		case c < 0x20 || c == 0x7f || c == utf8.RuneError:
			return -1
		}
		return c
	}, string(b))
	s = strings.TrimSpace(s)
	if len(b) == maxErrorBody {
		s += "…"
	}
	return s
}

// Kind is the user-facing kind: NotFound for 404 and 410, OS otherwise.
func (e *StatusError) Kind() errs.Kind {
	if e.Code == http.StatusNotFound || e.Code == http.StatusGone {
		return errs.NotFound
	}
	return errs.OS
}

// Error is a transport failure that outlasted the retries (or a stream that could not resume).
// Its kind is errs.OS; it names the URL.
type Error struct {
	URL    string
	Offset int64 // byte of the body where it failed (0 before the body)
	Err    error
	Note   string
}

func (e *Error) Error() string {
	msg := "GET " + Redact(e.URL)
	if e.Offset > 0 {
		msg += fmt.Sprintf(" (at byte %d)", e.Offset)
	}
	msg += ": " + RedactText(e.Err.Error())
	if e.Note != "" {
		msg += " (" + e.Note + ")"
	}
	return msg
}

// Kind is the user-facing kind (OS).
func (e *Error) Kind() errs.Kind { return errs.OS }

// Unwrap is the cause (ErrStalled, ErrTooSlow, a transport error).
func (e *Error) Unwrap() error { return e.Err }

// CheckURL validates an http(s) URL.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errs.Errorf(errs.Value, "invalid URL %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errs.Errorf(errs.Value, "invalid URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return errs.Errorf(errs.Value, "invalid URL %q: no host", raw)
	}
	return nil
}

// IsURL reports whether s looks like an http(s) URL.
func IsURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code <= 599
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); ok is false when absent.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(h); err == nil {
		return time.Duration(max(secs, 0)) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// backoff is the wait before retry number attempt (0-based): exponential, capped, with jitter in
// [d/2, d]; a Retry-After from the server wins when longer (capped by MaxRetryAfter).
func (c *Client) backoff(attempt int, after time.Duration, hasAfter bool) time.Duration {
	d := c.s.RetryBackoff
	for i := 0; i < attempt && d < c.s.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.s.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	if hasAfter {
		d = max(d, min(after, c.s.MaxRetryAfter))
	}
	return d
}

// Backoff is the wait before retry number attempt (0-based) of something the caller retries
// itself, like the client's own retries: exponential from RetryBackoff, capped by MaxBackoff, with
// jitter in [d/2, d].
func (c *Client) Backoff(attempt int) time.Duration { return c.backoff(attempt, 0, false) }

// Sleep waits d, or until ctx is done (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error { return sleep(ctx, d) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// response is an open response whose request context is cancelled by cancel (which also stops the
// body's idle timer).
type response struct {
	*http.Response
	cancel context.CancelFunc
}

// rangeSpec asks for the bytes from off on; ifRange (an ETag or Last-Modified) makes the server
// send the whole file instead when it changed, which open then reports.
type rangeSpec struct {
	off     int64
	ifRange string
}

// open sends GET url (with a Range from rng.off > 0) and retries connection errors and retryable
// statuses. It returns a 2xx response or an error: ctx.Err(), *StatusError, or *Error.
func (c *Client) open(ctx context.Context, rawURL string, o *options, rng rangeSpec) (*response, error) {
	timeouts := 0
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, rawURL, nil)
		if err != nil {
			cancel()
			return nil, errs.Errorf(errs.Value, "invalid URL %q: %v", rawURL, err)
		}
		for k, v := range o.header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.s.UserAgent)
		if rng.off > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", rng.off))
			if rng.ifRange != "" {
				req.Header.Set("If-Range", rng.ifRange)
			}
		}
		c.requests.Add(1)
		resp, err := c.hc.Do(req)
		var (
			fail              error
			after             time.Duration
			hasAfter, isFinal bool
		)
		switch {
		case err != nil:
			cancel()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fail = err
			var ue *url.Error
			if errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "unsupported protocol scheme") {
				isFinal = true
			}
			if errors.Is(err, errRedirect) { // a loop stays a loop
				isFinal = true
			}
			if isTimeout(err) {
				c.timeouts.Add(1)
				timeouts++
				isFinal = isFinal || timeouts > maxTimeoutRetries
			}
		case resp.StatusCode >= 200 && resp.StatusCode <= 299:
			return &response{Response: resp, cancel: cancel}, nil
		default:
			// the error body is read without the Stream's idle timer: bound it by the read timeout
			// (cancel unblocks the reads), so that a stalled error answer cannot hang the request
			stall := time.AfterFunc(c.s.ReadTimeout, cancel)
			fail = &StatusError{URL: rawURL, Code: resp.StatusCode, Status: resp.Status, Body: errorBody(resp.Body)}
			isFinal = !retryableStatus(resp.StatusCode)
			after, hasAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10) // lets the connection be reused
			stall.Stop()
			resp.Body.Close()
			cancel()
		}
		if isFinal || attempt >= c.s.MaxRetries {
			c.failures.Add(1)
			var se *StatusError
			if errors.As(fail, &se) {
				return nil, se
			}
			note := ""
			if attempt > 0 {
				note = fmt.Sprintf("gave up after %d attempts", attempt+1)
			}
			return nil, &Error{URL: rawURL, Offset: rng.off, Err: fail, Note: note}
		}
		c.retries.Add(1)
		wait := c.backoff(attempt, after, hasAfter)
		slog.Debug("datago: HTTP retry", "url", Redact(rawURL), "attempt", attempt+1, "wait", wait, "error", fail)
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// Get reads the whole body of url into C memory. The bytes count against the in-flight budget while
// they download. A body larger than the cap (WithMaxBytes, or Settings.MaxBytes) fails with
// cmem.ErrTooLarge. A broken download resumes like a Stream.
func (c *Client) Get(ctx context.Context, rawURL string, opts ...Option) (cmem.Buf, error) {
	o := c.opts(opts)
	s, err := c.open2stream(ctx, rawURL, o)
	if err != nil {
		return cmem.Buf{}, err
	}
	defer s.Close()
	if o.maxBytes > 0 && s.size > o.maxBytes {
		return cmem.Buf{}, fmt.Errorf("GET %s: %w: %d > %d bytes", rawURL, cmem.ErrTooLarge, s.size, o.maxBytes)
	}
	weight := s.size
	if weight < 0 {
		weight = 8 << 20 // unknown length: a typical image's worth
	}
	weight = c.budget.clamp(weight)
	if err := c.budget.Acquire(ctx, weight); err != nil {
		return cmem.Buf{}, err
	}
	defer c.budget.Release(weight)
	b, err := cmem.ReadAll(s, s.size, o.maxBytes)
	if err != nil {
		if errors.Is(err, cmem.ErrTooLarge) {
			return cmem.Buf{}, fmt.Errorf("GET %s: %w", Redact(rawURL), err)
		}
		return cmem.Buf{}, err
	}
	return b, nil
}

// Open starts streaming url. The stream resumes from the byte where a read broke (Range request)
// and fails with an *Error when it cannot. Close it when done.
func (c *Client) Open(ctx context.Context, rawURL string, opts ...Option) (*Stream, error) {
	return c.open2stream(ctx, rawURL, c.opts(opts))
}

func (c *Client) open2stream(ctx context.Context, rawURL string, o *options) (*Stream, error) {
	resp, err := c.open(ctx, rawURL, o, rangeSpec{})
	if err != nil {
		return nil, err
	}
	s := &Stream{c: c, ctx: ctx, url: rawURL, o: o, size: resp.ContentLength}
	s.validator = validator(resp.Header)
	s.ctype = resp.Header.Get("Content-Type")
	s.attach(resp)
	return s, nil
}

// validator is the If-Range value for a response: a strong ETag, else Last-Modified.
func validator(h http.Header) string {
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return h.Get("Last-Modified")
}

// maxTimeoutRetries is how many times a request or a stream is tried again after a timeout
// (connect, response headers, a stalled or too slow body) before it fails: once, on a fresh
// connection (a single stuck connection or server node is common; a second timeout in a row means
// the server is the problem, and retrying it MaxRetries times would multiply the timeout).
const maxTimeoutRetries = 1

// isTimeout reports whether err is a timeout of the transport (connect, TLS, response headers)
// or of a body (ErrStalled, ErrTooSlow).
func isTimeout(err error) bool {
	if errors.Is(err, ErrStalled) || errors.Is(err, ErrTooSlow) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maxRedirects caps the redirects of one request (as Go's default client does).
const maxRedirects = 10

// errRedirect marks a redirect loop or too many redirects: not retried.
var errRedirect = errors.New("redirect loop")

// checkRedirect stops a redirect chain at once when it comes back to a URL it has visited, or
// after maxRedirects redirects; a redirect it follows counts as a request.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	next := req.URL.String()
	for _, v := range via {
		if v.URL.String() == next {
			return fmt.Errorf("%w: back to %s after %d redirects", errRedirect, Redact(next), len(via))
		}
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: stopped after %d redirects (last to %s)", errRedirect, len(via), Redact(next))
	}
	c.requests.Add(1)
	return nil
}

// Redact returns raw with the values of its credential parameters replaced by REDACTED (presigned
// URLs carry their signature in the query: S3's X-Amz-Signature and X-Amz-Credential, the engine's
// sig, tokens, keys) and a password in its user info masked; other parameters (a page cursor)
// stay, so that the URL still says what was asked. Used for every URL in logs and error messages.
func Redact(raw string) string { return RedactText(raw) }

// queryParam finds the name=value pairs of query strings, in URLs or quoted on their own.
var queryParam = regexp.MustCompile(`([?&;])([^=&;?#\s"'<>]+)=([^&;#\s"'<>]*)`)

// urlWithUser finds URLs with user info (user:password@host).
var urlWithUser = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s/"'<>@]*@[^\s"'<>]*`)

// sensitiveParam reports whether a query parameter carries a credential.
func sensitiveParam(name string) bool {
	n := strings.ToLower(name)
	if n == "sig" || n == "key" {
		return true
	}
	for _, w := range []string{"signature", "token", "credential", "secret", "password", "passwd", "apikey", "api_key", "api-key", "accesskey", "access_key", "auth"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// RedactText redacts every credential parameter and URL password in s (an error message, a log
// line) as Redact does.
func RedactText(s string) string {
	if strings.Contains(s, "=") {
		s = queryParam.ReplaceAllStringFunc(s, func(m string) string {
			p := queryParam.FindStringSubmatch(m)
			if !sensitiveParam(p[2]) || p[3] == "" {
				return m
			}
			return p[1] + p[2] + "=REDACTED"
		})
	}
	if strings.Contains(s, "@") {
		s = urlWithUser.ReplaceAllStringFunc(s, func(m string) string {
			if u, err := url.Parse(m); err == nil {
				return u.Redacted()
			}
			return m
		})
	}
	return s
}
