/*
 * Unit tests of common/wa_jwt.c.  Keys are generated at run time and every
 * token is signed here with OpenSSL directly (its own base64url, HMAC,
 * RSA and ECDSA with the DER to R || S conversion), so no vector is
 * hard-coded that could not fail.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "b64url.h"
#include "tap.h"
#include "wa_jwt.h"


#define NOW      1700000000LL
#define SECRET   "0123456789abcdef0123456789abcdef"
#define TOKEN_MAX  (3 * WA_JWT_MAX_LEN)

#define HS256    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS256    "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES256    "{\"alg\":\"ES256\"}"

/* a valid payload for NOW; PAYLOAD(extra) adds members after it */
#define PAYLOAD(extra)                                                    \
    "{\"sub\":\"agent-7\",\"exp\":1700000600,"                            \
    "\"phone_number_ids\":[\"123\",\"456\"]" extra "}"


typedef struct {
    const char     *alg;          /* how to sign: "HS256", "RS256", ... */
    EVP_PKEY       *pkey;         /* RS256, ES256 */
    const void     *secret;       /* HS256 */
    size_t          secret_len;
} signer_t;


static signer_t           hs, rs, es;
static wa_jwt_key_t      *hs_key, *rs_key, *es_key;
static char               rs_pem[4096], es_pem[4096];
static size_t             rs_pem_len, es_pem_len;
static char               tok[TOKEN_MAX];
static wa_jwt_claims_t    cl;
static wa_jwt_policy_t    pol = { NULL, NULL, 30 };




/* Signs input the way the JWS algorithm says; returns the length. */
static size_t
sign(const signer_t *s, const char *input, unsigned char *sig)
{
    size_t                len;
    unsigned int          hlen;
    EVP_MD_CTX           *md;
    ECDSA_SIG            *es_sig;
    const BIGNUM         *r, *sv;
    unsigned char         der[512];
    const unsigned char  *p;

    if (strcmp(s->alg, "HS256") == 0) {
        HMAC(EVP_sha256(), s->secret, (int) s->secret_len,
             (const unsigned char *) input, strlen(input), sig, &hlen);
        return hlen;
    }

    md = EVP_MD_CTX_new();
    len = sizeof(der);

    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->pkey) != 1
        || EVP_DigestSign(md, der, &len, (const unsigned char *) input,
                          strlen(input)) != 1)
    {
        abort();
    }

    EVP_MD_CTX_free(md);

    if (strcmp(s->alg, "RS256") == 0) {
        memcpy(sig, der, len);
        return len;
    }

    /* ES256: DER ECDSA-Sig-Value to the JWS form, R || S */
    p = der;
    es_sig = d2i_ECDSA_SIG(NULL, &p, (long) len);
    ECDSA_SIG_get0(es_sig, &r, &sv);
    BN_bn2binpad(r, sig, 32);
    BN_bn2binpad(sv, sig + 32, 32);
    ECDSA_SIG_free(es_sig);

    return 64;
}


/* header.payload.signature into tok, from JSON texts of any bytes */
static const char *
token_n(const signer_t *s, const char *header, size_t hlen,
    const char *payload, size_t plen)
{
    size_t         n, slen;
    unsigned char  sig[1024];

    n = test_b64url((const unsigned char *) header, hlen, tok);
    tok[n++] = '.';
    n += test_b64url((const unsigned char *) payload, plen, tok + n);

    slen = sign(s, tok, sig);

    tok[n++] = '.';
    test_b64url(sig, slen, tok + n);

    return tok;
}


static const char *
token(const signer_t *s, const char *header, const char *payload)
{
    return token_n(s, header, strlen(header), payload, strlen(payload));
}


static wa_jwt_result_e
verify(const wa_jwt_key_t *key, const char *t)
{
    return wa_jwt_verify(key, t, strlen(t), NOW, &pol, &cl);
}


static EVP_PKEY *
pubkey_pem(EVP_PKEY *pkey, char *pem, size_t *len)
{
    BIO   *bio;
    char  *data;
    long   n;

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    n = BIO_get_mem_data(bio, &data);
    memcpy(pem, data, n);
    *len = n;
    BIO_free(bio);

    return pkey;
}


static wa_jwt_key_t *
load(const void *data, size_t len)
{
    char  err[256];

    return wa_jwt_key_load(data, len, err, sizeof(err));
}


