/*
 * The metrics endpoint; see wa_metrics.h.
 *
 * One thread serves one connection at a time: an answer is a few
 * kilobytes rendered from memory, so clients served in turn wait
 * nothing, and a client that sends nothing is dropped after
 * WA_METRICS_READ_MS rather than holding the next one.  The thread never
 * touches Redis, PostgreSQL or the loops' state: only the counters and
 * the paused set.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "wa_log.h"
#include "wa_metrics.h"


#define WA_METRICS_POLL_MS    200     /* how soon the thread sees a stop */
#define WA_METRICS_READ_MS    1000    /* a request's whole head */
#define WA_METRICS_SEND_MS    1000    /* the answer to a client not reading */
#define WA_METRICS_DRAIN_MS   200     /* after the answer, till its close */
#define WA_METRICS_HEAD_MAX   4096
#define WA_METRICS_ID_MAX     64


typedef struct {
    char   id[WA_METRICS_ID_MAX];
    int    code;
} wa_metrics_pause_t;


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;
} wa_metrics_buf_t;


/*
 * The counters, in the order served.  A NULL help continues the family
 * above (another label value): HELP and TYPE once per family.
 */
static const struct {
    const char   *help;
    const char   *series;
    wa_metric_e   metric;
} wa_metrics_counters[] = {

    { "Entries read from wa:events: new, re-read after a failure, or "
      "claimed from a dead consumer.",
      "whatsapp_worker_entries_read_total", WA_M_ENTRIES_READ },

    { "Entries of wa:events done with, by result: ok, invalid, unknown "
      "(as the webhook log records them, once committed), dead (added to "
      "wa:dead).",
      "whatsapp_worker_entries_total{result=\"ok\"}", WA_M_ENTRIES_OK },
    { NULL, "whatsapp_worker_entries_total{result=\"invalid\"}",
      WA_M_ENTRIES_INVALID },
    { NULL, "whatsapp_worker_entries_total{result=\"unknown\"}",
      WA_M_ENTRIES_UNKNOWN },
    { NULL, "whatsapp_worker_entries_total{result=\"dead\"}",
      WA_M_ENTRIES_DEAD },

    { "Batches of entries applied and acknowledged.",
      "whatsapp_worker_batches_total", WA_M_BATCHES },

    { "Applies PostgreSQL did not commit, by reason: retry (away, a lost "
      "connection, a deadlock: applied again), refused (applied entry by "
      "entry).",
      "whatsapp_worker_apply_failures_total{reason=\"retry\"}",
      WA_M_APPLY_RETRY },
    { NULL, "whatsapp_worker_apply_failures_total{reason=\"refused\"}",
      WA_M_APPLY_REFUSED },

    { "Realtime events published to wa:updates.",
      "whatsapp_worker_updates_published_total", WA_M_UPDATES_PUBLISHED },

    { "Messages sent to the Graph API, by outcome: accepted, failed, "
      "unknown (no answer after the request left), retried (queued again "
      "after a retryable answer), paused (queued again: the number's "
      "token was refused).",
      "whatsapp_worker_sends_total{outcome=\"accepted\"}",
      WA_M_SENDS_ACCEPTED },
    { NULL, "whatsapp_worker_sends_total{outcome=\"failed\"}",
      WA_M_SENDS_FAILED },
    { NULL, "whatsapp_worker_sends_total{outcome=\"unknown\"}",
      WA_M_SENDS_UNKNOWN },
    { NULL, "whatsapp_worker_sends_total{outcome=\"retried\"}",
      WA_M_SENDS_RETRIED },
    { NULL, "whatsapp_worker_sends_total{outcome=\"paused\"}",
      WA_M_SENDS_PAUSED },

    { "Read receipts sent to the Graph API, by result: sent, failed, "
      "retried.",
      "whatsapp_worker_receipts_total{result=\"sent\"}",
      WA_M_RECEIPTS_SENT },
    { NULL, "whatsapp_worker_receipts_total{result=\"failed\"}",
      WA_M_RECEIPTS_FAILED },
    { NULL, "whatsapp_worker_receipts_total{result=\"retried\"}",
      WA_M_RECEIPTS_RETRIED },

    { "Numbers paused because Meta refused their access token (190, 0).",
      "whatsapp_worker_token_errors_total", WA_M_TOKEN_ERRORS },
};

#define WA_METRICS_NCOUNTERS                                               \
    (sizeof(wa_metrics_counters) / sizeof(wa_metrics_counters[0]))


