/*
 * The relay: one reader of the wa:updates stream per worker process.
 *
 * It reads with XREAD BLOCK from the last id it has seen, on a Redis
 * connection of its own (a blocked read would hold up the webhook's
 * commands).  Reading the stream rather than SUBSCRIBE-ing to the
 * channel the worker also publishes on (measured side by side in
 * bench/sse, same latency) means:
 *   - after a lost connection or a Redis restart it goes on from its
 *     cursor: nothing published meanwhile is missed, with no catch-up
 *     path separate from the live one;
 *   - Redis never cuts it off for a full pub/sub output buffer: entries
 *     wait in the stream, the relay takes up to 1,000 per read;
 *   - the cursor is the position a Last-Event-ID replay runs up to.
 * Each entry is parsed once (yajl) for the fields that route it, written
 * once as an SSE frame, and handed to sse.c for its subscribers.
 */

#include "ngx_http_whatsapp_module.h"

#include <yajl/yajl_tree.h>


/* a read waits this long for new entries, then is asked again; a read
 * not answered in twice that means Redis stalled: reconnect */
#define NGX_HTTP_WHATSAPP_RELAY_BLOCK     "5000"
#define NGX_HTTP_WHATSAPP_RELAY_DEADLINE  10000
#define NGX_HTTP_WHATSAPP_RELAY_COUNT     "1000"
#define NGX_HTTP_WHATSAPP_RELAY_RETRY     1000
#define NGX_HTTP_WHATSAPP_RELAY_REPLAYS   8      /* at a time, per process */


static ngx_int_t ngx_http_whatsapp_relay_connect(
    ngx_http_whatsapp_relay_t *rl, ngx_http_whatsapp_redis_t *conn,
    const char *role, ngx_uint_t max_pending,
    ngx_http_whatsapp_redis_ready_pt ready, ngx_cycle_t *cycle);
static void ngx_http_whatsapp_relay_ready(void *data);
static void ngx_http_whatsapp_relay_replays(void *data);
static void ngx_http_whatsapp_relay_resume(ngx_event_t *ev);
static void ngx_http_whatsapp_relay_read(ngx_http_whatsapp_relay_t *rl);
static void ngx_http_whatsapp_relay_positioned(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result);
static void ngx_http_whatsapp_relay_entries(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result);
static ngx_int_t ngx_http_whatsapp_relay_failed(ngx_http_whatsapp_relay_t *rl,
    redisReply *reply, ngx_http_whatsapp_redis_result_e result);
static void ngx_http_whatsapp_relay_retry(ngx_event_t *ev);
static void ngx_http_whatsapp_relay_dispatch(ngx_http_whatsapp_relay_t *rl,
    redisReply *entries);
static void ngx_http_whatsapp_relay_advance(ngx_http_whatsapp_relay_t *rl,
    redisReply *id);
static void ngx_http_whatsapp_relay_field(yajl_val tree, const char *outer,
    const char *inner, ngx_str_t *value);
static ngx_http_whatsapp_sse_frame_t *ngx_http_whatsapp_relay_frame(
    ngx_str_t *id, ngx_str_t *event, ngx_str_t *data);


/*
 * The relay of a (Redis, key) pair, made at configuration time; every
 * whatsapp_events location reading the same stream shares it.
 */
ngx_http_whatsapp_relay_t *
ngx_http_whatsapp_relay_get(ngx_conf_t *cf, ngx_http_whatsapp_redis_t *redis,
    ngx_str_t *key)
{
    ngx_uint_t                      i;
    ngx_http_whatsapp_relay_t      *rl, **slot;
    ngx_http_whatsapp_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_whatsapp_module);

    slot = wmcf->relays.elts;

    for (i = 0; i < wmcf->relays.nelts; i++) {
        rl = slot[i];

        if (rl->redis == redis
            && rl->key.len == key->len
            && ngx_memcmp(rl->key.data, key->data, key->len) == 0)
        {
            return rl;
        }
    }

    rl = ngx_pcalloc(cf->pool, sizeof(ngx_http_whatsapp_relay_t));
    if (rl == NULL) {
        return NULL;
    }

    rl->redis = redis;
    rl->key = *key;

    slot = ngx_array_push(&wmcf->relays);
    if (slot == NULL) {
        return NULL;
    }

    *slot = rl;

    return rl;
}


