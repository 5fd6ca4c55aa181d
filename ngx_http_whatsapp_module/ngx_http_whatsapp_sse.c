/*
 * whatsapp_events: the updates of wa:updates as Server-Sent Events.
 *
 * A request is authenticated like the API (whatsapp_auth), may narrow
 * what it gets (?phone_number_id=, ?conversation_id=, ?events=a,b), and
 * becomes a subscriber of its worker process' relay.  Every update the
 * relay reads is offered to every subscriber; those whose scope or
 * filters exclude it never see it.
 *
 * Replay: with Last-Event-ID (header, or ?last_event_id=) older than the
 * relay's cursor, the entries between the two are read with XRANGE while
 * live updates are held back, then both are written in order: no gap, no
 * duplicate.  An id the stream no longer holds, or more than
 * whatsapp_sse_replay entries to replay, gives "event: reset" instead:
 * the client reloads what it shows, then carries on live.  Replays run on
 * the relay's replay connection, a few at a time (a whole office
 * reconnecting at once must not delay the webhook's commands); the others
 * wait their turn, or for Redis, with the stream open: a browser's
 * EventSource gives up on an error status, not on a stream that waits.
 *
 * Output: a frame is written once per update and shared; each subscriber
 * keeps the frames NGINX has not sent yet.  Past whatsapp_sse_buffer
 * bytes unsent (a client that stopped reading), or nothing sent within
 * send_timeout, the connection is closed: the browser reconnects with
 * Last-Event-ID and replays.  A client never stalls the others.
 *
 * Every second a tick sends the heartbeats that are due and, when the
 * worker process is shutting down (reload, quit), ends every stream so
 * browsers reconnect to the new workers.
 */

#include "ngx_http_whatsapp_module.h"

#include <yajl/yajl_tree.h>


#define NGX_HTTP_WHATSAPP_SSE_TICK    1000
#define NGX_HTTP_WHATSAPP_SSE_REPLAY_TIMEOUT  10000
#define NGX_HTTP_WHATSAPP_SSE_EVENTS  16     /* names in ?events= */


/*
 * What ?events= may name: the updates the worker publishes
 * (worker/README.md) and the relay's own reset.  A name not here is a
 * 400, so that a misspelt filter is not a stream that stays silent.
 */
static ngx_str_t  ngx_http_whatsapp_sse_event_name[] = {
    ngx_string("message.new"),
    ngx_string("message.echo"),
    ngx_string("message.status"),
    ngx_string("conversation.update"),
    ngx_string("template.status"),
    ngx_string("phone.health"),
    ngx_string("reset")
};

static ngx_array_t  ngx_http_whatsapp_sse_event_names = {
    ngx_http_whatsapp_sse_event_name,
    sizeof(ngx_http_whatsapp_sse_event_name) / sizeof(ngx_str_t),
    sizeof(ngx_str_t),
    sizeof(ngx_http_whatsapp_sse_event_name) / sizeof(ngx_str_t),
    NULL
};


typedef struct ngx_http_whatsapp_sse_out_s  ngx_http_whatsapp_sse_out_t;

/* One piece of output: a shared frame or a constant text. */
struct ngx_http_whatsapp_sse_out_s {
    ngx_buf_t                        buf;
    ngx_chain_t                      cl;
    ngx_http_whatsapp_sse_frame_t   *frame;     /* NULL: constant */
    ngx_http_whatsapp_sse_out_t     *next;
};


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_whatsapp_relay_t       *relay;
    ngx_http_whatsapp_loc_conf_t    *conf;
    ngx_queue_t                      queue;     /* in relay or "closing" */
    ngx_queue_t                      wait;      /* in relay's "waiting" */

    /* what it may see, and what it asked for */
    ngx_http_whatsapp_scope_t        scope;
    ngx_array_t                     *phones;    /* ngx_str_t; NULL: all */
    ngx_str_t                        phone;
    ngx_str_t                        conversation;
    ngx_array_t                     *events;    /* ngx_str_t; NULL: all */

    /* where it is in the stream */
    ngx_http_whatsapp_sse_id_t       after;     /* only ids above */
    ngx_http_whatsapp_sse_id_t       last;      /* Last-Event-ID */
    u_char                           upto[NGX_HTTP_WHATSAPP_SSE_ID_LEN];
    size_t                           upto_len;  /* replay end, reset id */
    ngx_http_whatsapp_redis_cmd_t   *replay;

    /* output: not yet given to NGINX, given but not all sent, spare */
    ngx_http_whatsapp_sse_out_t     *pending;
    ngx_http_whatsapp_sse_out_t    **pending_last;
    ngx_http_whatsapp_sse_out_t     *busy;
    ngx_http_whatsapp_sse_out_t    **busy_last;
    ngx_http_whatsapp_sse_out_t     *free;
    size_t                           queued;    /* bytes, pending + busy */
    ngx_msec_t                       written;

    ngx_int_t                        close_rc;  /* how, once dropped */
    unsigned                         linked:1;
    unsigned                         counted:1;
    unsigned                         replaying:1;  /* live ones held */
    unsigned                         waiting:1;    /* replay not sent */
    unsigned                         dropped:1; /* closing or closed */
} ngx_http_whatsapp_sse_t;


