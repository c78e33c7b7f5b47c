package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
)

// fast settings: short backoffs so that retries do not slow the tests down.
func fast() Settings {
	return Settings{RetryBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxRetries: 3}
}

func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// server is an httptest server (127.0.0.1) with an access log.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	log    []*http.Request
	conns  atomic.Int64
	closed chan struct{}
}

func newServer(t *testing.T, h func(s *server, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{closed: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.log = append(s.log, r.Clone(context.Background()))
		s.mu.Unlock()
		h(s, w, r)
	}))
	s.Server.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(func() {
		close(s.closed)
		s.Close()
	})
	return s
}

func (s *server) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.log...)
}

func serve(data []byte) func(*server, http.ResponseWriter, *http.Request) {
	return func(_ *server, w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f.bin", time.Unix(1700000000, 0), bytes.NewReader(data))
	}
}

// cutFirst serves data (honouring "Range: bytes=N-") but breaks the connection of the first n
// requests after cut bytes of their body.
func cutFirst(data []byte, n int, cut int) func(*server, http.ResponseWriter, *http.Request) {
	var count atomic.Int64
	return func(s *server, w http.ResponseWriter, r *http.Request) {
		if int(count.Add(1)) > n {
			serve(data)(s, w, r)
			return
		}
		start := 0
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &start); err != nil {
			start = 0
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)-start))
		w.Header().Set("Last-Modified", time.Unix(1700000000, 0).UTC().Format(http.TimeFormat))
		if start > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		_, _ = w.Write(data[start : start+cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the server drops the connection
	}
}

func checkLive(t *testing.T) {
	t.Helper()
	if n := cmem.Live(); n != 0 {
		t.Errorf("%d C buffers still allocated", n)
	}
}

func TestGetOKWithBearerAndReuse(t *testing.T) {
	data := payload(300_000)
	s := newServer(t, serve(data))
	c := New(fast())
	for i := 0; i < 5; i++ {
		b, err := c.Get(context.Background(), s.URL+"/f.bin", WithBearer("tok"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), data) {
			t.Fatal("body differs")
		}
		b.Free()
	}
	for _, r := range s.requests() {
		if got := r.Header.Get("Authorization"); got != "Bearer tok" {
			t.Errorf("Authorization = %q", got)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 sequential GETs, want 1 (reuse)", n)
	}
	if u := c.budget.inUse(); u != 0 {
		t.Errorf("budget still holds %d bytes", u)
	}
	checkLive(t)
}

func TestStatusErrorsNameTheURL(t *testing.T) {
	s := newServer(t, func(_ *server, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		default:
			http.Error(w, "{\"error\": \"token is read-only\"}\n", http.StatusForbidden)
		}
	})
	c := New(fast())
	for path, kind := range map[string]errs.Kind{"/missing": errs.NotFound, "/secret": errs.OS} {
		_, err := c.Get(context.Background(), s.URL+path)
		if err == nil {
			t.Fatalf("%s: no error", path)
		}
		desc := errs.Describe(err)
		if !strings.HasPrefix(desc, kind.String()+":") || !strings.Contains(desc, s.URL+path) {
			t.Errorf("%s: error %q, want kind %s and the URL", path, desc, kind)
		}
		var se *StatusError
		if !errors.As(err, &se) {
			t.Errorf("%s: %T is not a *StatusError", path, err)
		}
		if path == "/secret" && !strings.HasSuffix(desc, `HTTP 403 Forbidden: {"error": "token is read-only"}`) {
			t.Errorf("%s: error %q does not quote the server's explanation", path, desc)
		}
	}
	if n := len(s.requests()); n != 2 {
		t.Errorf("%d requests: 4xx must not be retried", n)
	}
	checkLive(t)
}

