/*
 * The sender's loop, one turn:
 *   take a reloaded configuration; (re)connect;
 *   every sweep_ms: queued rows without a doorbell, messages a dead
 *   sender left `sending`, lost answers Meta's webhooks resolved, and
 *   the numbers' tokens and throughput;
 *   ask Redis for doorbells (without waiting for the answer);
 *   release the delayed jobs that are due;
 *   dispatch: per number, as its pace and each recipient's allow, claim
 *   jobs in PostgreSQL and post them (wa_graph);
 *   wait for transfers, doorbells, the recording in flight or the next
 *   due time (curl_multi_poll);
 *   record the outcomes of the round in one transaction, on a connection
 *   of its own and without waiting for it; publish them once it is done.
 *
 * Memory: every job is owned by exactly one place (a number's queue, the
 * delayed list, the batch being claimed, or a transfer) and indexed by
 * key in s->jobs while it lives.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "wa_db.h"
#include "wa_graph.h"
#include "wa_json.h"
#include "wa_log.h"
#include "wa_map.h"
#include "wa_metrics.h"
#include "wa_outcomes.h"
#include "wa_pace.h"
#include "wa_redis.h"
#include "wa_sender.h"
#include "wa_signal.h"
#include "wa_token.h"


#define WA_KEY_MAX          WA_OUTCOME_KEY_MAX
#define WA_NUMBER_MAX       40
#define WA_TURN_MAX_MS      100     /* the longest wait of one turn */
#define WA_BELL_BLOCK_MS    1000
#define WA_BELLS_PER_READ   1000
#define WA_CLAIM_MAX        500     /* jobs claimed in one statement */
#define WA_SWEEP_LIMIT      1000
#define WA_DRAIN_MAX_MS     10000   /* at stop, transfers in flight */
#define WA_RECIPIENTS_MAX   100000


typedef struct wa_job_s        wa_job_t;
typedef struct wa_number_s     wa_number_t;
typedef struct wa_recipient_s  wa_recipient_t;


typedef struct {
    wa_job_t  *head;
    wa_job_t  *tail;
} wa_queue_t;


struct wa_number_s {
    wa_number_t   *next;
    char           id[WA_NUMBER_MAX];
    char          *token;           /* NULL: none stored, or unreadable */
    char           token_at[48];    /* its updated_at, as PostgreSQL says */
    int            paused;          /* Meta refused the token */
    int            warned;          /* that it has none, once */
    int            rate;
    wa_window_t    window;          /* no second over the rate */
    int            taken;           /* of it, by the dispatch under way */
    wa_bucket_t    spread;          /* the rate spread over the second */
    long long      hold_until;      /* Meta throttled it */
    int            strikes;         /* throttles in a row */
    wa_queue_t     agent;           /* agent replies, read receipts */
    wa_queue_t     bulk;            /* behind them */
};


struct wa_recipient_s {
    wa_bucket_t    bucket;          /* the pair rate */
    long long      hold_until;      /* 131056 */
    long long      due;             /* the latest due of its delayed jobs */
    int            strikes;
    int            jobs;            /* jobs pointing here */
};


struct wa_job_s {
    wa_job_t        *next;
    wa_number_t     *number;
    wa_recipient_t  *recipient;     /* messages; not read receipts */
    wa_sender_t     *sender;
    long long        due;           /* delayed: not before */
    unsigned         round;         /* its last outcome's recording */
    int              attempts;
    unsigned         read:1;        /* a read receipt */
    unsigned         bulk:1;
    unsigned         claimed:1;
    char             key[WA_KEY_MAX];
};


struct wa_sender_s {
    pthread_t         thread;
    pthread_mutex_t   lock;             /* reload */
    wa_config_t       cf;
    wa_config_t       next_cf;
    int               reload;

    unsigned char     key[WA_TOKEN_KEY_LEN];
    int               has_key;

    char              owner[300];       /* of its outbox rows */
    wa_redis_t        bell;             /* XREADGROUP BLOCK, in the loop */
    wa_redis_t        redis;            /* acknowledgements, publishing */
    int               bell_asked;
    wa_db_t           db;
    wa_job_t         *claiming[WA_CLAIM_MAX];  /* the claim in flight's */
    int               nclaiming;        /* 0: none in flight */
    wa_db_t           rec;              /* the outcomes' recordings */
    wa_graph_t       *graph;

    wa_number_t      *numbers;
    int               refresh;          /* a number we do not know */
    wa_map_t          jobs;             /* key -> job */
    wa_map_t          recipients;       /* number:address -> recipient */
    wa_job_t         *delayed;
    int               njobs;

    wa_outcomes_t     outcomes;         /* of the round, to record */
    unsigned          round;            /* ... in this recording */
    char             *recording;        /* the one sent (its JSON), of
                                           round - 1 */
    int               rec_sent;         /* ... and not answered yet */
    unsigned          recorded;         /* the last round recorded */

    long long         backoff_ms;
    long long         next_sweep;
    int               swept;            /* the first sweep was made */
};


static int wa_sender_key(wa_sender_t *s);
static void *wa_sender_main(void *arg);
static void wa_sender_turn(wa_sender_t *s);
static void wa_sender_configure(wa_sender_t *s);
static int wa_sender_connect(wa_sender_t *s);
static void wa_sender_wait(wa_sender_t *s, long long ms);
static void wa_sender_sweep(wa_sender_t *s, long long now);
static void wa_sender_evict(wa_sender_t *s, long long now);
static void wa_sender_numbers(wa_sender_t *s);
static wa_number_t *wa_sender_number(wa_sender_t *s, const char *id);
static void wa_sender_bells(wa_sender_t *s);
static void wa_sender_bell(wa_sender_t *s, const char *cmd);
static wa_job_t *wa_sender_job(wa_sender_t *s, int read, const char *key,
    const char *number, const char *to, int bulk);
static void wa_sender_release(wa_sender_t *s, long long now,
    long long *wake);
static void wa_sender_dispatch(wa_sender_t *s, long long now,
    long long *wake);
static void wa_sender_claim(wa_sender_t *s, wa_job_t **batch, int n,
    int read);
static void wa_sender_claimed(wa_sender_t *s, int wait);
static void wa_sender_unclaim(wa_job_t **batch, int n, const char *err);
static void wa_sender_claim_rows(wa_sender_t *s, wa_job_t **batch, int n,
    int read, PGresult *rows);
