/*
 * The HTTP/1.1 server: keep-alive, pipelining, Content-Length bodies.
 *
 * Requests are parsed in place in the connection's input buffer and
 * answered in order into its output buffer, which is written once per
 * turn, so pipelined requests cost one write.  An answer held back by a
 * "delay_ms" rule stops that connection's parsing until its timer fires
 * (answers must keep their order); other connections go on.
 */

#define _GNU_SOURCE                  /* memmem, accept4 */

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wa_sim.h"


#define WA_SIM_HEADER_MAX    (16 * 1024)
#define WA_SIM_BODY_MAX      (16 * 1024 * 1024)
#define WA_SIM_READ_MAX      (1024 * 1024)     /* per connection and turn */
#define WA_SIM_OUT_HIGH      (1024 * 1024)     /* unsent: stop parsing */
#define WA_SIM_IN_HIGH       (1024 * 1024)     /* unparsed: stop reading */
#define WA_SIM_KEEP_MAX      (4 * 1024 * 1024) /* larger buffers are freed */

#define WA_SIM_PARSE_AGAIN   0
#define WA_SIM_PARSE_OK      1


typedef struct wa_sim_conn_s  wa_sim_conn_t;

struct wa_sim_conn_s {
    wa_sim_event_t   ev;
    wa_sim_conn_t   *prev;
    wa_sim_conn_t   *next;
    wa_sim_buf_t     in;
    size_t           in_pos;        /* parsed up to here */
    wa_sim_buf_t     out;
    size_t           out_pos;       /* written up to here */
    wa_sim_buf_t     held;          /* a delayed answer */
    wa_sim_timer_t   delay;
    unsigned         held_close:1;  /* close once the held answer is out */
    unsigned         waiting:1;     /* an answer is held: parse no further */
    unsigned         eof:1;         /* the client will send nothing more */
    unsigned         closing:1;     /* write what is queued, then close */
};


static int wa_sim_listen(const char *addr);
static void wa_sim_accept_handler(wa_sim_event_t *ev, uint32_t events);
static void wa_sim_conn_handler(wa_sim_event_t *ev, uint32_t events);
static void wa_sim_conn_delay_handler(wa_sim_timer_t *t);
static int wa_sim_conn_read(wa_sim_conn_t *c);
static void wa_sim_conn_process(wa_sim_conn_t *c);
static void wa_sim_conn_refuse(wa_sim_conn_t *c, int status);
static void wa_sim_conn_answer(wa_sim_conn_t *c, wa_sim_request_t *r,
    wa_sim_reply_t *reply);
static void wa_sim_conn_flush(wa_sim_conn_t *c);
static void wa_sim_conn_close(wa_sim_conn_t *c);
static int wa_sim_parse(char *p, size_t len, wa_sim_request_t *r,
    size_t *size);
static int wa_sim_parse_header(wa_sim_request_t *r, char *name, size_t nlen,
    char *value, size_t vlen, int64_t *clen);
static int wa_sim_has_token(const char *v, size_t n, const char *token);
static const char *wa_sim_status_text(int status);


static wa_sim_event_t   wa_sim_listener = { -1, 0, NULL, NULL };
static wa_sim_conn_t   *wa_sim_conns;
static wa_sim_buf_t     wa_sim_body;


int
wa_sim_http_init(const char *listen)
{
    int  fd;

    fd = wa_sim_listen(listen);
    if (fd == -1) {
        return -1;
    }

    wa_sim_listener.fd = fd;
    wa_sim_listener.handler = wa_sim_accept_handler;

    if (wa_sim_event_add(&wa_sim_listener, EPOLLIN) == -1) {
        wa_sim_log("epoll_ctl: %s", strerror(errno));
        return -1;
    }

    return 0;
}


void
wa_sim_http_done(void)
{
    wa_sim_event_close(&wa_sim_listener);

    while (wa_sim_conns) {
        wa_sim_conn_close(wa_sim_conns);
    }

    wa_sim_buf_free(&wa_sim_body);
}


