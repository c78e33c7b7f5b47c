// Separable Lanczos-3 resampling of 8-bit interleaved images, in fixed point.
//
// This is the hot loop of every sample (after decode), so it is our own code rather than
// vips_resize, which on this workload spends most of its time in pipeline machinery: on 1.5 MPix
// photos going to 512-px buckets it measured ~11 ms per image against ~3 ms here.
//
// Method (as in most production resamplers): for each output column/row, the contributing input
// range and normalised filter weights are computed once; weights are stored as fixed-point
// 16-bit integers (PREC_H bits) and accumulated in int32. The horizontal pass runs only over the input rows
// the vertical pass needs, into an 8-bit intermediate; the vertical pass then walks contiguous
// memory. Both passes take two taps per pmaddwd (SSE2); on CPUs with AVX2 (checked at run time)
// the vertical pass does 32 columns per step and the horizontal pass two output pixels per step.
// Filter values come from a table (the weights are 14-bit, far coarser than its error).
#include "resample.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DG_AVX2 1
#endif

#define PREC_H 14 // int16 weights: SSE2 pmaddwd takes two taps at once
#define LANCZOS_A 3
#define LUT_RES 4096 // table samples per unit of x

static float lut[LANCZOS_A * LUT_RES + 2];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void lut_init(void) {
    lut[0] = 1.0f;
    for (int i = 1; i < LANCZOS_A * LUT_RES + 2; i++) {
        double x = (double)i / LUT_RES;
        if (x >= LANCZOS_A) {
            lut[i] = 0.0f;
            continue;
        }
        double px = M_PI * x;
        lut[i] = (float)(LANCZOS_A * sin(px) * sin(px / LANCZOS_A) / (px * px));
    }
}

// lanczos(x) = sinc(x) sinc(x/3) on (-3, 3), linearly interpolated from the table.
static double lanczos(double x) {
    x = fabs(x);
    if (x >= LANCZOS_A) return 0.0;
    double f = x * LUT_RES;
    int i = (int)f;
    double t = f - i;
    return lut[i] + t * (lut[i + 1] - lut[i]);
}

static inline uint8_t clip_prec(int32_t v, int prec) {
    v >>= prec;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

typedef struct {
    int *start;     // first input index of each output index
    int *count;     // number of taps of each output index
    int32_t *w;     // taps, `max` per output index; zero past count
    int max;        // maximum taps + 1 (so that taps can be taken in pairs)
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->start);
    free(c->count);
    free(c->w);
}

// Weights to map in_size samples onto out_size samples.
static int coeffs_make(coeffs *c, int in_size, int out_size, int prec) {
    double scale = (double)in_size / out_size;       // > 1 when downsampling
    double fscale = scale > 1.0 ? scale : 1.0;       // widen the filter when downsampling
    double support = LANCZOS_A * fscale;
    c->max = (int)ceil(support) * 2 + 2; // + a zero tap so taps can be taken in pairs
    c->start = malloc(sizeof(int) * out_size);
    c->count = malloc(sizeof(int) * out_size);
    c->w = calloc((size_t)out_size * c->max, sizeof(int32_t));
    double *tmp = malloc(sizeof(double) * c->max);
    if (!c->start || !c->count || !c->w || !tmp) {
        free(tmp);
        coeffs_free(c);
        return -1;
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)floor(center - support);
        int hi = (int)ceil(center + support);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        if (n > c->max - 1) n = c->max - 1;
        double sum = 0.0;
        for (int k = 0; k < n; k++) {
            tmp[k] = lanczos((lo + k + 0.5 - center) / fscale);
            sum += tmp[k];
        }
        if (sum == 0.0) { // cannot happen for a sane filter; fall back to nearest
            n = 1;
            lo = (int)center < in_size ? (int)center : in_size - 1;
            tmp[0] = sum = 1.0;
        }
        c->start[i] = lo;
        c->count[i] = n;
        for (int k = 0; k < n; k++) {
            c->w[(size_t)i * c->max + k] = (int32_t)lround(tmp[k] / sum * (1 << prec));
        }
    }
    free(tmp);
    return 0;
}

