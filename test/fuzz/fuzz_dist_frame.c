/* fuzz_dist_frame.c — libFuzzer target for distribution frames as a
 * connection reads them: arbitrary bytes split into u32-length frames, each
 * decoded as a pass-through body (control message and payload). Each must
 * decode or fail with a reason; nothing may read outside the frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "otp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otp_arena *a = otp_arena_new();
    if (!a)
        return 0;
    size_t pos = 0;
    while (size - pos >= 4) {
        uint32_t fl = (uint32_t)data[pos] << 24 | (uint32_t)data[pos + 1] << 16 |
                      (uint32_t)data[pos + 2] << 8 | data[pos + 3];
        if (fl > size - pos - 4)
            break; /* a reader would wait for the rest */
        /* a copy of exactly the frame, so ASan sees any read past its end */
        uint8_t *body = malloc(fl ? fl : 1);
        memcpy(body, data + pos + 4, fl);
        int64_t op = 0;
        otp_term ctl, msg;
        char why[256];
        why[0] = 0;
        int r = otp__dist_decode_frame(a, body, fl, &op, &ctl, &msg, why, sizeof why);
        if (r < 0 && !why[0])
            abort();
        if (r == 0 && (op < 1 || !otp_is_tuple(ctl)))
            abort();
        free(body);
        otp_arena_reset(a);
        pos += 4 + fl;
    }
    otp_arena_free(a);
    return 0;
}
