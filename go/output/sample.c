// Pure-C half of the sample lifecycle: freeing a sample and the process-wide accounting of live
// samples. Kept in C so that releasing a sample never enters the Go runtime (safe from any thread,
// from Python finalizers, and in a forked child).
#include <stdlib.h>
#include <glib.h>
#include "datago.h"

static int64_t live_samples = 0;
static int64_t live_bytes = 0;

static size_t image_bytes(const datago_image *img) { return img->data ? img->len : 0; }

static size_t sample_bytes(const datago_sample *s) {
    size_t n = image_bytes(&s->image);
    for (int32_t i = 0; i < s->n_masks; i++) n += image_bytes(&s->masks[i]);
    for (int32_t i = 0; i < s->n_additional_images; i++) n += image_bytes(&s->additional_images[i]);
    for (int32_t i = 0; i < s->n_latents; i++) n += s->latents[i].len;
    n += (size_t)s->coca_embedding_len * sizeof(float);
    return n;
}

void datago__account_sample(datago_sample *s) {
    __atomic_add_fetch(&live_samples, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&live_bytes, (int64_t)sample_bytes(s), __ATOMIC_RELAXED);
}

int64_t datago__live_add(int64_t samples, int64_t bytes) {
    __atomic_add_fetch(&live_bytes, bytes, __ATOMIC_RELAXED);
    return __atomic_add_fetch(&live_samples, samples, __ATOMIC_RELAXED);
}

int64_t datago_live_samples(void) { return __atomic_load_n(&live_samples, __ATOMIC_RELAXED); }
int64_t datago_live_bytes(void) { return __atomic_load_n(&live_bytes, __ATOMIC_RELAXED); }

static void free_image(datago_image *img) {
    free(img->name);
    g_free(img->data);
}

static void free_images(datago_image *imgs, int32_t n) {
    for (int32_t i = 0; i < n; i++) free_image(&imgs[i]);
    free(imgs);
}

void datago_sample_free(datago_sample *s) {
    if (s == NULL) return;
    __atomic_sub_fetch(&live_samples, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&live_bytes, (int64_t)sample_bytes(s), __ATOMIC_RELAXED);
    free(s->id);
    free(s->source);
    free(s->attributes_json);
    free_image(&s->image);
    free_images(s->masks, s->n_masks);
    free_images(s->additional_images, s->n_additional_images);
    for (int32_t i = 0; i < s->n_latents; i++) {
        free(s->latents[i].name);
        free(s->latents[i].data);
    }
    free(s->latents);
    for (int32_t i = 0; i < s->n_tags; i++) free(s->tags[i]);
    free(s->tags);
    free(s->coca_embedding);
    free(s);
}

void datago_free_string(char *s) { free(s); }
