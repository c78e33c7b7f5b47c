// Our own resampler for the hot path; see resample.c.
#ifndef DATAGO_TRANSFORM_RESAMPLE_H
#define DATAGO_TRANSFORM_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

// Resamples src (sw x sh pixels, rows sstride bytes apart, `bands` interleaved 8-bit channels)
// onto dst (dw x dh pixels, `dps` bytes per pixel, rows dw*dps bytes apart) with a Lanczos-3
// filter. Bytes of a pixel past `bands` (dps > bands) are set to 255. Returns 0, or -1 on bad
// arguments or when out of memory.
int dg_resample(const uint8_t *src, int sw, int sh, size_t sstride, int bands, uint8_t *dst,
                int dw, int dh, int dps);

// dg_resample with a choice of layout: planar = 1 writes channel planes (C x dh x dw, CHW; needs
// dps == bands) instead of interleaved pixels; the last pass stores straight into dst either way.
int dg_resample_to(const uint8_t *src, int sw, int sh, size_t sstride, int bands, uint8_t *dst,
                   int dw, int dh, int dps, int planar);

// Chooses the SIMD path of dg_resample, for tests and benchmarks: 2 AVX2 (when the CPU has it),
// 0 SSE2 only, -1 detect again. Returns the level in use before the call.
int dg_resample_simd(int level);

#endif