_Atomic unsigned long long  wa_metrics[WA_M_N];

static int                  wa_metrics_fd = -1;
static int                  wa_metrics_running;
static atomic_int           wa_metrics_quit;
static pthread_t            wa_metrics_thread;
static char                 wa_metrics_addr[64];
static char                 wa_metrics_version[32];
static struct timespec      wa_metrics_started;

/* the numbers this process paused; the count read without the lock */
static pthread_mutex_t      wa_metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static wa_metrics_pause_t  *wa_metrics_pauses;
static int                  wa_metrics_cap;
static atomic_int           wa_metrics_npauses;


static void *wa_metrics_main(void *data);
static void wa_metrics_serve(int c);
static int wa_metrics_route(char *head, int *head_only);
static void wa_metrics_answer(int c, int status, int head_only);
static void wa_metrics_render(wa_metrics_buf_t *b);
static void wa_metrics_printf(wa_metrics_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void wa_metrics_escape(char *dst, size_t size, const char *src);
static void wa_metrics_send(int c, const char *p, size_t len);
static long long wa_metrics_now(void);


int
wa_metrics_address(const char *addr, struct sockaddr_storage *sa,
    socklen_t *salen)
{
    char                      host[64];
    long                      port;
    size_t                    len;
    const char               *colon, *digits, *start;
    struct sockaddr_in       *sin;
    struct sockaddr_in6      *sin6;
    struct sockaddr_storage   ignored;

    if (sa == NULL) {
        sa = &ignored;
    }

    memset(sa, 0, sizeof(*sa));

    if (addr[0] == '\0') {
        return 0;
    }

    colon = strrchr(addr, ':');
    if (colon == NULL) {
        return -1;
    }

    digits = colon + 1;
    len = strlen(digits);

    if (len == 0 || len > 5 || strspn(digits, "0123456789") != len) {
        return -1;
    }

    port = strtol(digits, NULL, 10);
    if (port < 1 || port > 65535) {
        return -1;
    }

    start = addr;
    len = colon - addr;

    /* [IPv6]: the brackets keep its colons apart from the port's */
    if (addr[0] == '[') {
        if (len < 3 || addr[len - 1] != ']') {
            return -1;
        }

        start++;
        len -= 2;
    }

    if (len == 0 || len >= sizeof(host)) {
        return -1;
    }

    memcpy(host, start, len);
    host[len] = '\0';

    if (addr[0] == '[') {
        sin6 = (struct sockaddr_in6 *) sa;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return -1;
        }

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short) port);

        if (salen) {
            *salen = sizeof(struct sockaddr_in6);
        }

        return 0;
    }

    sin = (struct sockaddr_in *) sa;

    /* inet_pton takes dotted quads only: no names, no IPv6 unbracketed */
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        return -1;
    }

    sin->sin_family = AF_INET;
    sin->sin_port = htons((unsigned short) port);

    if (salen) {
        *salen = sizeof(struct sockaddr_in);
    }

    return 0;
}


int
wa_metrics_start(const char *addr, const char *version)
{
    int                       fd, one, rc;
    sigset_t                  all, saved;
    socklen_t                 salen;
    struct sockaddr_storage   sa;

    clock_gettime(CLOCK_REALTIME, &wa_metrics_started);
    snprintf(wa_metrics_version, sizeof(wa_metrics_version), "%s", version);

    if (wa_metrics_address(addr, &sa, &salen) != 0) {
        /* wa_config_load refused it already */
        wa_log_error("worker.metrics_listen \"%s\" is not HOST:PORT", addr);
        return -1;
    }

    if (sa.ss_family == 0) {
        return 0;
    }

    /* non-blocking: a client gone between poll and accept blocks nothing */
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        wa_log_error("worker.metrics_listen %s: socket: %s", addr,
                     strerror(errno));
        return -1;
    }

    /* a restart while old connections linger; Linux still refuses a
     * port another socket listens on */
    one = 1;
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    if (bind(fd, (struct sockaddr *) &sa, salen) != 0
        || listen(fd, 64) != 0)
    {
        wa_log_error("worker.metrics_listen: cannot listen on %s: %s", addr,
                     strerror(errno));
        close(fd);
        return -1;
    }

    wa_metrics_fd = fd;
    atomic_store(&wa_metrics_quit, 0);

    /* signals are the main thread's: its blocking reads must see them */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    rc = pthread_create(&wa_metrics_thread, NULL, wa_metrics_main, NULL);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);

    if (rc != 0) {
        wa_log_error("metrics: cannot start its thread: %s", strerror(rc));
        close(fd);
        wa_metrics_fd = -1;
        return -1;
    }

    wa_metrics_running = 1;
    snprintf(wa_metrics_addr, sizeof(wa_metrics_addr), "%s", addr);
    wa_log_info("metrics on http://%s/metrics", addr);

    return 0;
}