wa_sim_buf_t *
wa_sim_http_body(void)
{
    wa_sim_body.len = 0;
    return &wa_sim_body;
}


/* "host:port" (the last colon splits, so "[::1]:80" and "::1:80" work) */
static int
wa_sim_listen(const char *addr)
{
    int               fd, rc, one;
    char             *host, *port;
    struct addrinfo   hints, *res;

    host = wa_sim_strndup(addr, strlen(addr));
    port = strrchr(host, ':');

    if (port == NULL || port == host || port[1] == '\0') {
        wa_sim_log("--listen %s: expected host:port", addr);
        free(host);
        return -1;
    }

    *port++ = '\0';

    if (host[0] == '[' && port[-2] == ']') {
        port[-2] = '\0';
        memmove(host, host + 1, strlen(host));
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;

    rc = getaddrinfo(host, port, &hints, &res);
    free(host);

    if (rc != 0) {
        wa_sim_log("--listen %s: %s", addr, gai_strerror(rc));
        return -1;
    }

    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    one = 1;

    if (fd == -1
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1
        || bind(fd, res->ai_addr, res->ai_addrlen) == -1
        || listen(fd, 4096) == -1)
    {
        wa_sim_log("--listen %s: %s", addr, strerror(errno));
        freeaddrinfo(res);

        if (fd != -1) {
            close(fd);
        }

        return -1;
    }

    freeaddrinfo(res);

    return fd;
}


static void
wa_sim_accept_handler(wa_sim_event_t *ev, uint32_t events)
{
    int             fd, one;
    wa_sim_conn_t  *c;
    static int      logged;

    (void) events;

    for ( ;; ) {
        fd = accept4(ev->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }

            if (errno != EAGAIN && !logged) {
                wa_sim_log("accept: %s", strerror(errno));
                logged = 1;
            }

            return;
        }

        /* each answer is written whole: no reason to wait for an ACK */
        one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        c = wa_sim_calloc(1, sizeof(wa_sim_conn_t));
        c->ev.fd = fd;
        c->ev.handler = wa_sim_conn_handler;
        c->ev.data = c;
        c->delay.handler = wa_sim_conn_delay_handler;
        c->delay.data = c;

        c->next = wa_sim_conns;
        if (wa_sim_conns) {
            wa_sim_conns->prev = c;
        }
        wa_sim_conns = c;

        if (wa_sim_event_add(&c->ev, EPOLLIN) == -1) {
            wa_sim_conn_close(c);
        }
    }
}


static void
wa_sim_conn_handler(wa_sim_event_t *ev, uint32_t events)
{
    wa_sim_conn_t  *c;

    c = ev->data;

    /* reset, or both directions shut: nobody to answer */
    if (events & (EPOLLERR | EPOLLHUP)) {
        wa_sim_conn_close(c);
        return;
    }

    if ((events & EPOLLIN) && wa_sim_conn_read(c) == -1) {
        wa_sim_conn_close(c);
        return;
    }

    wa_sim_conn_process(c);
    wa_sim_conn_flush(c);
}


static void
wa_sim_conn_delay_handler(wa_sim_timer_t *t)
{
    wa_sim_conn_t  *c;

    c = t->data;

    wa_sim_buf_add(&c->out, c->held.data, c->held.len);
    c->held.len = 0;
    c->waiting = 0;

    if (c->held_close) {
        c->closing = 1;
    }

    wa_sim_conn_process(c);
    wa_sim_conn_flush(c);
}


