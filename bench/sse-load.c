/*
 * bench/sse-load.c: load generator for Server-Sent Events relays (bench/sse)
 *
 *   sse-load hold      [-c N] [-w WINDOW] HOST:PORT/PATH
 *   sse-load latency   [-c N] [-w WINDOW] [-g GRACE_MS] HOST:PORT/PATH
 *   sse-load publish   -t redis|http [-r RATE] [-d SECONDS] [-s BYTES]
 *                      [-k KEY] HOST:PORT[/PATH]
 *   sse-load transport [-r RATE] [-d SECONDS] [-s BYTES] [-k KEY]
 *                      [-m both|subscribe|xread] HOST:PORT
 *   sse-load webhook   [-c N] [-w WINDOW] [-g GRACE_MS] [-r RATE]
 *                      [-d SECONDS] [-n CUSTOMERS] -a APP_SECRET
 *                      -u WEBHOOK_PATH HOST:PORT/PATH
 *
 * hold       opens N SSE connections (GET, HTTP/1.1, chunked or not),
 *            WINDOW at a time, from one thread with one epoll loop, and
 *            keeps them open; prints "READY ..." once every one has its 200
 *            response head (or failed), then waits for end of file on stdin
 *            (or SIGINT/SIGTERM) and exits.
 * latency    the same, and parses every SSE frame of every connection
 *            (lines ended by "\n" or "\r\n", "data:" lines joined, split
 *            anywhere across reads and chunks): the event's data carries
 *            "t" (when it was published, microseconds of CLOCK_REALTIME)
 *            and "seq".  A line "expect E" on stdin says E events were
 *            published; it then waits until each connection has had E of
 *            them (or GRACE_MS without a frame) and prints the publish ->
 *            receive latency over every frame received, "receive" being
 *            when the read() that got its last byte returned.  Events
 *            published before it started (a relay's replayed history) are
 *            counted apart and not timed.
 * publish    publishes RATE events/s for SECONDS, evenly spaced on an
 *            absolute schedule (late sends are caught up, not dropped):
 *            -t redis: EVALSHA of whatsapp-worker's own publish script
 *            (XADD KEY MAXLEN ~ 100000 + PUBLISH KEY, see worker/wa_redis.c)
 *            over one connection, one round trip per event;
 *            -t http: POST PATH with the event as body over one keep-alive
 *            connection (Nchan's publisher location).
 * transport  against one Redis: publishes like "publish -t redis" and
 *            receives the same events both through SUBSCRIBE KEY and
 *            through an XREAD BLOCK 5000 COUNT 1000 STREAMS KEY <last id>
 *            loop, one thread each (-m: only one of them); prints the
 *            latency of each.
 * webhook    end to end (bench/sse-e2e): opens N SSE connections to PATH as
 *            "latency" does; once all are set up ("READY"), a second thread
 *            POSTs RATE Meta webhooks/s for SECONDS to WEBHOOK_PATH on the
 *            same server (one keep-alive connection, each answer awaited,
 *            paced as "publish"), each signed with HMAC-SHA256 of
 *            APP_SECRET (X-Hub-Signature-256) and holding one inbound text
 *            message with a unique wamid, from its own customer number (-n:
 *            cycling through CUSTOMERS numbers instead), whose text starts
 *            "bench-e2e t=<us> seq=<n>", t the CLOCK_REALTIME when the POST
 *            was built.  Every "message.new" frame of every connection
 *            carrying that text is timed, receive - t; other events are
 *            counted (other_frames).  Once the POSTs are done it waits, as
 *            "latency" after "expect", for every connection to have every
 *            message answered 2xx, or GRACE_MS without one.  Prints the
 *            subscribers' RESULT line and a WEBHOOK line (the POSTs: how
 *            many, answers, POST -> answer latency).  stdin is not read.
 *            Needs -DSSE_LOAD_WEBHOOK and -lcrypto (OpenSSL's HMAC).
 *
 * Results are printed as one "RESULT key=value ..." line each (bench/sse
 * parses them).  Latencies are kept in a log-linear histogram (exact below
 * 1.024 ms, within 0.2 % above): nothing is sampled.
 *
 * Build: cc -O2 -Wall -Wextra -pthread -o sse-load sse-load.c -lhiredis
 *        (webhook mode: add -DSSE_LOAD_WEBHOOK ... -lcrypto)
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#ifdef SSE_LOAD_WEBHOOK
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif

#include "wa_publish.h"


#define READ_SIZE      65536          /* one read() per readable socket */
#define LINE_MAX_LEN   (1 << 20)      /* longest header, SSE line or data */
#define MAX_EVENTS     256            /* epoll_wait batch */
#define STREAM_CAP     "100000"       /* MAXLEN ~ of the stream, as the worker */
#define EVENT_NAME     "message.new"

/* whatsapp-worker's publish script (common/wa_publish.h) */
static const char  publish_script[] = WA_PUBLISH_SCRIPT;

static volatile sig_atomic_t  stop_signal;


/* --- options ------------------------------------------------------------ */

typedef struct {
    const char  *mode;
    const char  *kind;          /* publish: "redis" or "http" */
    const char  *key;           /* Redis stream and channel */
    char         host[64];
    int          port;
    const char  *path;
    long         conns;         /* -c */
    long         window;        /* -w: connections being set up at a time */
    long         grace_ms;      /* -g */
    double       rate;          /* -r: events per second */
    double       seconds;       /* -d */
    long         size;          /* -s: bytes of event data */
    const char  *receivers;     /* -m: transport: both, subscribe, xread */
    const char  *secret;        /* -a: webhook: the app secret */
    const char  *webhook_path;  /* -u: webhook: where to POST */
    long         customers;     /* -n: webhook: 0, one number per message */
} opts_t;


static void
usage(void)
{
    fprintf(stderr,
        "usage: sse-load hold      [-c N] [-w WINDOW] HOST:PORT/PATH\n"
        "       sse-load latency   [-c N] [-w WINDOW] [-g GRACE_MS]"
        " HOST:PORT/PATH\n"
        "       sse-load publish   -t redis|http [-r RATE] [-d SECONDS]"
        " [-s BYTES] [-k KEY] HOST:PORT[/PATH]\n"
        "       sse-load transport [-r RATE] [-d SECONDS] [-s BYTES]"
        " [-k KEY] [-m both|subscribe|xread] HOST:PORT\n"
        "       sse-load webhook   [-c N] [-w WINDOW] [-g GRACE_MS] [-r RATE]"
        " [-d SECONDS] [-n CUSTOMERS] -a APP_SECRET -u WEBHOOK_PATH"
        " HOST:PORT/PATH\n");
    exit(2);
}


/* --- time ----------------------------------------------------------------- */

static int64_t
real_us(void)               /* wall clock: comparable across processes */
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static int64_t
mono_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static void
sleep_until_ns(int64_t when)
{
    struct timespec  ts = { when / 1000000000, when % 1000000000 };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR
           && !stop_signal)
    {
        /* a signal: go on sleeping unless told to stop */
    }
}


static double
cpu_seconds(void)           /* user + system time of this process so far */
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
           + (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}


/* --- latency histogram (microseconds) --------------------------------------- */

#define HIST_SUB      512           /* buckets per power of two */
#define HIST_BUCKETS  (HIST_SUB * 56)

typedef struct {
    uint64_t  count[HIST_BUCKETS];
    uint64_t  n;
    uint64_t  max;
    double    sum;
} hist_t;


static size_t
hist_bucket(uint64_t v)
{
    unsigned  shift;

    if (v < 2 * HIST_SUB) {
        return v;
    }

    /* keep the 10 leading bits: v >> shift is in [HIST_SUB, 2 HIST_SUB) */
    shift = (unsigned) (63 - __builtin_clzll(v) - 9);
    return shift * HIST_SUB + (v >> shift);
}


