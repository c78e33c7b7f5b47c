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
// Damaged files are judged here, by image_config.fail_on, as libpng judges them in libvips' full
// decode, whatever the crop: every chunk's CRC is checked (a bad critical chunk, IDAT, is an
// error; a bad ancillary chunk a warning), the IDAT chunks must follow each other, and the zlib
// stream must hold exactly the image's rows with valid filter bytes (a truncated or corrupt stream
// is an error). Refused, the image carries our own message, formatted in this call. What libpng
// only warns about and libvips keeps (surplus data, an Adler-32 mismatch alone), and anything at
// fail_on "none", goes back to libvips.
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

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

enum { PNG_OK = 0, PNG_WARNING = 1, PNG_ERROR = 2 };

// What the chunk walk found: the IDAT run and any transparency chunk.
typedef struct {
    const uint8_t *first_idat;
    size_t idat_len, n_idat;
    int trns;
} png_chunks;

// Raises *level to lvl, keeping the message of the first problem of the highest level.
static void png_problem(int *level, char *msg, int lvl, const char *fmt, const char *type, size_t n) {
    if (lvl <= *level) return;
    *level = lvl;
    char t[5] = {0};
    memcpy(t, type, 4);
    for (int i = 0; i < 4; i++)
        if (t[i] < 0x20 || t[i] > 0x7e) t[i] = '?';
    snprintf(msg, DG_MSG_LEN, fmt, t, n);
}