// The pmaddwd operand for taps k and k+1: (w[k], w[k+1]) as two int16 in one int32.
static inline int32_t tap_pair(const int32_t *w, int k, int n) {
    return (int32_t)(((uint32_t)(uint16_t)(k + 1 < n ? w[k + 1] : 0) << 16) | (uint16_t)w[k]);
}

// Which SIMD paths run: -1 not decided yet, 0 SSE2/scalar only, 2 AVX2 (see dg_resample_simd).
static int simd_level = -1;

static int use_avx2(void) {
    int l = __atomic_load_n(&simd_level, __ATOMIC_RELAXED);
    if (l < 0) {
#ifdef DG_AVX2
        __builtin_cpu_init();
        l = __builtin_cpu_supports("avx2") ? 2 : 0;
#else
        l = 0;
#endif
        __atomic_store_n(&simd_level, l, __ATOMIC_RELAXED);
    }
    return l >= 2;
}

int dg_resample_simd(int level) {
    int prev = use_avx2() ? 2 : 0;
    if (level < 0) {
        level = -1;
    } else if (level >= 2) {
        level = 0;
#ifdef DG_AVX2
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) level = 2;
#endif
    } else {
        level = 0;
    }
    __atomic_store_n(&simd_level, level, __ATOMIC_RELAXED);
    return prev;
}

#ifdef DG_AVX2
// Vertical pass, 32 columns per step; returns how many bytes of the row it did.
__attribute__((target("avx2"))) static size_t pass_v_avx2(const uint8_t *base, size_t stride,
                                                          const int32_t *w, int n, uint8_t *dst,
                                                          size_t len) {
    const __m256i zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i s0 = _mm256_set1_epi32(1 << (PREC_H - 1)), s1 = s0, s2 = s0, s3 = s0;
        for (int k = 0; k < n; k += 2) {
            const uint8_t *ra = base + (size_t)k * stride + i;
            __m256i a = _mm256_loadu_si256((const __m256i *)ra);
            __m256i b = k + 1 < n ? _mm256_loadu_si256((const __m256i *)(ra + stride)) : zero;
            __m256i wk = _mm256_set1_epi32(tap_pair(w, k, n));
            // in-lane interleaves: each 128-bit lane does what the SSE2 loop does for 16 columns
            __m256i lo = _mm256_unpacklo_epi8(a, b), hi = _mm256_unpackhi_epi8(a, b);
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), wk));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), wk));
            s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), wk));
            s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), wk));
        }
        s0 = _mm256_srai_epi32(s0, PREC_H), s1 = _mm256_srai_epi32(s1, PREC_H);
        s2 = _mm256_srai_epi32(s2, PREC_H), s3 = _mm256_srai_epi32(s3, PREC_H);
        __m256i packed = _mm256_packus_epi16(_mm256_packs_epi32(s0, s1), _mm256_packs_epi32(s2, s3));
        _mm256_storeu_si256((__m256i *)(dst + i), packed);
    }
    return i;
}

// Weights of the horizontal pass laid out for pass_h_avx2: for each pair of output pixels (x, x+1)
// and each tap pair j, 8 int32: tap_pair(x, 2j) four times, then tap_pair(x+1, 2j) four times, so
// one 256-bit load feeds pmaddwd. Returns NULL when out of memory.
static int32_t *pack_pairs(const coeffs *c, int out_w) {
    int pairs = c->max / 2; // c->max is even
    int32_t *pk = malloc(sizeof(int32_t) * 8 * (size_t)pairs * (size_t)(out_w / 2 + 1));
    if (!pk) return NULL;
    for (int x = 0; x + 2 <= out_w; x += 2) {
        int32_t *q = pk + (size_t)(x / 2) * pairs * 8;
        for (int j = 0; j < pairs; j++) {
            for (int h = 0; h < 2; h++) {
                const int32_t *w = c->w + (size_t)(x + h) * c->max;
                int32_t v = tap_pair(w, 2 * j, c->count[x + h]);
                for (int l = 0; l < 4; l++) q[8 * j + 4 * h + l] = v;
            }
        }
    }
    return pk;
}