static void
setup(void)
{
    char  err[256];

    hs.alg = "HS256";
    hs.secret = SECRET;
    hs.secret_len = 32;

    rs.alg = "RS256";
    rs.pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    pubkey_pem(rs.pkey, rs_pem, &rs_pem_len);

    es.alg = "ES256";
    es.pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    pubkey_pem(es.pkey, es_pem, &es_pem_len);

    hs_key = wa_jwt_key_load((const unsigned char *) SECRET "\n", 33,
                             err, sizeof(err));
    ok(hs_key != NULL, "HS256 secret with a trailing newline loads: %s", err);
    rs_key = wa_jwt_key_load((unsigned char *) rs_pem, rs_pem_len,
                             err, sizeof(err));
    ok(rs_key != NULL, "RSA public key PEM loads: %s", err);
    es_key = wa_jwt_key_load((unsigned char *) es_pem, es_pem_len,
                             err, sizeof(err));
    ok(es_key != NULL, "EC P-256 public key PEM loads: %s", err);

    if (hs_key == NULL || rs_key == NULL || es_key == NULL) {
        exit(done_testing());
    }

    ok(strcmp(wa_jwt_key_alg(hs_key), "HS256") == 0
       && strcmp(wa_jwt_key_alg(rs_key), "RS256") == 0
       && strcmp(wa_jwt_key_alg(es_key), "ES256") == 0, "key algorithms");
}


static void
test_happy(void)
{
    const char  *p;

    p = "{\"sub\":\"agent-7\",\"exp\":1700000600,\"nbf\":1699999000,"
        "\"iat\":1699999001,\"phone_number_ids\":[\"123\",\"456\"],"
        "\"assigned_only\":true}";

    ok(verify(hs_key, token(&hs, HS256, p)) == WA_JWT_OK, "HS256 verifies");
    ok(strcmp(cl.sub, "agent-7") == 0 && strcmp(cl.phones, "{123,456}") == 0
       && cl.assigned_only == 1 && cl.exp == 1700000600
       && cl.nbf == 1699999000 && cl.iat == 1699999001,
       "HS256 claims extracted");

    ok(verify(rs_key, token(&rs, RS256, p)) == WA_JWT_OK, "RS256 verifies");
    ok(strcmp(cl.sub, "agent-7") == 0 && strcmp(cl.phones, "{123,456}") == 0
       && cl.assigned_only == 1, "RS256 claims extracted");

    ok(verify(es_key, token(&es, ES256, p)) == WA_JWT_OK, "ES256 verifies");
    ok(strcmp(cl.sub, "agent-7") == 0 && cl.exp == 1700000600,
       "ES256 claims extracted");

    ok(verify(hs_key, token(&hs, HS256, PAYLOAD(""))) == WA_JWT_OK
       && cl.nbf == 0 && cl.iat == 0 && cl.assigned_only == 0,
       "nbf, iat absent: 0; assigned_only absent: false");

    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
                            PAYLOAD(""))) == WA_JWT_OK, "typ jwt, any case");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\"}", PAYLOAD("")))
       == WA_JWT_OK, "typ absent");
    ok(wa_jwt_verify(hs_key, tok, strlen(tok), NOW, NULL, &cl) == WA_JWT_OK,
       "NULL policy");
}


static void
test_time(void)
{
#define EXP(e, extra)                                                      \
    token(&hs, HS256, "{\"sub\":\"a\",\"phone_number_ids\":\"*\","         \
          "\"exp\":" e extra "}")

    ok(verify(hs_key, EXP("1699999969", "")) == WA_JWT_EXPIRED,
       "expired 31 s ago, leeway 30");
    ok(verify(hs_key, EXP("1699999970", "")) == WA_JWT_OK,
       "expired exactly leeway ago: still valid");
    ok(verify(hs_key, EXP("1600000000", "")) == WA_JWT_EXPIRED,
       "long expired");
    pol.leeway = 0;
    ok(verify(hs_key, EXP("1700000000", "")) == WA_JWT_OK,
       "no leeway: exp == now is valid");
    ok(verify(hs_key, EXP("1699999999", "")) == WA_JWT_EXPIRED,
       "no leeway: one second late");
    pol.leeway = -5;
    ok(verify(hs_key, EXP("1700000000", "")) == WA_JWT_OK,
       "negative leeway counts as 0");
    pol.leeway = 30;

    ok(verify(hs_key, EXP("1700000600.9", "")) == WA_JWT_OK
       && cl.exp == 1700000600, "fractional exp truncated");
    ok(verify(hs_key, EXP("1.7000006e9", "")) == WA_JWT_OK
       && cl.exp == 1700000600, "exp in exponent form");
    ok(verify(hs_key, EXP("\"1700000600\"", "")) == WA_JWT_CLAIMS,
       "exp as a string");
    ok(verify(hs_key, EXP("null", "")) == WA_JWT_CLAIMS, "exp null");
    ok(verify(hs_key, EXP("1e300", "")) == WA_JWT_CLAIMS, "exp 1e300");
    ok(verify(hs_key, EXP("99999999999999999999", "")) == WA_JWT_CLAIMS,
       "exp beyond long long");

    ok(verify(hs_key, EXP("1700000600", ",\"nbf\":1700000031"))
       == WA_JWT_NOT_YET_VALID, "nbf 31 s ahead, leeway 30");
    ok(verify(hs_key, EXP("1700000600", ",\"nbf\":1700000030"))
       == WA_JWT_OK, "nbf exactly leeway ahead: valid");
    ok(verify(hs_key, EXP("1700000600", ",\"nbf\":\"x\"")) == WA_JWT_CLAIMS,
       "nbf not a number");
    ok(verify(hs_key, EXP("1700000600", ",\"iat\":[]")) == WA_JWT_CLAIMS,
       "iat not a number");
}


