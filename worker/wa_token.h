/*
 * Access tokens at rest: sealed with AES-256-GCM under the worker's
 * token key, bound to their phone number (the number is the additional
 * authenticated data, so a sealed token moved to another number's row
 * does not open).  PostgreSQL only ever holds sealed tokens.
 */

#ifndef WA_TOKEN_H
#define WA_TOKEN_H

#include <stddef.h>


#define WA_TOKEN_KEY_LEN    32
#define WA_TOKEN_NONCE_LEN  12
#define WA_TOKEN_TAG_LEN    16
#define WA_TOKEN_MAX        4096    /* Meta's tokens are a few hundred */

/* nonce, ciphertext, tag */
#define WA_TOKEN_SEALED_LEN(len)  (WA_TOKEN_NONCE_LEN + (len) + WA_TOKEN_TAG_LEN)


/* out has room for WA_TOKEN_SEALED_LEN(len).  Returns 0 or -1. */
int wa_token_seal(const unsigned char key[WA_TOKEN_KEY_LEN],
    const char *phone_number_id, const char *token, size_t len,
    unsigned char *out);

/*
 * Opens what wa_token_seal sealed for this number into out (NUL
 * terminated, outsize > the token's length).  Returns the token's length,
 * or -1: not sealed with this key for this number, or tampered with.
 */
long wa_token_open(const unsigned char key[WA_TOKEN_KEY_LEN],
    const char *phone_number_id, const unsigned char *sealed, size_t len,
    char *out, size_t outsize);

#endif /* WA_TOKEN_H */
