/*
 * whatsapp-worker: drains wa:events into PostgreSQL, exactly once in
 * effect, and publishes realtime updates.
 *
 * One loop, one batch at a time:
 *   read up to `batch` entries (XREADGROUP)
 *   -> parse each body (yajl) into rows
 *   -> apply them (wa_apply_batch), split by customer into shares
 *      applied side by side, one transaction each; the realtime events
 *      go to update_outbox (one row per share) in the same transaction
 *      and come back as the call's result
 *   -> publish them to wa:updates, then delete the outbox row
 *   -> XACK and XDEL the entries.
 * An outbox row not published (Redis away, a crash) is published by a
 * sweep: at start, after a failed publish and with every claim.
 * Nothing is acknowledged before it is committed; a crash anywhere
 * replays the batch, and the idempotent apply absorbs the replay.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <yajl/yajl_version.h>

#include "wa_config.h"
#include "wa_db.h"
#include "wa_log.h"
#include "wa_metrics.h"
#include "wa_parse.h"
#include "wa_redis.h"
#include "wa_sender.h"
#include "wa_signal.h"
#include "wa_token.h"


#define WA_WORKER_VERSION      "0.1.0"
#define WA_BACKOFF_MIN_MS      100
#define WA_BACKOFF_MAX_MS      5000
#define WA_RETAIN_EVERY_MS     3600000
#define WA_OUTBOX_CHUNK        16       /* outbox rows: a batch's events each */
#define WA_DONE_MAX            64
#define WA_SPLIT_MIN           64       /* entries: fewer, one transaction */


typedef struct {
    const char  *config_path;
    wa_config_t  cf;
    wa_redis_t   redis;
    wa_db_t      db[WA_SHARDS_MAX];  /* [0]: everything; each [i]: share i
                                        of a batch (postgres.connections) */
    unsigned     applying;           /* the connections a batch is sent on */
    long         backoff_ms;
    int          sweep;         /* unpublished outbox rows may be left */
    wa_sender_t *sender;        /* its own thread; NULL: not sending */

    /* outbox rows published, deleted by the next apply's transaction */
    long long    done[WA_DONE_MAX];
    int          ndone;
    int          ndone_sent;    /* of them, named in the apply in flight */

    /* the apply in flight's entries by webhook log result (ok, invalid,
     * unknown): counted in the metrics once it commits */
    unsigned long long  parsed[3];
} wa_worker_t;


/* A batch sent to PostgreSQL; owns its entries until acknowledged. */
typedef struct {
    redisReply  *reply;
    wa_entry_t  *entries;
    int          n;
    PGresult    *events[WA_SHARDS_MAX];  /* once landed: to publish */
    int          failed;        /* once landed: entries stay pending */
} wa_batch_in_flight_t;


/* A batch parsed, to be sent: its rows by share and its raw bodies. */
typedef struct {
    wa_batch_t          b;
    const char        **bodies;     /* the entries' bodies, log rows' order */
    int                *lens;
    int                 m;          /* log rows */
    unsigned long long  parsed[3];  /* entries by webhook log result */
} wa_batch_parsed_t;


static int wa_worker_run(wa_worker_t *w);
static int wa_worker_connect(wa_worker_t *w);
static void wa_worker_reload(wa_worker_t *w);
static void wa_worker_land(wa_worker_t *w, wa_batch_in_flight_t *flight);
static int wa_worker_finish(wa_worker_t *w, wa_batch_in_flight_t *flight);
static void wa_worker_announce(wa_worker_t *w, PGresult **events);
static void wa_worker_forget(wa_worker_t *w);
static void wa_worker_done_ids(wa_worker_t *w, char *ids);
static void wa_worker_count(wa_worker_t *w, wa_db_result_e rc);
static int wa_token_command(wa_worker_t *w, int argc, char **argv);
static int wa_worker_batch(wa_worker_t *w, wa_entry_t *entries, int n,
    int check_deliveries);
static int wa_worker_commit(wa_worker_t *w, wa_entry_t *entries, int n,
    wa_db_result_e rc, char *err, size_t errlen);
static wa_db_result_e wa_worker_apply(wa_worker_t *w, wa_entry_t *entries,
    int n, const char *only_dead_error, char *err, size_t errlen);
static wa_db_result_e wa_worker_send(wa_worker_t *w, wa_entry_t *entries,
    int n, const char *only_dead_error, char *err, size_t errlen);
static int wa_worker_parse(wa_worker_t *w, wa_entry_t *entries, int n,
    const char *only_dead_error, wa_batch_parsed_t *p);
static wa_db_result_e wa_worker_submit(wa_worker_t *w, wa_batch_parsed_t *p,
    char *err, size_t errlen);
static void wa_batch_parsed_free(wa_batch_parsed_t *p);
static wa_db_result_e wa_worker_result(wa_worker_t *w, PGresult **events,
    char *err, size_t errlen);
