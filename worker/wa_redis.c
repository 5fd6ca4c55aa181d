/*
 * Redis streams for the worker; see wa_redis.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "wa_log.h"
#include "wa_metrics.h"
#include "wa_publish.h"
#include "wa_redis.h"


static const char  wa_publish_script[] = WA_PUBLISH_SCRIPT;


static int wa_redis_ok(wa_redis_t *r, redisReply *reply, const char *what);
static int wa_redis_stream_reply(wa_redis_t *r, redisReply *reply,
    const char *what);
static int wa_redis_entries(redisReply *list, wa_entry_t **entries);
static int wa_redis_stream_entries(redisReply *rep, wa_entry_t **entries);
static int wa_redis_ack_stream(wa_redis_t *r, const char *stream,
    wa_entry_t *entries, int n);


int
wa_redis_connect(wa_redis_t *r, const wa_config_t *cf)
{
    struct timeval  tv = { 2, 0 };
    redisReply     *reply;

    r->cf = cf;
    snprintf(r->events, sizeof(r->events), "%sevents", cf->redis_prefix);
    snprintf(r->dead, sizeof(r->dead), "%sdead", cf->redis_prefix);
    snprintf(r->updates, sizeof(r->updates), "%supdates", cf->redis_prefix);
    snprintf(r->outbox, sizeof(r->outbox), "%soutbox", cf->redis_prefix);

    r->c = (cf->redis_host[0] == '/')
           ? redisConnectUnixWithTimeout(cf->redis_host, tv)
           : redisConnectWithTimeout(cf->redis_host, cf->redis_port, tv);

    if (r->c == NULL || r->c->err) {
        wa_log_error("redis %s:%d: %s", cf->redis_host, cf->redis_port,
                     r->c ? r->c->errstr : "out of memory");
        wa_redis_close(r);
        return -1;
    }

    if (cf->redis_password[0]) {
        reply = redisCommand(r->c, "AUTH %s", cf->redis_password);
        if (!wa_redis_ok(r, reply, "AUTH")) {
            return -1;
        }
    }

    if (cf->redis_db) {
        reply = redisCommand(r->c, "SELECT %d", cf->redis_db);
        if (!wa_redis_ok(r, reply, "SELECT")) {
            return -1;
        }
    }

    /* the group reads the stream from its start: nothing enqueued before
     * the first worker ran is skipped */
    reply = redisCommand(r->c, "XGROUP CREATE %s %s 0 MKSTREAM", r->events,
                         WA_REDIS_GROUP);

    if (reply && reply->type == REDIS_REPLY_ERROR
        && strncmp(reply->str, "BUSYGROUP", 9) == 0)
    {
        freeReplyObject(reply);
        return 0;
    }

    return wa_redis_ok(r, reply, "XGROUP CREATE") ? 0 : -1;
}


void
wa_redis_close(wa_redis_t *r)
{
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }

    /* a Redis that lost its data lost the group too */
    r->bell_group = 0;
}


/* Frees the reply; on failure logs it and, if the link broke, closes. */
static int
wa_redis_ok(wa_redis_t *r, redisReply *reply, const char *what)
{
    if (reply == NULL) {
        wa_log_error("redis %s: %s", what, r->c->errstr);
        wa_redis_close(r);
        return 0;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        wa_log_error("redis %s: %s", what, reply->str);
        freeReplyObject(reply);
        return 0;
    }

    freeReplyObject(reply);
    return 1;
}


int
wa_redis_read(wa_redis_t *r, int pending, int block, redisReply **reply,
    wa_entry_t **entries)
{
    *entries = NULL;

    /* no BLOCK: an answer at once, empty when nothing is there */
    if (block) {
        *reply = redisCommand(r->c, "XREADGROUP GROUP %s %s COUNT %d BLOCK %d "
                              "STREAMS %s %s", WA_REDIS_GROUP,
                              r->cf->worker_consumer, r->cf->worker_batch,
                              r->cf->worker_block_ms, r->events,
                              pending ? "0" : ">");

    } else {
        *reply = redisCommand(r->c, "XREADGROUP GROUP %s %s COUNT %d "
                              "STREAMS %s %s", WA_REDIS_GROUP,
                              r->cf->worker_consumer, r->cf->worker_batch,
                              r->events, pending ? "0" : ">");
    }

    if (wa_redis_stream_reply(r, *reply, "XREADGROUP") != 0) {
        return -1;
    }

    return wa_redis_stream_entries(*reply, entries);
}


