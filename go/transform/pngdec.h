// Our own decoder for the common PNG (8-bit, not interlaced; alpha only when flattened); see pngdec.c.
#ifndef DATAGO_TRANSFORM_PNGDEC_H
#define DATAGO_TRANSFORM_PNGDEC_H

#include <stddef.h>
#include <stdint.h>

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
// or looks anomalous (the caller uses libvips), or -1 when out of memory (*err says so).
int dg_png_decode(const uint8_t *buf, size_t len, int flatten, dg_png *out, const char **err);
void dg_png_free(dg_png *p);

// Turns the decoder on (1) or off (0) process-wide, or only reports (-1); returns the previous
// state. For tests and benchmarks comparing it with libvips.
int dg_png_fast(int on);

#endif
