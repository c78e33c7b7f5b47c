// Decode / transform / encode of one image with libvips. See vips.h.
//
// The chain per image is: lazy header (dg_open) -> shrink-on-load (JPEG: DCT scaling, WebP: scaled
// decode) -> centre crop to the bucket's aspect ratio -> one resize to the bucket -> EXIF rotation
// on the small result -> colour normalisation (8 bits, grey/RGB, alpha) -> raw pixels or re-encode.
// Everything is demand-driven with sequential access, so only the crop window is ever decoded past
// the loader and no full-size intermediate is kept. On the hot path (8-bit grey/RGB, raw output)
// common JPEGs and PNGs skip libvips' pipeline: jpegdec.c reads the crop window with libjpeg-turbo,
// pngdec.c decodes with libdeflate, and resample.c resizes; libvips still parses the header, and
// takes over whenever those decline an image.
//
// Damaged data is judged by image_config.fail_on (dg_params.fail_on), with the same verdict whatever
// the crop: libvips' loaders get it (a full decode: no crop); our decoders read the whole scan or
// stream and judge it themselves; where libvips decodes only a crop window, our checks
// (dg_jpeg_check, dg_png_check) read the whole file first. Every failure fills the caller's
// dg_status in this call: our own message when our decoders or checks find the damage, else
// libvips' (copied and cleared at once), else a message naming the step.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vips.h"
#include "crop.h"
#include "jpegdec.h"
#include "pngdec.h"
#include "resample.h"

// datago's log (transform/glog.go): GLib and libvips messages, from any thread.
extern void datagoGLog(char *domain, int level, char *msg);

static void dg_glog(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {
    (void)data;
    datagoGLog((char *)(domain ? domain : ""), (int)(level & G_LOG_LEVEL_MASK), (char *)(message ? message : ""));
}

int dg_init(void) {
    g_log_set_default_handler(dg_glog, NULL); // no domain has a handler of its own: all come here
    if (VIPS_INIT("datago")) return -1;
    vips_cache_set_max(0);     // no operation cache: every image is new
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_concurrency_set(1);   // goroutines give the parallelism; one vips worker per image
    vips_leak_set(FALSE);
    return 0;
}

static VipsFailOn vips_fail_on(int fail_on) {
    return fail_on == DG_FAIL_NONE ? VIPS_FAIL_ON_NONE : fail_on == DG_FAIL_ERROR ? VIPS_FAIL_ON_ERROR : VIPS_FAIL_ON_WARNING;
}

static int kind_of(const void *buf, size_t len) {
    const char *loader = vips_foreign_find_load_buffer(buf, len);
    if (loader == NULL) return -1;
    if (strstr(loader, "Jpeg")) return DG_JPEG;
    if (strstr(loader, "Webp")) return DG_WEBP;
    if (strstr(loader, "Png")) return DG_PNG;
    return DG_OTHER;
}

// Fills st after a failure of this call. Our own reading of the file comes first (a JPEG's first
// libjpeg warning or error, a PNG's first damaged chunk or stream problem: corrupt data, and a
// message that is this file's whatever other threads do); then libvips' error buffer, copied and
// cleared in one step (libvips has one buffer for the process: it is never read without being
// cleared, so no later failure reads this one's message); then `step`, so a message is never empty.
static void fail(dg_status *st, const void *buf, size_t len, int kind, const char *step) {
    char why[DG_MSG_LEN] = "";
    int found = 0;
    if (!st->msg[0] && buf != NULL) {
        if (kind == DG_JPEG) found = dg_jpeg_check(buf, len, DG_FAIL_WARNING, why) != 0;
        else if (kind == DG_PNG) found = dg_png_check(buf, len, DG_FAIL_WARNING, 1, why) != 0;
        if (found && why[0]) {
            dg_msgf(st->msg, "%s", why);
            st->corrupt = 1;
        }
    }
    char *all = vips_error_buffer_copy();
    if (all != NULL) {
        char *nl = strchr(all, '\n'); // libvips stacks a line per failing operation: the first is the cause
        if (nl) *nl = '\0';
        if (all[0]) dg_msgf(st->msg, "%s", all);
        g_free(all);
    }
    dg_msgf(st->msg, "%s failed", step);
}

// For an image libvips is to decode through a crop (its sequential loaders stop at the window's
// last row): the verdict of a full decode, from our checks of the whole file. Returns -1 (st says
// why) when fail_on refuses it.
static int judge_whole(const void *buf, size_t len, int kind, int fail_on, int inflate, dg_status *st) {
    if (fail_on == DG_FAIL_NONE) return 0;
    char why[DG_MSG_LEN] = "";
    int bad = 0;
    if (kind == DG_JPEG) bad = dg_jpeg_check(buf, len, fail_on, why) == 1;
    else if (kind == DG_PNG) bad = dg_png_check(buf, len, fail_on, inflate, why) == 1;
    if (!bad) return 0;
    dg_msgf(st->msg, "%s", why);
    st->corrupt = 1;
    return -1;
}

int dg_open(const void *buf, size_t len, int fail_on, dg_header *h, dg_status *st) {
    memset(h, 0, sizeof(*h));
    int kind = kind_of(buf, len);
    if (kind < 0) {
        vips_error_clear();
        dg_msgf(st->msg, "not a known image format");
        return -1;
    }
    h->kind = kind;
    h->img = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                        "fail_on", vips_fail_on(fail_on), NULL);
    if (h->img == NULL) {
        fail(st, buf, len, kind, "header read");
        st->corrupt = 0; // a header that does not parse: not an image (decode_error)
        return -1;
    }
    h->width = h->img->Xsize;
    h->height = h->img->Ysize;
    h->bands = h->img->Bands;
    h->orientation = vips_image_get_orientation(h->img);
    if (h->orientation < 1 || h->orientation > 8) h->orientation = 1;
    return 0;
}