func TestRetry5xxThenSuccess(t *testing.T) {
	data := payload(1000)
	var n atomic.Int64
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		serve(data)(s, w, r)
	})
	c := New(fast())
	b, err := c.Get(context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	if !bytes.Equal(b.Bytes(), data) {
		t.Fatal("body differs")
	}
	if got := c.Counters(); got.Retries != 2 || got.Requests != 3 {
		t.Errorf("counters %+v, want 2 retries in 3 requests", got)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	var n atomic.Int64
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		serve([]byte("ok"))(s, w, r)
	})
	c := New(fast())
	start := time.Now()
	b, err := c.Get(context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	b.Free()
	if d := time.Since(start); d < 950*time.Millisecond {
		t.Errorf("retried after %v, want >= Retry-After (1 s)", d)
	}
}

func TestRetriesExhausted(t *testing.T) {
	s := newServer(t, func(_ *server, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	c := New(fast())
	_, err := c.Get(context.Background(), s.URL+"/x")
	if err == nil || !strings.Contains(err.Error(), s.URL+"/x") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %v, want the URL and the status", err)
	}
	if n := len(s.requests()); n != 4 {
		t.Errorf("%d requests, want 1 + 3 retries", n)
	}
}

func TestConnectionRefusedIsRetriedThenOSError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/shard.tar"
	ln.Close()
	c := New(fast())
	_, err = c.Open(context.Background(), url)
	if err == nil {
		t.Fatal("no error")
	}
	desc := errs.Describe(err)
	if !strings.HasPrefix(desc, "OSError:") || !strings.Contains(desc, url) || !strings.Contains(desc, "4 attempts") {
		t.Errorf("error %q", desc)
	}
	if got := c.Counters().Retries; got != 3 {
		t.Errorf("%d retries, want 3", got)
	}
}

func TestStreamResumesWithRange(t *testing.T) {
	data := payload(2_000_000)
	s := newServer(t, cutFirst(data, 2, 700_001))
	c := New(fast())
	st, err := c.Open(context.Background(), s.URL+"/shard.tar")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(st)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want %d identical bytes", len(got), len(data))
	}
	reqs := s.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (first, cut resume, final resume)", len(reqs))
	}
	if r := reqs[1].Header.Get("Range"); r != "bytes=700001-" {
		t.Errorf("second request Range = %q", r)
	}
	if r := reqs[2].Header.Get("Range"); r != "bytes=1400002-" {
		t.Errorf("third request Range = %q", r)
	}
	if r := reqs[1].Header.Get("If-Range"); r == "" {
		t.Error("resume without If-Range")
	}
	if got := c.Counters().Resumes; got != 2 {
		t.Errorf("%d resumes, want 2", got)
	}
}

func TestStreamCannotResumeWithoutRangeSupport(t *testing.T) {
	data := payload(500_000)
	var n atomic.Int64
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			cutFirst(data, 1, 100_000)(s, w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data) // ignores Range: 200 with the whole file
	})
	c := New(fast())
	st, err := c.Open(context.Background(), s.URL+"/plain.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := io.ReadAll(st)
	if err == nil {
		t.Fatal("no error")
	}
	if !bytes.Equal(got, data[:100_000]) {
		t.Errorf("delivered %d bytes, want exactly the 100000 before the cut", len(got))
	}
	desc := errs.Describe(err)
	if !strings.HasPrefix(desc, "OSError:") || !strings.Contains(desc, s.URL+"/plain.tar") || !strings.Contains(desc, "cannot resume") {
		t.Errorf("error %q", desc)
	}
}

func TestStreamRejectsMismatchedContentRange(t *testing.T) {
	data := payload(50_000)
	var n atomic.Int64
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			cutFirst(data, 1, 10_000)(s, w, r)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(data)
	})
	c := New(fast())
	st, err := c.Open(context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := io.ReadAll(st)
	if err == nil || !strings.Contains(err.Error(), "Content-Range") {
		t.Fatalf("error %v, want a Content-Range mismatch", err)
	}
	if len(got) != 10_000 {
		t.Errorf("delivered %d bytes, want 10000", len(got))
	}
}

