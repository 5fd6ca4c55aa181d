/*
 * JWT verification (HS256, RS256, ES256) and phone-number scopes; see
 * wa_jwt.h.
 */

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <yajl/yajl_tree.h>

#include "wa_json.h"
#include "wa_jwt.h"
#include "wa_signature.h"


/* the decoded parts of the longest token, each with a terminating NUL */
#define WA_JWT_MAX_DECODED   (WA_JWT_MAX_LEN / 4 * 3 + 3)

/* JWT claims are flat; deeper JSON is refused before it is parsed */
#define WA_JWT_MAX_DEPTH     16

/* RFC 7518 3.4: R and S of P-256, 32 bytes each, concatenated */
#define WA_ES256_HALF        32

/* their DER ECDSA-Sig-Value takes at most 2 + 2 * (2 + 33) = 72 bytes */
#define WA_ES256_DER_MAX     80

/* dates beyond +-2^53 are not exact in JSON and could overflow below */
#define WA_JWT_MAX_DATE      (1LL << 53)
#define WA_JWT_MAX_LEEWAY    (1L << 30)

/* key files are small; BIO_new_mem_buf() takes an int */
#define WA_JWT_MAX_KEY_FILE  (1024 * 1024)

#define WA_JWT_MIN_SECRET    32
#define WA_JWT_MIN_RSA_BITS  2048


typedef enum {
    WA_JWT_HS256 = 0,
    WA_JWT_RS256,
    WA_JWT_ES256
} wa_jwt_alg_e;


struct wa_jwt_key_s {
    wa_jwt_alg_e    alg;
    wa_hmac_key_t  *hmac;         /* HS256 */
    EVP_PKEY       *pkey;         /* RS256, ES256 */
};


/* a token split at its dots, its three parts decoded into buf */
typedef struct {
    const char     *input;        /* "header.payload": what is signed */
    size_t          input_len;
    char           *header;       /* NUL-terminated JSON text */
    size_t          header_len;
    char           *payload;
    size_t          payload_len;
    unsigned char  *sig;
    size_t          sig_len;
    unsigned char   buf[WA_JWT_MAX_DECODED];
} wa_jwt_token_t;


/* where a phone-number scope literal is being written */
typedef struct {
    char           *out;
    size_t          len;
    size_t          size;
    size_t          count;
} wa_scope_t;


static const char  *wa_jwt_alg_names[] = { "HS256", "RS256", "ES256" };

static const char  *wa_jwt_header_names[] = { "alg", "typ", "crit", NULL };

static const char  *wa_jwt_claim_names[] = {
    "exp", "nbf", "iat", "iss", "aud", "sub", "phone_number_ids",
    "assigned_only", NULL
};


static void wa_jwt_error(char *err, size_t errlen, const char *msg);
static const char *wa_jwt_refuse_public(const unsigned char *data,
    size_t len);
static wa_jwt_key_t *wa_jwt_key_secret(const unsigned char *data, size_t len,
    char *err, size_t errlen);
static wa_jwt_key_t *wa_jwt_key_pem(const unsigned char *begin, size_t len,
    char *err, size_t errlen);
static const char *wa_jwt_key_check(wa_jwt_key_t *key);
static int wa_jwt_no_passphrase(char *buf, int size, int rwflag, void *u);
static int wa_jwt_prefix(const unsigned char *data, size_t len,
    const char *prefix);
static const unsigned char *wa_jwt_find(const unsigned char *data,
    size_t len, const char *needle);

static wa_jwt_result_e wa_jwt_verify_token(const wa_jwt_key_t *key,
    const char *token, size_t len, long long now,
    const wa_jwt_policy_t *policy, wa_jwt_claims_t *claims);
static int wa_jwt_split(wa_jwt_token_t *t, const char *token, size_t len);
static long wa_b64url_decode(const char *src, size_t len, unsigned char *dst);
static int wa_b64url_value(unsigned char c);
static yajl_val wa_jwt_json(const char *text, size_t len,
    const char **names);
