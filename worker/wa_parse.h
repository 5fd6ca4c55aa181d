/*
 * Meta webhook payloads -> rows for wa_apply_batch() (sql/002_ingest.sql).
 *
 * Every entry[], changes[], messages[], statuses[], contacts[], errors[],
 * message_echoes[] and history[].threads[].messages[] element becomes a
 * row; the rows of a batch accumulate as JSON arrays, one per kind.  A
 * message or status keeps its whole object (content and raw), so fields
 * this parser does not know are never lost.
 */

#ifndef WA_PARSE_H
#define WA_PARSE_H

#include <stddef.h>

#include <yajl/yajl_gen.h>


typedef enum {
    WA_PARSE_OK = 0,
    WA_PARSE_UNKNOWN,       /* valid JSON, not a WhatsApp account object */
    WA_PARSE_INVALID        /* not JSON, or not an object */
} wa_parse_result_e;


typedef struct {
    yajl_gen  phones;
    yajl_gen  contacts;
    yajl_gen  messages;
    yajl_gen  statuses;
    yajl_gen  fields;
    yajl_gen  deliveries;
    size_t    rows;         /* messages + statuses + fields */
} wa_batch_t;


int wa_batch_init(wa_batch_t *b);
void wa_batch_free(wa_batch_t *b);

/*
 * Parses one delivery's body (NUL-terminated, len bytes) into rows.
 * On WA_PARSE_INVALID, err says why and no row was added.
 */
wa_parse_result_e wa_parse_delivery(wa_batch_t *b, const char *body,
    size_t len, char *err, size_t errlen);

/* Adds the webhook log row of a delivery; body_index is 1-based. */
void wa_batch_delivery(wa_batch_t *b, const char *stream_id,
    const char *rcvd, const char *rid, int body_index, const char *result,
    const char *error);

/*
 * The batch as one JSON object {"phones":[...],...}; malloc'd, the
 * caller frees.  NULL on allocation failure.
 */
char *wa_batch_json(wa_batch_t *b, size_t *len);

#endif /* WA_PARSE_H */
