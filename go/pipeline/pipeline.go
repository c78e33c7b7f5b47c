// Package pipeline wires the stages — source (list) → fetch → process (decode/transform) →
// output (bounded queue of C samples) — as goroutines over channels. Every goroutine belongs to a
// run, stops when the run's context is cancelled, and is waited for by Stop.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/fetch"
	"github.com/datago-dev/datago/go/output"
	"github.com/datago-dev/datago/go/remote"
	"github.com/datago-dev/datago/go/source"
	"github.com/datago-dev/datago/go/stats"
	"github.com/datago-dev/datago/go/transform"
)

// Status is the outcome of Next.
type Status int

// Outcomes of Next, as in datago.h.
const (
	StatusSample  Status = 0
	StatusEnd     Status = 1
	StatusTimeout Status = 2
	StatusError   Status = -1
)

// Pipeline is one client's loader. Start, Next and Stop may be called from any goroutine.
type Pipeline struct {
	cfg     *config.Config
	src     source.Source
	fetcher *fetch.Fetcher
	http    *remote.Client // shared by the source and the fetcher
	// httpBase is http's counters when the latest run started (Stats reports the run's own)
	httpBase remote.Counters
	opts     *transform.Options

	// batches, order and resume (batch.go, order.go, resume.go)
	batchOpts       *transform.Options // image options of batched samples (batch_mode channels, packed)
	ordered         bool               // a seed is set: delivery order is a function of (seed, epoch, rank, world_size)
	seedGiven       bool
	rank, worldSize int

	mu          sync.Mutex
	cur         *run         // nil when not started; a run being stopped stays here until it is done
	last        *stats.Stats // counters of the latest run
	closed      bool         // Close was called: Start does nothing any more
	nextEpoch   int64        // epoch of the next Start
	resume      *resumePlan  // a loaded state, for the next Start
	lastTracker *tracker     // decided Seqs of the latest run
	lastEpoch   int64
	lastHistory []Phase
	lastBatcher *batcher
	// WebDataset: the samples delivered before the latest run's phase (its stream skips them)
	lastShardsAtPhase map[int]ShardState

	ra randomAccess // map-style access (random_access.go)
}

// New validates cfg and builds the source; nothing runs before Start.
func New(cfg *config.Config) (*Pipeline, error) {
	if err := transform.Init(); err != nil {
		return nil, errs.Errorf(errs.Runtime, "%v", err)
	}
	if err := injectSeed(cfg); err != nil {
		return nil, err
	}
	http := remote.NewFor(cfg) // the one HTTP client of this pipeline, handed to the stages
	src, err := source.New(cfg, http)
	if err != nil {
		return nil, err
	}
	ic := cfg.ImageConfig
	opts := &transform.Options{
		CropAndResize: ic.CropAndResize,
		ToRGB8:        ic.ImageToRGB8,
		FlattenAlpha:  ic.FlattenAlpha,
		JPEGQuality:   ic.JPEGQuality,
		MaxPixels:     ic.MaxPixels,
		PadRGB:        ic.PILZeroCopy == nil || *ic.PILZeroCopy,
	}
	if opts.FailOn, err = transform.ParseFailOn(ic.FailOn); err != nil {
		return nil, errs.Errorf(errs.Value, "config key image_config.%v", err)
	}
	if ic.PreEncodeImages {
		opts.Encode = ic.EncodeFormat
	}
	if ic.CropAndResize {
		if opts.Buckets, err = transform.BuildBuckets(ic.DefaultImageSize, ic.DownsamplingRatio, ic.MinAspectRatio, ic.MaxAspectRatio); err != nil {
			return nil, errs.Errorf(errs.Value, "image_config: %v", err)
		}
	}
	p := &Pipeline{cfg: cfg, src: src, fetcher: &fetch.Fetcher{MaxBytes: cfg.MaxFileBytes, HTTP: http}, http: http, opts: opts, last: stats.New(),
		ordered: cfg.EffectiveSeed() != nil, seedGiven: cfg.EffectiveSeed() != nil, nextEpoch: cfg.Epoch,
		rank: cfg.Rank, worldSize: cfg.WorldSize}
	if ro, ok := src.(interface{ RankOf() (int, int) }); ok {
		p.rank, p.worldSize = ro.RankOf()
	}
	if cfg.BatchSize > 0 {
		bo := *opts
		bo.PadRGB = false
		bo.ToRGB8 = cfg.BatchMode == "RGB"
		bo.FlattenAlpha = cfg.BatchMode == "L" || bo.FlattenAlpha
		p.batchOpts = &bo
	}
	return p, nil
}

