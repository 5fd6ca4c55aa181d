/*
 * The sender: a thread of whatsapp-worker with its own loop and its own
 * connections (Redis, PostgreSQL, the Graph API), so that neither the
 * ingest loop's batches nor the sender's requests ever wait on the other.
 *
 * PostgreSQL holds what is to be sent (sql/007_send.sql); wa:outbox
 * entries are doorbells that start it at once.  Each message is claimed
 * (`sending`) just before its request leaves, so that after a crash
 * nothing Meta may have accepted is sent again; Meta's answers are
 * applied in rounds, one transaction each, and published.
 */

#ifndef WA_SENDER_H
#define WA_SENDER_H

#include "wa_config.h"


typedef struct wa_sender_s  wa_sender_t;


/* Starts the thread with a copy of cf; NULL on failure (logged). */
wa_sender_t *wa_sender_start(const wa_config_t *cf);

/* A reloaded configuration, taken at the thread's next turn. */
void wa_sender_reload(wa_sender_t *s, const wa_config_t *cf);

/*
 * Once wa_signal_stop is set: waits for the thread, which lets the
 * requests in flight finish (a bounded while), records their outcomes
 * and exits; then frees it.
 */
void wa_sender_stop(wa_sender_t *s);

#endif /* WA_SENDER_H */