void dg_close(dg_header *h) {
    if (h->img) g_object_unref(h->img);
    h->img = NULL;
}

// Replaces *x by next (taking ownership), releasing the previous image.
static void step(VipsImage **x, VipsImage *next) {
    g_object_unref(*x);
    *x = next;
}

// Centre crop of *x to the aspect ratio of tw x th.
static int centre_crop(VipsImage **x, int tw, int th) {
    VipsImage *in = *x, *t = NULL;
    int x0, y0, cw, ch;
    dg_crop_window(in->Xsize, in->Ysize, tw, th, &x0, &y0, &cw, &ch);
    if (cw == in->Xsize && ch == in->Ysize) return 0;
    if (vips_extract_area(in, &t, x0, y0, cw, ch, NULL)) return -1;
    step(x, t);
    return 0;
}

// Centre crop to the target's aspect ratio, then resize to exactly tw x th.
static int cover_crop_resize(VipsImage **x, int tw, int th, int mask) {
    VipsImage *t = NULL;
    if (centre_crop(x, tw, th)) return -1;
    int cw = (*x)->Xsize, ch = (*x)->Ysize;
    if (cw == tw && ch == th) return 0;

    int premultiply = !mask && vips_image_hasalpha(*x);
    VipsBandFormat fmt = (*x)->BandFmt;
    if (premultiply) {
        if (vips_premultiply(*x, &t, NULL)) return -1;
        step(x, t);
    }
    if (mask) {
        if (vips_resize(*x, &t, (double)tw / cw, "vscale", (double)th / ch, "kernel",
                        VIPS_KERNEL_NEAREST, NULL))
            return -1;
    } else if (vips_resize(*x, &t, (double)tw / cw, "vscale", (double)th / ch, NULL)) {
        return -1;
    }
    step(x, t);
    if (premultiply) {
        if (vips_unpremultiply(*x, &t, NULL)) return -1;
        step(x, t);
        if (vips_cast(*x, &t, fmt, NULL)) return -1;
        step(x, t);
    }
    // resize rounds each axis; make the size exact (at most a pixel of difference)
    if ((*x)->Xsize != tw || (*x)->Ysize != th) {
        if (vips_embed(*x, &t, 0, 0, tw, th, "extend", VIPS_EXTEND_COPY, NULL)) return -1;
        step(x, t);
    }
    return 0;
}