// Buckets returns the aspect-ratio buckets (nil without crop_and_resize).
func (p *Pipeline) Buckets() transform.Buckets { return p.opts.Buckets }

// run is one epoch of the pipeline, from Start to Stop.
type run struct {
	p *Pipeline
	// ctx ends the whole run (Stop); up, derived from it, ends only the producing stages (limit
	// reached, listing failed) so that samples already made still reach the consumer.
	ctx, up          context.Context
	cancel, cancelUp context.CancelFunc
	wg               sync.WaitGroup
	raw              chan *source.Item // source → numbering
	listed           chan *source.Item
	fetchedRaw       chan *source.Item // fetch → reorder (ordered mode)
	fetched          chan *source.Item
	out              chan delivery
	delivered        atomic.Int64
	track            *tracker
	turn             *turnstile // nil unless ordered
	window           sem        // tickets in flight (ordered)
	cpu              *cpuSlots  // CPU slots (when more goroutines than num_threads)
	batcher          *batcher   // nil without batch_size
	stats            *stats.Stats
	stopping         bool          // a Stop is at work (guarded by p.mu)
	done             chan struct{} // closed when Stop has finished: every goroutine returned

	errMu sync.Mutex
	err   error
}

// fail records the first error and stops production; the consumer sees it after the queue drains.
func (r *run) fail(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
	r.cancelUp()
}

func (r *run) error() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// Start launches the stages (idempotent while running). During a Stop it waits for the Stop to
// finish, then starts a new run: two runs of the same source never overlap. Each run is an epoch
// (the next one after the previous run, or the one set by SetEpoch or a loaded state).
func (p *Pipeline) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.cur != nil && p.cur.stopping {
		done := p.cur.done
		p.mu.Unlock()
		<-done
		p.mu.Lock()
	}
	if p.cur != nil || p.closed {
		return
	}
	cfg := p.cfg
	ctx, cancel := context.WithCancel(context.Background())
	up, cancelUp := context.WithCancel(ctx)
	r := &run{
		p: p, ctx: ctx, cancel: cancel, up: up, cancelUp: cancelUp,
		raw:     make(chan *source.Item, 16),
		listed:  make(chan *source.Item, cfg.PrefetchBufferSize),
		fetched: make(chan *source.Item, cfg.PrefetchBufferSize),
		stats:   stats.New(),
		done:    make(chan struct{}),
	}
	epoch, plan := p.nextEpoch, p.resume
	p.nextEpoch, p.resume = epoch+1, nil
	p.setupEpoch(epoch, plan)
	p.lastHistory, p.lastShardsAtPhase = nil, nil
	if plan != nil {
		p.lastHistory, p.lastShardsAtPhase = plan.history, plan.shardsAtPhase
	}
	r.track = p.newTracker(plan)
	p.lastTracker, p.lastEpoch = r.track, epoch
	p.cur, p.last = r, r.stats
	p.httpBase = p.http.Counters()

	batched := cfg.BatchSize > 0
	workers := cfg.NumThreads
	if p.ordered || batched {
		if p.ordered {
			workers = 4*cfg.NumThreads + 4 // more goroutines than CPU slots: waiting at the turnstile is free
			r.turn = newTurnstile(up)
			r.window = make(sem, 2*cfg.PrefetchBufferSize+cfg.MaxConnections+workers)
			r.fetchedRaw = make(chan *source.Item, cfg.PrefetchBufferSize)
		}
		r.cpu = newCPUSlots(up, cfg.NumThreads)
	}
	if batched {
		outCap := max(2, cfg.SamplesBufferSize/cfg.BatchSize)
		r.out = make(chan delivery, outCap)
		r.batcher = newBatcher(up, cfg.BatchSize, cfg.Channels(), cfg.CHW(), cfg.MaxHeldSamples, outCap+workers+2, cfg.DropLast)
		p.lastBatcher = r.batcher
	} else {
		r.out = make(chan delivery, cfg.SamplesBufferSize)
		p.lastBatcher = nil
	}

	srcCtx, cancelSrc := context.WithCancel(up)
	r.wg.Add(2)
	go func() { // stage 1: source
		defer r.wg.Done()
		defer close(r.raw)
		// no busy time for this stage: a source mostly waits for room in the queue
		err := p.src.Run(srcCtx, r.raw)
		if err != nil && !errors.Is(err, context.Canceled) {
			slog.Error("datago: listing failed", "error", err)
			r.fail(err)
		}
	}()
	go func() { // numbering: Seq, resume filter, tickets
		defer r.wg.Done()
		defer close(r.listed)
		defer cancelSrc()
		r.number(cancelSrc)
	}()
	fetchOut := r.fetched
	if p.ordered {
		fetchOut = r.fetchedRaw
	}
	r.workers(cfg.MaxConnections, r.listed, func(it *source.Item) { r.fetch(it, fetchOut) }, func() { close(fetchOut) }) // stage 2: fetch
	if p.ordered {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(r.fetched)
			reorder(up, r.fetchedRaw, r.fetched)
		}()
	}
	switch { // stage 3+4: process → output
	case batched:
		r.decoders(workers, r.fetched, r.processBatch, r.batcher.end)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(r.out)
			r.emitBatches()
		}()
	case p.ordered:
		r.decoders(workers, r.fetched, r.processOrdered, func() { close(r.out) })
	default:
		r.decoders(workers, r.fetched, r.process, func() { close(r.out) })
	}
}

