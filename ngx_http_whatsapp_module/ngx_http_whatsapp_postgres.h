/*
 * A small pool of PostgreSQL connections per NGINX worker process, spoken
 * through libpq's non-blocking API on NGINX events.  Callers submit one
 * prepared statement with text parameters and a deadline and get exactly
 * one answer: the result, a timeout, or the connection lost.
 */

#ifndef NGX_HTTP_WHATSAPP_POSTGRES_H_INCLUDED_
#define NGX_HTTP_WHATSAPP_POSTGRES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <libpq-fe.h>


/* statements are prepared per connection; their ids are bits of a mask */
#define NGX_HTTP_WHATSAPP_POSTGRES_MAX_STMTS  32


typedef enum {
    NGX_HTTP_WHATSAPP_POSTGRES_RESULT = 0,  /* res: a result, maybe an error */
    NGX_HTTP_WHATSAPP_POSTGRES_TIMEOUT,     /* past the deadline */
    NGX_HTTP_WHATSAPP_POSTGRES_LOST         /* no connection (any more) */
} ngx_http_whatsapp_postgres_result_e;


/*
 * res is NULL unless result is NGX_HTTP_WHATSAPP_POSTGRES_RESULT; it
 * belongs to the pool and is cleared when the handler returns.
 */
typedef void (*ngx_http_whatsapp_postgres_handler_pt)(void *data,
    PGresult *res, ngx_http_whatsapp_postgres_result_e result);


typedef struct {
    ngx_uint_t                              id;      /* 0 .. MAX_STMTS-1 */
    const char                             *name;
    const char                             *sql;
    int                                     nparams;
} ngx_http_whatsapp_postgres_stmt_t;


typedef struct ngx_http_whatsapp_postgres_conn_s
    ngx_http_whatsapp_postgres_conn_t;

typedef struct ngx_http_whatsapp_postgres_s  ngx_http_whatsapp_postgres_t;


/*
 * A query, allocated and filled by the caller (in its request's pool);
 * the pool only links it while it waits or runs.  values: nparams
 * NUL-terminated texts (NULL: SQL NULL), valid until the answer or
 * until ngx_http_whatsapp_postgres_cancel().
 */
typedef struct {
    ngx_http_whatsapp_postgres_stmt_t      *stmt;
    const char                            **values;
    ngx_msec_t                              timeout;
    ngx_http_whatsapp_postgres_handler_pt   handler;
    void                                   *data;
    ngx_log_t                              *log;

    /* set by the pool */
    ngx_http_whatsapp_postgres_t           *pg;
    ngx_http_whatsapp_postgres_conn_t      *conn;    /* running on it */
    ngx_queue_t                             queue;   /* waiting */
    ngx_event_t                             timer;   /* while waiting */
    ngx_msec_t                              deadline;
    unsigned                                waiting:1;
} ngx_http_whatsapp_postgres_query_t;


struct ngx_http_whatsapp_postgres_s {
    /* configuration, shared by all worker processes */
    ngx_str_t                               conninfo;  /* as written */
    ngx_str_t                               name;      /* host:port/db */
    const char                            **keywords;  /* NULL-terminated */
    const char                            **values;
    ngx_uint_t                              size;      /* pool= */
    ngx_uint_t                              queue_size;
    ngx_msec_t                              connect_timeout;

    /* state of this worker process */
    ngx_http_whatsapp_postgres_conn_t      *conns;
    ngx_queue_t                             idle;      /* ready, unused */
    ngx_queue_t                             waiting;   /* queries */
    ngx_uint_t                              nwaiting;
    ngx_uint_t                              nup;       /* ready or busy */
    ngx_log_t                              *log;
};


char *ngx_http_whatsapp_postgres_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

ngx_int_t ngx_http_whatsapp_postgres_init_worker(
    ngx_http_whatsapp_postgres_t *pg, ngx_cycle_t *cycle);
void ngx_http_whatsapp_postgres_exit_worker(ngx_http_whatsapp_postgres_t *pg);

/*
 * NGX_OK: running or waiting, the handler will be called once, never
 * from within this call (unless cancelled first); NGX_DECLINED: no
 * connection is up; NGX_BUSY: every connection is busy and the queue is
 * full.
 */
ngx_int_t ngx_http_whatsapp_postgres_query(ngx_http_whatsapp_postgres_t *pg,
    ngx_http_whatsapp_postgres_query_t *q);

/*
 * The caller no longer wants the answer (its request is going away): a
 * waiting query leaves the queue, a running one is left to finish on its
 * connection, its result discarded.  Safe to call more than once.
 */
void ngx_http_whatsapp_postgres_cancel(ngx_http_whatsapp_postgres_query_t *q);


#endif /* NGX_HTTP_WHATSAPP_POSTGRES_H_INCLUDED_ */
