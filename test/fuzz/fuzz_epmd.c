/* fuzz_epmd.c — libFuzzer target for the EPMD wire protocol: arbitrary
 * bytes as a request body (the server's untrusted input) must parse or fail
 * with a reason and an offset inside the body; an ALIVE2 that parses must
 * rebuild to a request that parses to the same fields. The same bytes as a
 * server answer (the client's untrusted input) must parse, fail, or ask for
 * more — and an answer that parses whole must ask for more when cut short.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static void check_request(const uint8_t *data, size_t size)
{
    otp__epmd_req r;
    const char *why = NULL;
    size_t at = 0;
    if (otp__epmd_parse_req(data, size, &r, &why, &at) < 0) {
        if (!why || (size && at > size))
            abort();
        return;
    }
    if (r.code != OTP__EPMD_ALIVE2_REQ)
        return;
    uint8_t out[2 + OTP__EPMD_MAX_REQ + 64];
    int n = otp__epmd_build_alive2(out, sizeof out, &r.node);
    if (n < 0) {
        if (r.node.extra_len <= OTP__EPMD_MAX_EXTRA)
            abort(); /* a name that parsed always fits */
        return;
    }
    otp__epmd_req again;
    if (otp__epmd_parse_req(out + 2, (size_t)n - 2, &again, &why, &at) < 0)
        abort();
    const otp__epmd_node *a = &r.node, *b = &again.node;
    if (a->port != b->port || a->type != b->type || a->proto != b->proto ||
        a->highest != b->highest || a->lowest != b->lowest || a->name_len != b->name_len ||
        a->extra_len != b->extra_len || memcmp(a->name, b->name, a->name_len) ||
        memcmp(a->extra, b->extra, a->extra_len))
        abort();
}

static void check_answers(const uint8_t *data, size_t size)
{
    int result;
    uint32_t creation;
    const char *why = NULL;
    int n = otp__epmd_parse_alive_resp(data, size, &result, &creation, &why);
    if (n < 0 && !why)
        abort();
    if (n > 0 && ((size_t)n > size ||
                  otp__epmd_parse_alive_resp(data, (size_t)n - 1, &result, &creation, &why) != 0))
        abort();
    bool found;
    otp__epmd_node node;
    why = NULL;
    n = otp__epmd_parse_port2_resp(data, size, &found, &node, &why);
    if (n < 0 && !why)
        abort();
    if (n > 0) {
        if ((size_t)n > size)
            abort();
        if (found &&
            (node.name + node.name_len > data + size || node.extra + node.extra_len > data + size))
            abort();
        if (otp__epmd_parse_port2_resp(data, (size_t)n - 1, &found, &node, &why) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_request(data, size);
    check_answers(data, size);
    return 0;
}