// setupEpoch tells the source the epoch (and, for a loaded state, the seed and the elastic plan);
// p.mu held.
func (p *Pipeline) setupEpoch(epoch int64, plan *resumePlan) {
	if es, ok := p.src.(interface{ SetEpoch(int64) }); ok {
		es.SetEpoch(epoch)
	}
	if sd, ok := p.src.(interface {
		SetDone(map[int]*source.EntrySet)
	}); ok {
		var done map[int]*source.EntrySet
		if plan != nil && len(plan.shardsAtPhase) > 0 {
			done = toEntrySets(plan.shardsAtPhase)
		}
		sd.SetDone(done)
	}
	if plan != nil && plan.seed != nil && !p.seedGiven {
		if ss, ok := p.src.(interface{ SetSeed(int64) }); ok {
			ss.SetSeed(*plan.seed)
		}
	}
	if sk, ok := p.src.(interface{ SetKeep(func() bool) }); ok {
		// the db source: client-side split in seeded mode (an elastic resume needs a global order)
		if !p.seedGiven {
			sk.SetKeep(nil)
			return
		}
		var hist []Phase
		if plan != nil {
			hist = plan.history
		}
		sk.SetKeep(newSelector(hist, p.rank, p.worldSize).keep)
		return
	}
	sp, ok := p.src.(interface {
		SetPlan(func(n int) ([]int, error))
	})
	if !ok {
		return
	}
	if plan == nil || len(plan.history) == 0 {
		sp.SetPlan(nil)
		return
	}
	hist, rank, ws := plan.history, p.rank, p.worldSize
	sp.SetPlan(func(n int) ([]int, error) {
		rem, err := remaining(n, hist)
		if err != nil {
			return nil, err
		}
		idx := make([]int, 0, len(rem)/ws+1)
		for i := rank; i < len(rem); i += ws {
			idx = append(idx, rem[i])
		}
		return idx, nil
	})
}

