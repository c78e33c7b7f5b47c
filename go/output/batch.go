package output

/*
#cgo CFLAGS: -I${SRCDIR}/../capi
#include <stdlib.h>
#include <string.h>
#include "datago.h"
*/
import "C"

import "unsafe"

// Batch is a finished batch in C memory (datago_batch). It has one owner: the queue, then the
// consumer, who releases it with datago_batch_free (pure C).
type Batch struct{ p *C.datago_batch }

// Ptr is the datago_batch* handed over the C ABI.
func (b Batch) Ptr() unsafe.Pointer { return unsafe.Pointer(b.p) }

// Free releases the batch and everything it owns.
func (b Batch) Free() { C.datago_batch_free(b.p) }

// Len is the number of samples.
func (b Batch) Len() int { return int(b.p.n) }

// Seqs are the samples' positions in the rank's epoch stream.
func (b Batch) Seqs() []int64 {
	if b.p.n == 0 {
		return nil
	}
	return append([]int64(nil), unsafe.Slice((*int64)(unsafe.Pointer(b.p.seqs)), int(b.p.n))...)
}

// IDs are the samples' ids.
func (b Batch) IDs() []string {
	out := make([]string, b.p.n)
	ids := unsafe.Slice(b.p.ids, int(b.p.n))
	for i := range out {
		out[i] = C.GoString(ids[i])
	}
	return out
}

// Size is the bucket (width, height) and the channel count.
func (b Batch) Size() (w, h, c int) { return int(b.p.width), int(b.p.height), int(b.p.channels) }

// Images is the pixel buffer (n images).
func (b Batch) Images() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(b.p.images)), int(b.p.images_len))
}

// BatchBuf is a batch being filled: C arrays for capacity samples, slots written in place by the
// transform stage. Its methods are not safe for concurrent use except that distinct slots may be
// written concurrently through the pointers returned by Slot, MaskSlot and AdditionalSlot.
type BatchBuf struct {
	p        *C.datago_batch
	capacity int
	px       int // pixels per image
	imgBytes int // bytes per image
	masks    map[string]int
	adds     map[string]int
}

func calloc[T any](n int) *T {
	var zero T
	return (*T)(C.calloc(C.size_t(max(n, 1)), C.size_t(unsafe.Sizeof(zero))))
}

// NewBatchBuf allocates a batch of capacity w x h images with c channels (chw: planar layout).
func NewBatchBuf(capacity, w, h, c int, chw bool) *BatchBuf {
	b := &BatchBuf{capacity: capacity, px: w * h, imgBytes: w * h * c, masks: map[string]int{}, adds: map[string]int{}}
	p := calloc[C.datago_batch](1)
	p.width, p.height, p.channels = C.int32_t(w), C.int32_t(h), C.int32_t(c)
	if chw {
		p.layout = C.DATAGO_LAYOUT_CHW
	}
	p.images = (*C.uint8_t)(C.malloc(C.size_t(capacity * b.imgBytes)))
	p.ids = calloc[*C.char](capacity)
	p.sources = calloc[*C.char](capacity)
	p.attributes_json = calloc[*C.char](capacity)
	p.original_widths = calloc[C.int32_t](capacity)
	p.original_heights = calloc[C.int32_t](capacity)
	p.n_latents = calloc[C.int32_t](capacity)
	p.seqs = calloc[C.int64_t](capacity)
	b.p = p
	return b
}

// Capacity is the number of slots.
func (b *BatchBuf) Capacity() int { return b.capacity }

// Slot is where image i's pixels go.
func (b *BatchBuf) Slot(i int) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(b.p.images), i*b.imgBytes)
}

// SetMeta fills sample i's metadata; the latents' bytes move into the batch.
func (b *BatchBuf) SetMeta(i int, id, source, attrs string, ow, oh int, seq int64, latents []Blob) {
	unsafe.Slice(b.p.ids, b.capacity)[i] = C.CString(id)
	unsafe.Slice(b.p.sources, b.capacity)[i] = C.CString(source)
	if attrs == "" {
		attrs = "{}"
	}
	unsafe.Slice(b.p.attributes_json, b.capacity)[i] = C.CString(attrs)
	unsafe.Slice(b.p.original_widths, b.capacity)[i] = C.int32_t(ow)
	unsafe.Slice(b.p.original_heights, b.capacity)[i] = C.int32_t(oh)
	unsafe.Slice((*int64)(unsafe.Pointer(b.p.seqs)), b.capacity)[i] = seq
	if len(latents) > 0 {
		if b.p.latents == nil {
			b.p.latents = calloc[*C.datago_blob](b.capacity)
		}
		arr := calloc[C.datago_blob](len(latents))
		dst := unsafe.Slice(arr, len(latents))
		for j := range latents {
			dst[j].name = C.CString(latents[j].Name)
			dst[j].len = C.size_t(latents[j].Data.Len)
			dst[j].data = (*C.uint8_t)(latents[j].Data.Detach())
		}
		unsafe.Slice(b.p.latents, b.capacity)[i] = arr
		unsafe.Slice(b.p.n_latents, b.capacity)[i] = C.int32_t(len(latents))
	}
}

