// The SIMD unfiltering kernels of pngfilter.h, included by it twice: PF_V(name) names each
// function for its instruction set (name_sse2, name_avx2), PF_TARGET compiles it for that set,
// and PF_AVX2 picks the instructions only AVX2-era CPUs have (SSSE3's abs, SSE4.1's blend: they
// take two and three instructions off each Paeth step's dependency chain). No include guard.

PF_TARGET PF_INLINE __m128i PF_V(pf_abs16)(__m128i x) {
#if PF_AVX2
    return _mm_abs_epi16(x);
#else
    return _mm_max_epi16(x, _mm_sub_epi16(_mm_setzero_si128(), x));
#endif
}

// m ? y : x, lane by lane (m all ones or all zeros)
PF_TARGET PF_INLINE __m128i PF_V(pf_sel)(__m128i m, __m128i x, __m128i y) {
#if PF_AVX2
    return _mm_blendv_epi8(x, y, m);
#else
    return _mm_or_si128(_mm_andnot_si128(m, x), _mm_and_si128(m, y));
#endif
}

// The predictor of filter f from the left (a), upper (b) and upper-left (c) pixels.
PF_TARGET PF_INLINE __m128i PF_V(pf_predict)(int f, __m128i a, __m128i b, __m128i c) {
    switch (f) {
    case PF_SUB:
        return a;
    case PF_UP:
        return b;
    case PF_AVG:
        return _mm_srli_epi16(_mm_add_epi16(a, b), 1);
    case PF_PAETH: {
        // a if |b-c| <= |a-c| and |b-c| <= |a+b-2c|, else b if |a-c| <= |a+b-2c|, else c
        __m128i pa = _mm_sub_epi16(b, c), pb = _mm_sub_epi16(a, c);
        __m128i pc = PF_V(pf_abs16)(_mm_add_epi16(pa, pb));
        pa = PF_V(pf_abs16)(pa);
        pb = PF_V(pf_abs16)(pb);
        __m128i not_a = _mm_cmpgt_epi16(pa, _mm_min_epi16(pb, pc));
        __m128i not_b = _mm_cmpgt_epi16(pb, pc);
        return PF_V(pf_sel)(not_a, a, PF_V(pf_sel)(not_b, b, c));
    }
    default:
        return _mm_setzero_si128();
    }
}

// One pixel of a Sub, Average or Paeth row: r the filtered bytes, a / b / c the reconstructed left,
// upper and upper-left pixels (16-bit lanes, zero outside the pixel). Stores the pixel at p and
// returns it, the next pixel's a.
PF_TARGET PF_INLINE __m128i PF_V(pf_step)(uint8_t *p, __m128i a, __m128i b, __m128i c, __m128i keep, int bpp, int f) {
    __m128i x = _mm_and_si128(_mm_add_epi16(pf_load(p), PF_V(pf_predict)(f, a, b, c)), keep);
    pf_store(p, x, bpp);
    return x;
}

// One row (Sub, Average or Paeth), one pixel per step. a and c start at zero (no pixel left of
// the first), which makes each filter's first-pixel rule fall out of the general one.
PF_TARGET PF_INLINE void PF_V(pf_row)(uint8_t *cur, const uint8_t *up, int w, int bpp, int f) {
    const __m128i keep = pf_keep(bpp);
    __m128i a = _mm_setzero_si128(), c = a;
    for (int x = 0; x < w; x++) {
        size_t i = (size_t)x * bpp;
        __m128i b = _mm_and_si128(pf_load(up + i), keep);
        a = PF_V(pf_step)(cur + i, a, b, c, keep, bpp, f);
        c = b;
    }
}

// Two rows: r1 is the row under r0 (r0 is its upper row), up the row over r0; f0 and f1 are their
// filters (Sub, Average or Paeth). Row r1 trails by one pixel and takes its upper and upper-left
// pixels straight from r0's registers: b1 (r0's pixel x-1) is a0 before r0's step x.
PF_TARGET PF_INLINE void PF_V(pf_pair)(uint8_t *r0, uint8_t *r1, const uint8_t *up, int w, int bpp, int f0, int f1) {
    const __m128i keep = pf_keep(bpp);
    __m128i zero = _mm_setzero_si128();
    __m128i b0 = _mm_and_si128(pf_load(up), keep);
    __m128i a0 = PF_V(pf_step)(r0, zero, b0, zero, keep, bpp, f0), c0 = b0;
    __m128i a1 = zero, c1 = zero;
    for (int x = 1; x < w; x++) {
        size_t i = (size_t)x * bpp;
        __m128i b1 = a0;
        b0 = _mm_and_si128(pf_load(up + i), keep);
        a0 = PF_V(pf_step)(r0 + i, a0, b0, c0, keep, bpp, f0);
        a1 = PF_V(pf_step)(r1 + i - bpp, a1, b1, c1, keep, bpp, f1);
        c0 = b0, c1 = b1;
    }
    PF_V(pf_step)(r1 + (size_t)(w - 1) * bpp, a1, a0, c1, keep, bpp, f1);
}

