package source

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/datago-dev/datago/go/errs"
)

func TestDBQueryParameters(t *testing.T) {
	f := newFakeRoom(t, nil)
	d, _ := mustDB(t, f.config(map[string]any{
		"sources": "a,b", "sources_ne": []string{"c", "d"}, "page_size": 10,
		"tags": "t1", "tags_ne": "t2", "tags_all": "t3,t4", "tags_ne_all": "t5", "tags_empty": true,
		"has_attributes": "caption", "lacks_attributes": "nsfw", "has_masks": "seg", "lacks_masks": "alpha",
		"has_latents": "vae", "lacks_latents": "t5", "min_short_edge": 256, "max_short_edge": 4096,
		"min_pixel_count": -1, "max_pixel_count": 1000000, "duplicate_state": 0,
		"attributes": "aesthetic__gte:5.5", "query": map[string]any{"field": "x", "op": "eq", "value": 1}, "as_of": 42,
	}), map[string]any{"rank": 1, "world_size": 3})
	if _, err := dbRun(t, context.Background(), d); err != nil {
		t.Fatal(err)
	}
	r := f.pageRequests()[0]
	if r.URL.Path != "/api/images/" {
		t.Errorf("path %s", r.URL.Path)
	}
	want := url.Values{
		"fields":           {"id,source,attributes,width,height,tags,duplicate_state,image_direct_url,latents"},
		"page_size":        {"10"},
		"sources":          {"a,b"},
		"sources__ne":      {"c,d"},
		"tags":             {"t1"},
		"tags__ne":         {"t2"},
		"tags__all":        {"t3,t4"},
		"tags__ne_all":     {"t5"},
		"tags__empty":      {"true"},
		"has_attributes":   {"caption"},
		"lacks_attributes": {"nsfw"},
		"has_masks":        {"seg"},
		"lacks_masks":      {"alpha"},
		"has_latents":      {"vae"},
		"lacks_latents":    {"t5"},
		"return_latents":   {"vae,seg"},
		"short_edge__gte":  {"256"},
		"short_edge__lte":  {"4096"},
		"pixel_count__lte": {"1000000"},
		"duplicate_state":  {"None"},
		"attributes":       {"aesthetic__gte:5.5"},
		"partitions_count": {"3"},
		"partition":        {"1"},
		"query":            {`{"field":"x","op":"eq","value":1}`},
		"as_of":            {"42"},
	}
	if got := r.URL.Query(); !reflect.DeepEqual(got, want) {
		t.Errorf("query\n got %v\nwant %v", got, want)
	}
	// the minimal request, and duplicate_state n > 0
	f2 := newFakeRoom(t, nil)
	d, _ = mustDB(t, f2.config(map[string]any{"duplicate_state": 2}), nil)
	if _, err := dbRun(t, context.Background(), d); err != nil {
		t.Fatal(err)
	}
	want = url.Values{"fields": {"id,source,attributes,width,height,tags,duplicate_state,image_direct_url"},
		"page_size": {"512"}, "duplicate_state": {"2"}}
	if got := f2.pageRequests()[0].URL.Query(); !reflect.DeepEqual(got, want) {
		t.Errorf("query\n got %v\nwant %v", got, want)
	}
}

func TestDBConfigErrors(t *testing.T) {
	t.Setenv(EnvDataroomURL, "")
	t.Setenv(EnvDataroomKey, "")
	check := func(sc map[string]any, kind errs.Kind, parts ...string) {
		t.Helper()
		_, _, err := newDBSource(t, sc, nil)
		if err == nil || errs.KindOf(err) != kind {
			t.Errorf("%v: error %v, want %s", sc, err, kind)
			return
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%v: error %q does not name %q", sc, err, p)
			}
		}
	}
	api := "http://127.0.0.1:1/api/"
	check(map[string]any{"api_url": api, "bogus": 1}, errs.Value, "source_config.bogus")
	check(map[string]any{"api_url": api, "sources_ne": "x", "sources__ne": "y"}, errs.Value, "source_config.sources_ne", "source_config.sources__ne")
	check(map[string]any{"api_url": api, "tags_ne": "x", "tags__ne": "y"}, errs.Value, "source_config.tags_ne", "source_config.tags__ne")
	check(map[string]any{}, errs.Value, EnvDataroomURL)
	check(map[string]any{"api_url": "ftp://host/api/"}, errs.Value, "scheme")
	check(map[string]any{"api_url": api, "page_size": -1}, errs.Value, "source_config.page_size")
	check(map[string]any{"api_url": api, "page_size": MaxDBPageSize + 1}, errs.Value, "source_config.page_size", "2000")
	check(map[string]any{"api_url": api, "page_size": "ten"}, errs.Value, "source_config.page_size")
	// a filter of the wrong JSON type names its key
	check(map[string]any{"api_url": api, "tags": map[string]any{"a": 1}}, errs.Value, "source_config.tags", "object")
	check(map[string]any{"api_url": api, "sources": []any{"a", map[string]any{"x": 1}}}, errs.Value, "source_config.sources", "list holding an object")
	check(map[string]any{"api_url": api, "has_masks": []any{true}}, errs.Value, "source_config.has_masks")
	check(map[string]any{"api_url": api, "return_latents": map[string]any{}}, errs.Value, "source_config.return_latents")
	check(map[string]any{"api_url": api, "require_images": "yes"}, errs.Value, "source_config.require_images")
	check(map[string]any{"api_url": api, "query": "{not json"}, errs.Value, "source_config.query")
	check(map[string]any{"api_url": api, "query": 5}, errs.Value, "source_config.query")
	check(map[string]any{"api_url": api, "query": []any{1}}, errs.Value, "source_config.query")
	check(map[string]any{"api_url": api, "world_size": 0}, errs.Value, "world_size")
	check(map[string]any{"api_url": api, "rank": -2}, errs.Value, "source_config.rank")
	check(map[string]any{"api_url": api, "rank": 2, "world_size": -1}, errs.Value, "source_config.rank") // -1: the top-level world_size (1)
	if _, _, err := newDBSource(t, map[string]any{"api_url": api}, map[string]any{"http_read_timeout": -1}); err == nil {
		t.Errorf("negative http_read_timeout accepted")
	}

	// the environment variables, and the URL without its trailing slash
	f := newFakeRoom(t, plainRows(func() string { return "http://x" }, 3))
	t.Setenv(EnvDataroomURL, strings.TrimSuffix(f.apiURL(), "/"))
	t.Setenv(EnvDataroomKey, dbTestKey)
	d, _ := mustDB(t, map[string]any{}, nil)
	items, err := dbRun(t, context.Background(), d)
	if err != nil || len(items) != 3 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	if got := f.pageRequests()[0].URL.Path; got != "/api/images/" {
		t.Errorf("path %s", got)
	}
	// source_config wins over the environment
	d, _ = mustDB(t, map[string]any{"api_key": "other"}, nil)
	if _, err := dbRun(t, context.Background(), d); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("api_key did not override %s: %v", EnvDataroomKey, err)
	}
}