// grow appends name to a (names, arrays) pair of C arrays, with a zeroed array of bytes.
func grow(names ***C.char, arrays ***C.uint8_t, n *C.int32_t, name string, bytes int) int {
	k := int(*n)
	nn := (**C.char)(C.realloc(unsafe.Pointer(*names), C.size_t((k+1)*int(unsafe.Sizeof((*C.char)(nil))))))
	na := (**C.uint8_t)(C.realloc(unsafe.Pointer(*arrays), C.size_t((k+1)*int(unsafe.Sizeof((*C.uint8_t)(nil))))))
	unsafe.Slice(nn, k+1)[k] = C.CString(name)
	unsafe.Slice(na, k+1)[k] = (*C.uint8_t)(C.calloc(C.size_t(bytes), 1))
	*names, *arrays, *n = nn, na, C.int32_t(k+1)
	return k
}

// MaskSlot is where sample i's mask `name` goes (h x w bytes); the batch's array for name is
// made (zeroed) on first use.
func (b *BatchBuf) MaskSlot(name string, i int) unsafe.Pointer {
	k, ok := b.masks[name]
	if !ok {
		k = grow(&b.p.mask_names, &b.p.masks, &b.p.n_masks, name, b.capacity*b.px)
		b.masks[name] = k
	}
	return unsafe.Add(unsafe.Pointer(unsafe.Slice(b.p.masks, k+1)[k]), i*b.px)
}

// AdditionalSlot is where sample i's additional image `name` goes (like Slot).
func (b *BatchBuf) AdditionalSlot(name string, i int) unsafe.Pointer {
	k, ok := b.adds[name]
	if !ok {
		k = grow(&b.p.additional_image_names, &b.p.additional_images, &b.p.n_additional_images, name, b.capacity*b.imgBytes)
		b.adds[name] = k
	}
	return unsafe.Add(unsafe.Pointer(unsafe.Slice(b.p.additional_images, k+1)[k]), i*b.imgBytes)
}

// Finish hands the first n slots over as a Batch (accounted as live); the BatchBuf is spent. A
// partial batch gives back the memory of its unused slots (realloc shrinks in place, or remaps the
// pages of a large allocation: the pixels are not copied).
func (b *BatchBuf) Finish(n int) Batch {
	if n > 0 && n < b.capacity {
		b.p.images = (*C.uint8_t)(shrink(unsafe.Pointer(b.p.images), n*b.imgBytes))
		for k := range int(b.p.n_masks) {
			arr := unsafe.Slice(b.p.masks, k+1)
			arr[k] = (*C.uint8_t)(shrink(unsafe.Pointer(arr[k]), n*b.px))
		}
		for k := range int(b.p.n_additional_images) {
			arr := unsafe.Slice(b.p.additional_images, k+1)
			arr[k] = (*C.uint8_t)(shrink(unsafe.Pointer(arr[k]), n*b.imgBytes))
		}
	}
	b.p.n = C.int32_t(n)
	b.p.images_len = C.size_t(n * b.imgBytes)
	C.datago__account_batch(b.p)
	p := b.p
	b.p = nil
	return Batch{p}
}

// Free releases a batch that is not handed over (n is the number of slots with metadata set).
func (b *BatchBuf) Free(n int) {
	if b.p == nil {
		return
	}
	b.p.n = C.int32_t(n)
	b.p.images_len = C.size_t(n * b.imgBytes)
	C.datago__account_batch(b.p) // datago_batch_free takes it off again
	C.datago_batch_free(b.p)
	b.p = nil
}

// ID is the sample's id.
func (s Sample) ID() string { return C.GoString(s.p.id) }

// shrink reallocates p to size bytes (smaller), keeping p when realloc fails.
func shrink(p unsafe.Pointer, size int) unsafe.Pointer {
	if q := C.realloc(p, C.size_t(size)); q != nil {
		return q
	}
	return p
}
