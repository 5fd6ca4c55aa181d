/*
 * whatsapp_postgres: a pool of PostgreSQL connections per NGINX worker
 * process, driven by NGINX events through libpq's non-blocking API.
 *
 * Each connection: DOWN --timer--> CONNECTING --PQconnectPoll OK--> IDLE
 * <--> BUSY, and back to DOWN on any failure, with exponential backoff.
 * A query runs on an idle connection or waits, FIFO and bounded, for one;
 * while no connection is up it is refused at once, so callers answer 503
 * instead of hanging on a database that may not come back soon.
 *
 * libpq owns its socket (and may replace it while connecting); NGINX only
 * borrows the fd through an ngx_connection_t, which is freed without
 * closing anything.  The socket is watched level-triggered: libpq reads
 * what one recv() returns, and with edge-triggered epoll the rest of a
 * large result would wait for bytes that may never come.
 *
 * Nothing here blocks: no PQconnectdb, no PQexec, PQgetResult only when
 * PQisBusy says it will not wait, and no PQcancel (see the deadline).
 */

#include "ngx_http_whatsapp_module.h"


#define NGX_HTTP_WHATSAPP_POSTGRES_BACKOFF_MIN  100
#define NGX_HTTP_WHATSAPP_POSTGRES_BACKOFF_MAX  5000


typedef enum {
    NGX_HTTP_WHATSAPP_POSTGRES_DOWN = 0,
    NGX_HTTP_WHATSAPP_POSTGRES_CONNECTING,
    NGX_HTTP_WHATSAPP_POSTGRES_IDLE,
    NGX_HTTP_WHATSAPP_POSTGRES_BUSY
} ngx_http_whatsapp_postgres_state_e;


struct ngx_http_whatsapp_postgres_conn_s {
    ngx_http_whatsapp_postgres_t        *pg;
    ngx_uint_t                           number;    /* 1..pool, for logs */
    ngx_http_whatsapp_postgres_state_e   state;
    PGconn                              *conn;
    ngx_connection_t                    *c;         /* wraps PQsocket() */
    ngx_event_t                          timer;     /* backoff, connect,
                                                       deadline */
    ngx_msec_t                           backoff;
    ngx_queue_t                          queue;     /* in pg->idle */
    uint32_t                             prepared;  /* stmt ids */

    /* BUSY */
    ngx_http_whatsapp_postgres_query_t  *query;     /* NULL: abandoned */
    ngx_http_whatsapp_postgres_stmt_t   *stmt;
    PGresult                            *res;       /* the step's first */
    unsigned                             preparing:1;
    unsigned                             flushing:1;
};


static char *ngx_http_whatsapp_postgres_param(ngx_conf_t *cf,
    ngx_http_whatsapp_postgres_t *pg, ngx_str_t *param);
static char *ngx_http_whatsapp_postgres_conninfo(ngx_conf_t *cf,
    ngx_http_whatsapp_postgres_t *pg);
static char *ngx_http_whatsapp_postgres_hostaddr(ngx_conf_t *cf,
    const char *host, ngx_str_t *hostaddr);
static ngx_http_whatsapp_postgres_t *ngx_http_whatsapp_postgres_shared(
    ngx_http_whatsapp_main_conf_t *wmcf, ngx_http_whatsapp_postgres_t *pg);

