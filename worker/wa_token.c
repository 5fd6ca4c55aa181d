/*
 * AES-256-GCM with OpenSSL's EVP interface: a fresh random nonce per
 * seal (a token is sealed a handful of times per key, far from GCM's
 * random-nonce limits).
 */

#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "wa_token.h"


int
wa_token_seal(const unsigned char key[WA_TOKEN_KEY_LEN],
    const char *phone_number_id, const char *token, size_t len,
    unsigned char *out)
{
    int              n, rc;
    unsigned char   *nonce, *ct, *tag;
    EVP_CIPHER_CTX  *ctx;

    if (len == 0 || len > WA_TOKEN_MAX) {
        return -1;
    }

    nonce = out;
    ct = out + WA_TOKEN_NONCE_LEN;
    tag = ct + len;

    if (RAND_bytes(nonce, WA_TOKEN_NONCE_LEN) != 1) {
        return -1;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    rc = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_EncryptUpdate(ctx, NULL, &n,
                              (const unsigned char *) phone_number_id,
                              (int) strlen(phone_number_id)) == 1
         && EVP_EncryptUpdate(ctx, ct, &n, (const unsigned char *) token,
                              (int) len) == 1
         && EVP_EncryptFinal_ex(ctx, ct + n, &n) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, WA_TOKEN_TAG_LEN,
                                tag) == 1;

    EVP_CIPHER_CTX_free(ctx);

    return rc ? 0 : -1;
}


long
wa_token_open(const unsigned char key[WA_TOKEN_KEY_LEN],
    const char *phone_number_id, const unsigned char *sealed, size_t len,
    char *out, size_t outsize)
{
    int              n, m, rc;
    size_t           ctlen;
    const unsigned char  *nonce, *ct, *tag;
    EVP_CIPHER_CTX  *ctx;

    if (len <= WA_TOKEN_NONCE_LEN + WA_TOKEN_TAG_LEN) {
        return -1;
    }

    ctlen = len - WA_TOKEN_NONCE_LEN - WA_TOKEN_TAG_LEN;

    if (ctlen >= outsize) {
        return -1;
    }

    nonce = sealed;
    ct = sealed + WA_TOKEN_NONCE_LEN;
    tag = ct + ctlen;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    n = m = 0;

    rc = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_DecryptUpdate(ctx, NULL, &n,
                              (const unsigned char *) phone_number_id,
                              (int) strlen(phone_number_id)) == 1
         && EVP_DecryptUpdate(ctx, (unsigned char *) out, &n, ct,
                              (int) ctlen) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, WA_TOKEN_TAG_LEN,
                                (void *) tag) == 1
         && EVP_DecryptFinal_ex(ctx, (unsigned char *) out + n, &m) == 1;

    EVP_CIPHER_CTX_free(ctx);

    if (!rc) {
        memset(out, 0, outsize);
        return -1;
    }

    out[n + m] = '\0';

    return n + m;
}
