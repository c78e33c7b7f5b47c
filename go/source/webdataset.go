package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
	"github.com/datago-dev/datago/go/stats"
	"golang.org/x/sync/errgroup"
)

// WebDatasetConfig is source_config for source_type "webdataset".
type WebDatasetConfig struct {
	// URL is a local path or an http(s) URL of a shard, a brace pattern of them
	// ("shards/train-{000000..000127}.tar", "{a,b}"), or a JSON list of those.
	URL                 json.RawMessage `json:"url"`
	ReferenceImageType  string          `json:"reference_image_type"` // extension of the main image (default "jpg")
	RandomSampling      bool            `json:"random_sampling"`      // shuffle shards, and samples in a buffer
	ConcurrentDownloads int             `json:"concurrent_downloads"` // shards read at a time (default 4)
	AuthToken           string          `json:"auth_token"`           // sent as "Authorization: Bearer ..."
	Rank                *int            `json:"rank"`
	WorldSize           *int            `json:"world_size"`
	Seed                *int64          `json:"seed"`                // with random_sampling: the same seed, the same order
	ShuffleBufferSize   int             `json:"shuffle_buffer_size"` // samples in the shuffle buffer (default 256)
	MaskSuffix          string          `json:"mask_suffix"`         // extension of masks, besides "mask.<image ext>"
}

// Defaults of the WebDataset source.
const (
	DefaultConcurrentDownloads = 4
	DefaultShuffleBufferSize   = 256
	shardReadAhead             = 8 // samples read ahead per open shard
	maxShards                  = 1_000_000
)

// WebDataset streams samples out of tar shards (local or over HTTP), following the WebDataset
// convention: an entry's key is its path up to the first dot of its base name, its extension the
// rest; a sample is a run of consecutive entries with the same key.
//
// Entries, by extension (compared case-insensitively):
//   - the reference type ("jpg") → the main image; a sample without it is skipped and counted;
//   - "mask.<image ext>", "<name>.mask.<image ext>", or the configured mask_suffix → a mask;
//   - any other image extension → an additional image named by the extension;
//   - "json" → its object's keys become attributes (any other JSON value, or "x.json", goes under
//     the extension); "txt" → a string attribute; "cls" → an int attribute (string if not a number);
//   - anything else ("npy", ...) → a latent named by the extension.
//
// Order: concurrent_downloads shards are read at a time. Without a seed the first sample ready goes
// first (a slow shard does not hold the others back); with a seed the shards' samples are taken
// round-robin in a fixed order, so that the same seed gives the same order whatever the network
// timing. random_sampling shuffles the shard order (per epoch) and passes the samples through a
// shuffle buffer of shuffle_buffer_size samples.
//
// Ranks: with at least as many shards as ranks, shard i goes to rank i % world_size (each shard is
// read by one rank only); otherwise every rank reads every shard and keeps sample j of shard i when
// (i + j) % world_size == rank. Either way the ranks are disjoint and complete.
//
// Errors: a shard that cannot be read at all (404, refused, retries exhausted) or whose connection
// breaks and cannot be resumed fails the run: Run returns an error naming it (a data set with a
// missing shard is misconfigured; training on a silent subset is worse). A shard whose tar is
// truncated or corrupt is not fatal: its samples read so far are delivered, the rest of it is
// skipped, logged and counted (errs.ReasonTruncated), and the next shard follows.
type WebDataset struct {
	shards          []shard
	ref, maskSuffix string
	random          bool
	seed            int64
	seeded          bool // a seed was given: the merge order is fixed (mergeRoundRobin)
	epoch           atomic.Int64
	concurrency     int
	bufferSize      int
	token           string
	rank, worldSize int
	bySample        bool
	maxBytes        int64
	http            *remote.Client // nil when every shard is local

	skipped stats.Counts
}

type shard struct {
	index  int    // position in the expanded url list
	loc    string // URL or local path
	remote bool
}

func init() { Register("webdataset", NewWebDataset) }

