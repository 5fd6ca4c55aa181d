/*
 * Agent send requests: validation of a POST /messages body against the
 * shapes and limits of Meta's Cloud API send endpoint, before anything is
 * queued, so that a mistake is a 400 naming the field rather than a
 * "failed" status webhook minutes later.
 *
 * Shared by the NGINX module and the tests; depends on yajl 2 only.  No
 * global state and no logging; every call frees what it allocated before
 * it returns.
 */

#ifndef WA_SEND_H
#define WA_SEND_H

#include <stddef.h>


#define WA_SEND_FIELD_MAX    128
#define WA_SEND_MESSAGE_MAX  192


typedef struct {
    char  phone_number_id[33];    /* 1..32 digits */
    char  to[132];                /* "+" and 8..15 digits, or a
                                     business-scoped user id ("US.…") */
    char  type[24];               /* "text", "template", ... */
    char  idempotency_key[129];   /* "" when not given */
    int   free_form;              /* 1 unless a template: needs the
                                     24-hour window */
    int   bulk;                   /* priority "bulk" */

    /*
     * On error: where, as a path such as
     * "interactive.action.buttons[2].reply.title", and why, such as "is
     * longer than 20 characters"; for the body as a whole, field is "" and
     * message says "the body ...", e.g. "the body is not valid JSON:
     * trailing garbage".  Both are printable ASCII without '"' or '\\',
     * so they can be put in a JSON string as they are: bytes of a member
     * name that are not are shown as '?', and a path too long is cut.
     */
    char  field[WA_SEND_FIELD_MAX];
    char  message[WA_SEND_MESSAGE_MAX];
    int   malformed;              /* on error: the body is not one JSON
                                     object (empty, not JSON, another
                                     value), as opposed to a field wrong */
} wa_send_request_t;


/*
 * Checks a send request body: Meta's own send body (so that Meta's
 * examples can be pasted) with our "phone_number_id", "idempotency_key"
 * and "priority", where "to" must be E.164 with its "+" (or "recipient" a
 * business-scoped user id, instead), and
 * "biz_opaque_callback_data", which the gateway sets, is refused.  Every
 * object must have only the members documented for it, each of its
 * documented JSON type, within Meta's limits (counted in Unicode code
 * points); a member given twice is refused.  The body must be one JSON
 * object, UTF-8, without comments, NUL characters or nesting deeper than
 * 64.
 *
 * Returns 0 when valid, with out filled ("to" normalized to "+digits",
 * or the user id);
 * -1 when not, with out zeroed but for field, message and malformed.
 * body need not be NUL-terminated; out must not be NULL.
 */
int wa_send_validate(const unsigned char *body, size_t len,
    wa_send_request_t *out);

#endif /* WA_SEND_H */