static void
test_algorithm(void)
{
    signer_t  confused;

    ok(verify(hs_key, token(&hs, "{\"alg\":\"none\"}", PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "alg none with a signature");
    *strrchr(tok, '.') = '\0';
    strcat(tok, ".");
    ok(verify(hs_key, tok) == WA_JWT_ALGORITHM, "alg none, empty signature");
    ok(verify(rs_key, tok) == WA_JWT_ALGORITHM,
       "alg none, empty signature, RS256 key");

    ok(verify(hs_key, token(&hs, "{\"typ\":\"JWT\"}", PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "alg missing");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"hs256\"}", PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "alg in lower case");
    ok(verify(hs_key, token(&hs, "{\"alg\":256}", PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "alg a number");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS512\"}", PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "HS512");

    /* the classic confusion: the public key's PEM bytes as HMAC secret */
    confused.alg = "HS256";
    confused.secret = rs_pem;
    confused.secret_len = rs_pem_len;
    ok(verify(rs_key, token(&confused, HS256, PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "HS256 signed with the RSA PEM, RS256 key");
    confused.secret = es_pem;
    confused.secret_len = es_pem_len;
    ok(verify(es_key, token(&confused, HS256, PAYLOAD(""))) ==
       WA_JWT_ALGORITHM, "HS256 signed with the EC PEM, ES256 key");

    ok(verify(es_key, token(&rs, RS256, PAYLOAD(""))) == WA_JWT_ALGORITHM,
       "RS256 token, ES256 key");
    ok(verify(hs_key, token(&es, ES256, PAYLOAD(""))) == WA_JWT_ALGORITHM,
       "ES256 token, HS256 key");
    ok(verify(rs_key, token(&rs, ES256, PAYLOAD(""))) == WA_JWT_ALGORITHM,
       "RS256 signature labelled ES256, RS256 key");
    ok(wa_jwt_verify(NULL, tok, strlen(tok), NOW, &pol, &cl) ==
       WA_JWT_ALGORITHM, "no key");
}


static void
test_tamper(const signer_t *s, const wa_jwt_key_t *key, const char *header)
{
    char    *sig, *payload, good[TOKEN_MAX], other[512];
    size_t   n;

    strcpy(good, token(s, header, PAYLOAD("")));
    ok(verify(key, good) == WA_JWT_OK, "%s: untouched", s->alg);

    /* the same signature over another payload: an admin scope */
    payload = strchr(good, '.') + 1;
    sig = strrchr(good, '.');
    n = test_b64url((const unsigned char *) PAYLOAD(",\"x\":1"),
               strlen(PAYLOAD(",\"x\":1")), other);
    memcpy(tok, good, payload - good);
    memcpy(tok + (payload - good), other, n);
    strcpy(tok + (payload - good) + n, sig);
    ok(verify(key, tok) == WA_JWT_SIGNATURE, "%s: tampered payload", s->alg);

    strcpy(tok, good);
    sig = strrchr(tok, '.') + 1;
    sig[3] = (sig[3] == 'A') ? 'B' : 'A';
    ok(verify(key, tok) == WA_JWT_SIGNATURE, "%s: tampered signature",
       s->alg);

    strcpy(tok, good);
    *strrchr(tok, '.') = '\0';
    strcat(tok, ".");
    ok(verify(key, tok) == WA_JWT_SIGNATURE, "%s: empty signature", s->alg);

    strcpy(tok, good);
    tok[strlen(tok) - 2] = '\0';
    ok(verify(key, tok) == WA_JWT_SIGNATURE || verify(key, tok) ==
       WA_JWT_MALFORMED, "%s: truncated signature", s->alg);
}


static void
test_es256_length(void)
{
    char           *sig;
    unsigned char   raw[80];
    size_t          n;

    memset(raw, 0x11, sizeof(raw));
    token(&es, ES256, PAYLOAD(""));
    sig = strrchr(tok, '.') + 1;

    n = 63;
    test_b64url(raw, n, sig);
    ok(verify(es_key, tok) == WA_JWT_SIGNATURE, "ES256: 63-byte signature");
    n = 65;
    test_b64url(raw, n, sig);
    ok(verify(es_key, tok) == WA_JWT_SIGNATURE, "ES256: 65-byte signature");
    n = 72;
    test_b64url(raw, n, sig);
    ok(verify(es_key, tok) == WA_JWT_SIGNATURE, "ES256: 72 bytes (DER size)");
    test_b64url(raw, 64, sig);
    ok(verify(es_key, tok) == WA_JWT_SIGNATURE, "ES256: 64 wrong bytes");
    memset(raw, 0, 64);
    test_b64url(raw, 64, sig);
    ok(verify(es_key, tok) == WA_JWT_SIGNATURE, "ES256: R = S = 0");

    token(&rs, RS256, PAYLOAD(""));
    sig = strrchr(tok, '.') + 1;
    test_b64url(raw, 64, sig);
    ok(verify(rs_key, tok) == WA_JWT_SIGNATURE, "RS256: 64-byte signature");
}


static void
test_base64(void)
{
    char    good[TOKEN_MAX];
    size_t  n;

    strcpy(good, token(&hs, HS256, PAYLOAD("")));

#define BAD(what, edit)                                                     \
    strcpy(tok, good);                                                      \
    n = strlen(tok);                                                        \
    edit;                                                                   \
    ok(verify(hs_key, tok) == WA_JWT_MALFORMED, "base64url: %s", what)

    BAD("padding after the signature", strcat(tok, "="));
    BAD("'+'", tok[5] = '+');
    BAD("'/'", tok[5] = '/');
    BAD("space inside", tok[5] = ' ');
    BAD("newline at the end", strcat(tok, "\n"));
    BAD("leading space", memmove(tok + 1, tok, n + 1); tok[0] = ' ');
    BAD("'=' in the header", tok[2] = '=');
    /* 43 characters carry 32 bytes and 2 spare bits, which must be 0 */
    BAD("non-canonical last character",
        tok[n - 1] = TEST_B64URL_ALPHABET[(strchr(TEST_B64URL_ALPHABET,
                                                   tok[n - 1])
                                            - TEST_B64URL_ALPHABET) | 1]);
    ok(wa_jwt_verify(hs_key, good, strlen(good) + 1, NOW, &pol, &cl) ==
       WA_JWT_MALFORMED, "base64url: its NUL counted in the length");
    BAD("signature of 4n+1 characters", strcat(tok, "AA"));
    BAD("one dot", *strrchr(tok, '.') = '\0');
    BAD("three dots", strcat(tok, ".A"));
    BAD("empty", tok[0] = '\0');
    BAD("just dots", strcpy(tok, ".."));

    ok(wa_jwt_verify(hs_key, good, strlen(good), NOW, &pol, &cl) == WA_JWT_OK,
       "unedited still good");
}


static void
test_length(void)
{
    char    *pad, *payload;
    size_t   i, n;
    int      under, over;

    payload = malloc(TOKEN_MAX);
    pad = malloc(TOKEN_MAX);
    under = over = 0;

    for (i = 5700; i < 6300; i++) {
        memset(pad, 'x', i);
        pad[i] = '\0';
        snprintf(payload, TOKEN_MAX, PAYLOAD(",\"pad\":\"%s\""), pad);
        n = strlen(token(&hs, HS256, payload));

        if (n <= WA_JWT_MAX_LEN && n > WA_JWT_MAX_LEN - 4) {
            under = verify(hs_key, tok) == WA_JWT_OK;
        }

        if (n > WA_JWT_MAX_LEN && n <= WA_JWT_MAX_LEN + 4) {
            over = verify(hs_key, tok) == WA_JWT_MALFORMED;
        }
    }

    ok(under, "validly signed token of just under 8 KB accepted");
    ok(over, "validly signed token of just over 8 KB: malformed");

    free(payload);
    free(pad);
}


/* a valid payload whose "x" nests depth levels in all (or in a string) */
static const char *
nested(char *payload, int depth, const char *quote)
{
    int  i;

    strcpy(payload, "{\"sub\":\"a\",\"exp\":1700000600,"
           "\"phone_number_ids\":\"*\",\"x\":");
    strcat(payload, quote);

    for (i = 1; i < depth; i++) {
        strcat(payload, "[");
    }

    strcat(payload, quote);

    for (i = 1; *quote == '\0' && i < depth; i++) {
        strcat(payload, "]");
    }

    strcat(payload, "}");

    return payload;
}


static void
test_json(void)
{
    char  payload[256];

    ok(verify(hs_key, token(&hs, "[\"HS256\"]", PAYLOAD(""))) ==
       WA_JWT_MALFORMED, "header an array");
    ok(verify(hs_key, token(&hs, "\"HS256\"", PAYLOAD(""))) ==
       WA_JWT_MALFORMED, "header a string");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\"", PAYLOAD(""))) ==
       WA_JWT_MALFORMED, "header truncated");
    ok(verify(hs_key, token(&hs, "", PAYLOAD(""))) == WA_JWT_MALFORMED,
       "header empty");
    ok(verify(hs_key, token(&hs, HS256, "[1]")) == WA_JWT_MALFORMED,
       "signed payload an array");
    ok(verify(hs_key, token(&hs, HS256, "1700000600")) == WA_JWT_MALFORMED,
       "signed payload a number");
    ok(verify(hs_key, token(&hs, HS256, "{\"sub\":")) == WA_JWT_MALFORMED,
       "signed payload truncated");
    ok(verify(hs_key, token(&hs, HS256, PAYLOAD("") "x")) ==
       WA_JWT_MALFORMED, "trailing garbage after the payload");

    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
                            PAYLOAD(""))) == WA_JWT_MALFORMED, "crit");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
                            PAYLOAD(""))) == WA_JWT_MALFORMED, "typ JWS");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"typ\":1}",
                            PAYLOAD(""))) == WA_JWT_MALFORMED,
       "typ a number");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"alg\":\"none\"}",
                            PAYLOAD(""))) == WA_JWT_MALFORMED,
       "alg repeated");
    ok(verify(hs_key, token(&hs, HS256, PAYLOAD(",\"exp\":1999999999"))) ==
       WA_JWT_MALFORMED, "exp repeated");
    ok(verify(hs_key, token(&hs, HS256, PAYLOAD(",\"other\":1,\"other\":2")))
       == WA_JWT_OK, "an unread member repeated is ignored");
    ok(verify(hs_key, token(&hs, "{\"alg\":\"HS256\" /* c */}",
                            PAYLOAD(""))) == WA_JWT_MALFORMED, "comment");
    ok(verify(hs_key, token(&hs, HS256, "{\"sub\":\"agent\\u0000admin\","
                            "\"exp\":1700000600,\"phone_number_ids\":\"*\"}"))
       == WA_JWT_MALFORMED, "\\u0000 in sub");
    ok(verify(hs_key, token(&hs, HS256, PAYLOAD(",\"x\":\"a\\\\u0000\"")))
       == WA_JWT_OK, "an escaped backslash before u0000 is text");
    ok(verify(hs_key, token(&hs, HS256, nested(payload, 16, ""))) ==
       WA_JWT_OK, "nesting 16");
    ok(verify(hs_key, token(&hs, HS256, nested(payload, 17, ""))) ==
       WA_JWT_MALFORMED, "nesting 17");
    ok(verify(hs_key, token(&hs, HS256, nested(payload, 17, "\""))) ==
       WA_JWT_OK, "brackets inside a string");
    ok(verify(hs_key, token(&hs, HS256, PAYLOAD(",\"x\":\"\xff\""))) ==
       WA_JWT_MALFORMED, "invalid UTF-8");

    /* a parser reading up to the NUL would see a good header */
    ok(verify(hs_key, token_n(&hs, HS256 "\0{", sizeof(HS256) + 1,
                              PAYLOAD(""), sizeof(PAYLOAD("")) - 1))
       == WA_JWT_MALFORMED, "NUL byte after the header's JSON");
    ok(verify(hs_key, token_n(&hs, HS256, sizeof(HS256) - 1,
                              PAYLOAD(""), sizeof(PAYLOAD(""))))
       == WA_JWT_MALFORMED, "NUL byte ending the payload");
}