static int wa_worker_apply_singly(wa_worker_t *w, wa_entry_t *entries,
    int n);
static int wa_worker_wait_db(wa_worker_t *w, const char *err);
static int wa_worker_sweep(wa_worker_t *w);
static int wa_worker_publish(wa_worker_t *w, PGresult *rows);
static void wa_worker_sleep(wa_worker_t *w);
static long long wa_now_ms(void);
static void wa_usage(FILE *out);


int
main(int argc, char **argv)
{
    int             c, check, rc;
    char            err[512];
    wa_worker_t     w;
    wa_log_level_e  level;

    static struct option  options[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };

    memset(&w, 0, sizeof(w));
    check = 0;

    while ((c = getopt_long(argc, argv, "c:thV", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            w.config_path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'h':
            wa_usage(stdout);
            return 0;
        case 'V':
            printf("whatsapp-worker %s\n", WA_WORKER_VERSION);
            return 0;
        default:
            wa_usage(stderr);
            return 2;
        }
    }

    if (optind < argc && strcmp(argv[optind], "migrate") != 0
        && strcmp(argv[optind], "token") != 0)
    {
        fprintf(stderr, "whatsapp-worker: unknown command \"%s\"\n",
                argv[optind]);
        wa_usage(stderr);
        return 2;
    }

    if (wa_config_load(&w.cf, w.config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "whatsapp-worker: %s\n", err);
        return 2;
    }

    if (check) {
        wa_config_print(&w.cf);
        return 0;
    }

    (void) wa_log_parse_level(w.cf.worker_log_level, &level);
    wa_log_level = level;

    if (wa_signal_init() != 0) {
        wa_log_error("cannot install signal handlers");
        return 1;
    }

    if (optind < argc && strcmp(argv[optind], "token") == 0) {
        return wa_token_command(&w, argc - optind - 1, argv + optind + 1);
    }

    if (optind < argc) {
        /* migrate */
        if (wa_db_connect(&w.db[0], w.cf.postgres_conninfo) != 0) {
            return 1;
        }

        rc = wa_db_migrate(&w.db[0], w.cf.worker_sql_dir);
        wa_db_close(&w.db[0]);

        return rc == 0 ? 0 : 1;
    }

    wa_log_info("whatsapp-worker %s starting: consumer %s, hiredis %d.%d.%d, "
                "libpq %d, yajl %d, %s", WA_WORKER_VERSION,
                w.cf.worker_consumer, HIREDIS_MAJOR, HIREDIS_MINOR,
                HIREDIS_PATCH, PQlibVersion(), yajl_version(),
                curl_version());

    /* before any thread: libcurl's global state is not thread-safe */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        wa_log_error("libcurl cannot be initialized");
        return 1;
    }

    /* a port in use stops the start, before anything else is under way */
    if (wa_metrics_start(w.cf.worker_metrics_listen, WA_WORKER_VERSION)
        != 0)
    {
        curl_global_cleanup();
        return 1;
    }

    if (w.cf.sender_enabled) {
        w.sender = wa_sender_start(&w.cf);

        if (w.sender == NULL) {
            wa_metrics_stop();
            curl_global_cleanup();
            return 1;
        }
    }

    rc = wa_worker_run(&w);

    /* the ingest loop saw the stop; the sender sees it too */
    wa_signal_stop = 1;
    wa_sender_stop(w.sender);

    /* after the sender: it counts until it stops */
    wa_metrics_stop();
    curl_global_cleanup();

    wa_redis_close(&w.redis);

    for (c = 0; c < WA_SHARDS_MAX; c++) {
        wa_db_close(&w.db[c]);
    }

    wa_log_info("whatsapp-worker stopped");

    return rc;
}


static void
wa_usage(FILE *out)
{
    fprintf(out,
        "Usage: whatsapp-worker [options] [migrate | token set ID]\n"
        "\n"
        "Drains the wa:events Redis stream into PostgreSQL, publishes\n"
        "realtime updates to wa:updates, and sends what the API queued\n"
        "through the Graph API.\n"
        "\n"
        "  -c, --config FILE   configuration file (INI); WA_<SECTION>_<NAME>\n"
        "                      environment variables override it\n"
        "  -t, --check-config  print the effective configuration and exit\n"
        "  -h, --help          this text\n"
        "  -V, --version       print the version\n"
        "\n"
        "  migrate             apply the SQL migrations in worker.sql_dir\n"
        "  token set ID        store the access token (read from standard\n"
        "                      input) of the business phone number ID,\n"
        "                      sealed with sender.token_key\n"
        "\n"
        "Signals: TERM/INT finish the batch in hand and exit; HUP reloads\n"
        "the configuration.\n");
}