static wa_jwt_result_e wa_jwt_check_header(const wa_jwt_key_t *key,
    yajl_val header);
static wa_jwt_result_e wa_jwt_check_signature(const wa_jwt_key_t *key,
    const wa_jwt_token_t *t);
static int wa_jwt_pkey_verify(EVP_PKEY *pkey, int rsa,
    const unsigned char *sig, size_t sig_len, const wa_jwt_token_t *t);
static int wa_jwt_es256_der(const unsigned char *raw, unsigned char *der,
    size_t *der_len);

static wa_jwt_result_e wa_jwt_check_claims(yajl_val payload, long long now,
    const wa_jwt_policy_t *policy, wa_jwt_claims_t *claims);
static wa_jwt_result_e wa_jwt_check_time(yajl_val payload, long long now,
    long leeway, wa_jwt_claims_t *claims);
static int wa_jwt_date(yajl_val payload, const char *name, int required,
    long long *date);
static int wa_jwt_integral(yajl_val v, long long max, long long *out);
static wa_jwt_result_e wa_jwt_check_audience(yajl_val payload,
    const char *audience);
static int wa_jwt_get_sub(yajl_val payload, char *sub);
static int wa_jwt_get_scope(yajl_val payload, wa_jwt_claims_t *claims);
static int wa_jwt_scope_id(wa_scope_t *scope, yajl_val v);

static void wa_scope_open(wa_scope_t *scope, char *out, size_t size);
static int wa_scope_add(wa_scope_t *scope, const char *id, size_t len);
static int wa_scope_close(wa_scope_t *scope);
static int wa_scope_is_sep(char c);


/* key loading */

wa_jwt_key_t *
wa_jwt_key_load(const unsigned char *data, size_t len, char *err,
    size_t errlen)
{
    const char           *refused;
    wa_jwt_key_t         *key;
    const unsigned char  *begin;

    wa_jwt_error(err, errlen, "");

    if (data == NULL) {
        len = 0;
        data = (const unsigned char *) "";
    }

    if (len > WA_JWT_MAX_KEY_FILE) {
        wa_jwt_error(err, errlen, "key file larger than 1 MB");
        return NULL;
    }

    /* leave OpenSSL's per-thread error queue as it was found */
    ERR_set_mark();

    begin = wa_jwt_find(data, len, "-----BEGIN ");

    if (begin != NULL) {
        key = wa_jwt_key_pem(begin, len - (begin - data), err, errlen);

    } else {
        refused = wa_jwt_refuse_public(data, len);

        if (refused != NULL) {
            wa_jwt_error(err, errlen, refused);
            key = NULL;

        } else {
            key = wa_jwt_key_secret(data, len, err, errlen);
        }
    }

    ERR_pop_to_mark();

    return key;
}


void
wa_jwt_key_free(wa_jwt_key_t *key)
{
    if (key == NULL) {
        return;
    }

    wa_hmac_key_free(key->hmac);
    EVP_PKEY_free(key->pkey);
    OPENSSL_free(key);
}


const char *
wa_jwt_key_alg(const wa_jwt_key_t *key)
{
    return wa_jwt_alg_names[key->alg];
}


static void
wa_jwt_error(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", msg);
    }
}


/*
 * Public key material in a form this loader does not take must not fall
 * through to HS256: its bytes would be a secret that everyone knows.
 */
static const char *
wa_jwt_refuse_public(const unsigned char *data, size_t len)
{
    EVP_PKEY             *pkey;
    const unsigned char  *p;

    if (wa_jwt_find(data, len, "\"kty\"") != NULL) {
        return "JWK key files are not supported: use a PEM public key";
    }

    if (wa_jwt_prefix(data, len, "ssh-rsa ")
        || wa_jwt_prefix(data, len, "ssh-ed25519 ")
        || wa_jwt_prefix(data, len, "ecdsa-sha2-"))
    {
        return "OpenSSH public keys are not supported: use a PEM public key";
    }

    p = data;
    pkey = d2i_PUBKEY(NULL, &p, (long) len);

    if (pkey != NULL) {
        EVP_PKEY_free(pkey);
        return "DER public keys are not supported: convert it to PEM";
    }

    return NULL;
}