static uint64_t
hist_value(size_t b)        /* the lowest value of bucket b */
{
    unsigned  shift;

    if (b < 2 * HIST_SUB) {
        return b;
    }

    shift = (unsigned) (b / HIST_SUB - 1);
    return (uint64_t) (b - shift * HIST_SUB) << shift;
}


static void
hist_add(hist_t *h, int64_t us)
{
    uint64_t  v = us < 0 ? 0 : (uint64_t) us;    /* clock stepped back */

    if (v > ((uint64_t) 1 << 50)) {
        v = (uint64_t) 1 << 50;
    }

    h->count[hist_bucket(v)]++;
    h->n++;
    h->sum += (double) v;
    if (v > h->max) {
        h->max = v;
    }
}


static double
hist_ms(const hist_t *h, double q)      /* quantile q, in milliseconds */
{
    uint64_t  want, seen = 0;
    size_t    b;

    if (h->n == 0) {
        return 0;
    }

    want = (uint64_t) (q * (double) h->n);
    if (want < 1) {
        want = 1;
    }

    for (b = 0; b < HIST_BUCKETS; b++) {
        seen += h->count[b];
        if (seen >= want) {
            return (double) hist_value(b) / 1000;
        }
    }

    return (double) h->max / 1000;
}


static void
hist_print_as(const hist_t *h, const char *prefix)     /* "post_p50_ms=" */
{
    printf("%sp50_ms=%.3f %sp90_ms=%.3f %sp99_ms=%.3f %sp999_ms=%.3f"
           " %smax_ms=%.3f %smean_ms=%.3f",
           prefix, hist_ms(h, 0.50), prefix, hist_ms(h, 0.90),
           prefix, hist_ms(h, 0.99), prefix, hist_ms(h, 0.999),
           prefix, (double) h->max / 1000,
           prefix, h->n ? h->sum / (double) h->n / 1000 : 0.0);
}


static void
hist_print(const hist_t *h)
{
    hist_print_as(h, "");
}


/* --- events: what is published, what a receiver checks ---------------------- */

/*
 * One event's data: a message.new as whatsapp-worker publishes it
 * (phone_number_id, conversation_id, the message row), led by "t" and
 * "seq", its text padded so that the JSON is `size` bytes.  One line: SSE
 * sends it as one "data:" line.
 */
static size_t
event_data(char *buf, size_t cap, uint64_t seq, int64_t t, long size)
{
    static const char  text[] = "Hi! I ordered the blue kettle last week"
                                " (order 48213) and it still has not shipped."
                                " Could you tell me when it will arrive? ";
    int                head, tail;
    long               pad;
    size_t             i;

    head = snprintf(buf, cap,
        "{\"t\":%" PRId64 ",\"seq\":%" PRIu64 ",\"phone_number_id\":\"1001\","
        "\"conversation_id\":\"6f1c3b0e-5d7a-4c52-9a51-2f1b7c9d8e01\","
        "\"message\":{\"wamid\":\"wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTdC%010"
        PRIu64 "RDk2NUFFNzE0RjY1AA==\",\"phone_number_id\":\"1001\","
        "\"customer_id\":\"15551234567\",\"direction\":\"in\","
        "\"source\":\"webhook\",\"type\":\"text\","
        "\"sent_at\":\"2026-11-21T10:00:00+00:00\",\"status\":null,"
        "\"body\":\"", t, seq, seq);
    tail = (int) strlen("\"}}");

    pad = size - head - tail;
    if (pad < 0) {
        pad = 0;
    }
    if ((size_t) head + (size_t) pad + (size_t) tail + 1 > cap) {
        pad = (long) (cap - (size_t) head - (size_t) tail - 1);
    }

    for (i = 0; i < (size_t) pad; i++) {
        buf[(size_t) head + i] = text[i % (sizeof(text) - 1)];
    }

    memcpy(buf + head + pad, "\"}}", (size_t) tail + 1);
    return (size_t) head + (size_t) pad + (size_t) tail;
}


/* the unsigned number after `key` ("\"t\":") in p[0..n), if any */
static bool
find_number(const char *p, size_t n, const char *key, uint64_t *out)
{
    const char  *k, *end = p + n;
    size_t       klen = strlen(key);
    uint64_t     v = 0;

    k = memmem(p, n, key, klen);
    if (k == NULL || k + klen >= end || k[klen] < '0' || k[klen] > '9') {
        return false;
    }

    for (k += klen; k < end && *k >= '0' && *k <= '9'; k++) {
        v = v * 10 + (uint64_t) (*k - '0');
    }

    *out = v;
    return true;
}


/* what a receiver (an SSE connection, a Redis transport) has seen */
typedef struct {
    int64_t   since;        /* events published before: replayed, not timed */
    uint64_t  frames;       /* events with "t" */
    uint64_t  replayed;     /* events with "t" before `since` */
    uint64_t  untimed;      /* events without "t" */
    uint64_t  dups;         /* "seq" not above the last one: repeated or late */
    uint64_t  next_seq;     /* per stream: the seq expected next */
} rx_t;


/* records one received event, `now` its arrival (real_us) */
static void
rx_event(rx_t *rx, hist_t *h, const char *data, size_t len, int64_t now)
{
    uint64_t  t, seq;

    if (!find_number(data, len, "\"t\":", &t)) {
        rx->untimed++;
        return;
    }

    if ((int64_t) t < rx->since) {
        rx->replayed++;         /* a relay's history, sent on connecting */
        return;
    }

    rx->frames++;
    hist_add(h, now - (int64_t) t);

    if (find_number(data, len, "\"seq\":", &seq)) {
        if (seq < rx->next_seq) {
            rx->dups++;
        } else {
            rx->next_seq = seq + 1;
        }
    }
}


/* --- growable buffers and line cutting --------------------------------------- */

typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
} buf_t;


static int
buf_append(buf_t *b, const char *p, size_t n)
{
    size_t  cap;
    char   *np;

    if (b->len + n > LINE_MAX_LEN) {
        return -1;
    }

    if (b->len + n > b->cap) {
        cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }
        np = realloc(b->p, cap);
        if (np == NULL) {
            return -1;
        }
        b->p = np;
        b->cap = cap;
    }

    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}


/*
 * Cuts the next line (ended by "\n", a "\r" before it removed) from the
 * input *p, *n.  Returns 1 with *line, *len set: into the input, or into b
 * when the line began in an earlier read (the caller then empties b with
 * b->len = 0); 0 when the input ended inside a line (kept in b); -1 when a
 * line outgrows LINE_MAX_LEN.
 */
static int
next_line(buf_t *b, const char **p, size_t *n, const char **line, size_t *len)
{
    const char  *nl = memchr(*p, '\n', *n);
    size_t       k;

    if (nl == NULL) {
        if (buf_append(b, *p, *n) != 0) {
            return -1;
        }
        *p += *n;
        *n = 0;
        return 0;
    }

    k = (size_t) (nl - *p);

    if (b->len) {
        if (buf_append(b, *p, k) != 0) {
            return -1;
        }
        *line = b->p;
        *len = b->len;
    } else {
        *line = *p;
        *len = k;
    }

    *p += k + 1;
    *n -= k + 1;

    if (*len && (*line)[*len - 1] == '\r') {
        (*len)--;
    }

    return 1;
}


/* --- HTTP/1.1 responses: status, headers, chunked or sized body -------------- */

enum {
    H_STATUS,       /* the status line */
    H_HEADER,       /* header lines up to the empty one */
    H_SIZE,         /* a chunk-size line */
    H_DATA,         /* chunk data, or a body with a length or up to EOF */
    H_DATA_END,     /* the CRLF after a chunk's data */
    H_TRAILER,      /* trailer lines after the last chunk */
    H_DONE          /* the response is complete */
};

