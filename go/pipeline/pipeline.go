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
	opts    *transform.Options

	mu     sync.Mutex
	cur    *run         // nil when not started; a run being stopped stays here until it is done
	last   *stats.Stats // counters of the latest run
	closed bool         // Close was called: Start does nothing any more
}

// New validates cfg and builds the source; nothing runs before Start.
func New(cfg *config.Config) (*Pipeline, error) {
	if err := transform.Init(); err != nil {
		return nil, errs.Errorf(errs.Runtime, "%v", err)
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
	if ic.PreEncodeImages {
		opts.Encode = ic.EncodeFormat
	}
	if ic.CropAndResize {
		if opts.Buckets, err = transform.BuildBuckets(ic.DefaultImageSize, ic.DownsamplingRatio, ic.MinAspectRatio, ic.MaxAspectRatio); err != nil {
			return nil, errs.Errorf(errs.Value, "image_config: %v", err)
		}
	}
	return &Pipeline{cfg: cfg, src: src, fetcher: &fetch.Fetcher{MaxBytes: cfg.MaxFileBytes, HTTP: http}, http: http, opts: opts, last: stats.New()}, nil
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
	listed           chan *source.Item
	fetched          chan *source.Item
	out              chan output.Sample
	delivered        atomic.Int64
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
// finish, then starts a new run: two runs of the same source never overlap.
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
	ctx, cancel := context.WithCancel(context.Background())
	up, cancelUp := context.WithCancel(ctx)
	r := &run{
		p: p, ctx: ctx, cancel: cancel, up: up, cancelUp: cancelUp,
		listed:  make(chan *source.Item, p.cfg.PrefetchBufferSize),
		fetched: make(chan *source.Item, p.cfg.PrefetchBufferSize),
		out:     make(chan output.Sample, p.cfg.SamplesBufferSize),
		stats:   stats.New(),
		done:    make(chan struct{}),
	}
	p.cur, p.last = r, r.stats

	r.wg.Add(1)
	go func() { // stage 1: source
		defer r.wg.Done()
		defer close(r.listed)
		// no busy time for this stage: a source mostly waits for room in the queue
		err := p.src.Run(r.up, r.listed)
		if err != nil && !errors.Is(err, context.Canceled) {
			slog.Error("datago: listing failed", "error", err)
			r.fail(err)
		}
	}()
	stage(r, p.cfg.MaxConnections, r.listed, r.fetched, r.fetch) // stage 2: fetch
	stage(r, p.cfg.NumThreads, r.fetched, nil, r.process)        // stage 3+4: process → output
}

// stage runs n workers of f over in. When every worker has returned, closeAfter (if any) is closed
// — and for the last stage, the output queue.
func stage(r *run, n int, in <-chan *source.Item, next chan *source.Item, f func(*source.Item)) {
	var workers sync.WaitGroup
	workers.Add(n)
	r.wg.Add(n + 1)
	for i := 0; i < n; i++ {
		go func() {
			defer r.wg.Done()
			defer workers.Done()
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
		workers.Wait()
		if next != nil {
			close(next)
		} else {
			close(r.out)
		}
	}()
}

// fetch reads an item's payloads and passes it on, or skips it.
func (r *run) fetch(it *source.Item) {
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
		}
		return
	}
	_ = source.Send(r.up, r.fetched, it) // on cancel, Send frees it
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
		reason := errs.ReasonOf(err, errs.ReasonTransform)
		r.stats.Skip(reason)
		slog.Warn("datago: skipping sample", "id", it.ID, "path", where(it), "reason", reason, "error", err)
		return
	}
	r.deliver(&f)
}

// deliver builds the C sample from f and queues it, honouring limit: exactly limit samples are
// delivered, then the run winds down (upstream work is cancelled; the queue still drains to the
// consumer). The output stage's busy time is the time spent building the sample, not the time
// spent waiting for room in the queue (that is the consumer's pace).
func (r *run) deliver(f *output.Fields) {
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
	case r.out <- s:
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
	p.Start()
	p.mu.Lock()
	r, closed := p.cur, p.closed
	p.mu.Unlock()
	if closed {
		return output.Sample{}, StatusError, errClosed
	}
	if r == nil { // stopped concurrently
		return output.Sample{}, StatusEnd, nil
	}
	recv := func(s output.Sample, ok bool) (output.Sample, Status, error) {
		if ok {
			return s, StatusSample, nil
		}
		if err := r.error(); err != nil {
			return output.Sample{}, StatusError, err
		}
		return output.Sample{}, StatusEnd, nil
	}
	select { // fast path: a sample is ready
	case s, ok := <-r.out:
		return recv(s, ok)
	default:
	}
	if timeout < 0 {
		s, ok := <-r.out
		return recv(s, ok)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s, ok := <-r.out:
		return recv(s, ok)
	case <-t.C:
		return output.Sample{}, StatusTimeout, nil
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
	for it := range r.listed {
		it.Free()
	}
	for it := range r.fetched {
		it.Free()
	}
	for s := range r.out {
		s.Free()
	}
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
	p.http.CloseIdle() // its pooled connections would otherwise linger until their idle timeout
}

// Stats is a snapshot of the latest run's counters.
func (p *Pipeline) Stats() stats.Snapshot {
	p.mu.Lock()
	r, st := p.cur, p.last
	if r != nil && r.stopping {
		r = nil
	}
	p.mu.Unlock()
	snap := st.Snapshot()
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
	return snap
}