// NewWebDataset validates the config: the url list expands to shards, local shards exist.
func NewWebDataset(raw []byte, c *config.Config, http *remote.Client) (Source, error) {
	var wc WebDatasetConfig
	if err := config.DecodeStrict(raw, "source_config.", &wc); err != nil {
		return nil, err
	}
	patterns, err := urlList(wc.URL)
	if err != nil {
		return nil, err
	}
	w := &WebDataset{
		ref:         normExt(wc.ReferenceImageType),
		maskSuffix:  normExt(wc.MaskSuffix),
		random:      wc.RandomSampling,
		concurrency: wc.ConcurrentDownloads,
		bufferSize:  wc.ShuffleBufferSize,
		token:       wc.AuthToken,
		maxBytes:    c.MaxFileBytes,
	}
	if w.ref == "" {
		w.ref = "jpg"
	}
	if w.concurrency < 0 {
		return nil, errs.Errorf(errs.Value, "config key source_config.concurrent_downloads must be >= 0, got %d", w.concurrency)
	}
	if w.concurrency == 0 {
		w.concurrency = DefaultConcurrentDownloads
	}
	if w.bufferSize < 0 {
		return nil, errs.Errorf(errs.Value, "config key source_config.shuffle_buffer_size must be >= 0, got %d", w.bufferSize)
	}
	if w.bufferSize == 0 {
		w.bufferSize = DefaultShuffleBufferSize
	}
	anyRemote := false
	for _, p := range patterns {
		locs, err := ExpandBraces(p)
		if err != nil {
			return nil, errs.Errorf(errs.Value, "config key source_config.url: %v", err)
		}
		for _, loc := range locs {
			if len(w.shards) >= maxShards {
				return nil, errs.Errorf(errs.Value, "config key source_config.url: more than %d shards", maxShards)
			}
			sh := shard{index: len(w.shards), loc: loc}
			if remote.IsURL(loc) {
				if err := remote.CheckURL(loc); err != nil {
					return nil, errs.Errorf(errs.Value, "config key source_config.url: %v", err)
				}
				sh.remote, anyRemote = true, true
			} else {
				sh.loc = strings.TrimPrefix(loc, "file://")
				if err := checkLocalShard(sh.loc); err != nil {
					return nil, err
				}
			}
			w.shards = append(w.shards, sh)
		}
	}
	if w.rank, w.worldSize, err = rankOf("source_config.", wc.Rank, wc.WorldSize, c); err != nil {
		return nil, err
	}
	w.bySample = len(w.shards) < w.worldSize
	if wc.Seed != nil {
		w.seed, w.seeded = *wc.Seed, true
	} else {
		w.seed = time.Now().UnixNano()
	}
	if anyRemote {
		if _, err := remote.SettingsFrom(c); err != nil {
			return nil, err
		}
		w.http = http
	}
	return w, nil
}

// urlList reads source_config.url: a string or a list of strings.
func urlList(raw json.RawMessage) ([]string, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, errs.Errorf(errs.Value, "config key source_config.url is required (a shard path or URL, a brace pattern, or a list of them)")
	}
	var one string
	if err := json.Unmarshal(t, &one); err == nil {
		if one == "" {
			return nil, errs.Errorf(errs.Value, "config key source_config.url is empty")
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(t, &list); err != nil {
		return nil, errs.Errorf(errs.Value, "config key source_config.url must be a string or a list of strings, got %s", t)
	}
	if len(list) == 0 {
		return nil, errs.Errorf(errs.Value, "config key source_config.url is an empty list")
	}
	for i, s := range list {
		if s == "" {
			return nil, errs.Errorf(errs.Value, "config key source_config.url[%d] is empty", i)
		}
	}
	return list, nil
}

func checkLocalShard(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errs.Errorf(errs.NotFound, "source_config.url: shard %q does not exist", p)
		}
		return errs.Errorf(errs.OS, "source_config.url: shard %q: %v", p, err)
	}
	if st.IsDir() {
		return errs.Errorf(errs.Value, "source_config.url: shard %q is a folder, not a tar file", p)
	}
	return nil
}

func normExt(s string) string { return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), ".")) }