func stallAfter(data []byte, n int) func(*server, http.ResponseWriter, *http.Request) {
	return func(s *server, w http.ResponseWriter, r *http.Request) {
		start := 0
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &start); err != nil {
			start = 0
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)-start))
		if start > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		if start == 0 { // a resumed request stalls at once: no progress
			_, _ = w.Write(data[:n])
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
	}
}

func TestStalledReadTimesOut(t *testing.T) {
	data := payload(100_000)
	s := newServer(t, stallAfter(data, 1000))
	set := fast()
	set.ReadTimeout = 200 * time.Millisecond
	set.MaxRetries = 1
	c := New(set)
	start := time.Now()
	st, err := c.Open(context.Background(), s.URL+"/stall.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = io.ReadAll(st)
	if !errors.Is(err, ErrStalled) && !strings.Contains(fmt.Sprint(err), "stalled") {
		t.Fatalf("error %v, want a stall", err)
	}
	if !strings.Contains(err.Error(), s.URL+"/stall.tar") || !strings.Contains(err.Error(), "could not resume") {
		t.Errorf("error %q does not name the URL or the resume", err)
	}
	if reqs := s.requests(); len(reqs) != 2 || reqs[1].Header.Get("Range") != "bytes=1000-" {
		t.Errorf("%d requests, want the first and one resume at byte 1000", len(reqs))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestHeaderTimeout(t *testing.T) {
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
	})
	set := fast()
	set.HeaderTimeout = 150 * time.Millisecond
	set.MaxRetries = 1
	c := New(set)
	start := time.Now()
	_, err := c.Get(context.Background(), s.URL)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("error %v, want a header timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestCancelUnblocksAStalledRead(t *testing.T) {
	data := payload(100_000)
	s := newServer(t, stallAfter(data, 10))
	c := New(Settings{ReadTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.Open(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = io.ReadAll(st)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancel took %v", d)
	}
	// a cancelled Get frees what it read
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	if _, err := c.Get(ctx2, s.URL); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get error %v", err)
	}
	checkLive(t)
	if u := c.budget.inUse(); u != 0 {
		t.Errorf("budget holds %d bytes after a cancelled Get", u)
	}
}

func TestGetTooLarge(t *testing.T) {
	s := newServer(t, serve(payload(10_000)))
	c := New(fast())
	_, err := c.Get(context.Background(), s.URL, WithMaxBytes(1000))
	if !errors.Is(err, cmem.ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
	// unknown length (chunked): the cap applies while reading
	s2 := newServer(t, func(_ *server, w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < 10; i++ {
			_, _ = w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
		}
	})
	if _, err := c.Get(context.Background(), s2.URL, WithMaxBytes(1000)); !errors.Is(err, cmem.ErrTooLarge) {
		t.Fatalf("chunked: error %v, want ErrTooLarge", err)
	}
	checkLive(t)
}

// The budget is a weighted semaphore (golang.org/x/sync/semaphore, first come first served).
func TestBudgetCapsBytesInFlight(t *testing.T) {
	b := newBudget(100)
	ctx := context.Background()
	if err := b.Acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := b.Acquire(cctx, 50); !errors.Is(err, context.DeadlineExceeded) { // 60 + 50 > 100
		t.Fatalf("error %v, want the deadline", err)
	}
	if b.inUse() != 60 {
		t.Fatalf("in use %d, want 60 (a cancelled Acquire holds nothing)", b.inUse())
	}
	b.Release(60)
	for _, n := range []int64{50, 10} {
		if err := b.Acquire(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if b.inUse() != 60 {
		t.Fatalf("in use %d, want 60", b.inUse())
	}
	b.Release(50)
	b.Release(10)
	if b.inUse() != 0 {
		t.Fatalf("in use %d", b.inUse())
	}
	if b.clamp(1000) != 100 || b.clamp(0) != 1 {
		t.Fatal("clamp")
	}
}

func TestConcurrentGetsShareTheBudget(t *testing.T) {
	data := payload(64 << 10)
	s := newServer(t, serve(data))
	set := fast()
	set.MaxBytesInFlight = 128 << 10 // two files at a time
	c := New(set)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.Get(context.Background(), s.URL)
			if err != nil || !bytes.Equal(b.Bytes(), data) {
				failed.Add(1)
			}
			b.Free()
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d GETs failed", failed.Load())
	}
	if u := c.budget.inUse(); u != 0 {
		t.Errorf("budget holds %d", u)
	}
	checkLive(t)
}

func TestParsers(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-999/1000", 100, 1000, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 5-4/10", 0, 0, false},
		{"bytes 0-9/5", 0, 0, false},
		{"items 0-9/10", 0, 0, false},
		{"", 0, 0, false},
	} {
		s, tot, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (s != tc.start || tot != tc.total)) {
			t.Errorf("parseContentRange(%q) = %d %d %v", tc.in, s, tot, ok)
		}
	}
	now := time.Now()
	if d, ok := retryAfter("3", now); !ok || d != 3*time.Second {
		t.Errorf("retryAfter(3) = %v %v", d, ok)
	}
	if d, ok := retryAfter(now.Add(10*time.Second).UTC().Format(http.TimeFormat), now); !ok || d < 8*time.Second || d > 11*time.Second {
		t.Errorf("retryAfter(date) = %v %v", d, ok)
	}
	if _, ok := retryAfter("soon", now); ok {
		t.Error("retryAfter(soon) parsed")
	}
	c := New(Settings{RetryBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxRetryAfter: 5 * time.Second})
	for attempt := 0; attempt < 10; attempt++ {
		d := c.backoff(attempt, 0, false)
		want := min(100*time.Millisecond<<attempt, time.Second)
		if d < want/2 || d > want {
			t.Errorf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
		}
	}
	if d := c.backoff(0, time.Hour, true); d != 5*time.Second {
		t.Errorf("Retry-After is not capped: %v", d)
	}
}

func TestSettingsFromConfig(t *testing.T) {
	retries := 2
	c := &config.Config{HTTPReadTimeout: 1.5, HTTPMaxRetries: &retries, MaxFileBytes: 7}
	s, err := SettingsFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if s.ReadTimeout != 1500*time.Millisecond || s.MaxRetries != 2 || s.MaxBytes != 7 || s.ConnectTimeout != 10*time.Second {
		t.Errorf("settings %+v", s)
	}
	neg := -1
	for _, bad := range []*config.Config{{HTTPConnectTimeout: -1}, {HTTPMaxRetries: &neg}, {HTTPMaxConnsPerHost: -3}} {
		if _, err := SettingsFrom(bad); err == nil || !strings.HasPrefix(errs.Describe(err), "ValueError") {
			t.Errorf("SettingsFrom(%+v) = %v, want a ValueError", bad, err)
		}
	}
	if cl := NewFor(&config.Config{HTTPConnectTimeout: -1, MaxFileBytes: 9}); cl.s.MaxBytes != 9 || cl.s.ConnectTimeout != 10*time.Second {
		t.Errorf("NewFor with invalid settings: %+v, want the defaults and max_file_bytes", cl.s)
	}
}

// An error answer whose body stalls must fail within the read timeout, not hang the request.
func TestStalledErrorBodyTimesOut(t *testing.T) {
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("overloaded"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
	})
	set := fast()
	set.ReadTimeout = 200 * time.Millisecond
	set.MaxRetries = 1
	c := New(set)
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), s.URL+"/busy.jpg")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), s.URL+"/busy.jpg") || !strings.Contains(err.Error(), "503") {
			t.Fatalf("error %v, want a 503 naming the URL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get hangs on an error answer whose body stalls")
	}
}
