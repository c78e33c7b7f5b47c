package source

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
	"github.com/datago-dev/datago/go/stats"
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
// Errors: a shard that cannot be read at all (404, refused, retries exhausted), that is not a tar
// from its first block (an HTML error page answered with 200: errs.OS, "not a tar archive"), or
// whose connection breaks and cannot be resumed fails the run: Run returns an error naming it (a
// data set with a missing shard is misconfigured; training on a silent subset is worse). A shard whose tar is
// truncated or corrupt is not fatal: its samples read so far are delivered, the rest of it is
// skipped, logged and counted (errs.ReasonTruncated), and the next shard follows.
type WebDataset struct {
	shards          []shard
	refs            []string // reference image extensions, in order of preference (lower case)
	maskSuffix      string
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
	http            *remote.Client    // nil when every shard is local
	s3              *remote.S3        // s3:// shards (s3list.go); nil without them
	done            map[int]*EntrySet // entries an earlier phase delivered (elastic resume), skipped unread

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
		refs:        referenceTypes(wc.ReferenceImageType),
		maskSuffix:  normExt(wc.MaskSuffix),
		random:      wc.RandomSampling,
		concurrency: wc.ConcurrentDownloads,
		bufferSize:  wc.ShuffleBufferSize,
		token:       wc.AuthToken,
		maxBytes:    c.MaxFileBytes,
	}
	if len(w.refs) == 0 {
		return nil, errs.Errorf(errs.Value, "config key source_config.reference_image_type names no extension: %q", *wc.ReferenceImageType)
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
			if remote.IsS3(loc) {
				if err := w.addS3Shards(loc, c); err != nil {
					return nil, err
				}
				anyRemote = true
				continue
			}
			if err := remote.CheckScheme("source_config.url", loc); err != nil {
				return nil, err
			}
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
	if w.random && w.seeded {
		// one shard order for every world_size (what an elastic resume needs): the whole list
		// shuffled with (seed, epoch), rank r taking positions r, r + W, ...
		all := append([]shard(nil), w.shards...)
		g := rand.New(rand.NewPCG(uint64(w.seed), uint64(epoch)^0x2545f4914f6cdd1d))
		g.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		if w.bySample {
			mine = all
		} else {
			for _, i := range RankSlice(len(all), w.rank, w.worldSize) {
				mine = append(mine, all[i])
			}
		}
	} else if w.bySample {
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
	if !w.seeded {
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
	}
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