static int to_uchar(VipsImage **x) {
    VipsImage *t = NULL;
    if ((*x)->BandFmt == VIPS_FORMAT_UCHAR) return 0;
    if ((*x)->BandFmt == VIPS_FORMAT_USHORT) {
        if (vips_rshift_const1(*x, &t, 8, NULL)) return -1;
        step(x, t);
    }
    if (vips_cast(*x, &t, VIPS_FORMAT_UCHAR, NULL)) return -1;
    step(x, t);
    return 0;
}

// 8 bits per channel; grey stays grey (1 or 2 bands), colour becomes sRGB (3 or 4 bands).
static int normalise_colour(VipsImage **x, const dg_params *p, int jpeg_out) {
    VipsImage *t = NULL;
    if (p->mask) return to_uchar(x);

    VipsInterpretation interp = vips_image_guess_interpretation(*x);
    int grey = interp == VIPS_INTERPRETATION_B_W || interp == VIPS_INTERPRETATION_GREY16 ||
               ((*x)->Bands <= 2 && interp == VIPS_INTERPRETATION_MULTIBAND);
    VipsInterpretation target = grey ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
    if ((interp != target || (*x)->BandFmt != VIPS_FORMAT_UCHAR) &&
        vips_colourspace_issupported(*x) && interp != VIPS_INTERPRETATION_MULTIBAND) {
        if (vips_colourspace(*x, &t, target, NULL)) return -1;
        step(x, t);
    }
    if (to_uchar(x)) return -1;

    int flatten = p->flatten_alpha || p->to_rgb8 || jpeg_out;
    if (flatten && vips_image_hasalpha(*x)) {
        double white[3] = {255, 255, 255};
        VipsArrayDouble *bg = vips_array_double_new(white, (*x)->Bands - 1 >= 3 ? 3 : 1);
        int rc = vips_flatten(*x, &t, "background", bg, NULL);
        vips_area_unref(VIPS_AREA(bg));
        if (rc) return -1;
        step(x, t);
        if (to_uchar(x)) return -1;
    }
    if (p->to_rgb8) {
        if ((*x)->Bands == 1) {
            VipsImage *in3[3] = {*x, *x, *x};
            if (vips_bandjoin(in3, &t, 3, NULL)) return -1;
            step(x, t);
            // the joined bands keep the grey interpretation, and the PNG / JPEG savers would
            // re-read three grey bands as grey + alpha: mark them sRGB
            if (vips_copy(*x, &t, "interpretation", VIPS_INTERPRETATION_sRGB, NULL)) return -1;
            step(x, t);
        } else if ((*x)->Bands > 3) {
            if (vips_extract_band(*x, &t, 0, "n", 3, NULL)) return -1;
            step(x, t);
        }
    }
    return 0;
}


// libvips' JPEG loader with its shrink-on-load (1/2, 1/4, 1/8 only) in place of the header image
// *x: for the JPEGs that our decoder, with its any-M/8 scaling, declines. The rest of the scaling is
// left to the resize.
static int jpeg_shrink_load(VipsImage **x, const void *buf, size_t len, const dg_params *p) {
    VipsImage *t = NULL;
    if (p->shrink <= 1) return 0;
    if (vips_jpegload_buffer((void *)buf, len, &t, "shrink", p->shrink, "access",
                             VIPS_ACCESS_SEQUENTIAL, "fail_on", vips_fail_on(p->fail_on), NULL))
        return -1;
    step(x, t);
    return 0;
}

