/*
 * hiredis' five event hooks mapped onto an NGINX connection wrapping its
 * socket.
 *
 * The socket is registered level-triggered: hiredis reads at most 16 KB
 * per call, and with edge-triggered epoll the rest of a large reply would
 * wait for bytes that may never come.
 *
 * hiredis owns the socket and closes it; NGINX only borrows the fd, so
 * the cleanup hook frees the connection without closing anything.
 */

#include "ngx_http_whatsapp_module.h"


static void ngx_http_whatsapp_redis_add_read(void *privdata);
static void ngx_http_whatsapp_redis_del_read(void *privdata);
static void ngx_http_whatsapp_redis_add_write(void *privdata);
static void ngx_http_whatsapp_redis_del_write(void *privdata);
static void ngx_http_whatsapp_redis_cleanup(void *privdata);
static void ngx_http_whatsapp_redis_read_handler(ngx_event_t *ev);
static void ngx_http_whatsapp_redis_write_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_whatsapp_redis_attach(redisAsyncContext *ac, ngx_log_t *log)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->log = log;
    c->write->log = log;
    c->read->handler = ngx_http_whatsapp_redis_read_handler;
    c->write->handler = ngx_http_whatsapp_redis_write_handler;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_whatsapp_redis_add_read;
    ac->ev.delRead = ngx_http_whatsapp_redis_del_read;
    ac->ev.addWrite = ngx_http_whatsapp_redis_add_write;
    ac->ev.delWrite = ngx_http_whatsapp_redis_del_write;
    ac->ev.cleanup = ngx_http_whatsapp_redis_cleanup;

    return NGX_OK;
}


/*
 * Writes what is queued now.  Posted events run at the end of an event
 * loop iteration; queued from outside one (process start), they would wait
 * for the next event or timer.
 */
void
ngx_http_whatsapp_redis_flush(redisAsyncContext *ac)
{
    ngx_connection_t  *c = ac->ev.data;

    if (c && c->write->posted) {
        ngx_http_whatsapp_redis_write_handler(c->write);
    }
}


/* hiredis calls the hooks repeatedly: each must be idempotent */

static void
ngx_http_whatsapp_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->read->active
        && ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "whatsapp: cannot watch the Redis socket for reading");
    }
}


static void
ngx_http_whatsapp_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


/*
 * Commands queued by the requests of one event loop iteration are written
 * together at its end, in one write(): the write event is posted, not
 * registered.  Only when the socket cannot take everything is it watched
 * for writability (see the write handler).
 */
static void
ngx_http_whatsapp_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->write->active && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_http_whatsapp_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_http_whatsapp_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    redisAsyncContext  *ac = c->data;

    ngx_http_whatsapp_redis_del_read(c);
    ngx_http_whatsapp_redis_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ac->ev.data = NULL;

    /* hiredis closes the socket right after this hook */
    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);
}


static void
ngx_http_whatsapp_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    /* may free the context and this connection */
    redisAsyncHandleRead(c->data);
}


static void
ngx_http_whatsapp_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncContext  *ac;

    redisAsyncHandleWrite(c->data);

    /*
     * Freed on a write error: the cleanup hook marked the connection (its
     * memory stays, it is NGINX's connection array).
     */
    if (c->fd == (ngx_socket_t) -1) {
        return;
    }

    ac = c->data;

    /*
     * What is left (or a connect still in progress, which hiredis does not
     * ask to be told about again) waits for the socket, not for another
     * posted round.
     */
    if (c->write->posted || !(ac->c.flags & REDIS_CONNECTED)) {

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "whatsapp: cannot watch the Redis socket for "
                          "writing");
        }
    }
}