// number gives every listed item its Seq (position in the rank's epoch stream), drops the items a
// loaded state says were decided (before any I/O), gives the rest a Ticket and, in ordered mode, a
// place in the window of tickets in flight. In batch mode limit stops the source after limit items.
func (r *run) number(cancelSrc context.CancelFunc) {
	var seq, ticket int64
	limit := int64(r.p.cfg.Limit)
	batched := r.p.cfg.BatchSize > 0
	for it := range r.raw {
		it.Seq = seq
		seq++
		if batched && limit > 0 && ticket >= limit {
			it.Free()
			cancelSrc()
			continue // drain: the source returns on its cancelled context
		}
		if it.Failed { // the source could not use it (but counted its position): skipped
			r.track.locate(it.Seq, it.Shard, it.Entry)
			r.track.decide(it.Seq)
			continue
		}
		if r.track.isDecided(it.Seq) {
			it.Free()
			continue
		}
		r.track.locate(it.Seq, it.Shard, it.Entry)
		it.Ticket = ticket
		ticket++
		if !r.window.acquire(r.up) {
			it.Free()
			continue
		}
		if source.Send(r.up, r.listed, it) != nil {
			r.window.release()
		}
	}
}

// workers runs n goroutines of f over in; after (if any) runs when all have returned.
func (r *run) workers(n int, in <-chan *source.Item, f func(*source.Item), after func()) {
	r.startWorkers(n, in, f, after, false)
}

// decoders is workers for the stages that decode: each goroutine has an OS thread of its own,
// which ends with it (see thread.go), so that a closed client leaves no decode thread behind.
func (r *run) decoders(n int, in <-chan *source.Item, f func(*source.Item), after func()) {
	r.startWorkers(n, in, f, after, true)
}

