// Our own JPEG read of the centre crop window (libjpeg-turbo directly); see jpegdec.c.
#ifndef DATAGO_TRANSFORM_JPEGDEC_H
#define DATAGO_TRANSFORM_JPEGDEC_H

#include <stddef.h>
#include <stdint.h>

#include "failon.h"

typedef struct dg_jpeg {
    uint8_t *raw;     // the allocation (freed by dg_jpeg_free)
    uint8_t *pixels;  // first pixel of the window
    size_t stride;    // bytes from one row of the window to the next
    int width;        // window pixels
    int height;
    int bands;        // 1 (grey) or 3 (RGB), 8 bits each
} dg_jpeg;

// Decodes the centre window, with the aspect ratio of tw x th, of the JPEG in buf scaled by
// scale_num/8 (IDCT scaling, scale_num = 1..8; the scaled image is ceil(w*M/8) x ceil(h*M/8) and the
// window is cut from that). expect_* is libvips' view of the image as stored (size, bands): any
// disagreement, or a colour space other than grey/YCbCr/RGB, returns 1 (use libvips), as does a
// libjpeg error before the scan. The whole scan is entropy-decoded; damaged data is judged by
// fail_on (enum dg_fail_on, see jpegdec.c): refused, it returns 2 with libjpeg's message in msg
// (DG_MSG_LEN bytes, written only when empty). Returns 0 with out filled.
int dg_jpeg_decode(const uint8_t *buf, size_t len, int scale_num, int expect_w, int expect_h,
                   int expect_bands, int tw, int th, int fail_on, dg_jpeg *out, char *msg);
// Judges the JPEG in buf as dg_jpeg_decode does, without producing pixels (the whole scan
// entropy-decoded, one row transformed at 1/8 scale): 0 kept, 1 refused by fail_on (libjpeg's
// message in msg), -1 when its header does not parse (libjpeg's message in msg). For the images libvips decodes: the verdict of a full decode whatever the crop,
// and the message of a refusal, formatted in this call.
int dg_jpeg_check(const uint8_t *buf, size_t len, int fail_on, char *msg);
void dg_jpeg_free(dg_jpeg *j);

// Turns the decoder on (1) or off (0) process-wide, or only reports (-1); returns the previous
// state. For tests and benchmarks comparing it with libvips.
int dg_jpeg_fast(int on);

#endif