static ngx_int_t ngx_http_whatsapp_sse_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message);
static ngx_int_t ngx_http_whatsapp_sse_params(ngx_http_request_t *r,
    ngx_http_whatsapp_sse_t *sub, ngx_str_t *msg);
static ngx_array_t *ngx_http_whatsapp_sse_scope(ngx_pool_t *pool,
    ngx_str_t *literal);
static ngx_array_t *ngx_http_whatsapp_sse_events(ngx_pool_t *pool,
    ngx_str_t *text);
static ngx_array_t *ngx_http_whatsapp_sse_split(ngx_pool_t *pool,
    ngx_str_t *text);
static ngx_uint_t ngx_http_whatsapp_sse_name_ok(ngx_str_t *s);
static ngx_uint_t ngx_http_whatsapp_sse_in(ngx_array_t *list, ngx_str_t *s);
static ngx_int_t ngx_http_whatsapp_sse_last_event_id(ngx_http_request_t *r,
    ngx_str_t *value);
static ngx_int_t ngx_http_whatsapp_sse_replay(ngx_http_whatsapp_sse_t *sub);
static void ngx_http_whatsapp_sse_replayed(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result);
static ngx_http_whatsapp_sse_out_t *ngx_http_whatsapp_sse_replay_frames(
    ngx_http_whatsapp_sse_t *sub, redisReply *entries);
static ngx_http_whatsapp_sse_out_t *ngx_http_whatsapp_sse_reset_frame(
    ngx_http_whatsapp_sse_t *sub, const char *reason);
static ngx_uint_t ngx_http_whatsapp_sse_match(ngx_http_whatsapp_sse_t *sub,
    ngx_http_whatsapp_sse_update_t *u);
static ngx_http_whatsapp_sse_out_t *ngx_http_whatsapp_sse_out(
    ngx_http_whatsapp_sse_t *sub, u_char *p, size_t len,
    ngx_http_whatsapp_sse_frame_t *frame);
static ngx_int_t ngx_http_whatsapp_sse_queue(ngx_http_whatsapp_sse_t *sub,
    u_char *p, size_t len, ngx_http_whatsapp_sse_frame_t *frame);
static void ngx_http_whatsapp_sse_write(ngx_http_whatsapp_sse_t *sub);
static size_t ngx_http_whatsapp_sse_reap(ngx_http_whatsapp_sse_t *sub);
static void ngx_http_whatsapp_sse_write_handler(ngx_http_request_t *r);
static void ngx_http_whatsapp_sse_drop(ngx_http_whatsapp_sse_t *sub,
    ngx_int_t rc);
static void ngx_http_whatsapp_sse_close_dropped(ngx_http_whatsapp_relay_t *rl);
static void ngx_http_whatsapp_sse_finish(ngx_http_whatsapp_sse_t *sub);
static void ngx_http_whatsapp_sse_cleanup(void *data);


static u_char  ngx_http_whatsapp_sse_hello[] =
    ": whatsapp events\nretry: 2000\n\n";

static u_char  ngx_http_whatsapp_sse_heartbeat[] = ": heartbeat\n\n";