static wa_jwt_key_t *
wa_jwt_key_secret(const unsigned char *data, size_t len, char *err,
    size_t errlen)
{
    wa_jwt_key_t  *key;

    while (len > 0
           && (data[len - 1] == '\r' || data[len - 1] == '\n'
               || data[len - 1] == ' ' || data[len - 1] == '\t'))
    {
        len--;
    }

    if (len < WA_JWT_MIN_SECRET) {
        wa_jwt_error(err, errlen, "HS256 secret shorter than 32 bytes");
        return NULL;
    }

    key = OPENSSL_zalloc(sizeof(wa_jwt_key_t));
    if (key == NULL) {
        wa_jwt_error(err, errlen, "out of memory");
        return NULL;
    }

    key->alg = WA_JWT_HS256;
    key->hmac = wa_hmac_key_new(data, len);

    if (key->hmac == NULL) {
        wa_jwt_key_free(key);
        wa_jwt_error(err, errlen, "cannot prepare the HMAC-SHA256 key");
        return NULL;
    }

    return key;
}


/* begin: the first "-----BEGIN " of the file, len: the bytes from there */
static wa_jwt_key_t *
wa_jwt_key_pem(const unsigned char *begin, size_t len, char *err,
    size_t errlen)
{
    BIO           *bio;
    const char    *msg;
    wa_jwt_key_t  *key;

    if (wa_jwt_find(begin, len, "PRIVATE KEY-----") != NULL) {
        wa_jwt_error(err, errlen, "the key file holds a private key: give "
                     "its public key (openssl pkey -pubout)");
        return NULL;
    }

    if (!wa_jwt_prefix(begin, len, "-----BEGIN PUBLIC KEY-----")
        && !wa_jwt_prefix(begin, len, "-----BEGIN RSA PUBLIC KEY-----"))
    {
        wa_jwt_error(err, errlen, "unsupported PEM block: expected "
                     "\"PUBLIC KEY\" or \"RSA PUBLIC KEY\"");
        return NULL;
    }

    key = OPENSSL_zalloc(sizeof(wa_jwt_key_t));
    bio = BIO_new_mem_buf(begin, (int) len);

    if (key == NULL || bio == NULL) {
        OPENSSL_free(key);
        BIO_free(bio);
        wa_jwt_error(err, errlen, "out of memory");
        return NULL;
    }

    key->pkey = PEM_read_bio_PUBKEY(bio, NULL, wa_jwt_no_passphrase, NULL);
    BIO_free(bio);

    msg = (key->pkey == NULL) ? "cannot decode the PEM public key"
                              : wa_jwt_key_check(key);

    if (msg != NULL) {
        wa_jwt_key_free(key);
        wa_jwt_error(err, errlen, msg);
        return NULL;
    }

    return key;
}


/* Sets the key's algorithm from its type, or says why it is unusable. */
static const char *
wa_jwt_key_check(wa_jwt_key_t *key)
{
    char  group[64];

    if (EVP_PKEY_is_a(key->pkey, "RSA")) {
        if (EVP_PKEY_get_bits(key->pkey) < WA_JWT_MIN_RSA_BITS) {
            return "RSA key shorter than 2048 bits";
        }

        key->alg = WA_JWT_RS256;
        return NULL;
    }

    if (EVP_PKEY_is_a(key->pkey, "EC")) {
        if (EVP_PKEY_get_group_name(key->pkey, group, sizeof(group), NULL)
                != 1
            || (strcmp(group, "prime256v1") != 0
                && strcmp(group, "P-256") != 0))
        {
            return "EC key is not on curve P-256";
        }

        key->alg = WA_JWT_ES256;
        return NULL;
    }

    return "unsupported public key type: expected RSA or EC P-256";
}


/* Public keys are never encrypted; and a prompt would block NGINX. */
static int
wa_jwt_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) u;

    return -1;
}