// ExpandBraces expands brace patterns: "{000..127}" is a zero-padded numeric range (padded to the
// width of its first bound when that has a leading zero, or when both bounds have the same width),
// "{a,b,c}" a list; several groups multiply. Nested braces are refused.
func ExpandBraces(pattern string) ([]string, error) {
	open := strings.IndexByte(pattern, '{')
	if open < 0 {
		if strings.IndexByte(pattern, '}') >= 0 {
			return nil, fmt.Errorf("unbalanced '}' in %q", pattern)
		}
		return []string{pattern}, nil
	}
	end := strings.IndexByte(pattern[open:], '}')
	if end < 0 {
		return nil, fmt.Errorf("unbalanced '{' in %q", pattern)
	}
	end += open
	body := pattern[open+1 : end]
	if strings.IndexByte(body, '{') >= 0 {
		return nil, fmt.Errorf("nested braces in %q", pattern)
	}
	prefix, suffix := pattern[:open], pattern[end+1:]
	if strings.IndexByte(prefix, '}') >= 0 {
		return nil, fmt.Errorf("unbalanced '}' in %q", pattern)
	}
	var alts []string
	if lo, hi, ok := strings.Cut(body, ".."); ok && !strings.Contains(body, ",") {
		a, err1 := strconv.ParseInt(lo, 10, 64)
		b, err2 := strconv.ParseInt(hi, 10, 64)
		if err1 != nil || err2 != nil || a < 0 || b < 0 {
			return nil, fmt.Errorf("invalid range {%s} in %q (want {FIRST..LAST} with non-negative integers)", body, pattern)
		}
		if b < a {
			return nil, fmt.Errorf("empty range {%s} in %q (LAST < FIRST)", body, pattern)
		}
		if b-a >= maxShards {
			return nil, fmt.Errorf("range {%s} in %q has more than %d values", body, pattern, maxShards)
		}
		width := 0
		if (len(lo) > 1 && lo[0] == '0') || len(lo) == len(hi) {
			width = len(lo)
		}
		for i := a; i <= b; i++ {
			alts = append(alts, fmt.Sprintf("%0*d", width, i))
		}
	} else {
		alts = strings.Split(body, ",")
	}
	rest, err := ExpandBraces(suffix)
	if err != nil {
		return nil, err
	}
	if len(alts)*len(rest) > maxShards {
		return nil, fmt.Errorf("%q expands to more than %d names", pattern, maxShards)
	}
	out := make([]string, 0, len(alts)*len(rest))
	for _, a := range alts {
		for _, r := range rest {
			out = append(out, prefix+a+r)
		}
	}
	return out, nil
}

// SplitKey splits a tar entry name into its WebDataset key (the path up to the first dot of the
// base name, directory included) and extension (the rest, without the dot). Names without an
// extension and hidden files ("._x.jpg") give "", "".
func SplitKey(name string) (key, ext string) {
	name = strings.TrimPrefix(name, "./")
	dir, base := path.Split(name)
	i := strings.IndexByte(base, '.')
	if i <= 0 || i == len(base)-1 {
		return "", ""
	}
	return dir + base[:i], base[i+1:]
}

// Shards returns the expanded shard list (paths or URLs), in config order.
func (w *WebDataset) Shards() []string {
	out := make([]string, len(w.shards))
	for i, s := range w.shards {
		out[i] = s.loc
	}
	return out
}

// Skipped returns the counters of the latest run: samples skipped by the source, per reason, and
// truncated shards (errs.ReasonTruncated). Each skip is also logged (warn). The pipeline merges them into
// the client's stats (skipped_reasons).
func (w *WebDataset) Skipped() map[string]int64 { return w.skipped.Snapshot() }

func (w *WebDataset) skip(reason errs.Reason) { w.skipped.Add(string(reason)) }

// plan returns this rank's shards for an epoch, in reading order, and the rng of the shuffle buffer
// (nil without random_sampling).
func (w *WebDataset) plan(epoch int64) ([]shard, *rand.Rand) {
	var mine []shard
	if w.bySample {
		mine = append(mine, w.shards...)
	} else {
		for _, i := range RankSlice(len(w.shards), w.rank, w.worldSize) {
			mine = append(mine, w.shards[i])
		}
	}
	if !w.random {
		return mine, nil
	}
	rng := rand.New(rand.NewPCG(uint64(w.seed), uint64(epoch)<<32^uint64(w.rank)^0x9e3779b97f4a7c15))
	rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
	return mine, rng
}

