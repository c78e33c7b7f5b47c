// PNG row unfiltering and flattening onto white, for pngdec.c (included by it, and only by it).
//
// Sub, Average and Paeth rows depend on the pixel to their left, so within a row the work is a
// chain, one pixel after the other: for Paeth about ten dependent vector instructions a pixel.
// Rows are therefore undone in pairs, the lower row trailing the upper one, so that two chains
// run side by side in the CPU: when both rows have the same filter (the common case), one
// register holds pixel x of the upper row and pixel x-2 of the lower one (16-bit lanes, 4 per
// pixel), so each instruction serves both and the lower row's upper pixels, two steps old, stay
// off the chain; rows with different filters run as two chains in registers of their own. Each
// pixel is one step, in SSE2 (the amd64 baseline) or, on CPUs with AVX2, with SSSE3's abs and
// SSE4.1's blend, which shorten the Paeth chain, and four Paeth rows at a time in a 256-bit
// register (pngfilter_simd.h is compiled for both; the choice is made at run time). With alpha, each row is flattened onto white (vectorised; opaque
// pixels skip the arithmetic) as soon as the row under it no longer needs it, while it is still
// in the cache.
//
// Layout (as pngdec.c inflates it): h rows of 1 + rowb bytes (the filter byte, then the row),
// followed by at least 16 bytes of slack; 4-byte loads may read up to 3 bytes past a row, stores
// never write past a pixel.
#ifndef DATAGO_TRANSFORM_PNGFILTER_H
#define DATAGO_TRANSFORM_PNGFILTER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { PF_NONE = 0, PF_SUB = 1, PF_UP = 2, PF_AVG = 3, PF_PAETH = 4 };

#define PF_INLINE static inline __attribute__((always_inline))

// One channel of one pixel flattened onto white: v * a / 255 + 255 * (1 - a / 255), rounded.
static inline uint8_t flatten1(int v, int a) { return (uint8_t)((v * a + 255 * (255 - a) + 127) / 255); }

static inline int paeth1(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Portable reference (and the path without SSE2): one row, in place. `up` is the row above
// (zeros for the first row). Returns -1 for an unknown filter type.
static int unfilter_row_ref(uint8_t *cur, const uint8_t *up, size_t rowb, int bpp, int filter) {
    size_t i;
    switch (filter) {
    case PF_NONE:
        break;
    case PF_SUB:
        for (i = (size_t)bpp; i < rowb; i++) cur[i] = (uint8_t)(cur[i] + cur[i - bpp]);
        break;
    case PF_UP:
        for (i = 0; i < rowb; i++) cur[i] = (uint8_t)(cur[i] + up[i]);
        break;
    case PF_AVG:
        for (i = 0; i < (size_t)bpp && i < rowb; i++) cur[i] = (uint8_t)(cur[i] + (up[i] >> 1));
        for (; i < rowb; i++) cur[i] = (uint8_t)(cur[i] + ((cur[i - bpp] + up[i]) >> 1));
        break;
    case PF_PAETH:
        for (i = 0; i < (size_t)bpp && i < rowb; i++) cur[i] = (uint8_t)(cur[i] + up[i]);
        for (; i < rowb; i++) cur[i] = (uint8_t)(cur[i] + paeth1(cur[i - bpp], up[i], up[i - bpp]));
        break;
    default:
        return -1;
    }
    return 0;
}

// Flattens pixels x0 to w-1 of a row of grey+alpha or RGBA (bpp 2 or 4) onto white in place:
// the row becomes grey or RGB at its start. Portable reference (and the tail of flatten_row).
static void flatten_row_ref(uint8_t *row, int x0, int w, int bpp) {
    int colours = bpp - 1;
    for (int x = x0; x < w; x++) {
        const uint8_t *px = row + (size_t)x * bpp;
        int a = px[colours];
        uint8_t *o = row + (size_t)x * colours; // never past px: written after it is read
        for (int b = 0; b < colours; b++) o[b] = flatten1(px[b], a);
    }
}

#if defined(__SSE2__) && defined(__x86_64__)
#define PF_SSE2 1
#include <emmintrin.h>

// 4 bytes at p as 16-bit lanes (the upper four lanes zero).
PF_INLINE __m128i pf_load(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)v), _mm_setzero_si128());
}

// Stores the bpp low bytes of v at p.
PF_INLINE void pf_store32(uint8_t *p, uint32_t v, int bpp) {
    switch (bpp) {
    case 4:
        memcpy(p, &v, 4);
        break;
    case 3: {
        uint16_t lo = (uint16_t)v;
        memcpy(p, &lo, 2);
        p[2] = (uint8_t)(v >> 16);
        break;
    }
    case 2: {
        uint16_t lo = (uint16_t)v;
        memcpy(p, &lo, 2);
        break;
    }
    default:
        p[0] = (uint8_t)v;
    }
}

// Stores the low bpp lanes of x (values 0..255) as bpp bytes at p.
PF_INLINE void pf_store(uint8_t *p, __m128i x, int bpp) {
    pf_store32(p, (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(x, x)), bpp);
}