void
wa_metrics_stop(void)
{
    if (wa_metrics_running) {
        atomic_store(&wa_metrics_quit, 1);
        pthread_join(wa_metrics_thread, NULL);
        wa_metrics_running = 0;
    }

    if (wa_metrics_fd != -1) {
        close(wa_metrics_fd);
        wa_metrics_fd = -1;
    }

    wa_metrics_addr[0] = '\0';

    pthread_mutex_lock(&wa_metrics_lock);
    free(wa_metrics_pauses);
    wa_metrics_pauses = NULL;
    wa_metrics_cap = 0;
    atomic_store(&wa_metrics_npauses, 0);
    pthread_mutex_unlock(&wa_metrics_lock);
}


const char *
wa_metrics_listening(void)
{
    return wa_metrics_addr;
}


void
wa_metrics_paused(const char *phone_number_id, int code)
{
    int                  i, n, cap;
    wa_metrics_pause_t  *p;

    pthread_mutex_lock(&wa_metrics_lock);

    n = atomic_load(&wa_metrics_npauses);

    for (i = 0; i < n; i++) {
        if (strcmp(wa_metrics_pauses[i].id, phone_number_id) == 0) {
            wa_metrics_pauses[i].code = code;
            goto done;
        }
    }

    if (n == wa_metrics_cap) {
        cap = wa_metrics_cap ? 2 * wa_metrics_cap : 8;
        p = realloc(wa_metrics_pauses, cap * sizeof(wa_metrics_pause_t));

        if (p == NULL) {
            /* the pause itself is in the log and in PostgreSQL */
            goto done;
        }

        wa_metrics_pauses = p;
        wa_metrics_cap = cap;
    }

    p = &wa_metrics_pauses[n];
    snprintf(p->id, sizeof(p->id), "%s", phone_number_id);
    p->code = code;
    atomic_store(&wa_metrics_npauses, n + 1);

done:

    pthread_mutex_unlock(&wa_metrics_lock);
}


void
wa_metrics_resumed(const char *phone_number_id)
{
    int  i, n;

    /* the sender asks for every number at every sweep: no lock if none */
    if (atomic_load_explicit(&wa_metrics_npauses, memory_order_relaxed)
        == 0)
    {
        return;
    }

    pthread_mutex_lock(&wa_metrics_lock);

    n = atomic_load(&wa_metrics_npauses);

    for (i = 0; i < n; i++) {
        if (strcmp(wa_metrics_pauses[i].id, phone_number_id) == 0) {
            wa_metrics_pauses[i] = wa_metrics_pauses[n - 1];
            atomic_store(&wa_metrics_npauses, n - 1);
            break;
        }
    }

    pthread_mutex_unlock(&wa_metrics_lock);
}


static void *
wa_metrics_main(void *data)
{
    int            c;
    struct pollfd  pfd;

    (void) data;

    while (!atomic_load(&wa_metrics_quit)) {
        pfd.fd = wa_metrics_fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (poll(&pfd, 1, WA_METRICS_POLL_MS) <= 0) {
            continue;
        }

        c = accept(wa_metrics_fd, NULL, NULL);

        if (c == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
                || errno == ENOMEM)
            {
                /* the connection waits in the backlog; poll would say
                 * so again at once: wait instead of spinning */
                wa_log_warn("metrics: accept: %s", strerror(errno));
                (void) poll(NULL, 0, WA_METRICS_POLL_MS);
            }

            continue;
        }

        wa_metrics_serve(c);
        close(c);
    }

    return NULL;
}