// Run streams the samples of this rank's shards: concurrent_downloads shards are read at a time,
// each by its own goroutine, and their samples merged (see merge), then passed through the shuffle
// buffer with random_sampling. Every goroutine is waited for and every buffered item freed before
// Run returns.
func (w *WebDataset) Run(ctx context.Context, out chan<- *Item) error {
	epoch := w.epoch.Add(1) - 1
	w.skipped.Reset()
	shards, rng := w.plan(epoch)
	var buf []*Item // the shuffle buffer
	defer func() {
		for _, it := range buf {
			it.Free()
		}
	}()
	emit := func(it *Item) error {
		if rng == nil {
			return Send(ctx, out, it)
		}
		buf = append(buf, it)
		if len(buf) < w.bufferSize {
			return nil
		}
		j, last := rng.IntN(len(buf)), len(buf)-1
		buf[j], buf[last] = buf[last], buf[j]
		it = buf[last]
		buf[last] = nil
		buf = buf[:last]
		return Send(ctx, out, it)
	}
	merge := w.mergeFirstReady
	if w.seeded {
		merge = w.mergeRoundRobin
	}
	if err := merge(ctx, shards, emit); err != nil {
		return err
	}
	if rng != nil {
		rng.Shuffle(len(buf), func(i, j int) { buf[i], buf[j] = buf[j], buf[i] })
	}
	for len(buf) > 0 {
		it := buf[len(buf)-1]
		buf[len(buf)-1] = nil
		buf = buf[:len(buf)-1]
		if err := Send(ctx, out, it); err != nil {
			return err
		}
	}
	return nil
}

// mergeFirstReady reads up to concurrency shards at a time into one queue: the first sample ready
// goes first, so a slow shard does not hold the others back. It returns the first fatal shard
// error (which cancels the other shards), or ctx.Err(); every goroutine has returned and every
// queued item is freed by then.
func (w *WebDataset) mergeFirstReady(ctx context.Context, shards []shard, emit func(*Item) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.concurrency)
	queue := make(chan *Item, shardReadAhead*w.concurrency)
	var readErr error // set before queue is closed
	go func() {
		for _, sh := range shards {
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error { return w.readShard(gctx, sh, queue) }) // waits for a free slot
		}
		readErr = g.Wait()
		close(queue)
	}()
	var emitErr error
	for it := range queue {
		if emitErr != nil {
			it.Free() // draining after a failed emit
			continue
		}
		if emitErr = emit(it); emitErr != nil {
			cancel()
		}
	}
	if emitErr != nil {
		return emitErr
	}
	if readErr != nil {
		return readErr
	}
	return ctx.Err() // cancelled before a shard could report it
}

