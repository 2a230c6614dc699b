/* fuzz_dist_frame.c — libFuzzer target for distribution frames as a
 * connection reads them: arbitrary bytes split into u32-length frames,
 * each decoded with one connection's state (atom cache, fragments being
 * assembled): pass-through bodies, normal headers with atom cache
 * references, fragment starts and continuations. Each must decode, wait
 * for more, or fail with a reason; nothing may read outside the frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "otp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otp_arena *a = otp_arena_new();
    otp__dist_rx *rx = malloc(sizeof *rx);
    if (!a || !rx) {
        otp_arena_free(a);
        free(rx);
        return 0;
    }
    otp__dist_rx_init(rx); /* one connection's state across the frames */
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
        int r = otp__dist_decode_frame(rx, a, body, fl, &op, &ctl, &msg, why, sizeof why);
        if (r < 0 && !why[0])
            abort();
        if (r == 0 && (op < 1 || !otp_is_tuple(ctl)))
            abort();
        free(body);
        otp_arena_reset(a);
        pos += 4 + fl;
    }
    otp__dist_rx_free(rx); /* abandoned fragments go too */
    free(rx);
    otp_arena_free(a);
    return 0;
}