typedef void (*body_fn)(void *ctx, const char *p, size_t n);

typedef struct {
    int       state;
    int       status;
    bool      chunked;
    bool      close;        /* "Connection: close" */
    int64_t   length;       /* Content-Length, -1: none */
    int64_t   left;         /* bytes left in the chunk or body, -1: to EOF */
    buf_t     line;
} http_t;


static void
http_reset(http_t *h)
{
    h->state = H_STATUS;
    h->status = 0;
    h->chunked = false;
    h->close = false;
    h->length = -1;
    h->left = -1;
    h->line.len = 0;
}


static bool
header_is(const char *line, size_t len, const char *name)
{
    size_t  n = strlen(name);

    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}


/* a header line's value holds `word` (lower case), in any case */
static bool
value_has(const char *line, size_t len, const char *word)
{
    size_t  i, n = strlen(word);

    for (i = 0; i + n <= len; i++) {
        if (strncasecmp(line + i, word, n) == 0) {
            return true;
        }
    }

    return false;
}


static int
http_head_line(http_t *h, const char *line, size_t len)
{
    char  num[24];

    if (h->state == H_STATUS) {
        if (len < 12 || strncmp(line, "HTTP/1.", 7) != 0) {
            return -1;
        }
        h->status = atoi(line + 9);
        h->state = H_HEADER;
        return 0;
    }

    if (len > 0) {
        if (header_is(line, len, "transfer-encoding")) {
            h->chunked = value_has(line, len, "chunked");
        } else if (header_is(line, len, "connection")) {
            h->close = value_has(line, len, "close");
        } else if (header_is(line, len, "content-length")) {
            snprintf(num, sizeof(num), "%.*s", (int) (len - 15), line + 15);
            h->length = strtoll(num, NULL, 10);
        }
        return 0;
    }

    /* the end of the head */
    if (h->chunked) {
        h->state = H_SIZE;
    } else if (h->length >= 0) {
        h->left = h->length;
        h->state = h->length ? H_DATA : H_DONE;
    } else {
        h->left = -1;
        h->state = H_DATA;
    }

    return 0;
}


static int
http_chunk_line(http_t *h, const char *line, size_t len)
{
    char     *end;
    char      hex[20];
    int64_t   size;

    switch (h->state) {

    case H_SIZE:
        snprintf(hex, sizeof(hex), "%.*s", (int) (len < 19 ? len : 19), line);
        size = strtoll(hex, &end, 16);
        if (end == hex || size < 0) {
            return -1;
        }
        h->left = size;
        h->state = size ? H_DATA : H_TRAILER;
        return 0;

    case H_DATA_END:
        if (len != 0) {
            return -1;
        }
        h->state = H_SIZE;
        return 0;

    default:                /* H_TRAILER */
        if (len == 0) {
            h->state = H_DONE;
        }
        return 0;
    }
}


/*
 * Feeds n received bytes to the response parser; body bytes go to fn.
 * Returns -1 on a malformed response, 0 otherwise (h->state is H_DONE once
 * the response is complete; bytes after it are ignored).
 */
static int
http_feed(http_t *h, const char *p, size_t n, body_fn fn, void *ctx)
{
    const char  *line;
    size_t       len, k;
    int          rc;

    while (n > 0 && h->state != H_DONE) {

        if (h->state == H_DATA) {
            k = (h->left >= 0 && (uint64_t) h->left < n) ? (size_t) h->left
                                                          : n;
            fn(ctx, p, k);
            p += k;
            n -= k;
            if (h->left >= 0 && (h->left -= (int64_t) k) == 0) {
                h->state = h->chunked ? H_DATA_END : H_DONE;
            }
            continue;
        }

        rc = next_line(&h->line, &p, &n, &line, &len);
        if (rc <= 0) {
            return rc;
        }

        rc = (h->state <= H_HEADER) ? http_head_line(h, line, len)
                                    : http_chunk_line(h, line, len);
        h->line.len = 0;
        if (rc != 0) {
            return -1;
        }
    }

    return 0;
}


/* --- Server-Sent Events: lines to events --------------------------------------- */

typedef void (*event_fn)(void *ctx, const char *data, size_t len);

#define EVENT_NAME_MAX  32

typedef struct {
    buf_t     line;
    buf_t     data;         /* the "data:" lines of the event so far */
    uint64_t  comments;     /* ": ..." lines (heartbeats) */
    size_t    event_len;    /* its "event:" name so far (cut at the max) */
    char      event[EVENT_NAME_MAX];
} sse_t;


static int
sse_line(sse_t *s, const char *line, size_t len, event_fn fn, void *ctx)
{
    const char  *colon, *value;
    size_t       name_len, value_len;

    if (len == 0) {                         /* dispatch */
        if (s->data.len) {
            fn(ctx, s->data.p, s->data.len);
            s->data.len = 0;
        }
        s->event_len = 0;
        return 0;
    }

    if (line[0] == ':') {
        s->comments++;
        return 0;
    }

    colon = memchr(line, ':', len);
    name_len = colon ? (size_t) (colon - line) : len;

    value = colon ? colon + 1 : line + len;
    value_len = (size_t) (line + len - value);
    if (value_len && value[0] == ' ') {
        value++;
        value_len--;
    }

    if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        /* the webhook mode tells message.new from the others */
        s->event_len = value_len < EVENT_NAME_MAX ? value_len
                                                  : EVENT_NAME_MAX;
        memcpy(s->event, value, s->event_len);
        return 0;
    }

    if (name_len != 4 || memcmp(line, "data", 4) != 0) {
        return 0;                           /* id, retry: not needed */
    }

    if (s->data.len && buf_append(&s->data, "\n", 1) != 0) {
        return -1;
    }

    return buf_append(&s->data, value, value_len);
}


/* feeds decoded body bytes; returns -1 when a line or an event is too long */
static int
sse_feed(sse_t *s, const char *p, size_t n, event_fn fn, void *ctx)
{
    const char  *line;
    size_t       len;
    int          rc;

    while (n > 0) {
        rc = next_line(&s->line, &p, &n, &line, &len);
        if (rc <= 0) {
            return rc;
        }

        rc = sse_line(s, line, len, fn, ctx);
        s->line.len = 0;
        if (rc != 0) {
            return -1;
        }
    }

    return 0;
}


/* --- TCP --------------------------------------------------------------------------- */

static int
parse_target(const char *arg, opts_t *o)
{
    const char  *colon = strchr(arg, ':');
    const char  *slash;
    size_t       n;

    if (colon == NULL || (size_t) (colon - arg) >= sizeof(o->host)) {
        return -1;
    }

    n = (size_t) (colon - arg);
    memcpy(o->host, arg, n);
    o->host[n] = '\0';

    o->port = atoi(colon + 1);
    slash = strchr(colon, '/');
    o->path = slash ? slash : "/";

    return (o->port > 0 && o->port < 65536) ? 0 : -1;
}


static int
make_addr(const opts_t *o, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t) o->port);
    return inet_pton(AF_INET, o->host, &sa->sin_addr) == 1 ? 0 : -1;
}


static int
write_all(int fd, const struct iovec *iov, int iovcnt)
{
    struct iovec  v[4];
    ssize_t       w;
    int           i = 0;

    memcpy(v, iov, sizeof(*iov) * (size_t) iovcnt);

    while (i < iovcnt) {
        w = writev(fd, v + i, iovcnt - i);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        while (i < iovcnt && (size_t) w >= v[i].iov_len) {
            w -= (ssize_t) v[i].iov_len;
            i++;
        }
        if (i < iovcnt) {
            v[i].iov_base = (char *) v[i].iov_base + w;
            v[i].iov_len -= (size_t) w;
        }
    }

    return 0;
}