static void
test_claims(void)
{
    char  sub[200], payload[512];

#define CLAIMS(p)  verify(hs_key, token(&hs, HS256, p))

    ok(CLAIMS("{\"exp\":1700000600,\"phone_number_ids\":\"*\"}") ==
       WA_JWT_CLAIMS, "sub missing");
    ok(CLAIMS("{\"sub\":\"a\",\"phone_number_ids\":\"*\"}") == WA_JWT_CLAIMS,
       "exp missing");
    ok(CLAIMS("{\"sub\":\"a\",\"exp\":1700000600}") == WA_JWT_CLAIMS,
       "phone_number_ids missing");
    ok(CLAIMS("{\"sub\":\"\",\"exp\":1700000600,\"phone_number_ids\":\"*\"}")
       == WA_JWT_CLAIMS, "sub empty");
    ok(CLAIMS("{\"sub\":7,\"exp\":1700000600,\"phone_number_ids\":\"*\"}")
       == WA_JWT_CLAIMS, "sub a number");
    ok(CLAIMS("{\"sub\":\"a\\\"b\",\"exp\":1700000600,"
              "\"phone_number_ids\":\"*\"}") == WA_JWT_CLAIMS,
       "sub with '\"'");
    ok(CLAIMS("{\"sub\":\"a\\\\b\",\"exp\":1700000600,"
              "\"phone_number_ids\":\"*\"}") == WA_JWT_CLAIMS,
       "sub with '\\'");
    ok(CLAIMS("{\"sub\":\"a\\nb\",\"exp\":1700000600,"
              "\"phone_number_ids\":\"*\"}") == WA_JWT_CLAIMS,
       "sub with a newline");
    ok(CLAIMS("{\"sub\":\"caf\xc3\xa9\",\"exp\":1700000600,"
              "\"phone_number_ids\":\"*\"}") == WA_JWT_CLAIMS,
       "sub not ASCII");

    memset(sub, 's', 128);
    sub[128] = '\0';
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"exp\":1700000600,"
             "\"phone_number_ids\":\"*\"}", sub);
    ok(CLAIMS(payload) == WA_JWT_OK && strlen(cl.sub) == 128,
       "sub of 128 bytes");
    strcpy(sub + 128, "s");
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"exp\":1700000600,"
             "\"phone_number_ids\":\"*\"}", sub);
    ok(CLAIMS(payload) == WA_JWT_CLAIMS, "sub of 129 bytes");

    ok(CLAIMS(PAYLOAD(",\"assigned_only\":false")) == WA_JWT_OK
       && cl.assigned_only == 0, "assigned_only false");
    ok(CLAIMS(PAYLOAD(",\"assigned_only\":true")) == WA_JWT_OK
       && cl.assigned_only == 1, "assigned_only true");
    ok(CLAIMS(PAYLOAD(",\"assigned_only\":\"true\"")) == WA_JWT_CLAIMS,
       "assigned_only a string");
    ok(CLAIMS(PAYLOAD(",\"assigned_only\":1")) == WA_JWT_CLAIMS,
       "assigned_only 1");
    ok(CLAIMS(PAYLOAD(",\"assigned_only\":null")) == WA_JWT_CLAIMS,
       "assigned_only null");
    ok(cl.sub[0] == '\0' && cl.phones[0] == '\0' && cl.exp == 0,
       "claims zeroed after a failure");
}


