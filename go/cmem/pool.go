package cmem

// #include <stdlib.h>
import "C"

import (
	"math/bits"
	"sync"
	"unsafe"
)

// A pool of big buffers in power-of-two size classes, bounded in total. Encoded files are read
// into buffers of a few hundred KB to a few MB, one per sample: malloc serves sizes like these from
// mmap at first, then (its threshold rises after the first free) from the arenas, where buffers
// of every size interleave with the decoders' allocations and fragment the heap. Reusing a buffer
// of the same class avoids both. Buffers smaller than PoolMinClass (malloc's bins serve them
// well) or larger than PoolMaxClass are not pooled. DrainPool (a client's close) frees them all.
const (
	PoolMinClass = 128 << 10 // bytes
	PoolMaxClass = 64 << 20  // bytes
	// PoolLimit bounds the bytes the pool keeps (buffers freed beyond it go back to malloc).
	PoolLimit = 64 << 20
)

const (
	minShift = 17 // log2(PoolMinClass)
	nClasses = 26 - minShift + 1
)

var pool struct {
	mu    sync.Mutex
	free  [nClasses][]unsafe.Pointer
	bytes int
}

// poolClass is the class index and size for a buffer of at least n bytes; ok is false when n is
// outside [1, PoolMaxClass] or below PoolMinClass / 2 (not worth rounding up).
func poolClass(n int) (idx, size int, ok bool) {
	if n <= PoolMinClass/2 || n > PoolMaxClass {
		return 0, 0, false
	}
	shift := bits.Len(uint(n - 1)) // smallest power of two >= n
	if shift < minShift {
		shift = minShift
	}
	return shift - minShift, 1 << shift, true
}

// allocCap returns C memory of at least n bytes (> 0) and its capacity: a pooled buffer of n's
// class, a new one of the class size, or malloc(n) for sizes the pool does not hold; nil when
// malloc fails.
func allocCap(n int) (unsafe.Pointer, int) {
	idx, size, ok := poolClass(n)
	if !ok {
		return C.malloc(C.size_t(n)), n
	}
	pool.mu.Lock()
	if l := len(pool.free[idx]); l > 0 {
		p := pool.free[idx][l-1]
		pool.free[idx] = pool.free[idx][:l-1]
		pool.bytes -= size
		pool.mu.Unlock()
		return p, size
	}
	pool.mu.Unlock()
	return C.malloc(C.size_t(size)), size
}

// release keeps p (capacity bytes) in the pool when it is of a class size and the pool has room,
// else frees it.
func release(p unsafe.Pointer, capacity int) {
	if idx, size, ok := poolClass(capacity); ok && size == capacity {
		pool.mu.Lock()
		if pool.bytes+size <= PoolLimit {
			pool.free[idx] = append(pool.free[idx], p)
			pool.bytes += size
			pool.mu.Unlock()
			return
		}
		pool.mu.Unlock()
	}
	C.free(p)
}

// DrainPool frees every pooled buffer (a client's close; the pool fills again as clients run).
func DrainPool() {
	pool.mu.Lock()
	var all []unsafe.Pointer
	for i := range pool.free {
		all = append(all, pool.free[i]...)
		pool.free[i] = nil
	}
	pool.bytes = 0
	pool.mu.Unlock()
	for _, p := range all {
		C.free(p)
	}
}

// PoolStats is the number of buffers the pool holds and their bytes.
func PoolStats() (buffers, bytes int) {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for i := range pool.free {
		buffers += len(pool.free[i])
	}
	return buffers, pool.bytes
}

// freeC frees C memory with free() (tests: what the new owner of a detached buffer does).
func freeC(p unsafe.Pointer) { C.free(p) }