/* --- subscribers: hold and latency -------------------------------------------------- */

enum {
    C_IDLE,         /* not connected yet */
    C_CONNECTING,   /* connect() in progress */
    C_HEAD,         /* GET sent, waiting for the response head */
    C_STREAM,       /* 200 received: events flow */
    C_CLOSED        /* failed, or ended by the server */
};

typedef struct {
    int       fd;
    int       phase;
    bool      bad;          /* an SSE line or event too long */
    http_t    http;
    sse_t     sse;
    rx_t      rx;
} sub_t;

typedef struct {
    const opts_t        *o;
    struct sockaddr_in   addr;
    char                 request[512];
    size_t               request_len;
    int                  ep;
    sub_t               *subs;
    long                 next;          /* the next sub to connect */
    long                 pending;       /* connecting or waiting for a head */
    long                 streaming;
    long                 failed;
    long                 lost;          /* streams ended after their head */
    int64_t              now;           /* real_us of the current read */
    int64_t              last_frame;    /* mono_ns of the last timed frame */
    bool                 stdin_polled;  /* stdin is not a pipe: read it each turn */
    event_fn             on_event;      /* each SSE event of a connection */
    hist_t               hist;
    char                 first_error[160];
} load_t;


static void
sub_error(load_t *l, sub_t *s, const char *what, int err)
{
    if (l->first_error[0] == '\0') {
        snprintf(l->first_error, sizeof(l->first_error), "%s%s%s", what,
                 err ? ": " : "", err ? strerror(err) : "");
    }

    if (s->phase == C_STREAM) {
        l->streaming--;
        l->lost++;
    } else {
        l->pending--;
        l->failed++;
    }

    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->phase = C_CLOSED;
}


static void
sub_connect(load_t *l, sub_t *s)
{
    struct epoll_event  ev = { .events = EPOLLOUT, .data.ptr = s };

    s->phase = C_CONNECTING;
    l->pending++;

    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        sub_error(l, s, "socket", errno);
        return;
    }

    if (connect(s->fd, (struct sockaddr *) &l->addr, sizeof(l->addr)) != 0
        && errno != EINPROGRESS)
    {
        sub_error(l, s, "connect", errno);
        return;
    }

    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        sub_error(l, s, "epoll_ctl", errno);
    }
}


/* the socket is connected (or failed to): send the GET */
static void
sub_connected(load_t *l, sub_t *s)
{
    struct epoll_event  ev = { .events = EPOLLIN, .data.ptr = s };
    struct iovec        iov = { l->request, l->request_len };
    socklen_t           len = sizeof(int);
    int                 err = 0;

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
        sub_error(l, s, "connect", err ? err : errno);
        return;
    }

    /* a few hundred bytes into an empty socket buffer: one write */
    if (write_all(s->fd, &iov, 1) != 0) {
        sub_error(l, s, "write", errno);
        return;
    }

    s->phase = C_HEAD;
    if (epoll_ctl(l->ep, EPOLL_CTL_MOD, s->fd, &ev) != 0) {
        sub_error(l, s, "epoll_ctl", errno);
    }
}


static load_t  *the_load;      /* for the parsers' callbacks */


static void
on_sse_event(void *ctx, const char *data, size_t len)
{
    sub_t     *s = ctx;
    rx_t      *rx = &s->rx;
    uint64_t   before = rx->frames;

    rx_event(rx, &the_load->hist, data, len, the_load->now);
    if (rx->frames != before) {
        the_load->last_frame = mono_ns();
    }
}


static void
on_sse_body(void *ctx, const char *p, size_t n)
{
    sub_t  *s = ctx;

    if (sse_feed(&s->sse, p, n, the_load->on_event, s) != 0) {
        s->bad = true;
    }
}


static void
sub_read(load_t *l, sub_t *s)
{
    static char  buf[READ_SIZE];
    ssize_t      n;

    n = read(s->fd, buf, sizeof(buf));
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            sub_error(l, s, "read", errno);
        }
        return;
    }
    if (n == 0) {
        sub_error(l, s, s->phase == C_STREAM ? "the server ended a stream"
                                             : "closed before the head", 0);
        return;
    }

    l->now = real_us();

    if (http_feed(&s->http, buf, (size_t) n, on_sse_body, s) != 0
        || s->bad)
    {
        sub_error(l, s, "malformed response or event", 0);
        return;
    }

    if (s->phase == C_HEAD && s->http.state > H_HEADER) {
        if (s->http.status != 200) {
            char  what[64];

            snprintf(what, sizeof(what), "HTTP status %d", s->http.status);
            sub_error(l, s, what, 0);
            return;
        }
        s->phase = C_STREAM;
        l->pending--;
        l->streaming++;
    }

    if (s->http.state == H_DONE) {
        sub_error(l, s, "the server ended a stream", 0);
    }
}


static void
load_event(load_t *l, struct epoll_event *ev)
{
    sub_t  *s = ev->data.ptr;

    if (s->phase == C_CONNECTING) {
        sub_connected(l, s);
    } else if (s->phase == C_HEAD || s->phase == C_STREAM) {
        sub_read(l, s);
    }
}


/* keeps up to `window` connections being set up */
static void
load_top_up(load_t *l)
{
    while (l->next < l->o->conns && l->pending < l->o->window) {
        sub_connect(l, &l->subs[l->next++]);
    }
}


/* stdin: end of file (hold) or "expect E" (latency); -1 at end of file */
static int
read_command(uint64_t *expect)
{
    static char    line[128];
    static size_t  len;
    ssize_t        n;
    char          *nl;

    n = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
    if (n <= 0) {
        return (n < 0 && (errno == EAGAIN || errno == EINTR)) ? 0 : -1;
    }

    len += (size_t) n;
    line[len] = '\0';

    while ((nl = strchr(line, '\n')) != NULL) {
        *nl = '\0';
        if (strncmp(line, "expect ", 7) == 0) {
            *expect = strtoull(line + 7, NULL, 10);
        }
        len -= (size_t) (nl + 1 - line);
        memmove(line, nl + 1, len + 1);
    }

    if (len == sizeof(line) - 1) {
        len = 0;                        /* a line too long: drop it */
    }

    return 0;
}


/* every stream has had `expect` timed events (duplicates not counted) */
static bool
load_complete(const load_t *l, uint64_t expect)
{
    long  i;

    for (i = 0; i < l->o->conns; i++) {
        const sub_t  *s = &l->subs[i];

        if (s->phase == C_STREAM && s->rx.frames - s->rx.dups < expect) {
            return false;
        }
    }

    return true;
}


static int
load_setup(load_t *l, const opts_t *o)
{
    struct epoll_event  ev = { .events = EPOLLIN, .data.ptr = NULL };
    long                i;

    memset(l, 0, sizeof(*l));
    l->o = o;
    l->on_event = on_sse_event;
    the_load = l;

    if (make_addr(o, &l->addr) != 0) {
        fprintf(stderr, "sse-load: %s is not an IPv4 address\n", o->host);
        return -1;
    }

    /* Nchan answers 403 without the Accept header */
    l->request_len = (size_t) snprintf(l->request, sizeof(l->request),
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n", o->path, o->host, o->port);

    l->subs = calloc((size_t) o->conns, sizeof(sub_t));
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->subs == NULL || l->ep < 0) {
        perror("sse-load");
        return -1;
    }

    for (i = 0; i < o->conns; i++) {
        l->subs[i].fd = -1;
        l->subs[i].rx.since = real_us();
        http_reset(&l->subs[i].http);
    }

    /* a regular file or /dev/null cannot be polled: read it every turn */
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    l->stdin_polled = epoll_ctl(l->ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) != 0;

    return 0;
}