ngx_int_t
ngx_http_whatsapp_relay_init_worker(ngx_http_whatsapp_relay_t *rl,
    ngx_cycle_t *cycle)
{
    ngx_queue_init(&rl->subscribers);
    ngx_queue_init(&rl->closing);
    ngx_queue_init(&rl->waiting);

    rl->tick.handler = ngx_http_whatsapp_sse_tick;
    rl->tick.data = rl;
    rl->tick.log = cycle->log;

    rl->resume.handler = ngx_http_whatsapp_relay_resume;
    rl->resume.data = rl;
    rl->resume.log = cycle->log;

    rl->retry.handler = ngx_http_whatsapp_relay_retry;
    rl->retry.data = rl;
    rl->retry.log = cycle->log;
    rl->retry.cancelable = 1;

    if (ngx_http_whatsapp_relay_connect(rl, &rl->conn, "", 1,
                                        ngx_http_whatsapp_relay_ready, cycle)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* replays of reconnecting browsers: a few at a time, the others wait */
    return ngx_http_whatsapp_relay_connect(rl, &rl->replays, " replays",
                                           NGX_HTTP_WHATSAPP_RELAY_REPLAYS,
                                           ngx_http_whatsapp_relay_replays,
                                           cycle);
}


/* The same server as the commands, on a connection of its own. */
static ngx_int_t
ngx_http_whatsapp_relay_connect(ngx_http_whatsapp_relay_t *rl,
    ngx_http_whatsapp_redis_t *conn, const char *role,
    ngx_uint_t max_pending, ngx_http_whatsapp_redis_ready_pt ready,
    ngx_cycle_t *cycle)
{
    size_t  len;

    /* "127.0.0.1:6379 (wa:updates replays)" in its log lines */
    len = ngx_strlen(role);

    conn->name.len = rl->redis->name.len + rl->key.len + len + sizeof(" ()")
                     - 1;
    conn->name.data = ngx_pnalloc(cycle->pool, conn->name.len);
    if (conn->name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(conn->name.data, "%V (%V%s)", &rl->redis->name, &rl->key,
                role);

    conn->host = rl->redis->host;
    conn->port = rl->redis->port;
    conn->password = rl->redis->password;
    conn->db = rl->redis->db;
    conn->connect_timeout = rl->redis->connect_timeout;
    conn->max_pending = max_pending;
    conn->ready = ready;
    conn->ready_data = rl;

    /* a read blocked in Redis must not keep an exiting worker alive */
    conn->cancelable = 1;

    return ngx_http_whatsapp_redis_init_worker(conn, cycle);
}


void
ngx_http_whatsapp_relay_exit_worker(ngx_http_whatsapp_relay_t *rl)
{
    if (rl->retry.timer_set) {
        ngx_del_timer(&rl->retry);
    }

    if (rl->tick.timer_set) {
        ngx_del_timer(&rl->tick);
    }

    if (rl->resume.posted) {
        ngx_delete_posted_event(&rl->resume);
    }

    ngx_http_whatsapp_redis_exit_worker(&rl->conn);
    ngx_http_whatsapp_redis_exit_worker(&rl->replays);
}


static void
ngx_http_whatsapp_relay_replays(void *data)
{
    ngx_http_whatsapp_sse_resume(data);
}


static void
ngx_http_whatsapp_relay_resume(ngx_event_t *ev)
{
    ngx_http_whatsapp_sse_resume(ev->data);
}


/* Connected (again): the first time, learn where the stream ends. */
static void
ngx_http_whatsapp_relay_ready(void *data)
{
    ngx_http_whatsapp_relay_t  *rl = data;

    const char  *argv[6];
    size_t       argvlen[6];

    if (rl->positioned) {
        ngx_http_whatsapp_relay_read(rl);
        return;
    }

    argv[0] = "XREVRANGE";
    argv[1] = (const char *) rl->key.data;
    argv[2] = "+";
    argv[3] = "-";
    argv[4] = "COUNT";
    argv[5] = "1";

    argvlen[0] = sizeof("XREVRANGE") - 1;
    argvlen[1] = rl->key.len;
    argvlen[2] = 1;
    argvlen[3] = 1;
    argvlen[4] = sizeof("COUNT") - 1;
    argvlen[5] = 1;

    if (ngx_http_whatsapp_redis_send(&rl->conn, 6, argv, argvlen,
                                     NGX_HTTP_WHATSAPP_RELAY_DEADLINE,
                                     ngx_http_whatsapp_relay_positioned, rl,
                                     &rl->cmd)
        != NGX_OK)
    {
        ngx_add_timer(&rl->retry, NGX_HTTP_WHATSAPP_RELAY_RETRY);
    }
}


static void
ngx_http_whatsapp_relay_positioned(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result)
{
    ngx_http_whatsapp_relay_t  *rl = data;

    rl->cmd = NULL;

    if (ngx_http_whatsapp_relay_failed(rl, reply, result) != NGX_OK) {
        return;
    }

    if (reply->elements && reply->element[0]->type == REDIS_REPLY_ARRAY
        && reply->element[0]->elements == 2)
    {
        ngx_http_whatsapp_relay_advance(rl, reply->element[0]->element[0]);

    } else {
        rl->cursor_len = ngx_sprintf(rl->cursor_text, "0-0") - rl->cursor_text;
    }

    rl->positioned = 1;

    ngx_log_error(NGX_LOG_INFO, rl->conn.log, 0,
                  "whatsapp: relaying %V from %*s", &rl->key,
                  rl->cursor_len, rl->cursor_text);

    ngx_http_whatsapp_relay_read(rl);

    /* reconnects that came before the position was known */
    ngx_http_whatsapp_sse_resume(rl);
}


static void
ngx_http_whatsapp_relay_read(ngx_http_whatsapp_relay_t *rl)
{
    const char  *argv[8];
    size_t       argvlen[8];

    argv[0] = "XREAD";
    argv[1] = "COUNT";
    argv[2] = NGX_HTTP_WHATSAPP_RELAY_COUNT;
    argv[3] = "BLOCK";
    argv[4] = NGX_HTTP_WHATSAPP_RELAY_BLOCK;
    argv[5] = "STREAMS";
    argv[6] = (const char *) rl->key.data;
    argv[7] = (const char *) rl->cursor_text;

    argvlen[0] = sizeof("XREAD") - 1;
    argvlen[1] = sizeof("COUNT") - 1;
    argvlen[2] = sizeof(NGX_HTTP_WHATSAPP_RELAY_COUNT) - 1;
    argvlen[3] = sizeof("BLOCK") - 1;
    argvlen[4] = sizeof(NGX_HTTP_WHATSAPP_RELAY_BLOCK) - 1;
    argvlen[5] = sizeof("STREAMS") - 1;
    argvlen[6] = rl->key.len;
    argvlen[7] = rl->cursor_len;

    if (ngx_http_whatsapp_redis_send(&rl->conn, 8, argv, argvlen,
                                     NGX_HTTP_WHATSAPP_RELAY_DEADLINE,
                                     ngx_http_whatsapp_relay_entries, rl,
                                     &rl->cmd)
        != NGX_OK)
    {
        /* not connected: the next "ready" reads again */
        rl->cmd = NULL;
    }
}


static void
ngx_http_whatsapp_relay_entries(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result)
{
    ngx_http_whatsapp_relay_t  *rl = data;

    redisReply  *stream;

    rl->cmd = NULL;

    if (ngx_http_whatsapp_relay_failed(rl, reply, result) != NGX_OK) {
        return;
    }

    /* nil: nothing new within BLOCK; else [[key, [entry, ...]]] */

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        stream = reply->element[0];

        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2
            && stream->element[1]->type == REDIS_REPLY_ARRAY)
        {
            ngx_http_whatsapp_relay_dispatch(rl, stream->element[1]);
        }
    }

    ngx_http_whatsapp_relay_read(rl);
}


