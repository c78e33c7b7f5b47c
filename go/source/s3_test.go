package source

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// The S3 tests run against a real S3 server on 127.0.0.1: $DATAGO_TEST_S3_ENDPOINT (with
// $DATAGO_TEST_S3_ACCESS_KEY / _SECRET_KEY, e.g. MinIO from scripts/test_minio.sh), else a
// moto_server started here (PyPI moto[server]; build.sh installs it). A missing server fails.

var (
	s3Once     sync.Once
	s3Endpoint string
	s3Err      error
	s3Proc     *exec.Cmd
)

const (
	testKey    = "testing-key"
	testSecret = "testing-secret"
)

func s3Keys() (string, string) {
	if k := os.Getenv("DATAGO_TEST_S3_ACCESS_KEY"); k != "" {
		return k, os.Getenv("DATAGO_TEST_S3_SECRET_KEY")
	}
	return testKey, testSecret
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// s3Server returns the endpoint of the test S3 server (started once per test binary).
func s3Server(t *testing.T) string {
	t.Helper()
	s3Once.Do(func() {
		if e := os.Getenv("DATAGO_TEST_S3_ENDPOINT"); e != "" {
			s3Endpoint = e
			return
		}
		bin, err := exec.LookPath("moto_server")
		if err != nil {
			s3Err = fmt.Errorf("moto_server not found (pip install 'moto[server]', or set DATAGO_TEST_S3_ENDPOINT): %v", err)
			return
		}
		port := freePort(t)
		s3Proc = exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
		s3Proc.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
		if err := s3Proc.Start(); err != nil {
			s3Err = err
			return
		}
		s3Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
		for i := 0; i < 600; i++ {
			if resp, err := http.Get(s3Endpoint + "/"); err == nil {
				resp.Body.Close()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		s3Err = fmt.Errorf("moto_server did not answer on %s", s3Endpoint)
	})
	if s3Err != nil {
		t.Fatal(s3Err)
	}
	return s3Endpoint
}

func TestMain(m *testing.M) {
	code := m.Run()
	if s3Proc != nil && s3Proc.Process != nil {
		s3Proc.Process.Kill()
		s3Proc.Wait()
	}
	os.Exit(code)
}

// adminClient writes test objects.
func adminClient(t *testing.T, endpoint string) *minio.Client {
	t.Helper()
	u, _ := url.Parse(endpoint)
	k, s := s3Keys()
	mc, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(k, s, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

var bucketSeq atomic.Int64

// newBucket makes a fresh bucket holding objects (key → bytes).
func newBucket(t *testing.T, endpoint string, objects map[string][]byte) string {
	t.Helper()
	mc := adminClient(t, endpoint)
	ctx := context.Background()
	name := fmt.Sprintf("datago-test-%d-%d", time.Now().UnixNano()%1_000_000_000, bucketSeq.Add(1))
	if err := mc.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	for k, b := range objects {
		if _, err := mc.PutObject(ctx, name, k, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// s3Cfg is a client config with the test server's "s3" object.
func s3Cfg(t *testing.T, endpoint, sourceType string, sc map[string]any, s3extra map[string]any) *config.Config {
	t.Helper()
	k, s := s3Keys()
	s3 := map[string]any{"endpoint_url": endpoint, "region": "us-east-1", "access_key_id": k, "secret_access_key": s}
	for key, v := range s3extra {
		s3[key] = v
	}
	raw, _ := json.Marshal(map[string]any{"source_type": sourceType, "source_config": sc, "s3": s3,
		"http_retry_backoff": 0.01})
	c, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestS3FolderMatchesLocalFolder(t *testing.T) {
	ep := s3Server(t)
	root := tree(t, 23) // nested folders, mixed-case extensions, two non-image files
	objects := map[string][]byte{"elsewhere/img.jpg": []byte("x"), "photos-other/img.jpg": []byte("x")}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			b, _ := os.ReadFile(p)
			objects["photos/"+filepath.ToSlash(rel)] = b
		}
		return nil
	})
	bucket := newBucket(t, ep, objects)
	for _, tc := range []map[string]any{
		{},
		{"rank": 1, "world_size": 3},
		{"random_sampling": true, "seed": 7},
		{"random_sampling": true, "seed": 7, "rank": 2, "world_size": 3},
	} {
		local := map[string]any{"root_path": root}
		remoteSC := map[string]any{"root_path": "s3://" + bucket + "/photos"}
		for k, v := range tc {
			local[k], remoteSC[k] = v, v
		}
		want, err := newFS(t, local).List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// 5 keys per page: the 25 objects below the prefix take 5 ListObjectsV2 pages
		src, err := New(s3Cfg(t, ep, "file", remoteSC, map[string]any{"list_page_size": 5}), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.(*Filesystem).List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v: s3 listing %v\nlocal listing %v", tc, got, want)
		}
	}
	// ranks are disjoint and complete
	var union []string
	for r := 0; r < 4; r++ {
		src, err := New(s3Cfg(t, ep, "file", map[string]any{"root_path": "s3://" + bucket + "/photos/", "rank": r, "world_size": 4}, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := src.(*Filesystem).List(context.Background())
		union = append(union, l...)
	}
	slices.Sort(union)
	if len(union) != 23 || len(slices.Compact(union)) != 23 {
		t.Errorf("ranks: %d keys (%d distinct), want 23", len(union), len(slices.Compact(slices.Clone(union))))
	}
}

func TestS3FolderItemsFetchThroughHTTP(t *testing.T) {
	ep := s3Server(t)
	bucket := newBucket(t, ep, map[string][]byte{"a/x.jpg": []byte("JPEG-X"), "a/y/z.png": []byte("PNG-Z")})
	c := s3Cfg(t, ep, "file", map[string]any{"root_path": "s3://" + bucket + "/a"}, nil)
	http := remote.NewFor(c)
	src, err := New(c, http)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *Item, 8)
	if err := src.Run(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []string
	for it := range out {
		b, err := http.Get(context.Background(), it.Image.URL)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it.ID+"="+string(b.Bytes())+"@"+it.Source)
		b.Free()
	}
	want := []string{"x.jpg=JPEG-X@s3://" + bucket + "/a/", "y/z.png=PNG-Z@s3://" + bucket + "/a/"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestS3WebDatasetMatchesLocal(t *testing.T) {
	ep := s3Server(t)
	dir := t.TempDir()
	paths := writeShards(t, dir, 3, 4)
	objects := map[string][]byte{"shards/README.txt": []byte("not a shard")}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		objects["shards/"+filepath.Base(p)] = b
	}
	bucket := newBucket(t, ep, objects)
	local := newWDS(t, wdsConfig(map[string]any{"url": paths, "seed": 1}))
	want, err := collect(t, context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []any{
		"s3://" + bucket + "/shards/shard-{000000..000002}.tar", // brace pattern
		"s3://" + bucket + "/shards/",                           // prefix
		"s3://" + bucket + "/shards",                            // prefix without the slash
		[]string{"s3://" + bucket + "/shards/shard-000000.tar", "s3://" + bucket + "/shards/shard-000001.tar", "s3://" + bucket + "/shards/shard-000002.tar"},
	} {
		c := s3Cfg(t, ep, "webdataset", map[string]any{"url": url, "seed": 1}, nil)
		src, err := New(c, remote.NewFor(c))
		if err != nil {
			t.Fatalf("%v: %v", url, err)
		}
		if n := len(src.(*WebDataset).Shards()); n != 3 {
			t.Fatalf("%v: %d shards, want 3", url, n)
		}
		got, err := collect(t, context.Background(), src)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(got) != 12 {
			t.Fatalf("%v: %d samples, want %d", url, len(got), len(want))
		}
		for i := range got {
			w := want[i]
			w.Source = strings.Replace(w.Source, dir, "s3://"+bucket+"/shards", 1)
			if fmt.Sprint(got[i]) != fmt.Sprint(w) {
				t.Errorf("%v: sample %d differs:\n%+v\n%+v", url, i, got[i], w)
			}
		}
	}
	checkLive(t)
}

// slowDownProxy sits between datago and the S3 server and answers the first n GETs of each object
// key with 503 SlowDown (S3's throttling answer), and cuts the first successful body of a .tar in
// the middle (a broken connection, resumed with a Range GET).
type slowDownProxy struct {
	n        int
	mu       sync.Mutex
	seen     map[string]int
	cut      map[string]bool
	requests atomic.Int64
}

func TestS3RetriesSlowDownAndResumesACutShard(t *testing.T) {
	ep := s3Server(t)
	dir := t.TempDir()
	paths := writeShards(t, dir, 2, 6)
	objects := map[string][]byte{}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		objects["shards/"+filepath.Base(p)] = b
	}
	bucket := newBucket(t, ep, objects)
	target, _ := url.Parse(ep)
	rp := httputil.NewSingleHostReverseProxy(target)
	px := &slowDownProxy{n: 2, seen: map[string]int{}, cut: map[string]bool{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		px.requests.Add(1)
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".tar") {
			px.mu.Lock()
			px.seen[r.URL.Path]++
			k, cutNow := px.seen[r.URL.Path], false
			if k > px.n && !px.cut[r.URL.Path] && r.Header.Get("Range") == "" {
				px.cut[r.URL.Path], cutNow = true, true
			}
			px.mu.Unlock()
			if k <= px.n {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
				return
			}
			if cutNow {
				// send half of the object, then break the connection
				rec := &cutWriter{ResponseWriter: w, left: int64(len(objects["shards/shard-000000.tar"]) / 2)}
				rp.ServeHTTP(rec, r)
				panic(http.ErrAbortHandler)
			}
		}
		rp.ServeHTTP(w, r)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	proxyURL := "http://" + l.Addr().String()

	local := newWDS(t, wdsConfig(map[string]any{"url": paths, "seed": 3}))
	want, err := collect(t, context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	c := s3Cfg(t, proxyURL, "webdataset", map[string]any{"url": "s3://" + bucket + "/shards/", "seed": 3}, nil)
	h := remote.NewFor(c)
	src, err := New(c, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Image != want[i].Image {
			t.Errorf("sample %d: %s, want %s", i, got[i].ID, want[i].ID)
		}
	}
	cnt := h.Counters()
	if cnt.Retries != 4 || cnt.Resumes != 2 {
		t.Errorf("counters %+v: want 4 retries (2 SlowDown per shard) and 2 resumes", cnt)
	}
	checkLive(t)
}

// cutWriter passes on at most left bytes of the body.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, http.ErrAbortHandler
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if err == nil && c.left <= 0 {
		return n, http.ErrAbortHandler
	}
	return n, err
}

func TestS3Errors(t *testing.T) {
	ep := s3Server(t)
	bucket := newBucket(t, ep, map[string][]byte{"a/x.jpg": []byte("x"), "shards/s.tar": []byte("x")})
	for _, tc := range []struct {
		sourceType string
		sc         map[string]any
		kind       errs.Kind
		want       []string
	}{
		{"file", map[string]any{"root_path": "s3://no-such-bucket-datago/photos"}, errs.NotFound, []string{"s3://no-such-bucket-datago/", "NoSuchBucket"}},
		{"webdataset", map[string]any{"url": "s3://no-such-bucket-datago/shards/"}, errs.NotFound, []string{"s3://no-such-bucket-datago/shards/", "NoSuchBucket"}},
		{"webdataset", map[string]any{"url": "s3://" + bucket + "/none/"}, errs.NotFound, []string{"no .tar shard below s3://" + bucket + "/none/"}},
		{"file", map[string]any{"root_path": "gs://bucket/photos"}, errs.Value, []string{"gs://bucket/photos", "s3://", "storage.googleapis.com"}},
		{"file", map[string]any{"root_path": "hdfs://nn/photos"}, errs.Value, []string{"hdfs://nn/photos", "s3://", "https://"}},
		{"webdataset", map[string]any{"url": "hdfs://nn/shards/a.tar"}, errs.Value, []string{"source_config.url", "hdfs://nn/shards/a.tar", "s3://"}},
		{"file", map[string]any{"root_path": "s3:///photos"}, errs.Value, []string{"no bucket"}},
	} {
		_, err := New(s3Cfg(t, ep, tc.sourceType, tc.sc, nil), nil)
		if err == nil {
			t.Errorf("%v: no error", tc.sc)
			continue
		}
		if errs.KindOf(err) != tc.kind {
			t.Errorf("%v: kind %v, want %v (%v)", tc.sc, errs.KindOf(err), tc.kind, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q does not contain %q", tc.sc, err, w)
			}
		}
	}
	// an empty prefix fails the run (not found), naming it
	src, err := New(s3Cfg(t, ep, "file", map[string]any{"root_path": "s3://" + bucket + "/nothing"}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = collect(t, context.Background(), src)
	if errs.KindOf(err) != errs.NotFound || !strings.Contains(err.Error(), "s3://"+bucket+"/nothing/") {
		t.Errorf("empty prefix: %v", err)
	}
	// a missing shard object: the run fails naming the s3:// URL and NoSuchKey
	c := s3Cfg(t, ep, "webdataset", map[string]any{"url": "s3://" + bucket + "/shards/missing.tar"}, nil)
	src, err = New(c, remote.NewFor(c))
	if err != nil {
		t.Fatal(err)
	}
	_, err = collect(t, context.Background(), src)
	if errs.KindOf(err) != errs.NotFound || !strings.Contains(err.Error(), "s3://"+bucket+"/shards/missing.tar") {
		t.Errorf("missing shard: %v", err)
	}
	// bad s3 keys
	for _, tc := range []struct {
		extra map[string]any
		want  string
	}{
		{map[string]any{"addressing_style": "sideways"}, "s3.addressing_style"},
		{map[string]any{"endpoint_url": "ftp://x"}, "s3.endpoint_url"},
		{map[string]any{"colour": 1}, "s3.colour"},
		{map[string]any{"access_key_id": "", "secret_access_key": "only"}, "s3.access_key_id"},
	} {
		_, err := New(s3Cfg(t, ep, "file", map[string]any{"root_path": "s3://" + bucket + "/a"}, tc.extra), nil)
		if errs.KindOf(err) != errs.Value || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v", tc.extra, err)
		}
	}
}