static void
load_report(const load_t *l, const char *mode, uint64_t expect, double secs)
{
    uint64_t  frames = 0, dups = 0, replayed = 0, untimed = 0, comments = 0;
    uint64_t  want;
    long      i;

    for (i = 0; i < l->o->conns; i++) {
        frames += l->subs[i].rx.frames;
        dups += l->subs[i].rx.dups;
        replayed += l->subs[i].rx.replayed;
        untimed += l->subs[i].rx.untimed;
        comments += l->subs[i].sse.comments;
    }

    /* every subscriber that got its head should have had every event */
    want = expect * (uint64_t) (l->streaming + l->lost);

    printf("RESULT mode=%s subscribers=%ld established=%ld failed=%ld"
           " lost=%ld connect_s=%.3f received=%" PRIu64 " expected=%" PRIu64
           " missing=%" PRIu64 " dups=%" PRIu64 " replayed=%" PRIu64
           " untimed=%" PRIu64 " comments=%" PRIu64 " cpu_s=%.2f ",
           mode, l->o->conns, l->streaming + l->lost, l->failed, l->lost,
           secs, frames, want,
           want > frames - dups ? want - (frames - dups) : 0,
           dups, replayed, untimed, comments, cpu_seconds());
    hist_print(&l->hist);
    printf("\n");

    if (l->first_error[0]) {
        printf("ERROR %s\n", l->first_error);
    }
    fflush(stdout);
}


/* reads stdin; true at its end */
static bool
load_command(load_t *l, uint64_t *expect)
{
    uint64_t  before = *expect;
    bool      eof = read_command(expect) != 0;

    if (eof && !l->stdin_polled) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
    }
    if (*expect != before) {
        l->last_frame = mono_ns();          /* the grace starts now */
    }

    return eof;
}

/* Every stream open (or failed): said once on stdout, for the script. */
static int64_t
load_ready(load_t *l, int64_t start)
{
    int64_t  ready_ns;

    ready_ns = mono_ns() - start;
    printf("READY established=%ld failed=%ld connect_s=%.3f\n",
           l->streaming, l->failed, (double) ready_ns / 1e9);
    fflush(stdout);

    return ready_ns;
}



/*
 * hold and latency: connect, announce READY, then run until stdin ends
 * (hold), or, after "expect E", until every stream has its E events or
 * GRACE_MS passed without a frame (latency).
 */
static int
run_subscribers(const opts_t *o, bool latency)
{
    struct epoll_event  evs[MAX_EVENTS];
    static load_t       l;              /* its histogram is 224 KB */
    uint64_t            expect = 0;
    int64_t             start, ready_ns = 0;
    bool                told = false, eof = false;
    int                 i, n;

    if (load_setup(&l, o) != 0) {
        return 1;
    }

    start = mono_ns();
    l.last_frame = start;

    while (!stop_signal) {
        load_top_up(&l);

        if (!told && l.next == o->conns && l.pending == 0) {
            ready_ns = load_ready(&l, start);
            told = true;
        }

        if (told && latency && expect
            && (load_complete(&l, expect)
                || mono_ns() - l.last_frame > o->grace_ms * 1000000))
        {
            break;
        }
        if (told && eof && (!latency || expect == 0)) {
            break;                          /* hold: stdin closed */
        }

        n = epoll_wait(l.ep, evs, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) {
            perror("sse-load: epoll_wait");
            return 1;
        }

        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr != NULL) {
                load_event(&l, &evs[i]);
            } else if (!eof) {
                eof = load_command(&l, &expect);
            }
        }
        if (l.stdin_polled && !eof) {
            eof = load_command(&l, &expect);
        }
    }

    load_report(&l, latency ? "latency" : "hold", expect,
                (double) ready_ns / 1e9);

    return (l.failed || l.lost) ? 1 : 0;
}


/* --- publishers ------------------------------------------------------------------- */

typedef struct {
    const opts_t   *o;
    redisContext   *redis;
    char            sha[41];
    int             fd;             /* http */
    http_t          http;
} pub_t;


static int
redis_open(pub_t *p, redisContext **c)
{
    struct timeval  tv = { 5, 0 };
    redisReply     *r;

    *c = redisConnectWithTimeout(p->o->host, p->o->port, tv);
    if (*c == NULL || (*c)->err) {
        fprintf(stderr, "sse-load: redis %s:%d: %s\n", p->o->host, p->o->port,
                *c ? (*c)->errstr : "out of memory");
        return -1;
    }

    if (p->sha[0]) {
        return 0;
    }

    r = redisCommand(*c, "SCRIPT LOAD %s", publish_script);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        fprintf(stderr, "sse-load: SCRIPT LOAD failed\n");
        return -1;
    }
    memcpy(p->sha, r->str, 41);
    freeReplyObject(r);

    return 0;
}