/* -1: the connection failed */
static int
wa_sim_conn_read(wa_sim_conn_t *c)
{
    size_t   room, total;
    ssize_t  n;

    if (c->in_pos && c->in_pos >= c->in.len / 2) {
        memmove(c->in.data, c->in.data + c->in_pos, c->in.len - c->in_pos);
        c->in.len -= c->in_pos;
        c->in_pos = 0;
    }

    for (total = 0; total < WA_SIM_READ_MAX; total += n) {

        /* one byte always spare: a body is NUL-terminated in place */
        wa_sim_buf_reserve(&c->in, 16 * 1024 + 1);
        room = c->in.cap - c->in.len - 1;

        n = read(c->ev.fd, c->in.data + c->in.len, room);

        if (n > 0) {
            c->in.len += n;

            /* a short read drained the socket: spare the EAGAIN call */
            if ((size_t) n < room) {
                break;
            }

            continue;
        }

        if (n == 0) {
            c->eof = 1;
            break;
        }

        if (errno == EINTR) {
            n = 0;
            continue;
        }

        return errno == EAGAIN ? 0 : -1;
    }

    return 0;
}


static void
wa_sim_conn_process(wa_sim_conn_t *c)
{
    int               rc, one;
    char              saved;
    size_t            size;
    wa_sim_reply_t    reply;
    wa_sim_request_t  r;

    while (!c->waiting && !c->closing
           && c->out.len - c->out_pos < WA_SIM_OUT_HIGH)
    {
        rc = wa_sim_parse(c->in.data + c->in_pos, c->in.len - c->in_pos, &r,
                          &size);

        if (rc == WA_SIM_PARSE_AGAIN) {
            if (c->eof) {
                c->closing = 1;

            } else if (c->in_pos < c->in.len) {
                /* a client writing headers and body apart, with Nagle,
                 * waits for our ACK of the first: do not delay it 40 ms */
                one = 1;
                setsockopt(c->ev.fd, IPPROTO_TCP, TCP_QUICKACK, &one,
                           sizeof(one));
            }

            break;
        }

        if (rc != WA_SIM_PARSE_OK) {
            wa_sim_conn_refuse(c, rc);
            break;
        }

        /* yajl wants a C string; the byte after the body may be the next
         * request's (or the spare one) and is put back */
        saved = r.body[r.body_len];
        r.body[r.body_len] = '\0';

        memset(&reply, 0, sizeof(reply));
        reply.content_type = "application/json; charset=UTF-8";
        reply.body = wa_sim_http_body();

        if (r.path_len >= 6 && memcmp(r.path, "/_sim/", 6) == 0) {
            wa_sim_control_handle(&r, &reply);

        } else {
            wa_sim_graph_handle(&r, &reply);
        }

        r.body[r.body_len] = saved;
        c->in_pos += size;

        wa_sim_conn_answer(c, &r, &reply);

        if (wa_sim_body.cap > WA_SIM_KEEP_MAX) {
            wa_sim_buf_free(&wa_sim_body);
        }
    }

    if (c->in_pos == c->in.len) {
        c->in_pos = 0;
        c->in.len = 0;
    }
}


/* A request that cannot be framed: answer and close. */
static void
wa_sim_conn_refuse(wa_sim_conn_t *c, int status)
{
    wa_sim_reply_t    reply;
    wa_sim_request_t  r;

    memset(&r, 0, sizeof(r));
    memset(&reply, 0, sizeof(reply));

    reply.status = status;
    reply.content_type = "text/plain";
    reply.body = wa_sim_http_body();
    wa_sim_buf_printf(reply.body, "%d %s\n", status,
                      wa_sim_status_text(status));

    wa_sim_conn_answer(c, &r, &reply);
    c->closing = 1;
}