static void wa_sender_left(wa_sender_t *s);
static void wa_sender_post(wa_sender_t *s, wa_job_t *job,
    const char *body);
static void wa_sender_done(void *data, const wa_graph_result_t *res);
static void wa_sender_retry(wa_sender_t *s, wa_job_t *job,
    const wa_graph_result_t *res, long long delay);
static void wa_sender_outcome(wa_sender_t *s, wa_outcome_e kind,
    const char *key, int code, const char *text);
static void wa_sender_record(wa_sender_t *s);
static void wa_sender_recorded(wa_sender_t *s, int wait);
static void wa_sender_adopt(wa_sender_t *s);
static void wa_sender_publish(wa_sender_t *s, wa_db_t *db, PGresult *res);
static void wa_sender_forget(wa_sender_t *s, wa_job_t *job);
static void wa_sender_free(wa_sender_t *s);
static void wa_sender_requeue(wa_job_t *job);
static void wa_queue_push(wa_queue_t *q, wa_job_t *job);
static void wa_queue_push_front(wa_queue_t *q, wa_job_t *job);
static wa_job_t *wa_queue_pop(wa_queue_t *q);
static char *wa_sql_array(wa_job_t **jobs, int n);
static long long wa_sender_now(void);


wa_sender_t *
wa_sender_start(const wa_config_t *cf)
{
    int           rc;
    sigset_t      all, saved;
    wa_sender_t  *s;

    s = calloc(1, sizeof(wa_sender_t));
    if (s == NULL) {
        return NULL;
    }

    s->cf = *cf;
    s->round = 1;
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->owner, sizeof(s->owner), "%s/sender", cf->worker_consumer);

    if (wa_sender_key(s) != 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }

    if (wa_map_init(&s->jobs, 1024) != 0
        || wa_map_init(&s->recipients, 1024) != 0)
    {
        wa_sender_free(s);
        return NULL;
    }

    /* signals are the main thread's: its blocking reads must see them */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    rc = pthread_create(&s->thread, NULL, wa_sender_main, s);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);

    if (rc != 0) {
        wa_log_error("sender: cannot start its thread: %s", strerror(rc));
        wa_sender_free(s);
        return NULL;
    }

    return s;
}


void
wa_sender_reload(wa_sender_t *s, const wa_config_t *cf)
{
    pthread_mutex_lock(&s->lock);
    s->next_cf = *cf;
    s->reload = 1;
    pthread_mutex_unlock(&s->lock);
}


void
wa_sender_stop(wa_sender_t *s)
{
    if (s == NULL) {
        return;
    }

    pthread_join(s->thread, NULL);
    wa_sender_free(s);
}


/*
 * The token key from the configuration: 0 (none is not an error: sends
 * wait), or -1 when it is set but unreadable (the key in hand is kept).
 */
static int
wa_sender_key(wa_sender_t *s)
{
    int   rc;
    char  err[512];

    rc = wa_config_token_key(&s->cf, s->key, err, sizeof(err));

    if (rc < 0) {
        wa_log_error("sender: %s", err);
        return -1;
    }

    s->has_key = (rc == 0);

    if (!s->has_key) {
        wa_log_info("sender: no token key (sender.token_key or "
                    "sender.token_key_file): no access token can be read, "
                    "messages wait queued");
    }

    return 0;
}


static void *
wa_sender_main(void *arg)
{
    wa_sender_t  *s = arg;
    long long     until;

    wa_log_info("sender: sending to %s/%s, %d messages/s per number "
                "(%d once Meta raises it), %d requests in flight at most",
                s->cf.sender_graph_url, s->cf.sender_graph_version,
                s->cf.sender_rate, s->cf.sender_high_rate,
                s->cf.sender_concurrency);

    while (!wa_signal_stop) {
        wa_sender_turn(s);
    }

    /* what is in flight finishes (or is cut off), its outcomes recorded */
    wa_sender_claimed(s, 1);
    until = wa_sender_now() + WA_DRAIN_MAX_MS;

    while (s->graph && wa_graph_in_flight(s->graph) > 0
           && wa_sender_now() < until)
    {
        (void) wa_graph_run(s->graph, NULL, 0, WA_TURN_MAX_MS);
    }

    if (s->graph && wa_graph_in_flight(s->graph) > 0) {
        wa_log_warn("sender: %d requests still without an answer at stop: "
                    "their messages stay `sending` and become `unknown`",
                    wa_graph_in_flight(s->graph));
    }

    wa_sender_recorded(s, 1);

    for (int i = 0; i < 3 && (s->outcomes.n || s->recording); i++) {
        if (s->rec.conn == NULL) {
            (void) wa_db_connect(&s->rec, s->cf.postgres_conninfo);
        }

        wa_sender_record(s);
        wa_sender_recorded(s, 1);
    }

    wa_log_info("sender: stopped");

    return NULL;
}


static void
wa_sender_turn(wa_sender_t *s)
{
    int                 nextra, bell, rec, claim;
    long long           now, wake;
    struct curl_waitfd  extra[3];

    wa_sender_configure(s);

    if (wa_sender_connect(s) != 0) {
        wa_sender_wait(s, s->backoff_ms);
        return;
    }

    now = wa_sender_now();

    /* the sweep's calls wait: not while the claim is in flight there */
    if ((now >= s->next_sweep || s->refresh) && s->nclaiming == 0) {
        wa_sender_sweep(s, now);
    }

    if (!s->bell_asked && s->njobs < s->cf.sender_queue_max) {
        s->bell_asked = (wa_redis_bell_ask(&s->bell, WA_BELLS_PER_READ,
                                           WA_BELL_BLOCK_MS) == 0);
    }

    wake = now + WA_TURN_MAX_MS;

    wa_sender_release(s, now, &wake);
    wa_sender_dispatch(s, now, &wake);

    nextra = 0;
    bell = rec = claim = -1;

    if (s->bell_asked && s->bell.c) {
        bell = nextra++;
        extra[bell].fd = s->bell.c->fd;
    }

    if (s->rec_sent) {
        rec = nextra++;
        extra[rec].fd = PQsocket(s->rec.conn);
    }

    if (s->nclaiming) {
        claim = nextra++;
        extra[claim].fd = PQsocket(s->db.conn);
    }

    for (int i = 0; i < nextra; i++) {
        extra[i].events = CURL_WAIT_POLLIN;
        extra[i].revents = 0;
    }

    now = wa_sender_now();

    (void) wa_graph_run(s->graph, extra, nextra,
                        wake > now ? (int) (wake - now) : 0);

    if (bell >= 0 && extra[bell].revents) {
        wa_sender_bells(s);
    }

    if (rec >= 0 && extra[rec].revents) {
        wa_sender_recorded(s, 0);
    }

    if (claim >= 0 && extra[claim].revents) {
        wa_sender_claimed(s, 0);
    }

    wa_sender_record(s);
}


