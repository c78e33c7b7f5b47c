package remote

import (
	"container/list"
	"context"
	"sync"
)

// budget is a weighted FIFO semaphore: the bytes in flight. Acquire(n) waits until n more bytes fit
// in the budget (first come, first served, so a large request is not starved by small ones).
type budget struct {
	mu      sync.Mutex
	size    int64
	cur     int64
	waiters list.List // of *waiter
}

type waiter struct {
	n     int64
	ready chan struct{} // closed when the bytes were granted
}

func newBudget(size int64) *budget { return &budget{size: size} }

// clamp keeps a weight within [1, size] so that any request can eventually proceed (alone).
func (b *budget) clamp(n int64) int64 {
	return max(1, min(n, b.size))
}

// Acquire takes n bytes of the budget (n must come from clamp), or returns ctx.Err().
func (b *budget) Acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if b.cur+n <= b.size && b.waiters.Len() == 0 {
		b.cur += n
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready: // granted while we were giving up: hand the bytes back
			b.cur -= n
		default:
			b.waiters.Remove(elem)
		}
		b.grant()
		b.mu.Unlock()
		return ctx.Err()
	}
}

// Release returns n bytes to the budget.
func (b *budget) Release(n int64) {
	b.mu.Lock()
	b.cur -= n
	if b.cur < 0 {
		b.mu.Unlock()
		panic("remote: budget released more than acquired")
	}
	b.grant()
	b.mu.Unlock()
}

// grant wakes the waiters at the front of the queue that now fit. b.mu is held.
func (b *budget) grant() {
	for {
		front := b.waiters.Front()
		if front == nil {
			return
		}
		w := front.Value.(*waiter)
		if b.cur+w.n > b.size {
			return
		}
		b.cur += w.n
		b.waiters.Remove(front)
		close(w.ready)
	}
}

// inUse reports the bytes currently acquired (tests).
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}
