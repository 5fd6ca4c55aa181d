/*
 * Unit tests of common/wa_signature.c against vectors computed
 * independently (openssl dgst -sha256 -hmac).
 */

#include <string.h>

#include "tap.h"
#include "wa_signature.h"


#define S(lit)  (const unsigned char *) (lit), sizeof(lit) - 1

/* printf '%s' '{"a":1}' | openssl dgst -sha256 -hmac s3cret */
#define BODY     "{\"a\":1}"
#define GOOD     "sha256=" \
                 "5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d"


static void
test_parse(void)
{
    unsigned char  d[WA_SHA256_LEN];
    char           sig[80];

    ok(wa_signature_parse(S("sha256=" "00112233445566778899aabbccddeeff"
                            "00112233445566778899AABBCCDDEEFF"), d) == 0,
       "64 hex digits, either case");
    ok(d[0] == 0x00 && d[1] == 0x11 && d[15] == 0xff && d[31] == 0xff,
       "decoded bytes");

    ok(wa_signature_parse(S(""), d) == -1, "empty");
    ok(wa_signature_parse(S("sha256="), d) == -1, "prefix only");
    ok(wa_signature_parse(S("sha1=0011223344556677889900112233445566778899"),
                          d) == -1, "sha1");

    memset(sig, '0', sizeof(sig));
    memcpy(sig, "sha256=", 7);
    ok(wa_signature_parse((unsigned char *) sig, 7 + 64, d) == 0,
       "all zeros");
    ok(wa_signature_parse((unsigned char *) sig, 7 + 63, d) == -1,
       "63 digits");
    ok(wa_signature_parse((unsigned char *) sig, 7 + 65, d) == -1,
       "65 digits");

    sig[40] = 'g';
    ok(wa_signature_parse((unsigned char *) sig, 7 + 64, d) == -1, "g");
    sig[40] = ' ';
    ok(wa_signature_parse((unsigned char *) sig, 7 + 64, d) == -1, "space");
    sig[40] = '@';
    ok(wa_signature_parse((unsigned char *) sig, 7 + 64, d) == -1,
       "'@' (one below 'A')");
    sig[40] = '`';
    ok(wa_signature_parse((unsigned char *) sig, 7 + 64, d) == -1,
       "'`' (one below 'a')");
    sig[40] = '0';
    memcpy(sig, "SHA256=", 7);
    ok(wa_signature_parse((unsigned char *) sig, 7 + 64, d) == -1,
       "upper-case prefix");
}


static void
test_match(void)
{
    unsigned char   d[WA_SHA256_LEN], computed[WA_SHA256_LEN];
    wa_hmac_key_t  *keys[3];

    keys[0] = wa_hmac_key_new(S("old"));
    keys[1] = wa_hmac_key_new(S("s3cret"));
    keys[2] = wa_hmac_key_new(S("newer"));
    ok(keys[0] && keys[1] && keys[2], "keys prepared");

    ok(wa_signature_parse(S(GOOD), d) == 0, "vector parses");
    ok(wa_signature_compute(keys[1], S(BODY), computed) == 0
       && memcmp(computed, d, WA_SHA256_LEN) == 0,
       "HMAC-SHA256 matches openssl's");

    ok(wa_signature_match(d, S(BODY), keys, 3) == 1,
       "the second key of a rotation matches");
    ok(wa_signature_match(d, S(BODY), keys + 1, 1) == 0, "single key");
    ok(wa_signature_match(d, S(BODY), keys, 1) == -1, "wrong key");
    ok(wa_signature_match(d, S("{\"a\":2}"), keys, 3) == -1, "other body");
    ok(wa_signature_match(d, S(BODY " "), keys, 3) == -1,
       "one byte more");
    ok(wa_signature_match(d, S(BODY), keys, 0) == -1, "no keys");

    /* the same key used twice keeps answering the same */
    ok(wa_signature_match(d, S(BODY), keys, 3) == 1, "repeatable");

    wa_hmac_key_free(keys[0]);
    wa_hmac_key_free(keys[1]);
    wa_hmac_key_free(keys[2]);
    wa_hmac_key_free(NULL);
}


static void
test_secret_equal(void)
{
    ok(wa_secret_equal(S("token"), S("token")), "equal");
    ok(!wa_secret_equal(S("token"), S("tokeN")), "differs in the last byte");
    ok(!wa_secret_equal(S("token"), S("token2")), "prefix is not equal");
    ok(!wa_secret_equal(S(""), S("token")), "empty vs token");
    ok(wa_secret_equal(S(""), S("")), "empty vs empty");
}


static void
test_challenge(void)
{
    char  long_challenge[WA_CHALLENGE_MAX + 1];

    ok(wa_challenge_is_plain(S("1158201444")), "digits");
    ok(wa_challenge_is_plain(S("aZ09._~-")), "unreserved characters");
    ok(!wa_challenge_is_plain(S("")), "empty");
    ok(!wa_challenge_is_plain(S("<script>")), "markup");
    ok(!wa_challenge_is_plain(S("a b")), "space");
    ok(!wa_challenge_is_plain(S("a\r\nb")), "CRLF");
    ok(!wa_challenge_is_plain(S("caf\xc3\xa9")), "non-ASCII");
    ok(!wa_challenge_is_plain(S("a\0b")), "NUL");

    memset(long_challenge, '7', sizeof(long_challenge));
    ok(wa_challenge_is_plain((unsigned char *) long_challenge,
                             WA_CHALLENGE_MAX), "longest allowed");
    ok(!wa_challenge_is_plain((unsigned char *) long_challenge,
                              WA_CHALLENGE_MAX + 1), "one too long");
}


static void
test_unicode_escape(void)
{
    long           n;
    unsigned char  out[64];

#define ESCAPES(in, want)                                                 \
    n = wa_unicode_escape(S(in), out);                                   \
    ok(n == (long) sizeof(want) - 1 && memcmp(out, want, n) == 0,        \
       "escape %s", want)

    ESCAPES("plain \\/ ascii", "plain \\/ ascii");
    ESCAPES("\xc3\xa4\xc3\xb6\xc3\xa5", "\\u00e4\\u00f6\\u00e5");
    ESCAPES("caf\xc3\xa9", "caf\\u00e9");
    ESCAPES("\xe2\x80\x94", "\\u2014");
    ESCAPES("\xf0\x9f\x98\x80", "\\ud83d\\ude00");
    ESCAPES("\xf4\x8f\xbf\xbf", "\\udbff\\udfff");

    ok(wa_unicode_escape(S("\xc3"), out) == -1, "truncated sequence");
    ok(wa_unicode_escape(S("\x80"), out) == -1, "lone continuation byte");
    ok(wa_unicode_escape(S("\xc0\xaf"), out) == -1, "overlong '/'");
    ok(wa_unicode_escape(S("\xed\xa0\x80"), out) == -1, "UTF-8 surrogate");
    ok(wa_unicode_escape(S("\xf4\x90\x80\x80"), out) == -1,
       "beyond U+10FFFF");
    ok(wa_unicode_escape(S("\xff"), out) == -1, "0xff");
}


int
main(void)
{
    test_parse();
    test_match();
    test_secret_equal();
    test_challenge();
    test_unicode_escape();

    return done_testing();
}
