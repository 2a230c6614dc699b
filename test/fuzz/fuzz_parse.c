/* fuzz_parse.c — libFuzzer target for the term text parser: arbitrary
 * bytes must parse or fail cleanly (offset inside the input); what parses
 * must print (~w and ~p) to text that parses back to an =:= term. The same
 * bytes also go through otp_match as a pattern.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otp.h"

/* Returns false when the text was too large to be worth reparsing. */
static bool roundtrip(otp_arena *a, otp_term t, bool pretty)
{
    otp_buf b = {0};
    int rc = pretty ? otp_print_pretty(&b, t, NULL) : otp_print(&b, t, NULL);
    if (rc != 0)
        abort();
    /* A few bytes can make a huge binary (<<0:99999999>>): its text is
     * correct but reparsing megabytes under ASan only slows the search. */
    if (b.len > 1 << 16) {
        otp_buf_free(&b);
        return false;
    }
    otp_term u;
    otp_error err;
    if (otp_parse(a, (const char *)b.data, b.len, &u, NULL, &err) != 0)
        abort(); /* printed text must always read back */
    if (!otp_exact_eq(t, u))
        abort();
    otp_buf_free(&b);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otp_arena *a = otp_arena_new();
    if (!a)
        return 0;
    otp_term t;
    otp_error err;
    size_t used;
    int rc = otp_parse(a, (const char *)data, size, &t, NULL, &err);
    if (rc == 0) {
        if (roundtrip(a, t, false))
            roundtrip(a, t, true);
    } else if (rc != -OTP_EPARSE || err.offset > size ||
               !memchr(err.message, 0, sizeof err.message)) {
        abort();
    }
    if (otp_parse(a, (const char *)data, size, &t, &used, NULL) == 0 && used > size)
        abort();

    /* As a pattern, matched against itself when it is also a term. */
    char *pat = malloc(size + 1);
    if (pat) {
        memcpy(pat, data, size);
        pat[size] = 0;
        otp_term binds[8];
        otp_term subject = rc == 0 ? t : OTP_ATOM_OK;
        rc = otp_match(pat, subject, binds, 8);
        if (rc != 0 && rc != -OTP_ENOMATCH && rc != -OTP_EPARSE && rc != -OTP_ENOSPC)
            abort();
        free(pat);
    }
    otp_arena_free(a);
    return 0;
}