// keep: 0xff in the lanes of the bpp bytes of a pixel, 0 in the others
PF_INLINE __m128i pf_keep(int bpp) {
    return _mm_setr_epi16(0xff, bpp > 1 ? 0xff : 0, bpp > 2 ? 0xff : 0, bpp > 3 ? 0xff : 0, 0, 0, 0, 0);
}

#define PF_V(name) name##_sse2
#define PF_TARGET
#define PF_AVX2 0
#include "pngfilter_simd.h"
#undef PF_V
#undef PF_TARGET
#undef PF_AVX2
#define PF_V(name) name##_avx2
#define PF_TARGET __attribute__((target("avx2")))
#define PF_AVX2 1
#include <immintrin.h>
#include "pngfilter_simd.h"
#undef PF_V
#undef PF_TARGET
#undef PF_AVX2

static int pf_simd_level = -1; // -1: detect (AVX2 if the CPU has it), 0: SSE2 only, 2: AVX2

// Selects the unfiltering kernels (2 AVX2 when the CPU has it, 0 SSE2, -1 detect); returns the
// previous setting. For tests, which run both.
int dg_png_simd(int level) {
    return __atomic_exchange_n(&pf_simd_level, level, __ATOMIC_RELAXED);
}

static int pf_avx2(void) {
    int level = __atomic_load_n(&pf_simd_level, __ATOMIC_RELAXED);
    return level != 0 && __builtin_cpu_supports("avx2");
}

// floor(v / 255) for v in 0..65534, lane by lane
PF_INLINE __m128i pf_div255(__m128i v) {
    return _mm_srli_epi16(_mm_add_epi16(_mm_add_epi16(v, _mm_set1_epi16(1)), _mm_srli_epi16(v, 8)), 8);
}

// flatten1 in 16-bit lanes: (v * a + 255 * (255 - a) + 127) / 255, all values below 65535
PF_INLINE __m128i pf_flatten16(__m128i v, __m128i a) {
    __m128i inv = _mm_sub_epi16(_mm_set1_epi16(255), a);
    __m128i t = _mm_add_epi16(_mm_mullo_epi16(v, a), _mm_sub_epi16(_mm_slli_epi16(inv, 8), inv));
    return pf_div255(_mm_add_epi16(t, _mm_set1_epi16(127)));
}

// flatten_row_ref from pixel x on, 4 (RGBA) or 8 (grey+alpha) pixels per step. Reads up to 16
// bytes from the start of the last full step (within the row); writes never reach bytes not yet
// read.
static void flatten_row_sse2(uint8_t *row, int x, int w, int bpp) {
    const __m128i zero = _mm_setzero_si128(), opaque = _mm_set1_epi8(-1);
    if (bpp == 4) {
        for (; x + 4 <= w; x += 4) {
            __m128i out = _mm_loadu_si128((const __m128i *)(row + (size_t)x * 4));
            // opaque pixels (the common case) stay as they are
            if ((_mm_movemask_epi8(_mm_cmpeq_epi8(out, opaque)) & 0x8888) != 0x8888) {
                __m128i lo = _mm_unpacklo_epi8(out, zero), hi = _mm_unpackhi_epi8(out, zero);
                __m128i alo = _mm_shufflehi_epi16(_mm_shufflelo_epi16(lo, 0xff), 0xff);
                __m128i ahi = _mm_shufflehi_epi16(_mm_shufflelo_epi16(hi, 0xff), 0xff);
                out = _mm_packus_epi16(pf_flatten16(lo, alo), pf_flatten16(hi, ahi));
            }
            // drop every fourth byte: two pixels (8 bytes) become 6
            uint64_t p01 = (uint64_t)_mm_cvtsi128_si64(out);
            uint64_t p23 = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(out, out));
            p01 = (p01 & 0xffffffu) | ((p01 >> 8) & 0xffffff000000u);
            p23 = (p23 & 0xffffffu) | ((p23 >> 8) & 0xffffff000000u);
            uint8_t *o = row + (size_t)x * 3; // 8-byte stores: up to 2 bytes past these pixels
            memcpy(o, &p01, 8);               // land on output not yet written, input already read
            memcpy(o + 6, &p23, 8);
        }
    } else {
        const __m128i lowbyte = _mm_set1_epi16(0xff);
        for (; x + 8 <= w; x += 8) {
            __m128i px = _mm_loadu_si128((const __m128i *)(row + (size_t)x * 2));
            __m128i out = pf_flatten16(_mm_and_si128(px, lowbyte), _mm_srli_epi16(px, 8));
            _mm_storel_epi64((__m128i *)(row + x), _mm_packus_epi16(out, out));
        }
    }
    // the rest, pixel by pixel: outputs before x are final; the 8-byte stores above may have
    // written up to 2 bytes of x's output, which this overwrites
    flatten_row_ref(row, x, w, bpp);
}