static int
wa_jwt_prefix(const unsigned char *data, size_t len, const char *prefix)
{
    size_t  n;

    n = strlen(prefix);

    return len >= n && memcmp(data, prefix, n) == 0;
}


static const unsigned char *
wa_jwt_find(const unsigned char *data, size_t len, const char *needle)
{
    size_t  i, n;

    n = strlen(needle);

    for (i = 0; i + n <= len; i++) {
        if (memcmp(data + i, needle, n) == 0) {
            return data + i;
        }
    }

    return NULL;
}


/* verification */

wa_jwt_result_e
wa_jwt_verify(const wa_jwt_key_t *key, const char *token, size_t len,
    long long now, const wa_jwt_policy_t *policy, wa_jwt_claims_t *claims)
{
    wa_jwt_result_e  rc;

    memset(claims, 0, sizeof(wa_jwt_claims_t));

    /* leave OpenSSL's per-thread error queue as it was found */
    ERR_set_mark();

    rc = wa_jwt_verify_token(key, token, len, now, policy, claims);

    ERR_pop_to_mark();

    if (rc != WA_JWT_OK) {
        memset(claims, 0, sizeof(wa_jwt_claims_t));
    }

    return rc;
}


static wa_jwt_result_e
wa_jwt_verify_token(const wa_jwt_key_t *key, const char *token, size_t len,
    long long now, const wa_jwt_policy_t *policy, wa_jwt_claims_t *claims)
{
    yajl_val          json;
    wa_jwt_token_t    t;
    wa_jwt_result_e   rc;
    wa_jwt_policy_t   none;

    if (key == NULL) {
        return WA_JWT_ALGORITHM;
    }

    if (token == NULL || wa_jwt_split(&t, token, len) != 0) {
        return WA_JWT_MALFORMED;
    }

    json = wa_jwt_json(t.header, t.header_len, wa_jwt_header_names);
    if (json == NULL) {
        return WA_JWT_MALFORMED;
    }

    rc = wa_jwt_check_header(key, json);
    yajl_tree_free(json);

    if (rc != WA_JWT_OK) {
        return rc;
    }

    rc = wa_jwt_check_signature(key, &t);
    if (rc != WA_JWT_OK) {
        return rc;
    }

    json = wa_jwt_json(t.payload, t.payload_len, wa_jwt_claim_names);
    if (json == NULL) {
        return WA_JWT_MALFORMED;
    }

    if (policy == NULL) {
        memset(&none, 0, sizeof(wa_jwt_policy_t));
        policy = &none;
    }

    rc = wa_jwt_check_claims(json, now, policy, claims);
    yajl_tree_free(json);

    return rc;
}


const char *
wa_jwt_strerror(wa_jwt_result_e rc)
{
    switch (rc) {
    case WA_JWT_OK:            return "ok";
    case WA_JWT_MALFORMED:     return "malformed token";
    case WA_JWT_ALGORITHM:     return "unexpected token algorithm";
    case WA_JWT_SIGNATURE:     return "invalid token signature";
    case WA_JWT_EXPIRED:       return "token expired";
    case WA_JWT_NOT_YET_VALID: return "token not yet valid";
    case WA_JWT_ISSUER:        return "wrong token issuer";
    case WA_JWT_AUDIENCE:      return "wrong token audience";
    case WA_JWT_CLAIMS:        return "invalid token claims";
    }

    return "invalid token";
}


/* Splits at exactly two dots and decodes the three parts into t->buf. */
static int
wa_jwt_split(wa_jwt_token_t *t, const char *token, size_t len)
{
    long            n;
    const char     *dot1, *dot2, *end;
    unsigned char  *p;

    if (len > WA_JWT_MAX_LEN) {
        return -1;
    }

    end = token + len;
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', end - dot1 - 1) : NULL;

    if (dot2 == NULL || memchr(dot2 + 1, '.', end - dot2 - 1) != NULL) {
        return -1;
    }

    t->input = token;
    t->input_len = dot2 - token;
    p = t->buf;

    t->header = (char *) p;
    n = wa_b64url_decode(token, dot1 - token, p);
    if (n < 0) {
        return -1;
    }
    t->header_len = n;
    p += n;
    *p++ = '\0';

    t->payload = (char *) p;
    n = wa_b64url_decode(dot1 + 1, dot2 - dot1 - 1, p);
    if (n < 0) {
        return -1;
    }
    t->payload_len = n;
    p += n;
    *p++ = '\0';

    t->sig = p;
    n = wa_b64url_decode(dot2 + 1, end - dot2 - 1, p);
    t->sig_len = n;

    return (n < 0) ? -1 : 0;
}


