/*
 * base64url without padding, for tests that sign their own JWTs (unit
 * tests and the JWT fuzzer); out needs 4 * ceil(len / 3) + 1 bytes.
 */

#ifndef WA_TEST_B64URL_H
#define WA_TEST_B64URL_H

#include <stddef.h>


#define TEST_B64URL_ALPHABET  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"                  \
                              "abcdefghijklmnopqrstuvwxyz0123456789-_"

static size_t
test_b64url(const unsigned char *in, size_t len, char *out)
{
    size_t             i, n;
    unsigned long      v;
    static const char  abc[] = TEST_B64URL_ALPHABET;

    n = 0;

    for (i = 0; i < len; i += 3) {
        v = (unsigned long) in[i] << 16;
        v |= (i + 1 < len) ? (unsigned long) in[i + 1] << 8 : 0;
        v |= (i + 2 < len) ? in[i + 2] : 0;

        out[n++] = abc[v >> 18 & 63];
        out[n++] = abc[v >> 12 & 63];

        if (i + 1 < len) {
            out[n++] = abc[v >> 6 & 63];
        }

        if (i + 2 < len) {
            out[n++] = abc[v & 63];
        }
    }

    out[n] = '\0';

    return n;
}

#endif /* WA_TEST_B64URL_H */