/* The configuration: at start, and a reloaded one between turns. */
static void
wa_sender_configure(wa_sender_t *s)
{
    wa_number_t  *n;

    pthread_mutex_lock(&s->lock);

    if (s->reload && (s->graph == NULL || wa_graph_in_flight(s->graph) == 0))
    {
        /* their connections go: what is in flight there lands first */
        wa_sender_claimed(s, 1);
        wa_sender_recorded(s, 1);

        s->cf = s->next_cf;
        s->reload = 0;
        wa_sender_key(s);

        /* the client is rebuilt; the connections follow the new config */
        wa_graph_free(s->graph);
        s->graph = NULL;
        wa_redis_close(&s->bell);
        wa_redis_close(&s->redis);
        wa_db_close(&s->db);
        wa_db_close(&s->rec);
        s->bell_asked = 0;
        s->next_sweep = 0;

        /* the tokens are opened again: the key may be another */
        for (n = s->numbers; n; n = n->next) {
            n->token_at[0] = '\0';
        }

        wa_log_info("sender: configuration reloaded");
    }

    pthread_mutex_unlock(&s->lock);

    if (s->graph == NULL) {
        s->graph = wa_graph_new(s->cf.sender_graph_url,
                                s->cf.sender_graph_version,
                                s->cf.sender_timeout_ms,
                                s->cf.sender_concurrency);
    }
}


static int
wa_sender_connect(wa_sender_t *s)
{
    if (s->graph == NULL
        || (s->redis.c == NULL && wa_redis_connect(&s->redis, &s->cf) != 0)
        || (s->bell.c == NULL && wa_redis_connect(&s->bell, &s->cf) != 0)
        || (s->db.conn == NULL
            && wa_db_connect(&s->db, s->cf.postgres_conninfo) != 0)
        || (s->rec.conn == NULL
            && wa_db_connect(&s->rec, s->cf.postgres_conninfo) != 0))
    {
        s->bell_asked = 0;
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;

        if (s->backoff_ms > 5000) {
            s->backoff_ms = 5000;
        }

        return -1;
    }

    if (s->backoff_ms) {
        wa_log_info("sender: connected to Redis and PostgreSQL again");
        s->backoff_ms = 0;
    }

    if (s->bell.c == NULL) {
        s->bell_asked = 0;
    }

    return 0;
}


/* Waits, the transfers moving on meanwhile, cut short by a stop. */
static void
wa_sender_wait(wa_sender_t *s, long long ms)
{
    long long  until;

    until = wa_sender_now() + ms;

    while (!wa_signal_stop && wa_sender_now() < until) {
        if (s->graph) {
            (void) wa_graph_run(s->graph, NULL, 0, WA_TURN_MAX_MS);

        } else {
            struct timespec  ts = { 0, WA_TURN_MAX_MS * 1000000L };
            nanosleep(&ts, NULL);
        }
    }

    wa_sender_claimed(s, 0);
    wa_sender_recorded(s, 0);
    wa_sender_record(s);
}


/*
 * What PostgreSQL holds that no doorbell announced: queued rows (the
 * doorbell was lost with Redis, or this sender restarted), read receipts,
 * and `sending` rows of a sender that is gone (this one at its start:
 * their answers are lost, they become `unknown`).  Then lost answers
 * that Meta's webhooks resolved, and the numbers.
 */
static void
wa_sender_sweep(wa_sender_t *s, long long now)
{
    int              i, n;
    char             own[2], after[32], idle[32], limit[16], err[512];
    PGresult        *rows;
    const char      *values[5], *op;
    wa_db_result_e   rc;

    wa_sender_numbers(s);

    if (s->db.conn == NULL) {
        return;
    }

    s->refresh = 0;

    if (now < s->next_sweep) {
        return;
    }

    s->next_sweep = now + s->cf.sender_sweep_ms;

    snprintf(own, sizeof(own), "%c", s->swept ? 'f' : 't');
    snprintf(after, sizeof(after), "%d milliseconds", s->cf.sender_sweep_ms);
    snprintf(idle, sizeof(idle), "%d milliseconds",
             s->cf.worker_claim_idle_ms);
    snprintf(limit, sizeof(limit), "%d", WA_SWEEP_LIMIT);

    values[0] = s->owner;
    values[1] = own;
    values[2] = after;
    values[3] = idle;
    values[4] = limit;

    rc = wa_db_call(&s->db, "wa_send_sweep",
                    "SELECT op, key, phone_number_id, recipient, bulk "
                    "FROM wa_send_sweep($1, $2::boolean, $3::interval, "
                    "$4::interval, $5::integer)",
                    5, values, NULL, NULL, &rows, err, sizeof(err));

    if (rc != WA_DB_OK) {
        wa_log_error("sender: %s", err);
        return;
    }

    s->swept = 1;
    n = PQntuples(rows);

    for (i = 0; i < n; i++) {
        op = PQgetvalue(rows, i, 0);

        if (strcmp(op, "unknown") == 0) {
            wa_sender_outcome(s, WA_OUT_UNKNOWN, PQgetvalue(rows, i, 1), 0,
                              "the sender stopped while Meta was answering: "
                              "not sent again, Meta may have accepted it");
            continue;
        }

        if (wa_map_get(&s->jobs, PQgetvalue(rows, i, 1)) == NULL
            && s->njobs < s->cf.sender_queue_max)
        {
            (void) wa_sender_job(s, strcmp(op, "read") == 0,
                                 PQgetvalue(rows, i, 1),
                                 PQgetvalue(rows, i, 2),
                                 PQgetvalue(rows, i, 3),
                                 PQgetvalue(rows, i, 4)[0] == 't');
        }
    }

    if (n) {
        wa_log_debug("sender: swept %d rows", n);
    }

    PQclear(rows);

    values[0] = s->owner;

    rc = wa_db_call(&s->db, "wa_send_reconcile",
                    "SELECT outbox_id, events FROM wa_send_reconcile($1)",
                    1, values, NULL, NULL, &rows, err, sizeof(err));

    if (rc != WA_DB_OK) {
        wa_log_error("sender: %s", err);
        return;
    }

    wa_sender_publish(s, &s->db, rows);

    if (s->recipients.count > WA_RECIPIENTS_MAX / 2) {
        wa_sender_evict(s, now);
    }
}