/* the worker's command for one event: EVALSHA sha 1 KEY cap event data */
static void
redis_publish_argv(const pub_t *p, const char *data, size_t len,
    const char *argv[7], size_t argvlen[7])
{
    int  i;

    argv[0] = "EVALSHA";
    argv[1] = p->sha;
    argv[2] = "1";
    argv[3] = p->o->key;
    argv[4] = STREAM_CAP;
    argv[5] = EVENT_NAME;
    argv[6] = data;

    for (i = 0; i < 6; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    argvlen[6] = len;
}


static int
redis_send(pub_t *p, const char *data, size_t len)
{
    const char  *argv[7];
    size_t       argvlen[7];
    redisReply  *r;
    int          ok;

    redis_publish_argv(p, data, len, argv, argvlen);

    r = redisCommandArgv(p->redis, 7, argv, argvlen);
    ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (!ok) {
        fprintf(stderr, "sse-load: EVALSHA: %s\n",
                r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
                  : p->redis->errstr);
    }
    freeReplyObject(r);

    return ok ? 0 : -1;
}


static int
http_connect(pub_t *p)
{
    struct sockaddr_in  sa;
    int                 one = 1;

    if (make_addr(p->o, &sa) != 0) {
        fprintf(stderr, "sse-load: %s is not an IPv4 address\n", p->o->host);
        return -1;
    }

    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->fd < 0
        || connect(p->fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
    {
        perror("sse-load: connect");
        return -1;
    }

    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}


static void
discard(void *ctx, const char *p, size_t n)
{
    (void) ctx;
    (void) p;
    (void) n;
}


/*
 * POST data to path over the keep-alive connection, with more header lines
 * (each ended by CRLF) in `extra`; waits for the whole answer, its status
 * in p->http.status.  Returns -1 (and says why on stderr) when the
 * connection failed or the answer was malformed, 0 otherwise.
 */
static int
http_exchange(pub_t *p, const char *path, const char *extra,
    const char *data, size_t len)
{
    char          head[1024], buf[4096];
    struct iovec  iov[2];
    ssize_t       n;

    if (p->fd < 0 && http_connect(p) != 0) {
        return -1;
    }

    iov[0].iov_base = head;
    iov[0].iov_len = (size_t) snprintf(head, sizeof(head),
        "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
        "Content-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n",
        path, p->o->host, p->o->port, extra, len);
    iov[1].iov_base = (void *) data;
    iov[1].iov_len = len;

    if (write_all(p->fd, iov, 2) != 0) {
        perror("sse-load: write");
        return -1;
    }

    http_reset(&p->http);
    while (p->http.state != H_DONE) {
        n = read(p->fd, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            fprintf(stderr, "sse-load: the publisher's connection closed\n");
            return -1;
        }
        if (http_feed(&p->http, buf, (size_t) n, discard, NULL) != 0) {
            fprintf(stderr, "sse-load: malformed answer to a POST\n");
            return -1;
        }
    }

    if (p->http.close) {            /* keepalive_requests reached */
        close(p->fd);
        p->fd = -1;
    }

    return 0;
}


/* POST one event over the keep-alive connection; wait for the answer */
static int
http_send(pub_t *p, const char *data, size_t len)
{
    if (http_exchange(p, p->o->path, "", data, len) != 0) {
        return -1;
    }

    if (p->http.status < 200 || p->http.status > 299) {
        fprintf(stderr, "sse-load: POST %s: HTTP %d\n", p->o->path,
                p->http.status);
        return -1;
    }

    return 0;
}


/*
 * RATE events/s for SECONDS: event i is due at start + i / RATE.  A send
 * that falls behind is caught up at once; "t" is taken just before each
 * send, so the latency measured does not include the publisher's lag
 * (reported as max_behind_ms).  A server too slow to take them all gets
 * fewer: publishing stops one second after the end of the schedule.
 * Prints one RESULT line; returns the number of events published, *rc 1
 * when a send failed.
 */
static uint64_t
publish_paced(pub_t *p, int *rc)
{
    const opts_t  *o = p->o;
    uint64_t       i, total = (uint64_t) (o->rate * o->seconds + 0.5);
    int64_t        start, deadline, due, behind, max_behind = 0;
    size_t         cap = (size_t) o->size + 512, len = 0;
    char          *data = malloc(cap);
    bool           redis = strcmp(o->kind, "redis") == 0;

    *rc = 0;
    if (data == NULL) {
        *rc = 1;
        return 0;
    }

    start = mono_ns();
    deadline = start + (int64_t) ((o->seconds + 1) * 1e9);

    for (i = 0; i < total && !stop_signal; i++) {
        due = start + (int64_t) ((double) i * 1e9 / o->rate);
        sleep_until_ns(due);

        if (mono_ns() > deadline) {
            break;
        }

        behind = mono_ns() - due;
        if (behind > max_behind) {
            max_behind = behind;
        }

        len = event_data(data, cap, i, real_us(), o->size);
        if ((redis ? redis_send(p, data, len) : http_send(p, data, len)) != 0)
        {
            *rc = 1;
            break;
        }
    }

    printf("RESULT mode=publish published=%" PRIu64 " scheduled=%" PRIu64
           " seconds=%.3f max_behind_ms=%.3f bytes=%zu cpu_s=%.2f\n", i, total,
           (double) (mono_ns() - start) / 1e9, (double) max_behind / 1e6,
           len, cpu_seconds());
    fflush(stdout);

    free(data);
    return i;
}


static int
run_publisher(const opts_t *o)
{
    pub_t  p = { .o = o, .fd = -1 };
    int    rc;

    if (strcmp(o->kind, "redis") == 0 && redis_open(&p, &p.redis) != 0) {
        return 1;
    }
    http_reset(&p.http);

    publish_paced(&p, &rc);
    return rc;
}


/* --- transport: SUBSCRIBE and XREAD BLOCK side by side ------------------------------ */

/*
 * The publisher (this thread, as "publish -t redis") and one thread per
 * receiver, each with its own connection and blocking reads, as each
 * NGINX worker would have its own event loop: neither receiver waits while
 * the other one handles its reply.  Redis writes both replies in the same
 * turn of its event loop.
 */

typedef struct {
    const opts_t  *o;
    bool           xread;       /* else SUBSCRIBE */
    redisContext  *c;
    pthread_t      thread;
    rx_t           rx;
    hist_t         hist;
    uint64_t       seen;        /* rx.frames, for the main thread */
    char           last_id[64];
} receiver_t;


/* the entry's "data" field (RESP2: [field, value, ...]) */
static const redisReply *
entry_data(const redisReply *fields)
{
    size_t  i;

    for (i = 0; fields && i + 1 < fields->elements; i += 2) {
        if (fields->element[i]->type == REDIS_REPLY_STRING
            && strcmp(fields->element[i]->str, "data") == 0)
        {
            return fields->element[i + 1];
        }
    }

    return NULL;
}


static void
receiver_event(receiver_t *r, const char *data, size_t len, int64_t now)
{
    rx_event(&r->rx, &r->hist, data, len, now);
    __atomic_store_n(&r->seen, r->rx.frames, __ATOMIC_RELEASE);
}


/* an XREAD reply: [[key, [[id, [field, value, ...]], ...]]], nil: timed out */
static void
xread_reply(receiver_t *r, const redisReply *reply, int64_t now)
{
    const redisReply  *entries, *e, *d;
    size_t             i;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1
        || reply->element[0]->elements < 2)
    {
        return;
    }

    entries = reply->element[0]->element[1];
    for (i = 0; i < entries->elements; i++) {
        e = entries->element[i];
        if (e->elements < 2) {
            continue;
        }
        snprintf(r->last_id, sizeof(r->last_id), "%s", e->element[0]->str);
        d = entry_data(e->element[1]);
        if (d != NULL) {
            receiver_event(r, d->str, d->len, now);
        }
    }
}


/* a pub/sub message: ["message", channel, "<id> {"event":..,"data":..}"] */
static void
subscribe_reply(receiver_t *r, const redisReply *reply, int64_t now)
{
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && strcmp(reply->element[0]->str, "message") == 0)
    {
        receiver_event(r, reply->element[2]->str, reply->element[2]->len,
                       now);
    }
}


static void *
receiver_main(void *arg)
{
    receiver_t  *r = arg;
    const char  *argv[8] = { "XREAD", "BLOCK", "5000", "COUNT", "1000",
                             "STREAMS", r->o->key, r->last_id };
    redisReply  *reply;
    int64_t      now;

    for ( ;; ) {
        if (r->xread) {
            reply = redisCommandArgv(r->c, 8, argv, NULL);
        } else if (redisGetReply(r->c, (void **) &reply) != REDIS_OK) {
            reply = NULL;
        }
        now = real_us();

        if (reply == NULL) {            /* shut down by the main thread */
            return NULL;
        }

        if (r->xread) {
            xread_reply(r, reply, now);
        } else {
            subscribe_reply(r, reply, now);
        }
        freeReplyObject(reply);
    }
}


static int
receiver_start(pub_t *p, receiver_t *r, bool xread)
{
    redisReply  *reply;

    r->o = p->o;
    r->xread = xread;
    /* the key was deleted: from 0-0, nothing published can be missed */
    strcpy(r->last_id, "0-0");

    if (redis_open(p, &r->c) != 0) {
        return -1;
    }

    if (!xread) {
        reply = redisCommand(r->c, "SUBSCRIBE %s", p->o->key);
        if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "sse-load: SUBSCRIBE failed\n");
            return -1;
        }
        freeReplyObject(reply);
    }

    /* no read timeout: XREAD blocks up to 5 s, SUBSCRIBE for ever */
    redisSetTimeout(r->c, (struct timeval) { 0, 0 });

    return pthread_create(&r->thread, NULL, receiver_main, r) == 0 ? 0 : -1;
}


static void
receiver_report(const receiver_t *r, uint64_t published)
{
    uint64_t  got = r->rx.frames - r->rx.dups;

    printf("RESULT mode=transport transport=%s received=%" PRIu64
           " expected=%" PRIu64 " missing=%" PRIu64 " dups=%" PRIu64 " ",
           r->xread ? "xread" : "subscribe", r->rx.frames, published,
           got < published ? published - got : 0, r->rx.dups);
    hist_print(&r->hist);
    printf("\n");
}


