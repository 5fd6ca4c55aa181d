/*
 * libFuzzer target: the X-Hub-Signature-256 parser and the challenge
 * check take attacker-controlled bytes.  Also checks the parser's
 * contract: whatever parses re-encodes to the same digits.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wa_signature.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          i;
    unsigned char   digest[WA_SHA256_LEN];
    static const char  hex[] = "0123456789abcdef";

    (void) wa_challenge_is_plain(data, size);

    if (wa_signature_parse(data, size, digest) != 0) {
        return 0;
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

    return 0;
}