/* an XREADGROUP's answer: nil on timeout; else [[stream, [entries]]] */
static int
wa_redis_stream_entries(redisReply *rep, wa_entry_t **entries)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0
        || rep->element[0]->type != REDIS_REPLY_ARRAY
        || rep->element[0]->elements != 2)
    {
        return 0;
    }

    return wa_redis_entries(rep->element[0]->element[1], entries);
}


int
wa_redis_bell_ask(wa_redis_t *r, int count, int block_ms)
{
    int          done;
    redisReply  *reply;

    if (!r->bell_group) {
        reply = redisCommand(r->c, "XGROUP CREATE %s %s 0 MKSTREAM",
                             r->outbox, WA_REDIS_GROUP);

        if (reply && reply->type == REDIS_REPLY_ERROR
            && strncmp(reply->str, "BUSYGROUP", 9) == 0)
        {
            freeReplyObject(reply);

        } else if (!wa_redis_ok(r, reply, "XGROUP CREATE")) {
            return -1;
        }

        r->bell_group = 1;
    }

    if (redisAppendCommand(r->c, "XREADGROUP GROUP %s %s COUNT %d BLOCK %d "
                           "STREAMS %s >", WA_REDIS_GROUP,
                           r->cf->worker_consumer, count, block_ms,
                           r->outbox) != REDIS_OK)
    {
        goto failed;
    }

    do {
        if (redisBufferWrite(r->c, &done) != REDIS_OK) {
            goto failed;
        }
    } while (!done);

    return 0;

failed:

    wa_log_error("redis XREADGROUP %s: %s", r->outbox, r->c->errstr);
    wa_redis_close(r);

    return -1;
}


int
wa_redis_bell_take(wa_redis_t *r, redisReply **reply, wa_entry_t **entries)
{
    *reply = NULL;
    *entries = NULL;

    if (redisBufferRead(r->c) != REDIS_OK
        || redisGetReplyFromReader(r->c, (void **) reply) != REDIS_OK)
    {
        wa_log_error("redis XREADGROUP %s: %s", r->outbox, r->c->errstr);
        wa_redis_close(r);
        return -1;
    }

    if (*reply == NULL) {
        return 0;
    }

    if (wa_redis_stream_reply(r, *reply, "XREADGROUP") != 0) {
        freeReplyObject(*reply);
        *reply = NULL;
        return -1;
    }

    return wa_redis_stream_entries(*reply, entries);
}


int
wa_redis_publish_lines(wa_redis_t *r, int ntexts, const char *const *texts)
{
    int           i, n, rc;
    size_t       *lens;
    const char   *p, *tab, *end, **parts;

    /* lines: a tab and a newline each, so at most len / 2 of them */
    n = 0;

    for (i = 0; i < ntexts; i++) {
        n += strlen(texts[i]) / 2;
    }

    if (n == 0) {
        return 0;
    }

    parts = malloc(2 * n * sizeof(char *));
    lens = malloc(2 * n * sizeof(size_t));
    rc = -1;

    if (parts == NULL || lens == NULL) {
        goto done;
    }

    n = 0;

    for (i = 0; i < ntexts; i++) {
        for (p = texts[i]; *p; p = end + 1) {
            tab = strchr(p, '\t');
            end = strchr(p, '\n');

            if (tab == NULL || end == NULL || tab > end) {
                wa_log_error("an outbox row holds a line that is not an "
                             "event: skipped");
                break;
            }

            parts[2 * n] = p;
            lens[2 * n] = tab - p;
            parts[2 * n + 1] = tab + 1;
            lens[2 * n + 1] = end - tab - 1;
            n++;
        }
    }

    rc = (n == 0 || wa_redis_publish(r, n, parts, lens) == 0) ? n : -1;

done:

    free(parts);
    free(lens);

    return rc;
}


