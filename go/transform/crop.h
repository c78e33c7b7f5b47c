// The crop rule shared by the decoders (jpegdec.c) and the libvips layer (vips.c). It lives here,
// below both, so that the C files depend on each other one way only: vips.c calls the decoders,
// and nothing calls back into vips.c.
#ifndef DATAGO_TRANSFORM_CROP_H
#define DATAGO_TRANSFORM_CROP_H

#include <math.h>

// The centre window of a W x H image with the aspect ratio of tw x th (what a cover resize
// keeps): origin (x0, y0), size cw x ch.
static inline void dg_crop_window(int W, int H, int tw, int th, int *x0, int *y0, int *cw, int *ch) {
    double scale = fmax((double)tw / W, (double)th / H);
    *cw = (int)fmin(W, fmax(1.0, round(tw / scale)));
    *ch = (int)fmin(H, fmax(1.0, round(th / scale)));
    *x0 = (W - *cw) / 2;
    *y0 = (H - *ch) / 2;
}

#endif
