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
 *  - Strings returned in datago_error.message, by datago_client_stats and by datago_drain_logs are
 *    malloc'd; free them with datago_free_string.
 *
 * Errors: functions that can fail take a `datago_error *err` (may be NULL). On failure they set
 * err->kind to a DATAGO_ERR_* code (so bindings raise the matching exception without parsing text)
 * and err->message to a malloc'd, human-readable message naming the key, path or URL at fault.
 *
 * Versioning: DATAGO_ABI_VERSION changes whenever this contract changes; a binding compares it with
 * datago_abi_version() when it opens the library. The Go exports are compiled against this header
 * (go/capi includes it in its cgo preamble), so the C compiler rejects any drift between the two.
 *
 * Logs: by default the core writes its warnings to stderr. A binding that calls
 * datago_capture_logs(1) receives them instead from datago_drain_logs (a bounded queue; records that
 * do not fit are counted as dropped), to route them into its own logging.
 */
#ifndef DATAGO_H
#define DATAGO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* BEGIN CDEF */
#define DATAGO_ABI_VERSION 4

/* Results of datago_client_get_sample. */
#define DATAGO_SAMPLE 0      /* *out holds a sample */
#define DATAGO_END 1         /* end of stream: every sample was delivered (or limit reached) */
#define DATAGO_TIMEOUT 2     /* nothing arrived within the timeout; the stream goes on */
#define DATAGO_ERROR -1      /* *err holds the error; the stream is over */

/* Error kinds (datago_error.kind). */
#define DATAGO_ERR_NONE 0       /* no error */
#define DATAGO_ERR_RUNTIME 1    /* an internal failure */
#define DATAGO_ERR_VALUE 2      /* bad config or argument (Python: ConfigError, a ValueError) */
#define DATAGO_ERR_NOT_FOUND 3  /* a file, shard or URL that does not exist (FileNotFoundError) */
#define DATAGO_ERR_OS 4         /* an I/O or network failure (OSError) */
#define DATAGO_ERR_CLOSED 5     /* a closed client or a freed handle */
#define DATAGO_ERR_PERMISSION 6 /* access refused, e.g. S3 AccessDenied (PermissionError, an OSError) */

typedef struct datago_error {
    int32_t kind;            /* DATAGO_ERR_* */
    char *message;           /* malloc'd (free with datago_free_string); NULL when kind is NONE */
} datago_error;

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

/* Layouts of a batch's image arrays. */
#define DATAGO_LAYOUT_HWC 0  /* N x H x W x C */
#define DATAGO_LAYOUT_CHW 1  /* N x C x H x W */

/* A batch (config key batch_size): n samples of one bucket. Every array of pixels is one
 * contiguous buffer, written there by the transform stage. All memory is owned by the batch and
 * released by datago_batch_free (pure C); the arrays are writable. */
typedef struct datago_batch {
    int32_t n;                   /* samples in the batch (<= batch_size; fewer for a partial batch) */
    int32_t width;               /* the bucket, pixels */
    int32_t height;
    int32_t channels;            /* 1 (L), 3 (RGB) or 4 (RGBA): batch_mode */
    int32_t layout;              /* DATAGO_LAYOUT_HWC or DATAGO_LAYOUT_CHW */
    uint8_t *images;             /* n * height * width * channels bytes, in `layout`, malloc'd */
    size_t images_len;           /* bytes of images used by the n samples */
    char **ids;                  /* n strings */
    char **sources;              /* n strings */
    char **attributes_json;      /* n JSON objects */
    int32_t *original_widths;    /* n: pixels of the upright source image */
    int32_t *original_heights;   /* n */
    int32_t n_masks;             /* named masks of the batch */
    char **mask_names;           /* n_masks strings */
    uint8_t **masks;             /* n_masks arrays of n * height * width bytes (zeros where a sample has none) */
    int32_t n_additional_images;
    char **additional_image_names;
    uint8_t **additional_images; /* arrays like images (zeros where a sample has none) */
    datago_blob **latents;       /* n arrays of per-sample blobs (NULL when none) */
    int32_t *n_latents;          /* n counts */
    int64_t *seqs;               /* n: each sample's position in this rank's epoch stream */
} datago_batch;

/* Version string of the library, static storage (do not free). */
const char *datago_version(void);

/* DATAGO_ABI_VERSION of the library's build; a binding refuses a library whose version differs. */
int32_t datago_abi_version(void);

/* Create a client from a JSON config (datago's format). Returns a handle > 0, or 0 with *err set. */
uint64_t datago_client_new(const char *config_json, datago_error *err);