int
wa_redis_claim(wa_redis_t *r, redisReply **reply, wa_entry_t **entries)
{
    redisReply  *rep;

    *entries = NULL;
    *reply = redisCommand(r->c, "XAUTOCLAIM %s %s %s %d 0-0 COUNT %d",
                          r->events, WA_REDIS_GROUP, r->cf->worker_consumer,
                          r->cf->worker_claim_idle_ms, r->cf->worker_batch);

    if (wa_redis_stream_reply(r, *reply, "XAUTOCLAIM") != 0) {
        return -1;
    }

    /* [next-id, [entries], [deleted ids]] */
    rep = *reply;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        return 0;
    }

    return wa_redis_entries(rep->element[1], entries);
}


/*
 * A failed read of the stream closes the connection: the link is broken,
 * or the group is gone (NOGROUP after a Redis that lost its data) and
 * reconnecting creates it again.  The caller frees the reply.
 */
static int
wa_redis_stream_reply(wa_redis_t *r, redisReply *reply, const char *what)
{
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    wa_log_error("redis %s: %s", what, reply ? reply->str : r->c->errstr);
    wa_redis_close(r);

    return -1;
}


/* [[id, [field, value, ...]], ...] -> entries; deleted entries are nil */
static int
wa_redis_entries(redisReply *list, wa_entry_t **entries)
{
    size_t       i, j;
    int          n;
    redisReply  *e, *f;
    wa_entry_t  *out;

    if (list->type != REDIS_REPLY_ARRAY || list->elements == 0) {
        return 0;
    }

    out = calloc(list->elements, sizeof(wa_entry_t));
    if (out == NULL) {
        return -1;
    }

    n = 0;

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        out[n].id = e->element[0]->str;
        f = e->element[1];

        for (j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements;
             j += 2)
        {
            if (strcmp(f->element[j]->str, "body") == 0) {
                out[n].body = f->element[j + 1]->str;
                out[n].body_len = f->element[j + 1]->len;

            } else if (strcmp(f->element[j]->str, "rcvd") == 0) {
                out[n].rcvd = f->element[j + 1]->str;

            } else if (strcmp(f->element[j]->str, "rid") == 0) {
                out[n].rid = f->element[j + 1]->str;

            } else if (strcmp(f->element[j]->str, "wake") == 0) {
                out[n].wake = 1;

            } else if (strcmp(f->element[j]->str, "cmd") == 0) {
                out[n].cmd = f->element[j + 1]->str;
            }
        }

        n++;
    }

    *entries = out;

    return n;
}


int
wa_redis_deliveries(wa_redis_t *r, const wa_entry_t *entries, int n,
    long long *counts)
{
    int          i;
    size_t       k;
    redisReply  *rep, *p;

    memset(counts, 0, n * sizeof(long long));

    if (n == 0) {
        return 0;
    }

    rep = redisCommand(r->c, "XPENDING %s %s %s %s %d %s", r->events,
                       WA_REDIS_GROUP, entries[0].id, entries[n - 1].id, n,
                       r->cf->worker_consumer);

    if (rep == NULL) {
        wa_log_error("redis XPENDING: %s", r->c->errstr);
        wa_redis_close(r);
        return -1;
    }

    /* [[id, consumer, idle, deliveries], ...], both lists in id order */
    i = 0;

    for (k = 0; rep->type == REDIS_REPLY_ARRAY && k < rep->elements; k++) {
        p = rep->element[k];

        if (p->type != REDIS_REPLY_ARRAY || p->elements != 4) {
            continue;
        }

        while (i < n && strcmp(entries[i].id, p->element[0]->str) != 0) {
            i++;
        }

        if (i < n) {
            counts[i] = p->element[3]->integer;
        }
    }

    freeReplyObject(rep);

    return 0;
}


int
wa_redis_ack(wa_redis_t *r, wa_entry_t *entries, int n)
{
    return wa_redis_ack_stream(r, r->events, entries, n);
}


int
wa_redis_bell_ack(wa_redis_t *r, wa_entry_t *entries, int n)
{
    return wa_redis_ack_stream(r, r->outbox, entries, n);
}