// The hot path, for the common case (8-bit grey or RGB, no alpha, not a mask): the centre crop
// window decoded (our JPEG window read and PNG decoder where they apply, else libvips, which then
// decodes only the window past the loader), left in pd for dg_store, whose resampler writes
// straight into the output buffer. Returns 1 when it does not apply, 0 on success, -1 on error.
// For a JPEG, *x is the header image at full size: our decoder scales by p->jpeg_scale / 8 itself,
// and libvips' loader is only asked (at p->shrink) when ours declines.
static int fast_decode(VipsImage **x, const void *buf, size_t buf_len, int kind, int tw, int th,
                       const dg_params *p, dg_pending *pd, int *judged, dg_status *st) {
    VipsImage *in = *x, *t = NULL;
    if (p->mask || p->encode != DG_RAW || in->BandFmt != VIPS_FORMAT_UCHAR) return 1;
    VipsInterpretation interp = vips_image_guess_interpretation(in);
    int srgb = interp == VIPS_INTERPRETATION_sRGB, grey = interp == VIPS_INTERPRETATION_B_W;
    // A PNG with alpha that is to be flattened onto white: flattening first is the same
    // arithmetic as resizing premultiplied and flattening after (both are linear), and keeps it
    // on this path, with our PNG decoder doing the flattening.
    int flatten = p->flatten_alpha || p->to_rgb8;
    int alpha_png = kind == DG_PNG && flatten && ((srgb && in->Bands == 4) || (grey && in->Bands == 2 && !p->to_rgb8));
    if (!alpha_png && !(srgb && in->Bands == 3) && !(grey && in->Bands == 1)) return 1;

    int png_rc = 1, jpg_rc = 1;
    int own = !(p->to_rgb8 && in->Bands == 1); // grey to RGB: libvips' bandjoin below
    if (own && kind == DG_PNG) png_rc = dg_png_decode(buf, buf_len, alpha_png, p->fail_on, &pd->png, st->msg);
    if (own && kind == DG_JPEG)
        jpg_rc = dg_jpeg_decode(buf, buf_len, p->jpeg_scale, in->Xsize, in->Ysize, in->Bands, tw, th,
                                p->fail_on, &pd->jpg, st->msg);
    if (png_rc == 2 || jpg_rc == 2) { // the data is damaged: refused by fail_on, with our message
        st->corrupt = 1;
        return -1;
    }
    if (png_rc < 0) return -1; // out of memory (st->msg says so)
    if (jpg_rc == 0) {
        pd->cw = pd->jpg.width, pd->ch = pd->jpg.height, pd->bands = pd->jpg.bands;
        pd->stride = pd->jpg.stride;
        pd->src = pd->jpg.pixels;
    } else if (png_rc == 0 && pd->png.width == in->Xsize && pd->png.height == in->Ysize &&
               pd->png.bands == in->Bands - alpha_png) {
        int x0, y0;
        dg_crop_window(pd->png.width, pd->png.height, tw, th, &x0, &y0, &pd->cw, &pd->ch);
        pd->bands = pd->png.bands;
        pd->stride = pd->png.stride;
        pd->src = pd->png.pixels + (size_t)y0 * pd->stride + (size_t)x0 * pd->bands;
    } else {
        dg_png_free(&pd->png);
        if (alpha_png) return 1; // the general path flattens after resizing
        // libvips decodes only the window: judge the whole file first (our decoders did not)
        *judged = 1;
        if (judge_whole(buf, buf_len, kind, p->fail_on, 1, st)) return -1;
        if (kind == DG_JPEG && jpeg_shrink_load(x, buf, buf_len, p)) return -1;
        if (centre_crop(x, tw, th)) return -1;
        pd->cw = (*x)->Xsize, pd->ch = (*x)->Ysize;
        if (p->to_rgb8 && (*x)->Bands == 1) {
            VipsImage *in3[3] = {*x, *x, *x};
            if (vips_bandjoin(in3, &t, 3, NULL)) return -1;
            step(x, t);
        }
        pd->bands = (*x)->Bands;
        size_t src_len = 0;
        pd->vips_pixels = vips_image_write_to_memory(*x, &src_len); // the decode happens here
        if (pd->vips_pixels == NULL) return -1;
        pd->src = pd->vips_pixels;
        pd->stride = (size_t)pd->cw * pd->bands;
    }
    pd->fast = 1;
    pd->tw = tw, pd->th = th;
    pd->orientation = vips_image_get_orientation(*x);
    if (pd->orientation < 1 || pd->orientation > 8) pd->orientation = 1;
    return 0;
}

