/*
 * The Redis connection of one NGINX worker process: connect, handshake,
 * pipelined commands with deadlines, and reconnect with backoff.
 *
 * States: DOWN --timer--> CONNECTING --PING answered--> READY.  Commands
 * are refused in DOWN, so while Redis is away callers answer 503 at once
 * instead of waiting on a connection that may not come.
 * Any failure (connect error, lost connection, a command past its
 * deadline) frees the hiredis context, which answers every command still
 * in flight as lost, and schedules the next attempt.
 */

#include "ngx_http_whatsapp_module.h"


#define NGX_HTTP_WHATSAPP_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_WHATSAPP_REDIS_BACKOFF_MAX  5000


struct ngx_http_whatsapp_redis_cmd_s {
    ngx_http_whatsapp_redis_t           *redis;
    ngx_http_whatsapp_redis_handler_pt   handler;
    void                                *data;    /* NULL: abandoned */
    ngx_event_t                          deadline;
    ngx_http_whatsapp_redis_cmd_t       *next;    /* in the free list */
};


static void ngx_http_whatsapp_redis_connect(ngx_http_whatsapp_redis_t *rd);
static void ngx_http_whatsapp_redis_handshake(ngx_http_whatsapp_redis_t *rd);
static void ngx_http_whatsapp_redis_handshake_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_whatsapp_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_whatsapp_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_whatsapp_redis_reset(ngx_http_whatsapp_redis_t *rd,
    const char *why);
static void ngx_http_whatsapp_redis_down(ngx_http_whatsapp_redis_t *rd);
static void ngx_http_whatsapp_redis_schedule(ngx_http_whatsapp_redis_t *rd);
static void ngx_http_whatsapp_redis_timer_handler(ngx_event_t *ev);
static void ngx_http_whatsapp_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_whatsapp_redis_deadline_handler(ngx_event_t *ev);
static void ngx_http_whatsapp_redis_release(ngx_http_whatsapp_redis_cmd_t *cmd);


ngx_int_t
ngx_http_whatsapp_redis_init_worker(ngx_http_whatsapp_redis_t *rd,
    ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_whatsapp_redis_cmd_t  *cmds;

    /* command slots live as long as the process: replies may arrive
     * after the request that asked has gone */

    cmds = ngx_pcalloc(cycle->pool,
                       rd->max_pending * sizeof(ngx_http_whatsapp_redis_cmd_t));
    if (cmds == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < rd->max_pending; i++) {
        cmds[i].redis = rd;
        cmds[i].deadline.handler = ngx_http_whatsapp_redis_deadline_handler;
        cmds[i].deadline.data = &cmds[i];
        cmds[i].deadline.log = cycle->log;
        cmds[i].deadline.cancelable = rd->cancelable;
        cmds[i].next = (i + 1 < rd->max_pending) ? &cmds[i + 1] : NULL;
    }

    rd->cmds = cmds;
    rd->free = cmds;
    rd->ac = NULL;
    rd->state = NGX_HTTP_WHATSAPP_REDIS_DOWN;
    rd->backoff = 0;
    rd->log = cycle->log;

    rd->timer.handler = ngx_http_whatsapp_redis_timer_handler;
    rd->timer.data = rd;
    rd->timer.log = cycle->log;

    /* reconnecting must not keep a gracefully exiting worker alive */
    rd->timer.cancelable = 1;

    ngx_http_whatsapp_redis_connect(rd);

    return NGX_OK;
}


void
ngx_http_whatsapp_redis_exit_worker(ngx_http_whatsapp_redis_t *rd)
{
    ngx_uint_t          i;
    redisAsyncContext  *ac;

    /*
     * A graceful exit waits for every deadline, so commands are left only
     * when terminating: their requests die with the process, unanswered.
     */
    for (i = 0; i < rd->max_pending; i++) {
        rd->cmds[i].data = NULL;
    }

    ac = rd->ac;

    ngx_http_whatsapp_redis_down(rd);

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    if (ac) {
        redisAsyncFree(ac);
    }
}


