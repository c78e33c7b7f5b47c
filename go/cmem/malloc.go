package cmem

// The process's C heap (glibc malloc) is shared by libvips, libjpeg-turbo, our decoders and the
// host (Python). By default glibc gives each thread that contends for a lock an arena of its
// own, up to 8 per core, and an arena's freed memory is only returned to the system from its top:
// with the Go runtime's many threads each running decoders, RSS settles far above what is live
// (hundreds of MB of free chunks) and stays there after the clients are closed. Two measures:
//
//   - a bounded arena count, set when the library is loaded (a C constructor, before the Go
//     runtime or libvips start threads): mallopt(M_ARENA_MAX, DefaultArenaMax), unless the user
//     chose: MALLOC_ARENA_MAX or GLIBC_TUNABLES=...glibc.malloc.arena_max=... in the environment
//     (glibc applies those itself), or DATAGO_MALLOC_ARENA_MAX=n (n > 0: n arenas; 0: leave
//     glibc's default). It affects the whole process, the host included.
//   - on request only, a fixed mmap threshold (see MmapThreshold), set by the same constructor;
//   - Trim (malloc_trim(0)) when a client closes, which returns every arena's free pages.
//
// Without glibc (musl, macOS) both are no-ops.

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// DG_DEFAULT_ARENA_MAX: see DefaultArenaMax.
#define DG_DEFAULT_ARENA_MAX 2

// What the constructor decided: the arena count set with mallopt (> 0), or 0 when it set nothing;
// and why (a static string).
static int dg_arena_max = 0;
static const char *dg_arena_why = "not decided";

// dg_decide_arena_max applies the policy above to the given environment values (NULL: unset);
// returns the arena count to set (0: set nothing) and its reason in *why.
static int dg_decide_arena_max(const char *malloc_arena_max, const char *tunables, const char *ours,
                               const char **why) {
#ifndef __GLIBC__
    *why = "not glibc";
    return 0;
#else
    if (malloc_arena_max != NULL && malloc_arena_max[0] != '\0') {
        *why = "MALLOC_ARENA_MAX";
        return 0;
    }
    if (tunables != NULL && strstr(tunables, "glibc.malloc.arena_max=") != NULL) {
        *why = "GLIBC_TUNABLES";
        return 0;
    }
    if (ours != NULL && ours[0] != '\0') {
        char *end = NULL;
        long n = strtol(ours, &end, 10);
        if (end == ours || *end != '\0' || n < 0 || n > 4096) {
            *why = "DATAGO_MALLOC_ARENA_MAX invalid (default used)";
            return DG_DEFAULT_ARENA_MAX;
        }
        *why = "DATAGO_MALLOC_ARENA_MAX";
        return (int)n;
    }
    *why = "datago default";
    return DG_DEFAULT_ARENA_MAX;
#endif
}

static int dg_mmap_threshold = 0;

// dg_decide_mmap_threshold: the mmap threshold to set, 0 for none (glibc's dynamic default, or the
// user's MALLOC_MMAP_THRESHOLD_ / glibc.malloc.mmap_threshold); DATAGO_MALLOC_MMAP_THRESHOLD=n
// (bytes, up to 32 MiB) fixes it.
static int dg_decide_mmap_threshold(const char *malloc_env, const char *tunables, const char *ours) {
#ifndef __GLIBC__
    return 0;
#else
    if (malloc_env != NULL && malloc_env[0] != '\0') return 0;
    if (tunables != NULL && strstr(tunables, "glibc.malloc.mmap_threshold=") != NULL) return 0;
    if (ours != NULL && ours[0] != '\0') {
        char *end = NULL;
        long n = strtol(ours, &end, 10);
        if (end == ours || *end != '\0' || n < 0 || n > (32L << 20)) return 0;
        return (int)n;
    }
    return 0;
#endif
}

static void dg_apply_arena_max(void) {
    int n = dg_decide_arena_max(getenv("MALLOC_ARENA_MAX"), getenv("GLIBC_TUNABLES"),
                                getenv("DATAGO_MALLOC_ARENA_MAX"), &dg_arena_why);
    int t = dg_decide_mmap_threshold(getenv("MALLOC_MMAP_THRESHOLD_"), getenv("GLIBC_TUNABLES"),
                                     getenv("DATAGO_MALLOC_MMAP_THRESHOLD"));
#ifdef __GLIBC__
    if (n > 0 && mallopt(M_ARENA_MAX, n) != 1) n = 0;
    if (t > 0 && mallopt(M_MMAP_THRESHOLD, t) != 1) t = 0;
#endif
    dg_arena_max = n;
    dg_mmap_threshold = t;
}