// For the general path (re-encoding, masks, alpha): a JPEG's crop window read by our decoder
// (whole scan judged by fail_on, IDCT-scaled by p->jpeg_scale / 8) in place of the header image *x,
// as a libvips image over pd->jpg (which outlives it: freed by dg_pending_free), carrying the
// header's orientation for the rest of the chain. Spares the general path a second entropy
// decoding (libvips' window, then our whole-file check). Returns 0 (*x replaced), 1 when our decoder
// declines (libvips decodes; the file is not judged yet), -1 when refused (st says why).
static int jpeg_window_image(VipsImage **x, const void *buf, size_t len, const dg_header *h, int tw, int th,
                             const dg_params *p, dg_pending *pd, dg_status *st) {
    VipsImage *in = *x, *m, *t = NULL;
    VipsInterpretation interp = vips_image_guess_interpretation(in);
    if (p->mask || in->BandFmt != VIPS_FORMAT_UCHAR || !((interp == VIPS_INTERPRETATION_sRGB && in->Bands == 3) ||
                                                          (interp == VIPS_INTERPRETATION_B_W && in->Bands == 1)))
        return 1;
    int rc = dg_jpeg_decode(buf, len, p->jpeg_scale, in->Xsize, in->Ysize, in->Bands, tw, th, p->fail_on, &pd->jpg,
                            st->msg);
    if (rc == 2) {
        st->corrupt = 1;
        return -1;
    }
    if (rc != 0) return 1;
    dg_jpeg *j = &pd->jpg;
    int full_w = (int)(j->stride / (size_t)j->bands); // the decoded columns, the window among them
    m = vips_image_new_from_memory(j->raw, j->stride * (size_t)j->height, full_w, j->height, j->bands,
                                   VIPS_FORMAT_UCHAR);
    if (m == NULL) return -1;
    int x0 = (int)((j->pixels - j->raw) / j->bands);
    if (x0 != 0 || j->width != full_w) {
        if (vips_extract_area(m, &t, x0, 0, j->width, j->height, NULL)) {
            g_object_unref(m);
            return -1;
        }
        step(&m, t);
    }
    if (vips_copy(m, &t, "interpretation", j->bands == 3 ? VIPS_INTERPRETATION_sRGB : VIPS_INTERPRETATION_B_W,
                  NULL)) {
        g_object_unref(m);
        return -1;
    }
    step(&m, t);
    vips_image_set_int(m, VIPS_META_ORIENTATION, h->orientation);
    step(x, m);
    return 0;
}

void dg_pending_free(dg_pending *pd) {
    g_free(pd->vips_pixels);
    dg_png_free(&pd->png);
    dg_jpeg_free(&pd->jpg);
    g_free(pd->res.data);
    memset(pd, 0, sizeof(*pd));
}

// Resamples the fast path's window into a buffer of its own (dps bytes per pixel) and applies the
// EXIF orientation: the per-sample result.
static int fast_result(dg_pending *pd, int dps, dg_result *r) {
    size_t len = (size_t)pd->tw * pd->th * dps;
    uint8_t *dst = g_malloc(len);
    if (dg_resample(pd->src, pd->cw, pd->ch, pd->stride, pd->bands, dst, pd->tw, pd->th, dps)) {
        g_free(dst);
        vips_error("datago", "resample failed");
        return -1;
    }
    if (pd->orientation > 1) { // rotate / flip the small result
        VipsImage *mem = vips_image_new_from_memory(dst, len, pd->tw, pd->th, dps, VIPS_FORMAT_UCHAR), *t = NULL;
        if (mem == NULL) {
            g_free(dst);
            return -1;
        }
        vips_image_set_int(mem, VIPS_META_ORIENTATION, pd->orientation);
        int rc = vips_autorot(mem, &t, NULL);
        if (rc == 0) {
            size_t rlen = 0;
            r->data = vips_image_write_to_memory(t, &rlen);
            r->width = t->Xsize;
            r->height = t->Ysize;
            g_object_unref(t);
            rc = r->data ? 0 : -1;
        }
        g_object_unref(mem);
        g_free(dst);
        if (rc) return -1;
    } else {
        r->data = dst;
        r->width = pd->tw;
        r->height = pd->th;
    }
    r->len = len;
    r->channels = pd->bands;
    r->pixel_stride = dps;
    return 0;
}