// TestDBDatagoSpellings: the keys of datago's Go db source, and its -1 for "unset", are taken.
func TestDBDatagoSpellings(t *testing.T) {
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 6)
	d, _ := mustDB(t, f.config(map[string]any{
		"sources__ne": "junk", "tags__ne": "bad", "has_masks": "seg", "return_latents": "seg, vae",
		"return_duplicate_state": true, "rank": -1, "world_size": -1, "duplicate_state": -1, "min_short_edge": -1,
	}), map[string]any{"rank": 1, "world_size": 2})
	items, err := dbRun(t, context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemIDs(items), []string{"row-0001", "row-0003", "row-0005"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ids %v, want %v (rank 1 of 2 from the top-level keys)", got, want)
	}
	want := url.Values{
		"fields":           {"id,source,attributes,width,height,tags,duplicate_state,image_direct_url,latents"},
		"page_size":        {"512"},
		"sources__ne":      {"junk"},
		"tags__ne":         {"bad"},
		"has_masks":        {"seg"},
		"return_latents":   {"seg,vae"},
		"partitions_count": {"2"},
		"partition":        {"1"},
	}
	if got := f.pageRequests()[0].URL.Query(); !reflect.DeepEqual(got, want) {
		t.Errorf("query\n got %v\nwant %v", got, want)
	}
	// return_latents alone asks for the latents field too
	d, _ = mustDB(t, f.config(map[string]any{"return_latents": []string{"vae"}}), nil)
	if _, err := dbRun(t, context.Background(), d); err != nil {
		t.Fatal(err)
	}
	reqs := f.pageRequests()
	if q := reqs[len(reqs)-1].URL.Query(); !strings.HasSuffix(q.Get("fields"), ",latents") || q.Get("return_latents") != "vae" {
		t.Errorf("query %v", q)
	}
}

// TestDBLoopWindow: a next link back to any of the latest dbLoopWindow pages is caught, in fixed
// memory however long the listing.
func TestDBLoopWindow(t *testing.T) {
	var r recentURLs
	for i := 0; i < 5*dbLoopWindow; i++ {
		if !r.add(fmt.Sprint("u", i)) {
			t.Fatalf("u%d taken for a repeat", i)
		}
	}
	if len(r.set) != dbLoopWindow || len(r.ring) != dbLoopWindow {
		t.Errorf("%d URLs remembered, want %d", len(r.set), dbLoopWindow)
	}
	if r.add(fmt.Sprint("u", 5*dbLoopWindow-1)) || r.add(fmt.Sprint("u", 4*dbLoopWindow)) {
		t.Errorf("a repeat of a recent URL was not caught")
	}
	if !r.add("u0") {
		t.Errorf("an URL older than the window is still remembered")
	}
	// a cycle over three pages, end to end
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	f.rows = plainRows(func() string { return f.srv.URL }, 9)
	f.hook = func(w http.ResponseWriter, r *http.Request, cursor int) bool {
		next := (cursor + 3) % 9 // 0 → 3 → 6 → 0
		json.NewEncoder(w).Encode(map[string]any{
			"next":    fmt.Sprintf("%s/api/images/?page_size=3&cursor=%d", f.srv.URL, next),
			"results": f.rows[cursor : cursor+3],
		})
		return true
	}
	d, _ := mustDB(t, f.config(map[string]any{"page_size": 3}), nil)
	items, err := dbRun(t, context.Background(), d)
	if len(items) > 9+3 || err == nil || !strings.Contains(err.Error(), "loops back") {
		t.Errorf("%d items, error %v", len(items), err)
	}
}

func TestDBParamDecoding(t *testing.T) {
	for in, want := range map[string]string{
		`"a, b "`: "a, b", `["a", " b", "", 3]`: "a,b,3", `null`: "", `true`: "true", `12`: "12", `""`: "",
	} {
		var p dbParam
		if err := json.Unmarshal([]byte(in), &p); err != nil || string(p) != want {
			t.Errorf("%s: %q, %v; want %q", in, p, err, want)
		}
	}
	for _, bad := range []string{`{"a": 1}`, `[{"a": 1}]`, `[true]`} {
		var p dbParam
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("%s accepted as %q", bad, p)
		}
	}
	var q dbJSONParam
	if err := json.Unmarshal([]byte(`{ "a" : [1, 2] }`), &q); err != nil || q != `{"a":[1,2]}` {
		t.Errorf("query %q, %v", q, err)
	}
}