static int
run_transport(const opts_t *o)
{
    static receiver_t  rs[2];
    pub_t              p = { .o = o, .fd = -1 };
    redisReply        *reply;
    uint64_t           published;
    int64_t            end;
    int                i, n = 0, rc;

    if (redis_open(&p, &p.redis) != 0) {
        return 1;
    }

    reply = redisCommand(p.redis, "DEL %s", o->key);
    freeReplyObject(reply);

    /* -m: both side by side (default), or one alone */
    for (i = 0; i < 2; i++) {
        if (strcmp(o->receivers, "both") == 0
            || strcmp(o->receivers, i ? "xread" : "subscribe") == 0)
        {
            if (receiver_start(&p, &rs[n], i == 1) != 0) {
                return 1;
            }
            n++;
        }
    }

    published = publish_paced(&p, &rc);

    /* until each has every event, or GRACE_MS */
    end = mono_ns() + o->grace_ms * 1000000;
    while (mono_ns() < end && !stop_signal
           && (__atomic_load_n(&rs[0].seen, __ATOMIC_ACQUIRE) < published
               || (n == 2 && __atomic_load_n(&rs[1].seen, __ATOMIC_ACQUIRE)
                             < published)))
    {
        usleep(10000);
    }

    for (i = 0; i < n; i++) {
        shutdown(rs[i].c->fd, SHUT_RDWR);       /* ends its blocking read */
        pthread_join(rs[i].thread, NULL);
        receiver_report(&rs[i], published);
    }

    return rc;
}


/* --- webhook: Meta's POSTs in, message.new out (bench/sse-e2e) ---------------------- */

#ifdef SSE_LOAD_WEBHOOK

#define E2E_MARK      "bench-e2e t="    /* the text of every message starts so */
#define E2E_SEQ       " seq="
#define E2E_SEQ_MAX   ((uint64_t) 1 << 32)
#define E2E_EVENT     "message.new"

/* what one connection has seen of the webhooks' messages */
typedef struct {
    uint8_t   *seen;        /* a bit per seq: duplicates told from reorders */
    size_t     cap;         /* bytes of seen */
    uint64_t   next_seq;    /* the highest seq seen + 1 */
    uint64_t   reordered;   /* arrived after a later one (not an error) */
    uint64_t   other;       /* frames of other events */
} wsub_t;

/* the thread that POSTs the webhooks */
typedef struct {
    const opts_t  *o;
    pub_t          pub;             /* its keep-alive connection */
    pthread_t      thread;
    hist_t         hist;            /* POST written -> whole answer read */
    uint64_t       scheduled;
    uint64_t       sent;            /* POSTs written */
    uint64_t       ok;              /* answered 2xx: every stream expects them */
    uint64_t       non2xx;
    uint64_t       errors;          /* connection failed, answer malformed */
    int            first_bad;       /* the first non-2xx status */
    int64_t        max_behind;      /* ns behind its schedule */
    double         seconds;
    int            done;            /* set (atomically) when it is finished */
} poster_t;

static wsub_t    *wsubs;
static poster_t   poster;           /* its histogram is 224 KB */


/*
 * One delivery as Meta sends it: one inbound text message with a unique
 * wamid, from customer number 1555<8 digits> (its own unless -n), its text
 * led by the send time and the sequence number.
 */
static size_t
webhook_body(char *buf, size_t cap, uint64_t seq, int64_t t, long customers)
{
    uint64_t  c = customers > 0 ? seq % (uint64_t) customers : seq;
    int       n;

    n = snprintf(buf, cap,
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":"
        "\"102290129340398\",\"changes\":[{\"value\":{\"messaging_product\":"
        "\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\","
        "\"phone_number_id\":\"106540352242922\"},\"contacts\":[{\"profile\":"
        "{\"name\":\"Bench Customer %" PRIu64 "\"},\"wa_id\":\"1555%08" PRIu64
        "\"}],\"messages\":[{\"from\":\"1555%08" PRIu64 "\",\"id\":"
        "\"wamid.BENCHE2E%010" PRIu64 "\",\"timestamp\":\"%" PRId64 "\","
        "\"type\":\"text\",\"text\":{\"body\":\"" E2E_MARK "%" PRId64 E2E_SEQ
        "%" PRIu64 " Hi! I ordered the blue kettle last week (order 48213)"
        " and it still has not shipped. Could you tell me when it will"
        " arrive?\"}}]},\"field\":\"messages\"}]}]}",
        c, c, c, seq, t / 1000000, t, seq);

    return (n < 0 || (size_t) n >= cap) ? 0 : (size_t) n;
}


/* X-Hub-Signature-256's hex: HMAC-SHA256 of the body with the app secret */
static int
webhook_sign(const char *secret, const char *body, size_t len, char hex[65])
{
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned int   mdlen = 0, i;

    if (HMAC(EVP_sha256(), secret, (int) strlen(secret),
             (const unsigned char *) body, len, md, &mdlen) == NULL
        || mdlen != 32)
    {
        return -1;
    }

    for (i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }

    return 0;
}


static void
poster_close(poster_t *ps)
{
    if (ps->pub.fd >= 0) {
        close(ps->pub.fd);
        ps->pub.fd = -1;
    }
}


/*
 * RATE POSTs/s for SECONDS on an absolute schedule, as publish_paced: a
 * late one is caught up, not dropped, and it stops one second after the
 * schedule ends.  Each answer is awaited (10 s at most).  A failed POST is
 * counted and the next one goes on a new connection; 100 failures in a
 * row end it.
 */
