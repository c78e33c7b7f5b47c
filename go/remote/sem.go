package remote

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// budget is the bytes of whole-file Gets in flight: a weighted semaphore (first come, first served,
// so a large request is not starved by small ones), plus the count of bytes held (for tests).
type budget struct {
	sem  *semaphore.Weighted
	size int64
	cur  atomic.Int64
}

func newBudget(size int64) *budget { return &budget{sem: semaphore.NewWeighted(size), size: size} }

// clamp keeps a weight within [1, size] so that any request can eventually proceed (alone).
func (b *budget) clamp(n int64) int64 {
	return max(1, min(n, b.size))
}

// Acquire takes n bytes of the budget (n must come from clamp), or returns ctx.Err().
func (b *budget) Acquire(ctx context.Context, n int64) error {
	if err := b.sem.Acquire(ctx, n); err != nil {
		return err
	}
	b.cur.Add(n)
	return nil
}

// Release returns n bytes to the budget.
func (b *budget) Release(n int64) {
	b.cur.Add(-n)
	b.sem.Release(n) // panics when more is released than was acquired
}

// inUse reports the bytes currently acquired (tests).
func (b *budget) inUse() int64 { return b.cur.Load() }