/*
 * Strict base64url (RFC 7515 2): no padding, no whitespace, and the unused
 * low bits of the last character zero, so each value has one encoding.
 */
static long
wa_b64url_decode(const char *src, size_t len, unsigned char *dst)
{
    int       v, bits;
    long      n;
    size_t    i;
    unsigned  acc;

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        v = wa_b64url_value((unsigned char) src[i]);
        if (v < 0) {
            return -1;
        }

        acc = ((acc << 6) | (unsigned) v) & 0xfff;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            dst[n++] = (unsigned char) (acc >> bits);
        }
    }

    if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) {
        return -1;
    }

    return n;
}


static int
wa_b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return -1;
}


/*
 * Parses a JSON object whose members named in names appear at most once
 * (two "alg"s could be read one way here and another elsewhere).
 */
static yajl_val
wa_jwt_json(const char *text, size_t len, const char **names)
{
    size_t    i, k, seen;
    yajl_val  json;

    if (wa_json_precheck((const unsigned char *) text, len, WA_JWT_MAX_DEPTH)
        != WA_JSON_PLAIN)
    {
        return NULL;
    }

    json = yajl_tree_parse(text, NULL, 0);

    if (json == NULL || !YAJL_IS_OBJECT(json)) {
        yajl_tree_free(json);
        return NULL;
    }

    for ( /* void */ ; *names; names++) {
        seen = 0;

        for (i = 0, k = json->u.object.len; i < k; i++) {
            seen += (strcmp(json->u.object.keys[i], *names) == 0);
        }

        if (seen > 1) {
            yajl_tree_free(json);
            return NULL;
        }
    }

    return json;
}


/*
 * Only the key's own algorithm is accepted, whatever the token says: an
 * RS256 key never verifies an HS256 token made with its public bytes.
 */
static wa_jwt_result_e
wa_jwt_check_header(const wa_jwt_key_t *key, yajl_val header)
{
    const char  *s;
    yajl_val     v;

    if (wa_json_get(header, "crit") != NULL) {
        return WA_JWT_MALFORMED;
    }

    v = wa_json_get(header, "alg");

    if (!YAJL_IS_STRING(v)
        || strcmp(v->u.string, wa_jwt_key_alg(key)) != 0)
    {
        return WA_JWT_ALGORITHM;
    }

    v = wa_json_get(header, "typ");

    if (v != NULL) {
        s = YAJL_IS_STRING(v) ? v->u.string : "";

        if (strlen(s) != 3 || (s[0] | 0x20) != 'j' || (s[1] | 0x20) != 'w'
            || (s[2] | 0x20) != 't')
        {
            return WA_JWT_MALFORMED;
        }
    }

    return WA_JWT_OK;
}


static wa_jwt_result_e
wa_jwt_check_signature(const wa_jwt_key_t *key, const wa_jwt_token_t *t)
{
    size_t         der_len;
    unsigned char  mac[WA_SHA256_LEN], der[WA_ES256_DER_MAX];

    switch (key->alg) {

    case WA_JWT_HS256:
        if (t->sig_len != WA_SHA256_LEN
            || wa_signature_compute(key->hmac,
                                    (const unsigned char *) t->input,
                                    t->input_len, mac) != 0
            || CRYPTO_memcmp(mac, t->sig, WA_SHA256_LEN) != 0)
        {
            return WA_JWT_SIGNATURE;
        }

        return WA_JWT_OK;

    case WA_JWT_RS256:
        if (t->sig_len != (size_t) EVP_PKEY_get_size(key->pkey)
            || wa_jwt_pkey_verify(key->pkey, 1, t->sig, t->sig_len, t) != 0)
        {
            return WA_JWT_SIGNATURE;
        }

        return WA_JWT_OK;

    case WA_JWT_ES256:
        if (t->sig_len != 2 * WA_ES256_HALF
            || wa_jwt_es256_der(t->sig, der, &der_len) != 0
            || wa_jwt_pkey_verify(key->pkey, 0, der, der_len, t) != 0)
        {
            return WA_JWT_SIGNATURE;
        }

        return WA_JWT_OK;
    }

    return WA_JWT_SIGNATURE;
}


