/*
 * The worker's own metrics, served in Prometheus text format by a thread
 * of their own (worker.metrics_listen; worker/README.md, "Metrics").
 *
 * Counters are C11 atomics incremented with relaxed order from any
 * thread (the ingest loop, the sender): no lock on a hot path, and a
 * scrape needs no consistency between two counters.  The numbers whose
 * sends this process paused are a small set behind a mutex.
 */

#ifndef WA_METRICS_H
#define WA_METRICS_H

#include <stdatomic.h>
#include <sys/socket.h>


typedef enum {
    WA_M_ENTRIES_READ = 0,      /* wa:events entries read or claimed */
    WA_M_ENTRIES_OK,            /* committed, by webhook_log result */
    WA_M_ENTRIES_INVALID,
    WA_M_ENTRIES_UNKNOWN,
    WA_M_ENTRIES_DEAD,          /* added to wa:dead */
    WA_M_BATCHES,               /* batches acknowledged */
    WA_M_APPLY_RETRY,           /* applies not committed: tried again */
    WA_M_APPLY_REFUSED,         /* refused: applied entry by entry */
    WA_M_UPDATES_PUBLISHED,     /* realtime events to wa:updates */
    WA_M_SENDS_ACCEPTED,
    WA_M_SENDS_FAILED,
    WA_M_SENDS_UNKNOWN,
    WA_M_SENDS_RETRIED,
    WA_M_SENDS_PAUSED,
    WA_M_RECEIPTS_SENT,
    WA_M_RECEIPTS_FAILED,
    WA_M_RECEIPTS_RETRIED,
    WA_M_TOKEN_ERRORS,          /* pauses: Meta refused a number's token */
    WA_M_N
} wa_metric_e;


extern _Atomic unsigned long long  wa_metrics[WA_M_N];


static inline void
wa_metrics_add(wa_metric_e m, unsigned long long n)
{
    atomic_fetch_add_explicit(&wa_metrics[m], n, memory_order_relaxed);
}


/*
 * worker.metrics_listen: "" (off), "IPv4:PORT" or "[IPv6]:PORT", port 1
 * to 65535.  Returns 0 with the address in sa (if not NULL; its family
 * 0 when off), or -1.
 */
int wa_metrics_address(const char *addr, struct sockaddr_storage *sa,
    socklen_t *salen);

/*
 * Listens on addr (nothing when it is empty) and starts the thread
 * that answers GET /metrics.  Returns 0, or -1 (logged) when the address
 * cannot be listened on (in use, not local...).
 */
int wa_metrics_start(const char *addr, const char *version);

/* Stops and joins the thread; frees the paused set.  Always callable. */
void wa_metrics_stop(void);

/* The address listened on, "" when off: a reload cannot change it. */
const char *wa_metrics_listening(void);

/* Meta refused the number's token (code 190 or 0): its sends wait. */
void wa_metrics_paused(const char *phone_number_id, int code);

/* A new token lifted the pause (cheap when no number is paused). */
void wa_metrics_resumed(const char *phone_number_id);

#endif /* WA_METRICS_H */
