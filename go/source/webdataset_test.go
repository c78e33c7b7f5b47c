package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

type entry struct {
	name string
	data []byte
}

func tarBytes(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sampleEntries are the entries of one full sample: every kind of payload.
func sampleEntries(key string, i int) []entry {
	return []entry{
		{key + ".jpg", []byte("JPEG-" + key)},
		{key + ".json", []byte(fmt.Sprintf(`{"index": %d, "score": %d.5, "caption": "photo <%s>", "tags": ["a", "b"]}`, i, i, key))},
		{key + ".mask.png", []byte("MASK-" + key)},
		{key + ".png", []byte("PNG-" + key)},
		{key + ".txt", []byte("text of " + key)},
		{key + ".cls", []byte(fmt.Sprintf(" %d\n", i%3))},
		{key + ".latent.npy", []byte("NPY-" + key)},
	}
}

// writeShards writes nShards shards of perShard full samples into dir and returns their paths.
func writeShards(t *testing.T, dir string, nShards, perShard int) []string {
	t.Helper()
	var paths []string
	for s := 0; s < nShards; s++ {
		var entries []entry
		for j := 0; j < perShard; j++ {
			entries = append(entries, sampleEntries(fmt.Sprintf("s%02d/k%03d", s, j), s*perShard+j)...)
		}
		p := filepath.Join(dir, fmt.Sprintf("shard-%06d.tar", s))
		if err := os.WriteFile(p, tarBytes(t, entries), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func newWDS(t *testing.T, cfgJSON string) *WebDataset {
	t.Helper()
	c, err := config.Parse([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(c, remote.NewFor(c))
	if err != nil {
		t.Fatal(err)
	}
	return src.(*WebDataset)
}

func wdsConfig(sc map[string]any) string {
	b, _ := json.Marshal(map[string]any{"source_type": "webdataset", "source_config": sc})
	return string(b)
}

// got is an Item copied to Go memory (then freed), for comparisons.
type got struct {
	ID, Source, Attrs string
	Image             string
	Masks, Additional map[string]string
	Latents           map[string]string
}

func snapshot(it *Item) got {
	g := got{ID: it.ID, Source: it.Source, Attrs: it.AttributesJSON,
		Masks: map[string]string{}, Additional: map[string]string{}, Latents: map[string]string{}}
	if it.Image != nil {
		g.Image = string(it.Image.Data.Bytes())
	}
	for _, p := range it.Masks {
		g.Masks[p.Name] = string(p.Data.Bytes())
	}
	for _, p := range it.AdditionalImages {
		g.Additional[p.Name] = string(p.Data.Bytes())
	}
	for _, p := range it.Latents {
		g.Latents[p.Name] = string(p.Data.Bytes())
	}
	it.Free()
	return g
}

// collect runs src to its end and returns the snapshots of its items, in order.
func collect(t *testing.T, ctx context.Context, src Source) ([]got, error) {
	t.Helper()
	out := make(chan *Item, 4)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, out)
		close(out)
	}()
	var items []got
	for it := range out {
		items = append(items, snapshot(it))
	}
	return items, <-done
}

func ids(items []got) []string {
	out := make([]string, len(items))
	for i, g := range items {
		out[i] = g.ID
	}
	return out
}

func checkLive(t *testing.T) {
	t.Helper()
	if n := cmem.Live(); n != 0 {
		t.Errorf("%d C buffers still allocated", n)
	}
}

func TestSplitKey(t *testing.T) {
	for name, want := range map[string][2]string{
		"a/b/000123.jpg":         {"a/b/000123", "jpg"},
		"./x.seg.mask.png":       {"x", "seg.mask.png"},
		"k.JSON":                 {"k", "JSON"},
		"dir.v2/sample.txt":      {"dir.v2/sample", "txt"},
		"noext":                  {"", ""},
		"dir/._hidden.jpg":       {"", ""},
		"trailingdot.":           {"", ""},
		"images/a.b.c.latent.np": {"images/a", "b.c.latent.np"},
	} {
		k, e := SplitKey(name)
		if k != want[0] || e != want[1] {
			t.Errorf("SplitKey(%q) = %q, %q; want %q, %q", name, k, e, want[0], want[1])
		}
	}
}

func TestExpandBraces(t *testing.T) {
	for pattern, want := range map[string][]string{
		"plain.tar":                      {"plain.tar"},
		"s-{000000..000002}.tar":         {"s-000000.tar", "s-000001.tar", "s-000002.tar"},
		"s-{8..11}.tar":                  {"s-8.tar", "s-9.tar", "s-10.tar", "s-11.tar"},
		"s-{08..11}.tar":                 {"s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"},
		"{a,b}/x-{1..2}.tar":             {"a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"},
		"http://h:1/d/{0001..0001}.tar":  {"http://h:1/d/0001.tar"},
		"http://h/{train,val}-{00..01}x": {"http://h/train-00x", "http://h/train-01x", "http://h/val-00x", "http://h/val-01x"},
	} {
		got, err := ExpandBraces(pattern)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ExpandBraces(%q) = %v, %v; want %v", pattern, got, err, want)
		}
	}
	for _, bad := range []string{"s-{3..1}.tar", "s-{1..}.tar", "s-{a..b}.tar", "s-{1..2.tar", "s-1..2}.tar", "{{1..2}}", "{0..2000000}"} {
		if _, err := ExpandBraces(bad); err == nil {
			t.Errorf("ExpandBraces(%q): no error", bad)
		}
	}
}

func TestWebDatasetLocalPayloads(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 2, 3)
	// a third shard: a sample without the reference image, one with bad JSON, a directory entry,
	// a hidden file, and a full sample
	var extra []entry
	extra = append(extra, entry{"orphan.tif", []byte("TIFF")}, entry{"orphan.json", []byte(`{"a": 1}`)})
	extra = append(extra, entry{"badjson.jpg", []byte("J")}, entry{"badjson.json", []byte(`{"a":`)})
	extra = append(extra, entry{"._junk.jpg", []byte("x")})
	extra = append(extra, sampleEntries("last", 99)...)
	third := filepath.Join(dir, "extra.tar")
	if err := os.WriteFile(third, tarBytes(t, extra), 0o644); err != nil {
		t.Fatal(err)
	}
	pattern := filepath.Join(dir, "shard-{000000..000001}.tar")
	w := newWDS(t, wdsConfig(map[string]any{"url": []string{pattern, third}, "concurrent_downloads": 1}))
	if !reflect.DeepEqual(w.Shards(), append(paths, third)) {
		t.Fatalf("shards %v", w.Shards())
	}
	items, err := collect(t, context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"s00/k000", "s00/k001", "s00/k002", "s01/k000", "s01/k001", "s01/k002", "last"}
	if !reflect.DeepEqual(ids(items), want) {
		t.Fatalf("ids %v, want %v", ids(items), want)
	}
	g := items[4] // s01/k001, global index 4
	if g.Source != paths[1] || g.Image != "JPEG-s01/k001" {
		t.Errorf("source/image: %+v", g)
	}
	if !reflect.DeepEqual(g.Masks, map[string]string{"mask.png": "MASK-s01/k001"}) ||
		!reflect.DeepEqual(g.Additional, map[string]string{"png": "PNG-s01/k001"}) ||
		!reflect.DeepEqual(g.Latents, map[string]string{"latent.npy": "NPY-s01/k001"}) {
		t.Errorf("payloads: %+v", g)
	}
	var attrs map[string]any
	dec := json.NewDecoder(strings.NewReader(g.Attrs))
	dec.UseNumber()
	if err := dec.Decode(&attrs); err != nil {
		t.Fatal(err)
	}
	wantAttrs := map[string]any{
		"index": json.Number("4"), "score": json.Number("4.5"), "caption": "photo <s01/k001>",
		"tags": []any{"a", "b"}, "txt": "text of s01/k001", "cls": json.Number("1"),
	}
	if !reflect.DeepEqual(attrs, wantAttrs) {
		t.Errorf("attributes %s", g.Attrs)
	}
	if s := w.Skipped(); s[string(errs.ReasonNoReference)] != 1 || s[string(errs.ReasonMetadata)] != 1 || len(s) != 2 {
		t.Errorf("skipped %v", s)
	}
	checkLive(t)
}

func TestWebDatasetMaskSuffixAndReferenceType(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.tar")
	data := tarBytes(t, []entry{
		{"a.png", []byte("main")}, {"a.seg.png", []byte("seg")}, {"a.mask.webp", []byte("m")},
		{"a.jpg", []byte("extra")}, {"a.cls", []byte("dog")},
	})
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWDS(t, wdsConfig(map[string]any{"url": p, "reference_image_type": ".PNG", "mask_suffix": "seg.png"}))
	items, err := collect(t, context.Background(), w)
	if err != nil || len(items) != 1 {
		t.Fatalf("%v %v", items, err)
	}
	g := items[0]
	if g.Image != "main" || !reflect.DeepEqual(g.Masks, map[string]string{"seg.png": "seg", "mask.webp": "m"}) ||
		!reflect.DeepEqual(g.Additional, map[string]string{"jpg": "extra"}) || g.Attrs != `{"cls":"dog"}` {
		t.Errorf("%+v", g)
	}
	checkLive(t)
}

func TestWebDatasetRanksDisjointAndComplete(t *testing.T) {
	dir := t.TempDir()
	for _, nShards := range []int{5, 2} {
		sub := filepath.Join(dir, fmt.Sprint(nShards))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		paths := writeShards(t, sub, nShards, 7)
		var all []string
		for s := 0; s < nShards; s++ {
			for j := 0; j < 7; j++ {
				all = append(all, fmt.Sprintf("s%02d/k%03d", s, j))
			}
		}
		for world := 1; world <= 8; world++ {
			seen := map[string]int{}
			for rank := 0; rank < world; rank++ {
				w := newWDS(t, wdsConfig(map[string]any{"url": paths, "rank": rank, "world_size": world, "random_sampling": rank%2 == 1}))
				items, err := collect(t, context.Background(), w)
				if err != nil {
					t.Fatal(err)
				}
				for _, g := range items {
					seen[g.ID]++
					if nShards >= world { // by shard: only this rank's shards
						idx := slices.Index(paths, g.Source)
						if idx%world != rank {
							t.Errorf("world %d rank %d got a sample of shard %d", world, rank, idx)
						}
					}
				}
			}
			got := make([]string, 0, len(seen))
			for id, n := range seen {
				if n != 1 {
					t.Errorf("shards %d world %d: %s delivered %d times", nShards, world, id, n)
				}
				got = append(got, id)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, all) {
				t.Errorf("shards %d world %d: %d samples, want %d", nShards, world, len(got), len(all))
			}
		}
	}
	// rank and world_size may come from the top level
	c, err := config.Parse([]byte(`{"source_type": "webdataset", "rank": 1, "world_size": 3, "source_config": {"url": "` +
		filepath.Join(dir, "5", "shard-{000000..000004}.tar") + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(c, remote.NewFor(c))
	if err != nil {
		t.Fatal(err)
	}
	items, err := collect(t, context.Background(), src)
	if err != nil || len(items) != 14 {
		t.Errorf("top-level rank: %d items, %v", len(items), err)
	}
	for _, g := range items { // rank 1 of 3: shards 1 and 4
		if !strings.HasPrefix(g.ID, "s01/") && !strings.HasPrefix(g.ID, "s04/") {
			t.Errorf("top-level rank 1 of 3 got %s", g.ID)
		}
	}
	checkLive(t)
}

func TestWebDatasetShuffle(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 6, 10)
	run := func(sc map[string]any) []string {
		items, err := collect(t, context.Background(), newWDS(t, wdsConfig(sc)))
		if err != nil {
			t.Fatal(err)
		}
		return ids(items)
	}
	seq := run(map[string]any{"url": paths})
	sorted := slices.Clone(seq)
	sort.Strings(sorted)
	a := run(map[string]any{"url": paths, "random_sampling": true, "seed": 42, "shuffle_buffer_size": 16})
	b := run(map[string]any{"url": paths, "random_sampling": true, "seed": 42, "shuffle_buffer_size": 16})
	c := run(map[string]any{"url": paths, "random_sampling": true, "seed": 43, "shuffle_buffer_size": 16})
	u1 := run(map[string]any{"url": paths, "random_sampling": true})
	u2 := run(map[string]any{"url": paths, "random_sampling": true})
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed gave two orders")
	}
	if reflect.DeepEqual(a, c) || reflect.DeepEqual(a, seq) || reflect.DeepEqual(u1, u2) {
		t.Error("shuffled orders should differ")
	}
	for _, order := range [][]string{a, c, u1} {
		s := slices.Clone(order)
		sort.Strings(s)
		if !reflect.DeepEqual(s, sorted) {
			t.Fatal("a shuffle lost or duplicated samples")
		}
	}
	// epochs of one source differ, and are reproducible across sources
	w1 := newWDS(t, wdsConfig(map[string]any{"url": paths, "random_sampling": true, "seed": 5}))
	w2 := newWDS(t, wdsConfig(map[string]any{"url": paths, "random_sampling": true, "seed": 5}))
	e0, _ := collect(t, context.Background(), w1)
	e1, _ := collect(t, context.Background(), w1)
	f0, _ := collect(t, context.Background(), w2)
	f1, _ := collect(t, context.Background(), w2)
	if reflect.DeepEqual(ids(e0), ids(e1)) || !reflect.DeepEqual(ids(e0), ids(f0)) || !reflect.DeepEqual(ids(e1), ids(f1)) {
		t.Error("epochs")
	}
	checkLive(t)
}

func TestWebDatasetTruncatedAndCorruptShards(t *testing.T) {
	dir := t.TempDir()
	var entries []entry
	for j := 0; j < 4; j++ {
		entries = append(entries, sampleEntries(fmt.Sprintf("t/k%d", j), j)...)
	}
	full := tarBytes(t, entries)
	// cut in the middle of the third sample's jpg content
	third := bytes.Index(full, []byte("JPEG-t/k2"))
	cases := map[string][]byte{
		"mid-entry.tar":  full[:third+3],
		"at-header.tar":  full[:third-512], // exactly before the header of t/k2.jpg
		"garbage.tar":    append(slices.Clone(full[:third-512]), bytes.Repeat([]byte{0x7f}, 2048)...),
		"zero-bytes.tar": {},
	}
	wantIDs := map[string][]string{
		"mid-entry.tar":  {"t/k0", "t/k1"},
		"at-header.tar":  {"t/k0", "t/k1"},
		"garbage.tar":    {"t/k0", "t/k1"},
		"zero-bytes.tar": nil,
	}
	wantTruncated := map[string]int64{"mid-entry.tar": 1, "at-header.tar": 0, "garbage.tar": 1}
	good := writeShards(t, dir, 1, 2)[0]
	for name, data := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		w := newWDS(t, wdsConfig(map[string]any{"url": []string{p, good}, "concurrent_downloads": 1}))
		items, err := collect(t, context.Background(), w)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := append(slices.Clone(wantIDs[name]), "s00/k000", "s00/k001")
		if !reflect.DeepEqual(ids(items), want) {
			t.Errorf("%s: ids %v, want %v", name, ids(items), want)
		}
		if got := w.Skipped()[string(errs.ReasonTruncated)]; got != wantTruncated[name] {
			t.Errorf("%s: %d truncated shards counted, want %d", name, got, wantTruncated[name])
		}
	}
	checkLive(t)
}

func TestWebDatasetEntryTooLarge(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.tar")
	data := tarBytes(t, []entry{
		{"a.jpg", []byte("small")}, {"b.jpg", bytes.Repeat([]byte("x"), 5000)}, {"b.txt", []byte("t")}, {"c.jpg", []byte("ok")},
	})
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"source_type": "webdataset", "max_file_bytes": 1000, "source_config": map[string]any{"url": p}})
	w := newWDS(t, string(b))
	items, err := collect(t, context.Background(), w)
	if err != nil || !reflect.DeepEqual(ids(items), []string{"a", "c"}) || w.Skipped()[string(errs.ReasonPayloadTooLarge)] != 1 {
		t.Errorf("%v %v %v", ids(items), err, w.Skipped())
	}
	checkLive(t)
}