static void *
poster_main(void *arg)
{
    poster_t        *ps = arg;
    const opts_t    *o = ps->o;
    struct timeval   tv = { 10, 0 };
    uint64_t         i, total = (uint64_t) (o->rate * o->seconds + 0.5);
    int64_t          start, deadline, due, behind, t, t0;
    unsigned         failures = 0;
    size_t           len;
    char             body[2048], sig[65], extra[128];

    ps->scheduled = total;
    start = mono_ns();
    deadline = start + (int64_t) ((o->seconds + 1) * 1e9);

    for (i = 0; i < total && !stop_signal; i++) {
        due = start + (int64_t) ((double) i * 1e9 / o->rate);
        sleep_until_ns(due);

        if (stop_signal || mono_ns() > deadline) {
            break;
        }

        behind = mono_ns() - due;
        if (behind > ps->max_behind) {
            ps->max_behind = behind;
        }

        if (ps->pub.fd < 0) {
            if (http_connect(&ps->pub) != 0) {
                poster_close(ps);
                ps->errors++;
                if (++failures >= 100) {
                    break;
                }
                continue;
            }
            setsockopt(ps->pub.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        }

        t = real_us();
        len = webhook_body(body, sizeof(body), i, t, o->customers);
        if (len == 0 || webhook_sign(o->secret, body, len, sig) != 0) {
            fprintf(stderr, "sse-load: cannot build or sign a webhook\n");
            ps->errors++;
            break;
        }
        snprintf(extra, sizeof(extra), "X-Hub-Signature-256: sha256=%s\r\n",
                 sig);

        ps->sent++;
        t0 = mono_ns();
        if (http_exchange(&ps->pub, o->webhook_path, extra, body, len) != 0) {
            poster_close(ps);
            ps->errors++;
            if (++failures >= 100) {
                break;
            }
            continue;
        }
        failures = 0;
        hist_add(&ps->hist, (mono_ns() - t0) / 1000);

        if (ps->pub.http.status >= 200 && ps->pub.http.status <= 299) {
            ps->ok++;
        } else {
            ps->non2xx++;
            if (ps->first_bad == 0) {
                ps->first_bad = ps->pub.http.status;
            }
        }
    }

    ps->seconds = (double) (mono_ns() - start) / 1e9;
    poster_close(ps);
    __atomic_store_n(&ps->done, 1, __ATOMIC_RELEASE);

    return NULL;
}


/*
 * One SSE event of a connection: message.new frames with the mark are
 * timed (the first of each seq; a repeat is a duplicate, counted in
 * rx.frames and rx.dups as in "latency"), others counted.
 */
static void
on_webhook_event(void *ctx, const char *data, size_t len)
{
    sub_t     *s = ctx;
    wsub_t    *w = &wsubs[s - the_load->subs];
    rx_t      *rx = &s->rx;
    uint64_t   t, seq;
    size_t     byte, cap;
    uint8_t   *p;

    if (s->sse.event_len != sizeof(E2E_EVENT) - 1
        || memcmp(s->sse.event, E2E_EVENT, sizeof(E2E_EVENT) - 1) != 0)
    {
        w->other++;
        return;
    }

    if (!find_number(data, len, E2E_MARK, &t)
        || !find_number(data, len, E2E_SEQ, &seq) || seq >= E2E_SEQ_MAX)
    {
        rx->untimed++;              /* not one of ours */
        return;
    }

    if ((int64_t) t < rx->since) {
        rx->replayed++;
        return;
    }

    rx->frames++;
    the_load->last_frame = mono_ns();

    byte = (size_t) (seq / 8);
    if (byte >= w->cap) {
        cap = w->cap ? w->cap : 64;
        while (cap <= byte) {
            cap *= 2;
        }
        p = realloc(w->seen, cap);
        if (p == NULL) {
            rx->untimed++;
            return;
        }
        memset(p + w->cap, 0, cap - w->cap);
        w->seen = p;
        w->cap = cap;
    }

    if (w->seen[byte] & (1u << (seq % 8))) {
        rx->dups++;
        return;
    }
    w->seen[byte] |= (uint8_t) (1u << (seq % 8));

    if (seq < w->next_seq) {
        w->reordered++;
    } else {
        w->next_seq = seq + 1;
    }

    hist_add(&the_load->hist, the_load->now - (int64_t) t);
}


static int
run_webhook(const opts_t *o)
{
    struct epoll_event  evs[MAX_EVENTS];
    static load_t       l;
    uint64_t            expect = 0, other = 0, reordered = 0;
    int64_t             start, ready_ns = 0;
    bool                told = false, posting = false, posted = false;
    long                k;
    int                 i, n;

    if (o->secret == NULL || o->webhook_path == NULL) {
        usage();
    }

    if (load_setup(&l, o) != 0) {
        return 1;
    }

    /* stdin is not read: the POSTs start once every stream is up */
    epoll_ctl(l.ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
    l.stdin_polled = false;
    l.on_event = on_webhook_event;

    wsubs = calloc((size_t) o->conns, sizeof(wsub_t));
    if (wsubs == NULL) {
        perror("sse-load");
        return 1;
    }

    poster.o = o;
    poster.pub.o = o;
    poster.pub.fd = -1;
    http_reset(&poster.pub.http);

    start = mono_ns();
    l.last_frame = start;

    while (!stop_signal) {
        load_top_up(&l);

        if (!told && l.next == o->conns && l.pending == 0) {
            ready_ns = load_ready(&l, start);
            told = true;

            if (pthread_create(&poster.thread, NULL, poster_main, &poster)
                != 0)
            {
                perror("sse-load: pthread_create");
                break;
            }
            posting = true;
        }

        if (posting && !posted
            && __atomic_load_n(&poster.done, __ATOMIC_ACQUIRE))
        {
            posted = true;
            expect = poster.ok;
            l.last_frame = mono_ns();       /* the grace starts now */
        }

        if (posted
            && (load_complete(&l, expect)
                || mono_ns() - l.last_frame > o->grace_ms * 1000000))
        {
            break;
        }

        n = epoll_wait(l.ep, evs, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) {
            perror("sse-load: epoll_wait");
            break;
        }

        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr != NULL) {
                load_event(&l, &evs[i]);
            }
        }
    }

    if (posting) {
        pthread_join(poster.thread, NULL);  /* stops at once on a signal */
        if (!posted) {
            expect = poster.ok;
        }
    }

    load_report(&l, "webhook", expect, (double) ready_ns / 1e9);

    for (k = 0; k < o->conns; k++) {
        other += wsubs[k].other;
        reordered += wsubs[k].reordered;
    }

    printf("WEBHOOK scheduled=%" PRIu64 " sent=%" PRIu64 " ok=%" PRIu64
           " non2xx=%" PRIu64 " first_bad_status=%d errors=%" PRIu64
           " seconds=%.3f max_behind_ms=%.3f other_frames=%" PRIu64
           " reordered=%" PRIu64 " ", poster.scheduled, poster.sent,
           poster.ok, poster.non2xx, poster.first_bad, poster.errors,
           poster.seconds, (double) poster.max_behind / 1e6, other,
           reordered);
    hist_print_as(&poster.hist, "post_");
    printf("\n");
    fflush(stdout);

    return (!posted || l.failed || l.lost || poster.non2xx || poster.errors)
           ? 1 : 0;
}

#else

static int
run_webhook(const opts_t *o)
{
    (void) o;
    fprintf(stderr, "sse-load: the webhook mode needs OpenSSL: build with"
                    " -DSSE_LOAD_WEBHOOK ... -lcrypto\n");
    return 2;
}

#endif


/* --- main ---------------------------------------------------------------------------- */

static void
on_signal(int sig)
{
    (void) sig;
    stop_signal = 1;
}


static void
parse_options(int argc, char **argv, opts_t *o)
{
    int  c;

    o->kind = "redis";
    o->key = "wa:updates";
    o->conns = 1000;
    o->window = 256;
    o->grace_ms = 3000;
    o->rate = 1000;
    o->seconds = 30;
    o->size = 1024;
    o->receivers = "both";

    if (argc < 3) {
        usage();
    }
    o->mode = argv[1];

    optind = 2;
    while ((c = getopt(argc, argv, "c:w:g:r:d:s:t:k:m:a:u:n:")) != -1) {
        switch (c) {
        case 'c': o->conns = atol(optarg); break;
        case 'w': o->window = atol(optarg); break;
        case 'g': o->grace_ms = atol(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'd': o->seconds = atof(optarg); break;
        case 's': o->size = atol(optarg); break;
        case 't': o->kind = optarg; break;
        case 'k': o->key = optarg; break;
        case 'm': o->receivers = optarg; break;
        case 'a': o->secret = optarg; break;
        case 'u': o->webhook_path = optarg; break;
        case 'n': o->customers = atol(optarg); break;
        default: usage();
        }
    }

    if (optind != argc - 1 || parse_target(argv[optind], o) != 0
        || o->conns < 1 || o->window < 1 || o->rate <= 0 || o->seconds < 0
        || o->size < 0 || o->size > LINE_MAX_LEN / 2 || o->customers < 0
        || (strcmp(o->kind, "redis") != 0 && strcmp(o->kind, "http") != 0)
        || (strcmp(o->receivers, "both") != 0
            && strcmp(o->receivers, "subscribe") != 0
            && strcmp(o->receivers, "xread") != 0))
    {
        usage();
    }
}


int
main(int argc, char **argv)
{
    struct sigaction  sa;
    opts_t            o;

    memset(&o, 0, sizeof(o));
    parse_options(argc, argv, &o);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;          /* no SA_RESTART: wake epoll_wait */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(o.mode, "hold") == 0) {
        return run_subscribers(&o, false);
    }
    if (strcmp(o.mode, "latency") == 0) {
        return run_subscribers(&o, true);
    }
    if (strcmp(o.mode, "publish") == 0) {
        return run_publisher(&o);
    }
    if (strcmp(o.mode, "transport") == 0) {
        return run_transport(&o);
    }
    if (strcmp(o.mode, "webhook") == 0) {
        return run_webhook(&o);
    }

    usage();
    return 2;
}
