package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/output"
	"github.com/datago-dev/datago/go/source"
)

// testHookItem, when set (tests), runs in a worker before each sample is made.
var testHookItem func()

// randomAccess is the index of a map-style client: the dataset's items in a fixed order, listed
// once (on the first Len or GetItems) and kept until Close.
type randomAccess struct {
	use    sync.RWMutex // held for reading by every GetItems, for writing by free: Close waits for them
	mu     sync.Mutex
	built  bool
	items  []*source.Item
	closed bool
}

// free releases the bytes the index holds (WebDataset items carry their encoded payloads).
func (ra *randomAccess) free() {
	ra.use.Lock()
	defer ra.use.Unlock()
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for _, it := range ra.items {
		it.Free()
	}
	ra.items, ra.closed = nil, true
}

// index lists the dataset once. A folder is listed (its sorted listing: no bytes are read); any
// other source is streamed once by a source of its own (epoch 0, the configured rank and
// world_size, the configured order), keeping each item's locations (db rows: URLs) or, for
// WebDataset, its encoded payloads in C memory.
func (p *Pipeline) index() ([]*source.Item, error) {
	ra := &p.ra
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.closed {
		return nil, errs.Errorf(errs.Closed, "the client was closed")
	}
	if ra.built {
		return ra.items, nil
	}
	ctx := context.Background()
	var items []*source.Item
	if ix, ok := p.src.(source.Indexer); ok {
		var err error
		if items, err = ix.Index(ctx); err != nil {
			return nil, errs.Errorf(errs.OS, "listing the dataset for random access: %v", err)
		}
	} else {
		src, err := source.New(p.cfg, p.http) // its own source: the streaming one keeps its epoch
		if err != nil {
			return nil, err
		}
		ch := make(chan *source.Item, 64)
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, ch); close(ch) }()
		for it := range ch {
			items = append(items, it)
		}
		if err := <-done; err != nil {
			for _, it := range items {
				it.Free()
			}
			return nil, err
		}
	}
	ra.items, ra.built = items, true
	return items, nil
}

// Len is the number of samples of the map-style dataset (see GetItems).
func (p *Pipeline) Len() (int, error) {
	items, err := p.index()
	return len(items), err
}

// GetItems fetches, decodes and transforms the samples at indices — positions in the index (for a
// folder: its sorted listing) — with num_threads workers in parallel and the client's image
// settings. out[k] is the sample of indices[k]; a sample that could not be made (a corrupt image,
// a missing file) is skipped — counted in the stats, logged with its path — and out[k] is then the
// zero Sample. An index outside [0, Len) is a Value error and nothing is made. made counts the
// non-zero samples.
func (p *Pipeline) GetItems(indices []int64) (out []output.Sample, made int, err error) {
	p.ra.use.RLock() // the items (and WebDataset bytes) stay until the call returns
	defer p.ra.use.RUnlock()
	items, err := p.index()
	if err != nil {
		return nil, 0, err
	}
	for _, i := range indices {
		if i < 0 || i >= int64(len(items)) {
			return nil, 0, errs.Errorf(errs.Value, "index %d out of range [0, %d)", i, len(items))
		}
	}
	out = make([]output.Sample, len(indices))
	workers := p.cfg.NumThreads
	if workers < 1 {
		workers = 1
	}
	if workers > len(indices) {
		workers = len(indices)
	}
	p.mu.Lock()
	st := p.last
	p.mu.Unlock()
	var next, count atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= int64(len(indices)) {
					return
				}
				if testHookItem != nil {
					testHookItem()
				}
				it := cloneItem(items[indices[k]])
				s, reason, err := p.makeSample(it)
				it.Free()
				if err != nil {
					st.Skip(reason)
					slog.Warn("datago: skipping sample", "index", indices[k], "id", it.ID, "path", where(it), "reason", reason, "error", err)
					continue
				}
				out[k] = s
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return out, int(count.Load()), nil
}

// makeSample reads and builds one item into a C sample; on failure it gives the skip reason.
func (p *Pipeline) makeSample(it *source.Item) (output.Sample, errs.Reason, error) {
	if _, err := p.fetcher.Item(context.Background(), it); err != nil {
		return output.Sample{}, errs.ReasonOf(err, errs.ReasonFetch), fmt.Errorf("fetch: %w", err)
	}
	f, err := p.build(it)
	if err != nil {
		return output.Sample{}, errs.ReasonOf(err, errs.ReasonTransform), err
	}
	return output.Build(&f), "", nil
}

// cloneItem copies an index item for one access: the payloads' bytes (WebDataset) are copied, so
// that building the sample (which takes the latents' bytes) leaves the index intact.
func cloneItem(it *source.Item) *source.Item {
	c := *it
	cp := func(p *source.Payload) *source.Payload {
		q := *p
		if p.Data.Ptr != nil {
			q.Data = cmem.Alloc(p.Data.Len)
			copy(q.Data.Bytes(), p.Data.Bytes())
		}
		return &q
	}
	cps := func(list []*source.Payload) []*source.Payload {
		if list == nil {
			return nil
		}
		out := make([]*source.Payload, len(list))
		for i, p := range list {
			out[i] = cp(p)
		}
		return out
	}
	if it.Image != nil {
		c.Image = cp(it.Image)
	}
	c.Masks, c.AdditionalImages, c.Latents = cps(it.Masks), cps(it.AdditionalImages), cps(it.Latents)
	return &c
}

// IndexEntry describes one sample of the map-style index without reading it.
type IndexEntry struct {
	ID         string          `json:"id"`
	Source     string          `json:"source"`
	Attributes json.RawMessage `json:"attributes"`
}

// IndexEntries lists the index: entry i describes the sample GetItems makes for index i.
func (p *Pipeline) IndexEntries() ([]IndexEntry, error) {
	p.ra.use.RLock()
	defer p.ra.use.RUnlock()
	items, err := p.index()
	if err != nil {
		return nil, err
	}
	out := make([]IndexEntry, len(items))
	for i, it := range items {
		attrs := json.RawMessage("{}")
		if it.AttributesJSON != "" {
			attrs = json.RawMessage(it.AttributesJSON)
		}
		out[i] = IndexEntry{ID: it.ID, Source: it.Source, Attributes: attrs}
	}
	return out, nil
}
