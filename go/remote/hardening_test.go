package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
)

// within runs f and fails the test if it has not returned after limit: a guard against a hang
// (what these faults did before the fix), not a timing assertion.
func within[T any](t *testing.T, limit time.Duration, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(limit):
		t.Fatalf("no answer after %v", limit)
		panic("unreachable")
	}
}

// drip answers 200 (206 from a Range start) with a large Content-Length, then sends one byte per
// tick until the client goes away.
func drip(size int, tick time.Duration) func(*server, http.ResponseWriter, *http.Request) {
	return func(s *server, w http.ResponseWriter, r *http.Request) {
		start := 0
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &start); err != nil {
			start = 0
		}
		w.Header().Set("Content-Length", fmt.Sprint(size-start))
		if start > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size-1, size))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		for i := start; i < size; i++ {
			if _, err := w.Write([]byte{'x'}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(tick):
			case <-r.Context().Done():
				return
			case <-s.closed:
				return
			}
		}
	}
}

// A server that drips bytes fails the stream by the minimum throughput (the idle read timeout
// never fires: every read gets a byte), after one resume, never the MaxRetries.
func TestDripFailsByMinThroughput(t *testing.T) {
	s := newServer(t, drip(1_000_000, 10*time.Millisecond))
	set := fast()
	set.ReadTimeout = 300 * time.Millisecond // the idle timeout, and the throughput window
	set.MinThroughput = 10_000               // the drip gives ~100 B/s
	set.MaxRetries = 5
	c := New(set)
	err := within(t, 20*time.Second, func() error {
		st, err := c.Open(context.Background(), s.URL+"/drip.tar")
		if err != nil {
			return err
		}
		defer st.Close()
		_, err = io.Copy(io.Discard, st)
		return err
	})
	if !errors.Is(err, ErrTooSlow) {
		t.Fatalf("error %v, want ErrTooSlow", err)
	}
	if !strings.Contains(err.Error(), s.URL+"/drip.tar") || !strings.Contains(err.Error(), "timeouts in a row") {
		t.Errorf("error %q does not name the URL and the timeouts", err)
	}
	if n := len(s.requests()); n != 2 {
		t.Errorf("%d requests, want 2 (a timeout is retried once)", n)
	}
	if got := c.Counters(); got.Timeouts != 2 || got.Resumes != 1 || got.Failures != 1 || got.Truncations != 0 {
		t.Errorf("counters %+v, want 2 timeouts, 1 resume, 1 failure", got)
	}
}

// A slow reader (the consumer, not the server) is not a slow body: only time spent waiting in
// reads counts.
func TestSlowConsumerIsNotTooSlow(t *testing.T) {
	data := payload(64 << 10)
	s := newServer(t, serve(data))
	set := fast()
	set.ReadTimeout = 50 * time.Millisecond
	set.MinThroughput = 1 << 30 // 1 GiB/s of waiting: only met because the reads hardly wait
	c := New(set)
	st, err := c.Open(context.Background(), s.URL+"/f.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	buf := make([]byte, 16<<10)
	got := 0
	for {
		n, err := st.Read(buf)
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		time.Sleep(60 * time.Millisecond) // longer than the window, between reads
	}
	if got != len(data) {
		t.Errorf("%d bytes, want %d", got, len(data))
	}
}

// Stalled response headers are retried once, not MaxRetries times.
func TestStalledHeadersRetriedOnce(t *testing.T) {
	s := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
	})
	set := fast()
	set.HeaderTimeout = 100 * time.Millisecond
	set.MaxRetries = 5
	c := New(set)
	err := within(t, 20*time.Second, func() error {
		_, err := c.Get(context.Background(), s.URL+"/stall.jpg")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") || !strings.Contains(err.Error(), "2 attempts") {
		t.Fatalf("error %v, want a header timeout after 2 attempts", err)
	}
	if n := len(s.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	if got := c.Counters(); got.Timeouts != 2 || got.Retries != 1 || got.Failures != 1 {
		t.Errorf("counters %+v", got)
	}
	if errs.KindOf(err) != errs.OS {
		t.Errorf("kind %v", errs.KindOf(err))
	}
}

// A redirect loop fails at its first repeated URL, without retries.
func TestRedirectLoopFailsAtOnce(t *testing.T) {
	s := newServer(t, func(_ *server, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/a":
			http.Redirect(w, r, "/b?X-Amz-Signature=hush", http.StatusFound)
		case r.URL.Path == "/b":
			http.Redirect(w, r, "/a", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/n/"): // always a new URL
			var i int
			fmt.Sscanf(r.URL.Path, "/n/%d", &i)
			http.Redirect(w, r, fmt.Sprintf("/n/%d", i+1), http.StatusFound)
		}
	})
	c := New(fast()) // 3 retries
	_, err := c.Get(context.Background(), s.URL+"/a")
	if err == nil || !strings.Contains(err.Error(), "redirect") || errs.KindOf(err) != errs.OS {
		t.Fatalf("error %v, want a redirect loop (OSError)", err)
	}
	if strings.Contains(err.Error(), "hush") {
		t.Errorf("error %q shows a signature", err)
	}
	if n := len(s.requests()); n != 2 {
		t.Errorf("%d requests for a loop /a -> /b -> /a, want 2", n)
	}
	_, err = c.Get(context.Background(), s.URL+"/n/0")
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("error %v, want a redirect cap", err)
	}
	if n := len(s.requests()); n != 2+10 {
		t.Errorf("%d requests for an endless chain, want 10 (no retries)", n-2)
	}
	if got := c.Counters(); got.Retries != 0 || got.Failures != 2 || got.Requests != 12 {
		t.Errorf("counters %+v, want no retries", got)
	}
}

