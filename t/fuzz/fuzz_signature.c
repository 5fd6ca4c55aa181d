/*
 * libFuzzer target: the X-Hub-Signature-256 parser, the challenge check
 * and the \u escaper take attacker-controlled bytes.  Beyond not crashing,
 * each keeps its contract: a parsed signature re-encodes to the digits it
 * came from; the escaped form fits WA_ESCAPED_MAX (ASan sees any overrun
 * of the exact-size buffer) and is pure ASCII.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wa_signature.h"


static void fuzz_escape(const uint8_t *data, size_t size);
static void fuzz_parse(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void) wa_challenge_is_plain(data, size);

    fuzz_escape(data, size);
    fuzz_parse(data, size);

    return 0;
}


static void
fuzz_escape(const uint8_t *data, size_t size)
{
    long            i, n;
    unsigned char  *escaped;

    escaped = malloc(WA_ESCAPED_MAX(size) + 1);
    if (escaped == NULL) {
        return;
    }

    n = wa_unicode_escape(data, size, escaped);

    for (i = 0; i < n; i++) {
        if (escaped[i] >= 0x80) {
            abort();
        }
    }

    free(escaped);
}


static void
fuzz_parse(const uint8_t *data, size_t size)
{
    size_t             i;
    unsigned char      digest[WA_SHA256_LEN];
    static const char  hex[] = "0123456789abcdef";

    if (wa_signature_parse(data, size, digest) != 0) {
        return;
    }

    if (size != 7 + 2 * WA_SHA256_LEN || memcmp(data, "sha256=", 7) != 0) {
        abort();
    }

    for (i = 0; i < WA_SHA256_LEN; i++) {
        if ((data[7 + 2 * i] | 0x20) != hex[digest[i] >> 4]
            || (data[8 + 2 * i] | 0x20) != hex[digest[i] & 0xf])
        {
            abort();
        }
    }
}