// Copies w x h pixels of sc meaningful channels (ps bytes apart) into dst with dc channels, in
// HWC or CHW layout. Channel rules: to 3 — grey replicated, alpha flattened onto white; to 1 —
// alpha flattened onto white, colour to luma (BT.601); to 4 — opaque alpha added. mask: channel 0.
static void convert_into(const uint8_t *src, int w, int h, int ps, int sc, uint8_t *dst, int dc,
                         int chw, int mask) {
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = src + i * ps;
        uint8_t px[4];
        if (mask) {
            px[0] = px[1] = px[2] = s[0], px[3] = 255;
        } else {
            int r, g, b, a = 255;
            if (sc <= 2) r = g = b = s[0];
            else r = s[0], g = s[1], b = s[2];
            if (sc == 2) a = s[1];
            if (sc == 4) a = s[3];
            if (dc == 4) {
                px[0] = r, px[1] = g, px[2] = b, px[3] = a;
            } else {
                if (a != 255) { // onto white
                    r = (r * a + 255 * (255 - a) + 127) / 255;
                    g = (g * a + 255 * (255 - a) + 127) / 255;
                    b = (b * a + 255 * (255 - a) + 127) / 255;
                }
                if (dc == 1) px[0] = sc <= 2 ? r : (uint8_t)((77 * r + 150 * g + 29 * b + 128) >> 8);
                else px[0] = r, px[1] = g, px[2] = b;
            }
        }
        if (chw)
            for (int c = 0; c < dc; c++) dst[c * n + i] = px[c];
        else
            memcpy(dst + i * dc, px, dc);
    }
}

static int store(dg_pending *pd, const dg_params *p, const dg_dest *d, dg_result *r) {
    memset(r, 0, sizeof(*r));
    if (d == NULL || d->data == NULL) { // a buffer of its own (per-sample stream)
        if (!pd->fast) {
            *r = pd->res;
            memset(&pd->res, 0, sizeof(pd->res));
            return 0;
        }
        int dps = (pd->bands == 3 && p->pad_rgb) ? 4 : pd->bands;
        return fast_result(pd, dps, r);
    }
    // into the caller's slot: the resampler's last pass writes there when nothing is left to do
    // after it; otherwise (rotation, another channel count, the libvips path) the finished image
    // is converted into the slot.
    if (pd->fast && pd->orientation <= 1 && pd->bands == d->channels && !d->mask) {
        if (pd->tw != d->width || pd->th != d->height) {
            vips_error("datago", "slot is %dx%d, image %dx%d", d->width, d->height, pd->tw, pd->th);
            return -1;
        }
        if (dg_resample_to(pd->src, pd->cw, pd->ch, pd->stride, pd->bands, d->data, pd->tw, pd->th,
                           pd->bands, d->chw)) {
            vips_error("datago", "resample failed");
            return -1;
        }
    } else {
        dg_result tmp = {0};
        if (pd->fast) {
            if (fast_result(pd, pd->bands, &tmp)) return -1;
        } else {
            tmp = pd->res;
            memset(&pd->res, 0, sizeof(pd->res));
        }
        if (tmp.width != d->width || tmp.height != d->height || tmp.data == NULL) {
            vips_error("datago", "slot is %dx%d, image %dx%d", d->width, d->height, tmp.width, tmp.height);
            g_free(tmp.data);
            return -1;
        }
        convert_into(tmp.data, tmp.width, tmp.height, tmp.pixel_stride, tmp.channels, d->data,
                     d->channels, d->chw, d->mask);
        g_free(tmp.data);
    }
    r->width = d->width;
    r->height = d->height;
    r->channels = d->channels;
    r->pixel_stride = d->channels;
    r->len = (size_t)d->width * d->height * d->channels;
    return 0;
}

int dg_store(dg_pending *pd, const dg_params *p, const dg_dest *d, dg_result *r, dg_status *st) {
    if (store(pd, p, d, r) == 0) return 0;
    fail(st, NULL, 0, DG_OTHER, "store");
    return -1;
}

