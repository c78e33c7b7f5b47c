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


#if PF_AVX2
// The Paeth predictor (as pf_predict) of four pixels at once, in the 64-bit lanes of a register.
PF_TARGET PF_INLINE __m256i pf_paeth4_avx2(__m256i a, __m256i b, __m256i c) {
    __m256i pa = _mm256_sub_epi16(b, c), pb = _mm256_sub_epi16(a, c);
    __m256i pc = _mm256_abs_epi16(_mm256_add_epi16(pa, pb));
    pa = _mm256_abs_epi16(pa);
    pb = _mm256_abs_epi16(pb);
    __m256i not_a = _mm256_cmpgt_epi16(pa, _mm256_min_epi16(pb, pc));
    __m256i not_b = _mm256_cmpgt_epi16(pb, pc);
    return _mm256_blendv_epi8(a, _mm256_blendv_epi8(b, c, not_b), not_a);
}

// Four Paeth rows in one 256-bit register: 64-bit lane k holds row k's pixel x-2k, so each
// instruction serves four rows; row k's upper pixels come from lane k-1 two steps before (off
// the dependency chain), row 0's from up. Lanes of pixels left of a row's first stay zero (zero
// bytes in, zero prediction out), which is the first-pixel rule; lanes past a row's end are
// computed but not stored. (Sub and Average rows gain nothing from it: their chains are short,
// and the loads and stores of four rows cost more than they save.)
PF_TARGET PF_INLINE void pf_quad_avx2(uint8_t *r0, size_t pitch, const uint8_t *up, int w, int bpp) {
    const __m256i keep = _mm256_broadcastq_epi64(pf_keep(bpp));
    const __m128i keep1 = pf_keep(bpp);
    __m256i A = _mm256_setzero_si256(), P = A, C = A;
    for (int x = 0; x < w + 6; x++) {
        uint32_t v[4];
        for (int k = 0; k < 4; k++) {
            int p = x - 2 * k;
            v[k] = 0;
            if ((unsigned)p < (unsigned)w) memcpy(&v[k], r0 + k * pitch + (size_t)p * bpp, 4);
        }
        __m256i R = _mm256_cvtepu8_epi16(_mm_setr_epi32((int)v[0], (int)v[1], (int)v[2], (int)v[3]));
        __m128i u = x < w ? _mm_and_si128(pf_load(up + (size_t)x * bpp), keep1) : _mm_setzero_si128();
        // B = [up x | P lane 0 | P lane 1 | P lane 2]
        __m256i B = _mm256_blend_epi32(_mm256_permute4x64_epi64(P, _MM_SHUFFLE(2, 1, 0, 0)),
                                       _mm256_castsi128_si256(u), 0x03);
        P = A;
        A = _mm256_and_si256(_mm256_add_epi16(R, pf_paeth4_avx2(A, B, C)), keep);
        C = B;
        __m256i pk = _mm256_packus_epi16(A, A); // per 128-bit half: rows 0, 1 (2, 3) in bytes 0..7
        uint64_t s[2] = {(uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(pk)),
                         (uint64_t)_mm_cvtsi128_si64(_mm256_extracti128_si256(pk, 1))};
        for (int k = 0; k < 4; k++) {
            int p = x - 2 * k;
            if ((unsigned)p < (unsigned)w)
                pf_store32(r0 + k * pitch + (size_t)p * bpp, (uint32_t)(s[k >> 1] >> (32 * (k & 1))), bpp);
        }
    }
}

// Rows r0 .. r0 + 3 pitch, all Paeth; up is the row over r0.
PF_TARGET static void pf_quad_bpp_avx2(uint8_t *r0, size_t pitch, const uint8_t *up, int w, int bpp) {
    switch (bpp) {
    case 1:
        pf_quad_avx2(r0, pitch, up, w, 1);
        break;
    case 2:
        pf_quad_avx2(r0, pitch, up, w, 2);
        break;
    case 3:
        pf_quad_avx2(r0, pitch, up, w, 3);
        break;
    default:
        pf_quad_avx2(r0, pitch, up, w, 4);
    }
}
#endif
