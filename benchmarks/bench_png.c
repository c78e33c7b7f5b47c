/* PNG decode speed: our decoder (go/transform/pngdec.c) against libspng, libpng and the inflate
 * limits (libdeflate and zlib inflating the concatenated IDAT data, no unfiltering), on the PNGs
 * named on stdin (one path a line), in one process, one thread.
 *
 * Every file is read into memory first (not timed). Each round times every decoder on every
 * file, file after file, the decoders taking turns on each in a rotating order, so that a slow
 * spell of the machine hits them all alike; per decoder and file the fastest round counts, in
 * CPU time of the thread (CLOCK_THREAD_CPUTIME_ID). MB/s are of decoded pixels as stored
 * in the file (width x height x channels, 8 bits a sample: RGBA counts 4 bytes a pixel), so the
 * ratios between decoders are ratios of time.
 *
 *   ours      dg_png_decode of the whole image, as the pipeline calls it: flatten = 1, so grey+alpha
 *             and RGBA come out flattened onto white (the flattening is in its time)
 *   libspng   spng_decode_image(SPNG_FMT_PNG): the file's own format, CRCs checked (its default)
 *   libpng    png_read_image, no transformations, CRCs checked (its default)
 *   libdeflate  libdeflate_zlib_decompress of the joined IDAT data into a ready buffer: the limit
 *   zlib      uncompress() of the same (the inflate libpng and libspng use here)
 *   ours@REF  with -DBENCH_BASE='"REF"': another version of pngdec.c (bench_png.sh --base REF)
 *             linked in beside ours, its symbols renamed, to compare before and after in one run
 *
 * Before timing, every file's pixels from ours are checked against libspng's (flattened the same
 * way where there is alpha); a mismatch is fatal.
 *
 * Build (benchmarks/bench_png.sh does it):
 *   cc -O3 -Igo/transform -o bench_png benchmarks/bench_png.c go/transform/pngdec.c \
 *      -ldeflate -lspng -lpng -lz
 * Usage: ./bench_png [rounds] < list-of-paths
 */
#include <png.h>
#include <setjmp.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include <libdeflate.h>

#include "pngdec.h"

struct file {
    char *path;
    unsigned char *data;
    size_t size;
    unsigned w, h;
    int ctype, depth, channels;
    unsigned char *idat; // the joined IDAT data
    size_t idat_len;
    size_t raw_len; // inflated size: h rows of 1 + w * channels bytes
    size_t pixel_bytes;
    int alpha;
};

#ifdef BENCH_BASE // another version of pngdec.c, its symbols renamed (bench_png.sh --base REF)
int dg_png_decode_base(const uint8_t *buf, size_t len, int flatten, dg_png *out, const char **err);
void dg_png_free_base(dg_png *p);
enum { OURS, SPNG, LIBPNG, DEFLATE, ZLIB, BASE, NDEC };
static const char *names[NDEC] = {"ours", "libspng", "libpng", "libdeflate", "zlib", "ours@" BENCH_BASE};
#else
enum { OURS, SPNG, LIBPNG, DEFLATE, ZLIB, NDEC };
static const char *names[NDEC] = {"ours", "libspng", "libpng", "libdeflate", "zlib"};
#endif

