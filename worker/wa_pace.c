/*
 * See wa_pace.h.
 */

#include <stdlib.h>

#include "wa_pace.h"


int
wa_window_init(wa_window_t *w, int n)
{
    w->at = calloc(n, sizeof(long long));
    w->n = n;
    w->next = 0;

    /* an empty past: every slot long free */
    for (int i = 0; w->at && i < n; i++) {
        w->at[i] = -WA_PACE_WINDOW_MS;
    }

    return w->at ? 0 : -1;
}


void
wa_window_free(wa_window_t *w)
{
    free(w->at);
    w->at = NULL;
}


long long
wa_window_wait(const wa_window_t *w, long long now)
{
    long long  free_at;

    /* the n-th send before this one must be a window ago */
    free_at = w->at[w->next] + WA_PACE_WINDOW_MS;

    return free_at > now ? free_at - now : 0;
}


long long
wa_window_take(wa_window_t *w, long long now)
{
    long long  wait;

    wait = wa_window_wait(w, now);

    if (wait) {
        return wait;
    }

    w->at[w->next] = now;
    w->next = (w->next + 1) % w->n;

    return 0;
}


void
wa_window_left(wa_window_t *w, int k, long long now)
{
    int  slot;

    if (k > w->n) {
        k = w->n;
    }

    for (slot = w->next; k > 0; k--) {
        slot = (slot + w->n - 1) % w->n;

        if (w->at[slot] < now) {
            w->at[slot] = now;
        }
    }
}


void
wa_bucket_init(wa_bucket_t *b, int burst, long long now)
{
    b->tokens = burst;
    b->at = now;
}


static void
wa_bucket_refill(wa_bucket_t *b, int burst, double interval_ms, long long now)
{
    b->tokens += (double) (now - b->at) / interval_ms;
    b->at = now;

    if (b->tokens > burst) {
        b->tokens = burst;
    }
}


long long
wa_bucket_take(wa_bucket_t *b, int burst, double interval_ms, long long now)
{
    wa_bucket_refill(b, burst, interval_ms, now);

    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }

    return (long long) ((1.0 - b->tokens) * interval_ms) + 1;
}


int
wa_bucket_full(const wa_bucket_t *b, int burst, double interval_ms,
    long long now)
{
    return b->tokens + (double) (now - b->at) / interval_ms >= burst;
}
