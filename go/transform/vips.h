// Thin C layer over libvips for the decode/transform stage. cgo cannot call libvips' variadic
// functions, and doing a whole image in two C calls keeps cgo overhead per image constant.
#ifndef DATAGO_TRANSFORM_VIPS_H
#define DATAGO_TRANSFORM_VIPS_H

#include <stddef.h>
#include <vips/vips.h>

#include "failon.h"
#include "jpegdec.h"
#include "pngdec.h"

enum dg_kind { DG_OTHER = 0, DG_JPEG = 1, DG_WEBP = 2, DG_PNG = 3 };

// Header of an encoded image, loaded lazily (no pixel decoded yet).
typedef struct dg_header {
    VipsImage *img;   // lazy image over the caller's buffer; released by dg_close
    int kind;         // enum dg_kind
    int width;        // pixels, as stored
    int height;       // pixels, as stored
    int bands;
    int orientation;  // EXIF orientation 1..8 (1 when absent)
} dg_header;

enum dg_encode { DG_RAW = 0, DG_ENCODE_PNG = 1, DG_ENCODE_JPEG = 2 };

typedef struct dg_params {
    int resize;        // 1: cover-crop-resize to target_w x target_h (oriented frame)
    int target_w;      // pixels
    int target_h;      // pixels
    int shrink;        // libvips' shrink-on-load factor 1, 2, 4 or 8 (JPEG, WebP only)
    int jpeg_scale;    // our JPEG decoder's IDCT scaling M/8, M = 1..8 (0 or 8: none)
    int mask;          // 1: mask semantics (nearest-neighbour resize, no colour conversion)
    int to_rgb8;       // 1: output exactly 3 channels, 8 bits
    int flatten_alpha; // 1: flatten alpha onto white
    int encode;        // enum dg_encode
    int jpeg_quality;  // 1..100
    int pad_rgb;       // 1: raw 3-band output is padded to RGBX (X = 255)
    int fail_on;       // enum dg_fail_on: which damage refuses an image (image_config.fail_on)
} dg_params;

// Why a call failed, filled by that call (never read from another call or thread): msg is never
// empty after a failure; corrupt is 1 when the image data is damaged (refused by fail_on, or a
// decoder's error on the data), 0 for other failures.
typedef struct dg_status {
    int corrupt;
    char msg[DG_MSG_LEN];
} dg_status;

typedef struct dg_result {
    void *data;        // g_malloc'd: raw pixels (H x W x C, uchar) or encoded bytes
    size_t len;        // bytes
    int width;
    int height;
    int channels;      // meaningful channels
    int pixel_stride;  // bytes per pixel in data (raw only)
} dg_result;

// A decoded image waiting to be stored (dg_decode, then dg_store): either the fast path's crop
// window, still to be resampled (fast = 1), or a finished result (res). Freed by dg_pending_free.
typedef struct dg_pending {
    int fast;
    const uint8_t *src;  // first pixel of the window (points into one of the buffers below)
    size_t stride;
    int cw, ch, bands;   // window pixels and interleaved 8-bit channels
    int tw, th;          // resample target, stored frame
    int orientation;     // EXIF orientation applied after the resample (1: none)
    void *vips_pixels;   // g_malloc'd window (libvips decode)
    dg_png png;
    dg_jpeg jpg;
    dg_result res;       // finished result (fast = 0)
} dg_pending;

// Where dg_store writes: a caller-owned slot of width x height pixels with `channels` 8-bit
// channels, interleaved (chw = 0) or planar (chw = 1). mask: take channel 0 as is.
typedef struct dg_dest {
    uint8_t *data;
    int width;
    int height;
    int channels;
    int chw;
    int mask;
} dg_dest;

// Starts libvips; GLib's and libvips' log messages go to datago's log from then on (not stderr).
int dg_init(void);
// Decodes (and for the general path also transforms) an opened image into pd; the buffer and the
// header may be released afterwards. The image is judged by p->fail_on the same way whatever the
// crop (our decoders and checks read the whole scan / stream). Returns 0, or -1 (pd is then empty,
// st says why).
int dg_decode(const void *buf, size_t len, dg_header *h, const dg_params *p, dg_pending *pd, dg_status *st);
// Finishes a pending image: into d's slot when d (and d->data) is non-NULL — r then describes the
// slot and owns nothing — or into a g_malloc'd buffer of its own in r. Returns 0 or -1 (st says why).
int dg_store(dg_pending *pd, const dg_params *p, const dg_dest *d, dg_result *r, dg_status *st);
void dg_pending_free(dg_pending *pd);
// Reads the header (libvips' loaders get fail_on, enum dg_fail_on). Returns 0, or -1 (st says why).
int dg_open(const void *buf, size_t len, int fail_on, dg_header *h, dg_status *st);
int dg_finish(const void *buf, size_t len, dg_header *h, const dg_params *p, dg_result *r, dg_status *st);
void dg_close(dg_header *h);

#endif