static int
wa_worker_run(wa_worker_t *w)
{
    int           i, n, pending, parsed, schema_checked, retained;
    char          err[512];     /* a failed send: the slow path says why */
    long long     now, last_claim, last_retain;
    wa_batch_in_flight_t  flight, landed;
    wa_batch_parsed_t     next;
    wa_db_result_e        schema, sent;
    wa_entry_t   *entries;
    redisReply   *reply;

    pending = 1;              /* our own unacknowledged entries first */
    schema_checked = 0;
    retained = 0;             /* today's log partition before any insert */
    last_claim = 0;
    last_retain = 0;
    w->sweep = 1;             /* what a crash left unpublished */
    memset(&flight, 0, sizeof(flight));

    while (!wa_signal_stop) {

        now = wa_now_ms();

        /* housekeeping due: the batch in flight lands first */
        if (flight.n
            && (wa_signal_reload || w->sweep
                || now - last_retain >= WA_RETAIN_EVERY_MS
                || now - last_claim >= w->cf.worker_claim_idle_ms / 2))
        {
            wa_worker_land(w, &flight);
            pending |= wa_worker_finish(w, &flight);
        }

        if (flight.n == 0) {

            if (wa_signal_reload) {
                wa_signal_reload = 0;
                wa_worker_reload(w);
            }

            if (wa_worker_connect(w) != 0) {
                wa_worker_sleep(w);
                continue;
            }

            if (!schema_checked) {
                schema = wa_db_check_schema(&w->db[0], w->cf.worker_sql_dir);

                if (schema == WA_DB_REJECT) {
                    return 1;
                }

                if (schema == WA_DB_RETRY) {
                    wa_worker_sleep(w);
                    continue;
                }

                schema_checked = 1;
            }

            /* events committed by a batch whose publish did not happen;
             * those published are deleted first, not published again */
            if (w->sweep) {
                wa_worker_forget(w);
            }

            if (w->sweep && wa_worker_sweep(w) != 0) {
                wa_worker_sleep(w);
                continue;
            }

            if (!retained || now - last_retain >= WA_RETAIN_EVERY_MS) {
                if (wa_db_retain(&w->db[0], w->cf.worker_log_retention_days)
                    == WA_DB_OK)
                {
                    retained = 1;
                    last_retain = now;
                }
            }

            if (now - last_claim >= w->cf.worker_claim_idle_ms / 2) {
                last_claim = now;
                w->sweep = 1;       /* a dead worker's outbox rows too */
                n = wa_redis_claim(&w->redis, &reply, &entries);

                if (n > 0) {
                    wa_metrics_add(WA_M_ENTRIES_READ, n);
                    wa_log_info("claimed %d entries left by another "
                                "consumer", n);
                    (void) wa_worker_batch(w, entries, n, 1);
                }

                free(entries);
                freeReplyObject(reply);
                continue;
            }
        }

        /* with a batch in flight, only what is there already: its events
         * are published as soon as it is committed */
        n = wa_redis_read(&w->redis, pending, flight.n == 0, &reply,
                          &entries);

        if (n > 0) {
            wa_metrics_add(WA_M_ENTRIES_READ, n);
        }

        landed = flight;
        memset(&flight, 0, sizeof(flight));

        /* the next batch is parsed while PostgreSQL still applies the
         * landing one, so that it goes there as soon as that one lands */
        parsed = (n > 0 && !pending
                  && wa_worker_parse(w, entries, n, NULL, &next) == 0);

        if (landed.n) {
            wa_worker_land(w, &landed);
            pending |= landed.failed;
        }

        for (i = 0; i < n; i++) {
            w->sweep |= entries[i].wake;
        }

        if (n < 0) {
            wa_worker_sleep(w);

        } else if (n == 0 && pending) {
            pending = 0;
        }

        /* the next batch goes to PostgreSQL before the landed one is
         * published and acknowledged: Redis' work overlaps PostgreSQL's */
        if (n > 0 && !pending) {
            if (parsed) {
                sent = wa_worker_submit(w, &next, err, sizeof(err));

            } else {
                snprintf(err, sizeof(err), "out of memory");
                sent = WA_DB_RETRY;
            }

            if (sent == WA_DB_OK) {
                flight.reply = reply;
                flight.entries = entries;
                flight.n = n;
                n = 0;

            } else {
                /* applied again below, the slow way */
                wa_worker_count(w, sent);
            }
        }

        if (parsed) {
            wa_batch_parsed_free(&next);
        }

        if (landed.n) {
            pending |= wa_worker_finish(w, &landed);
        }

        if (n > 0 && wa_worker_batch(w, entries, n, pending) != 0) {
            /* unacknowledged: read again from our pending list */
            pending = 1;
        }

        if (flight.n == 0) {
            free(entries);

            if (reply) {
                freeReplyObject(reply);
            }

            /* idle: nothing will carry the deletions soon */
            if (n <= 0) {
                wa_worker_forget(w);
            }
        }
    }

    if (flight.n) {
        wa_worker_land(w, &flight);
        (void) wa_worker_finish(w, &flight);
    }

    wa_worker_forget(w);

    return 0;
}


