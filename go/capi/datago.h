/*
 * datago.h — the C ABI of libdatago.so. This hand-written header is the contract between the Go
 * core and every language that embeds it (the Python package reads its cdef from the block below).
 *
 * Threading: every function may be called from any thread. get_sample blocks only the calling thread.
 * Fork: the Go runtime does not survive fork(); a child process must not call into a client created
 * by its parent (the Python package detects this and raises).
 *
 * Ownership:
 *  - datago_client_new returns an opaque handle (an integer, never a pointer into Go memory).
 *  - A datago_sample* returned by datago_client_get_sample is owned by the caller and must be released
 *    exactly once with datago_sample_free. Every pointer inside it is C memory owned by the sample:
 *    image data is allocated by glib (g_malloc, libvips' own output buffer), strings and blobs by malloc.
 *    datago_sample_free is pure C: it never enters the Go runtime.
 *  - Strings returned through `char **err` and by datago_client_stats are malloc'd; free them with
 *    datago_free_string.
 *
 * Errors are strings of the form "<Kind>: <message>" where Kind is ValueError, FileNotFoundError,
 * OSError, TimeoutError or RuntimeError, so bindings can raise the matching exception.
 */
#ifndef DATAGO_H
#define DATAGO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* BEGIN CDEF */
#define DATAGO_ABI_VERSION 1

/* Results of datago_client_get_sample. */
#define DATAGO_SAMPLE 0      /* *out holds a sample */
#define DATAGO_END 1         /* end of stream: every sample was delivered (or limit reached) */
#define DATAGO_TIMEOUT 2     /* nothing arrived within the timeout; the stream goes on */
#define DATAGO_ERROR -1      /* *err holds the error text; the stream is over */

/* Duplicate state of a sample (db source); 0 when unknown. */

typedef struct datago_image {
    char *name;              /* NULL for the main image; the key for masks / additional images */
    uint8_t *data;           /* raw pixels, row-major H x W x pixel_stride, or an encoded file */
    size_t len;              /* bytes in data */
    int32_t width;           /* pixels, after crop/resize */
    int32_t height;          /* pixels, after crop/resize */
    int32_t channels;        /* 1 (L), 2 (LA), 3 (RGB), 4 (RGBA); -1 when encoded */
    int32_t bit_depth;       /* bits per channel: always 8 for raw pixels */
    int32_t original_width;  /* pixels, of the upright source (after EXIF rotation, before resize) */
    int32_t original_height; /* pixels, of the upright source (after EXIF rotation, before resize) */
    int32_t encoded;         /* 1 when data holds a PNG or JPEG file (pre_encode_images) */
    int32_t pixel_stride;    /* bytes per pixel in data (raw only): channels, or 4 for RGB stored as
                                RGBX (X = 255) so that Pillow can map it without a copy; rows are
                                width * pixel_stride bytes apart */
} datago_image;

typedef struct datago_blob {
    char *name;              /* the payload's key, e.g. "latent.npy" or a latent type */
    uint8_t *data;           /* bytes, malloc'd */
    size_t len;
} datago_blob;

typedef struct datago_sample {
    char *id;                /* sample id: relative path (filesystem), key (webdataset), id (db) */
    char *source;            /* "filesystem", the shard URL, or the db source name */
    char *attributes_json;   /* a JSON object, "{}" when empty */
    datago_image image;      /* data is NULL when the sample has no image */
    datago_image *masks;
    int32_t n_masks;
    datago_image *additional_images;
    int32_t n_additional_images;
    datago_blob *latents;
    int32_t n_latents;
    char **tags;
    int32_t n_tags;
    float *coca_embedding;
    int32_t coca_embedding_len;
    int32_t duplicate_state;
} datago_sample;

/* Version string of the library, static storage (do not free). */
const char *datago_version(void);

/* Create a client from a JSON config (datago's format). Returns a handle > 0, or 0 with *err set. */
uint64_t datago_client_new(const char *config_json, char **err);

/* Start the pipeline (idempotent). Returns 0, or -1 with *err set. */
int32_t datago_client_start(uint64_t client, char **err);

/* Wait up to timeout_s seconds (< 0: forever) for the next sample.
 * Returns DATAGO_SAMPLE, DATAGO_END, DATAGO_TIMEOUT or DATAGO_ERROR. Starts the client if needed. */
int32_t datago_client_get_sample(uint64_t client, double timeout_s, datago_sample **out, char **err);

/* Release a sample and every buffer it owns. NULL is a no-op. Pure C. */
void datago_sample_free(datago_sample *sample);

/* Stop the pipeline: cancels every stage, waits for every goroutine, frees queued samples.
 * Idempotent; the client can be started again afterwards (a new epoch). */
void datago_client_stop(uint64_t client);

/* Stop and release the client; the handle is invalid afterwards. */
void datago_client_free(uint64_t client);

/* A JSON snapshot of the client's counters (malloc'd; free with datago_free_string). */
char *datago_client_stats(uint64_t client);

/* Process-wide: samples handed out and not yet freed, and the bytes they own. Pure C. */
int64_t datago_live_samples(void);
int64_t datago_live_bytes(void);

/* Log level of the core: "debug", "info", "warn", "error" or "off". Returns 0, -1 if unknown. */
int32_t datago_set_log_level(const char *level);

/* Free a string returned by this library. NULL is a no-op. */
void datago_free_string(char *s);
/* END CDEF */

/* Internal: used by the Go core to account for a sample it hands out. */
void datago__account_sample(datago_sample *sample);

#ifdef __cplusplus
}
#endif

#endif /* DATAGO_H */
