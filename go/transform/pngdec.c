// Our own decoder for the common PNG: 8-bit grey or RGB, not interlaced, no transparency chunk;
// with alpha (grey+alpha, RGBA) too when the caller flattens it onto white.
//
// PNG photos cost a third of all decode time through libvips/libpng: about half of it in zlib's
// inflate and half in libpng's byte-at-a-time Paeth unfiltering. Here the IDAT stream is inflated
// in one call with libdeflate (the whole file is in memory already) and the rows are unfiltered in
// place, Paeth one whole pixel per step with SSE2. Anything else (palette, 16 bits, alpha,
// interlace, tRNS) returns "not mine" and goes through libvips unchanged.
//
// Chunk CRCs are not checked: the zlib stream's Adler-32 (checked by libdeflate) covers the pixel
// data, and the header was already parsed, CRC-checked, by libvips (dg_open) before we get here.
// Any anomaly (truncation, a corrupt stream, a bad filter byte, surplus data) hands the image
// back to libvips, so what is accepted or refused (and its error message) does not change.
#include "pngdec.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static int png_fast_enabled = 1;

int dg_png_fast(int on) {
    int prev = __atomic_load_n(&png_fast_enabled, __ATOMIC_RELAXED);
    if (on >= 0) __atomic_store_n(&png_fast_enabled, on ? 1 : 0, __ATOMIC_RELAXED);
    return prev;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint8_t paeth1(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

#ifdef __SSE2__
// Paeth for 3- or 4-byte pixels, one pixel per step in 16-bit lanes. For 3-byte pixels `cur`
// needs one byte of slack after the row: 4 bytes are loaded and stored, the fourth unchanged.
static void paeth_sse2(uint8_t *cur, const uint8_t *up, size_t rowb, int bpp) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i keep3 = bpp == 4 ? _mm_setr_epi16(-1, -1, -1, -1, 0, 0, 0, 0)
                                   : _mm_setr_epi16(-1, -1, -1, 0, 0, 0, 0, 0);
    __m128i a = zero, c = zero; // left and upper-left, reconstructed (16-bit lanes)
    for (size_t i = 0; i < rowb; i += (size_t)bpp) {
        uint32_t xb, bb;
        memcpy(&xb, cur + i, 4);
        memcpy(&bb, up + i, 4);
        __m128i b = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)bb), zero);
        __m128i pa = _mm_sub_epi16(b, c), pb = _mm_sub_epi16(a, c); // |b-c|, |a-c| after abs
        __m128i pc = _mm_add_epi16(pa, pb);                         // |a+b-2c| after abs
        pa = _mm_max_epi16(pa, _mm_sub_epi16(zero, pa));
        pb = _mm_max_epi16(pb, _mm_sub_epi16(zero, pb));
        pc = _mm_max_epi16(pc, _mm_sub_epi16(zero, pc));
        __m128i not_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));
        __m128i not_b = _mm_cmpgt_epi16(pb, pc);
        __m128i bc = _mm_or_si128(_mm_andnot_si128(not_b, b), _mm_and_si128(not_b, c));
        __m128i pred = _mm_or_si128(_mm_andnot_si128(not_a, a), _mm_and_si128(not_a, bc));
        pred = _mm_and_si128(pred, keep3);
        __m128i x = _mm_add_epi8(_mm_cvtsi32_si128((int)xb), _mm_packus_epi16(pred, pred));
        uint32_t out = (uint32_t)_mm_cvtsi128_si32(x);
        memcpy(cur + i, &out, 4);
        a = _mm_unpacklo_epi8(x, zero);
        c = b;
    }
}
#endif

// Undoes the per-row filters in place. raw holds h rows of 1 + rowb bytes (filter byte, then
// the row), followed by at least 16 bytes of slack; zeros is rowb + 16 zero bytes.
static int unfilter(uint8_t *raw, size_t rowb, int h, int bpp, const uint8_t *zeros) {
    size_t pitch = rowb + 1;
    for (int y = 0; y < h; y++) {
        uint8_t *cur = raw + (size_t)y * pitch + 1;
        const uint8_t *up = y ? cur - pitch : zeros;
        size_t i;
        switch (cur[-1]) {
        case 0:
            break;
        case 1: // Sub
            for (i = bpp; i < rowb; i++) cur[i] += cur[i - bpp];
            break;
        case 2: // Up
            for (i = 0; i < rowb; i++) cur[i] += up[i];
            break;
        case 3: // Average
            for (i = 0; i < (size_t)bpp; i++) cur[i] += up[i] >> 1;
            for (; i < rowb; i++) cur[i] += (uint8_t)((cur[i - bpp] + up[i]) >> 1);
            break;
        case 4: // Paeth
#ifdef __SSE2__
            if (bpp >= 3) {
                paeth_sse2(cur, up, rowb, bpp);
                break;
            }
#endif
            for (i = 0; i < (size_t)bpp; i++) cur[i] += up[i];
            for (; i < rowb; i++) cur[i] += paeth1(cur[i - bpp], up[i], up[i - bpp]);
            break;
        default:
            return -1;
        }
    }
    return 0;
}

