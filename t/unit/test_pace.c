/*
 * Unit tests of worker/wa_pace.c: a number's window never lets more than
 * its rate through in any window, counted from when the sends left.
 */

#include <stdio.h>

#include "tap.h"
#include "wa_pace.h"


int
main(void)
{
    int          i, taken;
    wa_window_t  w;

    ok(wa_window_init(&w, 3) == 0, "a window of 3");

    /* an empty past: three at once, not a fourth */
    for (i = 0, taken = 0; i < 4; i++) {
        taken += (wa_window_take(&w, 1000) == 0);
    }

    ok(taken == 3, "3 of 4 taken at once (%d)", taken);
    ok(wa_window_wait(&w, 1000) == WA_PACE_WINDOW_MS,
       "the fourth waits a whole window (%lld ms)",
       wa_window_wait(&w, 1000));
    ok(wa_window_take(&w, 1000 + WA_PACE_WINDOW_MS) == 0,
       "... and goes once it has passed");

    /* the last two taken left 300 ms after they were counted: the
     * window runs from then for them, not for the one before */
    wa_window_free(&w);
    ok(wa_window_init(&w, 3) == 0, "a new window of 3");
    (void) wa_window_take(&w, 0);
    (void) wa_window_take(&w, 100);
    (void) wa_window_take(&w, 100);
    wa_window_left(&w, 2, 400);

    ok(wa_window_wait(&w, WA_PACE_WINDOW_MS) == 0,
       "the first, which left when counted, frees its slot on time");
    ok(wa_window_take(&w, WA_PACE_WINDOW_MS) == 0, "... taken");
    ok(wa_window_wait(&w, 100 + WA_PACE_WINDOW_MS) == 300,
       "the next waits for the window from when it left (%lld ms)",
       wa_window_wait(&w, 100 + WA_PACE_WINDOW_MS));

    /* never earlier than counted, and no more than the window holds */
    wa_window_left(&w, 10, 0);
    ok(wa_window_wait(&w, 100 + WA_PACE_WINDOW_MS) == 300,
       "a departure before the count moves nothing");

    wa_window_free(&w);

    return done_testing();
}
