package source

import "strings"

// Epoch control and order properties of the sources, for the pipeline's ordered delivery and
// resume (go/pipeline/resume.go).

// SetEpoch sets the epoch of the next Run (each Run then moves to the next one).
func (w *WebDataset) SetEpoch(e int64) { w.epoch.Store(e) }

// SetEpoch sets the epoch of the next Run (each Run then moves to the next one).
func (d *DB) SetEpoch(e int64) { d.epoch.Store(e) }

// Seed returns the seed of the order (the configured one, else the one drawn at construction).
func (f *Filesystem) Seed() (int64, bool) { return f.seed, f.seeded }

// SetSeed replaces the drawn seed (a resumed run takes the seed of its state).
func (f *Filesystem) SetSeed(s int64) { f.seed = s }

// Global reports whether the ranks' streams are position splits of one global order that does not
// depend on world_size (what an elastic resume needs): always without random_sampling, else with
// a seed.
func (f *Filesystem) GlobalOrder() bool { return !f.random || f.seeded }

// Reproducible reports whether the stream of an epoch is a function of the config, seed and
// epoch only (so that a resume can replay it): a folder always is.
func (f *Filesystem) Reproducible() bool { return true }

// Seed returns the seed of the order and whether it was given.
func (w *WebDataset) Seed() (int64, bool) { return w.seed, w.seeded }

// Reproducible: with a seed the shards' samples are merged round-robin in a fixed order; without
// one, the first sample ready goes first (unless one shard is read at a time, in listing order).
func (w *WebDataset) Reproducible() bool { return w.seeded || (w.concurrency <= 1 && !w.random) }

// Seed returns the seed of the order and whether it was given.
func (d *DB) Seed() (int64, bool) {
	if d.seed == nil {
		return 0, false
	}
	return *d.seed, true
}

// Reproducible: pages in id order always are; /images/random/ only with a seed.
func (d *DB) Reproducible() bool { return d.seed != nil || !strings.HasSuffix(d.images, "/random/") }

// RankOf returns this source's rank and world_size.
func (f *Filesystem) RankOf() (int, int) { return f.rank, f.worldSize }

// RankOf returns this source's rank and world_size.
func (w *WebDataset) RankOf() (int, int) { return w.rank, w.worldSize }

// RankOf returns this source's rank and world_size.
func (d *DB) RankOf() (int, int) { return d.rank, d.worldSize }

// SetKeep makes the ranks split the rows client-side: every rank pages the whole query (no
// partitions_count) and keep, called once per row in page order, says whether this rank takes it.
// The ranks' streams are then position splits of one global order, which an elastic resume needs.
// A row this rank takes but cannot use is emitted as a Failed item, so that positions stay in step.
// nil: the server splits (partitions_count / partition).
func (d *DB) SetKeep(keep func() bool) { d.keep = keep }

// GlobalOrder reports whether the ranks' streams are position splits of one global order (what
// an elastic resume needs): with a seed, the ranks split the rows client-side (SetKeep).
func (d *DB) GlobalOrder() bool { return d.seed != nil }

// EntrySet is a set of sample indices of one shard: every index below Prefix, and Extra.
type EntrySet struct {
	Prefix int          `json:"prefix"`
	Extra  map[int]bool `json:"-"`
}

// Has reports whether i is in the set (a nil set is empty).
func (e *EntrySet) Has(i int) bool { return e != nil && (i < e.Prefix || e.Extra[i]) }

// Add puts i in the set, moving the prefix past it when it can.
func (e *EntrySet) Add(i int) {
	if e.Has(i) {
		return
	}
	if e.Extra == nil {
		e.Extra = map[int]bool{}
	}
	e.Extra[i] = true
	for e.Extra[e.Prefix] {
		delete(e.Extra, e.Prefix)
		e.Prefix++
	}
}

// SetDone gives the entries per shard index that an earlier phase delivered: they are skipped
// without being read into memory (nil: none).
func (w *WebDataset) SetDone(done map[int]*EntrySet) { w.done = done }

// GlobalOrder reports whether an elastic resume is possible: with a seed (the shard order does not
// depend on world_size, and every sample is located by shard and index).
func (w *WebDataset) GlobalOrder() bool { return w.seeded }
