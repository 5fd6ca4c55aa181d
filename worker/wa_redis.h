/*
 * The worker's side of the Redis contracts (ARCHITECTURE.md): reading
 * wa:events in the consumer group, acknowledging, dead-lettering and
 * publishing wa:updates.  Blocking hiredis: the worker has nothing else
 * to do while it waits for the next batch.
 */

#ifndef WA_REDIS_H
#define WA_REDIS_H

#include <hiredis/hiredis.h>

#include "wa_config.h"


#define WA_REDIS_GROUP  "workers"


typedef struct {
    const char  *id;
    const char  *body;
    size_t       body_len;
    const char  *rcvd;
    const char  *rid;
    int          wake;      /* no body: the API wrote outbox rows */
    const char  *cmd;       /* wa:outbox: the sender's doorbell (JSON) */
} wa_entry_t;


typedef struct {
    redisContext       *c;
    const wa_config_t  *cf;
    char                events[128];
    char                dead[128];
    char                updates[128];
    char                outbox[128];
    int                 bell_group;     /* the outbox group exists */
} wa_redis_t;


int wa_redis_connect(wa_redis_t *r, const wa_config_t *cf);
void wa_redis_close(wa_redis_t *r);

/*
 * Up to count entries: this consumer's own unacknowledged ones when
 * pending is set, else new ones (waiting up to block_ms if block is set).  The reply owns
 * the entries' memory; entries is malloc'd.  Returns the number of
 * entries, or -1 on a connection error.
 */
int wa_redis_read(wa_redis_t *r, int pending, int block, redisReply **reply,
    wa_entry_t **entries);

/* Entries idle past claim_idle_ms in a dead consumer's list, now ours. */
int wa_redis_claim(wa_redis_t *r, redisReply **reply, wa_entry_t **entries);

/*
 * How many times each of our entries (in stream order, as read) was
 * delivered, in one XPENDING over their id range; 0 for one not pending.
 * Returns 0, or -1 on a connection error.
 */
int wa_redis_deliveries(wa_redis_t *r, const wa_entry_t *entries, int n,
    long long *counts);

/* XACK and XDEL (trim behind acknowledgement) in one round trip. */
int wa_redis_ack(wa_redis_t *r, wa_entry_t *entries, int n);

/* XADD wa:dead with the entry's fields and the error. */
int wa_redis_dead(wa_redis_t *r, const wa_entry_t *e, const char *error);

/*
 * XADD to the capped wa:updates stream and PUBLISH "<id> <json>" on the
 * channel of the same name, for each (event, data) pair, atomically (one
 * Lua script).  parts holds n pairs: event, data, event, data...; lens
 * their lengths.  Returns 0 or -1.
 */
int wa_redis_publish(wa_redis_t *r, int n, const char **parts,
    const size_t *lens);

/*
 * Publishes outbox rows' events (lines "event TAB data LF", in order)
 * with wa_redis_publish.  Returns how many events, or -1.
 */
int wa_redis_publish_lines(wa_redis_t *r, int n, const char *const *texts);

/*
 * The sender's doorbells, read beside its transfers: wa_redis_bell_ask
 * writes an XREADGROUP of wa:outbox (group workers, created if missing)
 * without waiting; once the socket is readable, wa_redis_bell_take reads
 * what arrived: the number of entries (0 when none, or the answer is not
 * whole yet: *reply stays NULL then), or -1 on a connection error.
 */
int wa_redis_bell_ask(wa_redis_t *r, int count, int block_ms);
int wa_redis_bell_take(wa_redis_t *r, redisReply **reply,
    wa_entry_t **entries);

/* XACK and XDEL of doorbells (their work is in PostgreSQL already). */
int wa_redis_bell_ack(wa_redis_t *r, wa_entry_t *entries, int n);

/*
 * Rings the sender's doorbell once per line of commands (a JSON command
 * and a newline each), as the module does for POST /messages: the
 * messages are stored already, so a failure costs only latency.
 */
int wa_redis_bell_ring(wa_redis_t *r, const char *commands);

#endif /* WA_REDIS_H */