/*
 * Waits for the batch in flight to commit; on failure, applies it the
 * slow way (wa_worker_commit), which publishes its own events.
 */
static void
wa_worker_land(wa_worker_t *w, wa_batch_in_flight_t *flight)
{
    char            err[512];
    wa_db_result_e  applied;

    applied = wa_worker_result(w, flight->events, err, sizeof(err));
    wa_worker_count(w, applied);

    flight->failed = (applied != WA_DB_OK
                      && wa_worker_commit(w, flight->entries, flight->n,
                                          applied, err, sizeof(err)) != 0);
}


/*
 * A landed batch: publishes its events and acknowledges its entries.
 * Returns 0, or 1 when they stay pending (to be read again).
 */
static int
wa_worker_finish(wa_worker_t *w, wa_batch_in_flight_t *flight)
{
    int  rc;

    wa_worker_announce(w, flight->events);

    rc = (!flight->failed
          && wa_redis_ack(&w->redis, flight->entries, flight->n) == 0)
         ? 0 : 1;

    if (rc == 0) {
        wa_metrics_add(WA_M_BATCHES, 1);
    }

    free(flight->entries);
    freeReplyObject(flight->reply);
    memset(flight, 0, sizeof(*flight));

    return rc;
}


/* Every connection up, or -1 (logged) after one attempt each. */
static int
wa_worker_connect(wa_worker_t *w)
{
    int  i;

    if (w->redis.c == NULL && wa_redis_connect(&w->redis, &w->cf) != 0) {
        return -1;
    }

    for (i = 0; i < w->cf.postgres_connections; i++) {
        if (w->db[i].conn == NULL
            && wa_db_connect(&w->db[i], w->cf.postgres_conninfo) != 0)
        {
            return -1;
        }
    }

    if (w->backoff_ms) {
        wa_log_info("connected to Redis and PostgreSQL again");
        w->backoff_ms = 0;
    }

    return 0;
}


static void
wa_worker_reload(wa_worker_t *w)
{
    int             i;
    char            err[512];
    wa_config_t     cf;
    wa_log_level_e  level;

    if (wa_config_load(&cf, w->config_path, err, sizeof(err)) != 0) {
        wa_log_error("reload refused, keeping the running configuration: %s",
                     err);
        return;
    }

    /* the listening socket is made once, before any thread */
    if (strcmp(cf.worker_metrics_listen, wa_metrics_listening()) != 0) {
        wa_log_warn("worker.metrics_listen \"%s\" takes effect at the next "
                    "restart; metrics stay %s%s", cf.worker_metrics_listen,
                    wa_metrics_listening()[0] ? "on " : "off",
                    wa_metrics_listening());
    }

    w->cf = cf;
    (void) wa_log_parse_level(cf.worker_log_level, &level);
    wa_log_level = level;

    if (w->sender) {
        wa_sender_reload(w->sender, &cf);
    }

    /* reconnect with whatever changed */
    wa_redis_close(&w->redis);

    for (i = 0; i < WA_SHARDS_MAX; i++) {
        wa_db_close(&w->db[i]);
    }

    wa_log_info("configuration reloaded");
}


/*
 * One batch: persist, publish, acknowledge.  Returns 0 when every entry
 * was acknowledged, -1 when they stay pending (to be read again).
 */
static int
wa_worker_batch(wa_worker_t *w, wa_entry_t *entries, int n,
    int check_deliveries)
{
    int              i, kept;
    char             err[512], why[128];
    long long       *deliveries;
    wa_db_result_e   rc;

    /* an entry that keeps coming back (it crashed us, or kept failing)
     * goes to wa:dead instead of blocking the queue */
    kept = n;
    deliveries = NULL;

    if (check_deliveries) {
        deliveries = malloc(n * sizeof(long long));

        if (deliveries == NULL
            || wa_redis_deliveries(&w->redis, entries, n, deliveries) != 0)
        {
            free(deliveries);
            return -1;
        }
    }

    for (i = 0; deliveries && i < n; i++) {
        if (deliveries[i] > w->cf.worker_max_deliveries) {
            snprintf(why, sizeof(why), "delivered %lld times without "
                     "success", deliveries[i]);
            wa_log_error("entry %s %s: dead-lettered", entries[i].id, why);

            /* PostgreSQL away: later.  PostgreSQL refusing even the log
             * row (a broken schema, a bug): wa:dead still keeps the
             * entry, rather than the queue spinning on it */
            rc = wa_worker_apply(w, &entries[i], 1, why, err, sizeof(err));

            if (rc == WA_DB_REJECT) {
                wa_log_error("entry %s is not in the webhook log (%s): in "
                             "wa:dead only", entries[i].id, err);
            }

            if (rc == WA_DB_RETRY
                || wa_redis_dead(&w->redis, &entries[i], why) != 0)
            {
                free(deliveries);
                return -1;
            }

            wa_metrics_add(WA_M_ENTRIES_DEAD, 1);
            entries[i].body = NULL;
            kept--;
        }
    }

    free(deliveries);

    rc = kept ? wa_worker_apply(w, entries, n, NULL, err, sizeof(err))
              : WA_DB_OK;

    if (wa_worker_commit(w, entries, n, rc, err, sizeof(err)) != 0
        || wa_redis_ack(&w->redis, entries, n) != 0)
    {
        return -1;
    }

    wa_metrics_add(WA_M_BATCHES, 1);

    return 0;
}


