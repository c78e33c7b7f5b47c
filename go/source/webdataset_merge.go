package source

import (
	"context"

	"golang.org/x/sync/errgroup"
)

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
		g     errgroup.Group // the shard readers; each keeps its error for its turn (no early cancel)
		slots []*reader      // the shards being read, in turn order
	)
	defer func() {
		cancel()
		_ = g.Wait() // readers return nil: their errors are in r.err
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
		g.Go(func() error {
			defer close(r.ch)
			r.err = w.readShard(ctx, sh, r.ch)
			return nil
		})
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