static void ngx_http_whatsapp_postgres_connect(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_connect_step(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_ready(
    ngx_http_whatsapp_postgres_conn_t *pc);
static ngx_int_t ngx_http_whatsapp_postgres_watch(
    ngx_http_whatsapp_postgres_conn_t *pc, ngx_uint_t write);
static void ngx_http_whatsapp_postgres_unwatch(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_release(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_event_handler(ngx_event_t *ev);
static void ngx_http_whatsapp_postgres_timer_handler(ngx_event_t *ev);
static void ngx_http_whatsapp_postgres_idle_read(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_busy_read(
    ngx_http_whatsapp_postgres_conn_t *pc);
static ngx_int_t ngx_http_whatsapp_postgres_flush(
    ngx_http_whatsapp_postgres_conn_t *pc);
static ngx_int_t ngx_http_whatsapp_postgres_send(
    ngx_http_whatsapp_postgres_conn_t *pc,
    ngx_http_whatsapp_postgres_query_t *q);
static void ngx_http_whatsapp_postgres_step_done(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_answer(
    ngx_http_whatsapp_postgres_conn_t *pc, PGresult *res);
static void ngx_http_whatsapp_postgres_dispatch(
    ngx_http_whatsapp_postgres_t *pg);
static void ngx_http_whatsapp_postgres_wait_timeout(ngx_event_t *ev);
static void ngx_http_whatsapp_postgres_reset(
    ngx_http_whatsapp_postgres_conn_t *pc,
    ngx_http_whatsapp_postgres_result_e result, const char *why);
static void ngx_http_whatsapp_postgres_close(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_schedule(
    ngx_http_whatsapp_postgres_conn_t *pc);
static void ngx_http_whatsapp_postgres_notice(void *arg, const char *message);
static void ngx_http_whatsapp_postgres_log_error(
    ngx_http_whatsapp_postgres_conn_t *pc, const char *what);


/* configuration */

/*
 * whatsapp_postgres "conninfo" [pool=4] [queue=64] [connect_timeout=2s];
 */
char *
ngx_http_whatsapp_postgres_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_whatsapp_loc_conf_t  *wlcf = conf;

    char                           *rv;
    ngx_str_t                      *value;
    ngx_uint_t                      i;
    ngx_http_whatsapp_postgres_t   *pg;
    ngx_http_whatsapp_main_conf_t  *wmcf;

    if (wlcf->postgres != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pg = ngx_pcalloc(cf->pool, sizeof(ngx_http_whatsapp_postgres_t));
    if (pg == NULL) {
        return NGX_CONF_ERROR;
    }

    /* configuration arguments are NUL-terminated */
    pg->conninfo = value[1];
    pg->size = 4;
    pg->queue_size = 64;
    pg->connect_timeout = 2000;

    for (i = 2; i < cf->args->nelts; i++) {
        rv = ngx_http_whatsapp_postgres_param(cf, pg, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    rv = ngx_http_whatsapp_postgres_conninfo(cf, pg);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_whatsapp_module);

    wlcf->postgres = ngx_http_whatsapp_postgres_shared(wmcf, pg);

    return wlcf->postgres ? NGX_CONF_OK : NGX_CONF_ERROR;
}


static char *
ngx_http_whatsapp_postgres_param(ngx_conf_t *cf,
    ngx_http_whatsapp_postgres_t *pg, ngx_str_t *param)
{
    ngx_int_t  n;
    ngx_str_t  v;

    if (ngx_strncmp(param->data, "pool=", 5) == 0) {
        n = ngx_atoi(param->data + 5, param->len - 5);
        if (n == NGX_ERROR || n == 0 || n > 256) {
            goto invalid;
        }

        pg->size = n;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "queue=", 6) == 0) {
        n = ngx_atoi(param->data + 6, param->len - 6);
        if (n == NGX_ERROR) {
            goto invalid;
        }

        pg->queue_size = n;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "connect_timeout=", 16) == 0) {
        v.len = param->len - 16;
        v.data = param->data + 16;

        pg->connect_timeout = ngx_parse_time(&v, 0);
        if (pg->connect_timeout == (ngx_msec_t) NGX_ERROR
            || pg->connect_timeout == 0)
        {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" of \"whatsapp_postgres\" "
                       "(expected pool=1..256, queue=N or "
                       "connect_timeout=time)", param);
    return NGX_CONF_ERROR;
}


/*
 * The conninfo is parsed once, here, into the keyword/value arrays that
 * PQconnectStartParams() takes, with:
 *   - client_encoding=UTF8 (the API validates and sends UTF-8);
 *   - fallback_application_name=nginx-whatsapp (pg_stat_activity);
 *   - hostaddr= for each host name, resolved now: libpq would otherwise
 *     call getaddrinfo(), which blocks, on every (re)connect.
 */
static char *
ngx_http_whatsapp_postgres_conninfo(ngx_conf_t *cf,
    ngx_http_whatsapp_postgres_t *pg)
{
    char                *err, *rv;
    u_char              *p;
    size_t               len;
    ngx_str_t            kw, hostaddr;
    ngx_uint_t           n, i;
    const char          *host, *port, *dbname;
    PQconninfoOption    *opts, *o;

    err = NULL;
    opts = PQconninfoParse((const char *) pg->conninfo.data, &err);

    if (opts == NULL) {
        /* libpq's message may quote the text, and so a password */
        if (err) {
            PQfreemem(err);
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"whatsapp_postgres\" has a conninfo that libpq "
                           "cannot parse (not shown: it may hold a password)");
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;

    n = 0;
    host = NULL;
    port = NULL;
    dbname = NULL;
    ngx_str_null(&hostaddr);

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        n++;

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o->val;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr.data = (u_char *) o->val;
            hostaddr.len = ngx_strlen(o->val);

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            port = o->val;

        } else if (ngx_strcmp(o->keyword, "dbname") == 0) {
            dbname = o->val;
        }
    }

    if (host && hostaddr.data == NULL) {
        if (ngx_http_whatsapp_postgres_hostaddr(cf, host, &hostaddr)
            != NGX_CONF_OK)
        {
            goto done;
        }
    }

    /* what the conninfo sets, hostaddr, the two additions, the NULL */
    pg->keywords = ngx_pcalloc(cf->pool, (n + 4) * sizeof(char *));
    pg->values = ngx_pcalloc(cf->pool, (n + 4) * sizeof(char *));
    if (pg->keywords == NULL || pg->values == NULL) {
        goto done;
    }

    i = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL
            || ngx_strcmp(o->keyword, "client_encoding") == 0
            || ngx_strcmp(o->keyword, "hostaddr") == 0)
        {
            continue;
        }

        kw.len = ngx_strlen(o->keyword) + 1;
        kw.data = ngx_pnalloc(cf->pool, kw.len);
        len = ngx_strlen(o->val) + 1;
        p = ngx_pnalloc(cf->pool, len);
        if (kw.data == NULL || p == NULL) {
            goto done;
        }

        ngx_memcpy(kw.data, o->keyword, kw.len);
        ngx_memcpy(p, o->val, len);

        pg->keywords[i] = (const char *) kw.data;
        pg->values[i] = (const char *) p;
        i++;
    }

    if (hostaddr.len) {
        p = ngx_pnalloc(cf->pool, hostaddr.len + 1);
        if (p == NULL) {
            goto done;
        }

        *ngx_cpymem(p, hostaddr.data, hostaddr.len) = '\0';

        pg->keywords[i] = "hostaddr";
        pg->values[i] = (const char *) p;
        i++;
    }

    pg->keywords[i] = "client_encoding";
    pg->values[i] = "UTF8";
    i++;

    pg->keywords[i] = "fallback_application_name";
    pg->values[i] = "nginx-whatsapp";

    /* a name for logs, without the password */

    len = (host ? ngx_strlen(host) : sizeof("local") - 1)
          + (port ? ngx_strlen(port) + 1 : 0)
          + (dbname ? ngx_strlen(dbname) + 1 : 0);

    pg->name.data = ngx_pnalloc(cf->pool, len);
    if (pg->name.data == NULL) {
        goto done;
    }

    p = ngx_sprintf(pg->name.data, "%s", host ? host : "local");

    if (port) {
        p = ngx_sprintf(p, ":%s", port);
    }

    if (dbname) {
        p = ngx_sprintf(p, "/%s", dbname);
    }

    pg->name.len = p - pg->name.data;

    rv = NGX_CONF_OK;

done:

    PQconninfoFree(opts);

    return rv;
}


/*
 * host may list several hosts ("a,b"); hostaddr then lists as many
 * addresses, empty where libpq needs none (a socket directory, an IP).
 */
static char *
ngx_http_whatsapp_postgres_hostaddr(ngx_conf_t *cf, const char *host,
    ngx_str_t *hostaddr)
{
    u_char      *p, *start, *end, *out;
    size_t       len;
    ngx_url_t    u;
    ngx_uint_t   resolved;

    len = ngx_strlen(host);
    start = (u_char *) host;
    end = start + len;

    /* at most one address per host, each at most NGX_SOCKADDR_STRLEN */
    out = ngx_pnalloc(cf->pool, (len + 1) * (NGX_SOCKADDR_STRLEN + 1));
    if (out == NULL) {
        return NGX_CONF_ERROR;
    }

    hostaddr->data = out;
    resolved = 0;

    for ( ;; ) {
        p = ngx_strlchr(start, end, ',');
        if (p == NULL) {
            p = end;
        }

        if (start > (u_char *) host) {
            *out++ = ',';
        }

        if (p > start && *start != '/' && *start != '@'
            && ngx_strlchr(start, p, ':') == NULL
            && ngx_inet_addr(start, p - start) == INADDR_NONE)
        {
            ngx_memzero(&u, sizeof(ngx_url_t));

            u.url.data = start;
            u.url.len = p - start;
            u.default_port = 5432;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"whatsapp_postgres\" cannot resolve "
                                   "host \"%*s\"", p - start, start);
                return NGX_CONF_ERROR;
            }

            out += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                 out, NGX_SOCKADDR_STRLEN, 0);
            resolved++;
        }

        if (p == end) {
            break;
        }

        start = p + 1;
    }

    hostaddr->len = resolved ? (size_t) (out - hostaddr->data) : 0;

    return NGX_CONF_OK;
}


/* Servers naming the same database with the same options share a pool. */
static ngx_http_whatsapp_postgres_t *
ngx_http_whatsapp_postgres_shared(ngx_http_whatsapp_main_conf_t *wmcf,
    ngx_http_whatsapp_postgres_t *pg)
{
    ngx_uint_t                      i;
    ngx_http_whatsapp_postgres_t   *known, **slot;

    for (i = 0; i < wmcf->postgres.nelts; i++) {
        known = ((ngx_http_whatsapp_postgres_t **) wmcf->postgres.elts)[i];

        if (known->size == pg->size
            && known->queue_size == pg->queue_size
            && known->connect_timeout == pg->connect_timeout
            && known->conninfo.len == pg->conninfo.len
            && ngx_strncmp(known->conninfo.data, pg->conninfo.data,
                           pg->conninfo.len) == 0)
        {
            return known;
        }
    }

    slot = ngx_array_push(&wmcf->postgres);
    if (slot == NULL) {
        return NULL;
    }

    *slot = pg;

    return pg;
}


/* worker process */

ngx_int_t
ngx_http_whatsapp_postgres_init_worker(ngx_http_whatsapp_postgres_t *pg,
    ngx_cycle_t *cycle)
{
    ngx_uint_t                          i;
    ngx_http_whatsapp_postgres_conn_t  *pc;

    pg->conns = ngx_pcalloc(cycle->pool,
                        pg->size * sizeof(ngx_http_whatsapp_postgres_conn_t));
    if (pg->conns == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&pg->idle);
    ngx_queue_init(&pg->waiting);
    pg->nwaiting = 0;
    pg->nup = 0;
    pg->log = cycle->log;

    for (i = 0; i < pg->size; i++) {
        pc = &pg->conns[i];

        pc->pg = pg;
        pc->number = i + 1;
        pc->state = NGX_HTTP_WHATSAPP_POSTGRES_DOWN;
        pc->timer.handler = ngx_http_whatsapp_postgres_timer_handler;
        pc->timer.data = pc;
        pc->timer.log = cycle->log;

        ngx_http_whatsapp_postgres_connect(pc);
    }

    return NGX_OK;
}


void
ngx_http_whatsapp_postgres_exit_worker(ngx_http_whatsapp_postgres_t *pg)
{
    ngx_uint_t                           i;
    ngx_queue_t                         *qu;
    ngx_http_whatsapp_postgres_conn_t   *pc;
    ngx_http_whatsapp_postgres_query_t  *q;

    if (pg->conns == NULL) {
        return;
    }

    /*
     * A graceful exit waits for every deadline, so queries are left only
     * when terminating: their requests die with the process, unanswered.
     */
    while (!ngx_queue_empty(&pg->waiting)) {
        qu = ngx_queue_head(&pg->waiting);
        q = ngx_queue_data(qu, ngx_http_whatsapp_postgres_query_t, queue);
        ngx_http_whatsapp_postgres_cancel(q);
    }

    for (i = 0; i < pg->size; i++) {
        pc = &pg->conns[i];

        if (pc->query) {
            pc->query->conn = NULL;
            pc->query = NULL;
        }

        if (pc->state == NGX_HTTP_WHATSAPP_POSTGRES_IDLE
            || pc->state == NGX_HTTP_WHATSAPP_POSTGRES_BUSY)
        {
            ngx_http_whatsapp_status_postgres_connected(-1);
        }

        ngx_http_whatsapp_postgres_close(pc);
        pc->state = NGX_HTTP_WHATSAPP_POSTGRES_DOWN;
    }

    pg->nup = 0;
}


ngx_int_t
ngx_http_whatsapp_postgres_query(ngx_http_whatsapp_postgres_t *pg,
    ngx_http_whatsapp_postgres_query_t *q)
{
    ngx_http_whatsapp_postgres_conn_t  *pc;

    if (pg->nup == 0) {
        return NGX_DECLINED;
    }

    q->pg = pg;
    q->conn = NULL;
    q->waiting = 0;
    q->deadline = ngx_current_msec + q->timeout;

    /* idle connections exist only while nothing waits */

    while (!ngx_queue_empty(&pg->idle)) {
        pc = ngx_queue_data(ngx_queue_head(&pg->idle),
                            ngx_http_whatsapp_postgres_conn_t, queue);

        if (ngx_http_whatsapp_postgres_send(pc, q) == NGX_OK) {
            return NGX_OK;
        }

        /* that connection was broken and is being replaced */

        if (pg->nup == 0) {
            return NGX_DECLINED;
        }
    }

    if (pg->nwaiting >= pg->queue_size) {
        ngx_http_whatsapp_status_postgres_error(
                                   NGX_HTTP_WHATSAPP_POSTGRES_ERR_QUEUE_FULL);
        return NGX_BUSY;
    }

    ngx_queue_insert_tail(&pg->waiting, &q->queue);
    pg->nwaiting++;
    q->waiting = 1;

    ngx_memzero(&q->timer, sizeof(ngx_event_t));
    q->timer.handler = ngx_http_whatsapp_postgres_wait_timeout;
    q->timer.data = q;
    q->timer.log = q->log;

    /* keeps a gracefully exiting worker until the query is answered */
    ngx_add_timer(&q->timer, q->timeout);

    return NGX_OK;
}


void
ngx_http_whatsapp_postgres_cancel(ngx_http_whatsapp_postgres_query_t *q)
{
    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        q->pg->nwaiting--;
        q->waiting = 0;
    }

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->conn) {
        /* the connection finishes the statement and discards its result */
        q->conn->query = NULL;
        q->conn = NULL;
    }
}


