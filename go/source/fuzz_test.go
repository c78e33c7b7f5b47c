package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// Fuzz targets of the parsers of untrusted bytes in this package: the tar grouping of WebDataset
// shards (readShard), brace patterns of shard URLs (ExpandBraces) and the db source's page JSON
// (page, item). Seeds: testdata/fuzz/<FuzzName>/; scripts/fuzz.sh runs them.

// fzMaxBytes is max_file_bytes in the tar targets: small, so that the too-large path is reached.
const fzMaxBytes = 64

// fzGroups is the reference grouping of a tar: the keys of the runs of consecutive regular entries
// with the same key (entries without a key ignored), read with archive/tar alone. clean reports a
// tar read to its end without error; first reports that the first header parsed.
func fzGroups(t *testing.T, data []byte) (keys []string, clean, first bool) {
	tr := tar.NewReader(bytes.NewReader(data))
	prev := ""
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err != nil {
			return keys, err == io.EOF, i > 0
		}
		if !hdr.FileInfo().Mode().IsRegular() {
			continue
		}
		key, ext := SplitKey(hdr.Name)
		if key == "" {
			continue
		}
		// SplitKey's contract: key "." ext is the name, the key's base name has no dot, and
		// neither part is empty
		if ext == "" || key+"."+ext != strings.TrimPrefix(hdr.Name, "./") || strings.Contains(path.Base(key), ".") ||
			strings.HasSuffix(key, "/") {
			t.Fatalf("SplitKey(%q) = %q, %q", hdr.Name, key, ext)
		}
		if len(keys) == 0 || key != prev {
			keys = append(keys, key)
			prev = key
		}
	}
}

// checkShard reads data as a shard (seeded, so that every sample gives an item: the sample or its
// tombstone) and checks the items against the reference grouping.
func checkShard(t *testing.T, data []byte) {
	p := filepath.Join(t.TempDir(), "shard.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	w := &WebDataset{refs: referenceTypes(nil), worldSize: 1, seeded: true, maxBytes: fzMaxBytes}
	sh := shard{index: 3, loc: p}
	live := cmem.Live()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a "did not hang" guard
	defer cancel()
	out := make(chan *Item)
	done := make(chan error, 1)
	go func() {
		done <- w.readShard(ctx, sh, out)
		close(out)
	}()
	var items []*Item
	for it := range out {
		items = append(items, it)
	}
	err := <-done
	defer func() {
		for _, it := range items {
			it.Free()
		}
		if n := cmem.Live() - live; n != 0 {
			t.Errorf("%d C buffers leaked", n)
		}
	}()
	if ctx.Err() != nil {
		t.Fatal("readShard did not finish within 30 s")
	}

	keys, clean, first := fzGroups(t, data)
	if err != nil {
		if errs.KindOf(err) != errs.OS || !strings.Contains(err.Error(), "not a tar archive") {
			t.Fatalf("readShard of a local shard failed with %v (%s)", err, errs.KindOf(err))
		}
		if first {
			t.Fatalf("a tar whose first header archive/tar reads was refused: %v", err)
		}
		if len(items) != 0 {
			t.Fatalf("%d items from a shard refused as not a tar", len(items))
		}
		return
	}
	if len(items) > len(keys) || len(items) < len(keys)-1 || (clean && len(items) != len(keys)) {
		t.Fatalf("%d items for %d samples (tar read cleanly: %v)", len(items), len(keys), clean)
	}
	failed := int64(0)
	for i, it := range items {
		if it.Entry != i || it.ID != keys[i] || it.ID == "" || it.Shard != sh.index || it.Source != p {
			t.Fatalf("item %d is %q (entry %d, shard %d), want sample %q", i, it.ID, it.Entry, it.Shard, keys[i])
		}
		if it.Failed {
			failed++
			continue
		}
		if it.Image == nil || it.Image.Name != "" {
			t.Fatalf("sample %q delivered without its reference image", it.ID)
		}
		if it.AttributesJSON != "" {
			var obj map[string]any
			if err := json.Unmarshal([]byte(it.AttributesJSON), &obj); err != nil {
				t.Fatalf("sample %q: attributes are not a JSON object: %v (%s)", it.ID, err, it.AttributesJSON)
			}
		}
		for _, ps := range [][]*Payload{it.Masks, it.AdditionalImages, it.Latents} {
			for _, pl := range ps {
				if pl.Name == "" || pl.Data.Len > fzMaxBytes {
					t.Fatalf("sample %q: payload %q of %d bytes (cap %d)", it.ID, pl.Name, pl.Data.Len, fzMaxBytes)
				}
			}
		}
	}
	var skipped, truncated int64
	for reason, n := range w.Skipped() {
		if reason == string(errs.ReasonTruncated) {
			truncated += n
		} else {
			skipped += n
		}
	}
	if skipped != failed {
		t.Fatalf("%d samples skipped (%v), %d tombstones", skipped, w.Skipped(), failed)
	}
	if (truncated == 1) == clean || truncated > 1 {
		t.Fatalf("truncated_shard counted %d times; the tar read cleanly: %v", truncated, clean)
	}
}

// FuzzWebDatasetShard: a shard's raw bytes (tar headers, checksums, truncation, all as found).
func FuzzWebDatasetShard(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkShard(t, data)
	})
}

