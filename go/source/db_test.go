package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

const dbTestKey = "s3cret-key"

// fakeRoom is a dataroom image API on 127.0.0.1: GET /api/images/ and /api/images/random/ with
// page_size, a cursor in the next link, partitions_count/partition (row index modulo), a seeded
// random order, the token check, and files under /files/ (a real photo, a mask, a latent).
type fakeRoom struct {
	t    *testing.T
	srv  *httptest.Server
	rows []map[string]any
	// hook may answer a request itself (true); it sees the page's cursor (0 for the first).
	hook  func(w http.ResponseWriter, r *http.Request, cursor int) bool
	photo []byte

	mu   sync.Mutex
	reqs []*http.Request // page requests, in arrival order
}

func newFakeRoom(t *testing.T, rows []map[string]any) *fakeRoom {
	t.Helper()
	f := &fakeRoom{t: t, rows: rows}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// apiURL is the API root as DATAROOM_API_URL gives it (trailing slash).
func (f *fakeRoom) apiURL() string { return f.srv.URL + "/api/" }

func (f *fakeRoom) pageRequests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeRoom) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/files/photo"):
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(f.photo)
		return
	case strings.HasPrefix(r.URL.Path, "/files/"):
		w.Write([]byte("bytes of " + r.URL.Path))
		return
	case r.URL.Path != "/api/images/" && r.URL.Path != "/api/images/random/":
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	q := r.URL.Query()
	cursor, _ := strconv.Atoi(q.Get("cursor"))
	if f.hook != nil && f.hook(w, r, cursor) {
		return
	}
	if r.Header.Get("Authorization") != "Token "+dbTestKey {
		http.Error(w, `{"detail": "Invalid token."}`, http.StatusUnauthorized)
		return
	}
	size, err := strconv.Atoi(q.Get("page_size"))
	if err != nil || size < 1 {
		http.Error(w, "bad page_size", http.StatusBadRequest)
		return
	}
	var mine []map[string]any
	count, _ := strconv.Atoi(q.Get("partitions_count"))
	part, _ := strconv.Atoi(q.Get("partition"))
	for i, row := range f.rows {
		if count > 1 && i%count != part {
			continue
		}
		mine = append(mine, row)
	}
	if r.URL.Path == "/api/images/random/" {
		seed, _ := strconv.ParseUint(q.Get("seed"), 10, 64)
		rng := rand.New(rand.NewPCG(seed, 7))
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
	}
	end := min(cursor+size, len(mine))
	page := map[string]any{"next": nil, "results": mine[min(cursor, end):end]}
	if end < len(mine) {
		q.Set("cursor", strconv.Itoa(end))
		page["next"] = f.srv.URL + r.URL.Path + "?" + q.Encode()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(page)
}

// plainRows are n rows with an id, a source, typed attributes and an image URL.
func plainRows(f func() string, n int) []map[string]any {
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{
			"id": fmt.Sprintf("row-%04d", i), "source": "src", "attributes": map[string]any{"i": i},
			"image_direct_url": fmt.Sprintf("%s/files/img/%d.jpg", f(), i),
		}
	}
	return rows
}

func newDBSource(t *testing.T, sc map[string]any, top map[string]any) (*DB, *config.Config, error) {
	t.Helper()
	cfg := map[string]any{"source_type": "db", "source_config": sc, "http_retry_backoff": 0.01, "http_max_retries": 2}
	for k, v := range top {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	c, err := config.Parse(b)
	if err != nil {
		return nil, nil, err
	}
	src, err := New(c, remote.NewFor(c))
	if err != nil {
		return nil, c, err
	}
	return src.(*DB), c, nil
}

func mustDB(t *testing.T, sc map[string]any, top map[string]any) (*DB, *config.Config) {
	t.Helper()
	d, c, err := newDBSource(t, sc, top)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func (f *fakeRoom) config(extra map[string]any) map[string]any {
	sc := map[string]any{"api_url": f.apiURL(), "api_key": dbTestKey}
	for k, v := range extra {
		sc[k] = v
	}
	return sc
}

// dbRun runs src to its end (or error) and returns its items in order.
func dbRun(t *testing.T, ctx context.Context, src Source) ([]*Item, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := make(chan *Item, 8)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, out)
		close(out)
	}()
	var items []*Item
	for it := range out {
		items = append(items, it)
	}
	return items, <-done
}

func itemIDs(items []*Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func rowIDs(rows []map[string]any) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r["id"].(string)
	}
	return out
}