ngx_int_t
ngx_http_whatsapp_redis_send(ngx_http_whatsapp_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen, ngx_msec_t timeout,
    ngx_http_whatsapp_redis_handler_pt handler, void *data,
    ngx_http_whatsapp_redis_cmd_t **cmdp)
{
    ngx_http_whatsapp_redis_cmd_t  *cmd;

    /*
     * While the handshake is in flight hiredis queues commands behind it,
     * so a worker that has just started (or reloaded) serves at once;
     * should the handshake fail, they are answered as lost.
     */
    if (rd->state == NGX_HTTP_WHATSAPP_REDIS_DOWN) {
        return NGX_DECLINED;
    }

    cmd = rd->free;

    if (cmd == NULL) {
        return NGX_BUSY;
    }

    if (redisAsyncCommandArgv(rd->ac, ngx_http_whatsapp_redis_reply, cmd,
                              argc, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    rd->free = cmd->next;

    cmd->next = NULL;
    cmd->handler = handler;
    cmd->data = data;

    /* the deadline keeps a gracefully exiting worker until it is met */
    ngx_add_timer(&cmd->deadline, timeout);

    *cmdp = cmd;

    return NGX_OK;
}


void
ngx_http_whatsapp_redis_abandon(ngx_http_whatsapp_redis_cmd_t *cmd)
{
    cmd->data = NULL;
}


static void
ngx_http_whatsapp_redis_connect(ngx_http_whatsapp_redis_t *rd)
{
    redisAsyncContext  *ac;

    if (rd->port) {
        ac = redisAsyncConnect((char *) rd->host.data, rd->port);

    } else {
        ac = redisAsyncConnectUnix((char *) rd->host.data);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                      "whatsapp: no memory for Redis %V context", &rd->name);
        ngx_http_whatsapp_redis_schedule(rd);
        return;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "whatsapp: connect to Redis %V failed: %s",
                      &rd->name, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_whatsapp_status_redis_error(
                                      NGX_HTTP_WHATSAPP_REDIS_ERR_CONNECT);
        ngx_http_whatsapp_redis_schedule(rd);
        return;
    }

    if (ngx_http_whatsapp_redis_attach(ac, rd->log) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_whatsapp_redis_schedule(rd);
        return;
    }

    ac->data = rd;
    redisAsyncSetConnectCallback(ac, ngx_http_whatsapp_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_whatsapp_redis_on_disconnect);

    rd->ac = ac;
    rd->state = NGX_HTTP_WHATSAPP_REDIS_CONNECTING;

    ngx_http_whatsapp_redis_handshake(rd);

    /* may run at process start, outside the event loop; a connect that
     * fails at once has already scheduled the next attempt */
    ngx_http_whatsapp_redis_flush(ac);

    if (rd->state != NGX_HTTP_WHATSAPP_REDIS_CONNECTING) {
        return;
    }

    /* covers the TCP connect and the handshake: a Redis that accepts but
     * does not answer (stopped, overloaded) is not usable */
    ngx_add_timer(&rd->timer, rd->connect_timeout);
}


/*
 * AUTH, SELECT and PING are queued at once; hiredis sends them when the
 * socket connects.  The answer to PING proves Redis serves commands.
 */
static void
ngx_http_whatsapp_redis_handshake(ngx_http_whatsapp_redis_t *rd)
{
    if (rd->password.len) {
        (void) redisAsyncCommand(rd->ac,
                                 ngx_http_whatsapp_redis_handshake_reply,
                                 "AUTH", "AUTH %b", rd->password.data,
                                 rd->password.len);
    }

    if (rd->db) {
        (void) redisAsyncCommand(rd->ac,
                                 ngx_http_whatsapp_redis_handshake_reply,
                                 "SELECT", "SELECT %d", (int) rd->db);
    }

    (void) redisAsyncCommand(rd->ac, ngx_http_whatsapp_redis_handshake_reply,
                             "PING", "PING");
}


static void
ngx_http_whatsapp_redis_handshake_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    const char  *step = privdata;

    redisReply                 *r = reply;
    ngx_http_whatsapp_redis_t  *rd = ac->data;

    if (r == NULL || ac != rd->ac) {
        return;                  /* the context is being freed */
    }

    if (r->type == REDIS_REPLY_ERROR) {
        /* the reply text may not echo a password: Redis does not */
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "whatsapp: Redis %V refused %s: %s",
                      &rd->name, step, r->str);
        ngx_http_whatsapp_redis_reset(rd, NULL);
        return;
    }

    if (ngx_strcmp(step, "PING") != 0) {
        return;
    }

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    rd->state = NGX_HTTP_WHATSAPP_REDIS_READY;
    rd->backoff = 0;

    ngx_http_whatsapp_status_redis_connected(1);

    ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                  "whatsapp: Redis %V ready", &rd->name);

    if (rd->ready) {
        rd->ready(rd->ready_data);
    }
}


static void
ngx_http_whatsapp_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_whatsapp_redis_t  *rd = ac->data;

    if (status == REDIS_OK) {
        return;
    }

    /* hiredis frees the context itself after this callback */

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "whatsapp: connect to Redis %V failed: %s",
                  &rd->name, ac->errstr);

    ngx_http_whatsapp_status_redis_error(NGX_HTTP_WHATSAPP_REDIS_ERR_CONNECT);

    ngx_http_whatsapp_redis_down(rd);
}


static void
ngx_http_whatsapp_redis_on_disconnect(const redisAsyncContext *ac,
    int status)
{
    ngx_http_whatsapp_redis_t  *rd = ac->data;

    if (ac != rd->ac) {
        return;                  /* we freed it: reset() did the rest */
    }

    /* hiredis frees the context itself after this callback */

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "whatsapp: connection to Redis %V lost: %s",
                  &rd->name, ac->err ? ac->errstr : "closed by server");

    ngx_http_whatsapp_status_redis_error(NGX_HTTP_WHATSAPP_REDIS_ERR_LOST);

    ngx_http_whatsapp_redis_down(rd);
}