/* Start the pipeline (idempotent). Returns 0, or -1 with *err set. */
int32_t datago_client_start(uint64_t client, datago_error *err);

/* Wait up to timeout_s seconds (< 0: forever) for the next sample.
 * Returns DATAGO_SAMPLE, DATAGO_END, DATAGO_TIMEOUT or DATAGO_ERROR. Starts the client if needed. */
int32_t datago_client_get_sample(uint64_t client, double timeout_s, datago_sample **out, datago_error *err);

/* Release a sample and every buffer it owns. NULL is a no-op. Pure C. */
void datago_sample_free(datago_sample *sample);

/* Batched clients (batch_size > 0): wait up to timeout_s seconds (< 0: forever) for the next batch.
 * Returns DATAGO_SAMPLE (*out holds a batch), DATAGO_END, DATAGO_TIMEOUT or DATAGO_ERROR. A client
 * without batch_size returns DATAGO_ERROR (and get_sample on a batched client too). */
int32_t datago_client_get_batch(uint64_t client, double timeout_s, datago_batch **out, datago_error *err);

/* Release a batch and every buffer it owns. NULL is a no-op. Pure C. */
void datago_batch_free(datago_batch *batch);

/* The resume point after the last sample or batch delivered, as a JSON object (malloc'd; free with
 * datago_free_string). NULL with *err set on error. See README, "Resuming". */
char *datago_client_state(uint64_t client, datago_error *err);

/* Before the client starts: continue from a state (one rank's, or merged). 0, or -1 with *err set. */
int32_t datago_client_load_state(uint64_t client, const char *state_json, datago_error *err);

/* The epoch of the next start (the seeded order depends on it). 0, or -1 with *err set. */
int32_t datago_client_set_epoch(uint64_t client, int64_t epoch, datago_error *err);

/* Map-style access (random access by index). The index is the source's listing, made once (on the
 * first call) and kept until the client is freed: for a folder, its sorted listing (whatever
 * random_sampling, rank and world_size say: a sampler chooses order and shares); for db, the rows
 * of the configured query in the stream order of epoch 0 (the configured rank's share); for
 * WebDataset, the samples of epoch 0's stream, whose encoded payloads are then held in memory.
 * Independent of get_sample / get_batch (a streaming run may go on at the same time). */

/* Number of samples in the index. Returns >= 0, or -1 with *err set (e.g. the listing failed). */
int64_t datago_client_len(uint64_t client, datago_error *err);

/* The index as a malloc'd JSON array (free with datago_free_string): element i is
 * {"id": ..., "source": ..., "attributes": {...}} of sample i, read from the listing (no image is
 * read). NULL with *err set on error. */
char *datago_client_index(uint64_t client, datago_error *err);

/* Fetch, decode and transform the samples at indices[0..n) — in parallel on num_threads workers,
 * with the client's image settings — into out[0..n) (an array of n pointers owned by the caller).
 * out[k] is the sample of indices[k] (free each with datago_sample_free), or NULL when that sample
 * was skipped (corrupt image, missing file: counted in the stats, logged with its path). Returns the
 * number of non-NULL samples, or -1 with *err set (an index outside [0, len): DATAGO_ERR_VALUE;
 * nothing is made then). */
int32_t datago_client_get_items(uint64_t client, const int64_t *indices, int32_t n, datago_sample **out,
                                datago_error *err);

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

/* Process-wide: 1 sends the core's log records to a bounded queue read by datago_drain_logs (for a
 * binding's own logging), 0 writes them to stderr (the default). Returns the previous setting. */
int32_t datago_capture_logs(int32_t on);

/* Takes up to max_records queued log records (max_records <= 0: all), or NULL when the queue is
 * empty and nothing was dropped. The result is a malloc'd JSON object
 * {"dropped": n, "records": [{"time": unix seconds, "level": "DEBUG"|"INFO"|"WARN"|"ERROR",
 *  "message": "...", "attrs": {"key": value, ...}}, ...]}
 * where dropped counts the records lost to a full queue since the last drain. */
char *datago_drain_logs(int32_t max_records);

/* Free a string returned by this library. NULL is a no-op. */
void datago_free_string(char *s);
/* END CDEF */

/* Internal: used by the Go core to account for a sample it hands out. */
void datago__account_sample(datago_sample *sample);
/* Internal: a batch handed out counts its n samples and its bytes in the live counters. */
void datago__account_batch(datago_batch *batch);

#ifdef __cplusplus
}
#endif

#endif /* DATAGO_H */
