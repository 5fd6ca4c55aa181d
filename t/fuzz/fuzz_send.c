/*
 * libFuzzer target: send request bodies come from agents.  Each input is
 * validated as a whole body.  Beyond not crashing, leaking or reading
 * past the input (it is given in a buffer of exactly its size), the
 * result keeps its contract: an accepted request has a well-formed
 * phone_number_id, E.164 "to", known type and idempotency key, and no
 * error; a refused one is all zero but for a non-empty message, and both
 * field and message are NUL-terminated printable ASCII without '"' or
 * '\\'.  The same input gives the same result twice.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wa_send.h"


static void fuzz_check(const wa_send_request_t *req, int rc);
static void fuzz_printable(const char *s, size_t size);
static void fuzz_digits(const char *s, size_t min, size_t max);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc, again;
    wa_send_request_t  *req, *req2;

    req = malloc(sizeof(wa_send_request_t));
    req2 = malloc(sizeof(wa_send_request_t));

    if (req == NULL || req2 == NULL) {
        abort();
    }

    /* garbage in, so a field left unwritten would show */
    memset(req, 0xa5, sizeof(wa_send_request_t));

    rc = wa_send_validate(data, size, req);
    fuzz_check(req, rc);

    again = wa_send_validate(data, size, req2);

    if (again != rc || memcmp(req, req2, sizeof(wa_send_request_t)) != 0) {
        abort();
    }

    free(req);
    free(req2);

    return 0;
}


static void
fuzz_check(const wa_send_request_t *req, int rc)
{
    static const char  *types[] = {
        "text", "image", "video", "audio", "document", "sticker", "location",
        "contacts", "reaction", "template", "interactive", NULL
    };

    size_t                    i;
    wa_send_request_t         zero;

    fuzz_printable(req->field, sizeof(req->field));
    fuzz_printable(req->message, sizeof(req->message));

    if (rc == -1) {
        if (req->message[0] == '\0') {
            abort();
        }

        /* not a JSON object at all: the body as a whole is at fault */
        if ((req->malformed != 0 && req->malformed != 1)
            || (req->malformed && req->field[0] != '\0'))
        {
            abort();
        }

        memset(&zero, 0, sizeof(wa_send_request_t));
        memcpy(zero.field, req->field, sizeof(zero.field));
        memcpy(zero.message, req->message, sizeof(zero.message));
        zero.malformed = req->malformed;

        if (memcmp(&zero, req, sizeof(wa_send_request_t)) != 0) {
            abort();
        }

        return;
    }

    if (rc != 0 || req->field[0] != '\0' || req->message[0] != '\0') {
        abort();
    }

    fuzz_digits(req->phone_number_id, 1, 32);

    /* "+" and digits, or a business-scoped user id ("US.1349...") */
    if (req->to[0] == '+') {
        if (req->to[1] == '0') {
            abort();
        }

        fuzz_digits(req->to + 1, 8, 15);

    } else if (req->to[0] < 'A' || req->to[0] > 'Z'
               || req->to[1] < 'A' || req->to[1] > 'Z' || req->to[2] != '.'
               || strspn(req->to + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "abcdefghijklmnopqrstuvwxyz"
                                      "0123456789") != strlen(req->to + 3)
               || strlen(req->to + 3) < 1 || strlen(req->to + 3) > 128)
    {
        abort();
    }

    for (i = 0; types[i] != NULL; i++) {
        if (strcmp(req->type, types[i]) == 0) {
            break;
        }
    }

    if (types[i] == NULL
        || req->free_form != (strcmp(req->type, "template") != 0)
        || (req->bulk != 0 && req->bulk != 1))
    {
        abort();
    }

    for (i = 0; req->idempotency_key[i] != '\0'; i++) {
        if (i >= 128 || req->idempotency_key[i] <= 0x20
            || req->idempotency_key[i] >= 0x7f)
        {
            abort();
        }
    }
}


static void
fuzz_printable(const char *s, size_t size)
{
    size_t  i;

    for (i = 0; i < size && s[i] != '\0'; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') {
            abort();
        }
    }

    if (i == size) {
        abort();
    }
}


static void
fuzz_digits(const char *s, size_t min, size_t max)
{
    size_t  n;

    n = strspn(s, "0123456789");

    if (n < min || n > max || s[n] != '\0') {
        abort();
    }
}