// Horizontal pass over a row of 3- or 4-byte pixels, two output pixels per step (one per 128-bit
// lane); returns how many output pixels it did. One pshufb turns two loaded pixels into
// (c0 c0' c1 c1' c2 c2' c3 c3') 16-bit pairs for pmaddwd; for 3-byte pixels c3 is 0. The input row
// needs 4 * (c->max + 4) bytes of slack: 16-byte loads, and the shorter of the two filters reads
// (with zero weights) as far as the longer one.
__attribute__((target("avx2"))) static int pass_h_avx2(const uint8_t *in, uint8_t *out, int out_w,
                                                       int bands, int dps, int pad, const coeffs *c,
                                                       const int32_t *pk) {
    const __m256i shuf = bands == 3
        ? _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                           0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1)
        : _mm256_setr_epi8(0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1,
                           0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1);
    const __m256i padmask = _mm256_set1_epi32(pad ? (int32_t)0xFF000000u : 0);
    const int pairs = c->max / 2;
    int x = 0;
    for (; x + 2 <= out_w; x += 2) {
        const __m256i *q = (const __m256i *)(pk + (size_t)(x / 2) * pairs * 8);
        const uint8_t *p0 = in + (size_t)c->start[x] * bands, *p1 = in + (size_t)c->start[x + 1] * bands;
        int n0 = c->count[x], n1 = c->count[x + 1];
        int n = n0 > n1 ? n0 : n1;
        __m256i acc = _mm256_set1_epi32(1 << (PREC_H - 1));
        for (int k = 0; k < n; k += 2) {
            __m256i px = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p0 + bands * k))),
                                                 _mm_loadu_si128((const __m128i *)(p1 + bands * k)), 1);
            px = _mm256_shuffle_epi8(px, shuf);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(px, _mm256_loadu_si256(q + k / 2)));
        }
        acc = _mm256_srai_epi32(acc, PREC_H);
        acc = _mm256_packs_epi32(acc, acc);
        acc = _mm256_packus_epi16(acc, acc);
        acc = _mm256_or_si256(acc, padmask);
        uint32_t a0 = (uint32_t)_mm256_cvtsi256_si32(acc);
        uint32_t a1 = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(acc, 1));
        uint8_t *o = out + (size_t)x * dps;
        if (dps == 4) {
            memcpy(o, &a0, 4);
            memcpy(o + 4, &a1, 4);
        } else {
            for (int b = 0; b < dps; b++) {
                o[b] = (uint8_t)(a0 >> (8 * b));
                o[dps + b] = (uint8_t)(a1 >> (8 * b));
            }
        }
    }
    return x;
}
#endif

// Vertical pass for one output row: n input rows (stride apart) weighted into dst (len bytes).
static void pass_v(const uint8_t *base, size_t stride, const int32_t *w, int n, uint8_t *dst,
                   size_t len) {
    size_t i = 0;
#ifdef DG_AVX2
    if (use_avx2()) i = pass_v_avx2(base, stride, w, n, dst, len);
#endif
#ifdef __SSE2__
    // 16 columns at a time, two rows per pmaddwd: (a0 b0 a1 b1 ...) . (wa wb wa wb ...)
    const __m128i zero = _mm_setzero_si128();
    for (; i + 16 <= len; i += 16) {
        __m128i s0 = _mm_set1_epi32(1 << (PREC_H - 1)), s1 = s0, s2 = s0, s3 = s0;
        for (int k = 0; k < n; k += 2) {
            const uint8_t *ra = base + (size_t)k * stride + i;
            __m128i a = _mm_loadu_si128((const __m128i *)ra);
            __m128i b = k + 1 < n ? _mm_loadu_si128((const __m128i *)(ra + stride)) : zero;
            __m128i wk = _mm_set1_epi32(tap_pair(w, k, n));
            __m128i lo = _mm_unpacklo_epi8(a, b), hi = _mm_unpackhi_epi8(a, b);
            s0 = _mm_add_epi32(s0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), wk));
            s1 = _mm_add_epi32(s1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), wk));
            s2 = _mm_add_epi32(s2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), wk));
            s3 = _mm_add_epi32(s3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), wk));
        }
        s0 = _mm_srai_epi32(s0, PREC_H), s1 = _mm_srai_epi32(s1, PREC_H);
        s2 = _mm_srai_epi32(s2, PREC_H), s3 = _mm_srai_epi32(s3, PREC_H);
        __m128i packed = _mm_packus_epi16(_mm_packs_epi32(s0, s1), _mm_packs_epi32(s2, s3));
        _mm_storeu_si128((__m128i *)(dst + i), packed);
    }