/* Recipients with a full bucket and nothing waiting: as if new. */
static void
wa_sender_evict(wa_sender_t *s, long long now)
{
    size_t           b;
    wa_map_entry_t  *e, *next;
    wa_recipient_t  *r;

    for (b = 0; b < s->recipients.size; b++) {
        for (e = s->recipients.buckets[b]; e; e = next) {
            next = e->next;
            r = e->value;

            if (r->jobs == 0 && r->hold_until <= now
                && wa_bucket_full(&r->bucket, s->cf.sender_pair_burst,
                                  s->cf.sender_pair_interval_ms, now))
            {
                free(wa_map_del(&s->recipients, e->key));
            }
        }
    }
}


/* Tokens, pauses and throughput of every number. */
static void
wa_sender_numbers(wa_sender_t *s)
{
    int            i, rate, was_paused;
    char           err[512], token[WA_TOKEN_MAX + 1];
    long           len;
    size_t         sealed_len;
    PGresult      *rows;
    wa_number_t   *n;
    unsigned char *sealed;

    if (wa_db_call(&s->db, "wa_send_numbers",
                   "SELECT phone_number_id, sealed, token_at, "
                   "high_throughput, paused FROM wa_send_numbers()",
                   0, NULL, NULL, NULL, &rows, err, sizeof(err))
        != WA_DB_OK)
    {
        wa_log_error("sender: %s", err);
        return;
    }

    for (i = 0; i < PQntuples(rows); i++) {
        n = wa_sender_number(s, PQgetvalue(rows, i, 0));
        if (n == NULL) {
            continue;
        }

        rate = (PQgetvalue(rows, i, 3)[0] == 't') ? s->cf.sender_high_rate
                                                  : s->cf.sender_rate;

        if (rate != n->rate) {
            wa_window_free(&n->window);

            if (wa_window_init(&n->window, rate) != 0) {
                n->rate = 0;
                continue;
            }

            n->rate = rate;
            wa_bucket_init(&n->spread, WA_PACE_BURST(rate), wa_sender_now());
        }

        /* a token stored since we looked: read it, lift the pause */
        if (strcmp(n->token_at, PQgetvalue(rows, i, 2)) == 0) {
            continue;
        }

        snprintf(n->token_at, sizeof(n->token_at), "%s",
                 PQgetvalue(rows, i, 2));

        if (n->token) {
            OPENSSL_cleanse(n->token, strlen(n->token));
            free(n->token);
            n->token = NULL;
        }

        /* storing a token lifts the pause in PostgreSQL: ours is older */
        was_paused = n->paused;
        n->paused = (PQgetvalue(rows, i, 4)[0] == 't');
        n->warned = 0;

        if (PQgetisnull(rows, i, 1) || !s->has_key) {
            continue;
        }

        sealed = PQunescapeBytea((const unsigned char *)
                                     PQgetvalue(rows, i, 1), &sealed_len);
        if (sealed == NULL) {
            continue;
        }

        len = wa_token_open(s->key, n->id, sealed, sealed_len, token,
                            sizeof(token));
        PQfreemem(sealed);

        if (len < 0) {
            wa_log_error("sender: the access token of %s does not open with "
                         "this token key (another key sealed it?): its "
                         "messages wait", n->id);
            continue;
        }

        n->token = strdup(token);
        OPENSSL_cleanse(token, (size_t) len);

        if (n->paused || was_paused) {
            wa_log_info("sender: %s has a new access token, sends go on",
                        n->id);
            n->paused = 0;
            wa_metrics_resumed(n->id);
        }
    }

    PQclear(rows);
}


static wa_number_t *
wa_sender_number(wa_sender_t *s, const char *id)
{
    wa_number_t  *n;

    for (n = s->numbers; n; n = n->next) {
        if (strcmp(n->id, id) == 0) {
            return n;
        }
    }

    if (strlen(id) >= WA_NUMBER_MAX) {
        return NULL;
    }

    n = calloc(1, sizeof(wa_number_t));
    if (n == NULL) {
        return NULL;
    }

    strcpy(n->id, id);

    if (wa_window_init(&n->window, s->cf.sender_rate) != 0) {
        free(n);
        return NULL;
    }

    n->rate = s->cf.sender_rate;
    wa_bucket_init(&n->spread, WA_PACE_BURST(n->rate), wa_sender_now());
    n->next = s->numbers;
    s->numbers = n;

    /* its token is read by the next turn's sweep */
    s->refresh = 1;

    return n;
}


/* The doorbells that arrived: their jobs queued, the entries dropped. */
static void
wa_sender_bells(wa_sender_t *s)
{
    int          i, n;
    redisReply  *reply;
    wa_entry_t  *entries;

    n = wa_redis_bell_take(&s->bell, &reply, &entries);

    if (n < 0) {
        s->bell_asked = 0;
        return;
    }

    if (reply == NULL) {
        return;                     /* more to come */
    }

    s->bell_asked = 0;

    for (i = 0; i < n; i++) {
        if (entries[i].cmd) {
            wa_sender_bell(s, entries[i].cmd);
        }
    }

    /* the work is in PostgreSQL: a lost acknowledgement costs nothing */
    if (n > 0) {
        (void) wa_redis_bell_ack(&s->redis, entries, n);
    }

    free(entries);
    freeReplyObject(reply);
}


/* {"op":"send","id","phone_number_id","to","bulk"} or
 * {"op":"read","wamid","phone_number_id"} */
