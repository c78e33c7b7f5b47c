package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/datago-dev/datago/go/errs"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/output"
	"github.com/datago-dev/datago/go/source"
	"github.com/datago-dev/datago/go/transform"
)

// The batcher groups samples of one bucket into batches (config key batch_size). A sample takes a
// slot (assign), in ticket order when ordered; then its pixels are written straight into the slot
// by the transform stage (written). A batch's composition is fixed when it is full, or when it is
// flushed as a partial batch: because more than max_held_samples samples are held in partial
// batches (the one with the oldest sample goes), or at the end of the epoch. Batches are delivered
// in the order their composition was fixed, once all their slots are written.

type pbatch struct {
	buf     *output.BatchBuf
	bucket  transform.Bucket
	first   int64 // ticket of the first sample: the age of a partial batch
	n       int   // slots taken
	written int   // slots written
	closed  bool
	seqs    []int64
}

type batcher struct {
	size, channels int
	chw            bool
	maxHeld        int
	maxFixed       int // fixed batches not yet delivered before assign waits (backpressure)
	dropLast       bool

	mu       sync.Mutex
	cond     *sync.Cond
	ctx      context.Context
	open     map[transform.Bucket]*pbatch
	held     int
	fixed    []*pbatch
	ended    bool
	flushed  int64 // partial batches flushed by the bound
	tail     int64 // partial batches delivered at the end of an epoch
	dropped  int64 // partial batches dropped at the end (drop_last)
	droppedS []int64
}

func newBatcher(ctx context.Context, size, channels int, chw bool, maxHeld, maxFixed int, dropLast bool) *batcher {
	b := &batcher{size: size, channels: channels, chw: chw, maxHeld: maxHeld, maxFixed: maxFixed, dropLast: dropLast,
		ctx: ctx, open: map[transform.Bucket]*pbatch{}}
	b.cond = sync.NewCond(&b.mu)
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	return b
}

// slot is a sample's place in a batch.
type slot struct {
	pb *pbatch
	i  int
}

// assign gives the sample (ticket, seq) a slot in its bucket's partial batch, fixing batches as
// they fill or as the bound requires. fill sets the sample's metadata (under the lock). It waits
// while too many fixed batches are undelivered; false when the run is cancelled.
func (b *batcher) assign(bucket transform.Bucket, ticket, seq int64, fill func(buf *output.BatchBuf, i int)) (slot, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.fixed) >= b.maxFixed {
		if b.ctx.Err() != nil {
			return slot{}, false
		}
		b.cond.Wait()
	}
	if b.ctx.Err() != nil {
		return slot{}, false
	}
	pb := b.open[bucket]
	if pb == nil {
		pb = &pbatch{buf: output.NewBatchBuf(b.size, bucket.W, bucket.H, b.channels, b.chw), bucket: bucket, first: ticket}
		b.open[bucket] = pb
	}
	s := slot{pb, pb.n}
	pb.n++
	pb.seqs = append(pb.seqs, seq)
	fill(pb.buf, s.i)
	b.held++
	if pb.n == b.size {
		b.fix(pb)
	} else if b.held > b.maxHeld {
		b.fix(b.oldest())
		b.flushed++
	}
	return s, true
}

// oldest is the partial batch with the oldest sample; b.mu held.
func (b *batcher) oldest() *pbatch {
	var o *pbatch
	for _, pb := range b.open {
		if o == nil || pb.first < o.first {
			o = pb
		}
	}
	return o
}

// fix closes pb's composition; b.mu held.
func (b *batcher) fix(pb *pbatch) {
	delete(b.open, pb.bucket)
	b.held -= pb.n
	pb.closed = true
	b.fixed = append(b.fixed, pb)
	b.cond.Broadcast()
}

// written marks a slot's pixels as stored.
func (b *batcher) written(s slot) {
	b.mu.Lock()
	s.pb.written++
	if s.pb.closed && s.pb.written == s.pb.n {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}

// end is called once every sample of the epoch has a slot: the partial batches are delivered
// (oldest first) or dropped (drop_last; their samples' seqs are kept in droppedS).
func (b *batcher) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	rest := make([]*pbatch, 0, len(b.open))
	for _, pb := range b.open {
		rest = append(rest, pb)
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].first < rest[j].first })
	for _, pb := range rest {
		if b.dropLast {
			delete(b.open, pb.bucket)
			b.held -= pb.n
			b.dropped++
			b.droppedS = append(b.droppedS, pb.seqs...)
			pb.buf.Free(pb.n)
			continue
		}
		b.fix(pb)
		b.tail++
	}
	b.ended = true
	b.cond.Broadcast()
}