/* connecting */

static void
ngx_http_whatsapp_postgres_connect(ngx_http_whatsapp_postgres_conn_t *pc)
{
    ngx_http_whatsapp_postgres_t  *pg = pc->pg;

    pc->conn = PQconnectStartParams(pg->keywords, pg->values, 0);

    if (pc->conn == NULL) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, 0,
                      "whatsapp: no memory for a PostgreSQL connection");
        ngx_http_whatsapp_postgres_schedule(pc);
        return;
    }

    if (PQstatus(pc->conn) == CONNECTION_BAD) {
        ngx_http_whatsapp_postgres_log_error(pc, "connect");
        ngx_http_whatsapp_status_postgres_error(
                                      NGX_HTTP_WHATSAPP_POSTGRES_ERR_CONNECT);
        ngx_http_whatsapp_postgres_close(pc);
        ngx_http_whatsapp_postgres_schedule(pc);
        return;
    }

    pc->state = NGX_HTTP_WHATSAPP_POSTGRES_CONNECTING;

    /* libpq: after PQconnectStart, behave as if told PGRES_POLLING_WRITING */
    if (ngx_http_whatsapp_postgres_watch(pc, 1) != NGX_OK) {
        ngx_http_whatsapp_postgres_close(pc);
        pc->state = NGX_HTTP_WHATSAPP_POSTGRES_DOWN;
        ngx_http_whatsapp_postgres_schedule(pc);
        return;
    }

    /* reconnecting must not keep a gracefully exiting worker alive */
    pc->timer.cancelable = 1;
    ngx_add_timer(&pc->timer, pg->connect_timeout);
}


