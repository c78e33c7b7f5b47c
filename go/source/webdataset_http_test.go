package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/errs"
)

// shardServer serves dir over HTTP (127.0.0.1) with Range support, an access log and faults.
type shardServer struct {
	*httptest.Server
	mu     sync.Mutex
	log    []*http.Request
	fault  func(w http.ResponseWriter, r *http.Request, n int) bool // true: handled
	counts map[string]int
	closed chan struct{}
}

func newShardServer(t *testing.T, dir string) *shardServer {
	s := &shardServer{counts: map[string]int{}, closed: make(chan struct{})}
	files := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.log = append(s.log, r.Clone(context.Background()))
		s.counts[r.URL.Path]++
		n := s.counts[r.URL.Path]
		fault := s.fault
		s.mu.Unlock()
		if fault != nil && fault(w, r, n) {
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(s.closed)
		s.Close()
	})
	return s
}

func (s *shardServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func httpConfig(sc map[string]any) string {
	b, _ := json.Marshal(map[string]any{
		"source_type": "webdataset", "source_config": sc,
		"http_retry_backoff": 0.01, "http_read_timeout": 0.5, "http_max_retries": 2,
	})
	return string(b)
}

func TestWebDatasetHTTPMatchesLocal(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 4, 5)
	srv := newShardServer(t, dir)
	local, err := collect(t, context.Background(), newWDS(t, wdsConfig(map[string]any{"url": paths})))
	if err != nil {
		t.Fatal(err)
	}
	w := newWDS(t, httpConfig(map[string]any{"url": srv.URL + "/shard-{000000..000003}.tar", "auth_token": "secret"}))
	remote, err := collect(t, context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if len(local) != 20 || len(remote) != 20 {
		t.Fatalf("%d local, %d remote samples", len(local), len(remote))
	}
	byID := func(a, b got) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(local, byID)
	slices.SortFunc(remote, byID)
	for i := range local {
		l, r := local[i], remote[i]
		if r.Source != srv.URL+"/"+filepath.Base(l.Source) {
			t.Errorf("source %q", r.Source)
		}
		l.Source, r.Source = "", ""
		if !reflect.DeepEqual(l, r) {
			t.Errorf("sample %d differs:\n local %+v\nremote %+v", i, l, r)
		}
	}
	for _, r := range srv.requests() {
		if r.Header.Get("Authorization") != "Bearer secret" {
			t.Errorf("request without the bearer token: %v", r.Header)
		}
	}
	checkLive(t)
}

func TestWebDatasetHTTP404FailsTheRunWithTheURL(t *testing.T) {
	dir := t.TempDir()
	writeShards(t, dir, 2, 3)
	srv := newShardServer(t, dir)
	missing := srv.URL + "/shard-000002.tar"
	w := newWDS(t, httpConfig(map[string]any{"url": srv.URL + "/shard-{000000..000002}.tar", "concurrent_downloads": 1}))
	items, err := collect(t, context.Background(), w)
	if err == nil {
		t.Fatal("no error for a missing shard")
	}
	desc := errs.Describe(err)
	if !strings.HasPrefix(desc, "FileNotFoundError:") || !strings.Contains(desc, missing) || !strings.Contains(desc, "404") {
		t.Errorf("error %q", desc)
	}
	if len(items) != 6 {
		t.Errorf("%d samples before the error, want the 6 of the good shards", len(items))
	}
	checkLive(t)
}

// A shard answered 200 with something that is not a tar (an HTML error page, short or long)
// fails the run like a 404, naming the shard, instead of counting as a truncated shard.
func TestWebDatasetHTTPNotATarFailsTheRun(t *testing.T) {
	page := "<!DOCTYPE html><html><head><title>503</title></head><body>Service unavailable</body></html>\n"
	for name, body := range map[string]string{"short page": page, "long page": strings.Repeat(page, 20)} {
		dir := t.TempDir()
		writeShards(t, dir, 3, 3)
		srv := newShardServer(t, dir)
		bad := "/shard-000001.tar"
		srv.fault = func(w http.ResponseWriter, r *http.Request, _ int) bool {
			if r.URL.Path != bad {
				return false
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(body))
			return true
		}
		w := newWDS(t, httpConfig(map[string]any{"url": srv.URL + "/shard-{000000..000002}.tar", "concurrent_downloads": 1}))
		items, err := collect(t, context.Background(), w)
		if err == nil {
			t.Fatalf("%s: no error for an HTML page answered as a shard", name)
		}
		desc := errs.Describe(err)
		if !strings.HasPrefix(desc, "OSError:") || !strings.Contains(desc, srv.URL+bad) ||
			!strings.Contains(desc, "not a tar archive") || !strings.Contains(desc, "text/html") || !strings.Contains(desc, "<!DOCTYPE html>") {
			t.Errorf("%s: error %q", name, desc)
		}
		if len(items) != 3 {
			t.Errorf("%s: %d samples before the error, want the 3 of the first shard", name, len(items))
		}
		if n := w.Skipped()[string(errs.ReasonTruncated)]; n != 0 {
			t.Errorf("%s: %d truncated shards counted", name, n)
		}
	}
	checkLive(t)
}

// A local file that is not a tar fails the same way; an empty file is an empty archive.
func TestWebDatasetLocalNotATarFailsTheRun(t *testing.T) {
	dir := t.TempDir()
	good := writeShards(t, dir, 1, 2)[0]
	notTar := filepath.Join(dir, "not-a-tar.tar")
	if err := os.WriteFile(notTar, []byte("hello, this is not a tar file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWDS(t, wdsConfig(map[string]any{"url": []string{good, notTar}, "concurrent_downloads": 1}))
	items, err := collect(t, context.Background(), w)
	if err == nil {
		t.Fatal("no error for a local file that is not a tar")
	}
	if desc := errs.Describe(err); !strings.HasPrefix(desc, "OSError:") || !strings.Contains(desc, notTar) || !strings.Contains(desc, "not a tar archive") {
		t.Errorf("error %v", err)
	}
	if len(items) != 2 {
		t.Errorf("%d samples, want the 2 of the good shard", len(items))
	}
	checkLive(t)
}

func TestWebDatasetHTTPResumesACutShard(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 2, 6)
	data, _ := os.ReadFile(paths[0])
	cut := len(data) / 2
	// The validator must be the file's own mtime: the resumed request carries it in If-Range and
	// the file server answers 200 (whole file) if it differs.
	st, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	srv := newShardServer(t, dir)
	srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Path != "/shard-000000.tar" || n > 1 {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Header().Set("Last-Modified", st.ModTime().UTC().Format(http.TimeFormat))
		_, _ = w.Write(data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	w := newWDS(t, httpConfig(map[string]any{"url": []string{srv.URL + "/shard-000000.tar", srv.URL + "/shard-000001.tar"}}))
	items, err := collect(t, context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	got := ids(items)
	sort.Strings(got)
	if len(got) != 12 || len(slices.Compact(slices.Clone(got))) != 12 {
		t.Fatalf("ids %v: want 12 distinct samples", got)
	}
	var ranges []string
	for _, r := range srv.requests() {
		if r.URL.Path == "/shard-000000.tar" {
			ranges = append(ranges, r.Header.Get("Range"))
		}
	}
	if !reflect.DeepEqual(ranges, []string{"", fmt.Sprintf("bytes=%d-", cut)}) {
		t.Errorf("requests of the cut shard: %q", ranges)
	}
	checkLive(t)
}

func TestWebDatasetHTTPCutWithoutRangeFailsClearly(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 1, 6)
	data, _ := os.ReadFile(paths[0])
	srv := newShardServer(t, dir)
	srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if n > 1 { // no Range support: the whole file again
			_, _ = w.Write(data)
			return true
		}
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	url := srv.URL + "/shard-000000.tar"
	items, err := collect(t, context.Background(), newWDS(t, httpConfig(map[string]any{"url": url})))
	desc := errs.Describe(err)
	if err == nil || !strings.HasPrefix(desc, "OSError:") || !strings.Contains(desc, url) || !strings.Contains(desc, "cannot resume") {
		t.Fatalf("error %q", desc)
	}
	if n := len(items); n == 0 || n >= 6 || len(slices.Compact(ids(items))) != n {
		t.Errorf("%d samples before the failure (want some, none twice)", n)
	}
	checkLive(t)
}

func TestWebDatasetCancelStopsAStalledShard(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 3, 4)
	data, _ := os.ReadFile(paths[0])
	srv := newShardServer(t, dir)
	srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Path != "/shard-000000.tar" {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:len(data)/3])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-srv.closed:
		}
		return true
	}
	b, _ := json.Marshal(map[string]any{"source_type": "webdataset", "http_read_timeout": 60,
		"source_config": map[string]any{"url": srv.URL + "/shard-{000000..000002}.tar"}})
	w := newWDS(t, string(b))
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *Item) // unbuffered, never read: readers block on their queues
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancel took %v", d)
	}
	checkLive(t)
}