// CPU time of this thread: what other processes on the machine take does not count (wall-clock
// time on a shared 2-core machine varies by 2x from run to run)
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static unsigned be32(const unsigned char *p) {
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

static int load(struct file *f) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->data = malloc((size_t)n);
    if (!f->data || fread(f->data, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        return -1;
    }
    fclose(fp);
    f->size = (size_t)n;
    if (f->size < 33 || memcmp(f->data + 12, "IHDR", 4)) return -1;
    f->w = be32(f->data + 16), f->h = be32(f->data + 20);
    f->depth = f->data[24], f->ctype = f->data[25];
    if (f->data[28] != 0) return -1; // interlaced: not measured
    f->channels = f->ctype == 0 ? 1 : f->ctype == 2 ? 3 : f->ctype == 4 ? 2 : f->ctype == 6 ? 4 : 0;
    if (!f->channels || f->depth != 8) return -1;
    f->alpha = f->ctype == 4 || f->ctype == 6;
    f->pixel_bytes = (size_t)f->w * f->h * f->channels;
    f->raw_len = ((size_t)f->w * f->channels + 1) * f->h;
    f->idat = malloc(f->size);
    f->idat_len = 0;
    for (size_t pos = 8; pos + 12 <= f->size;) {
        unsigned len = be32(f->data + pos);
        if (!memcmp(f->data + pos + 4, "IDAT", 4)) {
            memcpy(f->idat + f->idat_len, f->data + pos + 8, len);
            f->idat_len += len;
        }
        pos += 12 + (size_t)len;
    }
    return 0;
}

/* libspng: the file's pixels in its own format into a new buffer (caller frees), or NULL */
static unsigned char *spng_pixels(const struct file *f) {
    spng_ctx *ctx = spng_ctx_new(0);
    unsigned char *out = NULL;
    size_t n;
    if (!ctx) return NULL;
    if (spng_set_png_buffer(ctx, f->data, f->size) || spng_decoded_image_size(ctx, SPNG_FMT_PNG, &n)) goto done;
    out = malloc(n);
    if (out && spng_decode_image(ctx, out, n, SPNG_FMT_PNG, 0)) {
        free(out);
        out = NULL;
    }
done:
    spng_ctx_free(ctx);
    return out;
}

struct reader {
    const unsigned char *p;
    size_t left;
};

static void read_mem(png_structp png, png_bytep out, png_size_t n) {
    struct reader *r = png_get_io_ptr(png);
    if (n > r->left) png_error(png, "truncated");
    memcpy(out, r->p, n);
    r->p += n, r->left -= n;
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static unsigned char *libpng_pixels(const struct file *f) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    struct reader r = {f->data, f->size};
    if (!info) goto fail;
    if (setjmp(png_jmpbuf(png))) goto fail;
    png_set_read_fn(png, &r, read_mem);
    png_read_info(png, info);
    size_t stride = (size_t)f->w * f->channels;
    out = malloc(stride * f->h);
    rows = malloc(sizeof(png_bytep) * f->h);
    for (unsigned y = 0; y < f->h; y++) rows[y] = out + y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    return out;
fail:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(out);
    return NULL;
}

/* ours against libspng's pixels (flattened onto white like ours where there is alpha) */
static int check(const struct file *f) {
    dg_png o;
    const char *err;
    if (dg_png_decode(f->data, f->size, 1, &o, &err) != 0) {
        fprintf(stderr, "%s: our decoder declines it\n", f->path);
        return -1;
    }
    unsigned char *ref = spng_pixels(f);
    int bad = !ref || o.bands != f->channels - f->alpha;
    for (unsigned y = 0; !bad && y < f->h; y++) {
        const unsigned char *g = o.pixels + y * o.stride, *s = ref + (size_t)y * f->w * f->channels;
        for (unsigned x = 0; !bad && x < f->w; x++) {
            const unsigned char *px = s + (size_t)x * f->channels;
            for (int b = 0; b < o.bands; b++) {
                int v = px[b];
                if (f->alpha) {
                    int a = px[f->channels - 1];
                    v = (v * a + 255 * (255 - a) + 127) / 255;
                }
                if (g[(size_t)x * o.bands + b] != v) {
                    fprintf(stderr, "%s: ours differs from libspng at (%u, %u) band %d: %d vs %d\n", f->path,
                            x, y, b, g[(size_t)x * o.bands + b], v);
                    bad = 1;
                    break;
                }
            }
        }
    }
    free(ref);
    dg_png_free(&o);
    return bad ? -1 : 0;
}

static unsigned char *scratch; // the inflate limits' output buffer (the largest raw size)
static struct libdeflate_decompressor *dec;

static int run(int which, const struct file *f) {
    dg_png o;
    const char *err;
    unsigned char *p;
    uLongf n;
    switch (which) {
    case OURS:
        if (dg_png_decode(f->data, f->size, 1, &o, &err) != 0) return -1;
        dg_png_free(&o);
        return 0;
    case SPNG:
        p = spng_pixels(f);
        free(p);
        return p ? 0 : -1;
    case LIBPNG:
        p = libpng_pixels(f);
        free(p);
        return p ? 0 : -1;
    case DEFLATE:
        return libdeflate_zlib_decompress(dec, f->idat, f->idat_len, scratch, f->raw_len, NULL) ==
                       LIBDEFLATE_SUCCESS
                   ? 0
                   : -1;
    case ZLIB:
        n = (uLongf)f->raw_len;
        return uncompress(scratch, &n, f->idat, (uLong)f->idat_len) == Z_OK && n == f->raw_len ? 0 : -1;
#ifdef BENCH_BASE
    case BASE:
        if (dg_png_decode_base(f->data, f->size, 1, &o, &err) != 0) return -1;
        dg_png_free_base(&o);
        return 0;
#endif
    }
    return -1;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1) {
        fprintf(stderr, "usage: bench_png [rounds >= 1] < list-of-paths\n");
        return 2;
    }
    size_t cap = 64, nf = 0, max_raw = 0;
    struct file *files = calloc(cap, sizeof(*files));
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!*line) continue;
        if (nf == cap) files = realloc(files, (cap *= 2) * sizeof(*files));
        memset(&files[nf], 0, sizeof(files[nf]));
        files[nf].path = strdup(line);
        if (load(&files[nf])) {
            fprintf(stderr, "%s: skipped (unreadable, interlaced or not 8-bit)\n", line);
            continue;
        }
        if (files[nf].raw_len > max_raw) max_raw = files[nf].raw_len;
        nf++;
    }
    if (!nf) {
        fprintf(stderr, "no PNG to measure\n");
        return 1;
    }
    scratch = malloc(max_raw);
    dec = libdeflate_alloc_decompressor();
    for (size_t i = 0; i < nf; i++)
        if (check(&files[i])) return 1;

    // per decoder and file, the fastest of the rounds: what another process on the machine
    // took away in some rounds does not count
    double *best[NDEC];
    for (int d = 0; d < NDEC; d++) {
        best[d] = malloc(nf * sizeof(double));
        for (size_t i = 0; i < nf; i++) best[d][i] = 1e30;
    }
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < nf; i++) {
            for (int k = 0; k < NDEC; k++) {
                int d = (int)((k + r + i) % NDEC);
                double t0 = now();
                if (run(d, &files[i])) {
                    fprintf(stderr, "%s: %s failed\n", files[i].path, names[d]);
                    return 1;
                }
                double dt = now() - t0;
                if (dt < best[d][i]) best[d][i] = dt;
            }
        }
    }
    // classes: all, RGB/grey (no alpha), with alpha
    double mb[3] = {0, 0, 0}, tot[NDEC][3] = {{0}};
    size_t count[3] = {0, 0, 0};
    for (size_t i = 0; i < nf; i++) {
        for (int c = 0; c < 3; c++) {
            if (c != 0 && (c == 2) != files[i].alpha) continue;
            mb[c] += files[i].pixel_bytes / 1e6, count[c]++;
            for (int d = 0; d < NDEC; d++) tot[d][c] += best[d][i];
        }
    }
    const char *cls[3] = {"all", "no alpha", "alpha"};
    printf("%zu PNGs (%zu without alpha, %zu with), %.1f MB of pixels; best of %d rounds per file; MB/s of pixels\n", nf,
           count[1], count[2], mb[0], rounds);
    printf("%-12s", "decoder");
    for (int c = 0; c < 3; c++) printf(" %12s", cls[c]);
    printf("   time vs ours (all)\n");
    for (int d = 0; d < NDEC; d++) {
        printf("%-12s", names[d]);
        for (int c = 0; c < 3; c++) printf(" %12.1f", count[c] ? mb[c] / tot[d][c] : 0.0);
        printf("   %.2fx\n", tot[d][0] / tot[OURS][0]);
    }
    printf("ours / libdeflate inflate limit (share of it reached):");
    for (int c = 0; c < 3; c++)
        if (count[c]) printf(" %s %.0f%%", cls[c], 100 * tot[DEFLATE][c] / tot[OURS][c]);
    printf("\nours vs libspng (speed ratio):");
    for (int c = 0; c < 3; c++)
        if (count[c]) printf(" %s %.2fx", cls[c], tot[SPNG][c] / tot[OURS][c]);
    printf("\n");
#ifdef BENCH_BASE
    printf("ours vs %s (speed ratio):", names[BASE]);
    for (int c = 0; c < 3; c++)
        if (count[c]) printf(" %s %.2fx", cls[c], tot[BASE][c] / tot[OURS][c]);
    printf("\n");
#endif
    return 0;
}