/*
 * libpq may close its socket and open another within one PQconnectPoll()
 * (the next address of a host, a retry without SSL), often under the same
 * fd number, which the kernel then no longer watches.  So the events are
 * removed while the old socket is surely open, and added again for
 * whatever socket libpq has afterwards.
 */
static void
ngx_http_whatsapp_postgres_connect_step(ngx_http_whatsapp_postgres_conn_t *pc)
{
    ngx_http_whatsapp_postgres_unwatch(pc);

    switch (PQconnectPoll(pc->conn)) {

    case PGRES_POLLING_READING:
        if (ngx_http_whatsapp_postgres_watch(pc, 0) == NGX_OK) {
            return;
        }

        break;

    case PGRES_POLLING_WRITING:
        if (ngx_http_whatsapp_postgres_watch(pc, 1) == NGX_OK) {
            return;
        }

        break;

    case PGRES_POLLING_OK:
        ngx_http_whatsapp_postgres_ready(pc);
        return;

    default:
        ngx_http_whatsapp_postgres_log_error(pc, "connect");
        break;
    }

    ngx_http_whatsapp_status_postgres_error(
                                      NGX_HTTP_WHATSAPP_POSTGRES_ERR_CONNECT);
    ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                     NULL);
}


static void
ngx_http_whatsapp_postgres_ready(ngx_http_whatsapp_postgres_conn_t *pc)
{
    ngx_http_whatsapp_postgres_t  *pg = pc->pg;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (PQsetnonblocking(pc->conn, 1) != 0) {
        ngx_http_whatsapp_postgres_log_error(pc, "set non-blocking");
        ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                         NULL);
        return;
    }

    (void) PQsetNoticeProcessor(pc->conn, ngx_http_whatsapp_postgres_notice,
                                pc);

    /* from now on the socket stays the same; read is always watched, to
     * learn at once of a server that goes away */
    if (ngx_http_whatsapp_postgres_watch(pc, 0) != NGX_OK) {
        ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                         NULL);
        return;
    }

    pc->state = NGX_HTTP_WHATSAPP_POSTGRES_IDLE;
    pc->backoff = 0;
    pc->prepared = 0;
    ngx_queue_insert_tail(&pg->idle, &pc->queue);

    pg->nup++;
    ngx_http_whatsapp_status_postgres_connected(1);

    ngx_log_error(NGX_LOG_NOTICE, pg->log, 0,
                  "whatsapp: PostgreSQL %V connection %ui ready",
                  &pg->name, pc->number);

    ngx_http_whatsapp_postgres_dispatch(pg);
}


