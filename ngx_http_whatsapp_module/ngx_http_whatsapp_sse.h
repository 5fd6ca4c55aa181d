/*
 * Realtime updates for browsers: whatsapp_events streams the wa:updates
 * Redis stream as Server-Sent Events.
 *
 * Two halves, one file each:
 *   ngx_http_whatsapp_relay.c  one reader of wa:updates per worker process
 *                              (XREAD BLOCK on its own Redis connection,
 *                              replays on another): turns each entry into
 *                              an update and a frame and hands it to the
 *                              subscribers;
 *   ngx_http_whatsapp_sse.c    the whatsapp_events requests: scope and
 *                              filters, replay after Last-Event-ID, writes
 *                              bounded per client, heartbeats, shutdown.
 */

#ifndef NGX_HTTP_WHATSAPP_SSE_H_INCLUDED_
#define NGX_HTTP_WHATSAPP_SSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_whatsapp_redis.h"


/* "18446744073709551615-18446744073709551615" */
#define NGX_HTTP_WHATSAPP_SSE_ID_LEN  41


/* A stream id, compared as Redis does: milliseconds, then sequence. */
typedef struct {
    uint64_t                            ms;
    uint64_t                            seq;
} ngx_http_whatsapp_sse_id_t;


/*
 * One SSE frame ("id: ..\nevent: ..\ndata: ..\n\n"), written once and
 * shared by every subscriber it goes to; freed when the last of them has
 * sent it (or gone).
 */
typedef struct {
    ngx_uint_t                          refs;
    size_t                              len;
    u_char                              data[1];
} ngx_http_whatsapp_sse_frame_t;


/* What the relay needs to know of an update to route it. */
typedef struct {
    ngx_http_whatsapp_sse_id_t          id;
    ngx_str_t                           id_text;
    ngx_str_t                           event;
    ngx_str_t                           phone;         /* len 0: none */
    ngx_str_t                           conversation;  /* len 0: none */
    ngx_str_t                           assignee;      /* len 0: nobody */
    ngx_http_whatsapp_sse_frame_t      *frame;
} ngx_http_whatsapp_sse_update_t;


/* The reader of one updates stream in this worker process. */
typedef struct {
    /* configuration */
    ngx_http_whatsapp_redis_t          *redis;   /* whose server to read */
    ngx_str_t                           key;     /* prefix + "updates" */

    /* state of this worker process */
    ngx_http_whatsapp_redis_t           conn;    /* its own connection */
    ngx_http_whatsapp_redis_t           replays; /* and one for replays */
    ngx_queue_t                         waiting; /* replays yet to send */
    ngx_event_t                         resume;  /* posted: send them */
    ngx_http_whatsapp_redis_cmd_t      *cmd;     /* the read in flight */
    ngx_http_whatsapp_sse_id_t          cursor;  /* the last id seen */
    u_char                              cursor_text[NGX_HTTP_WHATSAPP_SSE_ID_LEN];
    size_t                              cursor_len;
    unsigned                            positioned:1;  /* cursor known */

    ngx_event_t                         retry;   /* after an error reply */

    ngx_queue_t                         subscribers;
    ngx_queue_t                         closing; /* dropped, to close */
    ngx_event_t                         tick;    /* heartbeats, shutdown */
    ngx_atomic_uint_t                   relayed; /* frames, not yet counted */
} ngx_http_whatsapp_relay_t;


/* relay.c */
ngx_http_whatsapp_relay_t *ngx_http_whatsapp_relay_get(ngx_conf_t *cf,
    ngx_http_whatsapp_redis_t *redis, ngx_str_t *key);
ngx_int_t ngx_http_whatsapp_relay_init_worker(ngx_http_whatsapp_relay_t *rl,
    ngx_cycle_t *cycle);
void ngx_http_whatsapp_relay_exit_worker(ngx_http_whatsapp_relay_t *rl);

/*
 * Turns one stream entry (the [id, [field, value, ...]] of an XREAD or
 * XRANGE reply) into an update with its frame (refs 0); yajl's tree is
 * the caller's to free after routing.  NGX_DECLINED: not an update.
 */
ngx_int_t ngx_http_whatsapp_relay_update(redisReply *entry,
    ngx_http_whatsapp_sse_update_t *u, void **tree, ngx_log_t *log);

ngx_int_t ngx_http_whatsapp_sse_id_parse(u_char *p, size_t len,
    ngx_http_whatsapp_sse_id_t *id);
ngx_int_t ngx_http_whatsapp_sse_id_cmp(ngx_http_whatsapp_sse_id_t *a,
    ngx_http_whatsapp_sse_id_t *b);
void ngx_http_whatsapp_sse_frame_release(ngx_http_whatsapp_sse_frame_t *f);

/*
 * sse.c, called by the relay: route() queues an update to the subscribers
 * that may see it, flush() then writes what each has queued (one write
 * per subscriber per batch of updates).
 */
void ngx_http_whatsapp_sse_route(ngx_http_whatsapp_relay_t *rl,
    ngx_http_whatsapp_sse_update_t *u);
void ngx_http_whatsapp_sse_flush(ngx_http_whatsapp_relay_t *rl);
void ngx_http_whatsapp_sse_resume(ngx_http_whatsapp_relay_t *rl);
void ngx_http_whatsapp_sse_tick(ngx_event_t *ev);
ngx_int_t ngx_http_whatsapp_sse_handler(ngx_http_request_t *r);


#endif /* NGX_HTTP_WHATSAPP_SSE_H_INCLUDED_ */
