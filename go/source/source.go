// Package source is the first pipeline stage: it lists samples. A source emits Items whose payloads
// either carry their bytes already (a tar stream) or say where to fetch them (a path or a URL).
package source

import (
	"context"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// Payload is one file of a sample: the image, a mask, an additional image or a latent.
type Payload struct {
	Name string   // key within the sample (mask / latent name); "" for the main image
	Path string   // local file to read, or
	URL  string   // http(s) URL to GET, or
	Data cmem.Buf // bytes already read (C memory, owned by the payload until handed over)
}

// Item is a listed sample on its way through the pipeline.
type Item struct {
	ID             string
	Source         string
	AttributesJSON string // a JSON object, "" for none
	Tags           []string
	Embedding      []float32
	DuplicateState int

	// Set by the pipeline: Seq is the item's position in this rank's epoch stream, Ticket its
	// position among the items that are processed (after a resume drops delivered ones); Failed
	// marks a tombstone (its fetch failed) that keeps the ordered stages in step.
	Seq, Ticket int64
	Failed      bool
	// Shard and Entry locate a WebDataset sample: the shard's index in the url list and the
	// sample's index in the shard (unused by the other sources).
	Shard, Entry int

	Image            *Payload // nil when the sample has no image
	Masks            []*Payload
	AdditionalImages []*Payload
	Latents          []*Payload
}

// Payloads calls f on every payload of the item.
func (it *Item) Payloads(f func(*Payload)) {
	if it.Image != nil {
		f(it.Image)
	}
	for _, group := range [][]*Payload{it.Masks, it.AdditionalImages, it.Latents} {
		for _, p := range group {
			f(p)
		}
	}
}

// Free releases every byte buffer the item still owns.
func (it *Item) Free() {
	it.Payloads(func(p *Payload) { p.Data.Free() })
}

// putPayload appends p to list, or replaces an earlier payload of the same name (a duplicated
// entry), freeing that one's bytes.
func putPayload(list *[]*Payload, p *Payload) {
	for i, q := range *list {
		if q.Name == p.Name {
			q.Data.Free()
			(*list)[i] = p
			return
		}
	}
	*list = append(*list, p)
}

// Source lists samples. Run sends items to out until the listing is done (nil), ctx is cancelled
// (ctx.Err()), or it fails (an error). It must not close out. An item it could not send is freed.
type Source interface {
	Run(ctx context.Context, out chan<- *Item) error
}

// Constructor builds a source from the raw source_config and the client config.
// http is the pipeline's shared HTTP client (sources that read over HTTP use it).
type Constructor func(raw []byte, c *config.Config, http *remote.Client) (Source, error)

var registry = map[string]Constructor{}

// Register adds a source type ("file", "webdataset", "db").
func Register(name string, ctor Constructor) { registry[name] = ctor }

// New builds the source named by c.SourceType; http is the pipeline's shared HTTP client.
func New(c *config.Config, http *remote.Client) (Source, error) {
	ctor, ok := registry[c.SourceType]
	if !ok {
		names := make([]string, 0, len(registry))
		for n := range registry {
			names = append(names, n)
		}
		return nil, errs.Errorf(errs.Value, "config key source_type: unknown source %q (known: %v)", c.SourceType, names)
	}
	return ctor(c.SourceConfig, c, http)
}

// Send delivers it to out unless ctx is cancelled first (then it is freed and ctx.Err() returned).
func Send(ctx context.Context, out chan<- *Item, it *Item) error {
	select {
	case out <- it:
		return nil
	case <-ctx.Done():
		it.Free()
		return ctx.Err()
	}
}

// RankSlice returns the indices [0, n) that belong to rank out of worldSize: i ≡ rank (mod
// worldSize). The split is disjoint and complete for any worldSize ≥ 1.
func RankSlice(n, rank, worldSize int) []int {
	idx := make([]int, 0, n/worldSize+1)
	for i := rank; i < n; i += worldSize {
		idx = append(idx, i)
	}
	return idx
}

// rankOf merges a source's optional rank keys with the top-level ones (the source's win).
func rankOf(where string, rank, worldSize *int, c *config.Config) (int, int, error) {
	r, w := c.Rank, c.WorldSize
	if rank != nil {
		r = *rank
	}
	if worldSize != nil {
		w = *worldSize
	}
	if err := config.CheckRank(where, r, w); err != nil {
		return 0, 0, err
	}
	return r, w, nil
}
