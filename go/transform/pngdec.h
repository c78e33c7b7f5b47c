// Our own decoder for the common PNG (8-bit, not interlaced; alpha only when flattened); see pngdec.c.
#ifndef DATAGO_TRANSFORM_PNGDEC_H
#define DATAGO_TRANSFORM_PNGDEC_H

#include <stddef.h>
#include <stdint.h>

#include "failon.h"

typedef struct dg_png {
    uint8_t *raw;     // the allocation (freed by dg_png_free)
    uint8_t *pixels;  // first pixel of the first row
    size_t stride;    // bytes from one row to the next (a filter byte sits between rows)
    int width;        // pixels
    int height;       // pixels
    int bands;        // 1 (grey) or 3 (RGB), 8 bits each (after flattening)
} dg_png;

// Decodes buf. With flatten, grey+alpha and RGBA images are taken too and come out flattened
// onto white (grey / RGB). Returns 0 (out filled), 1 when the image is not one this decoder takes
// or holds what libvips is to judge (the caller uses libvips), 2 when fail_on (enum dg_fail_on)
// refuses its damage (a bad CRC, IDAT chunks apart, a truncated or corrupt stream, a bad filter
// byte; see pngdec.c), or -1 when out of memory. msg (DG_MSG_LEN bytes, written only when empty)
// says why for 2 and -1.
int dg_png_decode(const uint8_t *buf, size_t len, int flatten, int fail_on, dg_png *out, char *msg);
// Judges any PNG (any depth, colour type, interlace) as dg_png_decode does, without pixels: the
// chunks (CRCs, IDAT run) always, and with inflate the whole zlib stream and its filter bytes.
// Returns 1 when fail_on refuses it (msg says why), else 0 (also for what is not a PNG). For the
// PNGs libvips decodes: the same verdict whatever the crop, and a message of this call.
int dg_png_check(const uint8_t *buf, size_t len, int fail_on, int inflate, char *msg);
void dg_png_free(dg_png *p);

// Turns the decoder on (1) or off (0) process-wide, or only reports (-1); returns the previous
// state. For tests and benchmarks comparing it with libvips.
int dg_png_fast(int on);

#endif