static void
wa_sender_bell(wa_sender_t *s, const char *cmd)
{
    int          read;
    char         err[128];
    yajl_val     root, bulk;
    const char  *op, *key, *number, *to;
    static const char  *bulk_path[] = { "bulk", NULL };

    root = yajl_tree_parse(cmd, err, sizeof(err));

    if (root == NULL) {
        wa_log_error("sender: a doorbell that is not JSON: %s", err);
        return;
    }

    op = wa_json_str(root, "op");
    read = (op && strcmp(op, "read") == 0);
    key = wa_json_str(root, read ? "wamid" : "id");
    number = wa_json_str(root, "phone_number_id");
    to = wa_json_str(root, "to");
    bulk = yajl_tree_get(root, bulk_path, yajl_t_true);

    if (op == NULL || key == NULL || number == NULL || (!read && to == NULL)
        || (!read && strcmp(op, "send") != 0))
    {
        wa_log_error("sender: a doorbell without op, id, number or "
                     "recipient: ignored");

    } else if (wa_map_get(&s->jobs, key) == NULL) {
        (void) wa_sender_job(s, read, key, number, to, bulk != NULL);
    }

    yajl_tree_free(root);
}


static wa_job_t *
wa_sender_job(wa_sender_t *s, int read, const char *key, const char *number,
    const char *to, int bulk)
{
    char             rkey[WA_NUMBER_MAX + 32];
    wa_job_t        *job;
    wa_number_t     *n;
    wa_recipient_t  *r;

    if (strlen(key) >= WA_KEY_MAX) {
        return NULL;
    }

    n = wa_sender_number(s, number);
    if (n == NULL) {
        return NULL;
    }

    job = calloc(1, sizeof(wa_job_t));
    if (job == NULL) {
        return NULL;
    }

    strcpy(job->key, key);
    job->number = n;
    job->sender = s;
    job->read = read;
    job->bulk = bulk;

    if (!read && to && to[0]) {
        snprintf(rkey, sizeof(rkey), "%s:%s", number, to);
        r = wa_map_get(&s->recipients, rkey);

        if (r == NULL) {
            r = calloc(1, sizeof(wa_recipient_t));

            if (r && wa_map_put(&s->recipients, rkey, r) != 0) {
                free(r);
                r = NULL;
            }

            if (r) {
                wa_bucket_init(&r->bucket, s->cf.sender_pair_burst,
                               wa_sender_now());
            }
        }

        if (r) {
            r->jobs++;
            job->recipient = r;
        }
    }

    if (wa_map_put(&s->jobs, key, job) != 0) {
        wa_sender_forget(s, job);
        return NULL;
    }

    s->njobs++;
    wa_queue_push(bulk ? &n->bulk : &n->agent, job);

    return job;
}


/* Delayed jobs that are due go back to the front of their queue. */
static void
wa_sender_release(wa_sender_t *s, long long now, long long *wake)
{
    wa_job_t  **pj, *job;

    for (pj = &s->delayed; (job = *pj) != NULL; ) {
        if (job->due > now) {
            if (job->due < *wake) {
                *wake = job->due;
            }

            pj = &job->next;
            continue;
        }

        *pj = job->next;
        wa_sender_requeue(job);
    }
}


/*
 * As many jobs as the numbers' pace, the recipients' pair rate and the
 * requests in flight allow, agent replies before bulk sends, the numbers
 * served in turn.
 */
static void
wa_sender_dispatch(wa_sender_t *s, long long now, long long *wake)
{
    int              nsend, nread, room, progress;
    long long        wait;
    wa_job_t        *sends[WA_CLAIM_MAX], *reads[WA_CLAIM_MAX], *job;
    wa_queue_t      *q;
    wa_number_t     *n;
    wa_recipient_t  *r;

    /* one claim at a time: its jobs are posted when it lands */
    if (s->nclaiming) {
        return;
    }

    nsend = nread = 0;
    room = s->cf.sender_concurrency - wa_graph_in_flight(s->graph);

    do {
        progress = 0;

        for (n = s->numbers; n; n = n->next) {

            if (nsend + nread >= room || nsend == WA_CLAIM_MAX
                || nread == WA_CLAIM_MAX)
            {
                break;
            }

            q = n->agent.head ? &n->agent : &n->bulk;

            if (q->head == NULL) {
                continue;
            }

            if (n->token == NULL || n->paused) {
                if (!n->warned) {
                    n->warned = 1;
                    wa_log_warn("sender: %s has %s: its messages wait "
                                "queued until `whatsapp-worker token set "
                                "%s` stores one", n->id,
                                n->paused ? "a token Meta refused"
                                          : "no access token", n->id);
                }

                continue;
            }

            if (n->hold_until > now) {
                if (n->hold_until < *wake) {
                    *wake = n->hold_until;
                }

                continue;
            }

            job = q->head;
            r = job->recipient;

            /* queued again by an outcome not recorded yet: the claim
             * would find its row still `sending` */
            if (job->round > s->recorded) {
                continue;
            }

            if (r && r->hold_until > now) {
                job->due = r->hold_until;
                goto delay;
            }

            if (r) {
                wait = wa_bucket_take(&r->bucket, s->cf.sender_pair_burst,
                                      s->cf.sender_pair_interval_ms, now);
                if (wait) {
                    job->due = now + wait;
                    goto delay;
                }
            }

            wait = wa_window_wait(&n->window, now);

            if (wait == 0) {
                wait = wa_bucket_take(&n->spread, WA_PACE_BURST(n->rate),
                                      1000.0 / n->rate, now);
            }

            if (wait) {
                if (r) {
                    r->bucket.tokens += 1.0;    /* not taken after all */
                }

                if (now + wait < *wake) {
                    *wake = now + wait;
                }

                continue;
            }

            (void) wa_window_take(&n->window, now);
            n->taken++;

            (void) wa_queue_pop(q);

            if (job->read) {
                reads[nread++] = job;

            } else {
                sends[nsend++] = job;
            }

            progress = 1;
            continue;

        delay:

            /* a job never leaves before an earlier one to the same
             * customer: their waits, rounded at different turns, could
             * otherwise end in the other order */
            if (r) {
                if (job->due < r->due) {
                    job->due = r->due;
                }

                r->due = job->due;
            }

            (void) wa_queue_pop(q);
            job->next = s->delayed;
            s->delayed = job;
            progress = 1;

            if (job->due < *wake) {
                *wake = job->due;
            }
        }

    } while (progress);

    /* read receipts (few) waited for, then the sends' claim goes; the
     * window counts them from when that lands */
    if (nread) {
        wa_sender_claim(s, reads, nread, 1);
    }

    if (nsend) {
        wa_sender_claim(s, sends, nsend, 0);

    } else {
        wa_sender_left(s);
    }
}


