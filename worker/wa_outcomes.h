/*
 * The sender's outcomes of a round of requests, kept until PostgreSQL
 * has recorded them (wa_send_results, sql/007_send.sql).  Each is also
 * counted in the worker's metrics as it is added (wa_metrics.h).
 */

#ifndef WA_OUTCOMES_H
#define WA_OUTCOMES_H


#define WA_OUTCOME_KEY_MAX  160     /* a message id (uuid) or a wamid */


typedef enum {
    WA_OUT_ACCEPTED = 0,
    WA_OUT_FAILED,
    WA_OUT_UNKNOWN,
    WA_OUT_QUEUED,
    WA_OUT_RECEIPT_SENT,
    WA_OUT_RECEIPT_FAILED,
    WA_OUT_RECEIPT_QUEUED,
    WA_OUT_PAUSED,              /* key: the number Meta refused the token of */
    WA_OUT_HELD                 /* queued again as WA_OUT_QUEUED, not for a
                                   retryable answer: its number is paused */
} wa_outcome_e;


typedef struct {
    wa_outcome_e   kind;
    int            code;
    char           key[WA_OUTCOME_KEY_MAX];  /* id, wamid or phone number */
    char           text[256];                /* wamid or title */
} wa_outcome_t;


typedef struct {
    wa_outcome_t  *list;
    int            n;
    int            cap;
} wa_outcomes_t;


/*
 * 0, or -1 when out of memory.  Counted either way (what Meta answered
 * does not depend on our memory); WA_OUT_PAUSED also adds the number to
 * the metrics' paused set.
 */
int wa_outcomes_add(wa_outcomes_t *outcomes, wa_outcome_e kind,
    const char *key, int code, const char *text);

/*
 * As wa_send_results takes them: {"accepted": [...], "failed": [...],
 * "unknown", "queued", "receipts", "paused"}, each outcome in its kind's
 * list.  malloc'd, NULL when out of memory.
 */
char *wa_outcomes_json(const wa_outcomes_t *outcomes);

void wa_outcomes_free(wa_outcomes_t *outcomes);

#endif /* WA_OUTCOMES_H */