// noDBGoroutine fails when a goroutine of the db source is still running.
func noDBGoroutine(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "source.(*DB)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a db source goroutine is still running:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDBItemsFromRows(t *testing.T) {
	photo, err := os.ReadFile("../../tests/data/photos/Aqua.jpg")
	if err != nil {
		t.Fatal("a test photo is missing (it is committed in tests/data/photos):", err)
	}
	var f *fakeRoom
	base := func() string { return f.srv.URL }
	f = newFakeRoom(t, nil)
	f.photo = photo
	f.rows = []map[string]any{
		{
			"id": "full", "source": "studio", "width": 1280, "height": 960,
			"attributes":       json.RawMessage(`{"caption": "a \"blue\" <lake>", "score": 0.5, "n": 3, "big": 12345678901234567, "ok": true, "nested": {"l": [1, "x", null]}, "none": null}`),
			"image_direct_url": base() + "/files/photo.jpg",
			"tags":             []string{"nature", "water"},
			"coca_embedding":   map[string]any{"vector": []float32{0.25, -1.5, 3}},
			"duplicate_state":  2,
			"latents": []map[string]any{
				{"latent_type": "segmentation", "file_direct_url": base() + "/files/seg.png", "is_mask": true},
				{"latent_type": "masked_image", "file_direct_url": base() + "/files/masked.jpg", "is_mask": false},
				{"latent_type": "latent_image_vae", "file_direct_url": "/files/vae.npy", "is_mask": false}, // relative URL
				{"latent_type": "caption_t5", "file_direct_url": base() + "/files/t5.bin"},
			},
		},
		// every optional field null
		{"id": 17, "source": nil, "attributes": nil, "image_direct_url": base() + "/files/x.jpg", "tags": nil,
			"coca_embedding": nil, "duplicate_state": nil, "latents": nil, "width": nil, "height": nil},
		// skipped: no image with require_images (the default), no id, a latent without URL
		{"id": "no-image", "image_direct_url": nil},
		{"id": nil, "image_direct_url": base() + "/files/y.jpg"},
		{"id": "bad-latent", "image_direct_url": base() + "/files/z.jpg", "latents": []map[string]any{{"latent_type": "x", "file_direct_url": nil}}},
		{"id": "bad-shape", "image_direct_url": base() + "/files/z.jpg", "tags": map[string]any{"not": "a list"}},
		{"id": "last", "image_direct_url": base() + "/files/last.jpg", "attributes": map[string]any{}, "tags": " a, b,,c "},
	}
	d, _ := mustDB(t, f.config(map[string]any{"require_embeddings": true, "has_masks": "segmentation", "has_latents": "caption_t5"}), nil)
	items, err := dbRun(t, context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemIDs(items), []string{"full", "17", "last"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	full := items[0]
	if full.Source != "studio" || full.DuplicateState != 2 || !reflect.DeepEqual(full.Tags, []string{"nature", "water"}) ||
		!reflect.DeepEqual(full.Embedding, []float32{0.25, -1.5, 3}) {
		t.Errorf("full: %+v", full)
	}
	// attributes verbatim: types and big integers survive
	if want := `{"caption":"a \"blue\" <lake>","score":0.5,"n":3,"big":12345678901234567,"ok":true,"nested":{"l":[1,"x",null]},"none":null}`; full.AttributesJSON != want {
		t.Errorf("attributes %s, want %s", full.AttributesJSON, want)
	}
	if full.Image == nil || full.Image.URL != base()+"/files/photo.jpg" {
		t.Errorf("image %+v", full.Image)
	}
	names := func(ps []*Payload) map[string]string {
		m := map[string]string{}
		for _, p := range ps {
			m[p.Name] = p.URL
		}
		return m
	}
	if got, want := names(full.Masks), map[string]string{"segmentation": base() + "/files/seg.png"}; !reflect.DeepEqual(got, want) {
		t.Errorf("masks %v, want %v", got, want)
	}
	if got, want := names(full.AdditionalImages), map[string]string{"masked_image": base() + "/files/masked.jpg"}; !reflect.DeepEqual(got, want) {
		t.Errorf("additional images %v, want %v", got, want)
	}
	if got, want := names(full.Latents), map[string]string{"latent_image_vae": base() + "/files/vae.npy", "caption_t5": base() + "/files/t5.bin"}; !reflect.DeepEqual(got, want) {
		t.Errorf("latents %v, want %v", got, want)
	}
	nulls := items[1]
	if nulls.Source != "" || nulls.AttributesJSON != "" || nulls.Tags != nil || nulls.Embedding != nil || nulls.DuplicateState != 0 ||
		len(nulls.Masks)+len(nulls.AdditionalImages)+len(nulls.Latents) != 0 || nulls.Image == nil {
		t.Errorf("null row: %+v", nulls)
	}
	if items[2].AttributesJSON != "{}" || !reflect.DeepEqual(items[2].Tags, []string{"a", "b", "c"}) {
		t.Errorf("last row: attributes %q, tags %q", items[2].AttributesJSON, items[2].Tags)
	}
	if got, want := d.Skipped(), map[string]int64{string(errs.ReasonNoImage): 1, string(errs.ReasonBadRecord): 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("skipped %v, want %v", got, want)
	}
	// the request: fields and the latents asked for
	q := f.pageRequests()[0].URL.Query()
	if got := q.Get("fields"); got != "id,source,attributes,width,height,tags,duplicate_state,image_direct_url,latents,coca_embedding" {
		t.Errorf("fields %q", got)
	}
	if got := q.Get("return_latents"); got != "caption_t5,segmentation" {
		t.Errorf("return_latents %q", got)
	}
	// the image URL serves the real photo through the shared HTTP client (as the fetch stage does)
	b, err := d.http.Get(context.Background(), full.Image.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	if !bytes.Equal(b.Bytes(), photo) {
		t.Errorf("image bytes differ from the photo")
	}
}

func TestDBWithoutImages(t *testing.T) {
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 3)
	f.rows[1]["image_direct_url"] = nil
	d, _ := mustDB(t, f.config(map[string]any{"require_images": false}), nil)
	items, err := dbRun(t, context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || len(d.Skipped()) != 0 {
		t.Fatalf("%d items, skipped %v", len(items), d.Skipped())
	}
	for _, it := range items {
		if it.Image != nil {
			t.Errorf("%s: image %+v without require_images", it.ID, it.Image)
		}
	}
	if fields := f.pageRequests()[0].URL.Query().Get("fields"); strings.Contains(fields, "image_direct_url") {
		t.Errorf("fields %q ask for images", fields)
	}
}

func TestDBPagination(t *testing.T) {
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 250)
	d, _ := mustDB(t, f.config(map[string]any{"page_size": 64}), nil)
	for epoch := 0; epoch < 2; epoch++ { // a second run starts over
		items, err := dbRun(t, context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := itemIDs(items), rowIDs(f.rows); !reflect.DeepEqual(got, want) {
			t.Fatalf("epoch %d: %d ids, want %d in order", epoch, len(got), len(want))
		}
		if items[249].AttributesJSON != `{"i":249}` {
			t.Errorf("attributes %s", items[249].AttributesJSON)
		}
	}
	reqs := f.pageRequests()
	if len(reqs) != 8 {
		t.Errorf("%d page requests, want 2 x 4", len(reqs))
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "Token "+dbTestKey || r.URL.Query().Get("page_size") != "64" {
			t.Errorf("request %s: Authorization %q", r.URL, r.Header.Get("Authorization"))
		}
	}
}

func TestDBRankSplitDisjointAndComplete(t *testing.T) {
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 37)
	all := rowIDs(f.rows)
	for ws := 1; ws <= 8; ws++ {
		seen := map[string]int{}
		for rank := 0; rank < ws; rank++ {
			// the source's keys, or the top-level ones
			sc, top := f.config(map[string]any{"page_size": 4, "rank": rank, "world_size": ws}), map[string]any(nil)
			if rank%2 == 1 {
				sc, top = f.config(map[string]any{"page_size": 4}), map[string]any{"rank": rank, "world_size": ws}
			}
			d, _ := mustDB(t, sc, top)
			items, err := dbRun(t, context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range itemIDs(items) {
				seen[id]++
			}
		}
		if len(seen) != len(all) {
			t.Errorf("world_size %d: %d distinct ids, want %d", ws, len(seen), len(all))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("world_size %d: %s delivered %d times", ws, id, n)
			}
		}
	}
	for _, r := range f.pageRequests() {
		q := r.URL.Query()
		if ws, _ := strconv.Atoi(q.Get("partitions_count")); ws == 1 || (ws == 0) != (q.Get("partition") == "") {
			t.Errorf("partition parameters %s", r.URL.RawQuery)
		}
	}
	if _, _, err := newDBSource(t, f.config(map[string]any{"rank": 3, "world_size": 3}), nil); err == nil ||
		!strings.Contains(err.Error(), "source_config.rank") {
		t.Errorf("rank 3 of 3: %v", err)
	}
}

func TestDBRandomSampling(t *testing.T) {
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 40)
	order := func(seed int64, runs int) [][]string {
		d, _ := mustDB(t, f.config(map[string]any{"random_sampling": true, "seed": seed, "page_size": 16}), nil)
		var out [][]string
		for i := 0; i < runs; i++ {
			items, err := dbRun(t, context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, itemIDs(items))
		}
		return out
	}
	a, b := order(5, 2), order(5, 1)
	if !reflect.DeepEqual(a[0], b[0]) {
		t.Errorf("same seed, different orders")
	}
	if reflect.DeepEqual(a[0], a[1]) {
		t.Errorf("the second epoch repeats the first's order")
	}
	sorted := slices.Clone(a[0])
	slices.Sort(sorted)
	if !reflect.DeepEqual(sorted, rowIDs(f.rows)) || reflect.DeepEqual(a[0], rowIDs(f.rows)) {
		t.Errorf("random order is not a shuffle of every row: %v", a[0])
	}
	reqs := f.pageRequests()
	if r := reqs[0]; r.URL.Path != "/api/images/random/" || r.URL.Query().Get("seed") != "5" {
		t.Errorf("first request %s", r.URL)
	}
	if r := reqs[3]; r.URL.Query().Get("seed") != "6" || r.URL.Query().Get("cursor") != "" {
		t.Errorf("second epoch's first request %s", r.URL)
	}
}

func TestDBPageErrors(t *testing.T) {
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 10)
	wantOSError := func(t *testing.T, err error, parts ...string) {
		t.Helper()
		t.Log(err)
		if errs.KindOf(err) != errs.OS {
			t.Fatalf("error %v (%T), want an OSError", err, err)
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %q", err, p)
			}
		}
	}
	t.Run("401", func(t *testing.T) {
		d, _ := mustDB(t, f.config(map[string]any{"api_key": "wrong"}), nil)
		items, err := dbRun(t, context.Background(), d)
		if len(items) != 0 {
			t.Errorf("%d items", len(items))
		}
		wantOSError(t, err, f.srv.URL+"/api/images/?", "401", EnvDataroomKey)
	})
	for _, code := range []int{http.StatusForbidden, http.StatusNotFound} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
				if cursor == 4 {
					w.WriteHeader(code)
					return true
				}
				return false
			}
			defer func() { f.hook = nil }()
			d, _ := mustDB(t, f.config(map[string]any{"page_size": 4}), nil)
			items, err := dbRun(t, context.Background(), d)
			if len(items) != 4 {
				t.Errorf("%d items before the failing page, want 4", len(items))
			}
			wantOSError(t, err, "cursor=4", strconv.Itoa(code))
		})
	}
	t.Run("unknown datasource", func(t *testing.T) {
		// datago's engine server answers a name it does not have with a 404 naming it: a config
		// error (a typo must not train on an empty epoch), naming the key and the name
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error": "no datasource named 'photoz' (known: photos, other)", "status": 404}`))
			return true
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(map[string]any{"sources": []string{"photos", "photoz"}}), nil)
		items, err := dbRun(t, context.Background(), d)
		if len(items) != 0 {
			t.Errorf("%d items", len(items))
		}
		if errs.KindOf(err) != errs.Value {
			t.Fatalf("error %v (%T), want a ValueError", err, err)
		}
		for _, p := range []string{"source_config.sources", `"photoz"`, "known: photos, other"} {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %q", err, p)
			}
		}
		if strings.Contains(err.Error(), `"photos"`) {
			t.Errorf("error %q names the datasource that exists", err)
		}
	})
	t.Run("bad JSON", func(t *testing.T) {
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			if cursor == 4 {
				w.Write([]byte(`{"next": null, "results": [{"id": "x"`))
				return true
			}
			return false
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(map[string]any{"page_size": 4}), nil)
		items, err := dbRun(t, context.Background(), d)
		if len(items) != 4 {
			t.Errorf("%d items, want 4", len(items))
		}
		wantOSError(t, err, "cursor=4", "JSON")
	})
	t.Run("not a page", func(t *testing.T) {
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			w.Write([]byte(`{"detail": "hello"}`))
			return true
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(nil), nil)
		_, err := dbRun(t, context.Background(), d)
		wantOSError(t, err, `no "results"`)
	})
	t.Run("next loops", func(t *testing.T) {
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			json.NewEncoder(w).Encode(map[string]any{"next": f.srv.URL + r.URL.RequestURI(), "results": []any{}})
			return true
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(nil), nil)
		_, err := dbRun(t, context.Background(), d)
		wantOSError(t, err, "loops")
	})
	// twice answers the page at cursor 4 with fail, twice; the other requests as usual
	twice := func(fail func(w http.ResponseWriter)) func(http.ResponseWriter, *http.Request, int) bool {
		var mu sync.Mutex
		n := 0
		return func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			mu.Lock()
			defer mu.Unlock()
			if cursor == 4 && n < 2 {
				n++
				fail(w)
				return true
			}
			return false
		}
	}
	// cutBody promises more than it sends, then drops the connection (no Range support either)
	cutBody := func(w http.ResponseWriter) {
		w.Header().Set("Content-Length", "100000")
		w.Write([]byte(`{"next": null, "results": [`))
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}
	// allRows runs a source with pages of 4 and wants every row, in order
	allRows := func(t *testing.T) *remote.Client {
		t.Helper()
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(map[string]any{"page_size": 4}), nil)
		items, err := dbRun(t, context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(itemIDs(items), rowIDs(f.rows)) {
			t.Errorf("ids %v", itemIDs(items))
		}
		return d.http
	}
	t.Run("500 then ok", func(t *testing.T) {
		f.hook = twice(func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
		if n := allRows(t).Counters().Retries; n != 2 {
			t.Errorf("%d retries, want 2", n)
		}
	})
	t.Run("500 for good", func(t *testing.T) {
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(nil), nil)
		_, err := dbRun(t, context.Background(), d)
		wantOSError(t, err, "502", f.srv.URL)
	})
	t.Run("body cut, page asked again", func(t *testing.T) {
		f.hook = twice(cutBody)
		allRows(t)
	})
	t.Run("body always cut", func(t *testing.T) {
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			cutBody(w)
			return true
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(nil), nil)
		_, err := dbRun(t, context.Background(), d)
		wantOSError(t, err, f.srv.URL+"/api/images/?")
	})
	t.Run("connection refused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL
		dead.Close()
		d, _ := mustDB(t, map[string]any{"api_url": deadURL + "/api/"}, nil)
		_, err := dbRun(t, context.Background(), d)
		wantOSError(t, err, deadURL+"/api/images/?")
	})
	t.Run("relative next link", func(t *testing.T) {
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			if cursor == 0 {
				json.NewEncoder(w).Encode(map[string]any{"next": "?page_size=4&cursor=4", "results": f.rows[:4]})
				return true
			}
			return false
		}
		defer func() { f.hook = nil }()
		d, _ := mustDB(t, f.config(map[string]any{"page_size": 4}), nil)
		items, err := dbRun(t, context.Background(), d)
		if err != nil || !reflect.DeepEqual(itemIDs(items), rowIDs(f.rows)) {
			t.Errorf("ids %v, error %v", itemIDs(items), err)
		}
	})
	noDBGoroutine(t)
}