/*
 * Entries whose first apply gave rc, until committed: a batch refused is
 * applied one entry at a time; with PostgreSQL away, wait and try again.
 * Returns 0, or -1 when asked to stop first.
 */
static int
wa_worker_commit(wa_worker_t *w, wa_entry_t *entries, int n,
    wa_db_result_e rc, char *err, size_t errlen)
{
    for ( ;; ) {
        if (rc == WA_DB_OK) {
            return 0;
        }

        if (rc == WA_DB_REJECT) {
            wa_log_warn("batch of %d refused (%s): applying one by one", n,
                        err);
            return wa_worker_apply_singly(w, entries, n);
        }

        /* PostgreSQL away: keep the batch, wait, try again */
        if (wa_worker_wait_db(w, err) != 0) {
            return -1;
        }

        rc = wa_worker_apply(w, entries, n, NULL, err, errlen);
    }
}


/* Applies entries and publishes what they changed: send, then result. */
static wa_db_result_e
wa_worker_apply(wa_worker_t *w, wa_entry_t *entries, int n,
    const char *only_dead_error, char *err, size_t errlen)
{
    PGresult        *events[WA_SHARDS_MAX];
    wa_db_result_e   rc;

    rc = wa_worker_send(w, entries, n, only_dead_error, err, errlen);

    if (rc == WA_DB_OK) {
        rc = wa_worker_result(w, events, err, errlen);

        /* the shares committed, even when another failed */
        wa_worker_announce(w, events);
    }

    wa_worker_count(w, rc);

    return rc;
}


/*
 * The apply just answered rc: its entries counted once committed (a
 * batch not wholly committed is applied again, and counted then), or
 * the failure.
 */
static void
wa_worker_count(wa_worker_t *w, wa_db_result_e rc)
{
    if (rc == WA_DB_OK) {
        wa_metrics_add(WA_M_ENTRIES_OK, w->parsed[0]);
        wa_metrics_add(WA_M_ENTRIES_INVALID, w->parsed[1]);
        wa_metrics_add(WA_M_ENTRIES_UNKNOWN, w->parsed[2]);

    } else {
        wa_metrics_add(rc == WA_DB_RETRY ? WA_M_APPLY_RETRY
                                         : WA_M_APPLY_REFUSED, 1);
    }

    memset(w->parsed, 0, sizeof(w->parsed));
}


/* Parses and sends entries to be applied: see the two halves. */
static wa_db_result_e
wa_worker_send(wa_worker_t *w, wa_entry_t *entries, int n,
    const char *only_dead_error, char *err, size_t errlen)
{
    wa_batch_parsed_t  p;
    wa_db_result_e     rc;

    if (wa_worker_parse(w, entries, n, only_dead_error, &p) != 0) {
        snprintf(err, errlen, "out of memory");
        return WA_DB_RETRY;
    }

    rc = wa_worker_submit(w, &p, err, errlen);
    wa_batch_parsed_free(&p);

    return rc;
}


/*
 * Parses the entries (those with a body; NULL marks one handled already)
 * into p.  With only_dead_error set, only their webhook log rows are
 * written, with that error: for entries dead-lettered.  Returns 0, or -1
 * out of memory.
 *
 * The rows are split by customer into one share per connection, each
 * applied in its own transaction: two shares never touch the same
 * conversation, message or contact, so PostgreSQL runs them side by side
 * (one transaction's conversation updates made the next wait).  Share 0
 * also carries the webhook log, the other fields and the outbox rows
 * done.  All or nothing is not needed across shares: a batch not wholly
 * committed is applied again, and the apply is idempotent.  A batch whose
 * customers all fell in one share is one transaction (wa_batch_fold).
 *
 * A batch of fewer than WA_SPLIT_MIN entries is not split: a share costs
 * PostgreSQL about 2 ms of its own (the call, the commit) whatever it
 * holds, more than a few webhooks' rows.  At 1,000 webhooks/s the worker
 * reads batches of a few entries, and the split made each of them two
 * such transactions (bench/sse-e2e: p50 15 to 20 ms split, 6 to 8 ms
 * not).
 */
