// Our own JPEG read for the hot path: libjpeg-turbo called directly, decoding only the crop window.
//
// libvips decodes a JPEG through its region pipeline (threads, tiles, copies): on 512-px buckets
// that machinery costs about as much as the entropy decoding it drives. Here the same library does
// the same decode (same default DCT and upsampling, so at a power-of-two scaling the pixels are
// identical), straight into one buffer, and only the window that the centre crop keeps. The IDCT
// scales by any M/8 (libvips' loader only by 1/2, 1/4, 1/8), so the window is at most about 1.25×
// the target per axis before the resampler. Of the scaled image, the window is what the centre crop
// keeps: rows above and below it are skipped (jpeg_skip_scanlines: entropy-decoded, not
// transformed), columns outside it not transformed (jpeg_crop_scanline). The general path
// (re-encoding) takes the same window into libvips' chain (vips.c).
//
// Anything unusual (CMYK/YCCK, a size that disagrees with libvips' header) hands the image back to
// libvips. Damaged data is judged here, by image_config.fail_on, the way libvips judges a full
// decode: the rows below the window are entropy-decoded too (jpeg_skip_scanlines: no IDCT), so that
// corruption or truncation anywhere in the scan is seen whatever the crop. A libjpeg warning
// (corrupt data, premature end) refuses the image at fail_on "warning"; a premature end also at
// "error" (libvips: truncated); a libjpeg error at "warning" and "error". At "none" any of these
// hands the image to libvips, whose own rules decide (it still refuses some truncated files, and
// through a crop it reads only the window). The refusal carries libjpeg's own message, formatted
// in this call.
#include "jpegdec.h"
#include "crop.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

static int jpeg_fast_enabled = 1;

int dg_jpeg_fast(int on) {
    int prev = __atomic_load_n(&jpeg_fast_enabled, __ATOMIC_RELAXED);
    if (on >= 0) __atomic_store_n(&jpeg_fast_enabled, on ? 1 : 0, __ATOMIC_RELAXED);
    return prev;
}

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int warned;          // a warning was emitted (corrupt data, premature end, ...)
    int eof;             // one of them was a premature end of the data (truncated file)
    int count;           // warnings so far
    char msg[DG_MSG_LEN]; // libjpeg's text of the first warning or the error
} dg_jerr;

static void on_error(j_common_ptr cinfo) {
    dg_jerr *e = (dg_jerr *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    e->msg[0] = '\0'; // the error is the message, even after a warning
    dg_msgf(e->msg, "%s", text);
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    dg_jerr *e = (dg_jerr *)cinfo->err;
    if (level >= 0) return; // trace messages
    if (!e->warned) {
        char text[JMSG_LENGTH_MAX];
        (*cinfo->err->format_message)(cinfo, text);
        dg_msgf(e->msg, "%s", text);
    }
    e->warned = 1;
    // libvips cuts the input short at the 100th warning (a corrupt file can warn without end):
    // the premature end that follows makes it "truncated", refused at fail_on "error" too
    if (cinfo->err->msg_code == JWRN_JPEG_EOF || ++e->count >= 100) e->eof = 1;
}

static void jerr_init(struct jpeg_decompress_struct *cinfo, dg_jerr *jerr) {
    cinfo->err = jpeg_std_error(&jerr->pub);
    jerr->pub.error_exit = on_error;
    jerr->pub.emit_message = on_message;
    jerr->warned = jerr->eof = jerr->count = 0;
    jerr->msg[0] = '\0';
}

// The verdict on what libjpeg reported, by fail_on: 0 keep, 1 refuse.
static int refused(const dg_jerr *e, int fail_on) {
    if (!e->warned) return 0;
    return fail_on == DG_FAIL_WARNING || (fail_on == DG_FAIL_ERROR && e->eof);
}

// Reads the rest of the scan without producing pixels: skips all rows but the last (entropy
// decoding only; libjpeg-turbo's skip to the very end would not decode at all), then reads the last
// one into row (one scanline of the current output width).
static void drain(struct jpeg_decompress_struct *cinfo, JSAMPROW row) {
    JDIMENSION left = cinfo->output_height - cinfo->output_scanline;
    if (left > 1) jpeg_skip_scanlines(cinfo, left - 1);
    while (cinfo->output_scanline < cinfo->output_height)
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) break;
}