func TestDBTokenStaysOnTheAPIHost(t *testing.T) {
	other := newFakeRoom(t, nil) // another host:port; sees no token, answers 401
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 2)
	f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
		json.NewEncoder(w).Encode(map[string]any{"next": other.apiURL() + "images/?page_size=1", "results": f.rows})
		return true
	}
	d, _ := mustDB(t, f.config(nil), nil)
	items, err := dbRun(t, context.Background(), d)
	if len(items) != 2 || err == nil || !strings.Contains(err.Error(), other.srv.URL) {
		t.Fatalf("%d items, error %v", len(items), err)
	}
	if auth := other.pageRequests()[0].Header.Get("Authorization"); auth != "" {
		t.Errorf("the token went to another host: %q", auth)
	}
}

func TestDBCancel(t *testing.T) {
	t.Run("during a page request", func(t *testing.T) {
		f := newFakeRoom(t, nil)
		release := make(chan struct{})
		defer close(release)
		f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return true
		}
		d, _ := mustDB(t, f.config(nil), nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := dbRun(t, ctx, d)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("Run took %v after cancel", el)
		}
		noDBGoroutine(t)
	})
	t.Run("while the consumer does not read", func(t *testing.T) {
		var f *fakeRoom
		f = newFakeRoom(t, nil)
		f.rows = plainRows(func() string { return f.srv.URL }, 200)
		d, _ := mustDB(t, f.config(map[string]any{"page_size": 10}), nil)
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan *Item) // unbuffered, read once
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, out) }()
		<-out
		time.Sleep(300 * time.Millisecond)
		// bounded read-ahead: the page being emitted, dbPagesAhead queued, one held by the reader
		if n := len(f.pageRequests()); n > dbPagesAhead+2 {
			t.Errorf("%d pages requested ahead of a stalled consumer", n)
		}
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("Run took %v after cancel", el)
		}
		noDBGoroutine(t)
	})
}