#endif
    for (; i < len; i++) { // the tail (and the whole row without SSE2)
        int32_t a = 1 << (PREC_H - 1);
        for (int k = 0; k < n; k++) a += base[(size_t)k * stride + i] * w[k];
        dst[i] = clip_prec(a, PREC_H);
    }
}

// RGB -> RGBX, so that the horizontal pass works on 4-byte pixels.
static void widen_rgb(const uint8_t *in3, uint8_t *out4, size_t pixels) {
    for (size_t x = 0; x < pixels; x++) {
        out4[4 * x] = in3[3 * x];
        out4[4 * x + 1] = in3[3 * x + 1];
        out4[4 * x + 2] = in3[3 * x + 2];
        out4[4 * x + 3] = 255;
    }
}

// Horizontal pass over one row of `bands` bytes per pixel into dps bytes per pixel, output pixels
// x0..out_w-1; pad sets the bytes past the colour ones to 255. 4-byte pixels take the SSE2 path;
// 1- and 3-byte pixels are scalar (3-byte rows come here only for the odd last pixel after AVX2).
static void pass_h_row(const uint8_t *in, uint8_t *out, int x0, int out_w, int bands, int dps, int pad,
                       const coeffs *c) {
    for (int x = x0; x < out_w; x++) {
        const int32_t *w = c->w + (size_t)x * c->max;
        const uint8_t *p = in + (size_t)c->start[x] * bands;
        int n = c->count[x];
        uint8_t *o = out + (size_t)x * dps;
        if (bands != 4) {
            for (int b = 0; b < bands; b++) {
                int32_t a = 1 << (PREC_H - 1);
                for (int k = 0; k < n; k++) a += p[bands * k + b] * w[k];
                o[b] = clip_prec(a, PREC_H);
            }
            for (int b = bands; b < dps; b++) o[b] = 255;
            continue;
        }
#ifdef __SSE2__
        // two taps per step: (r0 r1 g0 g1 b0 b1 x0 x1) . (w0 w1 w0 w1 ...) with pmaddwd
        const __m128i zero = _mm_setzero_si128();
        __m128i acc = _mm_set1_epi32(1 << (PREC_H - 1));
        for (int k = 0; k < n; k += 2) {
            // two pixels (the row has slack for an odd last tap, whose weight is 0)
            __m128i px = _mm_loadl_epi64((const __m128i *)(p + 4 * k));
            px = _mm_unpacklo_epi8(px, zero);
            px = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 8));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(px, _mm_set1_epi32(tap_pair(w, k, n))));
        }
        // shift out the fraction, saturate to 0..255, pack the 4 lanes into 4 bytes
        acc = _mm_srai_epi32(acc, PREC_H);
        acc = _mm_packs_epi32(acc, acc);
        acc = _mm_packus_epi16(acc, acc);
        uint32_t px4 = (uint32_t)_mm_cvtsi128_si32(acc);
        if (pad) px4 |= 0xFF000000u; // little-endian: byte 3 is X
        if (dps == 4) {
            memcpy(o, &px4, 4);
        } else {
            for (int b = 0; b < dps; b++) o[b] = (uint8_t)(px4 >> (8 * b));
        }
