/*
 * ngx_http_whatsapp_module: WhatsApp Business Cloud API gateway at the
 * NGINX edge.  Shared configuration types and the functions each concern
 * (webhook, API, auth, Redis, PostgreSQL, status) offers the others.
 */

#ifndef NGX_HTTP_WHATSAPP_MODULE_H_INCLUDED_
#define NGX_HTTP_WHATSAPP_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_whatsapp_redis.h"
#include "ngx_http_whatsapp_postgres.h"
#include "ngx_http_whatsapp_auth.h"
#include "ngx_http_whatsapp_sse.h"
#include "wa_signature.h"


typedef struct {
    ngx_array_t                   redis;        /* of ngx_http_whatsapp_redis_t * */
    ngx_array_t                   postgres;     /* of ngx_http_whatsapp_postgres_t * */
    ngx_array_t                   relays;       /* of ngx_http_whatsapp_relay_t * */
} ngx_http_whatsapp_main_conf_t;


/* Where a location's whatsapp_webhook, _api or _events was written (line
 * 0: not written), to name it in nginx -t's errors. */
typedef struct {
    ngx_str_t                     file;
    ngx_uint_t                    line;
} ngx_http_whatsapp_conf_at_t;


typedef struct {
    ngx_http_whatsapp_redis_t    *redis;
    ngx_msec_t                    redis_timeout;
    ngx_str_t                     prefix;
    ngx_str_t                     events_key;   /* prefix + "events" */
    ngx_str_t                     outbox_key;   /* prefix + "outbox" */

    ngx_array_t                  *app_secrets;  /* of wa_hmac_key_t * */
    ngx_str_t                     verify_token;

    ngx_http_whatsapp_postgres_t *postgres;
    ngx_msec_t                    postgres_timeout;
    ngx_http_whatsapp_auth_conf_t auth;

    ngx_http_whatsapp_conf_at_t   webhook;
    ngx_http_whatsapp_conf_at_t   api;

    ngx_http_whatsapp_conf_at_t   events;
    ngx_msec_t                    sse_heartbeat;
    ngx_uint_t                    sse_replay;
    size_t                        sse_buffer;
    ngx_http_whatsapp_relay_t    *relay;
} ngx_http_whatsapp_loc_conf_t;


/* Outcomes of webhook requests, counted by whatsapp_status. */
typedef enum {
    NGX_HTTP_WHATSAPP_ENQUEUED = 0,       /* 200, event in Redis */
    NGX_HTTP_WHATSAPP_VERIFIED,           /* 200, handshake answered */
    NGX_HTTP_WHATSAPP_HANDSHAKE_REFUSED,  /* 403 */
    NGX_HTTP_WHATSAPP_BAD_SIGNATURE,      /* 401 */
    NGX_HTTP_WHATSAPP_BAD_REQUEST,        /* 400 or 413 */
    NGX_HTTP_WHATSAPP_METHOD_NOT_ALLOWED, /* 405 */
    NGX_HTTP_WHATSAPP_REDIS_UNAVAILABLE,  /* 503, not connected */
    NGX_HTTP_WHATSAPP_REDIS_TIMED_OUT,    /* 503, no answer in time */
    NGX_HTTP_WHATSAPP_REDIS_OVERLOADED,   /* 503, too many in flight */
    NGX_HTTP_WHATSAPP_INTERNAL_ERROR,     /* 500 */
    NGX_HTTP_WHATSAPP_OUTCOME_N
} ngx_http_whatsapp_outcome_e;


typedef enum {
    NGX_HTTP_WHATSAPP_REDIS_ERR_CONNECT = 0,
    NGX_HTTP_WHATSAPP_REDIS_ERR_LOST,
    NGX_HTTP_WHATSAPP_REDIS_ERR_TIMEOUT,
    NGX_HTTP_WHATSAPP_REDIS_ERR_REPLY,
    NGX_HTTP_WHATSAPP_REDIS_ERR_N
} ngx_http_whatsapp_redis_error_e;