func TestWebDatasetConfigErrors(t *testing.T) {
	dir := t.TempDir()
	paths := writeShards(t, dir, 1, 1)
	for _, tc := range []struct {
		sc   map[string]any
		want string
	}{
		{map[string]any{"url": paths[0], "shuffle": true}, "ValueError: unknown config key source_config.shuffle"},
		{map[string]any{}, "ValueError: config key source_config.url is required"},
		{map[string]any{"url": 3}, "ValueError: config key source_config.url must be a string or a list"},
		{map[string]any{"url": []string{}}, "ValueError"},
		{map[string]any{"url": filepath.Join(dir, "nope.tar")}, "FileNotFoundError"},
		{map[string]any{"url": dir}, "ValueError"},
		{map[string]any{"url": "s-{3..1}.tar"}, "ValueError: config key source_config.url: empty range"},
		{map[string]any{"url": "http://"}, "ValueError"},
		{map[string]any{"url": paths[0], "rank": 2, "world_size": 2}, "ValueError: config key source_config.rank"},
		{map[string]any{"url": paths[0], "concurrent_downloads": -1}, "ValueError"},
		{map[string]any{"url": paths[0], "shuffle_buffer_size": -1}, "ValueError"},
	} {
		c, err := config.Parse([]byte(wdsConfig(tc.sc)))
		if err == nil {
			_, err = New(c, remote.NewFor(c))
		}
		if err == nil || !strings.HasPrefix(errs.Describe(err), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.sc, err, tc.want)
		}
	}
	c, _ := config.Parse([]byte(`{"source_type": "webdataset", "http_read_timeout": -1, "source_config": {"url": "http://127.0.0.1:1/a.tar"}}`))
	if _, err := New(c, remote.NewFor(c)); err == nil || !strings.Contains(err.Error(), "http_read_timeout") {
		t.Errorf("invalid HTTP setting: %v", err)
	}
}