// mergeRoundRobin reads up to concurrency shards at a time and takes one sample from each in turn,
// in a fixed order (a finished shard's slot goes to the next shard): the sequence depends on the
// data only, never on timing, so a seeded run is reproducible. The price: a slow shard makes the
// others wait (each reads ahead shardReadAhead samples).
func (w *WebDataset) mergeRoundRobin(ctx context.Context, shards []shard, emit func(*Item) error) error {
	type reader struct {
		ch  chan *Item // closed when the shard is done; err is set before
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg    sync.WaitGroup
		slots []*reader // the shards being read, in turn order
	)
	defer func() {
		cancel()
		wg.Wait()
		for _, r := range slots {
			for it := range r.ch {
				it.Free()
			}
		}
	}()
	next := 0
	start := func() *reader {
		sh := shards[next]
		next++
		r := &reader{ch: make(chan *Item, shardReadAhead)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.ch)
			r.err = w.readShard(ctx, sh, r.ch)
		}()
		return r
	}
	for len(slots) < w.concurrency && next < len(shards) {
		slots = append(slots, start())
	}
	for i := 0; len(slots) > 0; {
		if i >= len(slots) {
			i = 0
		}
		r := slots[i]
		select {
		case it, ok := <-r.ch:
			if !ok {
				if r.err != nil {
					return r.err
				}
				if next < len(shards) {
					slots[i] = start()
				} else {
					slots = append(slots[:i], slots[i+1:]...)
				}
				continue
			}
			if err := emit(it); err != nil {
				return err
			}
			i++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// open opens a shard for streaming.
func (w *WebDataset) open(ctx context.Context, sh shard) (io.ReadCloser, error) {
	if sh.remote {
		s, err := w.http.Open(ctx, sh.loc, remote.WithBearer(w.token))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	f, err := os.Open(sh.loc)
	if err != nil {
		kind := errs.OS
		if errors.Is(err, fs.ErrNotExist) {
			kind = errs.NotFound
		}
		return nil, errs.Errorf(kind, "webdataset shard %s: %v", sh.loc, err)
	}
	return f, nil
}

// sample is a sample being assembled from consecutive tar entries.
type sample struct {
	it    *Item
	attrs map[string]any
	skip  errs.Reason // reason, when the sample is to be skipped
	keep  bool        // this rank's sample
}

// readShard reads one shard and sends its samples to out. It returns nil when the shard is done
// (including a truncated or corrupt tar, which is logged and counted), ctx.Err() when cancelled,
// or an error that must end the run (the shard cannot be opened, or its stream broke for good).
func (w *WebDataset) readShard(ctx context.Context, sh shard, out chan<- *Item) error {
	r, err := w.open(ctx, sh)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	defer r.Close()
	tr := tar.NewReader(sourceReader{r})
	var (
		cur       *sample
		n         = -1 // index in the shard of the current sample
		delivered int
	)
	defer func() {
		if cur != nil {
			cur.it.Free()
		}
	}()
	flush := func() error {
		s := cur
		cur = nil
		if s == nil || !s.keep {
			return nil
		}
		ok, err := w.finish(ctx, sh, s, out)
		if ok {
			delivered++
		}
		return err
	}
	for {
		if err := ctx.Err(); err != nil { // entries this rank skips never reach a send
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// every entry read so far is complete: the current sample goes out as it is (as it
			// would if the tar had been cut cleanly at this header)
			if err := flush(); err != nil {
				return err
			}
			return w.broken(ctx, sh, err, delivered)
		}
		if !hdr.FileInfo().Mode().IsRegular() {
			continue
		}
		key, ext := SplitKey(hdr.Name)
		if key == "" {
			slog.Debug("datago: webdataset: entry ignored (no key or extension)", "shard", sh.loc, "entry", hdr.Name)
			continue
		}
		if cur == nil || key != cur.it.ID {
			if err := flush(); err != nil {
				return err
			}
			n++
			cur = &sample{
				it:   &Item{ID: key, Source: sh.loc},
				keep: !w.bySample || (sh.index+n)%w.worldSize == w.rank,
			}
		}
		if !cur.keep || cur.skip != "" {
			continue // the tar reader skips the entry's bytes
		}
		b, err := cmem.ReadAll(tr, hdr.Size, w.maxBytes)
		if err != nil {
			if errors.Is(err, cmem.ErrTooLarge) {
				cur.skip = errs.ReasonPayloadTooLarge
				slog.Warn("datago: webdataset: entry too large", "shard", sh.loc, "entry", hdr.Name, "error", err)
				continue
			}
			// the in-progress sample is incomplete: it is dropped with the rest of the shard
			return w.broken(ctx, sh, err, delivered)
		}
		w.add(sh, cur, ext, b)
	}
	if err := flush(); err != nil {
		return err
	}
	slog.Debug("datago: webdataset: shard done", "shard", sh.loc, "samples", delivered)
	return nil
}

// broken handles a read error in a shard: cancellation and transport failures end the run; a
// truncated or corrupt tar is logged and counted, and the shard ends there.
func (w *WebDataset) broken(ctx context.Context, sh shard, err error, delivered int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var re *readError
	if errors.As(err, &re) { // the shard's bytes could not be read
		if _, ok := re.err.(errs.Classified); ok { // *remote.Error: the connection broke and could not resume
			return re.err
		}
		return errs.Errorf(errs.OS, "webdataset shard %s: %v", sh.loc, re.err)
	}
	// every other error comes from the tar reader itself: the bytes read are not a whole tar
	w.skip(errs.ReasonTruncated)
	slog.Warn("datago: webdataset: shard is truncated or corrupt; its remaining samples are skipped",
		"shard", sh.loc, "samples_delivered", delivered, "error", err)
	return nil
}

// sourceReader marks the errors of a shard's byte stream (a file, an HTTP stream) as *readError, so
// that the errors of the tar reader above it (a truncated or corrupt tar) are told apart from them
// by type. io.EOF passes unchanged: the tar reader reports a cut inside an entry as
// io.ErrUnexpectedEOF.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// readError is a read error of a shard's byte stream.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

func (e *readError) Unwrap() error { return e.err }

// add files one entry's bytes into the sample (taking ownership of b).
func (w *WebDataset) add(sh shard, s *sample, ext string, b cmem.Buf) {
	lower := strings.ToLower(ext)
	last := lower
	if i := strings.LastIndexByte(lower, '.'); i >= 0 {
		last = lower[i+1:]
	}
	it := s.it
	switch {
	case lower == w.ref:
		if it.Image != nil {
			it.Image.Data.Free()
		}
		it.Image = &Payload{Data: b}
	case w.isMask(lower, last):
		putPayload(&it.Masks, &Payload{Name: ext, Data: b})
	case ImageExtensions["."+last]:
		putPayload(&it.AdditionalImages, &Payload{Name: ext, Data: b})
	case last == "json":
		var v any
		dec := json.NewDecoder(bytes.NewReader(b.Bytes()))
		dec.UseNumber()
		err := dec.Decode(&v)
		if err == nil && dec.More() {
			err = errors.New("trailing data after the JSON value")
		}
		b.Free()
		if err != nil {
			s.skip = errs.ReasonMetadata
			slog.Warn("datago: webdataset: invalid JSON", "shard", sh.loc, "key", it.ID, "entry", ext, "error", err)
			return
		}
		if obj, ok := v.(map[string]any); ok && lower == "json" {
			for k, x := range obj {
				s.setAttr(k, x)
			}
		} else {
			s.setAttr(ext, v)
		}
	case last == "txt":
		s.setAttr(ext, text(b))
	case last == "cls":
		t := strings.TrimSpace(text(b))
		if i, err := strconv.ParseInt(t, 10, 64); err == nil {
			s.setAttr(ext, i)
		} else {
			s.setAttr(ext, t)
		}
	default:
		putPayload(&it.Latents, &Payload{Name: ext, Data: b})
	}
}

// isMask: "mask.<image ext>", "<name>.mask.<image ext>", or the configured mask_suffix.
func (w *WebDataset) isMask(lower, last string) bool {
	if w.maskSuffix != "" && (lower == w.maskSuffix || strings.HasSuffix(lower, "."+w.maskSuffix)) {
		return true
	}
	if !ImageExtensions["."+last] {
		return false
	}
	stem := strings.TrimSuffix(lower, "."+last)
	return stem == "mask" || strings.HasSuffix(stem, ".mask")
}

// text frees b and returns its bytes as a valid UTF-8 string.
func text(b cmem.Buf) string {
	s := string(b.Bytes())
	b.Free()
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

func (s *sample) setAttr(k string, v any) {
	if s.attrs == nil {
		s.attrs = map[string]any{}
	}
	s.attrs[k] = v
}

// finish sends a completed sample (ok) or skips it; err is ctx.Err() when cancelled.
func (w *WebDataset) finish(ctx context.Context, sh shard, s *sample, out chan<- *Item) (bool, error) {
	it := s.it
	reason := s.skip
	if reason == "" && it.Image == nil {
		reason = errs.ReasonNoReference
	}
	if reason != "" {
		it.Free()
		w.skip(reason)
		slog.Warn("datago: webdataset: skipping sample", "shard", sh.loc, "key", it.ID, "reason", reason,
			"reference_image_type", w.ref)
		return false, nil
	}
	if len(s.attrs) > 0 {
		var sb strings.Builder
		enc := json.NewEncoder(&sb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s.attrs); err != nil { // cannot happen with decoded JSON values
			it.Free()
			w.skip(errs.ReasonMetadata)
			return false, nil
		}
		it.AttributesJSON = strings.TrimSuffix(sb.String(), "\n")
	}
	if err := Send(ctx, out, it); err != nil {
		return false, err
	}
	return true, nil
}
