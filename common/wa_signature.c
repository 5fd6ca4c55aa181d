/*
 * Meta webhook authenticity checks; see wa_signature.h.
 */

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "wa_signature.h"


#define WA_SIGNATURE_PREFIX      "sha256="
#define WA_SIGNATURE_PREFIX_LEN  (sizeof(WA_SIGNATURE_PREFIX) - 1)


/*
 * The keyed context is built once and re-initialized for each body with
 * the key it holds: no algorithm lookup, key schedule or allocation per
 * request.  A process (an NGINX worker) uses its copy from one thread.
 */
struct wa_hmac_key_s {
    EVP_MAC_CTX  *ctx;
};


static int wa_hex_value(unsigned char c);
static unsigned char *wa_escape_unit(unsigned char *p, unsigned long unit);


wa_hmac_key_t *
wa_hmac_key_new(const unsigned char *secret, size_t len)
{
    EVP_MAC        *mac;
    OSSL_PARAM      params[2];
    wa_hmac_key_t  *key;

    key = OPENSSL_zalloc(sizeof(wa_hmac_key_t));
    if (key == NULL) {
        return NULL;
    }

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        OPENSSL_free(key);
        return NULL;
    }

    key->ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (key->ctx == NULL
        || EVP_MAC_init(key->ctx, secret, len, params) != 1)
    {
        wa_hmac_key_free(key);
        return NULL;
    }

    return key;
}


void
wa_hmac_key_free(wa_hmac_key_t *key)
{
    if (key == NULL) {
        return;
    }

    EVP_MAC_CTX_free(key->ctx);
    OPENSSL_free(key);
}


int
wa_signature_compute(wa_hmac_key_t *key, const unsigned char *body,
    size_t len, unsigned char digest[WA_SHA256_LEN])
{
    size_t  out;

    return (EVP_MAC_init(key->ctx, NULL, 0, NULL) == 1
            && EVP_MAC_update(key->ctx, body, len) == 1
            && EVP_MAC_final(key->ctx, digest, &out, WA_SHA256_LEN) == 1
            && out == WA_SHA256_LEN) ? 0 : -1;
}


int
wa_signature_parse(const unsigned char *value, size_t len,
    unsigned char digest[WA_SHA256_LEN])
{
    int     hi, lo;
    size_t  i;

    if (len != WA_SIGNATURE_PREFIX_LEN + 2 * WA_SHA256_LEN
        || memcmp(value, WA_SIGNATURE_PREFIX, WA_SIGNATURE_PREFIX_LEN) != 0)
    {
        return -1;
    }

    value += WA_SIGNATURE_PREFIX_LEN;

    for (i = 0; i < WA_SHA256_LEN; i++) {
        hi = wa_hex_value(value[2 * i]);
        lo = wa_hex_value(value[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        digest[i] = (unsigned char) (hi << 4 | lo);
    }

    return 0;
}


int
wa_signature_match(const unsigned char digest[WA_SHA256_LEN],
    const unsigned char *body, size_t len, wa_hmac_key_t *const *keys,
    size_t nkeys)
{
    int            found;
    size_t         i;
    unsigned char  expected[WA_SHA256_LEN];

    found = -1;

    for (i = 0; i < nkeys; i++) {
        if (wa_signature_compute(keys[i], body, len, expected) != 0) {
            return -2;
        }

        if (CRYPTO_memcmp(expected, digest, WA_SHA256_LEN) == 0
            && found == -1)
        {
            found = (int) i;
        }
    }

    return found;
}


int
wa_secret_equal(const unsigned char *a, size_t alen,
    const unsigned char *b, size_t blen)
{
    unsigned char  da[WA_SHA256_LEN], db[WA_SHA256_LEN];

    if (EVP_Digest(a, alen, da, NULL, EVP_sha256(), NULL) != 1
        || EVP_Digest(b, blen, db, NULL, EVP_sha256(), NULL) != 1)
    {
        return 0;
    }

    return CRYPTO_memcmp(da, db, WA_SHA256_LEN) == 0;
}


int
wa_challenge_is_plain(const unsigned char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len == 0 || len > WA_CHALLENGE_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
            || (c >= 'A' && c <= 'Z')
            || c == '.' || c == '_' || c == '~' || c == '-')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


long
wa_unicode_escape(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t          i, n, k;
    unsigned char  *p, c;
    unsigned long   cp, min;

    p = out;

    for (i = 0; i < len; i += n) {
        c = in[i];

        if (c < 0x80) {
            *p++ = c;
            n = 1;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            n = 2; cp = c & 0x1f; min = 0x80;

        } else if ((c & 0xf0) == 0xe0) {
            n = 3; cp = c & 0x0f; min = 0x800;

        } else if ((c & 0xf8) == 0xf0) {
            n = 4; cp = c & 0x07; min = 0x10000;

        } else {
            return -1;
        }

        if (i + n > len) {
            return -1;
        }

        for (k = 1; k < n; k++) {
            if ((in[i + k] & 0xc0) != 0x80) {
                return -1;
            }

            cp = cp << 6 | (in[i + k] & 0x3f);
        }

        /* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return -1;
        }

        if (cp < 0x10000) {
            p = wa_escape_unit(p, cp);

        } else {
            cp -= 0x10000;
            p = wa_escape_unit(p, 0xd800 | (cp >> 10));
            p = wa_escape_unit(p, 0xdc00 | (cp & 0x3ff));
        }
    }

    return (long) (p - out);
}


static unsigned char *
wa_escape_unit(unsigned char *p, unsigned long unit)
{
    static const char  hex[] = "0123456789abcdef";

    *p++ = '\\';
    *p++ = 'u';
    *p++ = hex[(unit >> 12) & 0xf];
    *p++ = hex[(unit >> 8) & 0xf];
    *p++ = hex[(unit >> 4) & 0xf];
    *p++ = hex[unit & 0xf];

    return p;
}


static int
wa_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}