int dg_decode(const void *buf, size_t len, dg_header *h, const dg_params *p, dg_pending *pd, dg_status *st) {
    memset(pd, 0, sizeof(*pd));
    dg_result *r = &pd->res;
    VipsImage *x = NULL, *t = NULL;
    int rc = -1, judged = 0;
    const char *what = "decode";

    // a JPEG starts from the header image: libvips' shrink-on-load only if our decoder declines
    if (p->shrink > 1 && h->kind == DG_WEBP) {
        if (vips_webpload_buffer((void *)buf, len, &x, "scale", 1.0 / p->shrink, "access",
                                 VIPS_ACCESS_SEQUENTIAL, "fail_on", vips_fail_on(p->fail_on), NULL)) {
            fail(st, buf, len, h->kind, "webp load");
            return -1;
        }
    } else {
        x = h->img;
        g_object_ref(x);
    }

    int swap = h->orientation >= 5; // 5..8 transpose the axes
    if (p->resize) {
        int tw = swap ? p->target_h : p->target_w;
        int th = swap ? p->target_w : p->target_h;
        int fast = fast_decode(&x, buf, len, h->kind, tw, th, p, pd, &judged, st);
        if (fast == 0) {
            rc = 0;
            goto done;
        }
        if (fast < 0) goto done;
        if (!judged && h->kind == DG_JPEG && x == h->img) { // our window read, judged, for libvips' chain
            int w = jpeg_window_image(&x, buf, len, h, tw, th, p, pd, st);
            if (w < 0) goto done;
            judged = w == 0;
        }
        // libvips decodes only the window: judge the whole file first
        if (!judged && judge_whole(buf, len, h->kind, p->fail_on, 1, st)) goto done;
        judged = 1;
        if (h->kind == DG_JPEG && x == h->img && jpeg_shrink_load(&x, buf, len, p)) goto done;
        if (cover_crop_resize(&x, tw, th, p->mask)) goto done;
    } else {
        if (h->kind == DG_JPEG) { // the whole image from our decoder: one entropy decoding, judged
            int w = jpeg_window_image(&x, buf, len, h, h->width, h->height, p, pd, st);
            if (w < 0) goto done;
            judged = w == 0;
        }
        // libvips decodes it all, and still: libpng checks some chunk CRCs, not all, and libvips'
        // JPEG loader (8.14) misses a libjpeg warning raised while it reads the last rows (fuzz
        // input FuzzJPEG/abace887b18663d3), so our checks judge what our decoder did not
        if (!judged && (h->kind == DG_PNG || (h->kind == DG_JPEG && p->fail_on == DG_FAIL_WARNING)) &&
            judge_whole(buf, len, h->kind, p->fail_on, 0, st))
            goto done;
    }
    if (h->orientation > 1) {
        // rotation reads out of order: evaluate the (already small) image, then rotate in memory
        if ((t = vips_image_copy_memory(x)) == NULL) goto done;
        step(&x, t);
        if (vips_autorot(x, &t, NULL)) goto done;
        step(&x, t);
    }
    if (normalise_colour(&x, p, p->encode == DG_ENCODE_JPEG)) goto done;

    r->channels = x->Bands;
    if (p->encode == DG_RAW && p->pad_rgb && !p->mask && x->Bands == 3) {
        if (vips_bandjoin_const1(x, &t, 255, NULL)) goto done;
        step(&x, t);
    }
    r->pixel_stride = x->Bands;

    if (p->encode == DG_ENCODE_PNG) {
        what = "png encode";
        if (vips_pngsave_buffer(x, &r->data, &r->len, "compression", 1, "strip", TRUE, NULL))
            goto done;
    } else if (p->encode == DG_ENCODE_JPEG) {
        what = "jpeg encode";
        if (vips_jpegsave_buffer(x, &r->data, &r->len, "Q", p->jpeg_quality, "strip", TRUE, NULL))
            goto done;
    } else {
        r->data = vips_image_write_to_memory(x, &r->len);
        if (r->data == NULL) goto done;
    }
    r->width = x->Xsize;
    r->height = x->Ysize;
    rc = 0;
done:
    if (x) g_object_unref(x);
    if (rc) {
        dg_pending_free(pd);
        // libvips is lazy: the data is decoded by the step that needs the pixels (an encoder too),
        // so any failure here may be the data's: fail() reads the file itself first
        fail(st, buf, len, h->kind, what); // keeps a message already there
    }
    return rc;
}

int dg_finish(const void *buf, size_t len, dg_header *h, const dg_params *p, dg_result *r, dg_status *st) {
    dg_pending pd;
    memset(r, 0, sizeof(*r));
    if (dg_decode(buf, len, h, p, &pd, st)) return -1;
    int rc = dg_store(&pd, p, NULL, r, st);
    dg_pending_free(&pd);
    return rc;
}
