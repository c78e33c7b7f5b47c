/* The libjpeg-turbo full-size decode limit: decode every JPEG named on stdin (one path a line)
 * at full size to packed RGB with T threads, and print one JSON line
 *   {"images": N, "seconds": S, "cpu_seconds": C, "images_per_s": R, "mpix": M, "threads": T, "failed": F}
 * The files are read into memory first (not timed); the timed part is only the decoding, the
 * way libjpeg-turbo's own decompressor does it with default settings (islow IDCT, fancy
 * upsampling), each thread taking the next file until none are left.
 *
 * Build (benchmarks/bench_anchor.py does it at bench time):
 *   cc -O2 -o jpeg_limit benchmarks/jpeg_limit.c -ljpeg -lpthread
 * Usage: ls *.jpg | ./jpeg_limit [threads] [passes]
 */
#include <pthread.h>
#include <sys/resource.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

struct file {
    unsigned char *data;
    unsigned long size;
};

static struct file *files;
static size_t nfiles;
static atomic_size_t next_file;
static atomic_long failed, pixels;

struct err {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
};

static void on_error(j_common_ptr cinfo) {
    struct err *e = (struct err *)cinfo->err;
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr cinfo) { (void)cinfo; }

/* decode one file to RGB into *buf (grown as needed); returns 0 on success */
static int decode(const struct file *f, unsigned char **buf, size_t *cap) {
    struct jpeg_decompress_struct cinfo;
    struct err e;
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.output_message = on_message;
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, f->data, f->size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
    size_t need = stride * cinfo.output_height;
    if (need > *cap) {
        free(*buf);
        *buf = malloc(need);
        *cap = *buf ? need : 0;
        if (!*buf) {
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[16];
        int n = 0;
        for (; n < 16 && cinfo.output_scanline + n < cinfo.output_height; n++)
            rows[n] = *buf + (size_t)(cinfo.output_scanline + n) * stride;
        jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)n);
    }
    atomic_fetch_add(&pixels, (long)cinfo.output_width * cinfo.output_height);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

static void *worker(void *arg) {
    (void)arg;
    unsigned char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&next_file, 1);
        if (i >= nfiles)
            break;
        if (decode(&files[i], &buf, &cap) != 0)
            atomic_fetch_add(&failed, 1);
    }
    free(buf);
    return NULL;
}

static int read_file(const char *path, struct file *f) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->data = malloc(size > 0 ? (size_t)size : 1);
    f->size = (unsigned long)size;
    int ok = f->data && size > 0 && fread(f->data, 1, (size_t)size, fp) == (size_t)size;
    fclose(fp);
    return ok ? 0 : -1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds of the process (all threads) */
static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int passes = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1 || threads > 256 || passes < 1) {
        fprintf(stderr, "usage: jpeg_limit [threads 1..256] [passes >= 1] < list-of-paths\n");
        return 2;
    }
    size_t cap = 1024;
    files = malloc(cap * sizeof *files);
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (nfiles == cap) {
            cap *= 2;
            files = realloc(files, cap * sizeof *files);
        }
        if (read_file(line, &files[nfiles]) != 0) {
            fprintf(stderr, "jpeg_limit: cannot read %s\n", line);
            return 1;
        }
        nfiles++;
    }
    pthread_t tid[256];
    double c0 = cpu_now(), t0 = now();
    for (int p = 0; p < passes; p++) {
        atomic_store(&next_file, 0);
        for (int t = 0; t < threads; t++)
            pthread_create(&tid[t], NULL, worker, NULL);
        for (int t = 0; t < threads; t++)
            pthread_join(tid[t], NULL);
    }
    double seconds = now() - t0, cpu_seconds = cpu_now() - c0;
    size_t images = nfiles * (size_t)passes;
    printf("{\"images\": %zu, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"images_per_s\": %.3f, \"mpix\": %.3f, "
           "\"threads\": %d, \"failed\": %ld}\n",
           images, seconds, cpu_seconds, seconds > 0 ? images / seconds : 0.0, atomic_load(&pixels) / 1e6, threads,
           atomic_load(&failed));
    for (size_t i = 0; i < nfiles; i++)
        free(files[i].data);
    free(files);
    return atomic_load(&failed) ? 1 : 0;
}