int dg_jpeg_decode(const uint8_t *buf, size_t len, int scale_num, int expect_w, int expect_h,
                   int expect_bands, int tw, int th, int fail_on, dg_jpeg *out, char *msg) {
    memset(out, 0, sizeof(*out));
    if (!__atomic_load_n(&jpeg_fast_enabled, __ATOMIC_RELAXED)) return 1;
    struct jpeg_decompress_struct cinfo;
    dg_jerr jerr;
    uint8_t *volatile pixels = NULL;
    volatile int rc = 1, started = 0;
    jerr_init(&cinfo, &jerr);
    jpeg_create_decompress(&cinfo);
    if (setjmp(jerr.jump)) {
        // libjpeg refused it. Before the scan, libvips decides (and says why); in the scan it is
        // the data: refused, as libvips' full decode would, unless fail_on is "none"
        rc = 1;
        if (started && fail_on != DG_FAIL_NONE) {
            dg_msgf(msg, "%s", jerr.msg);
            rc = 2;
        }
        goto done;
    }
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) goto done;
    int bands;
    switch (cinfo.jpeg_color_space) {
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        bands = 3;
        break;
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        bands = 1;
        break;
    default: // CMYK, YCCK: libvips (ink inversion, colour conversion)
        goto done;
    }
    if ((int)cinfo.image_width != expect_w || (int)cinfo.image_height != expect_h) goto done;
    if (scale_num < 1 || scale_num > 8) scale_num = 8;
    cinfo.scale_num = (unsigned)scale_num;
    cinfo.scale_denom = 8;
    started = 1;
    jpeg_start_decompress(&cinfo);
    // libjpeg-turbo does M/8 for M = 1..16 and reports ceil(w·M/8) x ceil(h·M/8): the window is
    // taken from the size it reports
    int sw = (int)cinfo.output_width, sh = (int)cinfo.output_height;
    if (sw != (int)(((long long)expect_w * scale_num + 7) / 8) ||
        sh != (int)(((long long)expect_h * scale_num + 7) / 8) || cinfo.output_components != bands ||
        bands != expect_bands)
        goto done;

    int x0, y0, cw, ch;
    dg_crop_window(sw, sh, tw, th, &x0, &y0, &cw, &ch);
    // Ask for one more column on each side of the window (where the image has one): libjpeg's
    // fancy upsampling treats the edges of a cropped region as image edges (it replicates the
    // edge chroma sample), so the window's own edge columns must be interior to match a full decode.
    int rx0 = x0 > 0 ? x0 - 1 : 0;
    int rx1 = x0 + cw < sw ? x0 + cw + 1 : sw;
    JDIMENSION xoff = (JDIMENSION)rx0, width = (JDIMENSION)(rx1 - rx0);
    if (rx1 - rx0 < sw) jpeg_crop_scanline(&cinfo, &xoff, &width); // widens to iMCU bounds
    size_t stride = (size_t)cinfo.output_width * bands; // output_width is now the cropped width
    pixels = malloc(stride * ((size_t)ch + 1) + 16); // + a row for the rows below the window
    if (!pixels) goto done;
    if (y0 > 0 && jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0) != (JDIMENSION)y0) goto done;
    while (cinfo.output_scanline < (JDIMENSION)(y0 + ch)) {
        JSAMPROW row = pixels + (size_t)(cinfo.output_scanline - y0) * stride;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) goto done;
    }
    drain(&cinfo, pixels + stride * (size_t)ch); // the rest of the scan, as a full decode reads it
    if (jerr.warned && fail_on == DG_FAIL_NONE) goto done; // "none": libvips decides, as it would
    if (refused(&jerr, fail_on)) {
        dg_msgf(msg, "%s", jerr.msg);
        rc = 2;
        goto done;
    }
    out->raw = pixels;
    out->pixels = pixels + (size_t)(x0 - (int)xoff) * bands;
    out->stride = stride;
    out->width = cw;
    out->height = ch;
    out->bands = bands;
    pixels = NULL;
    rc = 0;
done:
    jpeg_destroy_decompress(&cinfo); // also after a partial read: no need to finish
    free(pixels);
    return rc;
}

int dg_jpeg_check(const uint8_t *buf, size_t len, int fail_on, char *msg) {
    struct jpeg_decompress_struct cinfo;
    dg_jerr jerr;
    uint8_t *volatile row = NULL;
    volatile int rc = -1, started = 0;
    jerr_init(&cinfo, &jerr);
    jpeg_create_decompress(&cinfo);
    if (setjmp(jerr.jump)) {
        dg_msgf(msg, "%s", jerr.msg);
        rc = !started ? -1 : fail_on == DG_FAIL_NONE ? 0 : 1;
        goto done;
    }
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) goto done;
    cinfo.scale_num = 1; // the cheapest IDCT, for the one row that is read
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_IFAST;
    started = 1;
    jpeg_start_decompress(&cinfo);
    row = malloc((size_t)cinfo.output_width * cinfo.output_components + 16);
    if (!row) goto done;
    drain(&cinfo, row);
    rc = refused(&jerr, fail_on);
    if (rc) dg_msgf(msg, "%s", jerr.msg);
done:
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return rc;
}

void dg_jpeg_free(dg_jpeg *j) {
    free(j->raw);
    memset(j, 0, sizeof(*j));
}