static int
wa_jwt_pkey_verify(EVP_PKEY *pkey, int rsa, const unsigned char *sig,
    size_t sig_len, const wa_jwt_token_t *t)
{
    int            rc;
    EVP_MD_CTX    *md;
    EVP_PKEY_CTX  *pctx;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return -1;
    }

    rc = EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pkey) == 1
         && (!rsa
             || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0)
         && EVP_DigestVerify(md, sig, sig_len,
                             (const unsigned char *) t->input,
                             t->input_len) == 1;

    EVP_MD_CTX_free(md);

    return rc ? 0 : -1;
}


/* JWS carries ECDSA as raw R || S; OpenSSL verifies DER ECDSA-Sig-Value. */
static int
wa_jwt_es256_der(const unsigned char *raw, unsigned char *der,
    size_t *der_len)
{
    int             n;
    BIGNUM         *r, *s;
    ECDSA_SIG      *sig;
    unsigned char  *p;

    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw, WA_ES256_HALF, NULL);
    s = BN_bin2bn(raw + WA_ES256_HALF, WA_ES256_HALF, NULL);

    if (sig == NULL || r == NULL || s == NULL
        || ECDSA_SIG_set0(sig, r, s) != 1)
    {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return -1;
    }

    n = i2d_ECDSA_SIG(sig, NULL);

    if (n > 0 && n <= WA_ES256_DER_MAX) {
        p = der;
        n = i2d_ECDSA_SIG(sig, &p);
    }

    ECDSA_SIG_free(sig);

    if (n <= 0 || n > WA_ES256_DER_MAX) {
        return -1;
    }

    *der_len = (size_t) n;

    return 0;
}


/* claims */

static wa_jwt_result_e
wa_jwt_check_claims(yajl_val payload, long long now,
    const wa_jwt_policy_t *policy, wa_jwt_claims_t *claims)
{
    yajl_val         v;
    wa_jwt_result_e  rc;

    rc = wa_jwt_check_time(payload, now, policy->leeway, claims);
    if (rc != WA_JWT_OK) {
        return rc;
    }

    if (policy->issuer != NULL) {
        v = wa_json_get(payload, "iss");

        if (!YAJL_IS_STRING(v)
            || strcmp(v->u.string, policy->issuer) != 0)
        {
            return WA_JWT_ISSUER;
        }
    }

    rc = wa_jwt_check_audience(payload, policy->audience);
    if (rc != WA_JWT_OK) {
        return rc;
    }

    if (wa_jwt_get_sub(payload, claims->sub) != 0
        || wa_jwt_get_scope(payload, claims) != 0)
    {
        return WA_JWT_CLAIMS;
    }

    return WA_JWT_OK;
}


static wa_jwt_result_e
wa_jwt_check_time(yajl_val payload, long long now, long leeway,
    wa_jwt_claims_t *claims)
{
    if (wa_jwt_date(payload, "exp", 1, &claims->exp) != 0
        || wa_jwt_date(payload, "nbf", 0, &claims->nbf) != 0
        || wa_jwt_date(payload, "iat", 0, &claims->iat) != 0)
    {
        return WA_JWT_CLAIMS;
    }

    /* bounded so that the sums below cannot overflow */
    leeway = (leeway < 0) ? 0 : leeway;
    leeway = (leeway > WA_JWT_MAX_LEEWAY) ? WA_JWT_MAX_LEEWAY : leeway;
    now = (now > 4 * WA_JWT_MAX_DATE) ? 4 * WA_JWT_MAX_DATE : now;
    now = (now < -4 * WA_JWT_MAX_DATE) ? -4 * WA_JWT_MAX_DATE : now;

    if (now > claims->exp + leeway) {
        return WA_JWT_EXPIRED;
    }

    if (claims->nbf != 0 && now + leeway < claims->nbf) {
        return WA_JWT_NOT_YET_VALID;
    }

    return WA_JWT_OK;
}