static int
wa_worker_parse(wa_worker_t *w, wa_entry_t *entries, int n,
    const char *only_dead_error, wa_batch_parsed_t *p)
{
    int                 i;
    char                perr[256];
    const char         *result, *rcvd;
    wa_parse_result_e   pr;

    memset(p, 0, sizeof(*p));

    if (wa_batch_init(&p->b, n < WA_SPLIT_MIN ? 1
                                               : w->cf.postgres_connections)
        != 0)
    {
        return -1;
    }

    p->bodies = calloc(n, sizeof(char *));
    p->lens = calloc(n, sizeof(int));

    if (p->bodies == NULL || p->lens == NULL) {
        wa_batch_parsed_free(p);
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (entries[i].body == NULL && only_dead_error == NULL) {
            continue;
        }

        p->bodies[p->m] = entries[i].body ? entries[i].body : "";
        p->lens[p->m] = entries[i].body ? (int) entries[i].body_len : 0;
        p->m++;

        if (only_dead_error) {
            result = "dead";
            perr[0] = '\0';

        } else {
            pr = wa_parse_delivery(&p->b, entries[i].body,
                                   entries[i].body_len, perr, sizeof(perr));
            result = (pr == WA_PARSE_OK) ? "ok"
                     : (pr == WA_PARSE_UNKNOWN) ? "unknown" : "invalid";
            p->parsed[(pr == WA_PARSE_OK) ? 0
                      : (pr == WA_PARSE_UNKNOWN) ? 2 : 1]++;

            if (pr != WA_PARSE_INVALID) {
                perr[0] = '\0';

            } else {
                wa_log_warn("entry %s is not a webhook payload: %s",
                            entries[i].id, perr);
            }
        }

        /* the module writes ms since the epoch; anything else is unknown */
        rcvd = entries[i].rcvd;

        if (rcvd && rcvd[strspn(rcvd, "0123456789")] != '\0') {
            rcvd = NULL;
        }

        wa_batch_delivery(&p->b, entries[i].id, rcvd, entries[i].rid, p->m,
                          result, only_dead_error ? only_dead_error
                                  : perr[0] ? perr : NULL);
    }

    wa_batch_fold(&p->b);

    return 0;
}


/*
 * Sends a parsed batch's shares, each on its connection, without waiting
 * for their answers (wa_worker_result).  A share that cannot be sent
 * fails the batch: the shares sent before it are waited for and what
 * they committed published.
 */
static wa_db_result_e
wa_worker_submit(wa_worker_t *w, wa_batch_parsed_t *p, char *err,
    size_t errlen)
{
    int              i;
    char            *json, why[256];
    char             done[WA_DONE_MAX * 21 + 3];
    size_t           len;
    PGresult        *events[WA_SHARDS_MAX];
    wa_db_result_e   rc;

    memcpy(w->parsed, p->parsed, sizeof(w->parsed));
    wa_worker_done_ids(w, done);
    w->applying = 0;
    rc = WA_DB_OK;

    for (i = 0; rc == WA_DB_OK && i < p->b.nshards; i++) {
        if (!wa_batch_shard_used(&p->b, i)) {
            continue;
        }

        json = wa_batch_json(&p->b, i, &len);

        if (json == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = WA_DB_RETRY;
            break;
        }

        rc = (i == 0)
             ? wa_db_apply_send(&w->db[0], json, p->m, p->bodies, p->lens,
                                w->cf.worker_consumer, done, err, errlen)
             : wa_db_apply_send(&w->db[i], json, 0, NULL, NULL,
                                w->cf.worker_consumer, "{}", err, errlen);
        free(json);

        if (rc == WA_DB_OK) {
            w->applying |= 1u << i;
        }
    }

    w->ndone_sent = (w->applying & 1) ? w->ndone : 0;

    /* the shares already sent are committed or not; either way their
     * answers are read now, and what they committed published */
    if (rc != WA_DB_OK && w->applying) {
        (void) wa_worker_result(w, events, why, sizeof(why));
        wa_worker_announce(w, events);
    }

    return rc;
}


static void
wa_batch_parsed_free(wa_batch_parsed_t *p)
{
    free(p->bodies);
    free(p->lens);
    wa_batch_free(&p->b);
    memset(p, 0, sizeof(*p));
}


/*
 * The answers to wa_worker_send, one per share sent.  events[i] holds
 * share i's outbox row, to announce, or NULL (not sent, or failed).
 * Once share 0 is committed, the outbox rows it deleted are forgotten.
 * Any share failed: the worst result, and the first error in err.
 */