/*
 * Drops the connection: commands in flight are answered as lost (their
 * callers answer 503 and Meta retries), and a new connection follows.
 */
static void
ngx_http_whatsapp_redis_reset(ngx_http_whatsapp_redis_t *rd, const char *why)
{
    redisAsyncContext  *ac;

    if (why) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "whatsapp: Redis %V %s, reconnecting", &rd->name, why);
    }

    ac = rd->ac;

    ngx_http_whatsapp_redis_down(rd);

    if (ac) {
        /* deferred by hiredis until its current callback returns */
        redisAsyncFree(ac);
    }
}


/* The context is gone or going: forget it and plan the next attempt. */
static void
ngx_http_whatsapp_redis_down(ngx_http_whatsapp_redis_t *rd)
{
    if (rd->state == NGX_HTTP_WHATSAPP_REDIS_READY) {
        ngx_http_whatsapp_status_redis_connected(-1);
    }

    rd->ac = NULL;
    rd->state = NGX_HTTP_WHATSAPP_REDIS_DOWN;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    ngx_http_whatsapp_redis_schedule(rd);
}


/* exponential backoff with +-25% jitter, so workers do not reconnect in
 * lockstep after a Redis restart */
static void
ngx_http_whatsapp_redis_schedule(ngx_http_whatsapp_redis_t *rd)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (rd->backoff == 0) {
        rd->backoff = NGX_HTTP_WHATSAPP_REDIS_BACKOFF_MIN;

    } else {
        rd->backoff = ngx_min(rd->backoff * 2,
                              NGX_HTTP_WHATSAPP_REDIS_BACKOFF_MAX);
    }

    delay = rd->backoff * 3 / 4 + (ngx_msec_t) ngx_random() % (rd->backoff / 2);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "whatsapp: Redis %V retry in %M ms", &rd->name, delay);

    ngx_add_timer(&rd->timer, delay);
}


static void
ngx_http_whatsapp_redis_timer_handler(ngx_event_t *ev)
{
    ngx_http_whatsapp_redis_t  *rd = ev->data;

    if (rd->state == NGX_HTTP_WHATSAPP_REDIS_CONNECTING) {
        ngx_http_whatsapp_status_redis_error(
                                      NGX_HTTP_WHATSAPP_REDIS_ERR_CONNECT);
        ngx_http_whatsapp_redis_reset(rd, "did not answer the handshake in "
                                          "connect_timeout");
        return;
    }

    ngx_http_whatsapp_redis_connect(rd);
}


static void
ngx_http_whatsapp_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_whatsapp_redis_cmd_t  *cmd = privdata;

    void                                *data;
    ngx_http_whatsapp_redis_handler_pt   handler;

    handler = cmd->handler;
    data = cmd->data;

    /* released first: the handler may queue the next command */
    ngx_http_whatsapp_redis_release(cmd);

    if (data == NULL) {
        return;
    }

    if (reply == NULL) {
        handler(data, NULL, NGX_HTTP_WHATSAPP_REDIS_LOST);
        return;
    }

    if (((redisReply *) reply)->type == REDIS_REPLY_ERROR) {
        ngx_http_whatsapp_status_redis_error(
                                          NGX_HTTP_WHATSAPP_REDIS_ERR_REPLY);
    }

    handler(data, reply, NGX_HTTP_WHATSAPP_REDIS_REPLY);
}


/*
 * Redis answers in order, so a command past its deadline means Redis has
 * stalled (stopped, swapping, a slow disk under appendfsync): later
 * commands would wait as long.  The connection is dropped so callers get
 * fast 503s until a new handshake succeeds.
 */
static void
ngx_http_whatsapp_redis_deadline_handler(ngx_event_t *ev)
{
    ngx_http_whatsapp_redis_cmd_t  *cmd = ev->data;

    void                       *data;
    ngx_http_whatsapp_redis_t  *rd;

    rd = cmd->redis;
    data = cmd->data;
    cmd->data = NULL;

    ngx_http_whatsapp_status_redis_error(NGX_HTTP_WHATSAPP_REDIS_ERR_TIMEOUT);

    if (data) {
        cmd->handler(data, NULL, NGX_HTTP_WHATSAPP_REDIS_TIMEOUT);
    }

    if (rd->ac) {
        ngx_http_whatsapp_redis_reset(rd, "did not answer a command in time");
    }
}


static void
ngx_http_whatsapp_redis_release(ngx_http_whatsapp_redis_cmd_t *cmd)
{
    ngx_http_whatsapp_redis_t  *rd = cmd->redis;

    if (cmd->deadline.timer_set) {
        ngx_del_timer(&cmd->deadline);
    }

    cmd->data = NULL;
    cmd->next = rd->free;
    rd->free = cmd;
}