/* One request: its head within WA_METRICS_READ_MS, one answer. */
static void
wa_metrics_serve(int c)
{
    int              rc, status, head_only;
    char             head[WA_METRICS_HEAD_MAX + 1];
    size_t           len;
    ssize_t          n;
    long long        deadline, left;
    struct pollfd    pfd;
    struct timeval   tv;

    tv.tv_sec = WA_METRICS_SEND_MS / 1000;
    tv.tv_usec = (WA_METRICS_SEND_MS % 1000) * 1000;
    (void) setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    len = 0;
    head[0] = '\0';
    status = 0;
    deadline = wa_metrics_now() + WA_METRICS_READ_MS;

    for ( ;; ) {
        left = deadline - wa_metrics_now();

        if (left <= 0) {
            status = 408;
            break;
        }

        pfd.fd = c;
        pfd.events = POLLIN;
        pfd.revents = 0;

        rc = poll(&pfd, 1, (int) left);

        if (rc < 0 && errno == EINTR) {
            continue;
        }

        if (rc <= 0) {
            status = 408;
            break;
        }

        n = recv(c, head + len, WA_METRICS_HEAD_MAX - len, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            break;          /* the client closed: what came is the request */
        }

        len += n;
        head[len] = '\0';

        if (strstr(head, "\r\n\r\n") || strstr(head, "\n\n")) {
            break;
        }

        if (len == WA_METRICS_HEAD_MAX) {
            status = 431;
            break;
        }
    }

    /* said nothing (a port check, a client that hangs): nothing to say */
    if (len == 0) {
        return;
    }

    head_only = 0;

    if (status == 0) {
        status = wa_metrics_route(head, &head_only);
    }

    wa_metrics_answer(c, status, head_only);
}


/*
 * The request line, "METHOD SP /target SP HTTP/1.x": 200, 400, 404 or
 * 405; head_only set for a valid HEAD (no body, whatever the status).
 */
static int
wa_metrics_route(char *head, int *head_only)
{
    char    *eol, *method, *target, *version, *p;
    size_t   len;

    eol = strchr(head, '\n');
    if (eol == NULL) {
        return 400;
    }

    if (eol > head && eol[-1] == '\r') {
        eol--;
    }

    *eol = '\0';

    method = head;
    target = strchr(method, ' ');
    if (target == NULL) {
        return 400;
    }

    *target++ = '\0';

    version = strchr(target, ' ');
    if (version == NULL) {
        return 400;
    }

    *version++ = '\0';

    len = strlen(method);

    if (len == 0 || len > 16
        || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != len)
    {
        return 400;
    }

    if (target[0] != '/') {
        return 400;
    }

    for (p = target; *p; p++) {
        if ((unsigned char) *p <= 0x20 || *p == 0x7f) {
            return 400;
        }
    }

    if (strcmp(version, "HTTP/1.0") != 0
        && strcmp(version, "HTTP/1.1") != 0)
    {
        return 400;
    }

    *head_only = (strcmp(method, "HEAD") == 0);

    /* a query string changes nothing */
    len = strcspn(target, "?");

    if (len != sizeof("/metrics") - 1
        || memcmp(target, "/metrics", len) != 0)
    {
        return 404;
    }

    return (*head_only || strcmp(method, "GET") == 0) ? 200 : 405;
}


static void
wa_metrics_answer(int c, int status, int head_only)
{
    int                n;
    char               hdr[512], drain[512];
    long long          deadline, left;
    const char        *reason, *text;
    struct pollfd      pfd;
    wa_metrics_buf_t   body;

    memset(&body, 0, sizeof(body));
    text = NULL;

    if (status == 200) {
        body.cap = 8192;
        body.data = malloc(body.cap);
        body.failed = (body.data == NULL);

        wa_metrics_render(&body);

        if (body.failed) {
            status = 500;
        }
    }

    switch (status) {

    case 200:
        reason = "OK";
        break;

    case 400:
        reason = "Bad Request";
        text = "bad request\n";
        break;

    case 404:
        reason = "Not Found";
        text = "not found: GET /metrics\n";
        break;

    case 405:
        reason = "Method Not Allowed";
        text = "GET or HEAD\n";
        break;

    case 408:
        reason = "Request Timeout";
        text = "request timeout\n";
        break;

    case 431:
        reason = "Request Header Fields Too Large";
        text = "request too large\n";
        break;

    default:
        status = 500;
        reason = "Internal Server Error";
        text = "out of memory\n";
    }

    if (text) {
        body.len = strlen(text);
    }

    n = snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "%s"
                 "Connection: close\r\n"
                 "\r\n",
                 status, reason,
                 status == 200 ? "text/plain; version=0.0.4; charset=utf-8"
                               : "text/plain; charset=utf-8",
                 body.len, status == 405 ? "Allow: GET, HEAD\r\n" : "");

    wa_metrics_send(c, hdr, (size_t) n);

    if (!head_only) {
        wa_metrics_send(c, text ? text : body.data, body.len);
    }

    free(body.data);

    /*
     * Closed with bytes unread (a request body), the socket would reset
     * the connection, and the client could lose the answer: half-close,
     * then read until the client closes, briefly.
     */
    (void) shutdown(c, SHUT_WR);
    deadline = wa_metrics_now() + WA_METRICS_DRAIN_MS;

    while ((left = deadline - wa_metrics_now()) > 0) {
        pfd.fd = c;
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (poll(&pfd, 1, (int) left) <= 0
            || recv(c, drain, sizeof(drain), 0) <= 0)
        {
            break;
        }
    }
}