// fzTar builds a tar from spec, one entry per line: "name=content" (a regular file), "name/" (a
// folder) or "@name=target" (a symlink); then cuts cut % len bytes off its end. ok is false when
// archive/tar cannot write the spec.
func fzTar(spec string, cut uint16) (data []byte, ok bool) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, line := range strings.Split(spec, "\n") {
		name, content, _ := strings.Cut(line, "=")
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}
		switch {
		case strings.HasPrefix(name, "@"):
			hdr = &tar.Header{Name: name[1:], Linkname: content, Mode: 0o777, Typeflag: tar.TypeSymlink}
		case strings.HasSuffix(name, "/") && content == "":
			hdr = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if tw.WriteHeader(hdr) != nil {
			return nil, false
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(content)); err != nil {
				return nil, false
			}
		}
	}
	if tw.Close() != nil {
		return nil, false
	}
	data = buf.Bytes()
	if cut > 0 && len(data) > 0 {
		data = data[:len(data)-int(cut)%len(data)]
	}
	return data, true
}

// FuzzWebDatasetTar: the grouping of entries into samples, from well-formed tars (entry names,
// types, JSON / txt / cls contents, sizes over max_file_bytes) and their truncations. Property:
// every sample gives one item whose key is the sample's (never empty), in order, and the skip
// counters agree with the tombstones.
func FuzzWebDatasetTar(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string, cut uint16) {
		data, ok := fzTar(spec, cut)
		if !ok {
			return
		}
		checkShard(t, data)
	})
}

// fzBraceCount is the expected number of names of a valid pattern: the product of its groups'
// sizes (b - a + 1 for a range, commas + 1 for a list).
func fzBraceCount(t *testing.T, pattern string) int {
	n := 1
	for rest := pattern; ; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			return n
		}
		end := strings.IndexByte(rest, '}')
		body := rest[open+1 : end]
		rest = rest[end+1:]
		if lo, hi, ok := strings.Cut(body, ".."); ok && !strings.Contains(body, ",") {
			a, err1 := strconv.ParseInt(lo, 10, 64)
			b, err2 := strconv.ParseInt(hi, 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("%q expanded, but its range {%s} does not parse", pattern, body)
			}
			n *= int(b - a + 1)
		} else {
			n *= strings.Count(body, ",") + 1
		}
	}
}

// fzMaxRange bounds the ranges FuzzExpandBraces expands.
const fzMaxRange = 4096

// fzBraceRangeOver reports a group "{a..b}" in pattern (well-formed or not) with more than n values.
func fzBraceRangeOver(pattern string, n int64) bool {
	for _, part := range strings.Split(pattern, "{")[1:] {
		body, _, _ := strings.Cut(part, "}")
		if lo, hi, ok := strings.Cut(body, ".."); ok {
			a, err1 := strconv.ParseInt(lo, 10, 64)
			b, err2 := strconv.ParseInt(hi, 10, 64)
			if err1 == nil && err2 == nil && b-a > n {
				return true
			}
		}
	}
	return false
}