ngx_int_t
ngx_http_whatsapp_sse_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      msg;
    ngx_pool_cleanup_t            *cln;
    ngx_http_whatsapp_sse_t       *sub;
    ngx_http_whatsapp_relay_t     *rl;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    static ngx_str_t  no_cache = ngx_string("no-cache");
    static ngx_str_t  no = ngx_string("no");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_str_set(&msg, "use GET");
        return ngx_http_whatsapp_sse_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                            "method_not_allowed", &msg);
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);
    rl = wlcf->relay;

    sub = ngx_pcalloc(r->pool, sizeof(ngx_http_whatsapp_sse_t));
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, sub, ngx_http_whatsapp_module);

    sub->request = r;
    sub->relay = rl;
    sub->conf = wlcf;
    sub->pending_last = &sub->pending;
    sub->busy_last = &sub->busy;

    /* 401 and 403 are answered before anything streams */

    rc = ngx_http_whatsapp_auth_scope(r, &wlcf->auth, &sub->scope, &msg);

    if (rc == NGX_HTTP_UNAUTHORIZED || rc == NGX_HTTP_FORBIDDEN) {
        return ngx_http_whatsapp_sse_refuse(r, rc,
                   rc == NGX_HTTP_UNAUTHORIZED ? "unauthorized" : "forbidden",
                   &msg);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_whatsapp_sse_params(r, sub, &msg);

    if (rc != NGX_OK) {
        return rc == NGX_ERROR
               ? NGX_HTTP_INTERNAL_SERVER_ERROR
               : ngx_http_whatsapp_sse_refuse(r, rc,
                     rc == NGX_HTTP_FORBIDDEN ? "forbidden" : "bad_request",
                     &msg);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_whatsapp_sse_cleanup;
    cln->data = sub;

    if (ngx_exiting) {
        ngx_str_set(&msg, "shutting down, reconnect");
        return ngx_http_whatsapp_sse_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "unavailable", &msg);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    /* proxies in front must neither cache nor buffer the stream */

    if (ngx_http_whatsapp_header_out(r, "Cache-Control", &no_cache) != NGX_OK
        || ngx_http_whatsapp_header_out(r, "X-Accel-Buffering", &no)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    /* frames are small and must not wait for the previous one's ACK
     * (Nagle and delayed ACKs: 40 ms); HTTP/2 sets it on its connection */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
        && ngx_tcp_nodelay(r->connection) != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_whatsapp_sse_write_handler;
    r->main->count++;

    ngx_queue_insert_tail(&rl->subscribers, &sub->queue);
    sub->linked = 1;
    sub->counted = 1;

    ngx_http_whatsapp_status_sse(NGX_HTTP_WHATSAPP_SSE_SUBSCRIBERS, 1);

    if (!rl->tick.timer_set) {
        ngx_add_timer(&rl->tick, NGX_HTTP_WHATSAPP_SSE_TICK);
    }

    if (ngx_http_whatsapp_sse_queue(sub, ngx_http_whatsapp_sse_hello,
                                    sizeof(ngx_http_whatsapp_sse_hello) - 1,
                                    NULL)
        == NGX_OK)
    {
        ngx_http_whatsapp_sse_write(sub);
    }

    if (sub->dropped) {
        /* not from here: the content phase finalizes what we return */
        ngx_queue_remove(&sub->queue);
        sub->linked = 0;
        r->main->count--;
        return NGX_ERROR;
    }

    if (rl->positioned
        && ngx_http_whatsapp_sse_id_cmp(&sub->last, &rl->cursor) >= 0)
    {
        sub->after = sub->last;         /* nothing missed */

    } else if (sub->last.ms || sub->last.seq) {
        sub->replaying = 1;
        sub->waiting = 1;
        ngx_queue_insert_tail(&rl->waiting, &sub->wait);

        /* after this handler: resuming may close streams */
        if (!rl->resume.posted) {
            ngx_post_event(&rl->resume, &ngx_posted_events);
        }

    } else {
        sub->after = rl->cursor;        /* what is yet to come */
    }

    return NGX_DONE;
}


/* An error before streaming, in the API's JSON shape. */
static ngx_int_t
ngx_http_whatsapp_sse_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message)
{
    ngx_int_t                  rc;
    ngx_http_complex_value_t   cv;

    static ngx_str_t  type = ngx_string("application/json");
    static ngx_str_t  allow = ngx_string("GET, HEAD");
    static ngx_str_t  retry = ngx_string("1");

    ngx_memzero(&cv, sizeof(ngx_http_complex_value_t));

    if (ngx_http_whatsapp_error_json(r, code, message, &cv.value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        rc = ngx_http_whatsapp_header_out(r, "Allow", &allow);

    } else if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        rc = ngx_http_whatsapp_header_out(r, "Retry-After", &retry);

    } else {
        rc = NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_send_response(r, status, &type, &cv);
}


/*
 * ?phone_number_id=, ?conversation_id=, ?events= and the Last-Event-ID.
 * NGX_OK, or 400 / 403 with *msg.
 */
static ngx_int_t
ngx_http_whatsapp_sse_params(ngx_http_request_t *r,
    ngx_http_whatsapp_sse_t *sub, ngx_str_t *msg)
{
    ngx_str_t  events, last;

    if (sub->scope.phones.data) {
        sub->phones = ngx_http_whatsapp_sse_scope(r->pool, &sub->scope.phones);
        if (sub->phones == NULL) {
            return NGX_ERROR;
        }
    }

    /* an absent argument is an empty one */
    if (ngx_http_whatsapp_arg(r, "phone_number_id", &sub->phone) == NGX_ERROR
        || ngx_http_whatsapp_arg(r, "conversation_id", &sub->conversation)
           == NGX_ERROR
        || ngx_http_whatsapp_arg(r, "events", &events) == NGX_ERROR
        || ngx_http_whatsapp_sse_last_event_id(r, &last) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (!ngx_http_whatsapp_sse_name_ok(&sub->phone)) {
        ngx_str_set(msg, "invalid phone_number_id");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (sub->phone.len && sub->phones
        && !ngx_http_whatsapp_sse_in(sub->phones, &sub->phone))
    {
        ngx_str_set(msg, "phone_number_id is not in your scope");
        return NGX_HTTP_FORBIDDEN;
    }

    if (!ngx_http_whatsapp_sse_name_ok(&sub->conversation)) {
        ngx_str_set(msg, "invalid conversation_id");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (events.len) {
        sub->events = ngx_http_whatsapp_sse_events(r->pool, &events);
        if (sub->events == NULL) {
            ngx_str_set(msg, "invalid events: up to 16 of message.new, "
                             "message.echo, message.status, "
                             "conversation.update, template.status, "
                             "phone.health and reset, separated by commas");
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (last.len
        && ngx_http_whatsapp_sse_id_parse(last.data, last.len, &sub->last)
           != NGX_OK)
    {
        ngx_str_set(msg, "invalid Last-Event-ID");
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/*
 * The scope's numbers from its array literal: "{}" (none), "{id,id}", an
 * id that reads NULL in quotes ("{\"null\"}"); wa_scope_add() made it, so
 * the ids are known to be plain.
 */
static ngx_array_t *
ngx_http_whatsapp_sse_scope(ngx_pool_t *pool, ngx_str_t *literal)
{
    ngx_str_t    *id, inner;
    ngx_uint_t    i;
    ngx_array_t  *list;

    inner.data = literal->data + 1;
    inner.len = (literal->len >= 2) ? literal->len - 2 : 0;

    list = ngx_http_whatsapp_sse_split(pool, &inner);
    if (list == NULL) {
        return NULL;
    }

    id = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (id[i].len >= 2 && id[i].data[0] == '"') {
            id[i].data++;
            id[i].len -= 2;
        }
    }

    return list;
}


/*
 * ?events=a,b,c as an array of names; NULL if one is not an event's
 * name, or there are too many.
 */
static ngx_array_t *
ngx_http_whatsapp_sse_events(ngx_pool_t *pool, ngx_str_t *text)
{
    ngx_str_t    *name;
    ngx_uint_t    i;
    ngx_array_t  *list;

    list = ngx_http_whatsapp_sse_split(pool, text);

    if (list == NULL || list->nelts == 0
        || list->nelts > NGX_HTTP_WHATSAPP_SSE_EVENTS)
    {
        return NULL;
    }

    name = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (!ngx_http_whatsapp_sse_in(&ngx_http_whatsapp_sse_event_names,
                                      &name[i]))
        {
            return NULL;
        }
    }

    return list;
}


/* "a,b,c" as the strings between commas; "" gives none */
static ngx_array_t *
ngx_http_whatsapp_sse_split(ngx_pool_t *pool, ngx_str_t *text)
{
    u_char       *p, *end, *comma;
    ngx_str_t    *item;
    ngx_array_t  *list;

    list = ngx_array_create(pool, 4, sizeof(ngx_str_t));
    if (list == NULL || text->len == 0) {
        return list;
    }

    end = text->data + text->len;

    for (p = text->data; p <= end; p = comma + 1) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        item = ngx_array_push(list);
        if (item == NULL) {
            return NULL;
        }

        item->data = p;
        item->len = comma - p;
    }

    return list;
}


/* up to 64 of [0-9A-Za-z_-], as ids are */
static ngx_uint_t
ngx_http_whatsapp_sse_name_ok(ngx_str_t *s)
{
    u_char  *p, c;

    if (s->len > 64) {
        return 0;
    }

    for (p = s->data; p < s->data + s->len; p++) {
        c = *p;

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z') || c == '_' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_http_whatsapp_sse_in(ngx_array_t *list, ngx_str_t *s)
{
    ngx_str_t   *name;
    ngx_uint_t   i;

    name = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (name[i].len == s->len
            && ngx_memcmp(name[i].data, s->data, s->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* The browser's Last-Event-ID header, else ?last_event_id= */
static ngx_int_t
ngx_http_whatsapp_sse_last_event_id(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("Last-Event-ID");

    if (ngx_http_whatsapp_header_in(r, &name, &h)) {
        *value = h->value;
        return NGX_OK;
    }

    return ngx_http_whatsapp_arg(r, "last_event_id", value);
}


/*
 * Starts the replays waiting, in the order they came, as far as the
 * relay knows its position and its replay connection has room.
 */
void
ngx_http_whatsapp_sse_resume(ngx_http_whatsapp_relay_t *rl)
{
    ngx_queue_t              *q, *next;
    ngx_http_whatsapp_sse_t  *sub;

    if (!rl->positioned) {
        return;
    }

    for (q = ngx_queue_head(&rl->waiting);
         q != ngx_queue_sentinel(&rl->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_http_whatsapp_sse_t, wait);

        if (ngx_http_whatsapp_sse_replay(sub) != NGX_OK) {
            continue;
        }

        ngx_queue_remove(q);
        sub->waiting = 0;

        if (!sub->replaying) {
            ngx_http_whatsapp_sse_write(sub);    /* nothing to replay */
        }
    }

    ngx_http_whatsapp_sse_close_dropped(rl);
}


/*
 * A Last-Event-ID the relay has passed: XRANGE from it (it must still be
 * in the stream) to the relay's cursor; live updates, all after the
 * cursor, are held until the answer.  One the relay has not passed needs
 * nothing.  NGX_AGAIN: not now (no room, Redis away).
 */
static ngx_int_t
ngx_http_whatsapp_sse_replay(ngx_http_whatsapp_sse_t *sub)
{
    u_char                      count[NGX_INT_T_LEN];
    u_char                      from[NGX_HTTP_WHATSAPP_SSE_ID_LEN];
    size_t                      argvlen[6];
    const char                 *argv[6];
    ngx_http_whatsapp_relay_t  *rl = sub->relay;

    if (ngx_http_whatsapp_sse_id_cmp(&sub->last, &rl->cursor) >= 0) {
        sub->after = sub->last;
        sub->replaying = 0;
        return NGX_OK;
    }

    argv[0] = "XRANGE";
    argv[1] = (const char *) rl->key.data;
    argv[2] = (const char *) from;
    argv[3] = (const char *) rl->cursor_text;
    argv[4] = "COUNT";
    argv[5] = (const char *) count;

    argvlen[0] = sizeof("XRANGE") - 1;
    argvlen[1] = rl->key.len;
    argvlen[2] = ngx_sprintf(from, "%uL-%uL", sub->last.ms, sub->last.seq)
                 - from;
    argvlen[3] = rl->cursor_len;
    argvlen[4] = sizeof("COUNT") - 1;

    /* the entry of Last-Event-ID itself, and one more than may be
     * replayed to know there are too many */
    argvlen[5] = ngx_sprintf(count, "%ui", sub->conf->sse_replay + 2) - count;

    if (ngx_http_whatsapp_redis_send(&rl->replays, 6, argv, argvlen,
                                     NGX_HTTP_WHATSAPP_SSE_REPLAY_TIMEOUT,
                                     ngx_http_whatsapp_sse_replayed, sub,
                                     &sub->replay)
        != NGX_OK)
    {
        return NGX_AGAIN;
    }

    /* what the replay covers is no longer live: held from after it */
    sub->after = rl->cursor;
    sub->upto_len = rl->cursor_len;
    ngx_memcpy(sub->upto, rl->cursor_text, rl->cursor_len);

    return NGX_OK;
}


static void
ngx_http_whatsapp_sse_replayed(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result)
{
    ngx_http_whatsapp_sse_t  *sub = data;

    redisReply                   *first;
    const char                   *reason;
    ngx_http_whatsapp_sse_out_t  *outs, *o;

    sub->replay = NULL;
    sub->replaying = 0;

    if (result != NGX_HTTP_WHATSAPP_REDIS_REPLY
        || reply->type != REDIS_REPLY_ARRAY)
    {
        /* closed: the browser comes back with the same Last-Event-ID */
        ngx_log_error(NGX_LOG_INFO, sub->request->connection->log, 0,
                      "whatsapp: replay failed, closing the stream");
        ngx_http_whatsapp_sse_drop(sub, NGX_ERROR);
        ngx_http_whatsapp_sse_resume(sub->relay);
        return;
    }

    first = reply->elements ? reply->element[0] : NULL;
    reason = NULL;

    if (first == NULL || first->type != REDIS_REPLY_ARRAY
        || first->elements != 2
        || first->element[0]->type != REDIS_REPLY_STRING)
    {
        reason = "{\"reason\":\"last_event_id_expired\"}";

    } else {
        ngx_http_whatsapp_sse_id_t  id;

        if (ngx_http_whatsapp_sse_id_parse((u_char *) first->element[0]->str,
                                           first->element[0]->len, &id)
            != NGX_OK
            || ngx_http_whatsapp_sse_id_cmp(&id, &sub->last) != 0)
        {
            reason = "{\"reason\":\"last_event_id_expired\"}";

        } else if (reply->elements > sub->conf->sse_replay + 1) {
            reason = "{\"reason\":\"too_many_missed\"}";
        }
    }

    if (reason) {
        outs = ngx_http_whatsapp_sse_reset_frame(sub, reason);
        ngx_http_whatsapp_status_sse(NGX_HTTP_WHATSAPP_SSE_RESETS, 1);

    } else {
        outs = ngx_http_whatsapp_sse_replay_frames(sub, reply);
        ngx_http_whatsapp_status_sse(NGX_HTTP_WHATSAPP_SSE_REPLAYS, 1);
    }

    /* what was replayed goes before the live updates held meanwhile */

    if (outs) {
        for (o = outs; o->next; o = o->next) { /* void */ }

        o->next = sub->pending;

        if (sub->pending == NULL) {
            sub->pending_last = &o->next;
        }

        sub->pending = outs;
    }

    if (!sub->dropped) {
        ngx_http_whatsapp_sse_write(sub);
    }

    ngx_http_whatsapp_sse_resume(sub->relay);
}


/* The entries after Last-Event-ID that the subscriber may see, in order. */
static ngx_http_whatsapp_sse_out_t *
ngx_http_whatsapp_sse_replay_frames(ngx_http_whatsapp_sse_t *sub,
    redisReply *entries)
{
    void                            *tree;
    size_t                           i;
    ngx_http_whatsapp_sse_out_t     *head, **last, *o;
    ngx_http_whatsapp_sse_update_t   u;

    head = NULL;
    last = &head;

    for (i = 1; i < entries->elements; i++) {

        if (ngx_http_whatsapp_relay_update(entries->element[i], &u, &tree,
                                           sub->request->connection->log)
            != NGX_OK)
        {
            continue;
        }

        o = NULL;

        if (ngx_http_whatsapp_sse_match(sub, &u)) {
            o = ngx_http_whatsapp_sse_out(sub, u.frame->data, u.frame->len,
                                          u.frame);
        }

        ngx_http_whatsapp_sse_frame_release(u.frame);

        if (tree) {
            yajl_tree_free(tree);
        }

        if (o) {
            *last = o;
            last = &o->next;
        }
    }

    return head;
}


/*
 * "event: reset": what the client missed cannot be replayed; it reloads
 * through the API, and its next Last-Event-ID is where this stream is.
 */
static ngx_http_whatsapp_sse_out_t *
ngx_http_whatsapp_sse_reset_frame(ngx_http_whatsapp_sse_t *sub,
    const char *reason)
{
    size_t                          len;
    ngx_http_whatsapp_sse_out_t    *o;
    ngx_http_whatsapp_sse_frame_t  *f;

    len = sizeof("id: \nevent: reset\ndata: \n\n") - 1 + sub->upto_len
          + ngx_strlen(reason);

    f = ngx_alloc(offsetof(ngx_http_whatsapp_sse_frame_t, data) + len,
                  sub->request->connection->log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = ngx_sprintf(f->data, "id: %*s\nevent: reset\ndata: %s\n\n",
                         sub->upto_len, sub->upto, reason)
             - f->data;

    o = ngx_http_whatsapp_sse_out(sub, f->data, f->len, f);

    ngx_http_whatsapp_sse_frame_release(f);

    return o;
}


/* Offered by the relay: queued for every subscriber allowed to see it. */
void
ngx_http_whatsapp_sse_route(ngx_http_whatsapp_relay_t *rl,
    ngx_http_whatsapp_sse_update_t *u)
{
    ngx_queue_t              *q, *next;
    ngx_http_whatsapp_sse_t  *sub;

    for (q = ngx_queue_head(&rl->subscribers);
         q != ngx_queue_sentinel(&rl->subscribers);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_http_whatsapp_sse_t, queue);

        if (sub->dropped || sub->waiting
            || ngx_http_whatsapp_sse_id_cmp(&u->id, &sub->after) <= 0
            || !ngx_http_whatsapp_sse_match(sub, u))
        {
            continue;
        }

        if (ngx_http_whatsapp_sse_queue(sub, u->frame->data, u->frame->len,
                                        u->frame)
            == NGX_OK)
        {
            rl->relayed++;
        }
    }
}


void
ngx_http_whatsapp_sse_flush(ngx_http_whatsapp_relay_t *rl)
{
    ngx_queue_t              *q, *next;
    ngx_http_whatsapp_sse_t  *sub;

    for (q = ngx_queue_head(&rl->subscribers);
         q != ngx_queue_sentinel(&rl->subscribers);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_http_whatsapp_sse_t, queue);

        if (sub->pending && !sub->replaying && !sub->dropped) {
            ngx_http_whatsapp_sse_write(sub);
        }
    }

    if (rl->relayed) {
        ngx_http_whatsapp_status_sse(NGX_HTTP_WHATSAPP_SSE_RELAYED,
                                     rl->relayed);
        rl->relayed = 0;
    }

    ngx_http_whatsapp_sse_close_dropped(rl);
}


/*
 * The scope first (numbers; assigned-only sees only its conversations),
 * then the filters.  An update of no number (template.status) is for
 * callers who see every number.
 */
static ngx_uint_t
ngx_http_whatsapp_sse_match(ngx_http_whatsapp_sse_t *sub,
    ngx_http_whatsapp_sse_update_t *u)
{
    if (sub->phones) {
        if (u->phone.len == 0 || !ngx_http_whatsapp_sse_in(sub->phones,
                                                           &u->phone))
        {
            return 0;
        }

    } else if (u->phone.len == 0 && (sub->scope.assigned_only
                                     || sub->phone.len
                                     || sub->conversation.len))
    {
        return 0;
    }

    if (sub->scope.assigned_only
        && (u->assignee.len == 0
            || u->assignee.len != sub->scope.agent.len
            || ngx_memcmp(u->assignee.data, sub->scope.agent.data,
                          u->assignee.len) != 0))
    {
        return 0;
    }

    if (sub->phone.len
        && (u->phone.len != sub->phone.len
            || ngx_memcmp(u->phone.data, sub->phone.data, u->phone.len) != 0))
    {
        return 0;
    }

    if (sub->conversation.len
        && (u->conversation.len != sub->conversation.len
            || ngx_strncasecmp(u->conversation.data, sub->conversation.data,
                               u->conversation.len) != 0))
    {
        return 0;
    }

    if (sub->events && !ngx_http_whatsapp_sse_in(sub->events, &u->event)) {
        return 0;
    }

    return 1;
}


static ngx_http_whatsapp_sse_out_t *
ngx_http_whatsapp_sse_out(ngx_http_whatsapp_sse_t *sub, u_char *p, size_t len,
    ngx_http_whatsapp_sse_frame_t *frame)
{
    ngx_http_whatsapp_sse_out_t  *o;

    o = sub->free;

    if (o) {
        sub->free = o->next;

    } else {
        o = ngx_palloc(sub->request->pool, sizeof(ngx_http_whatsapp_sse_out_t));
        if (o == NULL) {
            return NULL;
        }
    }

    ngx_memzero(&o->buf, sizeof(ngx_buf_t));

    /* read-only memory: no filter may write into a shared frame */
    o->buf.pos = p;
    o->buf.last = p + len;
    o->buf.start = p;
    o->buf.end = p + len;
    o->buf.memory = 1;

    o->cl.buf = &o->buf;
    o->cl.next = NULL;

    o->frame = frame;
    o->next = NULL;

    sub->queued += len;

    if (frame) {
        frame->refs++;
    }

    return o;
}


static ngx_int_t
ngx_http_whatsapp_sse_queue(ngx_http_whatsapp_sse_t *sub, u_char *p,
    size_t len, ngx_http_whatsapp_sse_frame_t *frame)
{
    ngx_http_whatsapp_sse_out_t  *o;

    o = ngx_http_whatsapp_sse_out(sub, p, len, frame);

    if (o == NULL) {
        ngx_http_whatsapp_sse_drop(sub, NGX_ERROR);
        return NGX_ERROR;
    }

    *sub->pending_last = o;
    sub->pending_last = &o->next;

    return NGX_OK;
}


/*
 * Gives NGINX what is pending (or lets it go on with what it has), frees
 * what has been sent, and drops a client too far behind.
 */
static void
ngx_http_whatsapp_sse_write(ngx_http_whatsapp_sse_t *sub)
{
    size_t                        unsent;
    ngx_int_t                     rc;
    ngx_chain_t                  *in;
    ngx_event_t                  *wev;
    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_whatsapp_sse_out_t  *o;

    r = sub->request;
    c = r->connection;
    in = NULL;

    if (sub->pending && !sub->replaying) {

        for (o = sub->pending; o->next; o = o->next) {
            o->cl.next = &o->next->cl;
        }

        o->cl.next = NULL;
        o->buf.flush = 1;        /* no postpone_output for a stream */

        in = &sub->pending->cl;

        *sub->busy_last = sub->pending;
        sub->busy_last = sub->pending_last;
        sub->pending = NULL;
        sub->pending_last = &sub->pending;

        sub->written = ngx_current_msec;
    }

    rc = ngx_http_output_filter(r, in);

    if (rc == NGX_ERROR) {
        ngx_http_whatsapp_sse_drop(sub, NGX_ERROR);
        return;
    }

    unsent = ngx_http_whatsapp_sse_reap(sub);

    if (unsent > sub->conf->sse_buffer) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "whatsapp: SSE client fell %uz bytes behind, closing",
                      unsent);
        ngx_http_whatsapp_status_sse(NGX_HTTP_WHATSAPP_SSE_SLOW_CLIENTS, 1);
        ngx_http_whatsapp_sse_drop(sub, NGX_ERROR);
        return;
    }

    wev = c->write;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->out == NULL && !c->buffered) {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        return;
    }

    /* a client that takes nothing for send_timeout is gone */
    if (!wev->timer_set && !wev->delayed) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_http_whatsapp_sse_drop(sub, NGX_ERROR);
    }
}


/*
 * Frees the outputs NGINX has sent; returns the bytes still unsent, the
 * live ones held while a replay runs included.
 */
static size_t
ngx_http_whatsapp_sse_reap(ngx_http_whatsapp_sse_t *sub)
{
    ngx_http_whatsapp_sse_out_t  *o;

    while (sub->busy && sub->busy->buf.pos == sub->busy->buf.last) {
        o = sub->busy;
        sub->busy = o->next;
        sub->queued -= o->buf.end - o->buf.start;

        if (o->frame) {
            ngx_http_whatsapp_sse_frame_release(o->frame);
        }

        o->next = sub->free;
        sub->free = o;
    }

    if (sub->busy == NULL) {
        sub->busy_last = &sub->busy;
        return sub->queued;
    }

    /* NGINX sends in order: only the first may be partly sent */
    return sub->queued - (sub->busy->buf.pos - sub->busy->buf.start);
}


static void
ngx_http_whatsapp_sse_write_handler(ngx_http_request_t *r)
{
    ngx_http_whatsapp_sse_t  *sub;

    sub = ngx_http_get_module_ctx(r, ngx_http_whatsapp_module);

    if (r->connection->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "whatsapp: SSE client timed out");
        r->connection->timedout = 1;
        ngx_http_whatsapp_sse_drop(sub, NGX_HTTP_REQUEST_TIME_OUT);

    } else {
        ngx_http_whatsapp_sse_write(sub);
    }

    ngx_http_whatsapp_sse_close_dropped(sub->relay);
}


/*
 * Marks a subscriber to close: ngx_http_whatsapp_sse_close_dropped() does
 * it once no list of subscribers is being walked (closing one may free
 * others, e.g. the streams of one HTTP/2 connection).
 */
static void
ngx_http_whatsapp_sse_drop(ngx_http_whatsapp_sse_t *sub, ngx_int_t rc)
{
    if (sub->dropped) {
        return;
    }

    sub->dropped = 1;
    sub->close_rc = rc;

    if (sub->linked) {
        ngx_queue_remove(&sub->queue);
    }

    ngx_queue_insert_tail(&sub->relay->closing, &sub->queue);
    sub->linked = 1;
}


static void
ngx_http_whatsapp_sse_close_dropped(ngx_http_whatsapp_relay_t *rl)
{
    ngx_queue_t              *q;
    ngx_http_whatsapp_sse_t  *sub;

    while (!ngx_queue_empty(&rl->closing)) {
        q = ngx_queue_head(&rl->closing);
        sub = ngx_queue_data(q, ngx_http_whatsapp_sse_t, queue);

        ngx_queue_remove(q);
        sub->linked = 0;

        ngx_http_whatsapp_sse_finish(sub);
    }
}


/*
 * NGX_OK ends the stream as a response ends (the last chunk), so the
 * browser reconnects at once; anything else closes the connection.
 */
static void
ngx_http_whatsapp_sse_finish(ngx_http_whatsapp_sse_t *sub)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = sub->request;
    c = r->connection;
    rc = sub->close_rc;

    if (sub->replay) {
        ngx_http_whatsapp_redis_abandon(sub->replay);
        sub->replay = NULL;
    }

    if (sub->waiting) {
        ngx_queue_remove(&sub->wait);
        sub->waiting = 0;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
        rc = (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * Every second: heartbeats that are due; when the worker process is
 * shutting down, the end of every stream (this timer, not cancelable
 * while streams are open, is what lets it see that).
 */
void
ngx_http_whatsapp_sse_tick(ngx_event_t *ev)
{
    ngx_http_whatsapp_relay_t  *rl = ev->data;

    ngx_queue_t              *q, *next;
    ngx_http_whatsapp_sse_t  *sub;

    for (q = ngx_queue_head(&rl->subscribers);
         q != ngx_queue_sentinel(&rl->subscribers);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_http_whatsapp_sse_t, queue);

        if (ngx_exiting) {
            ngx_http_whatsapp_sse_drop(sub, NGX_OK);
            continue;
        }

        if (ngx_current_msec - sub->written < sub->conf->sse_heartbeat
            || sub->replaying)
        {
            continue;
        }

        if (ngx_http_whatsapp_sse_queue(sub, ngx_http_whatsapp_sse_heartbeat,
                                   sizeof(ngx_http_whatsapp_sse_heartbeat) - 1,
                                   NULL)
            == NGX_OK)
        {
            ngx_http_whatsapp_sse_write(sub);
        }
    }

    ngx_http_whatsapp_sse_close_dropped(rl);

    if (!ngx_queue_empty(&rl->subscribers)) {
        ngx_add_timer(&rl->tick, NGX_HTTP_WHATSAPP_SSE_TICK);
    }
}


/* The request is going: its outputs are sent or dropped by now. */
static void
ngx_http_whatsapp_sse_cleanup(void *data)
{
    ngx_http_whatsapp_sse_t  *sub = data;

    ngx_http_whatsapp_sse_out_t  *o;

    if (sub->linked) {
        ngx_queue_remove(&sub->queue);
        sub->linked = 0;
    }

    if (sub->replay) {
        ngx_http_whatsapp_redis_abandon(sub->replay);
    }

    if (sub->waiting) {
        ngx_queue_remove(&sub->wait);
    }

    if (sub->counted) {
        ngx_http_whatsapp_status_sse(NGX_HTTP_WHATSAPP_SSE_SUBSCRIBERS, -1);
    }

    for (o = sub->busy; o; o = o->next) {
        if (o->frame) {
            ngx_http_whatsapp_sse_frame_release(o->frame);
        }
    }

    for (o = sub->pending; o; o = o->next) {
        if (o->frame) {
            ngx_http_whatsapp_sse_frame_release(o->frame);
        }
    }
}
