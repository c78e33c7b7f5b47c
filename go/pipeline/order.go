package pipeline

import (
	"context"
	"sync"

	"github.com/datago-dev/datago/go/source"
)

// Ordered delivery (a seed is set): the source numbers its items (Seq: position in the rank's
// epoch stream; Ticket: position among the items processed in this run). Fetching and decoding run
// in parallel; a reorder buffer hands the fetched items to the decoders in ticket order, and after
// decoding (where failures become known) a turnstile lets each item, in ticket order, take its
// place: its batch slot, or its place in the per-sample queue. Goroutines waiting at the turnstile
// do not hold a CPU slot (cpuSem), so ordering costs little parallelism.

// turnstile admits tickets in order. Tickets that will never arrive (failed items) are skipped.
type turnstile struct {
	mu      sync.Mutex
	cond    *sync.Cond
	next    int64
	skipped map[int64]bool
	ctx     context.Context
}

func newTurnstile(ctx context.Context) *turnstile {
	t := &turnstile{skipped: map[int64]bool{}, ctx: ctx}
	t.cond = sync.NewCond(&t.mu)
	context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	return t
}

// wait blocks until it is ticket's turn (true) or the run is cancelled (false).
func (t *turnstile) wait(ticket int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.next != ticket {
		if t.ctx.Err() != nil {
			return false
		}
		t.cond.Wait()
	}
	return t.ctx.Err() == nil
}

// advance moves past next and any skipped tickets after it; t.mu held.
func (t *turnstile) advance() {
	t.next++
	for t.skipped[t.next] {
		delete(t.skipped, t.next)
		t.next++
	}
	t.cond.Broadcast()
}

// leave ends the current turn (the caller's, after wait).
func (t *turnstile) leave() {
	t.mu.Lock()
	t.advance()
	t.mu.Unlock()
}

// skip marks ticket as never coming: it is passed over without waiting.
func (t *turnstile) skip(ticket int64) {
	t.mu.Lock()
	if t.next == ticket {
		t.advance()
	} else {
		t.skipped[ticket] = true
	}
	t.mu.Unlock()
}

// sem is a counting semaphore (window of tickets in flight, CPU slots).
type sem chan struct{}

func (s sem) acquire(ctx context.Context) bool {
	if s == nil {
		return true
	}
	select {
	case s <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s sem) release() {
	if s != nil {
		<-s
	}
}

// reorder passes items from in to out in ticket order (tombstones included). It returns when in
// is closed and drained, or ctx is done; items it still holds are freed. The number of items it
// can hold is bounded by the window of tickets in flight (acquired by the numbering stage).
func reorder(ctx context.Context, in <-chan *source.Item, out chan<- *source.Item) {
	held := map[int64]*source.Item{}
	defer func() {
		for _, it := range held {
			it.Free()
		}
	}()
	var next int64
	for {
		select {
		case it, ok := <-in:
			if !ok {
				return
			}
			held[it.Ticket] = it
			for {
				it, ok := held[next]
				if !ok {
					break
				}
				delete(held, next)
				next++
				select {
				case out <- it:
				case <-ctx.Done():
					it.Free()
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// cpuSlots is a counting semaphore of CPU slots with two priorities: work that finishes a sample
// already placed (storing into its batch slot, which a batch waits for) goes before new decodes.
// A nil *cpuSlots does nothing.
type cpuSlots struct {
	mu       sync.Mutex
	cond     *sync.Cond
	ctx      context.Context
	free     int
	waitHigh int
}

func newCPUSlots(ctx context.Context, n int) *cpuSlots {
	c := &cpuSlots{ctx: ctx, free: n}
	c.cond = sync.NewCond(&c.mu)
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	return c
}

// acquire takes a slot (high: ahead of every low waiter); false when the run is cancelled.
func (c *cpuSlots) acquire(high bool) bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if high {
		c.waitHigh++
		defer func() { c.waitHigh-- }()
	}
	for c.free == 0 || (!high && c.waitHigh > 0) {
		if c.ctx.Err() != nil {
			return false
		}
		c.cond.Wait()
	}
	if c.ctx.Err() != nil {
		return false
	}
	c.free--
	return true
}

func (c *cpuSlots) release() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.free++
	c.cond.Broadcast()
	c.mu.Unlock()
}