/* A NumericDate: a number, its fraction dropped; 0 when absent. */
static int
wa_jwt_date(yajl_val payload, const char *name, int required,
    long long *date)
{
    yajl_val  v;

    v = wa_json_get(payload, name);

    if (v == NULL) {
        *date = 0;
        return required ? -1 : 0;
    }

    if (YAJL_IS_INTEGER(v)) {
        *date = YAJL_GET_INTEGER(v);

    } else if (YAJL_IS_DOUBLE(v)
               && YAJL_GET_DOUBLE(v) > (double) -WA_JWT_MAX_DATE
               && YAJL_GET_DOUBLE(v) < (double) WA_JWT_MAX_DATE)
    {
        *date = (long long) YAJL_GET_DOUBLE(v);

    } else {
        return -1;
    }

    return (*date < -WA_JWT_MAX_DATE || *date > WA_JWT_MAX_DATE) ? -1 : 0;
}


/* A JSON number with no fraction within +-max, e.g. 123, 1.0 or 1e3. */
static int
wa_jwt_integral(yajl_val v, long long max, long long *out)
{
    double  d;

    if (YAJL_IS_INTEGER(v)) {
        *out = YAJL_GET_INTEGER(v);
        return (*out < -max || *out > max) ? -1 : 0;
    }

    if (!YAJL_IS_DOUBLE(v)) {
        return -1;
    }

    d = YAJL_GET_DOUBLE(v);

    if (!(d >= (double) -max && d <= (double) max)) {
        return -1;
    }

    *out = (long long) d;

    return ((double) *out == d) ? 0 : -1;
}


static wa_jwt_result_e
wa_jwt_check_audience(yajl_val payload, const char *audience)
{
    size_t    i;
    yajl_val  v, item;

    if (audience == NULL) {
        return WA_JWT_OK;
    }

    v = wa_json_get(payload, "aud");

    if (YAJL_IS_STRING(v)) {
        return strcmp(v->u.string, audience) == 0
               ? WA_JWT_OK : WA_JWT_AUDIENCE;
    }

    if (YAJL_IS_ARRAY(v)) {
        for (i = 0; i < v->u.array.len; i++) {
            item = v->u.array.values[i];

            if (YAJL_IS_STRING(item)
                && strcmp(item->u.string, audience) == 0)
            {
                return WA_JWT_OK;
            }
        }
    }

    return WA_JWT_AUDIENCE;
}


/* "sub" is echoed into JSON and SQL: printable ASCII, no quote/escape. */
static int
wa_jwt_get_sub(yajl_val payload, char *sub)
{
    size_t       i, n;
    const char  *s;
    yajl_val     v;

    v = wa_json_get(payload, "sub");

    if (!YAJL_IS_STRING(v)) {
        return -1;
    }

    s = v->u.string;
    n = strlen(s);

    if (n == 0 || n > WA_JWT_SUB_MAX) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') {
            return -1;
        }
    }

    memcpy(sub, s, n + 1);

    return 0;
}


static int
wa_jwt_get_scope(yajl_val payload, wa_jwt_claims_t *claims)
{
    size_t      i;
    yajl_val    v;
    wa_scope_t  scope;

    v = wa_json_get(payload, "assigned_only");

    if (v != NULL && !YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
        return -1;
    }

    claims->assigned_only = YAJL_IS_TRUE(v);

    v = wa_json_get(payload, "phone_number_ids");

    if (YAJL_IS_STRING(v)) {
        claims->phones[0] = '\0';
        return strcmp(v->u.string, "*") == 0 ? 0 : -1;
    }

    if (!YAJL_IS_ARRAY(v)) {
        return -1;
    }

    wa_scope_open(&scope, claims->phones, sizeof(claims->phones));

    for (i = 0; i < v->u.array.len; i++) {
        if (wa_jwt_scope_id(&scope, v->u.array.values[i]) != 0) {
            return -1;
        }
    }

    return wa_scope_close(&scope);
}