/* The sends counted by the last dispatch are posted now: counted from now
 * (a claim in PostgreSQL came between). */
static void
wa_sender_left(wa_sender_t *s)
{
    long long     now;
    wa_number_t  *n;

    now = wa_sender_now();

    for (n = s->numbers; n; n = n->next) {
        if (n->taken) {
            wa_window_left(&n->window, n->taken, now);
            n->taken = 0;
        }
    }
}


/*
 * One statement marks the jobs' rows `sending` (receipts likewise) and
 * hands back what to post; a job whose row is no longer queued was done
 * by someone else and is dropped.  The sends' claim is not waited for:
 * transfers and recordings go on meanwhile, and its jobs are posted when
 * it lands (wa_sender_claimed).  PostgreSQL away: back to the queues.
 */
static void
wa_sender_claim(wa_sender_t *s, wa_job_t **batch, int n, int read)
{
    char             err[512], *ids;
    PGresult        *rows;
    const char      *values[2];
    wa_db_result_e   rc;

    ids = wa_sql_array(batch, n);

    if (ids == NULL) {
        rc = WA_DB_RETRY;
        snprintf(err, sizeof(err), "claim: out of memory");

    } else if (read) {
        values[0] = ids;
        rc = wa_db_call(&s->db, "wa_receipt_claim",
                        "SELECT wamid, phone_number_id "
                        "FROM wa_receipt_claim($1::text[])",
                        1, values, NULL, NULL, &rows, err, sizeof(err));

    } else {
        values[0] = s->owner;
        values[1] = ids;
        rc = wa_db_call_send(&s->db, "wa_send_claim",
                             "SELECT id, content "
                             "FROM wa_send_claim($1, $2::uuid[])",
                             2, values, NULL, NULL, err, sizeof(err));
    }

    free(ids);

    if (rc != WA_DB_OK) {
        wa_sender_unclaim(batch, n, err);
        return;
    }

    if (read) {
        wa_sender_claim_rows(s, batch, n, 1, rows);
        return;
    }

    memcpy(s->claiming, batch, n * sizeof(wa_job_t *));
    s->nclaiming = n;
}


/* The sends' claim, if it has landed (or, with wait, once it has). */
static void
wa_sender_claimed(wa_sender_t *s, int wait)
{
    int              n;
    char             err[512];
    PGresult        *rows;

    if (s->nclaiming == 0 || (!wait && !wa_db_call_ready(&s->db))) {
        return;
    }

    n = s->nclaiming;
    s->nclaiming = 0;

    if (wa_db_call_result(&s->db, "wa_send_claim", &rows, err, sizeof(err))
        != WA_DB_OK)
    {
        wa_sender_unclaim(s->claiming, n, err);
        return;
    }

    wa_sender_claim_rows(s, s->claiming, n, 0, rows);
    wa_sender_left(s);
}


/* A claim that failed: its jobs back at the front of their queues, in
 * their order. */
static void
wa_sender_unclaim(wa_job_t **batch, int n, const char *err)
{
    int  i;

    wa_log_error("sender: %s", err);

    for (i = n - 1; i >= 0; i--) {
        wa_sender_requeue(batch[i]);
    }
}


/* The rows a claim handed back (id, and the body to post for sends). */
static void
wa_sender_claim_rows(wa_sender_t *s, wa_job_t **batch, int n, int read,
    PGresult *rows)
{
    int        i;
    wa_job_t  *job;

    for (i = 0; i < PQntuples(rows); i++) {
        job = wa_map_get(&s->jobs, PQgetvalue(rows, i, 0));

        if (job) {
            job->claimed = 1;
        }
    }

    /* not returned: another sender has them, or they are queued no more;
     * forgotten before the others are posted, since a post that fails
     * queues its job again, unclaimed */
    for (i = 0; i < n; i++) {
        if (!batch[i]->claimed) {
            wa_sender_forget(s, batch[i]);
        }
    }

    for (i = 0; i < PQntuples(rows); i++) {
        job = wa_map_get(&s->jobs, PQgetvalue(rows, i, 0));

        if (job) {
            wa_sender_post(s, job, read ? NULL : PQgetvalue(rows, i, 1));
        }
    }

    PQclear(rows);
}


static void
wa_sender_post(wa_sender_t *s, wa_job_t *job, const char *body)
{
    size_t          len;
    yajl_gen        g;
    const unsigned char  *buf;

    g = NULL;

    if (body == NULL) {
        /* a read receipt: Meta's own body */
        g = yajl_gen_alloc(NULL);

        if (g == NULL
            || yajl_gen_map_open(g) != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) "messaging_product",
                               17) != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) "whatsapp", 8)
               != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) "status", 6)
               != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) "read", 4)
               != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) "message_id", 10)
               != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) job->key,
                               strlen(job->key)) != yajl_gen_status_ok
            || yajl_gen_map_close(g) != yajl_gen_status_ok
            || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
        {
            goto failed;
        }

        body = (const char *) buf;

    } else {
        len = strlen(body);
    }

    job->attempts++;

    if (wa_graph_post(s->graph, job->number->id, job->number->token, body,
                      len, wa_sender_done, job) != 0)
    {
        goto failed;
    }

    if (g) {
        yajl_gen_free(g);
    }

    return;

failed:

    if (g) {
        yajl_gen_free(g);
    }

    /* claimed but not sent: queued again, tried at the next turn */
    job->claimed = 0;
    wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_QUEUED : WA_OUT_QUEUED,
                      job->key, 0, NULL);
    wa_sender_requeue(job);
}


