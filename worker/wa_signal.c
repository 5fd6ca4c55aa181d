/*
 * Signal handling; see wa_signal.h.
 */

#include <string.h>

#include "wa_signal.h"


volatile sig_atomic_t  wa_signal_stop;
volatile sig_atomic_t  wa_signal_reload;


static void
wa_signal_handler(int signo)
{
    if (signo == SIGHUP) {
        wa_signal_reload = 1;

    } else {
        wa_signal_stop = 1;
    }
}


int
wa_signal_init(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);

    /* no SA_RESTART: a blocking read returns so the loop sees the flag */
    sa.sa_handler = wa_signal_handler;

    if (sigaction(SIGTERM, &sa, NULL) != 0
        || sigaction(SIGINT, &sa, NULL) != 0
        || sigaction(SIGHUP, &sa, NULL) != 0)
    {
        return -1;
    }

    sa.sa_handler = SIG_IGN;

    return sigaction(SIGPIPE, &sa, NULL);
}