func TestWebDatasetReferenceImageDefaultAndList(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mixed.tar")
	data := tarBytes(t, []entry{
		{"j.jpg", []byte("J")}, {"j.png", []byte("JP")}, // jpg first: png stays an additional image
		{"p.png", []byte("P")}, {"p.json", []byte(`{"n": 1}`)}, // png only: the png is the image
		{"w.webp", []byte("W")},                           // webp only
		{"e.JPEG", []byte("E")}, {"e.webp", []byte("EW")}, // jpeg before webp, any case
		{"t.tif", []byte("T")}, // no reference type: skipped
	})
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	type want struct {
		image string
		extra map[string]string
	}
	for _, tc := range []struct {
		cfg     map[string]any
		samples map[string]want
		skipped int
	}{
		{map[string]any{"url": p}, map[string]want{
			"j": {"J", map[string]string{"png": "JP"}}, "p": {"P", nil}, "w": {"W", nil},
			"e": {"E", map[string]string{"webp": "EW"}},
		}, 1},
		// webdataset's syntax: the first present of the list
		{map[string]any{"url": p, "reference_image_type": "png;jpg"}, map[string]want{
			"j": {"JP", map[string]string{"jpg": "J"}}, "p": {"P", nil},
		}, 3},
		// one extension: only samples with it
		{map[string]any{"url": p, "reference_image_type": "jpg"}, map[string]want{
			"j": {"J", map[string]string{"png": "JP"}},
		}, 4},
	} {
		w := newWDS(t, wdsConfig(tc.cfg))
		items, err := collect(t, context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]want{}
		for _, g := range items {
			extra := g.Additional
			if len(extra) == 0 {
				extra = nil
			}
			got[g.ID] = want{g.Image, extra}
		}
		if !reflect.DeepEqual(got, tc.samples) {
			t.Errorf("%v: got %v, want %v", tc.cfg, got, tc.samples)
		}
		if s := w.Skipped(); s[string(errs.ReasonNoReference)] != int64(tc.skipped) {
			t.Errorf("%v: skipped %v, want %d missing_reference_image", tc.cfg, s, tc.skipped)
		}
	}
	if _, err := NewWebDataset([]byte(`{"url": "`+p+`", "reference_image_type": ";"}`), mustParse(t), nil); errs.KindOf(err) != errs.Value ||
		!strings.Contains(fmt.Sprint(err), "reference_image_type") {
		t.Errorf("empty list: %v", err)
	}
	checkLive(t)
}

func mustParse(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`{"source_type": "webdataset"}`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
