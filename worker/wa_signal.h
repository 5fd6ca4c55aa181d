/*
 * Signals become flags the main loop reads between steps: SIGTERM and
 * SIGINT ask for a clean stop (finish the batch in hand, acknowledge,
 * exit), SIGHUP for a configuration reload.
 */

#ifndef WA_SIGNAL_H
#define WA_SIGNAL_H

#include <signal.h>

extern volatile sig_atomic_t  wa_signal_stop;
extern volatile sig_atomic_t  wa_signal_reload;

int wa_signal_init(void);

#endif /* WA_SIGNAL_H */