/* events */

static ngx_int_t
ngx_http_whatsapp_postgres_watch(ngx_http_whatsapp_postgres_conn_t *pc,
    ngx_uint_t write)
{
    ngx_event_t       *ev;
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    fd = PQsocket(pc->conn);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, pc->pg->log, 0,
                      "whatsapp: PostgreSQL %V connection %ui has no socket",
                      &pc->pg->name, pc->number);
        return NGX_ERROR;
    }

    if (pc->c && pc->c->fd != fd) {
        ngx_http_whatsapp_postgres_release(pc);
    }

    if (pc->c == NULL) {
        c = ngx_get_connection(fd, pc->pg->log);
        if (c == NULL) {
            return NGX_ERROR;
        }

        c->data = pc;
        c->read->log = pc->pg->log;
        c->write->log = pc->pg->log;
        c->read->handler = ngx_http_whatsapp_postgres_event_handler;
        c->write->handler = ngx_http_whatsapp_postgres_event_handler;

        pc->c = c;
    }

    ev = write ? pc->c->write : pc->c->read;

    if (!ev->active
        && ngx_add_event(ev, write ? NGX_WRITE_EVENT : NGX_READ_EVENT,
                         NGX_LEVEL_EVENT)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, pc->pg->log, 0,
                      "whatsapp: cannot watch the PostgreSQL socket");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_whatsapp_postgres_unwatch(ngx_http_whatsapp_postgres_conn_t *pc)
{
    ngx_uint_t         flags;
    ngx_connection_t  *c = pc->c;

    if (c == NULL) {
        return;
    }

    /*
     * libpq closes the socket itself when it finds the connection broken
     * (end of file, a failed send); the kernel has then forgotten it, and
     * only NGINX's bookkeeping is left to undo.
     */
    flags = (pc->conn && PQsocket(pc->conn) == c->fd) ? 0 : NGX_CLOSE_EVENT;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }
}


/* Frees the NGINX connection; the fd stays libpq's, open or not. */
static void
ngx_http_whatsapp_postgres_release(ngx_http_whatsapp_postgres_conn_t *pc)
{
    ngx_connection_t  *c = pc->c;

    if (c == NULL) {
        return;
    }

    ngx_http_whatsapp_postgres_unwatch(pc);

    ngx_free_connection(c);

    /* never closed by NGINX; also marks events of this epoll round stale */
    c->fd = (ngx_socket_t) -1;

    pc->c = NULL;
}


static void
ngx_http_whatsapp_postgres_event_handler(ngx_event_t *ev)
{
    ngx_connection_t                   *c = ev->data;
    ngx_http_whatsapp_postgres_conn_t  *pc = c->data;

    switch (pc->state) {

    case NGX_HTTP_WHATSAPP_POSTGRES_CONNECTING:
        ngx_http_whatsapp_postgres_connect_step(pc);
        return;

    case NGX_HTTP_WHATSAPP_POSTGRES_IDLE:
        if (!ev->write) {
            ngx_http_whatsapp_postgres_idle_read(pc);
        }

        return;

    case NGX_HTTP_WHATSAPP_POSTGRES_BUSY:
        if (ev->write) {
            if (ngx_http_whatsapp_postgres_flush(pc) != NGX_OK) {
                ngx_http_whatsapp_postgres_reset(pc,
                                             NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                             NULL);
            }

        } else {
            ngx_http_whatsapp_postgres_busy_read(pc);
        }

        return;

    default:
        return;
    }
}


