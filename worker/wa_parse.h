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


#define WA_SHARDS_MAX  8


/*
 * A share of the batch's conversations: the rows of the customers whose
 * id hashes to it (messages, their statuses, contacts).  Shares touch
 * disjoint rows, so they are applied side by side without waiting on
 * each other (wa_worker.c).
 */
typedef struct {
    yajl_gen  contacts;
    yajl_gen  messages;
    yajl_gen  statuses;
    size_t    rows;         /* messages, statuses, contacts[] */
} wa_shard_t;


/* What belongs to no customer (numbers, other fields, the webhook log)
 * goes with share 0. */
typedef struct {
    yajl_gen    phones;
    yajl_gen    fields;
    yajl_gen    deliveries;
    int         nshards;
    wa_shard_t  shard[WA_SHARDS_MAX];
} wa_batch_t;


/* nshards: 1 to WA_SHARDS_MAX. */
int wa_batch_init(wa_batch_t *b, int nshards);
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
 * One share of the batch as a JSON object {"phones":[...],...}, share 0
 * with the rows of no customer, the others with those arrays empty;
 * malloc'd, the caller frees.  NULL on allocation failure.  Once per
 * share: it closes the share's arrays.
 */
char *wa_batch_json(wa_batch_t *b, int shard, size_t *len);

/* Whether share has any row to apply (share 0: always). */
int wa_batch_shard_used(const wa_batch_t *b, int shard);

/*
 * Moves the rows of a batch that fell in one share only into share 0, so
 * that the batch is one transaction, not two.  Once parsed, before
 * wa_batch_json.
 */
void wa_batch_fold(wa_batch_t *b);

#endif /* WA_PARSE_H */