/*
 * A lost connection or a stalled Redis is followed by a reconnect, whose
 * "ready" reads again; an error reply (the key holds something else) is
 * retried a second later so the log is not flooded.
 */
static ngx_int_t
ngx_http_whatsapp_relay_failed(ngx_http_whatsapp_relay_t *rl,
    redisReply *reply, ngx_http_whatsapp_redis_result_e result)
{
    if (result != NGX_HTTP_WHATSAPP_REDIS_REPLY) {
        return NGX_ERROR;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rl->conn.log, 0,
                      "whatsapp: reading %V failed: %s", &rl->key, reply->str);
        ngx_add_timer(&rl->retry, NGX_HTTP_WHATSAPP_RELAY_RETRY);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_whatsapp_relay_retry(ngx_event_t *ev)
{
    ngx_http_whatsapp_relay_t  *rl = ev->data;

    if (rl->conn.state == NGX_HTTP_WHATSAPP_REDIS_READY && rl->cmd == NULL) {
        ngx_http_whatsapp_relay_ready(rl);
    }
}


static void
ngx_http_whatsapp_relay_dispatch(ngx_http_whatsapp_relay_t *rl,
    redisReply *entries)
{
    void                            *tree;
    size_t                           i;
    ngx_http_whatsapp_sse_update_t   u;

    for (i = 0; i < entries->elements; i++) {

        /* nobody to tell: only move on */
        if (!ngx_queue_empty(&rl->subscribers)
            && ngx_http_whatsapp_relay_update(entries->element[i], &u, &tree,
                                              rl->conn.log)
               == NGX_OK)
        {
            ngx_http_whatsapp_sse_route(rl, &u);
            ngx_http_whatsapp_sse_frame_release(u.frame);
            yajl_tree_free(tree);
        }

        if (entries->element[i]->type == REDIS_REPLY_ARRAY
            && entries->element[i]->elements == 2)
        {
            ngx_http_whatsapp_relay_advance(rl,
                                            entries->element[i]->element[0]);
        }
    }

    ngx_http_whatsapp_sse_flush(rl);
}


static void
ngx_http_whatsapp_relay_advance(ngx_http_whatsapp_relay_t *rl, redisReply *id)
{
    if (id->type != REDIS_REPLY_STRING
        || id->len >= NGX_HTTP_WHATSAPP_SSE_ID_LEN
        || ngx_http_whatsapp_sse_id_parse((u_char *) id->str, id->len,
                                          &rl->cursor)
           != NGX_OK)
    {
        return;
    }

    ngx_memcpy(rl->cursor_text, id->str, id->len);
    rl->cursor_text[id->len] = '\0';
    rl->cursor_len = id->len;
}


ngx_int_t
ngx_http_whatsapp_relay_update(redisReply *entry,
    ngx_http_whatsapp_sse_update_t *u, void **tree, ngx_log_t *log)
{
    size_t       i;
    yajl_val     v;
    ngx_str_t    data;
    redisReply  *fields, *name, *value;

    ngx_memzero(u, sizeof(ngx_http_whatsapp_sse_update_t));
    ngx_str_null(&data);

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
        || entry->element[0]->type != REDIS_REPLY_STRING
        || entry->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_DECLINED;
    }

    u->id_text.data = (u_char *) entry->element[0]->str;
    u->id_text.len = entry->element[0]->len;

    if (ngx_http_whatsapp_sse_id_parse(u->id_text.data, u->id_text.len,
                                       &u->id)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    fields = entry->element[1];

    for (i = 0; i + 1 < fields->elements; i += 2) {
        name = fields->element[i];
        value = fields->element[i + 1];

        if (name->type != REDIS_REPLY_STRING
            || value->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        if (name->len == 5 && ngx_strncmp(name->str, "event", 5) == 0) {
            u->event.data = (u_char *) value->str;
            u->event.len = value->len;

        } else if (name->len == 4 && ngx_strncmp(name->str, "data", 4) == 0) {
            data.data = (u_char *) value->str;
            data.len = value->len;
        }
    }

    /* an event name is one line of SSE; the data may be several */
    if (u->event.len == 0 || data.data == NULL
        || ngx_strlchr(u->event.data, u->event.data + u->event.len, '\n')
        || ngx_strlchr(u->event.data, u->event.data + u->event.len, '\r'))
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "whatsapp: update %V has no usable event or data",
                      &u->id_text);
        return NGX_DECLINED;
    }

    /*
     * hiredis ends every string with NUL.  Data that is not JSON is
     * relayed without routing fields: only callers who see every number
     * get it, as with the account-wide events (template.status).
     */
    v = yajl_tree_parse((const char *) data.data, NULL, 0);

    if (v != NULL) {
        ngx_http_whatsapp_relay_field(v, "phone_number_id", NULL, &u->phone);
        ngx_http_whatsapp_relay_field(v, "conversation_id", NULL,
                                      &u->conversation);
        ngx_http_whatsapp_relay_field(v, "assignee", NULL, &u->assignee);

        /* conversation.update carries the conversation itself */
        if (u->conversation.len == 0) {
            ngx_http_whatsapp_relay_field(v, "conversation", "id",
                                          &u->conversation);
            ngx_http_whatsapp_relay_field(v, "conversation", "assignee",
                                          &u->assignee);
        }
    }

    u->frame = ngx_http_whatsapp_relay_frame(&u->id_text, &u->event, &data);

    if (u->frame == NULL) {
        if (v) {
            yajl_tree_free(v);
        }

        return NGX_ERROR;
    }

    *tree = v;

    return NGX_OK;
}