static void
wa_sim_conn_answer(wa_sim_conn_t *c, wa_sim_request_t *r,
    wa_sim_reply_t *reply)
{
    wa_sim_buf_t  *o;

    if (reply->status == 0) {
        c->closing = 1;
        return;
    }

    o = reply->delay_ms ? &c->held : &c->out;

    wa_sim_buf_lit(o, "HTTP/1.1 ");
    wa_sim_buf_u64(o, reply->status);
    wa_sim_buf_lit(o, " ");
    wa_sim_buf_str(o, wa_sim_status_text(reply->status));
    wa_sim_buf_lit(o, "\r\nContent-Type: ");
    wa_sim_buf_str(o, reply->content_type);
    wa_sim_buf_lit(o, "\r\nContent-Length: ");
    wa_sim_buf_u64(o, reply->body->len);
    wa_sim_buf_lit(o, "\r\n");

    if (reply->headers) {
        wa_sim_buf_str(o, reply->headers);
    }

    if (!r->keep_alive) {
        wa_sim_buf_lit(o, "Connection: close\r\n");

    } else if (r->http10) {
        wa_sim_buf_lit(o, "Connection: keep-alive\r\n");
    }

    wa_sim_buf_lit(o, "\r\n");
    wa_sim_buf_add(o, reply->body->data, reply->body->len);

    if (reply->delay_ms) {
        c->waiting = 1;
        c->held_close = !r->keep_alive;
        wa_sim_timer_add(&c->delay, reply->delay_ms);

    } else if (!r->keep_alive) {
        c->closing = 1;
    }
}


static void
wa_sim_conn_flush(wa_sim_conn_t *c)
{
    ssize_t   n;
    uint32_t  mask;

    while (c->out_pos < c->out.len) {
        n = send(c->ev.fd, c->out.data + c->out_pos, c->out.len - c->out_pos,
                 MSG_NOSIGNAL);

        if (n >= 0) {
            c->out_pos += n;
            continue;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN) {
            break;
        }

        wa_sim_conn_close(c);
        return;
    }

    if (c->out_pos == c->out.len) {
        c->out_pos = 0;
        c->out.len = 0;

        if (c->out.cap > WA_SIM_KEEP_MAX) {
            wa_sim_buf_free(&c->out);
        }

        if (c->closing && !c->waiting) {
            wa_sim_conn_close(c);
            return;
        }
    }

    mask = 0;

    if (!c->eof && !c->closing
        && c->out.len - c->out_pos < WA_SIM_OUT_HIGH
        && !(c->waiting && c->in.len - c->in_pos > WA_SIM_IN_HIGH))
    {
        mask |= EPOLLIN;
    }

    if (c->out_pos < c->out.len) {
        mask |= EPOLLOUT;
    }

    if (wa_sim_event_mod(&c->ev, mask) == -1) {
        wa_sim_conn_close(c);
    }
}


static void
wa_sim_conn_close(wa_sim_conn_t *c)
{
    wa_sim_timer_del(&c->delay);
    wa_sim_event_close(&c->ev);

    if (c->prev) {
        c->prev->next = c->next;

    } else {
        wa_sim_conns = c->next;
    }

    if (c->next) {
        c->next->prev = c->prev;
    }

    wa_sim_buf_free(&c->in);
    wa_sim_buf_free(&c->out);
    wa_sim_buf_free(&c->held);
    wa_sim_defer_free(c);
}


/*
 * One request from p[0, len): WA_SIM_PARSE_OK with *r and its *size in
 * bytes, WA_SIM_PARSE_AGAIN when more bytes are needed, or the HTTP status
 * to refuse it with.
 */