static int
wa_jwt_scope_id(wa_scope_t *scope, yajl_val v)
{
    int        n;
    char       text[32];
    long long  id;

    if (YAJL_IS_STRING(v)) {
        return wa_scope_add(scope, v->u.string,
                            strlen(v->u.string));
    }

    /* beyond 2^53 a JSON number may already have lost digits */
    if (wa_jwt_integral(v, WA_JWT_MAX_DATE, &id) != 0) {
        return -1;
    }

    n = snprintf(text, sizeof(text), "%lld", id);

    return wa_scope_add(scope, text, (size_t) n);
}


/* scopes */

int
wa_scope_phones(const char *list, size_t len, char *out, size_t outlen)
{
    size_t      i, start;
    wa_scope_t  scope;

    if (list == NULL || out == NULL || outlen == 0) {
        return -1;
    }

    while (len > 0 && wa_scope_is_sep(list[len - 1])) {
        len--;
    }

    for (start = 0; start < len && wa_scope_is_sep(list[start]); start++) {
        /* void */
    }

    if ((len - start == 1 && list[start] == '*')
        || (len - start == 3 && memcmp(list + start, "all", 3) == 0))
    {
        out[0] = '\0';
        return 0;
    }

    wa_scope_open(&scope, out, outlen);

    for (i = start; i < len; i = start) {
        for (start = i; start < len && !wa_scope_is_sep(list[start]); start++)
        {
            /* void */
        }

        if (start > i && wa_scope_add(&scope, list + i, start - i) != 0) {
            return -1;
        }

        while (start < len && wa_scope_is_sep(list[start])) {
            start++;
        }
    }

    return (scope.count == 0) ? -1 : wa_scope_close(&scope);
}


static void
wa_scope_open(wa_scope_t *scope, char *out, size_t size)
{
    scope->out = out;
    scope->len = 0;
    scope->size = size;
    scope->count = 0;

    if (size > 1) {
        out[scope->len++] = '{';
    }
}


/*
 * Ids are plain, so the literal needs no quoting, except that PostgreSQL
 * reads an unquoted NULL (any case) as a NULL element.
 */
static int
wa_scope_add(wa_scope_t *scope, const char *id, size_t len)
{
    int     quote;
    size_t  i, need;

    if (len == 0 || len > WA_JWT_PHONE_ID_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z')
              || (id[i] >= 'A' && id[i] <= 'Z')
              || id[i] == '_' || id[i] == '-'))
        {
            return -1;
        }
    }

    quote = (len == 4 && (id[0] | 0x20) == 'n' && (id[1] | 0x20) == 'u'
             && (id[2] | 0x20) == 'l' && (id[3] | 0x20) == 'l');

    /* the separator, the id, its quotes, then room for "}" and NUL */
    need = (scope->count > 0) + len + 2 * quote + 2;

    if (scope->len == 0 || need > scope->size - scope->len) {
        return -1;
    }

    if (scope->count++ > 0) {
        scope->out[scope->len++] = ',';
    }

    if (quote) {
        scope->out[scope->len++] = '"';
    }

    memcpy(scope->out + scope->len, id, len);
    scope->len += len;

    if (quote) {
        scope->out[scope->len++] = '"';
    }

    return 0;
}


static int
wa_scope_close(wa_scope_t *scope)
{
    /* wa_scope_add() kept room for these; an empty list needs 3 bytes */
    if (scope->len == 0 || scope->size - scope->len < 2) {
        return -1;
    }

    scope->out[scope->len++] = '}';
    scope->out[scope->len] = '\0';

    return 0;
}


static int
wa_scope_is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t';
}