// PF_V(pf_pair) for two rows with the same filter, both pixels of a step in one register: lanes 0-3
// hold row r0's pixel x, lanes 4-7 row r1's pixel x-2, so each instruction serves both rows (half
// the instructions of PF_V(pf_pair)). r1 trails by two pixels, not one, so that its upper pixel comes
// from the step before last: only the left pixel (the previous step) is on the dependency chain.
PF_TARGET PF_INLINE void PF_V(pf_pair_packed)(uint8_t *r0, uint8_t *r1, const uint8_t *up, int w, int bpp, int f) {
    if (w < 3) {
        PF_V(pf_pair)(r0, r1, up, w, bpp, f, f);
        return;
    }
    const __m128i keep = pf_keep(bpp), keep2 = _mm_unpacklo_epi64(keep, keep);
    const __m128i zero = _mm_setzero_si128();
    // r0's pixels 0 and 1 alone; then A = [r0 x-1 | r1 x-3], P = [r0 x-2 | ...] (the A before),
    // C = [up x-1 | r0 x-3]
    __m128i u0 = _mm_and_si128(pf_load(up), keep), u1 = _mm_and_si128(pf_load(up + bpp), keep);
    __m128i p0 = PF_V(pf_step)(r0, zero, u0, zero, keep, bpp, f);
    __m128i A = PF_V(pf_step)(r0 + bpp, p0, u1, u0, keep, bpp, f), P = p0, C = u1;
    for (int x = 2; x < w; x++) {
        size_t i = (size_t)x * bpp;
        uint32_t f0, f1;
        memcpy(&f0, r0 + i, 4);
        memcpy(&f1, r1 + i - 2 * (size_t)bpp, 4);
        __m128i R = _mm_unpacklo_epi8(_mm_cvtsi64_si128((long long)((uint64_t)f1 << 32 | f0)), zero);
        __m128i B = _mm_unpacklo_epi64(_mm_and_si128(pf_load(up + i), keep), P); // [up x | r0 x-2]
        P = A;
        A = _mm_and_si128(_mm_add_epi16(R, PF_V(pf_predict)(f, A, B, C)), keep2);
        uint64_t out = (uint64_t)_mm_cvtsi128_si64(_mm_packus_epi16(A, A));
        pf_store32(r0 + i, (uint32_t)out, bpp);
        pf_store32(r1 + i - 2 * (size_t)bpp, (uint32_t)(out >> 32), bpp);
        C = B;
    }
    // r1's last two pixels: A = [r0 w-1 | r1 w-3], P = [r0 w-2 | r1 w-4], C = [up w-1 | r0 w-3]
    __m128i a1 = _mm_srli_si128(A, 8);
    a1 = PF_V(pf_step)(r1 + (size_t)(w - 2) * bpp, a1, _mm_move_epi64(P), _mm_srli_si128(C, 8), keep, bpp, f);
    PF_V(pf_step)(r1 + (size_t)(w - 1) * bpp, a1, _mm_move_epi64(A), _mm_move_epi64(P), keep, bpp, f);
}

// The pair loop for every (f0, f1) of Sub, Average and Paeth, at one bpp.
PF_TARGET PF_INLINE void PF_V(pf_pair_any)(uint8_t *r0, uint8_t *r1, const uint8_t *up, int w, int bpp, int f0, int f1) {
#define PF_CASE(x, y)                                                                                                  \
    case (x) * 8 + (y):                                                                                                \
        PF_V(pf_pair)(r0, r1, up, w, bpp, x, y);                                                                             \
        break;
    if (f0 == f1) {
        switch (f0) {
        case PF_SUB:
            PF_V(pf_pair_packed)(r0, r1, up, w, bpp, PF_SUB);
            return;
        case PF_AVG:
            PF_V(pf_pair_packed)(r0, r1, up, w, bpp, PF_AVG);
            return;
        default:
            PF_V(pf_pair_packed)(r0, r1, up, w, bpp, PF_PAETH);
            return;
        }
    }
    switch (f0 * 8 + f1) {
        PF_CASE(PF_SUB, PF_AVG)
        PF_CASE(PF_SUB, PF_PAETH)
        PF_CASE(PF_AVG, PF_SUB)
        PF_CASE(PF_AVG, PF_PAETH)
        PF_CASE(PF_PAETH, PF_SUB)
        PF_CASE(PF_PAETH, PF_AVG)
    }
#undef PF_CASE
}

PF_TARGET static void PF_V(pf_pair_bpp)(uint8_t *r0, uint8_t *r1, const uint8_t *up, int w, int bpp, int f0, int f1) {
    switch (bpp) {
    case 1:
        PF_V(pf_pair_any)(r0, r1, up, w, 1, f0, f1);
        break;
    case 2:
        PF_V(pf_pair_any)(r0, r1, up, w, 2, f0, f1);
        break;
    case 3:
        PF_V(pf_pair_any)(r0, r1, up, w, 3, f0, f1);
        break;
    default:
        PF_V(pf_pair_any)(r0, r1, up, w, 4, f0, f1);
    }
}

PF_TARGET PF_INLINE void PF_V(pf_row_any)(uint8_t *cur, const uint8_t *up, int w, int bpp, int f) {
    switch (f) {
    case PF_SUB:
        PF_V(pf_row)(cur, up, w, bpp, PF_SUB);
        break;
    case PF_AVG:
        PF_V(pf_row)(cur, up, w, bpp, PF_AVG);
        break;
    default:
        PF_V(pf_row)(cur, up, w, bpp, PF_PAETH);
    }
}

PF_TARGET static void PF_V(pf_row_bpp)(uint8_t *cur, const uint8_t *up, int w, int bpp, int f) {
    switch (bpp) {
    case 1:
        PF_V(pf_row_any)(cur, up, w, 1, f);
        break;
    case 2:
        PF_V(pf_row_any)(cur, up, w, 2, f);
        break;
    case 3:
        PF_V(pf_row_any)(cur, up, w, 3, f);
        break;
    default:
        PF_V(pf_row_any)(cur, up, w, 4, f);
    }
}

