package transform

/*
#include <stdlib.h>
#include "vips.h"
*/
import "C"

import (
	"fmt"
	"github.com/datago-dev/datago/go/errs"
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
)

// Pending is a decoded image waiting to be stored (Decode, then Store or Free). Decoding is where
// an image fails; storing only resamples and writes, so a caller can decide where the pixels go
// (a batch slot) after it knows that the image is good. It owns C memory until Store or Free.
type Pending struct {
	pd                            C.dg_pending
	params                        C.dg_params
	OriginalWidth, OriginalHeight int
	Bucket                        Bucket // the bucket used (zero without crop_and_resize)
	encoded                       bool
	live                          bool
}

// Dest is a caller-owned slot of Bucket.W x Bucket.H pixels with Channels 8-bit channels,
// interleaved (HWC) or planar (CHW); Mask takes channel 0 as is.
type Dest struct {
	Data     unsafe.Pointer
	Channels int
	CHW      bool
	Mask     bool
}

// Decode opens and decodes buf (see Process for bucket and mask). The bytes of buf are not needed
// afterwards.
func Decode(buf cmem.Buf, o *Options, bucket *Bucket, mask bool) (*Pending, error) {
	var h C.dg_header
	if buf.Len == 0 {
		return nil, skip(errs.ReasonDecode, "empty file")
	}
	var st C.dg_status // this call's own error: libvips' buffer is process-wide
	if C.dg_open(buf.Ptr, C.size_t(buf.Len), C.int(o.FailOn), &h, &st) != 0 {
		return nil, statusError(&st, errs.ReasonDecode)
	}
	defer C.dg_close(&h)
	w, hgt := int(h.width), int(h.height)
	if o.MaxPixels > 0 && int64(w)*int64(hgt) > o.MaxPixels {
		return nil, skip(errs.ReasonTooManyPixels, fmt.Sprintf("%dx%d is more than %d pixels", w, hgt, o.MaxPixels))
	}
	ow, oh := w, hgt // oriented size
	if h.orientation >= 5 {
		ow, oh = hgt, w
	}
	pe := &Pending{OriginalWidth: ow, OriginalHeight: oh, encoded: o.Encode != ""}
	p := &pe.params
	p.mask = boolInt(mask)
	p.to_rgb8 = boolInt(o.ToRGB8 && !mask)
	p.flatten_alpha = boolInt(o.FlattenAlpha)
	p.jpeg_quality = C.int(o.JPEGQuality)
	p.shrink = 1
	p.pad_rgb = boolInt(o.PadRGB)
	p.fail_on = C.int(o.FailOn)
	switch o.Encode {
	case "png":
		p.encode = C.DG_ENCODE_PNG
	case "jpeg":
		p.encode = C.DG_ENCODE_JPEG
	}
	if o.CropAndResize {
		if bucket != nil {
			pe.Bucket = *bucket
		} else {
			pe.Bucket = o.Buckets.Nearest(ow, oh)
		}
		p.resize = 1
		p.target_w, p.target_h = C.int(pe.Bucket.W), C.int(pe.Bucket.H)
		if !mask && (h.kind == C.DG_JPEG || h.kind == C.DG_WEBP) {
			p.shrink = C.int(ShrinkFactor(ow, oh, pe.Bucket.W, pe.Bucket.H))
			p.jpeg_scale = C.int(jpegScaleFor(ow, oh, pe.Bucket.W, pe.Bucket.H))
		}
	}
	if C.dg_decode(buf.Ptr, C.size_t(buf.Len), &h, p, &pe.pd, &st) != 0 {
		return nil, statusError(&st, errs.ReasonTransform)
	}
	pe.live = true
	return pe, nil
}

// Store finishes the image: into dst's slot (the returned Image then owns no memory: Data is nil)
// or, with dst nil, into a buffer of its own. The Pending is freed either way.
func (pe *Pending) Store(dst *Dest) (Image, error) {
	defer pe.Free()
	var r C.dg_result
	var d *C.dg_dest
	if dst != nil {
		d = &C.dg_dest{data: (*C.uint8_t)(dst.Data), width: C.int(pe.Bucket.W), height: C.int(pe.Bucket.H),
			channels: C.int(dst.Channels), chw: boolInt(dst.CHW), mask: boolInt(dst.Mask)}
	}
	var st C.dg_status
	if C.dg_store(&pe.pd, &pe.params, d, &r, &st) != 0 {
		return Image{}, statusError(&st, errs.ReasonTransform)
	}
	im := Image{
		Width: int(r.width), Height: int(r.height), Channels: int(r.channels), PixelStride: int(r.pixel_stride),
		OriginalWidth: pe.OriginalWidth, OriginalHeight: pe.OriginalHeight,
		Encoded: pe.encoded && dst == nil, Bucket: pe.Bucket,
	}
	if dst == nil {
		im.Data, im.Len = r.data, int(r.len)
	}
	return im, nil
}

// Free releases what the Pending still owns (no-op after Store or Free).
func (pe *Pending) Free() {
	if pe.live {
		C.dg_pending_free(&pe.pd)
		pe.live = false
	}
}