// next waits for the next batch to deliver: the oldest fixed batch, once all its slots are
// written. ok is false at the end (or when cancelled).
func (b *batcher) next() (output.Batch, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.ctx.Err() != nil {
			return output.Batch{}, false
		}
		if len(b.fixed) > 0 && b.fixed[0].written == b.fixed[0].n {
			pb := b.fixed[0]
			b.fixed[0] = nil
			b.fixed = b.fixed[1:]
			b.cond.Broadcast()
			return pb.buf.Finish(pb.n), true
		}
		if b.ended && len(b.fixed) == 0 {
			return output.Batch{}, false
		}
		b.cond.Wait()
	}
}

// free releases every batch still held (after the run's goroutines are done).
func (b *batcher) free() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, pb := range b.open {
		pb.buf.Free(pb.n)
	}
	for _, pb := range b.fixed {
		pb.buf.Free(pb.n)
	}
	b.open, b.fixed = map[transform.Bucket]*pbatch{}, nil
}

func (b *batcher) counts() (flushed, tail, dropped int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushed, b.tail, b.dropped
}

// decoded is an item's images decoded, waiting for their place.
type decoded struct {
	main     *transform.Pending
	masks    []namedPending
	adds     []namedPending
	latents  []output.Blob
	id, src  string
	attrs    string
	seq      int64
	ticket   int64
	bucket   transform.Bucket
	ow, oh   int
	hasImage bool
}

type namedPending struct {
	name string
	pe   *transform.Pending
}

func (d *decoded) free() {
	if d.main != nil {
		d.main.Free()
	}
	for _, m := range d.masks {
		m.pe.Free()
	}
	for _, a := range d.adds {
		a.pe.Free()
	}
	for i := range d.latents {
		d.latents[i].Data.Free()
	}
}

// decodeItem decodes an item's images for a batch (the item's bytes are not needed afterwards).
func (p *Pipeline) decodeItem(it *source.Item) (*decoded, error) {
	d := &decoded{id: it.ID, src: it.Source, attrs: it.AttributesJSON, seq: it.Seq, ticket: it.Ticket}
	if it.Image == nil {
		return nil, errs.Skip(errs.ReasonNoImage, "a batch needs an image per sample (require_images)")
	}
	pe, err := transform.Decode(it.Image.Data, p.batchOpts, nil, false)
	if err != nil {
		return nil, err
	}
	d.main, d.bucket, d.ow, d.oh = pe, pe.Bucket, pe.OriginalWidth, pe.OriginalHeight
	maskOpts := *p.batchOpts
	for _, m := range it.Masks {
		pe, err := transform.Decode(m.Data, &maskOpts, &d.bucket, true)
		if err != nil {
			d.free()
			return nil, fmt.Errorf("mask %q: %w", m.Name, err)
		}
		d.masks = append(d.masks, namedPending{m.Name, pe})
	}
	for _, a := range it.AdditionalImages {
		pe, err := transform.Decode(a.Data, p.batchOpts, &d.bucket, false)
		if err != nil {
			d.free()
			return nil, fmt.Errorf("additional image %q: %w", a.Name, err)
		}
		d.adds = append(d.adds, namedPending{a.Name, pe})
	}
	for _, l := range it.Latents {
		d.latents = append(d.latents, output.Blob{Name: l.Name, Data: l.Data})
		l.Data = cmem.Buf{}
	}
	return d, nil
}