// Flattens rows of grey+alpha or RGBA (bpp 2 or 4) onto white in place: each row becomes grey
// or RGB at its start; the stride between rows does not change.
static void flatten_white(uint8_t *first, size_t stride, int w, int h, int bpp) {
    int colours = bpp - 1;
    for (int y = 0; y < h; y++) {
        uint8_t *row = first + (size_t)y * stride;
        for (int x = 0; x < w; x++) {
            const uint8_t *px = row + (size_t)x * bpp;
            int a = px[colours];
            uint8_t *o = row + (size_t)x * colours; // never past px: written after it is read
            for (int b = 0; b < colours; b++) o[b] = (uint8_t)((px[b] * a + 255 * (255 - a) + 127) / 255);
        }
    }
}

int dg_png_decode(const uint8_t *buf, size_t len, int flatten, dg_png *out, const char **err) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(out, 0, sizeof(*out));
    *err = NULL;
    if (!__atomic_load_n(&png_fast_enabled, __ATOMIC_RELAXED)) return 1;
    if (len < 8 + 25 || memcmp(buf, sig, 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0 ||
        be32(buf + 8) != 13)
        return 1;
    const uint8_t *ihdr = buf + 16;
    uint32_t w = be32(ihdr), h = be32(ihdr + 4);
    int depth = ihdr[8], ctype = ihdr[9], interlace = ihdr[12];
    int alpha = ctype == 4 || ctype == 6;
    if (depth != 8 || (ctype != 0 && ctype != 2 && !(alpha && flatten)) || interlace != 0 || ihdr[10] != 0 ||
        ihdr[11] != 0)
        return 1;
    if (w == 0 || h == 0 || w > (1u << 24) || h > (1u << 24)) return 1;
    int bpp = ctype == 6 ? 4 : ctype == 2 ? 3 : ctype == 4 ? 2 : 1;

    // Walk the chunks: collect IDAT, give tRNS (transparency) back to libvips.
    size_t idat_len = 0, n_idat = 0;
    const uint8_t *first_idat = NULL;
    size_t pos = 8;
    int seen_end = 0;
    while (pos + 12 <= len) {
        uint32_t clen = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (clen > len - pos - 12) return 1; // truncated: libvips decides (and reports)
        if (!memcmp(type, "tRNS", 4)) return 1;
        if (!memcmp(type, "IDAT", 4)) {
            if (!n_idat) first_idat = buf + pos + 8;
            n_idat++;
            idat_len += clen;
        } else if (!memcmp(type, "IEND", 4)) {
            seen_end = 1;
            break;
        }
        pos += 12 + (size_t)clen;
    }
    if (!n_idat || !seen_end) return 1;
    const uint8_t *z = first_idat;
    uint8_t *joined = NULL;
    if (n_idat > 1) { // the zlib stream is split over chunks: join it
        joined = malloc(idat_len);
        if (!joined) {
            *err = "png: out of memory";
            return -1;
        }
        size_t o = 0;
        for (pos = 8; pos + 12 <= len;) {
            uint32_t clen = be32(buf + pos);
            if (!memcmp(buf + pos + 4, "IDAT", 4)) {
                memcpy(joined + o, buf + pos + 8, clen);
                o += clen;
            } else if (!memcmp(buf + pos + 4, "IEND", 4)) {
                break;
            }
            pos += 12 + (size_t)clen;
        }
        z = joined;
    }

    size_t rowb = (size_t)w * bpp;
    size_t raw_len = (rowb + 1) * h;
    uint8_t *raw = malloc(raw_len + 16);     // + slack for 4-byte pixel loads past the row
    uint8_t *zeros = calloc(rowb + 16, 1);   // the row above the first
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    int rc = -1;
    if (!raw || !zeros || !d) {
        *err = "png: out of memory";
        goto done;
    }
    memset(raw + raw_len, 0, 16);
    switch (libdeflate_zlib_decompress(d, z, idat_len, raw, raw_len, NULL)) {
    case LIBDEFLATE_SUCCESS:
        break;
    default: // short, corrupt, or more data than needed: libvips decides, as for any PNG
        rc = 1;
        goto done;
    }
    if (unfilter(raw, rowb, (int)h, bpp, zeros)) {
        rc = 1;
        goto done;
    }
    if (alpha) flatten_white(raw + 1, rowb + 1, (int)w, (int)h, bpp);
    out->raw = raw;
    out->pixels = raw + 1;
    out->stride = rowb + 1;
    out->width = (int)w;
    out->height = (int)h;
    out->bands = alpha ? bpp - 1 : bpp;
    raw = NULL;
    rc = 0;
done:
    if (d) libdeflate_free_decompressor(d);
    free(zeros);
    free(joined);
    free(raw);
    return rc;
}

void dg_png_free(dg_png *p) {
    free(p->raw);
    memset(p, 0, sizeof(*p));
}