static void
ngx_http_whatsapp_postgres_timer_handler(ngx_event_t *ev)
{
    ngx_http_whatsapp_postgres_conn_t  *pc = ev->data;

    switch (pc->state) {

    case NGX_HTTP_WHATSAPP_POSTGRES_DOWN:
        ngx_http_whatsapp_postgres_connect(pc);
        return;

    case NGX_HTTP_WHATSAPP_POSTGRES_CONNECTING:
        ngx_http_whatsapp_status_postgres_error(
                                      NGX_HTTP_WHATSAPP_POSTGRES_ERR_CONNECT);
        ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                         "did not connect in "
                                         "connect_timeout");
        return;

    case NGX_HTTP_WHATSAPP_POSTGRES_BUSY:
        /*
         * The deadline.  libpq's only cancel in this version, PQcancel(),
         * opens a second connection and waits for it: it would block the
         * event loop for as long as the server takes to answer, which is
         * exactly what is in doubt now.  The connection is closed instead
         * (the server ends the statement when it next talks to the
         * client, or at statement_timeout) and a new one is opened.
         */
        ngx_http_whatsapp_status_postgres_error(
                                      NGX_HTTP_WHATSAPP_POSTGRES_ERR_TIMEOUT);
        ngx_http_whatsapp_postgres_reset(pc,
                                         NGX_HTTP_WHATSAPP_POSTGRES_TIMEOUT,
                                         "did not answer in time");
        return;

    default:
        return;
    }
}


/*
 * An idle connection hears from the server only when it is going away
 * (shutdown, restart, pg_terminate_backend): FATAL, then end of file.
 */
static void
ngx_http_whatsapp_postgres_idle_read(ngx_http_whatsapp_postgres_conn_t *pc)
{
    if (!PQconsumeInput(pc->conn) || PQstatus(pc->conn) != CONNECTION_OK) {
        ngx_http_whatsapp_status_postgres_error(
                                         NGX_HTTP_WHATSAPP_POSTGRES_ERR_LOST);
        ngx_http_whatsapp_postgres_log_error(pc, "lost");
        ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                         NULL);
    }
}


static void
ngx_http_whatsapp_postgres_busy_read(ngx_http_whatsapp_postgres_conn_t *pc)
{
    PGresult  *res;

    if (!PQconsumeInput(pc->conn)) {
        ngx_http_whatsapp_status_postgres_error(
                                         NGX_HTTP_WHATSAPP_POSTGRES_ERR_LOST);
        ngx_http_whatsapp_postgres_log_error(pc, "lost");
        ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                         NULL);
        return;
    }

    /* libpq: a server sending while we still write must be read first */
    if (pc->flushing && ngx_http_whatsapp_postgres_flush(pc) != NGX_OK) {
        ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                         NULL);
        return;
    }

    /* the step may end and the connection go idle, or run the next one */

    while (pc->state == NGX_HTTP_WHATSAPP_POSTGRES_BUSY
           && !PQisBusy(pc->conn))
    {
        res = PQgetResult(pc->conn);

        if (res == NULL) {
            ngx_http_whatsapp_postgres_step_done(pc);
            continue;
        }

        if (pc->res == NULL) {
            pc->res = res;

        } else {
            PQclear(res);
        }
    }
}


/*
 * Sends what libpq has queued; the write event is watched only while
 * something is left.  On failure the caller resets the connection.
 */