func (r *run) startWorkers(n int, in <-chan *source.Item, f func(*source.Item), after func(), ownThread bool) {
	var wg sync.WaitGroup
	wg.Add(n)
	r.wg.Add(n + 1)
	for i := 0; i < n; i++ {
		go func() {
			defer r.wg.Done()
			defer wg.Done()
			if ownThread {
				lockThread()
				defer endThread() // runs first: the thread's libvips state goes before the thread
			}
			for {
				select {
				case it, ok := <-in:
					if !ok {
						return
					}
					f(it)
				case <-r.up.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer r.wg.Done()
		wg.Wait()
		if after != nil {
			after()
		}
	}()
}

// delivery is one element of the output queue: a sample (with its Seq) or a batch.
type delivery struct {
	s     output.Sample
	b     output.Batch
	seq   int64
	batch bool
}

func (d delivery) free() {
	if d.batch {
		d.b.Free()
	} else {
		d.s.Free()
	}
}

// fetch reads an item's payloads and passes it on, or skips it (in ordered mode a tombstone
// takes its place, so that the ordered stages stay in step).
func (r *run) fetch(it *source.Item, next chan<- *source.Item) {
	r.stats.List.Count()
	st := &r.stats.Fetch
	st.In()
	start := time.Now()
	n, err := r.p.fetcher.Item(r.up, it)
	r.stats.BytesRead.Add(n)
	st.Done(start, err == nil)
	if err != nil {
		it.Free()
		if r.up.Err() == nil {
			reason := errs.ReasonOf(err, errs.ReasonFetch) // payload_too_large: over max_file_bytes
			r.stats.Skip(reason)
			slog.Warn("datago: skipping sample, fetch failed", "id", it.ID, "path", where(it), "reason", reason, "error", err)
			r.track.decide(it.Seq)
			if r.p.ordered {
				_ = source.Send(r.up, next, &source.Item{Seq: it.Seq, Ticket: it.Ticket, Failed: true})
			}
		}
		return
	}
	_ = source.Send(r.up, next, it) // on cancel, Send frees it
}

func where(it *source.Item) string {
	if it.Image != nil {
		if it.Image.Path != "" {
			return it.Image.Path
		}
		if it.Image.URL != "" {
			return it.Image.URL
		}
	}
	return it.Source + "#" + it.ID
}

// process decodes and transforms an item, then hands it to the output stage.
func (r *run) process(it *source.Item) {
	defer it.Free()
	st := &r.stats.Process
	st.In()
	start := time.Now()
	f, err := r.p.build(it)
	st.Done(start, err == nil)
	if err != nil {
		r.skipped(it, err)
		return
	}
	r.deliver(&f, it.Seq)
}

// skipped counts, logs and records an item whose images could not be made.
func (r *run) skipped(it *source.Item, err error) {
	reason := errs.ReasonOf(err, errs.ReasonTransform)
	r.stats.Skip(reason)
	slog.Warn("datago: skipping sample", "id", it.ID, "path", where(it), "reason", reason, "error", err)
	r.track.decide(it.Seq)
}

// deliver builds the C sample from f and queues it, honouring limit: exactly limit samples are
// delivered, then the run winds down (upstream work is cancelled; the queue still drains to the
// consumer). The output stage's busy time is the time spent building the sample, not the time
// spent waiting for room in the queue (that is the consumer's pace).
func (r *run) deliver(f *output.Fields, seq int64) {
	limit := int64(r.p.cfg.Limit)
	n := r.delivered.Add(1)
	if limit > 0 && n > limit {
		output.Build(f).Free() // the sample owns f's buffers: this frees them
		return
	}
	st := &r.stats.Output
	st.In()
	start := time.Now()
	s := output.Build(f)
	busy := time.Since(start)
	select {
	case r.out <- delivery{s: s, seq: seq}:
		r.stats.Produced.Add(1)
		st.Done(time.Now().Add(-busy), true) // counts busy, leaving out the wait for room
	case <-r.ctx.Done():
		s.Free()
		return
	}
	if limit > 0 && n == limit {
		r.cancelUp()
	}
}

// build decodes and transforms an item's images into the fields of a sample; it moves the latents'
// bytes out of it. On error, what it made so far is freed.
func (p *Pipeline) build(it *source.Item) (output.Fields, error) {
	f := output.Fields{
		ID: it.ID, Source: it.Source, AttributesJSON: it.AttributesJSON,
		Tags: it.Tags, Embedding: it.Embedding, DuplicateState: it.DuplicateState,
	}
	var bucket *transform.Bucket
	fail := func(err error) (output.Fields, error) {
		if f.Image != nil {
			f.Image.Free()
		}
		for i := range f.Masks {
			f.Masks[i].Image.Free()
		}
		for i := range f.AdditionalImages {
			f.AdditionalImages[i].Image.Free()
		}
		return output.Fields{}, err
	}
	if it.Image != nil {
		im, err := transform.Process(it.Image.Data, p.opts, nil, false)
		if err != nil {
			return fail(err)
		}
		f.Image = &im
		if p.opts.CropAndResize {
			bucket = &im.Bucket
		}
	}
	maskOpts := *p.opts
	if maskOpts.Encode != "" {
		maskOpts.Encode = "png" // masks are labels: never lossy
	}
	for _, m := range it.Masks {
		im, err := transform.Process(m.Data, &maskOpts, bucket, true)
		if err != nil {
			return fail(fmt.Errorf("mask %q: %w", m.Name, err))
		}
		f.Masks = append(f.Masks, output.Named{Name: m.Name, Image: im})
	}
	for _, a := range it.AdditionalImages {
		im, err := transform.Process(a.Data, p.opts, bucket, false)
		if err != nil {
			return fail(fmt.Errorf("additional image %q: %w", a.Name, err))
		}
		f.AdditionalImages = append(f.AdditionalImages, output.Named{Name: a.Name, Image: im})
	}
	for _, l := range it.Latents {
		f.Latents = append(f.Latents, output.Blob{Name: l.Name, Data: l.Data})
		l.Data = cmem.Buf{} // ownership moved into the Blob (Build detaches it into the sample)
	}
	return f, nil
}

// Next waits up to timeout (< 0: forever) for a sample. It starts the pipeline if needed.
func (p *Pipeline) Next(timeout time.Duration) (output.Sample, Status, error) {
	if p.cfg.BatchSize > 0 {
		return output.Sample{}, StatusError, errs.Errorf(errs.Value, "this client delivers batches (batch_size %d): use get_batch", p.cfg.BatchSize)
	}
	d, st, err := p.next(timeout)
	return d.s, st, err
}

// NextBatch waits up to timeout (< 0: forever) for a batch (batch_size > 0).
func (p *Pipeline) NextBatch(timeout time.Duration) (output.Batch, Status, error) {
	if p.cfg.BatchSize <= 0 {
		return output.Batch{}, StatusError, errs.Errorf(errs.Value, "get_batch needs the config key batch_size > 0 (this client delivers samples: use get_sample)")
	}
	d, st, err := p.next(timeout)
	return d.b, st, err
}

func (p *Pipeline) next(timeout time.Duration) (delivery, Status, error) {
	p.Start()
	p.mu.Lock()
	r, closed := p.cur, p.closed
	p.mu.Unlock()
	if closed {
		return delivery{}, StatusError, errClosed
	}
	if r == nil { // stopped concurrently
		return delivery{}, StatusEnd, nil
	}
	recv := func(d delivery, ok bool) (delivery, Status, error) {
		if ok {
			if d.batch {
				r.track.decide(d.b.Seqs()...)
			} else {
				r.track.decide(d.seq)
			}
			return d, StatusSample, nil
		}
		if err := r.error(); err != nil {
			return delivery{}, StatusError, err
		}
		return delivery{}, StatusEnd, nil
	}
	select { // fast path: ready
	case d, ok := <-r.out:
		return recv(d, ok)
	default:
	}
	if timeout < 0 {
		d, ok := <-r.out
		return recv(d, ok)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case d, ok := <-r.out:
		return recv(d, ok)
	case <-t.C:
		return delivery{}, StatusTimeout, nil
	}
}

// Stop cancels the run, waits for every goroutine and frees every queued sample and buffer.
// Idempotent (a Stop while another is at work waits for it); a later Start begins a new epoch.
func (p *Pipeline) Stop() {
	p.mu.Lock()
	r := p.cur
	if r == nil {
		p.mu.Unlock()
		return
	}
	if r.stopping {
		p.mu.Unlock()
		<-r.done
		return
	}
	r.stopping = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.cur = nil
		p.mu.Unlock()
		close(r.done)
	}()
	r.cancel()
	r.wg.Wait()
	r.cancelUp()
	for _, ch := range []chan *source.Item{r.raw, r.listed, r.fetchedRaw, r.fetched} {
		if ch == nil {
			continue
		}
		for it := range ch {
			it.Free()
		}
	}
	for d := range r.out {
		d.free()
	}
	if r.batcher != nil {
		r.batcher.free()
	}
}

// SetEpoch sets the epoch of the next start.
func (p *Pipeline) SetEpoch(e int64) error {
	if e < 0 {
		return errs.Errorf(errs.Value, "set_epoch: epoch must be >= 0, got %d", e)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextEpoch = e
	if p.resume != nil && p.resume.epoch != e {
		p.resume = nil // a state is for its own epoch
	}
	return nil
}

// errClosed is what Next returns once the pipeline is closed.
var errClosed = errs.Errorf(errs.Closed, "the client is closed")

// Close stops the pipeline for good: a Start or Next that races with it (a thread that looked the
// client up before it was freed) cannot start a new run that nobody would ever stop.
func (p *Pipeline) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Stop()
	p.ra.free()
	p.http.CloseIdle() // its pooled connections would otherwise linger until their idle timeout
	// the run's decoders left free chunks in every malloc arena: give their pages back to the
	// system now, not when (if ever) an arena's top is freed
	cmem.Trim()
}

// Stats is a snapshot of the latest run's counters.
func (p *Pipeline) Stats() stats.Snapshot {
	p.mu.Lock()
	r, st := p.cur, p.last
	if r != nil && r.stopping {
		r = nil
	}
	base := p.httpBase
	p.mu.Unlock()
	snap := st.Snapshot()
	snap.HTTP = p.http.Counters().Sub(base).Map()
	// samples a source drops before the pipeline sees them (e.g. a tar sample without its image)
	if sk, ok := p.src.(interface{ Skipped() map[string]int64 }); ok {
		for reason, n := range sk.Skipped() {
			snap.SkippedReasons[reason] += n
			snap.SamplesSkipped += n
		}
	}
	if r != nil {
		snap.Running = true
		snap.QueueLength, snap.QueueCapacity = len(r.out), cap(r.out)
	}
	p.mu.Lock()
	b := p.lastBatcher
	p.mu.Unlock()
	if b != nil {
		snap.PartialBatchesFlushed, snap.PartialBatchesAtEnd, snap.PartialBatchesDropped = b.counts()
		snap.BatchesProduced = p.last.Batches.Load()
	}
	return snap
}
