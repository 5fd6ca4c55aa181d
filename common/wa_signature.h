/*
 * Meta webhook authenticity: the X-Hub-Signature-256 header, the
 * verification handshake's token and challenge.
 *
 * Shared by the NGINX module and the worker; depends on OpenSSL only.
 */

#ifndef WA_SIGNATURE_H
#define WA_SIGNATURE_H

#include <stddef.h>


#define WA_SHA256_LEN        32
#define WA_CHALLENGE_MAX     256


typedef struct wa_hmac_key_s  wa_hmac_key_t;


/* A prepared HMAC-SHA256 key (an app secret); NULL on allocation failure. */
wa_hmac_key_t *wa_hmac_key_new(const unsigned char *secret, size_t len);
void wa_hmac_key_free(wa_hmac_key_t *key);

/*
 * Parses "sha256=<64 hex digits>" into its 32 bytes.
 * Returns 0, or -1 when the value is malformed in any way.
 */
int wa_signature_parse(const unsigned char *value, size_t len,
    unsigned char digest[WA_SHA256_LEN]);

/*
 * Checks a parsed signature against the body under every key (rotation:
 * any one may match).  Every key is tried so the time taken does not say
 * which one matched.  Returns the matching key's index, -1 when none
 * matches, -2 when OpenSSL failed.
 */
int wa_signature_match(const unsigned char digest[WA_SHA256_LEN],
    const unsigned char *body, size_t len, wa_hmac_key_t *const *keys,
    size_t nkeys);

/*
 * Meta signs "an escaped unicode version of the payload": non-ASCII
 * characters as \uXXXX (lowercase hex, UTF-16 surrogate pairs).  Bodies
 * arrive escaped already; should one arrive with raw UTF-8 (a proxy that
 * decoded it), its signature is over the escaped form.  Writes that form
 * into out (room for 3 * len bytes) and returns its length, or -1 when the
 * input is not valid UTF-8.
 */
#define WA_ESCAPED_MAX(len)  (3 * (len))

long wa_unicode_escape(const unsigned char *in, size_t len,
    unsigned char *out);

/* Signs a body the way Meta does, for tests and tools: 0 or -1. */
int wa_signature_compute(wa_hmac_key_t *key, const unsigned char *body,
    size_t len, unsigned char digest[WA_SHA256_LEN]);

/*
 * Constant-time equality of two secrets of possibly different lengths:
 * compares their SHA-256 digests so neither length nor content leaks.
 */
int wa_secret_equal(const unsigned char *a, size_t alen,
    const unsigned char *b, size_t blen);

/*
 * A handshake challenge is echoed back to the caller, so only a plain
 * token is acceptable: 1..WA_CHALLENGE_MAX of [A-Za-z0-9._~-].
 */
int wa_challenge_is_plain(const unsigned char *s, size_t len);

#endif /* WA_SIGNATURE_H */