typedef enum {
    NGX_HTTP_WHATSAPP_POSTGRES_ERR_CONNECT = 0,
    NGX_HTTP_WHATSAPP_POSTGRES_ERR_LOST,
    NGX_HTTP_WHATSAPP_POSTGRES_ERR_TIMEOUT,
    NGX_HTTP_WHATSAPP_POSTGRES_ERR_QUERY,
    NGX_HTTP_WHATSAPP_POSTGRES_ERR_QUEUE_FULL,
    NGX_HTTP_WHATSAPP_POSTGRES_ERR_N
} ngx_http_whatsapp_postgres_error_e;


/* Counted by whatsapp_status for whatsapp_events. */
typedef enum {
    NGX_HTTP_WHATSAPP_SSE_SUBSCRIBERS = 0,    /* gauge */
    NGX_HTTP_WHATSAPP_SSE_RELAYED,            /* frames queued to clients */
    NGX_HTTP_WHATSAPP_SSE_SLOW_CLIENTS,       /* closed, too far behind */
    NGX_HTTP_WHATSAPP_SSE_REPLAYS,
    NGX_HTTP_WHATSAPP_SSE_RESETS,
    NGX_HTTP_WHATSAPP_SSE_N
} ngx_http_whatsapp_sse_stat_e;


extern ngx_module_t  ngx_http_whatsapp_module;


ngx_int_t ngx_http_whatsapp_webhook_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_whatsapp_request_body(ngx_http_request_t *r,
    ngx_uint_t terminate, ngx_str_t *body);
ngx_int_t ngx_http_whatsapp_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_whatsapp_header_out(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_whatsapp_error_json(ngx_http_request_t *r,
    const char *code, ngx_str_t *message, ngx_str_t *body);
ngx_uint_t ngx_http_whatsapp_header_in(ngx_http_request_t *r,
    ngx_str_t *name, ngx_table_elt_t **found);

/* secrets and keys are small: a bigger file is a wrong path */
#define NGX_HTTP_WHATSAPP_FILE_MAX  65536

ngx_int_t ngx_http_whatsapp_conf_read_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *content);
ngx_int_t ngx_http_whatsapp_api_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_whatsapp_api_init(ngx_conf_t *cf);

/* A fire-and-forget XADD of up to NGX_HTTP_WHATSAPP_XADD_MAX fields */
#define NGX_HTTP_WHATSAPP_XADD_MAX  8

void ngx_http_whatsapp_api_xadd(ngx_http_request_t *r, ngx_str_t *key,
    ngx_uint_t n, const char **fields, const size_t *lens,
    const char *consequence);

/* POST /messages (ngx_http_whatsapp_send.c) */
ngx_int_t ngx_http_whatsapp_send_check(ngx_http_request_t *r,
    const char *body, const char **values, ngx_str_t *msg);
void ngx_http_whatsapp_send_ring(ngx_http_request_t *r, ngx_str_t *command,
    ngx_str_t *agent);
ngx_int_t ngx_http_whatsapp_status_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_whatsapp_status_add_zone(ngx_conf_t *cf);
void ngx_http_whatsapp_status_outcome(ngx_http_whatsapp_outcome_e outcome);
void ngx_http_whatsapp_status_redis_error(ngx_http_whatsapp_redis_error_e e);
void ngx_http_whatsapp_status_redis_connected(ngx_int_t delta);
void ngx_http_whatsapp_status_enqueue_latency(uint64_t usec);
void ngx_http_whatsapp_status_api(ngx_uint_t status);
void ngx_http_whatsapp_status_postgres_error(
    ngx_http_whatsapp_postgres_error_e e);
void ngx_http_whatsapp_status_postgres_connected(ngx_int_t delta);
void ngx_http_whatsapp_status_sse(ngx_http_whatsapp_sse_stat_e what,
    ngx_int_t n);
uint64_t ngx_http_whatsapp_status_now_usec(void);


#endif /* NGX_HTTP_WHATSAPP_MODULE_H_INCLUDED_ */
