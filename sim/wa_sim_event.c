/*
 * The epoll loop, its cached clocks, and timers in a binary heap.
 * Level-triggered: a handler that leaves bytes unread is called again.
 */

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "wa_sim.h"


#define WA_SIM_EVENTS  512


static void wa_sim_heap_swap(size_t i, size_t j);
static void wa_sim_heap_up(size_t i);
static void wa_sim_heap_down(size_t i);
static void wa_sim_timers_expire(void);
static void wa_sim_deferred_free(void);
static int wa_sim_next_timeout(void);


uint64_t  wa_sim_now;
int64_t   wa_sim_epoch_ms;

static int               wa_sim_ep = -1;

static wa_sim_timer_t  **wa_sim_heap;
static size_t            wa_sim_heap_n;
static size_t            wa_sim_heap_cap;

static void            **wa_sim_deferred;
static size_t            wa_sim_deferred_n;
static size_t            wa_sim_deferred_cap;


int
wa_sim_event_init(void)
{
    wa_sim_ep = epoll_create1(EPOLL_CLOEXEC);
    if (wa_sim_ep == -1) {
        return -1;
    }

    wa_sim_time_update();

    return 0;
}


void
wa_sim_event_done(void)
{
    wa_sim_deferred_free();
    free(wa_sim_deferred);
    free(wa_sim_heap);
    wa_sim_deferred = NULL;
    wa_sim_heap = NULL;
    wa_sim_heap_n = 0;

    if (wa_sim_ep != -1) {
        close(wa_sim_ep);
        wa_sim_ep = -1;
    }
}


void
wa_sim_time_update(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    wa_sim_now = (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    clock_gettime(CLOCK_REALTIME, &ts);
    wa_sim_epoch_ms = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


int
wa_sim_event_add(wa_sim_event_t *ev, uint32_t mask)
{
    struct epoll_event  ee;

    ee.events = mask;
    ee.data.ptr = ev;
    ev->mask = mask;

    return epoll_ctl(wa_sim_ep, EPOLL_CTL_ADD, ev->fd, &ee);
}


int
wa_sim_event_mod(wa_sim_event_t *ev, uint32_t mask)
{
    struct epoll_event  ee;

    if (ev->mask == mask) {
        return 0;
    }

    ee.events = mask;
    ee.data.ptr = ev;
    ev->mask = mask;

    return epoll_ctl(wa_sim_ep, EPOLL_CTL_MOD, ev->fd, &ee);
}


/* close() removes the fd from the epoll set. */
void
wa_sim_event_close(wa_sim_event_t *ev)
{
    if (ev->fd != -1) {
        close(ev->fd);
        ev->fd = -1;
    }
}


void
wa_sim_defer_free(void *p)
{
    if (wa_sim_deferred_n == wa_sim_deferred_cap) {
        wa_sim_deferred_cap = wa_sim_deferred_cap ? 2 * wa_sim_deferred_cap
                                                  : 64;
        wa_sim_deferred = realloc(wa_sim_deferred,
                                  wa_sim_deferred_cap * sizeof(void *));
        if (wa_sim_deferred == NULL) {
            abort();
        }
    }

    wa_sim_deferred[wa_sim_deferred_n++] = p;
}


static void
wa_sim_deferred_free(void)
{
    size_t  i;

    for (i = 0; i < wa_sim_deferred_n; i++) {
        free(wa_sim_deferred[i]);
    }

    wa_sim_deferred_n = 0;
}


void
wa_sim_event_process(void)
{
    int                  i, n;
    wa_sim_event_t      *ev;
    struct epoll_event   events[WA_SIM_EVENTS];

    n = epoll_wait(wa_sim_ep, events, WA_SIM_EVENTS, wa_sim_next_timeout());
    if (n == -1) {
        if (errno != EINTR) {
            wa_sim_log("epoll_wait: %s", strerror(errno));
        }

        n = 0;
    }

    wa_sim_time_update();

    for (i = 0; i < n; i++) {
        ev = events[i].data.ptr;

        /* closed by an earlier handler of this turn (freed after it) */
        if (ev->fd != -1) {
            ev->handler(ev, events[i].events);
        }
    }

    wa_sim_timers_expire();
    wa_sim_deferred_free();
}


static int
wa_sim_next_timeout(void)
{
    uint64_t  when;

    if (wa_sim_heap_n == 0) {
        return -1;
    }

    when = wa_sim_heap[0]->when;

    if (when <= wa_sim_now) {
        return 0;
    }

    /* the clock is read after the wait: never wake a millisecond early */
    return when - wa_sim_now > INT_MAX ? INT_MAX : (int) (when - wa_sim_now);
}


static void
wa_sim_timers_expire(void)
{
    wa_sim_timer_t  *t;

    while (wa_sim_heap_n && wa_sim_heap[0]->when <= wa_sim_now) {
        t = wa_sim_heap[0];
        wa_sim_timer_del(t);
        t->handler(t);
    }
}


void
wa_sim_timer_at(wa_sim_timer_t *t, uint64_t when)
{
    if (t->slot) {
        wa_sim_timer_del(t);
    }

    if (wa_sim_heap_n == wa_sim_heap_cap) {
        wa_sim_heap_cap = wa_sim_heap_cap ? 2 * wa_sim_heap_cap : 256;
        wa_sim_heap = realloc(wa_sim_heap,
                              wa_sim_heap_cap * sizeof(wa_sim_timer_t *));
        if (wa_sim_heap == NULL) {
            abort();
        }
    }

    t->when = when;
    t->slot = ++wa_sim_heap_n;
    wa_sim_heap[t->slot - 1] = t;
    wa_sim_heap_up(t->slot - 1);
}


void
wa_sim_timer_del(wa_sim_timer_t *t)
{
    size_t           i;
    wa_sim_timer_t  *last;

    if (t->slot == 0) {
        return;
    }

    i = t->slot - 1;
    t->slot = 0;
    wa_sim_heap_n--;

    if (i == wa_sim_heap_n) {
        return;
    }

    /* the last timer fills the hole, then finds its place either way */
    last = wa_sim_heap[wa_sim_heap_n];
    wa_sim_heap[i] = last;
    last->slot = i + 1;
    wa_sim_heap_up(i);
    wa_sim_heap_down(last->slot - 1);
}


static void
wa_sim_heap_swap(size_t i, size_t j)
{
    wa_sim_timer_t  *t;

    t = wa_sim_heap[i];
    wa_sim_heap[i] = wa_sim_heap[j];
    wa_sim_heap[j] = t;
    wa_sim_heap[i]->slot = i + 1;
    wa_sim_heap[j]->slot = j + 1;
}


static void
wa_sim_heap_up(size_t i)
{
    size_t  parent;

    while (i > 0) {
        parent = (i - 1) / 2;

        if (wa_sim_heap[parent]->when <= wa_sim_heap[i]->when) {
            return;
        }

        wa_sim_heap_swap(i, parent);
        i = parent;
    }
}


static void
wa_sim_heap_down(size_t i)
{
    size_t  l, r, min;

    for ( ;; ) {
        l = 2 * i + 1;
        r = l + 1;
        min = i;

        if (l < wa_sim_heap_n
            && wa_sim_heap[l]->when < wa_sim_heap[min]->when)
        {
            min = l;
        }

        if (r < wa_sim_heap_n
            && wa_sim_heap[r]->when < wa_sim_heap[min]->when)
        {
            min = r;
        }

        if (min == i) {
            return;
        }

        wa_sim_heap_swap(i, min);
        i = min;
    }
}