static void
test_scope_claim(void)
{
    char  ids[6000], payload[6100];
    int   i, n;

#define SCOPE(list)                                                        \
    CLAIMS("{\"sub\":\"a\",\"exp\":1700000600,\"phone_number_ids\":"      \
           list "}")

    ok(SCOPE("\"*\"") == WA_JWT_OK && strcmp(cl.phones, "") == 0,
       "\"*\": all numbers");
    ok(SCOPE("[\"106540352242922\",\"2\"]") == WA_JWT_OK
       && strcmp(cl.phones, "{106540352242922,2}") == 0, "list of strings");
    ok(SCOPE("[]") == WA_JWT_OK && strcmp(cl.phones, "{}") == 0,
       "empty list: no numbers");
    ok(SCOPE("[106540352242922,7.0,-3]") == WA_JWT_OK
       && strcmp(cl.phones, "{106540352242922,7,-3}") == 0,
       "integral numbers");
    ok(SCOPE("[1.5]") == WA_JWT_CLAIMS, "fractional number");
    ok(SCOPE("[1e300]") == WA_JWT_CLAIMS, "huge number");
    ok(SCOPE("[\"a_B-9\",\"null\",\"NuLL\"]") == WA_JWT_OK
       && strcmp(cl.phones, "{a_B-9,\"null\",\"NuLL\"}") == 0,
       "ids spelled null quoted for PostgreSQL");
    ok(SCOPE("\"all\"") == WA_JWT_CLAIMS, "string other than \"*\"");
    ok(SCOPE("\"123\"") == WA_JWT_CLAIMS, "a single id as a string");
    ok(SCOPE("{}") == WA_JWT_CLAIMS, "an object");
    ok(SCOPE("null") == WA_JWT_CLAIMS, "null");
    ok(SCOPE("[\"1,2\"]") == WA_JWT_CLAIMS, "comma inside an id");
    ok(SCOPE("[\"1}\"]") == WA_JWT_CLAIMS, "brace inside an id");
    ok(SCOPE("[\"\"]") == WA_JWT_CLAIMS, "empty id");
    ok(SCOPE("[\"*\"]") == WA_JWT_CLAIMS, "\"*\" inside the list");
    ok(SCOPE("[[\"1\"]]") == WA_JWT_CLAIMS, "nested list");
    ok(SCOPE("[true]") == WA_JWT_CLAIMS, "boolean id");
    ok(SCOPE("[\"1234567890123456789012345678901234567890123456789012345"
             "678901234\"]") == WA_JWT_OK, "id of 64");
    ok(SCOPE("[\"1234567890123456789012345678901234567890123456789012345"
             "6789012345\"]") == WA_JWT_CLAIMS, "id of 65");

    /* 64-byte ids, 65 bytes each with its comma: 62 fit in 4096 */
    for (n = 61; n <= 63; n++) {
        ids[0] = '\0';

        for (i = 0; i < n; i++) {
            snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids),
                     "%s\"%064d\"", i ? "," : "", i);
        }

        snprintf(payload, sizeof(payload), "{\"sub\":\"a\",\"exp\":1700000600,"
                 "\"phone_number_ids\":[%s]}", ids);

        ok(CLAIMS(payload) == (n <= 62 ? WA_JWT_OK : WA_JWT_CLAIMS),
           "%d ids of 64 bytes: %s", n, n <= 62 ? "fit" : "too long");
    }
}