#else
        int32_t a[4];
        for (int b = 0; b < 4; b++) a[b] = 1 << (PREC_H - 1);
        for (int k = 0; k < n; k++)
            for (int b = 0; b < 4; b++) a[b] += p[4 * k + b] * w[k];
        for (int b = 0; b < dps; b++) o[b] = clip_prec(a[b], PREC_H);
        if (pad) o[3] = 255;
#endif
    }
}

int dg_resample(const uint8_t *src, int sw, int sh, size_t sstride, int bands, uint8_t *dst,
                int dw, int dh, int dps) {
    return dg_resample_to(src, sw, sh, sstride, bands, dst, dw, dh, dps, 0);
}

int dg_resample_to(const uint8_t *src, int sw, int sh, size_t sstride, int bands, uint8_t *dst,
                   int dw, int dh, int dps, int planar) {
    if ((bands != 1 && bands != 3 && bands != 4) || dps < bands || dps > 4 || sw < 1 || sh < 1 ||
        dw < 1 || dh < 1 || (planar && dps != bands))
        return -1;
    pthread_once(&lut_once, lut_init);
    coeffs ch = {0}, cv = {0};
    if (coeffs_make(&ch, sw, dw, PREC_H)) return -1;
    if (coeffs_make(&cv, sh, dh, PREC_H)) {
        coeffs_free(&ch);
        return -1;
    }
    size_t row_len = (size_t)sw * bands;
    size_t slack = 4 * ((size_t)ch.max + 4); // tap pairs and two-pixel steps read past the end
    // AVX2 (3 or 4 bands): pre-packed horizontal weights. Otherwise RGB rows are widened to RGBX
    // for the SSE2 horizontal pass.
    int32_t *pk = NULL;
#ifdef DG_AVX2
    if (bands != 1 && use_avx2() && !(pk = pack_pairs(&ch, dw))) {
        coeffs_free(&ch);
        coeffs_free(&cv);
        return -1;
    }
#endif
    int widen = bands == 3 && !pk;
    uint8_t *row = calloc((size_t)sw * (widen ? 4 : bands) + slack, 1);
    uint8_t *row3 = widen ? malloc(row_len) : NULL;
    // planar (CHW) output: each output row is made interleaved here, then scattered to the planes
    uint8_t *orow = planar && bands > 1 ? malloc((size_t)dw * dps + 64) : NULL;
    if (!row || (widen && !row3) || (planar && bands > 1 && !orow)) {
        free(row);
        free(row3);
        free(orow);
        free(pk);
        coeffs_free(&ch);
        coeffs_free(&cv);
        return -1;
    }
    // Pixels past `bands` are 255 when dps > bands: 3 -> 4 via the X byte; 1 -> n by pass_h_row.
    int pad = bands == 3 && dps == 4;
    // vertical first (over contiguous input rows, vectorised), then horizontal on the result row
    for (int y = 0; y < dh; y++) {
        const uint8_t *base = src + (size_t)cv.start[y] * sstride;
        const int32_t *w = cv.w + (size_t)y * cv.max;
        uint8_t *o = orow ? orow : dst + (size_t)y * dw * dps;
        if (widen) {
            pass_v(base, sstride, w, cv.count[y], row3, row_len);
            widen_rgb(row3, row, (size_t)sw);
            pass_h_row(row, o, 0, dw, 4, dps, pad, &ch);
        } else {
            pass_v(base, sstride, w, cv.count[y], row, row_len);
            int x = 0;
#ifdef DG_AVX2
            if (pk) x = pass_h_avx2(row, o, dw, bands, dps, pad, &ch, pk);
#endif
            pass_h_row(row, o, x, dw, bands, dps, pad, &ch); // the rest: odd last pixel, or all
        }
        if (orow) { // scatter the row to the planes: plane c starts at c*dw*dh
            size_t plane = (size_t)dw * dh;
            for (int c = 0; c < bands; c++) {
                uint8_t *pc = dst + c * plane + (size_t)y * dw;
                for (int xx = 0; xx < dw; xx++) pc[xx] = orow[(size_t)xx * dps + c];
            }
        }
    }
    free(orow);
    free(pk);
    free(row);
    free(row3);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return 0;
}
