package pipeline

// #cgo pkg-config: vips
// #include <vips/vips.h>
import "C"

import (
	"runtime"
	"sync/atomic"
	"syscall"
)

// Decode workers each run on an OS thread of their own, which ends with them. The Go runtime
// never ends an idle thread: without this, every thread that ever ran a decoder (cgo calls take
// a thread each) stayed in the process after its client closed — with libvips' per-thread buffers
// and its malloc arena. A goroutine that returns while locked to its thread takes the thread with
// it (runtime.LockOSThread); libvips is told first, so that it frees what it keeps per thread.

// threadsEnded counts the decode threads that have ended (for tests).
var threadsEnded atomic.Int64

// endThreadHook, when set (tests), is called with the thread id of each decode thread that ends.
var endThreadHook atomic.Pointer[func(tid int)]

// lockThread binds the calling goroutine to its OS thread until it returns; call endThread (deferred)
// in the same goroutine.
func lockThread() { runtime.LockOSThread() }

// endThread frees libvips' per-thread state of the calling thread; the goroutine must return
// right after, still locked, so that the runtime ends the thread.
func endThread() {
	C.vips_thread_shutdown()
	threadsEnded.Add(1)
	if h := endThreadHook.Load(); h != nil {
		(*h)(syscall.Gettid())
	}
}
