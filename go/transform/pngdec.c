// Our own decoder for the common PNG: 8-bit grey or RGB, not interlaced, no transparency chunk;
// with alpha (grey+alpha, RGBA) too when the caller flattens it onto white.
//
// PNG photos cost a third of all decode time through libvips/libpng: about half of it in zlib's
// inflate and half in libpng's byte-at-a-time Paeth unfiltering. Here the IDAT stream is inflated
// in one call with libdeflate (the whole file is in memory already) and the rows are unfiltered in
// place (pngfilter.h: one whole pixel per SIMD step, two rows at a time so that two dependency
// chains run side by side, AVX2-era instructions where the CPU has them; alpha is flattened onto
// white row by row right behind). Anything else (palette, 16 bits, alpha without flattening,
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

#include "pngfilter.h" // unfilter: undoing the row filters (and flattening alpha onto white)

static int png_fast_enabled = 1;

int dg_png_fast(int on) {
    int prev = __atomic_load_n(&png_fast_enabled, __ATOMIC_RELAXED);
    if (on >= 0) __atomic_store_n(&png_fast_enabled, on ? 1 : 0, __ATOMIC_RELAXED);
    return prev;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
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
    if (unfilter(raw, rowb, (int)h, bpp, zeros, alpha)) {
        rc = 1;
        goto done;
    }
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