func TestWebDatasetHTTPStallTimesOut(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 1, 4)
	data, _ := os.ReadFile(paths[0])
	srv := newShardServer(t, dir)
	var stalls atomic.Int64
	srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
		stalls.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:1024])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-srv.closed:
		}
		return true
	}
	start := time.Now()
	_, err := collect(t, context.Background(), newWDS(t, httpConfig(map[string]any{"url": srv.URL + "/shard-000000.tar"})))
	if err == nil || !strings.Contains(err.Error(), "stalled") || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	checkLive(t)
}

func TestWebDatasetMergeOrder(t *testing.T) {
	dir := t.TempDir()
	writeShards(t, dir, 3, 5)
	srv := newShardServer(t, dir)
	srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Path == "/shard-000000.tar" {
			time.Sleep(400 * time.Millisecond) // a slow shard
		}
		return false
	}
	url := srv.URL + "/shard-{000000..000002}.tar"
	// without a seed, the fast shards' samples go first
	items, err := collect(t, context.Background(), newWDS(t, httpConfig(map[string]any{"url": url})))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range items[:10] {
		if strings.HasPrefix(g.ID, "s00/") {
			t.Fatalf("a sample of the slow shard came before the fast shards': %v", ids(items))
		}
	}
	// with a seed, the interleaving is fixed: round-robin from the first shard, whatever the timing
	items, err = collect(t, context.Background(), newWDS(t, httpConfig(map[string]any{"url": url, "seed": 1})))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"s00/k000", "s01/k000", "s02/k000", "s00/k001", "s01/k001", "s02/k001"}
	if got := ids(items)[:6]; !reflect.DeepEqual(got, want) {
		t.Errorf("seeded order starts %v, want %v", got, want)
	}
	checkLive(t)
}