// Truncated bodies, resumes and retries are counted.
func TestCountersOfRetriesResumesTruncations(t *testing.T) {
	data := payload(200_000)
	cut := newServer(t, cutFirst(data, 2, 50_000))
	c := New(fast())
	b, err := c.Get(context.Background(), cut.URL+"/f.bin")
	if err != nil {
		t.Fatal(err)
	}
	b.Free()
	if got := c.Counters(); got.Truncations != 2 || got.Resumes != 2 || got.Requests != 3 || got.Retries != 0 || got.Timeouts != 0 {
		t.Errorf("counters %+v, want 2 truncations, 2 resumes, 3 requests", got)
	}
	n := 0
	busy := newServer(t, func(s *server, w http.ResponseWriter, r *http.Request) {
		if n++; n <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		serve(data)(s, w, r)
	})
	b, err = c.Get(context.Background(), busy.URL+"/g.bin")
	if err != nil {
		t.Fatal(err)
	}
	b.Free()
	if got := c.Counters(); got.Retries != 2 || got.Requests != 6 || got.Failures != 0 {
		t.Errorf("counters %+v, want 2 retries, 6 requests", got)
	}
	if m := c.Counters().Map(); len(m) != 6 || m["truncations"] != 2 || m["retries"] != 2 {
		t.Errorf("Map %v", m)
	}
	checkLive(t)
}

// A body cut after a few bytes on every connection fails after MaxRetries resumes: a few bytes
// are not progress that resets the count.
func TestTinyProgressDoesNotResumeForever(t *testing.T) {
	data := payload(100_000)
	s := newServer(t, cutFirst(data, 1000, 10))
	set := fast()
	set.MaxRetries = 3
	c := New(set)
	err := within(t, 20*time.Second, func() error {
		b, err := c.Get(context.Background(), s.URL+"/f.bin")
		if err == nil {
			b.Free()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "could not resume after 3 attempts") {
		t.Fatalf("error %v", err)
	}
	if n := len(s.requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://b.s3.amazonaws.com/k.tar?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1": "https://b.s3.amazonaws.com/k.tar?X-Amz-Algorithm=AWS4&X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED",
		"http://u:pw@h/x?sig=1&exp=9":               "http://u:xxxxx@h/x?sig=REDACTED&exp=9",
		"http://h/api/images/?cursor=4&page_size=2": "http://h/api/images/?cursor=4&page_size=2",
		"http://h/plain.tar":                        "http://h/plain.tar",
		"/local/path.tar":                           "/local/path.tar",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	msg := `GET "http://h/a.tar?X-Amz-Signature=abc": dial tcp; then https://x/y?token=t2 and http://h/b.tar; /k?a=1&Signature=s3cr3t`
	want := `GET "http://h/a.tar?X-Amz-Signature=REDACTED": dial tcp; then https://x/y?token=REDACTED and http://h/b.tar; /k?a=1&Signature=REDACTED`
	if got := RedactText(msg); got != want {
		t.Errorf("RedactText = %q, want %q", got, want)
	}
}

// Errors never show the query string of a presigned URL, whatever the failure.
func TestErrorsRedactSignatures(t *testing.T) {
	s := newServer(t, func(_ *server, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied for "+r.URL.String(), http.StatusForbidden)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	set := fast()
	set.MaxRetries = 1
	c := New(set)
	for _, base := range []string{s.URL, refused} {
		u := base + "/k.tar?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA"
		_, err := c.Get(context.Background(), u)
		if err == nil {
			t.Fatalf("%s: no error", base)
		}
		if strings.Contains(err.Error(), "deadbeef") || strings.Contains(err.Error(), "AKIA") || !strings.Contains(err.Error(), base+"/k.tar?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED") {
			t.Errorf("error %q", err)
		}
	}
}

func TestMinThroughputConfig(t *testing.T) {
	for _, tc := range []struct {
		v    *float64
		want float64
	}{{nil, 1024}, {ptr(0.0), -1}, {ptr(5000.0), 5000}} {
		s, err := SettingsFrom(&config.Config{HTTPMinThroughput: tc.v})
		if err != nil || s.MinThroughput != tc.want {
			t.Errorf("%v: %v %v, want %v", tc.v, s.MinThroughput, err, tc.want)
		}
	}
	_, err := SettingsFrom(&config.Config{HTTPMinThroughput: ptr(-1.0)})
	if err == nil || !strings.HasPrefix(errs.Describe(err), "ValueError") || !strings.Contains(err.Error(), "http_min_throughput") {
		t.Errorf("negative http_min_throughput: %v", err)
	}
	if d := Defaults(); d.HeaderTimeout != 15*time.Second || d.ReadTimeout != 15*time.Second {
		t.Errorf("defaults %+v", d)
	}
}

func ptr[T any](v T) *T { return &v }