int
wa_redis_bell_ring(wa_redis_t *r, const char *commands)
{
    int          n, i, ok;
    const char  *p, *end;
    redisReply  *rep;

    if (r->c == NULL) {
        return -1;
    }

    n = 0;

    for (p = commands; (end = strchr(p, '\n')) != NULL; p = end + 1) {
        if (redisAppendCommand(r->c, "XADD %s * cmd %b", r->outbox, p,
                               (size_t) (end - p)) != REDIS_OK)
        {
            wa_log_error("redis XADD %s: %s", r->outbox, r->c->errstr);
            wa_redis_close(r);
            return -1;
        }

        n++;
    }

    ok = 1;

    for (i = 0; i < n; i++) {
        if (redisGetReply(r->c, (void **) &rep) != REDIS_OK) {
            wa_log_error("redis XADD %s: %s", r->outbox, r->c->errstr);
            wa_redis_close(r);
            return -1;
        }

        ok &= wa_redis_ok(r, rep, "XADD");
    }

    return ok ? 0 : -1;
}


static int
wa_redis_ack_stream(wa_redis_t *r, const char *stream, wa_entry_t *entries,
    int n)
{
    int           i, rc;
    size_t        argc;
    const char  **argv;
    redisReply   *rep;

    argv = malloc((n + 3) * sizeof(char *));
    if (argv == NULL) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        argv[i + 3] = entries[i].id;
    }

    /* pipelined: both sent before either reply is read */
    argv[0] = "XACK";
    argv[1] = stream;
    argv[2] = WA_REDIS_GROUP;
    argc = n + 3;
    redisAppendCommandArgv(r->c, (int) argc, argv, NULL);

    argv[1] = "XDEL";
    argv[2] = stream;
    redisAppendCommandArgv(r->c, (int) argc - 1, argv + 1, NULL);

    free(argv);

    rc = 0;

    for (i = 0; i < 2; i++) {
        if (redisGetReply(r->c, (void **) &rep) != REDIS_OK) {
            wa_log_error("redis XACK/XDEL: %s", r->c->errstr);
            wa_redis_close(r);
            return -1;
        }

        if (!wa_redis_ok(r, rep, i == 0 ? "XACK" : "XDEL")) {
            rc = -1;
        }
    }

    return rc;
}


int
wa_redis_dead(wa_redis_t *r, const wa_entry_t *e, const char *error)
{
    const char  *argv[12];
    size_t       argvlen[12];
    int          argc;

    argc = 0;

#define WA_ARG(s, l)  (argv[argc] = (s), argvlen[argc++] = (l))

    WA_ARG("XADD", 4);
    WA_ARG(r->dead, strlen(r->dead));
    WA_ARG("*", 1);
    WA_ARG("id", 2);
    WA_ARG(e->id, strlen(e->id));
    WA_ARG("body", 4);
    WA_ARG(e->body ? e->body : "", e->body ? e->body_len : 0);
    WA_ARG("rcvd", 4);
    WA_ARG(e->rcvd ? e->rcvd : "", e->rcvd ? strlen(e->rcvd) : 0);
    WA_ARG("error", 5);
    WA_ARG(error, strlen(error));

#undef WA_ARG

    return wa_redis_ok(r, redisCommandArgv(r->c, argc, argv, argvlen),
                       "XADD dead") ? 0 : -1;
}


int
wa_redis_publish(wa_redis_t *r, int n, const char **parts,
    const size_t *lens)
{
    int           i, argc, rc;
    char          cap[16];
    size_t       *argvlen;
    const char  **argv;

    argc = 5 + 2 * n;
    argv = malloc(argc * sizeof(char *));
    argvlen = malloc(argc * sizeof(size_t));

    if (argv == NULL || argvlen == NULL) {
        free(argv);
        free(argvlen);
        return -1;
    }

    snprintf(cap, sizeof(cap), "%d", r->cf->worker_updates_maxlen);

    argv[0] = "EVAL";
    argv[1] = wa_publish_script;
    argv[2] = "1";
    argv[3] = r->updates;
    argv[4] = cap;

    for (i = 0; i < 5; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    for (i = 0; i < 2 * n; i++) {
        argv[5 + i] = parts[i];
        argvlen[5 + i] = lens[i];
    }

    rc = wa_redis_ok(r, redisCommandArgv(r->c, argc, argv, argvlen), "EVAL")
         ? 0 : -1;

    /* the ingest loop's and the sender's alike */
    if (rc == 0) {
        wa_metrics_add(WA_M_UPDATES_PUBLISHED, n);
    }

    free(argv);
    free(argvlen);

    return rc;
}