static ngx_int_t
ngx_http_whatsapp_postgres_flush(ngx_http_whatsapp_postgres_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->conn);

    if (rc < 0) {
        ngx_http_whatsapp_status_postgres_error(
                                         NGX_HTTP_WHATSAPP_POSTGRES_ERR_LOST);
        ngx_http_whatsapp_postgres_log_error(pc, "send");
        return NGX_ERROR;
    }

    pc->flushing = (rc == 1);

    if (pc->flushing) {
        return ngx_http_whatsapp_postgres_watch(pc, 1);
    }

    if (pc->c->write->active) {
        (void) ngx_del_event(pc->c->write, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


/* queries */

/*
 * Starts q on the idle connection pc: PREPARE first if this connection
 * has not prepared the statement yet, else EXECUTE.  On failure q is not
 * attached (the caller decides) and pc is being replaced.
 */
static ngx_int_t
ngx_http_whatsapp_postgres_send(ngx_http_whatsapp_postgres_conn_t *pc,
    ngx_http_whatsapp_postgres_query_t *q)
{
    int                                 rc;
    ngx_msec_int_t                      left;
    ngx_http_whatsapp_postgres_stmt_t  *stmt = q->stmt;

    ngx_queue_remove(&pc->queue);

    pc->state = NGX_HTTP_WHATSAPP_POSTGRES_BUSY;
    pc->query = q;
    pc->stmt = stmt;
    q->conn = pc;

    left = (ngx_msec_int_t) (q->deadline - ngx_current_msec);

    /* the deadline keeps a gracefully exiting worker until it is met */
    pc->timer.cancelable = 0;
    ngx_add_timer(&pc->timer, left > 0 ? (ngx_msec_t) left : 1);

    if (pc->prepared & ((uint32_t) 1 << stmt->id)) {
        pc->preparing = 0;
        rc = PQsendQueryPrepared(pc->conn, stmt->name, stmt->nparams,
                                 q->values, NULL, NULL, 0);

    } else {
        pc->preparing = 1;
        rc = PQsendPrepare(pc->conn, stmt->name, stmt->sql, stmt->nparams,
                           NULL);
    }

    if (rc != 1) {
        ngx_http_whatsapp_status_postgres_error(
                                         NGX_HTTP_WHATSAPP_POSTGRES_ERR_LOST);
        ngx_http_whatsapp_postgres_log_error(pc, "send");
        goto failed;
    }

    if (ngx_http_whatsapp_postgres_flush(pc) != NGX_OK) {
        goto failed;
    }

    return NGX_OK;

failed:

    /* q is not answered from here: the caller may be within query() */
    pc->query = NULL;
    q->conn = NULL;

    ngx_http_whatsapp_postgres_reset(pc, NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                     NULL);
    return NGX_ERROR;
}


/* The step (PREPARE or EXECUTE) has returned all its results. */
static void
ngx_http_whatsapp_postgres_step_done(ngx_http_whatsapp_postgres_conn_t *pc)
{
    char                                *msg;
    PGresult                            *res;
    ngx_http_whatsapp_postgres_query_t  *q;

    res = pc->res;
    pc->res = NULL;

    if (pc->preparing) {
        pc->preparing = 0;

        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* the statement's error is the query's answer */
            msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                      : NULL;
            ngx_log_error(NGX_LOG_ERR, pc->pg->log, 0,
                          "whatsapp: PostgreSQL %V refused to prepare %s: %s",
                          &pc->pg->name, pc->stmt->name,
                          msg ? msg : "no result");
            ngx_http_whatsapp_postgres_answer(pc, res);
            return;
        }

        PQclear(res);
        pc->prepared |= (uint32_t) 1 << pc->stmt->id;

        q = pc->query;

        if (q == NULL) {
            /* abandoned meanwhile: the statement stays prepared */
            ngx_http_whatsapp_postgres_answer(pc, NULL);
            return;
        }

        if (PQsendQueryPrepared(pc->conn, pc->stmt->name, pc->stmt->nparams,
                                q->values, NULL, NULL, 0)
            != 1)
        {
            ngx_http_whatsapp_status_postgres_error(
                                         NGX_HTTP_WHATSAPP_POSTGRES_ERR_LOST);
            ngx_http_whatsapp_postgres_log_error(pc, "send");
            ngx_http_whatsapp_postgres_reset(pc,
                                             NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                             NULL);
            return;
        }

        if (ngx_http_whatsapp_postgres_flush(pc) != NGX_OK) {
            ngx_http_whatsapp_postgres_reset(pc,
                                             NGX_HTTP_WHATSAPP_POSTGRES_LOST,
                                             NULL);
        }

        return;
    }

    /*
     * The statement is gone from the server (a pooler in between ran
     * DISCARD ALL): it is prepared again on its next use.
     */
    msg = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (msg && ngx_strcmp(msg, "26000") == 0) {
        pc->prepared &= ~((uint32_t) 1 << pc->stmt->id);
    }

    ngx_http_whatsapp_postgres_answer(pc, res);
}


/*
 * The connection is free again; then the query (if still wanted) gets
 * res, which is cleared afterwards, and the next waiting query runs.
 */
static void
ngx_http_whatsapp_postgres_answer(ngx_http_whatsapp_postgres_conn_t *pc,
    PGresult *res)
{
    ngx_http_whatsapp_postgres_t        *pg = pc->pg;
    ngx_http_whatsapp_postgres_query_t  *q;

    if (res && PQresultStatus(res) != PGRES_TUPLES_OK
        && PQresultStatus(res) != PGRES_COMMAND_OK)
    {
        ngx_http_whatsapp_status_postgres_error(
                                        NGX_HTTP_WHATSAPP_POSTGRES_ERR_QUERY);
    }

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    q = pc->query;

    pc->query = NULL;
    pc->stmt = NULL;
    pc->state = NGX_HTTP_WHATSAPP_POSTGRES_IDLE;
    ngx_queue_insert_tail(&pg->idle, &pc->queue);

    if (q) {
        q->conn = NULL;
        q->handler(q->data, res, NGX_HTTP_WHATSAPP_POSTGRES_RESULT);
    }

    if (res) {
        PQclear(res);
    }

    ngx_http_whatsapp_postgres_dispatch(pg);
}


static void
ngx_http_whatsapp_postgres_dispatch(ngx_http_whatsapp_postgres_t *pg)
{
    ngx_queue_t                         *qu;
    ngx_http_whatsapp_postgres_conn_t   *pc;
    ngx_http_whatsapp_postgres_query_t  *q;

    while (!ngx_queue_empty(&pg->waiting) && !ngx_queue_empty(&pg->idle)) {

        qu = ngx_queue_head(&pg->waiting);
        q = ngx_queue_data(qu, ngx_http_whatsapp_postgres_query_t, queue);

        ngx_queue_remove(qu);
        pg->nwaiting--;
        q->waiting = 0;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        pc = ngx_queue_data(ngx_queue_head(&pg->idle),
                            ngx_http_whatsapp_postgres_conn_t, queue);

        if (ngx_http_whatsapp_postgres_send(pc, q) != NGX_OK) {
            q->handler(q->data, NULL, NGX_HTTP_WHATSAPP_POSTGRES_LOST);
        }
    }
}


static void
ngx_http_whatsapp_postgres_wait_timeout(ngx_event_t *ev)
{
    ngx_http_whatsapp_postgres_query_t  *q = ev->data;

    ngx_queue_remove(&q->queue);
    q->pg->nwaiting--;
    q->waiting = 0;

    ngx_http_whatsapp_status_postgres_error(
                                      NGX_HTTP_WHATSAPP_POSTGRES_ERR_TIMEOUT);

    ngx_log_error(NGX_LOG_ERR, q->log, 0,
                  "whatsapp: no PostgreSQL %V connection was free in time "
                  "for %s", &q->pg->name, q->stmt->name);

    q->handler(q->data, NULL, NGX_HTTP_WHATSAPP_POSTGRES_TIMEOUT);
}


/* failures */

/*
 * Drops the connection and plans the next one.  A query running on it is
 * answered `result`; when no connection is left up, the waiting ones are
 * answered as lost: they would otherwise wait for a reconnect that may
 * take seconds.
 */
static void
ngx_http_whatsapp_postgres_reset(ngx_http_whatsapp_postgres_conn_t *pc,
    ngx_http_whatsapp_postgres_result_e result, const char *why)
{
    ngx_queue_t                         *qu;
    ngx_http_whatsapp_postgres_t        *pg = pc->pg;
    ngx_http_whatsapp_postgres_query_t  *q;

    if (why) {
        ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                      "whatsapp: PostgreSQL %V connection %ui %s%s%s, "
                      "reconnecting", &pg->name, pc->number, why,
                      pc->stmt ? " running " : "",
                      pc->stmt ? pc->stmt->name : "");
    }

    if (pc->state == NGX_HTTP_WHATSAPP_POSTGRES_IDLE
        || pc->state == NGX_HTTP_WHATSAPP_POSTGRES_BUSY)
    {
        pg->nup--;
        ngx_http_whatsapp_status_postgres_connected(-1);
    }

    q = pc->query;
    pc->query = NULL;

    ngx_http_whatsapp_postgres_close(pc);

    pc->state = NGX_HTTP_WHATSAPP_POSTGRES_DOWN;
    ngx_http_whatsapp_postgres_schedule(pc);

    if (q) {
        q->conn = NULL;
        q->handler(q->data, NULL, result);
    }

    if (pg->nup) {
        return;
    }

    while (!ngx_queue_empty(&pg->waiting)) {
        qu = ngx_queue_head(&pg->waiting);
        q = ngx_queue_data(qu, ngx_http_whatsapp_postgres_query_t, queue);

        ngx_http_whatsapp_postgres_cancel(q);
        q->handler(q->data, NULL, NGX_HTTP_WHATSAPP_POSTGRES_LOST);
    }
}


