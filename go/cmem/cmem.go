// Package cmem holds byte buffers in C memory. Encoded bytes are read straight into C memory so that
// libvips can keep a pointer to them across calls without ever holding a Go pointer (cgo rules).
package cmem

// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"unsafe"
)

// Buf is a C-allocated byte buffer. The zero value is empty. It has exactly one owner, which must
// call Free once.
type Buf struct {
	Ptr unsafe.Pointer
	Len int
	cap int
}

var live atomic.Int64

// Live returns the number of buffers allocated and not yet freed (for leak tests).
func Live() int64 { return live.Load() }

// Alloc returns a buffer of n bytes (uninitialised). It panics only if C memory is exhausted.
func Alloc(n int) Buf {
	size := n
	if size == 0 {
		size = 1
	}
	p := C.malloc(C.size_t(size))
	if p == nil {
		panic("cmem: out of memory")
	}
	live.Add(1)
	return Buf{Ptr: p, Len: n, cap: size}
}

// Bytes is a Go slice that views the C memory. It must not outlive the buffer.
func (b Buf) Bytes() []byte {
	if b.Ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(b.Ptr), b.Len)
}

// Free releases the memory; calling it on an empty buffer is a no-op.
func (b *Buf) Free() {
	if b.Ptr != nil {
		C.free(b.Ptr)
		live.Add(-1)
	}
	*b = Buf{}
}

// ErrTooLarge is returned when an input exceeds the configured byte cap.
var ErrTooLarge = errors.New("input larger than the byte cap")

// ReadFile reads a whole file into C memory. Files larger than maxBytes (> 0) are refused, and so
// are files that are not regular (after symlinks): opening a FIFO would block for a writer that
// may never come, with no way to cancel it.
func ReadFile(path string, maxBytes int64) (Buf, error) {
	if st, err := os.Stat(path); err != nil {
		return Buf{}, err
	} else if !st.Mode().IsRegular() {
		return Buf{}, fmt.Errorf("%s: not a regular file (%v)", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return Buf{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Buf{}, err
	}
	return ReadAll(f, st.Size(), maxBytes)
}

// maxHintAlloc caps the first allocation ReadAll makes from a size hint (bytes).
const maxHintAlloc = 64 << 20

// ReadAll reads r to its end into C memory. sizeHint (>= 0 when known) sizes the first allocation;
// more than maxBytes (> 0) bytes gives ErrTooLarge.
func ReadAll(r io.Reader, sizeHint, maxBytes int64) (Buf, error) {
	if maxBytes > 0 && sizeHint > maxBytes {
		return Buf{}, fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, sizeHint, maxBytes)
	}
	capacity := 64 << 10
	if sizeHint >= 0 {
		// +1 so a correct hint reaches EOF without a grow; a hint is untrusted (a tar header, a
		// Content-Length), so it sizes at most maxHintAlloc up front and the rest grows as read
		capacity = int(min(sizeHint, maxHintAlloc)) + 1
	}
	p := C.malloc(C.size_t(capacity))
	if p == nil {
		return Buf{}, errors.New("cmem: out of memory")
	}
	live.Add(1)
	b := Buf{Ptr: p, cap: capacity}
	for {
		if b.Len == b.cap {
			if maxBytes > 0 && int64(b.Len) >= maxBytes+1 {
				b.Free()
				return Buf{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
			}
			newCap := b.cap * 2
			p := C.realloc(b.Ptr, C.size_t(newCap))
			if p == nil {
				b.Free()
				return Buf{}, errors.New("cmem: out of memory")
			}
			b.Ptr, b.cap = p, newCap
		}
		n, err := r.Read(unsafe.Slice((*byte)(unsafe.Add(b.Ptr, b.Len)), b.cap-b.Len))
		b.Len += n
		if err == io.EOF {
			if maxBytes > 0 && int64(b.Len) > maxBytes {
				b.Free()
				return Buf{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
			}
			return b, nil
		}
		if err != nil {
			b.Free()
			return Buf{}, err
		}
	}
}

// Detach hands the memory to a new owner that frees it with C free(); b becomes empty.
func (b *Buf) Detach() unsafe.Pointer {
	p := b.Ptr
	if p != nil {
		live.Add(-1)
	}
	*b = Buf{}
	return p
}