static int
wa_sim_parse(char *p, size_t len, wa_sim_request_t *r, size_t *size)
{
    int      rc, has_clen;
    char    *end, *eol, *sp, *target, *line, *colon, *q;
    size_t   head, tlen;
    int64_t  clen;

    end = len >= 4 ? memmem(p, len, "\r\n\r\n", 4) : NULL;

    if (end == NULL) {
        return len > WA_SIM_HEADER_MAX ? 431 : WA_SIM_PARSE_AGAIN;
    }

    head = end - p + 4;
    if (head > WA_SIM_HEADER_MAX) {
        return 431;
    }

    memset(r, 0, sizeof(*r));

    /* request line: METHOD SP target SP HTTP/1.x */
    eol = memmem(p, head, "\r\n", 2);
    sp = memchr(p, ' ', eol - p);

    if (sp == NULL || sp == p) {
        return 400;
    }

    r->method = p;
    r->method_len = sp - p;
    target = sp + 1;

    sp = memchr(target, ' ', eol - target);
    if (sp == NULL || sp == target || target[0] != '/') {
        return 400;
    }

    tlen = sp - target;

    if (eol - (sp + 1) != 8 || memcmp(sp + 1, "HTTP/1.", 7) != 0) {
        return 400;
    }

    if (sp[8] != '0' && sp[8] != '1') {
        return 505;
    }

    r->http10 = sp[8] == '0';
    r->keep_alive = !r->http10;

    r->path = target;
    r->path_len = tlen;
    q = memchr(target, '?', tlen);

    if (q) {
        r->path_len = q - target;
        r->query = q + 1;
        r->query_len = tlen - r->path_len - 1;
    }

    /* header lines, up to the empty one at end */
    clen = -1;

    for (line = eol + 2; line < end; line = eol + 2) {
        eol = memmem(line, end + 2 - line, "\r\n", 2);
        colon = memchr(line, ':', eol - line);

        if (colon == NULL || colon == line) {
            return 400;
        }

        rc = wa_sim_parse_header(r, line, colon - line, colon + 1,
                                 eol - colon - 1, &clen);
        if (rc != WA_SIM_PARSE_OK) {
            return rc;
        }
    }

    has_clen = clen >= 0;

    if (!has_clen) {
        /* a body we could not find the end of */
        if ((r->method_len == 4 && memcmp(r->method, "POST", 4) == 0)
            || (r->method_len == 3 && memcmp(r->method, "PUT", 3) == 0)
            || (r->method_len == 5 && memcmp(r->method, "PATCH", 5) == 0))
        {
            return 411;
        }

        clen = 0;
    }

    if (clen > WA_SIM_BODY_MAX) {
        return 413;
    }

    if (len - head < (size_t) clen) {
        return WA_SIM_PARSE_AGAIN;
    }

    r->body = p + head;
    r->body_len = clen;
    *size = head + clen;

    return WA_SIM_PARSE_OK;
}


static int
wa_sim_parse_header(wa_sim_request_t *r, char *name, size_t nlen,
    char *value, size_t vlen, int64_t *clen)
{
    size_t   i;
    int64_t  n;

    while (vlen && (*value == ' ' || *value == '\t')) {
        value++;
        vlen--;
    }

    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) {
        vlen--;
    }

#define WA_SIM_IS(s)  (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)

    if (WA_SIM_IS("Content-Length")) {
        if (vlen == 0 || vlen > 12) {
            return vlen ? 413 : 400;
        }

        n = 0;

        for (i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9') {
                return 400;
            }

            n = n * 10 + (value[i] - '0');
        }

        /* two different lengths: request smuggling, or a broken client */
        if (*clen >= 0 && *clen != n) {
            return 400;
        }

        *clen = n;

    } else if (WA_SIM_IS("Transfer-Encoding")) {
        return 411;

    } else if (WA_SIM_IS("Authorization")) {
        r->authorization = value;
        r->authorization_len = vlen;

    } else if (WA_SIM_IS("Content-Type")) {
        r->content_type = value;
        r->content_type_len = vlen;

    } else if (WA_SIM_IS("Connection")) {
        if (wa_sim_has_token(value, vlen, "close")) {
            r->keep_alive = 0;

        } else if (wa_sim_has_token(value, vlen, "keep-alive")) {
            r->keep_alive = 1;
        }
    }

#undef WA_SIM_IS

    return WA_SIM_PARSE_OK;
}


/* Whether a comma-separated header value lists the token. */
static int
wa_sim_has_token(const char *v, size_t n, const char *token)
{
    size_t  tlen, i, start, end;

    tlen = strlen(token);

    for (start = 0; start < n; start = i + 1) {
        for (i = start; i < n && v[i] != ','; i++) { /* void */ }

        end = i;

        while (start < end && (v[start] == ' ' || v[start] == '\t')) {
            start++;
        }

        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
            end--;
        }

        if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0) {
            return 1;
        }
    }

    return 0;
}


static const char *
wa_sim_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}