static wa_db_result_e
wa_worker_result(wa_worker_t *w, PGresult **events, char *err,
    size_t errlen)
{
    int             i;
    char            why[512];
    wa_db_result_e  rc, one;

    rc = WA_DB_OK;

    for (i = 0; i < WA_SHARDS_MAX; i++) {
        events[i] = NULL;

        if (!(w->applying & (1u << i))) {
            continue;
        }

        one = wa_db_call_result(&w->db[i], "wa_apply_batch", &events[i],
                                why, sizeof(why));

        if (one == WA_DB_OK && i == 0) {
            w->ndone -= w->ndone_sent;
            memmove(w->done, w->done + w->ndone_sent,
                    w->ndone * sizeof(long long));
        }

        if (one != WA_DB_OK && rc == WA_DB_OK) {
            snprintf(err, errlen, "%s", why);
        }

        /* a connection lost may pass, a refusal never does */
        if (one == WA_DB_RETRY || rc == WA_DB_OK) {
            rc = one;
        }
    }

    w->applying = 0;
    w->ndone_sent = 0;

    return rc;
}


/*
 * Publishes a committed batch's events, share by share, rings the
 * sender's doorbell for the auto-replies they queued, and frees them;
 * their outbox rows are deleted by the next apply (or wa_worker_forget
 * when idle).  A failed publish leaves the rows to a sweep.
 */
static void
wa_worker_announce(wa_worker_t *w, PGresult **events)
{
    int  i, published;

    for (i = 0; i < WA_SHARDS_MAX; i++) {
        if (events[i] == NULL) {
            continue;
        }

        published = wa_worker_publish(w, events[i]);

        if (published < 0) {
            wa_log_warn("batch applied, publishing deferred");
            w->sweep = 1;

        } else if (!PQgetisnull(events[i], 0, 0)) {
            wa_log_debug("batch applied: %d realtime events", published);

            /* full (applies failing for long): the row is published again
             * by a sweep, at least once as always */
            if (w->ndone < WA_DONE_MAX) {
                w->done[w->ndone++] = strtoll(PQgetvalue(events[i], 0, 0),
                                              NULL, 10);
            }
        }

        /* auto-replies: stored, to be sent now */
        if (!PQgetisnull(events[i], 0, 2)
            && wa_redis_bell_ring(&w->redis, PQgetvalue(events[i], 0, 2))
               != 0)
        {
            wa_log_warn("auto-replies queued; the sender finds them at its "
                        "next sweep");
        }

        PQclear(events[i]);
        events[i] = NULL;
    }
}


/* Deletes the published outbox rows now, when no apply will soon. */
static void
wa_worker_forget(wa_worker_t *w)
{
    char  ids[WA_DONE_MAX * 21 + 3];

    if (w->ndone == 0 || w->db[0].conn == NULL) {
        return;
    }

    wa_worker_done_ids(w, ids);

    if (wa_db_outbox_delete(&w->db[0], ids) == WA_DB_OK) {
        w->ndone = 0;
    }
}


/* The published outbox rows as a bigint[] literal. */
static void
wa_worker_done_ids(wa_worker_t *w, char *ids)
{
    int    i;
    char  *p;

    p = ids;
    *p++ = '{';

    for (i = 0; i < w->ndone; i++) {
        p += sprintf(p, "%s%lld", i ? "," : "", w->done[i]);
    }

    strcpy(p, "}");
}


/*
 * A batch PostgreSQL refused: find the entries at fault, keep the rest.
 * An entry refused on its own is dead-lettered with the reason.
 */
static int
wa_worker_apply_singly(wa_worker_t *w, wa_entry_t *entries, int n)
{
    int              i;
    char             err[512], why[512];
    wa_db_result_e   rc;

    for (i = 0; i < n; i++) {
        if (entries[i].body == NULL) {
            continue;
        }

        while ((rc = wa_worker_apply(w, &entries[i], 1, NULL, err,
                                     sizeof(err)))
               == WA_DB_RETRY)
        {
            if (wa_worker_wait_db(w, err) != 0) {
                return -1;
            }
        }

        if (rc == WA_DB_OK) {
            continue;
        }

        wa_log_error("entry %s refused: %s: dead-lettered", entries[i].id,
                     err);

        memcpy(why, err, sizeof(why));

        if (wa_worker_apply(w, &entries[i], 1, why, err, sizeof(err))
            != WA_DB_OK
            || wa_redis_dead(&w->redis, &entries[i], why) != 0)
        {
            return -1;
        }

        wa_metrics_add(WA_M_ENTRIES_DEAD, 1);
    }

    return 0;
}


/*
 * A statement failed for a reason that may pass (PostgreSQL away, a
 * deadlock): wait and reconnect if needed.  -1 when asked to stop: the
 * batch stays unacknowledged, to be read again.
 */
static int
wa_worker_wait_db(wa_worker_t *w, const char *err)
{
    int  i;

    wa_log_error("%s; retrying", err);

    if (wa_signal_stop) {
        return -1;
    }

    wa_worker_sleep(w);

    for (i = 0; i < w->cf.postgres_connections; i++) {
        if (w->db[i].conn == NULL) {
            (void) wa_db_connect(&w->db[i], w->cf.postgres_conninfo);
        }
    }

    return 0;
}


