// Pure-C half of the batch lifecycle (see datago.h): freeing a batch, and its share of the
// process-wide live counters (n samples, the bytes it owns). Never enters the Go runtime.
#include <stdlib.h>
#include "datago.h"

int64_t datago__live_add(int64_t samples, int64_t bytes);

static size_t batch_bytes(const datago_batch *b) {
    size_t px = (size_t)b->width * b->height;
    size_t n = b->images_len;
    n += (size_t)b->n_masks * b->n * px;
    n += (size_t)b->n_additional_images * b->images_len;
    if (b->latents)
        for (int32_t i = 0; i < b->n; i++)
            for (int32_t j = 0; j < b->n_latents[i]; j++) n += b->latents[i][j].len;
    return n;
}

void datago__account_batch(datago_batch *b) { datago__live_add(b->n, (int64_t)batch_bytes(b)); }

static void free_strings(char **s, int32_t n) {
    if (!s) return;
    for (int32_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

void datago_batch_free(datago_batch *b) {
    if (b == NULL) return;
    datago__live_add(-(int64_t)b->n, -(int64_t)batch_bytes(b));
    free(b->images);
    free_strings(b->ids, b->n);
    free_strings(b->sources, b->n);
    free_strings(b->attributes_json, b->n);
    free(b->original_widths);
    free(b->original_heights);
    free_strings(b->mask_names, b->n_masks);
    for (int32_t i = 0; i < b->n_masks; i++) free(b->masks[i]);
    free(b->masks);
    free_strings(b->additional_image_names, b->n_additional_images);
    for (int32_t i = 0; i < b->n_additional_images; i++) free(b->additional_images[i]);
    free(b->additional_images);
    if (b->latents) {
        for (int32_t i = 0; i < b->n; i++) {
            for (int32_t j = 0; j < b->n_latents[i]; j++) {
                free(b->latents[i][j].name);
                free(b->latents[i][j].data);
            }
            free(b->latents[i]);
        }
        free(b->latents);
    }
    free(b->n_latents);
    free(b->seqs);
    free(b);
}
