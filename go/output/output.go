// Package output is the last pipeline stage: it assembles finished samples as C structs (see
// go/capi/datago.h). Every pointer in a sample is C memory; ownership of the pixel buffers and
// blobs moves into the sample, which datago_sample_free (sample.c) releases.
package output

/*
#cgo CFLAGS: -I${SRCDIR}/../capi
#cgo pkg-config: glib-2.0
#include <stdlib.h>
#include <string.h>
#include "datago.h"
*/
import "C"

import (
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/transform"
)

// Sample is a finished sample in C memory. It has one owner: the queue, then the consumer.
type Sample struct{ p *C.datago_sample }

// Ptr is the datago_sample* handed over the C ABI.
func (s Sample) Ptr() unsafe.Pointer { return unsafe.Pointer(s.p) }

// Free releases the sample and everything it owns.
func (s Sample) Free() { C.datago_sample_free(s.p) }

// Named is a named image (mask or additional image).
type Named struct {
	Name  string
	Image transform.Image
}

// Blob is a named byte payload (latent).
type Blob struct {
	Name string
	Data cmem.Buf
}

// Fields are the parts of a sample. Build takes ownership of every C buffer in them.
type Fields struct {
	ID, Source, AttributesJSON string
	Image                      *transform.Image
	Masks, AdditionalImages    []Named
	Latents                    []Blob
	Tags                       []string
	Embedding                  []float32
	DuplicateState             int
}

func setImage(dst *C.datago_image, name string, named bool, im *transform.Image) {
	if named {
		dst.name = C.CString(name)
	}
	dst.data = (*C.uint8_t)(im.Data)
	dst.len = C.size_t(im.Len)
	dst.width, dst.height = C.int32_t(im.Width), C.int32_t(im.Height)
	dst.channels, dst.bit_depth = C.int32_t(im.Channels), 8
	dst.pixel_stride = C.int32_t(im.PixelStride)
	if im.Encoded {
		dst.channels, dst.encoded = -1, 1
	}
	dst.original_width, dst.original_height = C.int32_t(im.OriginalWidth), C.int32_t(im.OriginalHeight)
	im.Data = nil // ownership moved into the sample
}

func images(list []Named) (*C.datago_image, C.int32_t) {
	if len(list) == 0 {
		return nil, 0
	}
	arr := (*C.datago_image)(C.calloc(C.size_t(len(list)), C.sizeof_datago_image))
	s := unsafe.Slice(arr, len(list))
	for i := range list {
		setImage(&s[i], list[i].Name, true, &list[i].Image)
	}
	return arr, C.int32_t(len(list))
}

// Build assembles a C sample. Afterwards the Fields no longer own any C buffer.
func Build(f *Fields) Sample {
	s := (*C.datago_sample)(C.calloc(1, C.sizeof_datago_sample))
	s.id = C.CString(f.ID)
	s.source = C.CString(f.Source)
	attrs := f.AttributesJSON
	if attrs == "" {
		attrs = "{}"
	}
	s.attributes_json = C.CString(attrs)
	if f.Image != nil {
		setImage(&s.image, "", false, f.Image)
	}
	s.masks, s.n_masks = images(f.Masks)
	s.additional_images, s.n_additional_images = images(f.AdditionalImages)
	if n := len(f.Latents); n > 0 {
		s.latents = (*C.datago_blob)(C.calloc(C.size_t(n), C.sizeof_datago_blob))
		dst := unsafe.Slice(s.latents, n)
		for i := range f.Latents {
			dst[i].name = C.CString(f.Latents[i].Name)
			dst[i].len = C.size_t(f.Latents[i].Data.Len)
			dst[i].data = (*C.uint8_t)(f.Latents[i].Data.Detach()) // malloc'd, freed with free()
		}
		s.n_latents = C.int32_t(n)
	}
	if n := len(f.Tags); n > 0 {
		s.tags = (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		dst := unsafe.Slice(s.tags, n)
		for i, t := range f.Tags {
			dst[i] = C.CString(t)
		}
		s.n_tags = C.int32_t(n)
	}
	if n := len(f.Embedding); n > 0 {
		s.coca_embedding = (*C.float)(C.malloc(C.size_t(n * 4)))
		copy(unsafe.Slice((*float32)(unsafe.Pointer(s.coca_embedding)), n), f.Embedding)
		s.coca_embedding_len = C.int32_t(n)
	}
	s.duplicate_state = C.int32_t(f.DuplicateState)
	C.datago__account_sample(s)
	return Sample{s}
}

// ImageSize is the main image's size in pixels (0, 0 without an image).
func (s Sample) ImageSize() (w, h int) { return int(s.p.image.width), int(s.p.image.height) }
