/*
 * libFuzzer target: JWT verification and scope lists take attacker-
 * controlled bytes.  Each input is tried three ways: as a whole token
 * against an HS256, an RS256 and an ES256 key; as a payload and as a
 * header that this target signs with the HS256 secret, so the fuzzer also
 * reaches the JSON and claim checks behind the signature.  Beyond not
 * crashing or leaking, each keeps its contract: accepted claims are within
 * their stated alphabets and NUL-terminated, refused ones are all zero;
 * a scope list fits its exact-size buffer (ASan sees any overrun).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "wa_jwt.h"
#include "../unit/b64url.h"


#define FUZZ_NOW     1700000000LL
#define FUZZ_SECRET  "fuzz-secret-fuzz-secret-fuzz-sec"
#define FUZZ_HEADER  "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define FUZZ_CLAIMS  "{\"sub\":\"agent-7\",\"exp\":1700000600," \
                     "\"phone_number_ids\":[\"123\"]}"

#define FUZZ_TOKEN_MAX  (2 * WA_JWT_MAX_LEN)


static wa_jwt_key_t  *hs_key, *rs_key, *es_key;


static wa_jwt_key_t *fuzz_pem_key(EVP_PKEY *pkey);
static void fuzz_verify(const wa_jwt_key_t *key, const char *token,
    size_t len, int strict);
static void fuzz_signed(const uint8_t *header, size_t hlen,
    const uint8_t *payload, size_t plen, int strict);
static void fuzz_check_phones(const char *phones, size_t size);
static void fuzz_scope(const uint8_t *data, size_t size);
static void fuzz_key(const uint8_t *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EVP_PKEY  *rsa, *ec;

    (void) argc;
    (void) argv;

    hs_key = wa_jwt_key_load((const unsigned char *) FUZZ_SECRET,
                             sizeof(FUZZ_SECRET) - 1, NULL, 0);

    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    rs_key = fuzz_pem_key(rsa);
    es_key = fuzz_pem_key(ec);

    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);

    if (hs_key == NULL || rs_key == NULL || es_key == NULL) {
        abort();
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_verify(hs_key, (const char *) data, size, 0);
    fuzz_verify(rs_key, (const char *) data, size, 0);
    fuzz_verify(es_key, (const char *) data, size, 0);

    /* claims with and without iss/aud checks; any header byte counts */
    fuzz_signed((const uint8_t *) FUZZ_HEADER, sizeof(FUZZ_HEADER) - 1,
                data, size, 0);
    fuzz_signed((const uint8_t *) FUZZ_HEADER, sizeof(FUZZ_HEADER) - 1,
                data, size, 1);
    fuzz_signed(data, size, (const uint8_t *) FUZZ_CLAIMS,
                sizeof(FUZZ_CLAIMS) - 1, 0);

    fuzz_scope(data, size);
    fuzz_key(data, size);

    return 0;
}


static wa_jwt_key_t *
fuzz_pem_key(EVP_PKEY *pkey)
{
    BIO           *bio;
    char          *pem;
    long           n;
    wa_jwt_key_t  *key;

    bio = BIO_new(BIO_s_mem());

    if (bio == NULL || PEM_write_bio_PUBKEY(bio, pkey) != 1) {
        abort();
    }

    n = BIO_get_mem_data(bio, &pem);
    key = wa_jwt_key_load((const unsigned char *) pem, (size_t) n, NULL, 0);
    BIO_free(bio);

    return key;
}


static void
fuzz_verify(const wa_jwt_key_t *key, const char *token, size_t len,
    int strict)
{
    size_t            i;
    wa_jwt_claims_t   cl;
    wa_jwt_result_e   rc;
    wa_jwt_policy_t   policy = { NULL, NULL, 30 };
    static const wa_jwt_claims_t  zero;

    if (strict) {
        policy.issuer = "https://auth.example";
        policy.audience = "whatsapp";
    }

    rc = wa_jwt_verify(key, token, len, FUZZ_NOW, &policy, &cl);

    if (wa_jwt_strerror(rc) == NULL) {
        abort();
    }

    if (rc != WA_JWT_OK) {
        if (memcmp(&cl, &zero, sizeof(wa_jwt_claims_t)) != 0) {
            abort();
        }

        return;
    }

    if (len > WA_JWT_MAX_LEN || cl.sub[0] == '\0'
        || memchr(cl.sub, '\0', sizeof(cl.sub)) == NULL
        || cl.exp + 30 < FUZZ_NOW)
    {
        abort();
    }

    for (i = 0; cl.sub[i]; i++) {
        if (cl.sub[i] < 0x20 || cl.sub[i] > 0x7e || cl.sub[i] == '"'
            || cl.sub[i] == '\\')
        {
            abort();
        }
    }

    fuzz_check_phones(cl.phones, sizeof(cl.phones));
}


/* header.payload with a correct HS256 signature, then verified */
static void
fuzz_signed(const uint8_t *header, size_t hlen, const uint8_t *payload,
    size_t plen, int strict)
{
    char           *token;
    size_t          n;
    unsigned int    maclen;
    unsigned char   mac[EVP_MAX_MD_SIZE];

    /* longer would only be refused for its length */
    if (hlen + plen > WA_JWT_MAX_LEN / 4 * 3 - 64) {
        return;
    }

    token = malloc(FUZZ_TOKEN_MAX);
    if (token == NULL) {
        return;
    }

    n = test_b64url(header, hlen, token);
    token[n++] = '.';
    n += test_b64url(payload, plen, token + n);

    HMAC(EVP_sha256(), FUZZ_SECRET, sizeof(FUZZ_SECRET) - 1,
         (unsigned char *) token, n, mac, &maclen);

    token[n++] = '.';
    n += test_b64url(mac, maclen, token + n);

    fuzz_verify(hs_key, token, n, strict);

    free(token);
}




/* "" or "{}" or "{id,...}" with ids of [0-9A-Za-z_-] or "null" quoted */
static void
fuzz_check_phones(const char *phones, size_t size)
{
    size_t  i, n;
    char    c;

    n = strnlen(phones, size);

    if (n == size) {
        abort();
    }

    if (n == 0) {
        return;
    }

    if (n < 2 || phones[0] != '{' || phones[n - 1] != '}') {
        abort();
    }

    for (i = 1; i < n - 1; i++) {
        c = phones[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z') || c == '_' || c == '-'
              || c == ',' || c == '"'))
        {
            abort();
        }
    }
}


static void
fuzz_scope(const uint8_t *data, size_t size)
{
    char    *out;
    size_t   outlen;

    /* a buffer of exactly outlen bytes, small enough to overflow often */
    outlen = (size > 0) ? data[size - 1] : 0;

    out = malloc(outlen ? outlen : 1);
    if (out == NULL) {
        return;
    }

    if (wa_scope_phones((const char *) data, size, out, outlen) == 0) {
        fuzz_check_phones(out, outlen);
    }

    free(out);
}


/* a key file is configuration, yet must not crash NGINX either */
static void
fuzz_key(const uint8_t *data, size_t size)
{
    char           err[256];
    const char    *alg;
    wa_jwt_key_t  *key;

    key = wa_jwt_key_load(data, size, err, sizeof(err));

    if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort();
    }

    if (key == NULL) {
        if (err[0] == '\0') {
            abort();
        }

        return;
    }

    alg = wa_jwt_key_alg(key);

    if (strcmp(alg, "HS256") != 0 && strcmp(alg, "RS256") != 0
        && strcmp(alg, "ES256") != 0)
    {
        abort();
    }

    wa_jwt_key_free(key);
}