static void
test_policy(void)
{
    pol.issuer = "https://auth.example";
    pol.audience = "whatsapp";

    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example\","
                      "\"aud\":\"whatsapp\""))
       == WA_JWT_OK, "iss and aud (string) match");
    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example\","
                      "\"aud\":[\"other\",\"whatsapp\"]")) == WA_JWT_OK,
       "aud array contains it");
    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example\","
                      "\"aud\":[\"other\",1]")) == WA_JWT_AUDIENCE,
       "aud array lacks it");
    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example\",\"aud\":[]"))
       == WA_JWT_AUDIENCE, "aud empty array");
    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example\","
                      "\"aud\":\"whatsapp2\""))
       == WA_JWT_AUDIENCE, "aud string mismatch");
    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example\"")) == WA_JWT_AUDIENCE,
       "aud missing");
    ok(CLAIMS(PAYLOAD(",\"iss\":\"https://auth.example/\","
                      "\"aud\":\"whatsapp\"")) == WA_JWT_ISSUER,
       "iss mismatch");
    ok(CLAIMS(PAYLOAD(",\"aud\":\"whatsapp\"")) == WA_JWT_ISSUER,
       "iss missing");
    ok(CLAIMS(PAYLOAD(",\"iss\":1,\"aud\":\"whatsapp\"")) == WA_JWT_ISSUER,
       "iss a number");

    pol.issuer = NULL;
    pol.audience = NULL;

    ok(CLAIMS(PAYLOAD(",\"iss\":\"anyone\",\"aud\":\"anything\"")) ==
       WA_JWT_OK, "iss and aud not checked without a policy");
}