/* A string (or number) at tree.outer[.inner]; len 0 if absent or null. */
static void
ngx_http_whatsapp_relay_field(yajl_val tree, const char *outer,
    const char *inner, ngx_str_t *value)
{
    yajl_val     v;
    const char  *path[3];

    path[0] = outer;
    path[1] = inner;
    path[2] = NULL;

    v = yajl_tree_get(tree, path, yajl_t_any);

    if (YAJL_IS_STRING(v)) {
        value->data = (u_char *) YAJL_GET_STRING(v);

    } else if (YAJL_IS_NUMBER(v)) {
        value->data = (u_char *) YAJL_GET_NUMBER(v);

    } else {
        ngx_str_null(value);
        return;
    }

    value->len = ngx_strlen(value->data);
}


/*
 * "id: ID\nevent: EVENT\ndata: LINE\n...\n\n": data with line breaks
 * (CR, LF or CRLF) becomes several data lines, which a browser joins
 * again with "\n".
 */
static ngx_http_whatsapp_sse_frame_t *
ngx_http_whatsapp_relay_frame(ngx_str_t *id, ngx_str_t *event,
    ngx_str_t *data)
{
    u_char                         *p, *q, *end;
    size_t                          len, lines;
    ngx_http_whatsapp_sse_frame_t  *f;

    end = data->data + data->len;
    lines = 1;

    for (p = data->data; p < end; p++) {
        if (*p == '\n' || (*p == '\r' && (p + 1 == end || p[1] != '\n'))) {
            lines++;
        }
    }

    len = sizeof("id: \nevent: \n\n") - 1 + id->len + event->len
          + lines * (sizeof("data: \n") - 1) + data->len;

    f = ngx_alloc(offsetof(ngx_http_whatsapp_sse_frame_t, data) + len,
                  ngx_cycle->log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;

    p = ngx_sprintf(f->data, "id: %V\nevent: %V\n", id, event);

    for (q = data->data; /* void */ ; q++) {
        p = ngx_cpymem(p, "data: ", sizeof("data: ") - 1);

        while (q < end && *q != '\n' && *q != '\r') {
            *p++ = *q++;
        }

        *p++ = '\n';

        if (q == end) {
            break;
        }

        if (*q == '\r' && q + 1 < end && q[1] == '\n') {
            q++;
        }
    }

    *p++ = '\n';

    f->len = p - f->data;

    return f;
}


void
ngx_http_whatsapp_sse_frame_release(ngx_http_whatsapp_sse_frame_t *f)
{
    if (--f->refs == 0) {
        ngx_free(f);
    }
}


/* "MS-SEQ" or "MS" (sequence 0), as Redis accepts ids */
ngx_int_t
ngx_http_whatsapp_sse_id_parse(u_char *p, size_t len,
    ngx_http_whatsapp_sse_id_t *id)
{
    u_char    *end, *dash;
    uint64_t  *part;

    end = p + len;
    dash = ngx_strlchr(p, end, '-');

    id->ms = 0;
    id->seq = 0;
    part = &id->ms;

    if (len == 0 || p == dash || dash + 1 == end) {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < end; p++) {

        if (p == dash) {
            part = &id->seq;
            continue;
        }

        if (*p < '0' || *p > '9'
            || *part > (UINT64_MAX - (*p - '0')) / 10)
        {
            return NGX_ERROR;
        }

        *part = *part * 10 + (*p - '0');
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_whatsapp_sse_id_cmp(ngx_http_whatsapp_sse_id_t *a,
    ngx_http_whatsapp_sse_id_t *b)
{
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }

    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }

    return 0;
}
