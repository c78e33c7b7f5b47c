// The decode policy shared by the decoders (jpegdec.c, pngdec.c) and the libvips layer (vips.c):
// image_config.fail_on, like libvips' fail_on. See vips.h for what each level refuses.
#ifndef DATAGO_TRANSFORM_FAILON_H
#define DATAGO_TRANSFORM_FAILON_H

#include <stdarg.h>
#include <stdio.h>

// What a decoder refuses: DG_FAIL_WARNING (the default, 0) any warning about the data (corrupt
// entropy data, a bad chunk CRC, truncation); DG_FAIL_ERROR only errors (truncation, an undecodable
// stream, a bad critical-chunk CRC); DG_FAIL_NONE nothing that libvips would still decode.
enum dg_fail_on { DG_FAIL_WARNING = 0, DG_FAIL_ERROR = 1, DG_FAIL_NONE = 2 };

// Bytes of a decoder's message (with its terminating NUL).
#define DG_MSG_LEN 256

// Writes a message into msg (DG_MSG_LEN bytes) unless one is there already: the first problem
// found is the one reported.
static inline void dg_msgf(char *msg, const char *fmt, ...) {
    if (msg == NULL || msg[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, DG_MSG_LEN, fmt, ap);
    va_end(ap);
}

#endif