static void
test_key_load(void)
{
    int                n;
    BIO               *bio;
    char               err[256], buf[8192];
    size_t             len;
    EVP_PKEY          *k;
    wa_jwt_key_t      *key;
    unsigned char     *der, *pkcs1;
    OSSL_ENCODER_CTX  *enc;

    key = wa_jwt_key_load((const unsigned char *)
                          "supersecret-31-bytes-long-xxxxx", 31,
                          err, sizeof(err));
    ok(key == NULL && strcmp(err, "HS256 secret shorter than 32 bytes") == 0,
       "31-byte secret: %s", err);
    ok(strstr(err, "supersecret") == NULL, "error does not show the secret");

    key = wa_jwt_key_load((const unsigned char *) SECRET "\r\n \t", 36,
                          err, sizeof(err));
    ok(key != NULL && verify(key, token(&hs, HS256, PAYLOAD(""))) == WA_JWT_OK,
       "trailing \\r\\n, space, tab stripped");
    wa_jwt_key_free(key);

    key = wa_jwt_key_load((const unsigned char *) "0123456789abcdef0123456789"
                          "abcde\n\n", 33, err, sizeof(err));
    ok(key == NULL, "31 bytes and newlines: too short");
    ok(wa_jwt_key_load(NULL, 0, err, sizeof(err)) == NULL, "empty file");
    ok(wa_jwt_key_load((const unsigned char *) "", 0, NULL, 0) == NULL,
       "no error buffer");

    n = snprintf(buf, sizeof(buf), "-----BEGIN PUBLIC KEY-----\nZ2FyYmFnZQ==\n"
                 "-----END PUBLIC KEY-----\n");
    ok(load(buf, n) == NULL, "garbage inside a PUBLIC KEY block");
    n = snprintf(buf, sizeof(buf), "-----BEGIN CERTIFICATE-----\nAAAA\n"
                 "-----END CERTIFICATE-----\n");
    ok(load(buf, n) == NULL, "certificate block refused, not an HMAC secret");
    ok(load(rs_pem, 40) == NULL, "truncated PEM");

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, rs.pkey, NULL, NULL, 0, NULL, NULL);
    n = BIO_read(bio, buf, sizeof(buf));
    BIO_free(bio);
    key = wa_jwt_key_load((unsigned char *) buf, n, err, sizeof(err));
    ok(key == NULL && strstr(err, "private key") != NULL,
       "private key refused: %s", err);

    der = NULL;
    n = i2d_PUBKEY(rs.pkey, &der);
    key = wa_jwt_key_load(der, n, err, sizeof(err));
    ok(key == NULL && strstr(err, "DER") != NULL, "DER refused: %s", err);
    OPENSSL_free(der);

    n = snprintf(buf, sizeof(buf), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB"
                 "AQABAQABAQABAQABAQABAQABAQAB\",\"e\":\"AQAB\"}]}");
    ok(load(buf, n) == NULL, "JWK refused, not an HMAC secret");
    n = snprintf(buf, sizeof(buf), "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC"
                 "7 user@host\n");
    ok(load(buf, n) == NULL, "OpenSSH public key refused");

    /* PKCS#1 "RSA PUBLIC KEY" */
    pkcs1 = NULL;
    enc = OSSL_ENCODER_CTX_new_for_pkey(rs.pkey, EVP_PKEY_PUBLIC_KEY, "PEM",
                                        "type-specific", NULL);
    OSSL_ENCODER_to_data(enc, &pkcs1, &len);
    OSSL_ENCODER_CTX_free(enc);
    ok(len > 30 && memcmp(pkcs1, "-----BEGIN RSA PUBLIC KEY-----", 30) == 0,
       "PKCS#1 PEM made");
    key = wa_jwt_key_load(pkcs1, len, err, sizeof(err));
    ok(key != NULL && verify(key, token(&rs, RS256, PAYLOAD(""))) == WA_JWT_OK,
       "RSA PUBLIC KEY loads and verifies: %s", err);
    wa_jwt_key_free(key);
    OPENSSL_free(pkcs1);

    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
    pubkey_pem(k, buf, &len);
    key = wa_jwt_key_load((unsigned char *) buf, len, err, sizeof(err));
    ok(key == NULL && strstr(err, "2048") != NULL, "RSA 1024: %s", err);
    EVP_PKEY_free(k);

    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    pubkey_pem(k, buf, &len);
    key = wa_jwt_key_load((unsigned char *) buf, len, err, sizeof(err));
    ok(key == NULL && strstr(err, "P-256") != NULL, "EC P-384: %s", err);
    EVP_PKEY_free(k);

    k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    pubkey_pem(k, buf, &len);
    key = wa_jwt_key_load((unsigned char *) buf, len, err, sizeof(err));
    ok(key == NULL, "Ed25519: %s", err);
    EVP_PKEY_free(k);

    wa_jwt_key_free(NULL);
}


