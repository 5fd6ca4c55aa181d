/*
 * One Redis connection per NGINX worker process, spoken through hiredis'
 * async API on NGINX events.  Callers queue a command with a deadline and
 * get exactly one answer: the reply, a timeout, or the connection lost.
 */

#ifndef NGX_HTTP_WHATSAPP_REDIS_H_INCLUDED_
#define NGX_HTTP_WHATSAPP_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/async.h>


typedef enum {
    NGX_HTTP_WHATSAPP_REDIS_REPLY = 0,
    NGX_HTTP_WHATSAPP_REDIS_TIMEOUT,
    NGX_HTTP_WHATSAPP_REDIS_LOST
} ngx_http_whatsapp_redis_result_e;


typedef enum {
    NGX_HTTP_WHATSAPP_REDIS_DOWN = 0,
    NGX_HTTP_WHATSAPP_REDIS_CONNECTING,
    NGX_HTTP_WHATSAPP_REDIS_READY
} ngx_http_whatsapp_redis_state_e;


/* reply is NULL unless result is NGX_HTTP_WHATSAPP_REDIS_REPLY */
typedef void (*ngx_http_whatsapp_redis_handler_pt)(void *data,
    redisReply *reply, ngx_http_whatsapp_redis_result_e result);


/* the connection has become ready (after every reconnect) */
typedef void (*ngx_http_whatsapp_redis_ready_pt)(void *data);


typedef struct ngx_http_whatsapp_redis_cmd_s  ngx_http_whatsapp_redis_cmd_t;


typedef struct {
    /* configuration, shared by all worker processes */
    ngx_str_t                          name;        /* as written */
    ngx_str_t                          host;        /* numeric IP or path */
    in_port_t                          port;        /* 0: unix socket */
    ngx_str_t                          password;
    ngx_int_t                          db;
    ngx_msec_t                         connect_timeout;
    ngx_uint_t                         max_pending;
    ngx_http_whatsapp_redis_ready_pt   ready;       /* NULL: none */
    void                              *ready_data;
    unsigned                           cancelable:1; /* deadlines do not
                                                        delay an exit */

    /* state of this worker process */
    redisAsyncContext                 *ac;
    ngx_http_whatsapp_redis_state_e    state;
    ngx_event_t                        timer;       /* backoff or connect */
    ngx_msec_t                         backoff;
    ngx_http_whatsapp_redis_cmd_t     *cmds;        /* max_pending slots */
    ngx_http_whatsapp_redis_cmd_t     *free;        /* the unused ones */
    ngx_log_t                         *log;
} ngx_http_whatsapp_redis_t;


ngx_int_t ngx_http_whatsapp_redis_init_worker(ngx_http_whatsapp_redis_t *rd,
    ngx_cycle_t *cycle);
void ngx_http_whatsapp_redis_exit_worker(ngx_http_whatsapp_redis_t *rd);

/*
 * NGX_OK: queued, the handler will be called once (unless abandoned);
 * NGX_DECLINED: not connected; NGX_BUSY: max_pending commands in flight;
 * NGX_ERROR: hiredis refused the command.
 */
ngx_int_t ngx_http_whatsapp_redis_send(ngx_http_whatsapp_redis_t *rd,
    int argc, const char **argv, const size_t *argvlen, ngx_msec_t timeout,
    ngx_http_whatsapp_redis_handler_pt handler, void *data,
    ngx_http_whatsapp_redis_cmd_t **cmdp);

/* The caller no longer wants the answer (its request is going away). */
void ngx_http_whatsapp_redis_abandon(ngx_http_whatsapp_redis_cmd_t *cmd);

/* Wraps hiredis' socket in an NGINX connection (redis_adapter.c). */
ngx_int_t ngx_http_whatsapp_redis_attach(redisAsyncContext *ac,
    ngx_log_t *log);
void ngx_http_whatsapp_redis_flush(redisAsyncContext *ac);


#endif /* NGX_HTTP_WHATSAPP_REDIS_H_INCLUDED_ */
