/*
 * Pacing, Meta's two limits (cloud-api-facts, section 6):
 *   a number's throughput, N messages a second: a sliding window of the
 *   last N send times, so no second ever holds more than N (a token
 *   bucket alone lets a full bucket plus a second's refill through), and
 *   a small bucket refilled at N/s that spreads them over the second: a
 *   burst of N at once reaches Meta spread by connection set-ups, and
 *   the next second's first ones would land in the same second there;
 *   the (business, consumer) pair rate, one message per ~6 s with short
 *   bursts borrowed: a token bucket per recipient.
 */

#ifndef WA_PACE_H
#define WA_PACE_H


/*
 * Our clock and Meta's are not the same clock, and a request waits a
 * little between its pacing and Meta, more under load: a window is this
 * much longer than a second (the pace is 95% of the rate).  20 ms was
 * not enough: a loaded test machine (ASan worker, 2 cores) let t/32 see
 * 81 in one second.
 */
#define WA_PACE_WINDOW_MS  1050


typedef struct {
    long long  *at;         /* ring of the last n send times */
    int         n;
    int         next;       /* the oldest slot, overwritten next */
} wa_window_t;


typedef struct {
    double      tokens;
    long long   at;         /* when tokens was counted */
} wa_bucket_t;


/* n sends per window; 0 or -1.  Resizing forgets the past. */
int wa_window_init(wa_window_t *w, int n);
void wa_window_free(wa_window_t *w);

/* 0: a send at now is allowed (wait) and counted (take); else the ms
 * to wait. */
long long wa_window_wait(const wa_window_t *w, long long now);
long long wa_window_take(wa_window_t *w, long long now);

/* The k sends taken last left at now, later than they were counted (a
 * claim in PostgreSQL came between): the window runs from when they left,
 * so the wait for the claim never lets a second at Meta hold more. */
void wa_window_left(wa_window_t *w, int k, long long now);

void wa_bucket_init(wa_bucket_t *b, int burst, long long now);

/* 0: taken; else the ms until a token (burst, one per interval_ms). */
long long wa_bucket_take(wa_bucket_t *b, int burst, double interval_ms,
    long long now);

/* Full again (nothing sent for long): may be forgotten. */
int wa_bucket_full(const wa_bucket_t *b, int burst, double interval_ms,
    long long now);

/* The spreading bucket's burst for a rate: a twentieth of a second's. */
#define WA_PACE_BURST(rate)  ((rate) >= 40 ? (rate) / 20 : 2)

#endif /* WA_PACE_H */