static int dg_mmap_threshold_set(void) { return dg_mmap_threshold; }

// Priority 101 (the first one programs may use): before the library's constructors without a
// priority, among them the Go runtime's, which starts threads that allocate (each would take an
// arena of its own before the bound is set).
__attribute__((constructor(101))) static void dg_malloc_init(void) { dg_apply_arena_max(); }

static int dg_arena_max_set(void) { return dg_arena_max; }
static const char *dg_arena_max_why(void) { return dg_arena_why; }

static int dg_trim(void) {
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}

// dg_heaps counts the malloc arenas in use ("<heap nr=" elements of malloc_info), -1 without glibc.
static int dg_heaps(void) {
#ifdef __GLIBC__
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) return -1;
    malloc_info(0, f);
    fclose(f);
    int n = 0;
    for (const char *p = text; (p = strstr(p, "<heap nr=")) != NULL; p++) n++;
    free(text);
    return n;
#else
    return -1;
#endif
}
*/
import "C"

import (
	"sync/atomic"
	"unsafe"
)

// DefaultArenaMax is the malloc arena count set at load time when the environment does not choose.
const DefaultArenaMax = C.DG_DEFAULT_ARENA_MAX

// ArenaMax reports what was decided when the library was loaded: the arena count set with
// mallopt(M_ARENA_MAX) (0 when none was set) and why ("datago default", "MALLOC_ARENA_MAX",
// "GLIBC_TUNABLES", "DATAGO_MALLOC_ARENA_MAX", ...).
func ArenaMax() (n int, why string) {
	return int(C.dg_arena_max_set()), C.GoString(C.dg_arena_max_why())
}

// MmapThreshold is the malloc mmap threshold set at load time (bytes; 0, the default, when none was
// set: glibc's dynamic threshold, which rises to the largest block freed, up to 32 MiB, so decode
// buffers are reused from the heap). DATAGO_MALLOC_MMAP_THRESHOLD=n fixes it at n bytes: buffers
// of n or more then come from mmap and go back to the system at free, which keeps RSS a little
// lower (186-203 vs 195-226 MB on 1600-px photos) but costs a page fault and a zeroed page per
// 4 KiB on every image: 14% of throughput (datago-bench, 2 workers, web demo set, 2026-12-02:
// 185 vs 212 images/s, system time 0.9-1.5 s vs 0.5 s per 600 images), so it is not the default.
func MmapThreshold() int { return int(C.dg_mmap_threshold_set()) }

// decideArenaMax is the policy of the load-time constructor for given environment values
// (nil: unset); for tests.
func decideArenaMax(mallocArenaMax, tunables, ours *string) (int, string) {
	cs := func(s *string) *C.char {
		if s == nil {
			return nil
		}
		return C.CString(*s)
	}
	a, b, c := cs(mallocArenaMax), cs(tunables), cs(ours)
	defer C.free(unsafe.Pointer(a))
	defer C.free(unsafe.Pointer(b))
	defer C.free(unsafe.Pointer(c))
	var why *C.char
	n := C.dg_decide_arena_max(a, b, c, &why)
	return int(n), C.GoString(why)
}

var trims atomic.Int64

// Trim returns the free memory of every malloc arena to the system (malloc_trim(0); a no-op
// without glibc). It walks every arena under its lock: call it when a client closes, not per sample.
func Trim() {
	trims.Add(1)
	C.dg_trim()
}

// Trims is the number of Trim calls so far (for tests).
func Trims() int64 { return trims.Load() }

// Heaps is the number of malloc arenas the process has created (-1 without glibc).
func Heaps() int { return int(C.dg_heaps()) }

// touchMalloc makes the calling thread allocate and free once from the C heap (tests: a thread's
// first malloc attaches it to an arena, a new one while the arena limit allows).
func touchMalloc() { C.free(C.malloc(64)) }