// processBatch: decode (a CPU slot), take a slot (in ticket order when ordered), then store the
// pixels straight into the slot (a CPU slot again).
func (r *run) processBatch(it *source.Item) {
	if it.Failed {
		r.passOver(it)
		return
	}
	if !r.cpu.acquire(false) {
		it.Free()
		return
	}
	st := &r.stats.Process
	st.In()
	start := time.Now()
	d, err := r.p.decodeItem(it)
	it.Free()
	r.cpu.release()
	if err != nil {
		st.Done(start, false)
		r.skipped(it, err)
		r.passOver(it)
		return
	}
	busy := time.Since(start)
	if r.turn != nil && !r.turn.wait(d.ticket) {
		d.free()
		return
	}
	var maskDst, addDst []unsafe.Pointer
	s, ok := r.batcher.assign(d.bucket, d.ticket, d.seq, func(buf *output.BatchBuf, i int) {
		buf.SetMeta(i, d.id, d.src, d.attrs, d.ow, d.oh, d.seq, d.latents)
		d.latents = nil
		for _, m := range d.masks {
			maskDst = append(maskDst, buf.MaskSlot(m.name, i))
		}
		for _, a := range d.adds {
			addDst = append(addDst, buf.AdditionalSlot(a.name, i))
		}
	})
	if r.turn != nil {
		r.turn.leave()
		r.window.release()
	}
	if !ok {
		d.free()
		return
	}
	if !r.cpu.acquire(true) {
		d.free()
		return
	}
	start = time.Now()
	err = r.store(d, s, maskDst, addDst)
	r.cpu.release()
	st.Done(start.Add(-busy), err == nil)
	if err != nil { // the slot's size is the image's: a failure here is a bug, not bad data
		r.fail(errs.Errorf(errs.Runtime, "storing %s into its batch: %v", d.id, err))
		return
	}
	r.batcher.written(s)
}

func (r *run) store(d *decoded, s slot, maskDst, addDst []unsafe.Pointer) error {
	cfg := r.p.cfg
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	_, err := d.main.Store(&transform.Dest{Data: s.pb.buf.Slot(s.i), Channels: cfg.Channels(), CHW: cfg.CHW()})
	keep(err)
	d.main = nil
	for k, m := range d.masks {
		_, err := m.pe.Store(&transform.Dest{Data: maskDst[k], Channels: 1, Mask: true})
		keep(err)
	}
	for k, a := range d.adds {
		_, err := a.pe.Store(&transform.Dest{Data: addDst[k], Channels: cfg.Channels(), CHW: cfg.CHW()})
		keep(err)
	}
	d.masks, d.adds = nil, nil
	return firstErr
}

// passOver lets an item that will not be delivered (failed fetch or decode) through the ordered
// stages without waiting.
func (r *run) passOver(it *source.Item) {
	r.track.decide(it.Seq)
	if r.turn != nil {
		r.turn.skip(it.Ticket)
		r.window.release()
	}
}

// emitBatches queues the batches in the order their composition was fixed.
func (r *run) emitBatches() {
	for {
		b, ok := r.batcher.next()
		if !ok {
			break
		}
		select {
		case r.out <- delivery{b: b, batch: true}:
			r.stats.Produced.Add(int64(b.Len()))
			r.stats.Batches.Add(1)
			r.stats.Output.Count()
		case <-r.ctx.Done():
			b.Free()
			return
		}
	}
	r.batcher.mu.Lock()
	dropped := r.batcher.droppedS
	r.batcher.droppedS = nil
	r.batcher.mu.Unlock()
	r.track.decide(dropped...) // drop_last: decided, not delivered
}

// processOrdered is the per-sample stream in ordered mode: decode and transform (a CPU slot), then
// queue the sample in ticket order.
func (r *run) processOrdered(it *source.Item) {
	if it.Failed {
		r.passOver(it)
		return
	}
	if !r.cpu.acquire(false) {
		it.Free()
		return
	}
	st := &r.stats.Process
	st.In()
	start := time.Now()
	f, err := r.p.build(it)
	st.Done(start, err == nil)
	it.Free()
	r.cpu.release()
	if err != nil {
		r.skipped(it, err)
		r.passOver(it)
		return
	}
	if !r.turn.wait(it.Ticket) {
		output.Build(&f).Free()
		return
	}
	r.deliver(&f, it.Seq)
	r.turn.leave()
	r.window.release()
}

// injectSeed passes a top-level seed on to the source (which reads source_config.seed).
func injectSeed(cfg *config.Config) error {
	if cfg.Seed == nil || cfg.SourceSeed() != nil {
		return nil
	}
	m := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(cfg.SourceConfig)) > 0 && string(bytes.TrimSpace(cfg.SourceConfig)) != "null" {
		if err := json.Unmarshal(cfg.SourceConfig, &m); err != nil {
			return errs.Errorf(errs.Value, "config key source_config must be a JSON object: %v", err)
		}
	}
	m["seed"], _ = json.Marshal(*cfg.Seed)
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	cfg.SourceConfig = raw
	return nil
}