// flatten_row_sse2 for RGBA, 8 pixels per step in 256-bit registers, SSSE3's shuffle dropping the
// alpha bytes; the last pixels (fewer than 8) go to flatten_row_sse2.
__attribute__((target("avx2"))) static void flatten_row_avx2(uint8_t *row, int w, int bpp) {
    int x = 0;
    if (bpp == 4) {
        const __m256i zero = _mm256_setzero_si256(), opaque = _mm256_set1_epi8(-1);
        const __m256i drop_alpha = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, //
                                                    0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
        const __m256i inv_max = _mm256_set1_epi16(255), one = _mm256_set1_epi16(1), half = _mm256_set1_epi16(127);
        for (; x + 8 <= w; x += 8) {
            __m256i px = _mm256_loadu_si256((const __m256i *)(row + (size_t)x * 4));
            if (((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(px, opaque)) & 0x88888888u) != 0x88888888u) {
                __m256i v[2] = {_mm256_unpacklo_epi8(px, zero), _mm256_unpackhi_epi8(px, zero)};
                for (int k = 0; k < 2; k++) { // flatten1 in 16-bit lanes, as pf_flatten16
                    __m256i a = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(v[k], 0xff), 0xff);
                    __m256i inv = _mm256_sub_epi16(inv_max, a);
                    __m256i t = _mm256_add_epi16(_mm256_mullo_epi16(v[k], a),
                                                 _mm256_sub_epi16(_mm256_slli_epi16(inv, 8), inv));
                    t = _mm256_add_epi16(t, half);
                    v[k] = _mm256_srli_epi16(_mm256_add_epi16(_mm256_add_epi16(t, one), _mm256_srli_epi16(t, 8)), 8);
                }
                px = _mm256_packus_epi16(v[0], v[1]);
            }
            px = _mm256_shuffle_epi8(px, drop_alpha); // each 128-bit half: 4 RGB pixels, 4 zero bytes
            uint8_t *o = row + (size_t)x * 3;         // 16-byte stores: 4 bytes past these pixels land
            _mm_storeu_si128((__m128i *)o, _mm256_castsi256_si128(px)); // on output not yet written,
            _mm_storeu_si128((__m128i *)(o + 12), _mm256_extracti128_si256(px, 1)); // input read
        }
    }
    flatten_row_sse2(row, x, w, bpp);
}

static void flatten_row(uint8_t *row, int w, int bpp, int avx2) {
    if (avx2)
        flatten_row_avx2(row, w, bpp);
    else
        flatten_row_sse2(row, 0, w, bpp);
}
#else
static void flatten_row(uint8_t *row, int w, int bpp, int avx2) {
    (void)avx2;
    flatten_row_ref(row, 0, w, bpp);
}
#endif

// Undoes the per-row filters in place and, with flatten (bpp 2 or 4: grey+alpha, RGBA), flattens
// every row onto white (each row then starts with its grey or RGB pixels; the stride does not
// change). raw holds h rows of 1 + rowb bytes (filter byte, then the row), followed by at least 16
// bytes of slack; zeros is rowb + 16 zero bytes (the row above the first). bpp is 1 to 4. Returns
// -1 at an unknown filter type (the rows before it are undone, the rest not).
static int unfilter(uint8_t *raw, size_t rowb, int h, int bpp, const uint8_t *zeros, int flatten) {
    size_t pitch = rowb + 1;
    int w = (int)(rowb / (size_t)bpp);
    int flat = 0; // rows before this one are flattened
#ifdef PF_SSE2
    int avx2 = pf_avx2();
#else
    int avx2 = 0;
#endif
    for (int y = 0; y < h;) {
        uint8_t *cur = raw + (size_t)y * pitch + 1;
        const uint8_t *up = y ? cur - pitch : zeros;
        int f = cur[-1];
        if (f > PF_PAETH) return -1;
        int done = 1;
#ifdef PF_SSE2
        int chained = f == PF_SUB || f == PF_AVG || f == PF_PAETH;
        int f1 = y + 1 < h ? cur[pitch - 1] : -1;
        if (avx2 && f == PF_PAETH && y + 3 < h && f1 == f && cur[2 * pitch - 1] == f && cur[3 * pitch - 1] == f) {
            pf_quad_bpp_avx2(cur, pitch, up, w, bpp);
            done = 4;
        } else if (chained && (f1 == PF_SUB || f1 == PF_AVG || f1 == PF_PAETH)) {
            if (avx2)
                pf_pair_bpp_avx2(cur, cur + pitch, up, w, bpp, f, f1);
            else
                pf_pair_bpp_sse2(cur, cur + pitch, up, w, bpp, f, f1);
            done = 2;
        } else if (chained) {
            if (avx2)
                pf_row_bpp_avx2(cur, up, w, bpp, f);
            else
                pf_row_bpp_sse2(cur, up, w, bpp, f);
        } else
#endif
            unfilter_row_ref(cur, up, rowb, bpp, f);
        y += done;
        // every row but the last one undone is no longer anyone's upper row
        for (; flatten && flat < y - 1; flat++) flatten_row(raw + (size_t)flat * pitch + 1, w, bpp, avx2);
    }
    for (; flatten && flat < h; flat++) flatten_row(raw + (size_t)flat * pitch + 1, w, bpp, avx2);
    return 0;
}

#endif