// FuzzExpandBraces: a pattern expands to the product of its groups' sizes (at most maxShards),
// names without braces that keep the text before the first group and after the last, ranges in
// order; or it is refused with an error.
func FuzzExpandBraces(f *testing.F) {
	f.Fuzz(func(t *testing.T, pattern string) {
		if fzBraceRangeOver(pattern, fzMaxRange) {
			return // a million names per input would make the run slow, not better (TestExpandBraces covers the cap)
		}
		names, err := ExpandBraces(pattern)
		if err != nil {
			if names != nil {
				t.Fatalf("%q: error %v with %d names", pattern, err, len(names))
			}
			return
		}
		if want := fzBraceCount(t, pattern); len(names) != want || want > maxShards || want < 1 {
			t.Fatalf("%q: %d names, want %d", pattern, len(names), want)
		}
		open, end := strings.IndexByte(pattern, '{'), strings.LastIndexByte(pattern, '}')
		if open < 0 {
			if len(names) != 1 || names[0] != pattern {
				t.Fatalf("%q without braces gave %q", pattern, names)
			}
			return
		}
		for _, n := range names {
			if strings.ContainsAny(n, "{}") || !strings.HasPrefix(n, pattern[:open]) || !strings.HasSuffix(n, pattern[end+1:]) {
				t.Fatalf("%q gave the name %q", pattern, n)
			}
		}
		// a single range group: consecutive numbers from FIRST, zero-padded to FIRST's width when
		// FIRST has a leading zero or both bounds have the same width
		body := pattern[open+1 : end]
		if lo, hi, ok := strings.Cut(body, ".."); ok && !strings.Contains(body, ",") && strings.Count(pattern, "{") == 1 {
			a, _ := strconv.ParseInt(lo, 10, 64)
			padded := (len(lo) > 1 && lo[0] == '0') || len(lo) == len(hi)
			for i, n := range names {
				num := strings.TrimSuffix(strings.TrimPrefix(n, pattern[:open]), pattern[end+1:])
				v, err := strconv.ParseInt(num, 10, 64)
				if err != nil || v != a+int64(i) || (padded && len(num) < len(lo)) || (!padded && num != strconv.FormatInt(v, 10)) {
					t.Fatalf("%q: name %d is %q (number %q), want %d", pattern, i, n, num, a+int64(i))
				}
			}
		}
	})
}

// fzPageBody is the body the fuzz server answers (one fuzz worker calls the target at a time).
var fzPageBody atomic.Pointer[[]byte]

// FuzzDBPage: a page of the image API as the server sends it. Property: the page is refused with
// an OSError naming the db source, or its rows (as many as "results" holds) each become an item
// with an id and an http(s) image URL, or are skipped and counted once.
func FuzzDBPage(f *testing.F) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*fzPageBody.Load())
	}))
	f.Cleanup(srv.Close)
	cfg, _ := json.Marshal(map[string]any{"source_type": "db", "http_max_retries": 0,
		"source_config": map[string]any{"api_url": srv.URL + "/api/", "api_key": "k"}})
	c, err := config.Parse(cfg)
	if err != nil {
		f.Fatal(err)
	}
	src, err := New(c, remote.NewFor(c))
	if err != nil {
		f.Fatal(err)
	}
	d := src.(*DB)
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.Clone(body)
		fzPageBody.Store(&body)
		d.skipped.Reset()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		u, rows, next, err := d.page(ctx, d.FirstURL(0))
		if err != nil {
			if errs.KindOf(err) != errs.OS || !strings.HasPrefix(err.Error(), "db source:") {
				t.Fatalf("page refused with %v (%s), want an OSError from the db source", err, errs.KindOf(err))
			}
			return
		}
		var ref struct {
			Next    *string           `json:"next"`
			Results []json.RawMessage `json:"results"`
		}
		if !json.Valid(body) || json.Unmarshal(body, &ref) != nil || len(ref.Results) != len(rows) {
			t.Fatalf("page accepted with %d rows; as JSON it has %d (valid: %v)", len(rows), len(ref.Results), json.Valid(body))
		}
		if (next != "") != (ref.Next != nil && strings.TrimSpace(*ref.Next) != "") {
			t.Fatalf("next link %q from %v", next, ref.Next)
		}
		if next != "" {
			if nu, err := url.Parse(next); err != nil || (nu.Scheme != "http" && nu.Scheme != "https") {
				t.Fatalf("next link %q", next)
			}
		}
		items := 0
		for _, raw := range rows {
			_ = rowID(raw)
			it := d.item(u, raw)
			if it == nil {
				continue
			}
			items++
			if it.ID == "" || it.Image == nil {
				t.Fatalf("row %s: item %+v without id or image", raw, it)
			}
			payloads := []*Payload{it.Image}
			payloads = append(payloads, it.Masks...)
			payloads = append(payloads, it.AdditionalImages...)
			payloads = append(payloads, it.Latents...)
			for _, pl := range payloads {
				pu, err := url.Parse(pl.URL)
				if pl.Path == "" && (err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "") {
					t.Fatalf("row %s: payload %q has the URL %q", raw, pl.Name, pl.URL)
				}
			}
			if it.AttributesJSON != "" {
				var obj map[string]any
				if err := json.Unmarshal([]byte(it.AttributesJSON), &obj); err != nil {
					t.Fatalf("row %s: attributes %s are not a JSON object", raw, it.AttributesJSON)
				}
			}
			for _, tag := range it.Tags {
				if tag == "" || tag != strings.TrimSpace(tag) {
					t.Fatalf("row %s: tag %q", raw, tag)
				}
			}
		}
		var skipped int64
		for _, n := range d.Skipped() {
			skipped += n
		}
		if int64(items)+skipped != int64(len(rows)) {
			t.Fatalf("%d rows: %d items, %d skipped (%v)", len(rows), items, skipped, d.Skipped())
		}
	})
}