/* Meta's answer to one request (wa_graph_run calls it). */
static void
wa_sender_done(void *data, const wa_graph_result_t *res)
{
    long long       backoff;
    wa_job_t       *job = data;
    wa_sender_t    *s = job->sender;
    wa_number_t    *n = job->number;
    wa_recipient_t *r = job->recipient;

    job->claimed = 0;

    switch (res->outcome) {

    case WA_GRAPH_ACCEPTED:
    case WA_GRAPH_DONE:
        n->strikes = 0;

        if (r) {
            r->strikes = 0;
        }

        wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_SENT
                                       : WA_OUT_ACCEPTED,
                          job->key, 0, res->wamid);
        wa_sender_forget(s, job);
        return;

    case WA_GRAPH_FAILED:
        wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_FAILED
                                       : WA_OUT_FAILED,
                          job->key, res->code, res->title);
        wa_sender_forget(s, job);
        return;

    case WA_GRAPH_UNKNOWN:
        wa_log_warn("sender: %s: %s", job->key, res->title);
        wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_FAILED
                                       : WA_OUT_UNKNOWN,
                          job->key, 0, res->title);
        wa_sender_forget(s, job);
        return;

    case WA_GRAPH_TOKEN:
        /* not the message's fault: it waits for a new token, uncounted */
        job->attempts--;

        if (!n->paused) {
            n->paused = 1;
            n->warned = 0;
            wa_log_error("sender: Meta refused the access token of %s "
                         "(#%d %s): its sends are paused", n->id, res->code,
                         res->title);
            wa_sender_outcome(s, WA_OUT_PAUSED, n->id, res->code,
                              res->title);
        }

        wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_QUEUED
                                       : WA_OUT_HELD, job->key, 0, NULL);
        wa_sender_requeue(job);
        return;

    case WA_GRAPH_THROTTLED:
        backoff = (long long) s->cf.sender_retry_base_ms << (n->strikes < 10
                                                             ? n->strikes
                                                             : 10);
        n->strikes++;
        n->hold_until = wa_sender_now()
                        + (backoff < s->cf.sender_retry_max_ms
                           ? backoff : s->cf.sender_retry_max_ms);
        wa_sender_retry(s, job, res, 0);
        return;

    case WA_GRAPH_PAIR_LIMIT:
        /* Meta: retry after 4^X seconds */
        if (r) {
            backoff = 1000LL << (2 * (r->strikes < 6 ? r->strikes : 6));
            r->strikes++;
            r->hold_until = wa_sender_now() + backoff;
        }

        wa_sender_retry(s, job, res, 0);
        return;

    case WA_GRAPH_RETRY:
    default:
        wa_sender_retry(s, job, res, -1);
        return;
    }
}


/*
 * Again later, while attempts are left: after delay ms, or (-1) the
 * backoff, base * 2^(attempt - 1) with jitter (50 to 100 %, so that
 * messages refused together do not come back together), capped.
 */
static void
wa_sender_retry(wa_sender_t *s, wa_job_t *job, const wa_graph_result_t *res,
    long long delay)
{
    char       title[256];
    long long  backoff;

    if (job->attempts >= s->cf.sender_max_attempts) {
        snprintf(title, sizeof(title), "%.200s (given up after %d attempts)",
                 res->title, job->attempts);
        wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_FAILED
                                       : WA_OUT_FAILED,
                          job->key, res->code, title);
        wa_sender_forget(s, job);
        return;
    }

    if (delay < 0) {
        backoff = (long long) s->cf.sender_retry_base_ms
                  << (job->attempts - 1 < 20 ? job->attempts - 1 : 20);

        if (backoff > s->cf.sender_retry_max_ms) {
            backoff = s->cf.sender_retry_max_ms;
        }

        delay = backoff / 2 + random() % (backoff / 2 + 1);
    }

    wa_log_debug("sender: %s: %s; again in %lld ms", job->key, res->title,
                 delay);

    wa_sender_outcome(s, job->read ? WA_OUT_RECEIPT_QUEUED : WA_OUT_QUEUED,
                      job->key, 0, NULL);

    job->due = wa_sender_now() + delay;
    job->next = s->delayed;
    s->delayed = job;
}


static void
wa_sender_outcome(wa_sender_t *s, wa_outcome_e kind, const char *key,
    int code, const char *text)
{
    wa_job_t  *job;

    if (wa_outcomes_add(&s->outcomes, kind, key, code, text) != 0) {
        /* the row stays `sending`: a sweep makes it `unknown` */
        wa_log_error("sender: out of memory: the outcome of %s is lost", key);
    }

    /* a job that lives on (queued again): claimed once this is recorded */
    job = wa_map_get(&s->jobs, key);

    if (job) {
        job->round = s->round;
    }
}


/*
 * The round's outcomes in one transaction (wa_send_results), on a
 * connection of their own and not waited for: the next requests are
 * claimed and posted while PostgreSQL records these (bench/send).  One
 * recording at a time, in order.  PostgreSQL away: the same one is sent
 * again later (the rows stay `sending` meanwhile, and nothing is sent
 * twice).
 */
static void
wa_sender_record(wa_sender_t *s)
{
    char            err[512];
    const char     *values[2];

    if (s->rec_sent || s->rec.conn == NULL
        || (s->recording == NULL && s->outcomes.n == 0))
    {
        return;
    }

    if (s->recording == NULL) {
        s->recording = wa_outcomes_json(&s->outcomes);

        if (s->recording == NULL) {
            return;
        }

        s->outcomes.n = 0;
        s->round++;
    }

    wa_sender_adopt(s);

    values[0] = s->owner;
    values[1] = s->recording;

    if (wa_db_call_send(&s->rec, "wa_send_results",
                        "SELECT outbox_id, events "
                        "FROM wa_send_results($1, $2::jsonb)",
                        2, values, NULL, NULL, err, sizeof(err)) != WA_DB_OK)
    {
        wa_log_warn("sender: outcomes not recorded yet: %s", err);
        return;
    }

    s->rec_sent = 1;
}


/* The recording's answer, if it is in (or, with wait, once it is): its
 * events published. */