#define PEM_GARBAGE                                                      \
    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"

static void
test_error_queue(void)
{
    char  *sig;

    ERR_clear_error();
    token(&rs, RS256, PAYLOAD(""));
    sig = strrchr(tok, '.') + 1;
    sig[3] = (sig[3] == 'A') ? 'B' : 'A';
    ok(verify(rs_key, tok) == WA_JWT_SIGNATURE && ERR_peek_error() == 0,
       "a failed RS256 check leaves no OpenSSL error behind");
    ok(load(PEM_GARBAGE, strlen(PEM_GARBAGE)) == NULL && ERR_peek_error() == 0,
       "a failed key load leaves no OpenSSL error behind");

    /* and errors that were there before are not ours to clear */
    ERR_raise(ERR_LIB_USER, 42);
    ok(verify(rs_key, tok) == WA_JWT_SIGNATURE
       && ERR_GET_REASON(ERR_peek_last_error()) == 42
       && ERR_GET_REASON(ERR_peek_error()) == 42,
       "an earlier OpenSSL error is kept as it was");
    ERR_clear_error();
}


static void
test_strerror(void)
{
    int  rc;

    for (rc = WA_JWT_OK; rc <= WA_JWT_CLAIMS; rc++) {
        ok(strlen(wa_jwt_strerror((wa_jwt_result_e) rc)) > 0,
           "strerror(%d): %s", rc, wa_jwt_strerror((wa_jwt_result_e) rc));
    }

    ok(strcmp(wa_jwt_strerror(WA_JWT_EXPIRED), "token expired") == 0,
       "expired message");
}


static void
test_scope_phones(void)
{
    char  out[64];

#define PHONES(list, want)                                                 \
    ok(wa_scope_phones(list, strlen(list), out, sizeof(out)) == 0          \
       && strcmp(out, want) == 0, "scope \"%s\" -> \"%s\"", list, want)
#define NO_PHONES(list)                                                    \
    ok(wa_scope_phones(list, strlen(list), out, sizeof(out)) == -1,        \
       "scope \"%s\" refused", list)

    PHONES("*", "");
    PHONES("all", "");
    PHONES(" * ", "");
    PHONES("123", "{123}");
    PHONES("123,456", "{123,456}");
    PHONES("123 456", "{123,456}");
    PHONES(" 123 , 456\t789 ,", "{123,456,789}");
    PHONES(",,1,,", "{1}");
    PHONES("Null,x", "{\"Null\",x}");
    NO_PHONES("");
    NO_PHONES(" , ");
    NO_PHONES("12;3");
    NO_PHONES("1,*");
    PHONES("ALL", "{ALL}");     /* case-sensitive: ALL is an id */
    ok(wa_scope_phones("1\n2", 3, out, sizeof(out)) == -1,
       "scope with a newline refused");
    NO_PHONES("caf\xc3\xa9");
    NO_PHONES("12345678901234567890123456789012345678901234567890123456789"
              "0123456");

    ok(wa_scope_phones("123", 3, out, 6) == 0 && strcmp(out, "{123}") == 0,
       "exact fit");
    ok(wa_scope_phones("123", 3, out, 5) == -1, "one byte short");
    ok(wa_scope_phones("123,4", 5, out, 7) == -1, "second id does not fit");
    ok(wa_scope_phones("*", 1, out, 1) == 0 && out[0] == '\0',
       "\"*\" needs one byte");
    ok(wa_scope_phones("*", 1, out, 0) == -1, "no room at all");
    ok(wa_scope_phones("12", 1, out, sizeof(out)) == 0
       && strcmp(out, "{1}") == 0, "len is respected");
}


int
main(void)
{
    setup();

    test_happy();
    test_time();
    test_algorithm();
    test_tamper(&hs, hs_key, HS256);
    test_tamper(&rs, rs_key, RS256);
    test_tamper(&es, es_key, ES256);
    test_es256_length();
    test_base64();
    test_length();
    test_json();
    test_claims();
    test_scope_claim();
    test_policy();
    test_key_load();
    test_error_queue();
    test_strerror();
    test_scope_phones();

    wa_jwt_key_free(hs_key);
    wa_jwt_key_free(rs_key);
    wa_jwt_key_free(es_key);
    EVP_PKEY_free(rs.pkey);
    EVP_PKEY_free(es.pkey);

    return done_testing();
}
