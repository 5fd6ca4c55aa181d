/*
 * Agent authentication: verification of compact JWS tokens (JWT) signed
 * with HS256, RS256 or ES256, and the phone-number scope they carry.
 *
 * Shared by the NGINX module and the tests; depends on OpenSSL 3 and
 * yajl 2 only.  No global state and no logging; every call frees what it
 * allocated before it returns.
 */

#ifndef WA_JWT_H
#define WA_JWT_H

#include <stddef.h>


/*
 * The longest token accepted, in bytes.  Exported so that a caller can
 * refuse a longer Authorization header before copying it anywhere.
 */
#define WA_JWT_MAX_LEN       8192

/* Bounds of the claims below, for callers that size their own buffers. */
#define WA_JWT_SUB_MAX       128
#define WA_JWT_PHONES_MAX    4096
#define WA_JWT_PHONE_ID_MAX  64


typedef struct wa_jwt_key_s  wa_jwt_key_t;   /* opaque */


/*
 * Loads a verification key from the bytes of a key file.  A PEM public key
 * ("-----BEGIN PUBLIC KEY-----" or "-----BEGIN RSA PUBLIC KEY-----"): RSA
 * of at least 2048 bits verifies RS256, EC P-256 verifies ES256.  Any other
 * file is an HMAC secret for HS256: its bytes without trailing "\r\n\t "
 * characters, at least 32 of them.
 *
 * A file that is PEM of another kind (a private key, a certificate), DER,
 * a JWK or an OpenSSH public key is refused rather than taken as an HMAC
 * secret: a secret anyone can read would let anyone sign tokens.
 *
 * On error returns NULL and writes a message into err (never any key
 * bytes).  A key holds a prepared HMAC context that each verification
 * re-initializes: use one key from one thread at a time (each NGINX worker
 * process has its own).
 */
wa_jwt_key_t *wa_jwt_key_load(const unsigned char *data, size_t len,
    char *err, size_t errlen);
void wa_jwt_key_free(wa_jwt_key_t *key);

/* "HS256", "RS256" or "ES256": the only "alg" the key accepts. */
const char *wa_jwt_key_alg(const wa_jwt_key_t *key);


typedef struct {
    const char  *issuer;      /* NULL: not checked; else "iss" must equal */
    const char  *audience;    /* NULL: not checked; else "aud" (string or
                                 array of strings) must contain it */
    long         leeway;      /* seconds of clock skew allowed for exp and
                                 nbf (e.g. 30); negative counts as 0 */
} wa_jwt_policy_t;


typedef struct {
    /* agent id: "sub", 1..128 bytes of 0x20..0x7e except '"' and '\\' */
    char        sub[WA_JWT_SUB_MAX + 1];

    /*
     * PostgreSQL text[] literal of the phone number ids allowed, e.g.
     * "{123,456}"; "{}" allows none; "" allows ALL.  An id spelled "null"
     * in any case is written quoted, "\"null\"", which PostgreSQL would
     * otherwise read as a NULL element.
     */
    char        phones[WA_JWT_PHONES_MAX];

    int         assigned_only;    /* only conversations assigned to sub */
    long long   exp, nbf, iat;    /* nbf and iat are 0 when absent */
} wa_jwt_claims_t;


typedef enum {
    WA_JWT_OK = 0,
    WA_JWT_MALFORMED,
    WA_JWT_ALGORITHM,
    WA_JWT_SIGNATURE,
    WA_JWT_EXPIRED,
    WA_JWT_NOT_YET_VALID,
    WA_JWT_ISSUER,
    WA_JWT_AUDIENCE,
    WA_JWT_CLAIMS
} wa_jwt_result_e;


/*
 * Verifies a compact JWS (header.payload.signature, each base64url without
 * padding) against key at Unix time `now`, then checks its claims under
 * policy (NULL: no iss/aud checks, no leeway).
 *
 * The header's "alg" must be exactly the key's; "crit" is refused.  The
 * signature is checked before the payload is parsed.  Stricter than
 * RFC 7519, these are MALFORMED: non-canonical base64url (nonzero unused
 * bits), JSON comments, invalid UTF-8, NUL bytes or "\u0000" (the parser
 * would cut a string there), nesting deeper than 16, and a repeated
 * member that is read ("alg", "exp", "sub", ...).  Numeric dates outside
 * +-2^53 are WA_JWT_CLAIMS.  "iat" is returned, not checked.  key, token
 * and claims must not be NULL.
 *
 * claims is filled on WA_JWT_OK only; on any other result it is zeroed so
 * no partial scope can be used by mistake.
 */
wa_jwt_result_e wa_jwt_verify(const wa_jwt_key_t *key, const char *token,
    size_t len, long long now, const wa_jwt_policy_t *policy,
    wa_jwt_claims_t *claims);

/* A short reason for a JSON error message, e.g. "token expired". */
const char *wa_jwt_strerror(wa_jwt_result_e rc);


/*
 * The scope from a plain list (when it comes from NGINX variables): "*" or
 * "all" give "" (all numbers); else ids separated by commas and/or spaces
 * or tabs give "{id,id}" as in wa_jwt_claims_t.phones.  Returns 0, or -1
 * when the list is empty, an id is not 1..64 of [0-9A-Za-z_-], or out is
 * too small.
 */
int wa_scope_phones(const char *list, size_t len, char *out, size_t outlen);

#endif /* WA_JWT_H */
