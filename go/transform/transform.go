// Package transform is the decode/transform stage: encoded bytes in, pixels (or re-encoded bytes)
// out, through libvips. See vips.c for the chain per image.
package transform

/*
#cgo pkg-config: vips
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm -ldeflate -ljpeg
#include <stdlib.h>
#include "vips.h"
#include "resample.h"
#include "pngdec.h"
#include "jpegdec.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/errs"
)

// Options is the per-client image configuration (datago's image_config).
type Options struct {
	CropAndResize bool
	Buckets       Buckets
	ToRGB8        bool
	FlattenAlpha  bool
	Encode        string // "", "png" or "jpeg"
	JPEGQuality   int
	MaxPixels     int64 // images with more pixels are refused before decoding (decompression bombs)
	PadRGB        bool  // store raw RGB as RGBX so Pillow can map it without copying
	FailOn        FailOn
}

// FailOn is the decode policy (image_config.fail_on), like libvips' fail_on: which damage in an
// image's data refuses it. The verdict on a file is the same whatever the crop settings. A refused
// image is skipped as errs.ReasonCorrupt with the decoder's own message.
type FailOn int

// Decode policies. The zero value is the default.
const (
	// FailOnWarning refuses any warning about the data: corrupt JPEG entropy data, a premature
	// end, a bad PNG chunk CRC (ancillary chunks too), truncation, and every error.
	FailOnWarning FailOn = iota
	// FailOnError refuses errors only: a truncated file, an undecodable stream, a bad CRC of a
	// PNG's image data; corrupt JPEG data that libjpeg decodes on (with a warning) is kept.
	FailOnError
	// FailOnNone refuses nothing that libvips still decodes (damaged regions come out grey or
	// black).
	FailOnNone
)

// ParseFailOn reads image_config.fail_on: "warning" (also ""), "error" or "none".
func ParseFailOn(s string) (FailOn, error) {
	switch s {
	case "", "warning":
		return FailOnWarning, nil
	case "error":
		return FailOnError, nil
	case "none":
		return FailOnNone, nil
	}
	return 0, fmt.Errorf("fail_on must be warning, error or none, got %q", s)
}

// String is the config spelling.
func (f FailOn) String() string {
	switch f {
	case FailOnError:
		return "error"
	case FailOnNone:
		return "none"
	}
	return "warning"
}

// Image is a transformed image. Data is C memory allocated by glib (libvips' own output buffer); it
// has exactly one owner: either Free is called, or ownership moves into a C sample.
type Image struct {
	Data                          unsafe.Pointer
	Len                           int
	Width, Height, Channels       int
	PixelStride                   int // bytes per pixel in Data (raw only)
	OriginalWidth, OriginalHeight int
	Encoded                       bool
	Bucket                        Bucket // the bucket used (zero without crop_and_resize)
}

// Free releases the pixel buffer (no-op when already released or handed over).
func (im *Image) Free() {
	if im.Data != nil {
		C.g_free(C.gpointer(im.Data))
		im.Data = nil
	}
}

// skip is a per-image failure: the sample is skipped and counted under reason.
func skip(reason errs.Reason, msg string) error {
	return &errs.SkipError{Reason: reason, Err: errors.New(msg)}
}

var (
	initOnce sync.Once
	initErr  error
)

// Init starts libvips once per process (no operation cache, one libvips thread per image).
func Init() error {
	initOnce.Do(func() {
		if C.dg_init() != 0 {
			initErr = errors.New("libvips init failed")
		}
	})
	return initErr
}

// statusError is the skip error of a failed C call from its dg_status (filled by that call): the
// reason is errs.ReasonCorrupt when the image data is damaged, def otherwise.
func statusError(st *C.dg_status, def errs.Reason) error {
	msg := C.GoString(&st.msg[0])
	if msg == "" { // the C side never leaves it empty; be safe all the same
		msg = "unknown failure"
	}
	if st.corrupt != 0 {
		return skip(errs.ReasonCorrupt, msg)
	}
	return skip(def, msg)
}

// JPEGScale is the libjpeg-turbo IDCT scaling M/8 (M = 1..8) for decoding a w×h image that is to
// cover a need_w×need_h target: the smallest M with w·M/8 ≥ need_w and h·M/8 ≥ need_h, so the cover
// scale left after the IDCT scaling stays ≤ 1 (never upsample what was scaled down) and the decoded
// window is at most M/(M-1) times the target per axis (≤ 1.25 for M ≥ 5; at M = 1 the image is
// shrunk 8× and may stay larger). Libjpeg reports the scaled size as ceil(w·M/8) × ceil(h·M/8).
// An upscale (target larger than the image) gives 8: no scaling.
func JPEGScale(w, h, needW, needH int) int {
	if w <= 0 || h <= 0 {
		return 8
	}
	// ceil(8·need/size) per axis, in integers so that an exact ratio is not lost to rounding
	m := max((8*needW+w-1)/w, (8*needH+h-1)/h)
	return min(max(m, 1), 8)
}

// ShrinkFactor is the largest power of two (≤ 8) by which a w×h image can be shrunk at load time
// while still covering a need_w×need_h target: the cover scale left after shrinking stays ≤ 1.
// It is the shrink libvips' loaders can do (JPEG when our decoder declines, WebP): the largest s in
// 1, 2, 4, 8 with s·JPEGScale ≤ 8.
func ShrinkFactor(w, h, needW, needH int) int {
	m := JPEGScale(w, h, needW, needH)
	s := 1
	for s < 8 && 2*s*m <= 8 {
		s *= 2
	}
	return s
}

// jpegAnyScale selects which IDCT scalings our JPEG decoder may use: every M/8 (true, the
// default) or only the power-of-two shrinks libvips has (false; tests compare the two decoders
// pixel for pixel that way).
var jpegAnyScale atomic.Bool

func init() { jpegAnyScale.Store(true) }

// jpegScaleFor is the M given to our JPEG decoder for a w×h image going to a need_w×need_h target.
func jpegScaleFor(w, h, needW, needH int) int {
	if jpegAnyScale.Load() {
		return JPEGScale(w, h, needW, needH)
	}
	return 8 / ShrinkFactor(w, h, needW, needH)
}

// Process decodes buf and transforms it. When bucket is non-nil the image goes to that bucket
// (masks and additional images reuse the main image's bucket); otherwise the nearest bucket by
// aspect ratio is chosen. mask selects mask semantics (nearest-neighbour, channels kept).
func Process(buf cmem.Buf, o *Options, bucket *Bucket, mask bool) (Image, error) {
	pe, err := Decode(buf, o, bucket, mask)
	if err != nil {
		return Image{}, err
	}
	return pe.Store(nil)
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// pngFast turns our PNG decoder on (1) or off (0: libvips decodes every PNG), or only reports
// (-1); returns the previous state. Tests compare the two.
func pngFast(on int) int { return int(C.dg_png_fast(C.int(on))) }

// jpegFast turns our JPEG window read on (1) or off (0: libvips decodes every JPEG), or only
// reports (-1); returns the previous state. Tests compare the two.
func jpegFast(on int) int { return int(C.dg_jpeg_fast(C.int(on))) }

// resampleSIMD selects the resampler's SIMD path (2 AVX2 when available, 0 SSE2 only, -1 detect)
// and returns the previous level; tests use it to check that the paths agree byte for byte.
func resampleSIMD(level int) int { return int(C.dg_resample_simd(C.int(level))) }

// Resample runs the hot-path resampler (Lanczos-3, fixed point) on a Go image: src is sw x sh
// pixels of `bands` interleaved 8-bit channels; the result is dw x dh pixels of dps bytes.
// The pipeline calls the C function directly; this wrapper exists for tests and tools.
func Resample(src []byte, sw, sh, bands, dw, dh, dps int) ([]byte, error) {
	if len(src) != sw*sh*bands {
		return nil, fmt.Errorf("resample: %d bytes for %dx%dx%d", len(src), sw, sh, bands)
	}
	in := cmem.Alloc(len(src))
	defer in.Free()
	copy(in.Bytes(), src)
	out := cmem.Alloc(dw * dh * dps)
	defer out.Free()
	if C.dg_resample((*C.uint8_t)(in.Ptr), C.int(sw), C.int(sh), C.size_t(sw*bands), C.int(bands),
		(*C.uint8_t)(out.Ptr), C.int(dw), C.int(dh), C.int(dps)) != 0 {
		return nil, errors.New("resample: invalid arguments")
	}
	return append([]byte(nil), out.Bytes()...), nil
}

// jpegWindow runs our JPEG decoder alone (for tests): the centre window with the aspect ratio of
// tw×th of the w×h JPEG in data, IDCT-scaled by m/8. It returns the window's pixels (cw×ch×bands,
// rows packed) and false when the decoder declines the image.
func jpegWindow(data []byte, m, w, h, bands, tw, th int) (pix []byte, cw, ch, nb int, ok bool) {
	buf := cmem.Alloc(len(data))
	defer buf.Free()
	copy(buf.Bytes(), data)
	var j C.dg_jpeg
	var msg [C.DG_MSG_LEN]C.char
	if C.dg_jpeg_decode((*C.uint8_t)(buf.Ptr), C.size_t(len(data)), C.int(m), C.int(w), C.int(h), C.int(bands),
		C.int(tw), C.int(th), C.int(FailOnWarning), &j, &msg[0]) != 0 {
		return nil, 0, 0, 0, false
	}
	defer C.dg_jpeg_free(&j)
	cw, ch, nb = int(j.width), int(j.height), int(j.bands)
	pix = make([]byte, 0, cw*ch*nb)
	for y := 0; y < ch; y++ {
		row := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(j.pixels), y*int(j.stride))), cw*nb)
		pix = append(pix, row...)
	}
	return pix, cw, ch, nb, true
}