/* Publishes outbox rows left unpublished, oldest first, until none is. */
static int
wa_worker_sweep(wa_worker_t *w)
{
    int        n;
    PGresult  *rows;

    for ( ;; ) {
        if (wa_db_outbox_take(&w->db[0], w->cf.worker_consumer,
                              w->cf.worker_claim_idle_ms, WA_OUTBOX_CHUNK,
                              &rows)
            != WA_DB_OK)
        {
            return -1;
        }

        n = PQntuples(rows);

        if (n == 0) {
            PQclear(rows);
            wa_db_outbox_abort(&w->db[0]);
            w->sweep = 0;
            return 0;
        }

        if (wa_worker_publish(w, rows) < 0) {
            PQclear(rows);
            wa_db_outbox_abort(&w->db[0]);
            return -1;
        }

        if (wa_db_outbox_done(&w->db[0], rows) != WA_DB_OK) {
            PQclear(rows);
            return -1;
        }

        PQclear(rows);
    }
}


/*
 * Publishes outbox rows (id, events) to wa:updates, in order.  Returns
 * how many events, or -1.
 */
static int
wa_worker_publish(wa_worker_t *w, PGresult *rows)
{
    int           i, n, rc;
    const char  **texts;

    n = PQntuples(rows);

    texts = malloc((n ? n : 1) * sizeof(char *));
    if (texts == NULL) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        texts[i] = PQgetvalue(rows, i, 1);
    }

    rc = wa_redis_publish_lines(&w->redis, n, texts);

    free(texts);

    return rc;
}


/* Exponential backoff, cut short by a stop signal. */
static void
wa_worker_sleep(wa_worker_t *w)
{
    struct timespec  ts;

    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : WA_BACKOFF_MIN_MS;

    if (w->backoff_ms > WA_BACKOFF_MAX_MS) {
        w->backoff_ms = WA_BACKOFF_MAX_MS;
    }

    ts.tv_sec = w->backoff_ms / 1000;
    ts.tv_nsec = (w->backoff_ms % 1000) * 1000000;

    if (!wa_signal_stop) {
        (void) nanosleep(&ts, NULL);
    }
}


static long long
wa_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/*
 * whatsapp-worker token set ID: the token from standard input (one line;
 * never an argument, which ps and shell histories show), sealed, stored;
 * a paused number's sends go on.
 */
static int
wa_token_command(wa_worker_t *w, int argc, char **argv)
{
    int             rc, formats[2], lengths[2];
    char            err[512], token[WA_TOKEN_MAX + 2];
    size_t          len;
    PGresult       *res;
    const char     *values[2];
    unsigned char   key[WA_TOKEN_KEY_LEN];
    unsigned char   sealed[WA_TOKEN_SEALED_LEN(WA_TOKEN_MAX)];

    if (argc != 2 || strcmp(argv[0], "set") != 0 || argv[1][0] == '\0'
        || strspn(argv[1], "0123456789") != strlen(argv[1]))
    {
        fprintf(stderr, "whatsapp-worker: usage: token set PHONE_NUMBER_ID "
                "(digits), the token on standard input\n");
        return 2;
    }

    rc = wa_config_token_key(&w->cf, key, err, sizeof(err));

    if (rc != 0) {
        fprintf(stderr, "whatsapp-worker: %s\n", rc < 0 ? err
                : "no token key: set sender.token_key_file (or "
                  "WA_SENDER_TOKEN_KEY) to 64 hex digits");
        return 2;
    }

    if (fgets(token, sizeof(token), stdin) == NULL) {
        fprintf(stderr, "whatsapp-worker: no token on standard input\n");
        return 2;
    }

    len = strcspn(token, "\r\n");
    token[len] = '\0';

    if (len == 0 || len > WA_TOKEN_MAX
        || wa_token_seal(key, argv[1], token, len, sealed) != 0)
    {
        fprintf(stderr, "whatsapp-worker: the token must be 1 to %d "
                "characters on one line\n", WA_TOKEN_MAX);
        OPENSSL_cleanse(token, sizeof(token));
        return 2;
    }

    OPENSSL_cleanse(token, sizeof(token));
    OPENSSL_cleanse(key, sizeof(key));

    if (wa_db_connect(&w->db[0], w->cf.postgres_conninfo) != 0) {
        return 1;
    }

    values[0] = argv[1];
    values[1] = (const char *) sealed;
    lengths[0] = 0;
    lengths[1] = (int) WA_TOKEN_SEALED_LEN(len);
    formats[0] = 0;
    formats[1] = 1;

    rc = wa_db_call(&w->db[0], "wa_send_token_set",
                    "SELECT wa_send_token_set($1, $2::bytea)", 2, values,
                    lengths, formats, &res, err, sizeof(err));
    wa_db_close(&w->db[0]);

    if (rc != WA_DB_OK) {
        fprintf(stderr, "whatsapp-worker: %s\n", err);
        return 1;
    }

    PQclear(res);
    printf("access token of %s stored, sealed\n", argv[1]);

    return 0;
}