static void
wa_metrics_render(wa_metrics_buf_t *b)
{
    int                  i, n;
    char                 label[2 * WA_METRICS_ID_MAX + 1];
    const char          *series, *brace;
    wa_metrics_pause_t  *p;

    wa_metrics_escape(label, sizeof(label), wa_metrics_version);

    wa_metrics_printf(b,
        "# HELP whatsapp_worker_info The worker's version.\n"
        "# TYPE whatsapp_worker_info gauge\n"
        "whatsapp_worker_info{version=\"%s\"} 1\n"
        "# HELP whatsapp_worker_up 1 while the worker runs.\n"
        "# TYPE whatsapp_worker_up gauge\n"
        "whatsapp_worker_up 1\n"
        "# HELP whatsapp_worker_start_time_seconds "
        "When the worker started, in seconds since the epoch.\n"
        "# TYPE whatsapp_worker_start_time_seconds gauge\n"
        "whatsapp_worker_start_time_seconds %lld.%03ld\n",
        label, (long long) wa_metrics_started.tv_sec,
        wa_metrics_started.tv_nsec / 1000000);

    for (i = 0; i < (int) WA_METRICS_NCOUNTERS; i++) {
        series = wa_metrics_counters[i].series;

        if (wa_metrics_counters[i].help) {
            brace = strchr(series, '{');
            n = brace ? (int) (brace - series) : (int) strlen(series);

            wa_metrics_printf(b, "# HELP %.*s %s\n# TYPE %.*s counter\n",
                              n, series, wa_metrics_counters[i].help,
                              n, series);
        }

        wa_metrics_printf(b, "%s %llu\n", series,
                          atomic_load_explicit(
                              &wa_metrics[wa_metrics_counters[i].metric],
                              memory_order_relaxed));
    }

    wa_metrics_printf(b,
        "# HELP whatsapp_worker_send_paused Numbers whose sends this "
        "process paused because Meta refused their access token (code: "
        "Meta's), until a new token is stored.\n"
        "# TYPE whatsapp_worker_send_paused gauge\n");

    pthread_mutex_lock(&wa_metrics_lock);

    n = atomic_load(&wa_metrics_npauses);

    for (i = 0; i < n; i++) {
        p = &wa_metrics_pauses[i];
        wa_metrics_escape(label, sizeof(label), p->id);
        wa_metrics_printf(b, "whatsapp_worker_send_paused{phone_number_id="
                          "\"%s\",code=\"%d\"} 1\n", label, p->code);
    }

    pthread_mutex_unlock(&wa_metrics_lock);
}


static void
wa_metrics_printf(wa_metrics_buf_t *b, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    cap;
    va_list   ap;

    while (!b->failed) {
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);

        if (n < 0) {
            b->failed = 1;
            return;
        }

        if ((size_t) n < b->cap - b->len) {
            b->len += n;
            return;
        }

        for (cap = b->cap ? 2 * b->cap : 4096; cap - b->len <= (size_t) n;
             cap *= 2)
        {
            /* void */
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }

        b->data = p;
        b->cap = cap;
    }
}


/* A label value as the text format wants it: \\, \" and \n escaped. */
static void
wa_metrics_escape(char *dst, size_t size, const char *src)
{
    size_t  i;

    for (i = 0; *src && i + 2 < size; src++) {
        if (*src == '\\' || *src == '"' || *src == '\n') {
            dst[i++] = '\\';
            dst[i++] = (*src == '\n') ? 'n' : *src;

        } else {
            dst[i++] = *src;
        }
    }

    dst[i] = '\0';
}


/* All of it, or until the client stops reading for WA_METRICS_SEND_MS. */
static void
wa_metrics_send(int c, const char *p, size_t len)
{
    ssize_t  n;

    while (len) {
        n = send(c, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            return;
        }

        p += n;
        len -= n;
    }
}


static long long
wa_metrics_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