static void
wa_sender_recorded(wa_sender_t *s, int wait)
{
    char            err[512];
    PGresult       *res;
    wa_db_result_e  rc;

    if (!s->rec_sent || (!wait && !wa_db_call_ready(&s->rec))) {
        return;
    }

    s->rec_sent = 0;

    rc = wa_db_call_result(&s->rec, "wa_send_results", &res, err,
                           sizeof(err));

    if (rc == WA_DB_RETRY) {
        wa_log_warn("sender: outcomes not recorded yet: %s", err);
        return;
    }

    free(s->recording);
    s->recording = NULL;
    s->recorded = s->round - 1;

    if (rc == WA_DB_REJECT) {
        /* a bug: the rows stay `sending` and a sweep makes them unknown */
        wa_log_error("sender: outcomes refused: %s", err);
        return;
    }

    wa_sender_publish(s, &s->rec, res);
}


/*
 * The API's outbox rows not published yet, published first: the message.new
 * of a message the API stored is in such a row, and the ingest loop's
 * sweep (another thread) may not have got to it, while the events of its
 * send must never be ahead of it.  A row that sweep is publishing is
 * locked: the UPDATE waits for it, and finds it gone.  Not taken (an
 * error): the sweep publishes them, perhaps after ours.
 */
static void
wa_sender_adopt(wa_sender_t *s)
{
    char            err[512];
    PGresult       *res;
    const char     *values[1];

    values[0] = s->owner;

    if (wa_db_call(&s->rec, "outbox",
                   "WITH taken AS (UPDATE update_outbox SET owner = $1"
                   "               WHERE owner IS NULL RETURNING id, events)"
                   " SELECT id, events FROM taken ORDER BY id",
                   1, values, NULL, NULL, &res, err, sizeof(err))
        != WA_DB_OK)
    {
        wa_log_warn("sender: %s", err);
        return;
    }

    wa_sender_publish(s, &s->rec, res);
}


/*
 * Outbox rows (outbox_id, events) published in their order, then
 * deleted on db (a connection with no statement in flight: a blocking
 * call would swallow that statement's answer); the result is cleared.
 * Rows not published stay for a sweep.
 */
static void
wa_sender_publish(wa_sender_t *s, wa_db_t *db, PGresult *res)
{
    int           i, n, rows;
    char         *ids, *p;
    const char  **events;

    rows = PQntuples(res);
    events = malloc((rows + 1) * sizeof(char *));
    ids = malloc(rows * 21 + 3);

    if (events == NULL || ids == NULL) {
        wa_log_warn("sender: out of memory, publishing deferred");
        goto done;
    }

    p = ids;
    *p++ = '{';

    for (i = 0, n = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 0) || PQgetisnull(res, i, 1)) {
            continue;
        }

        events[n] = PQgetvalue(res, i, 1);
        p += sprintf(p, "%s%s", n ? "," : "", PQgetvalue(res, i, 0));
        n++;
    }

    strcpy(p, "}");

    if (n == 0) {
        goto done;
    }

    if (wa_redis_publish_lines(&s->redis, n, events) < 0) {
        /* the ingest loop's sweep publishes them (another owner's) */
        wa_log_warn("sender: publishing deferred");

    } else {
        (void) wa_db_outbox_delete(db, ids);
    }

done:

    free(events);
    free(ids);
    PQclear(res);
}


/* A job done with: out of the index, its recipient released, freed. */
static void
wa_sender_forget(wa_sender_t *s, wa_job_t *job)
{
    if (wa_map_get(&s->jobs, job->key) == job) {
        (void) wa_map_del(&s->jobs, job->key);
        s->njobs--;
    }

    if (job->recipient) {
        job->recipient->jobs--;
    }

    free(job);
}


static void
wa_sender_free(wa_sender_t *s)
{
    size_t            b;
    wa_number_t      *n;
    wa_map_entry_t   *e;

    /* every job is in the index, wherever it waits */
    for (b = 0; s->jobs.buckets && b < s->jobs.size; b++) {
        for (e = s->jobs.buckets[b]; e; e = e->next) {
            free(e->value);
        }
    }

    for (b = 0; s->recipients.buckets && b < s->recipients.size; b++) {
        for (e = s->recipients.buckets[b]; e; e = e->next) {
            free(e->value);
        }
    }

    wa_map_free(&s->jobs);
    wa_map_free(&s->recipients);

    while ((n = s->numbers) != NULL) {
        s->numbers = n->next;

        if (n->token) {
            OPENSSL_cleanse(n->token, strlen(n->token));
            free(n->token);
        }

        wa_window_free(&n->window);
        free(n);
    }

    wa_graph_free(s->graph);
    wa_redis_close(&s->bell);
    wa_redis_close(&s->redis);
    wa_db_close(&s->db);
    wa_db_close(&s->rec);
    free(s->recording);
    OPENSSL_cleanse(s->key, sizeof(s->key));
    pthread_mutex_destroy(&s->lock);
    wa_outcomes_free(&s->outcomes);
    free(s);
}


/* A job back at the front of its number's queue (agent or bulk). */
static void
wa_sender_requeue(wa_job_t *job)
{
    wa_queue_push_front(job->bulk ? &job->number->bulk : &job->number->agent,
                        job);
}


static void
wa_queue_push(wa_queue_t *q, wa_job_t *job)
{
    job->next = NULL;

    if (q->tail) {
        q->tail->next = job;

    } else {
        q->head = job;
    }

    q->tail = job;
}


static void
wa_queue_push_front(wa_queue_t *q, wa_job_t *job)
{
    job->next = q->head;
    q->head = job;

    if (q->tail == NULL) {
        q->tail = job;
    }
}


static wa_job_t *
wa_queue_pop(wa_queue_t *q)
{
    wa_job_t  *job;

    job = q->head;

    if (job) {
        q->head = job->next;

        if (q->head == NULL) {
            q->tail = NULL;
        }

        job->next = NULL;
    }

    return job;
}


/* The jobs' keys as an array literal, each quoted ({"a","b"}). */
static char *
wa_sql_array(wa_job_t **jobs, int n)
{
    int          i;
    char        *out, *p;
    const char  *k;

    out = malloc((size_t) n * (2 * WA_KEY_MAX + 3) + 3);
    if (out == NULL) {
        return NULL;
    }

    p = out;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        *p++ = '"';

        for (k = jobs[i]->key; *k; k++) {
            if (*k == '"' || *k == '\\') {
                *p++ = '\\';
            }

            *p++ = *k;
        }

        *p++ = '"';
    }

    *p++ = '}';
    *p = '\0';

    return out;
}


static long long
wa_sender_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
