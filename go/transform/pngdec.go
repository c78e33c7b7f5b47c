package transform

/*
#include <stdlib.h>
#include "pngdec.h"

int dg_png_simd(int level); // pngfilter.h
*/
import "C"

import (
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
)

// pngDecode runs our PNG decoder alone (for tests) on the PNG in data, flattening alpha onto
// white with flatten, under fail_on "warning". It returns the pixels (w×h×bands bytes, rows packed) and false when the
// decoder declines the image (or runs out of memory).
func pngDecode(data []byte, flatten bool) (pix []byte, w, h, bands int, ok bool) {
	buf := cmem.Alloc(len(data))
	defer buf.Free()
	copy(buf.Bytes(), data)
	var p C.dg_png
	msg := (*C.char)(C.calloc(C.DG_MSG_LEN, 1))
	defer C.free(unsafe.Pointer(msg))
	if C.dg_png_decode((*C.uint8_t)(buf.Ptr), C.size_t(len(data)), boolInt(flatten), C.DG_FAIL_WARNING, &p, msg) != 0 {
		return nil, 0, 0, 0, false
	}
	defer C.dg_png_free(&p)
	w, h, bands = int(p.width), int(p.height), int(p.bands)
	pix = make([]byte, 0, w*h*bands)
	for y := 0; y < h; y++ {
		row := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(p.pixels), y*int(p.stride))), w*bands)
		pix = append(pix, row...)
	}
	return pix, w, h, bands, true
}

// pngSIMD selects the PNG unfiltering kernels (2 AVX2 when the CPU has it, 0 SSE2 only, -1
// detect) and returns the previous setting; tests check that both give the same pixels.
func pngSIMD(level int) int { return int(C.dg_png_simd(C.int(level))) }