// Walks the chunks from the signature to IEND, checking each CRC and that the IDAT chunks are
// consecutive. Returns PNG_OK, PNG_WARNING or PNG_ERROR (msg: the first problem of that level),
// or -1 when buf is not a PNG with an IHDR.
static int png_walk(const uint8_t *buf, size_t len, png_chunks *c, char *msg) {
    memset(c, 0, sizeof(*c));
    msg[0] = '\0';
    if (len < 8 + 25 || memcmp(buf, png_sig, 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0 ||
        be32(buf + 8) != 13)
        return -1;
    int level = PNG_OK, idat_done = 0, seen_end = 0;
    size_t pos = 8;
    while (pos + 12 <= len) {
        uint32_t clen = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        int is_idat = !memcmp(type, "IDAT", 4);
        if (clen > len - pos - 12) { // cut short: the image data itself is an error, later chunks a warning
            png_problem(&level, msg, idat_done ? PNG_WARNING : PNG_ERROR,
                        "png: truncated file: chunk %s is cut short (%zu bytes left)", (const char *)type, len - pos - 8);
            break;
        }
        if (!is_idat && c->n_idat) idat_done = 1; // the image data is behind us
        uint32_t crc = (uint32_t)libdeflate_crc32(0, type, (size_t)clen + 4);
        if (crc != be32(buf + pos + 8 + clen)) {
            int critical = !(type[0] & 0x20); // IHDR, PLTE, IDAT, IEND
            png_problem(&level, msg, critical && !idat_done ? PNG_ERROR : PNG_WARNING,
                        "png: CRC error in chunk %s (%zu bytes)", (const char *)type, clen);
        }
        if (is_idat) {
            if (idat_done) png_problem(&level, msg, PNG_ERROR, "png: %s chunks are not consecutive (%zu bytes later)", (const char *)type, clen);
            if (!c->n_idat) c->first_idat = type + 4;
            c->n_idat++;
            c->idat_len += clen;
        } else {
            if (!memcmp(type, "tRNS", 4)) c->trns = 1;
            if (!memcmp(type, "IEND", 4)) {
                seen_end = 1;
                break;
            }
        }
        pos += 12 + (size_t)clen;
    }
    if (!c->n_idat) png_problem(&level, msg, PNG_ERROR, "png: no %s chunk (%zu bytes of chunks)", "IDAT", pos);
    else if (!seen_end) // the image data may be whole (if not, its stream says so: an error)
        png_problem(&level, msg, PNG_WARNING, "png: truncated file: no %s chunk after %zu bytes", "IEND", pos);
    return level;
}

// The refusal of a walk or stream problem of level lvl by fail_on: 1 refused, 0 not.
static int png_refuses(int lvl, int fail_on) {
    return lvl == PNG_ERROR ? fail_on != DG_FAIL_NONE : lvl == PNG_WARNING ? fail_on == DG_FAIL_WARNING : 0;
}

// The IDAT run as one zlib stream: the first chunk's data when there is one chunk, else a joined
// copy in *joined (NULL when out of memory). The run must be consecutive (png_walk).
static const uint8_t *png_idat_stream(const uint8_t *buf, size_t len, const png_chunks *c, uint8_t **joined) {
    *joined = NULL;
    if (c->n_idat == 1) return c->first_idat;
    uint8_t *j = malloc(c->idat_len ? c->idat_len : 1);
    if (!j) return NULL;
    size_t o = 0;
    for (const uint8_t *p = c->first_idat - 8; p + 12 <= buf + len && !memcmp(p + 4, "IDAT", 4);) {
        uint32_t clen = be32(p);
        if (clen > (size_t)(buf + len - p) - 12 || clen > c->idat_len - o) break;
        memcpy(j + o, p + 8, clen);
        o += clen;
        p += 12 + (size_t)clen;
    }
    *joined = j;
    return j;
}

// Inflates the zlib stream z into raw (exactly raw_len bytes expected). Returns PNG_OK, PNG_ERROR
// (corrupt or short: msg says which), or PNG_WARNING for what libpng only warns about or ignores
// (surplus data, an Adler-32 mismatch on an intact stream): the caller gives those to libvips.
static int png_inflate(struct libdeflate_decompressor *d, const uint8_t *z, size_t zlen, uint8_t *raw,
                       size_t raw_len, char *msg) {
    size_t got = 0;
    switch (libdeflate_zlib_decompress(d, z, zlen, raw, raw_len, &got)) {
    case LIBDEFLATE_SUCCESS:
        if (got == raw_len) return PNG_OK;
        snprintf(msg, DG_MSG_LEN, "png: not enough image data (%zu of %zu bytes)", got, raw_len);
        return PNG_ERROR;
    case LIBDEFLATE_INSUFFICIENT_SPACE:
        return PNG_WARNING; // too much image data
    default:
        // corrupt, or only the Adler-32 checksum wrong (libpng does not check it): the raw
        // deflate stream after the 2-byte zlib header tells
        if (zlen > 2 && libdeflate_deflate_decompress(d, z + 2, zlen - 2, raw, raw_len, &got) == LIBDEFLATE_SUCCESS &&
            got == raw_len)
            return PNG_WARNING;
        snprintf(msg, DG_MSG_LEN, "png: corrupt image data (zlib stream of %zu bytes)", zlen);
        return PNG_ERROR;
    }
}

int dg_png_decode(const uint8_t *buf, size_t len, int flatten, int fail_on, dg_png *out, char *msg) {
    memset(out, 0, sizeof(*out));
    if (!__atomic_load_n(&png_fast_enabled, __ATOMIC_RELAXED)) return 1;
    if (len < 8 + 25 || memcmp(buf, png_sig, 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0 ||
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

    // Walk the chunks (CRCs, IDAT run), judge what is damaged, give tRNS (transparency) back to libvips.
    png_chunks c;
    char why[DG_MSG_LEN];
    int lvl = png_walk(buf, len, &c, why);
    if (lvl < 0) return 1;
    if (lvl != PNG_OK && fail_on == DG_FAIL_NONE) return 1; // libvips decodes what it can
    if (png_refuses(lvl, fail_on)) {
        dg_msgf(msg, "%s", why);
        return 2;
    }
    if (c.trns || !c.n_idat) return 1;
    uint8_t *joined = NULL;
    const uint8_t *z = png_idat_stream(buf, len, &c, &joined);
    if (!z) {
        dg_msgf(msg, "png: out of memory");
        return -1;
    }

    size_t rowb = (size_t)w * bpp;
    size_t raw_len = (rowb + 1) * h;
    uint8_t *raw = malloc(raw_len + 16);     // + slack for 4-byte pixel loads past the row
    uint8_t *zeros = calloc(rowb + 16, 1);   // the row above the first
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    int rc = -1;
    if (!raw || !zeros || !d) {
        dg_msgf(msg, "png: out of memory");
        goto done;
    }
    memset(raw + raw_len, 0, 16);
    lvl = png_inflate(d, z, c.idat_len, raw, raw_len, why);
    if (lvl != PNG_OK) { // an error refuses (fail_on "none": libvips decides); what libpng keeps goes to libvips
        rc = 1;
        if (lvl == PNG_ERROR && png_refuses(lvl, fail_on)) {
            dg_msgf(msg, "%s", why);
            rc = 2;
        }
        goto done;
    }
    if (unfilter(raw, rowb, (int)h, bpp, zeros, alpha)) { // a bad filter byte: an error, as in libpng
        rc = 1;
        if (png_refuses(PNG_ERROR, fail_on)) {
            dg_msgf(msg, "png: bad filter type in the image data");
            rc = 2;
        }
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

// Bytes of the filtered image data (filter byte + row, per row; the 7 Adam7 passes when
// interlaced) of a w x h image of bits_pp bits per pixel, and checks the filter bytes in raw when
// raw is not NULL (returns 0 when one is bad).
static size_t png_raw_size(uint32_t w, uint32_t h, int bits_pp, int interlace, const uint8_t *raw) {
    static const int xs[7] = {0, 4, 0, 2, 0, 1, 0}, ys[7] = {0, 0, 4, 0, 2, 0, 1};
    static const int dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    size_t total = 0;
    for (int pass = 0; pass < (interlace ? 7 : 1); pass++) {
        size_t pw = w, ph = h;
        if (interlace) {
            pw = w > (uint32_t)xs[pass] ? (w - xs[pass] + dx[pass] - 1) / dx[pass] : 0;
            ph = h > (uint32_t)ys[pass] ? (h - ys[pass] + dy[pass] - 1) / dy[pass] : 0;
        }
        if (!pw || !ph) continue;
        size_t pitch = (pw * (size_t)bits_pp + 7) / 8 + 1;
        if (raw)
            for (size_t y = 0; y < ph; y++)
                if (raw[total + y * pitch] > 4) return 0;
        total += pitch * ph;
    }
    return total;
}

int dg_png_check(const uint8_t *buf, size_t len, int fail_on, int inflate, char *msg) {
    png_chunks c;
    char why[DG_MSG_LEN];
    int lvl = png_walk(buf, len, &c, why);
    if (lvl < 0 || fail_on == DG_FAIL_NONE) return 0;
    if (png_refuses(lvl, fail_on)) {
        dg_msgf(msg, "%s", why);
        return 1;
    }
    if (!inflate || lvl == PNG_ERROR) return 0;
    const uint8_t *ihdr = buf + 16;
    uint32_t w = be32(ihdr), h = be32(ihdr + 4);
    int depth = ihdr[8], ctype = ihdr[9], interlace = ihdr[12];
    int channels = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 3 ? 1 : ctype == 4 ? 2 : ctype == 6 ? 4 : 0;
    if (!channels || !w || !h || w > (1u << 24) || h > (1u << 24) || (depth != 1 && depth != 2 && depth != 4 &&
                                                                      depth != 8 && depth != 16))
        return 0; // libvips' header has judged these
    size_t raw_len = png_raw_size(w, h, channels * depth, interlace, NULL);
    uint8_t *joined = NULL;
    const uint8_t *z = png_idat_stream(buf, len, &c, &joined);
    uint8_t *raw = malloc(raw_len ? raw_len : 1);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    int rc = 0; // out of memory: libvips decides
    if (z && raw && d) {
        lvl = png_inflate(d, z, c.idat_len, raw, raw_len, why);
        if (lvl == PNG_OK && !png_raw_size(w, h, channels * depth, interlace, raw)) {
            snprintf(why, DG_MSG_LEN, "png: bad filter type in the image data");
            lvl = PNG_ERROR;
        }
        if (lvl == PNG_ERROR) {
            dg_msgf(msg, "%s", why);
            rc = 1;
        }
    }
    if (d) libdeflate_free_decompressor(d);
    free(raw);
    free(joined);
    return rc;
}

void dg_png_free(dg_png *p) {
    free(p->raw);
    memset(p, 0, sizeof(*p));
}