/* Everything of the connection but its state and backoff. */
static void
ngx_http_whatsapp_postgres_close(ngx_http_whatsapp_postgres_conn_t *pc)
{
    if (pc->state == NGX_HTTP_WHATSAPP_POSTGRES_IDLE) {
        ngx_queue_remove(&pc->queue);
    }

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    /* events off while the socket is still open, then libpq closes it */
    ngx_http_whatsapp_postgres_release(pc);

    if (pc->res) {
        PQclear(pc->res);
        pc->res = NULL;
    }

    if (pc->conn) {
        PQfinish(pc->conn);
        pc->conn = NULL;
    }

    pc->stmt = NULL;
    pc->prepared = 0;
    pc->preparing = 0;
    pc->flushing = 0;
}


/* exponential backoff with +-25% jitter, so that workers and connections
 * do not reconnect in lockstep after a PostgreSQL restart */
static void
ngx_http_whatsapp_postgres_schedule(ngx_http_whatsapp_postgres_conn_t *pc)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (pc->backoff == 0) {
        pc->backoff = NGX_HTTP_WHATSAPP_POSTGRES_BACKOFF_MIN;

    } else {
        pc->backoff = ngx_min(pc->backoff * 2,
                              NGX_HTTP_WHATSAPP_POSTGRES_BACKOFF_MAX);
    }

    delay = pc->backoff * 3 / 4
            + (ngx_msec_t) ngx_random() % (pc->backoff / 2);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->pg->log, 0,
                   "whatsapp: PostgreSQL %V connection %ui retry in %M ms",
                   &pc->pg->name, pc->number, delay);

    pc->timer.cancelable = 1;
    ngx_add_timer(&pc->timer, delay);
}


/* NOTICEs and the FATAL of a server shutting down, into error.log */
static void
ngx_http_whatsapp_postgres_notice(void *arg, const char *message)
{
    ngx_http_whatsapp_postgres_conn_t  *pc = arg;

    size_t  len;

    len = ngx_strlen(message);

    while (len && (message[len - 1] == '\n' || message[len - 1] == ' ')) {
        len--;
    }

    ngx_log_error(NGX_LOG_INFO, pc->pg->log, 0,
                  "whatsapp: PostgreSQL %V connection %ui: %*s",
                  &pc->pg->name, pc->number, len, message);
}


static void
ngx_http_whatsapp_postgres_log_error(ngx_http_whatsapp_postgres_conn_t *pc,
    const char *what)
{
    size_t       len;
    const char  *msg;

    msg = pc->conn ? PQerrorMessage(pc->conn) : "";
    len = ngx_strlen(msg);

    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) {
        len--;
    }

    ngx_log_error(NGX_LOG_ERR, pc->pg->log, 0,
                  "whatsapp: PostgreSQL %V connection %ui: %s failed: %*s",
                  &pc->pg->name, pc->number, what, len, msg);
}
