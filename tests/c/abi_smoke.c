/* Embeds libdatago.so from C through the hand-written header only: checks the ABI version and the
 * error kinds, streams a folder, checks every sample, frees it, and prints "ok <n> samples".
 * Built and run by tests/test_c_abi.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datago.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s ROOT\n", argv[0]);
        return 2;
    }
    if (datago_abi_version() != DATAGO_ABI_VERSION) {
        fprintf(stderr, "ABI version %d, header %d\n", datago_abi_version(), DATAGO_ABI_VERSION);
        return 1;
    }
    datago_error err = {0};
    uint64_t bad = datago_client_new("{\"source_type\": \"file\", \"nope\": 1}", &err);
    if (bad != 0 || err.kind != DATAGO_ERR_VALUE || err.message == NULL || !strstr(err.message, "nope")) {
        fprintf(stderr, "bad config not reported: %d %s\n", err.kind, err.message ? err.message : "(null)");
        return 1;
    }
    datago_free_string(err.message);
    err = (datago_error){0};
    bad = datago_client_new("{\"source_type\": \"file\", \"source_config\": {\"root_path\": \"/nonexistent/x\"}}", &err);
    if (bad != 0 || err.kind != DATAGO_ERR_NOT_FOUND || !strstr(err.message, "/nonexistent/x")) {
        fprintf(stderr, "missing root not reported: %d %s\n", err.kind, err.message ? err.message : "(null)");
        return 1;
    }
    datago_free_string(err.message);
    err = (datago_error){0};
    if (datago_client_start(12345, &err) != -1 || err.kind != DATAGO_ERR_CLOSED) {
        fprintf(stderr, "a bad handle not reported: %d\n", err.kind);
        return 1;
    }
    datago_free_string(err.message);
    err = (datago_error){0};

    char config[4096];
    snprintf(config, sizeof config,
             "{\"source_type\": \"file\", \"source_config\": {\"root_path\": \"%s\"},"
             " \"image_config\": {\"crop_and_resize\": true, \"default_image_size\": 256}}",
             argv[1]);
    uint64_t client = datago_client_new(config, &err);
    if (client == 0) {
        fprintf(stderr, "new: %s\n", err.message);
        return 1;
    }
    /* nowhere to put a sample: an error, not a crash or a leak */
    if (datago_client_get_sample(client, 30.0, NULL, &err) != DATAGO_ERROR || err.kind != DATAGO_ERR_VALUE ||
        err.message == NULL) {
        fprintf(stderr, "get_sample with a NULL out: %d %s\n", err.kind, err.message ? err.message : "(no error)");
        return 1;
    }
    datago_free_string(err.message);
    err = (datago_error){0};
    int n = 0;
    for (;;) {
        datago_sample *s = NULL;
        int32_t rc = datago_client_get_sample(client, 30.0, &s, &err);
        if (rc == DATAGO_END) break;
        if (rc != DATAGO_SAMPLE) {
            fprintf(stderr, "get_sample: %d %s\n", rc, err.message ? err.message : "");
            return 1;
        }
        const datago_image *im = &s->image;
        if (im->data == NULL || im->width % 16 || im->height % 16 || im->channels != 3 ||
            im->pixel_stride != 4 || im->len != (size_t)im->width * im->height * 4 ||
            strcmp(s->source, "filesystem") != 0 || s->id[0] == '\0') {
            fprintf(stderr, "bad sample %s\n", s->id);
            return 1;
        }
        datago_sample_free(s);
        n++;
    }
    char *stats = datago_client_stats(client);
    if (strstr(stats, "\"samples_produced\"") == NULL) {
        fprintf(stderr, "stats: %s\n", stats);
        return 1;
    }
    datago_free_string(stats);
    datago_client_stop(client);
    datago_client_free(client);

    /* batches (CHW), the resume state, and a resumed client */
    snprintf(config, sizeof config,
             "{\"source_type\": \"file\", \"source_config\": {\"root_path\": \"%s\"},"
             " \"image_config\": {\"crop_and_resize\": true, \"default_image_size\": 256},"
             " \"batch_size\": 4, \"image_layout\": \"CHW\", \"seed\": 3}",
             argv[1]);
    int batched = 0;
    char *state = NULL;
    for (int pass = 0; pass < 2; pass++) {
        client = datago_client_new(config, &err);
        if (client == 0) {
            fprintf(stderr, "new (batches): %s\n", err.message);
            return 1;
        }
        if (pass == 1 && datago_client_load_state(client, state, &err) != 0) {
            fprintf(stderr, "load_state: %s\n", err.message);
            return 1;
        }
        for (int k = 0; pass == 1 || k < 1; k++) {
            datago_batch *b = NULL;
            int32_t rc = datago_client_get_batch(client, 30.0, &b, &err);
            if (rc == DATAGO_END) break;
            if (rc != DATAGO_SAMPLE) {
                fprintf(stderr, "get_batch: %d %s\n", rc, err.message ? err.message : "");
                return 1;
            }
            if (b->n < 1 || b->n > 4 || b->channels != 3 || b->layout != DATAGO_LAYOUT_CHW ||
                b->width % 16 || b->height % 16 ||
                b->images_len != (size_t)b->n * b->width * b->height * 3 || b->ids[b->n - 1][0] == '\0') {
                fprintf(stderr, "bad batch of %d\n", b->n);
                return 1;
            }
            batched += b->n;
            datago_batch_free(b);
        }
        if (pass == 0) {
            state = datago_client_state(client, &err);
            if (state == NULL || strstr(state, "\"consumed\"") == NULL) {
                fprintf(stderr, "state: %s\n", err.message ? err.message : "(null)");
                return 1;
            }
        }
        if (datago_client_set_epoch(client, 1, &err) != 0) {
            fprintf(stderr, "set_epoch: %s\n", err.message);
            return 1;
        }
        datago_client_free(client);
    }
    datago_free_string(state);
    if (datago_live_samples() != 0) {
        fprintf(stderr, "%lld samples leaked\n", (long long)datago_live_samples());
        return 1;
    }
    if (batched != n) {
        fprintf(stderr, "batches delivered %d samples across a resume, want %d\n", batched, n);
        return 1;
    }
    printf("ok %d samples, %d in batches across a resume, version %s\n", n, batched, datago_version());
    return 0;
}
