/*
 * Status webhooks, posted the way Meta posts them: field "messages",
 * value.statuses[], signed with X-Hub-Signature-256 over the exact body,
 * "/" escaped as "\/" and non-ASCII as \uXXXX like Meta's wire bodies.
 *
 * Each accepted message gets its statuses (--statuses, in that order,
 * --status-delay-ms apart).  Statuses due for one phone number are
 * batched: a POST carries up to 1,000 (Meta's maximum) and leaves within
 * WA_SIM_BATCH_WAIT_MS of the first.  One phone number has one POST in
 * flight at a time, so its statuses arrive in order; a POST not answered
 * 200 is retried with backoff (Meta retries "with decreasing frequency")
 * before the ones behind it.  Phone numbers share a few keep-alive
 * connections, driven by the same epoll loop as the server.
 */

#define _GNU_SOURCE                  /* memmem, accept4 */

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wa_signature.h"
#include "wa_sim.h"


#define WA_SIM_BATCH_MAX        1000
#define WA_SIM_BATCH_WAIT_MS    10
#define WA_SIM_RETRIES          4         /* after 100, 400, 1600, 6400 ms */
#define WA_SIM_RETRY_BASE_MS    100
#define WA_SIM_POST_TIMEOUT_MS  10000
#define WA_SIM_RESPONSE_MAX     (1024 * 1024)
#define WA_SIM_PHONE_BUCKETS    256
#define WA_SIM_SECRET_MAX       4096

#define WA_SIM_FAILED           WA_SIM_STAGES_MAX   /* a status kind */

#define WA_SIM_ERROR_HREF \
    "https://developers.facebook.com/docs/whatsapp/cloud-api/support/" \
    "error-codes/"


typedef struct wa_sim_msg_s       wa_sim_msg_t;
typedef struct wa_sim_phone_s     wa_sim_phone_t;
typedef struct wa_sim_delivery_s  wa_sim_delivery_t;
typedef struct wa_sim_wconn_s     wa_sim_wconn_t;

/* an accepted message with statuses still to come */
struct wa_sim_msg_s {
    wa_sim_msg_t       *prev;
    wa_sim_msg_t       *next;
    wa_sim_timer_t      timer;
    wa_sim_phone_t     *phone;
    uint64_t            accepted;          /* wa_sim_now then */
    int64_t             accepted_s;        /* wall clock seconds then */
    int                 kinds[WA_SIM_STAGES_MAX];
    int                 nkinds;
    int                 next_kind;
    unsigned            template:1;
    unsigned            user_id:1;
    unsigned            v24:1;
    int                 fail_code;
    char               *fail_details;      /* NULL: Meta's */
    char                conversation[33];
    char               *wamid;             /* these three in data[] */
    char               *recipient;
    char               *biz_opaque;        /* NULL: none */
    size_t              biz_opaque_len;
    char                data[];
};

/* one signed POST, ready to go */
struct wa_sim_delivery_s {
    wa_sim_delivery_t  *next;
    wa_sim_buf_t        request;
    unsigned            statuses;
    unsigned            failures;
    unsigned            stale_retried:1;
};

struct wa_sim_phone_s {
    wa_sim_phone_t     *next;              /* hash chain */
    wa_sim_phone_t     *ready_next;
    char               *id;
    wa_sim_buf_t        batch;             /* rendered statuses, "a,b,c" */
    unsigned            nbatch;
    wa_sim_timer_t      flush;
    wa_sim_timer_t      retry;
    wa_sim_delivery_t  *head;
    wa_sim_delivery_t  *tail;
    unsigned            busy:1;            /* head in flight, or backing off */
    unsigned            ready:1;           /* in the ready list */
};

enum {
    WA_SIM_WC_CLOSED = 0,
    WA_SIM_WC_CONNECTING,
    WA_SIM_WC_IDLE,
    WA_SIM_WC_BUSY
};

struct wa_sim_wconn_s {
    wa_sim_event_t      ev;
    int                 state;
    wa_sim_phone_t     *phone;             /* whose head is in flight */
    size_t              sent;
    wa_sim_buf_t        in;
    wa_sim_timer_t      timeout;
    unsigned            reused:1;          /* kept alive from an earlier POST */
};


static int wa_sim_webhook_url(const char *url);
static int wa_sim_webhook_secret(const char *path);
static wa_sim_phone_t *wa_sim_phone_get(const char *id);
static void wa_sim_phone_ready(wa_sim_phone_t *p);
static void wa_sim_phone_flush(wa_sim_phone_t *p);
static void wa_sim_phone_flush_handler(wa_sim_timer_t *t);
static void wa_sim_phone_retry_handler(wa_sim_timer_t *t);
static void wa_sim_msg_due(wa_sim_timer_t *t);
static void wa_sim_msg_free(wa_sim_msg_t *m);
static void wa_sim_status_render(wa_sim_msg_t *m, int kind);
static void wa_sim_status_failed(wa_sim_buf_t *b, wa_sim_msg_t *m);
static void wa_sim_status_billing(wa_sim_buf_t *b, wa_sim_msg_t *m,
    int kind);
static void wa_sim_dispatch(void);
static void wa_sim_delivered(wa_sim_phone_t *p, int ok);
static wa_sim_wconn_t *wa_sim_wconn_free(void);
static void wa_sim_wconn_start(wa_sim_wconn_t *c, wa_sim_phone_t *p);
static int wa_sim_wconn_connect(wa_sim_wconn_t *c);
static void wa_sim_wconn_handler(wa_sim_event_t *ev, uint32_t events);
static void wa_sim_wconn_timeout(wa_sim_timer_t *t);
static int wa_sim_wconn_write(wa_sim_wconn_t *c);
static void wa_sim_wconn_read(wa_sim_wconn_t *c);
static void wa_sim_wconn_done(wa_sim_wconn_t *c, int status, int keep_alive);
static void wa_sim_wconn_fail(wa_sim_wconn_t *c, int may_be_stale);
static void wa_sim_wconn_close(wa_sim_wconn_t *c);
static int wa_sim_response_parse(const char *p, size_t len, int eof,
    int *status, int *keep_alive);
static int wa_sim_chunked_whole(const char *p, size_t len);


static const char  *wa_sim_status_names[] = {
    "sent", "delivered", "read", "failed"
};

static struct sockaddr_storage   wa_sim_addr;
static socklen_t                 wa_sim_addrlen;
static char                     *wa_sim_host;      /* Host: header */
static char                     *wa_sim_path;

static wa_hmac_key_t            *wa_sim_key;
static wa_sim_wconn_t           *wa_sim_wconns;
static wa_sim_phone_t           *wa_sim_phones[WA_SIM_PHONE_BUCKETS];
static wa_sim_phone_t           *wa_sim_ready_head;
static wa_sim_phone_t          **wa_sim_ready_tail = &wa_sim_ready_head;
static wa_sim_msg_t             *wa_sim_msgs;
static wa_sim_buf_t              wa_sim_body;


int
wa_sim_webhook_init(void)
{
    int  i;

    if (wa_sim_conf.webhook == NULL) {
        return 0;
    }

    if (wa_sim_conf.app_secret_file == NULL) {
        wa_sim_log("--webhook needs --app-secret-file: Meta signs every "
                   "POST");
        return -1;
    }

    if (wa_sim_webhook_url(wa_sim_conf.webhook) != 0
        || wa_sim_webhook_secret(wa_sim_conf.app_secret_file) != 0)
    {
        return -1;
    }

    wa_sim_wconns = wa_sim_calloc(wa_sim_conf.webhook_connections,
                                  sizeof(wa_sim_wconn_t));

    for (i = 0; i < wa_sim_conf.webhook_connections; i++) {
        wa_sim_wconns[i].ev.fd = -1;
        wa_sim_wconns[i].ev.handler = wa_sim_wconn_handler;
        wa_sim_wconns[i].ev.data = &wa_sim_wconns[i];
        wa_sim_wconns[i].timeout.handler = wa_sim_wconn_timeout;
        wa_sim_wconns[i].timeout.data = &wa_sim_wconns[i];
    }

    return 0;
}


void
wa_sim_webhook_done(void)
{
    int                 i;
    wa_sim_phone_t     *p;
    wa_sim_delivery_t  *d;

    while (wa_sim_msgs) {
        wa_sim_msg_free(wa_sim_msgs);
    }

    for (i = 0; i < WA_SIM_PHONE_BUCKETS; i++) {
        while ((p = wa_sim_phones[i]) != NULL) {
            wa_sim_phones[i] = p->next;
            wa_sim_timer_del(&p->flush);
            wa_sim_timer_del(&p->retry);

            while ((d = p->head) != NULL) {
                p->head = d->next;
                wa_sim_buf_free(&d->request);
                free(d);
            }

            wa_sim_buf_free(&p->batch);
            free(p->id);
            free(p);
        }
    }

    for (i = 0; wa_sim_wconns && i < wa_sim_conf.webhook_connections; i++) {
        wa_sim_wconn_close(&wa_sim_wconns[i]);
        wa_sim_buf_free(&wa_sim_wconns[i].in);
    }

    free(wa_sim_wconns);
    wa_sim_wconns = NULL;
    wa_hmac_key_free(wa_sim_key);
    wa_sim_key = NULL;
    free(wa_sim_host);
    free(wa_sim_path);
    wa_sim_buf_free(&wa_sim_body);
}


/* http://host[:port][/path]: resolved once, here, before the loop runs */
static int
wa_sim_webhook_url(const char *url)
{
    int               rc;
    char             *host, *port, *slash;
    const char       *authority;
    struct addrinfo   hints, *res;

    if (strncmp(url, "http://", 7) != 0) {
        wa_sim_log("--webhook %s: only http:// URLs", url);
        return -1;
    }

    authority = url + 7;
    slash = strchr(authority, '/');

    wa_sim_host = slash ? wa_sim_strndup(authority, slash - authority)
                        : wa_sim_strndup(authority, strlen(authority));
    wa_sim_path = wa_sim_strndup(slash ? slash : "/",
                                 strlen(slash ? slash : "/"));

    host = wa_sim_strndup(wa_sim_host, strlen(wa_sim_host));
    port = strrchr(host, ':');

    if (port && strchr(port, ']') == NULL) {
        *port++ = '\0';

    } else {
        port = "80";
    }

    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo(host, port, &hints, &res);
    free(host);

    if (rc != 0) {
        wa_sim_log("--webhook %s: %s", url, gai_strerror(rc));
        return -1;
    }

    memcpy(&wa_sim_addr, res->ai_addr, res->ai_addrlen);
    wa_sim_addrlen = res->ai_addrlen;
    freeaddrinfo(res);

    return 0;
}


/* the app secret; a file's trailing newline is not part of it */
static int
wa_sim_webhook_secret(const char *path)
{
    FILE           *f;
    size_t          n;
    unsigned char   secret[WA_SIM_SECRET_MAX];

    f = fopen(path, "r");
    if (f == NULL) {
        wa_sim_log("--app-secret-file %s: %s", path, strerror(errno));
        return -1;
    }

    n = fread(secret, 1, sizeof(secret), f);
    fclose(f);

    while (n && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) {
        n--;
    }

    if (n == 0) {
        wa_sim_log("--app-secret-file %s: empty", path);
        return -1;
    }

    wa_sim_key = wa_hmac_key_new(secret, n);
    memset(secret, 0, sizeof(secret));

    if (wa_sim_key == NULL) {
        wa_sim_log("HMAC key: out of memory");
        return -1;
    }

    return 0;
}


void
wa_sim_webhook_accepted(const wa_sim_accepted_t *a)
{
    int            i, kinds[WA_SIM_STAGES_MAX], n;
    size_t         wlen, rlen;
    uint64_t       r;
    wa_sim_msg_t  *m;

    if (wa_sim_conf.webhook == NULL) {
        return;
    }

    n = 0;

    if (a->fail) {
        kinds[n++] = WA_SIM_FAILED;

    } else {
        for (i = 0; i < wa_sim_conf.nstages; i++) {
            /* a reaction only ever gets "sent" (Meta) */
            if (!a->reaction || wa_sim_conf.stages[i] == WA_SIM_SENT) {
                kinds[n++] = wa_sim_conf.stages[i];
            }
        }
    }

    if (n == 0) {
        return;
    }

    wlen = strlen(a->wamid);
    rlen = strlen(a->recipient);

    m = wa_sim_calloc(1, sizeof(wa_sim_msg_t) + wlen + rlen
                         + a->biz_opaque_len + 3);
    m->wamid = m->data;
    memcpy(m->wamid, a->wamid, wlen);
    m->recipient = m->wamid + wlen + 1;
    memcpy(m->recipient, a->recipient, rlen);

    if (a->biz_opaque) {
        m->biz_opaque = m->recipient + rlen + 1;
        memcpy(m->biz_opaque, a->biz_opaque, a->biz_opaque_len);
        m->biz_opaque_len = a->biz_opaque_len;
    }

    memcpy(m->kinds, kinds, sizeof(kinds));
    m->nkinds = n;
    m->phone = wa_sim_phone_get(a->phone_number_id);
    m->accepted = wa_sim_now;
    m->accepted_s = wa_sim_epoch_ms / 1000;
    m->template = a->template;
    m->user_id = a->recipient_is_user_id;
    m->v24 = a->v24;

    if (a->fail) {
        m->fail_code = a->fail->code;

        /* the rule may be cleared before the status goes out */
        if (a->fail->details) {
            m->fail_details = wa_sim_strndup(a->fail->details,
                                             strlen(a->fail->details));
        }
    }

    r = wa_sim_random();
    snprintf(m->conversation, sizeof(m->conversation), "%016llx%016llx",
             (unsigned long long) r,
             (unsigned long long) wa_sim_random());

    m->next = wa_sim_msgs;
    if (wa_sim_msgs) {
        wa_sim_msgs->prev = m;
    }
    wa_sim_msgs = m;

    wa_sim_stats.statuses_pending += n;

    /* the first status is due now: rendered after this turn's events */
    m->timer.handler = wa_sim_msg_due;
    m->timer.data = m;
    wa_sim_timer_at(&m->timer, m->accepted);
}


static void
wa_sim_msg_due(wa_sim_timer_t *t)
{
    uint64_t       when;
    wa_sim_msg_t  *m;

    m = t->data;

    do {
        wa_sim_status_render(m, m->kinds[m->next_kind++]);

        if (m->next_kind == m->nkinds) {
            wa_sim_msg_free(m);
            return;
        }

        when = m->accepted + m->next_kind * wa_sim_conf.status_delay_ms;

    } while (when <= wa_sim_now);

    wa_sim_timer_at(&m->timer, when);
}


static void
wa_sim_msg_free(wa_sim_msg_t *m)
{
    wa_sim_timer_del(&m->timer);

    if (m->prev) {
        m->prev->next = m->next;

    } else {
        wa_sim_msgs = m->next;
    }

    if (m->next) {
        m->next->prev = m->prev;
    }

    free(m->fail_details);
    free(m);
}


/*
 * {"id":"wamid..","status":"sent","timestamp":"1750030073",
 *  "recipient_id":"16505551234","biz_opaque_callback_data":"..",
 *  "conversation":{..},"pricing":{..}}   (the order of Meta's examples)
 */
static void
wa_sim_status_render(wa_sim_msg_t *m, int kind)
{
    wa_sim_buf_t    *b;
    wa_sim_phone_t  *p;

    p = m->phone;
    b = &p->batch;

    if (p->nbatch) {
        wa_sim_buf_lit(b, ",");
    }

    wa_sim_buf_lit(b, "{\"id\":");
    wa_sim_buf_json_str(b, m->wamid);
    wa_sim_buf_lit(b, ",\"status\":\"");
    wa_sim_buf_str(b, wa_sim_status_names[kind]);
    wa_sim_buf_lit(b, "\",\"timestamp\":\"");
    wa_sim_buf_u64(b, wa_sim_epoch_ms / 1000);
    wa_sim_buf_str(b, m->user_id ? "\",\"recipient_user_id\":"
                                 : "\",\"recipient_id\":");
    wa_sim_buf_json_str(b, m->recipient);

    if (m->biz_opaque) {
        wa_sim_buf_lit(b, ",\"biz_opaque_callback_data\":");
        wa_sim_buf_json(b, m->biz_opaque, m->biz_opaque_len);
    }

    if (kind == WA_SIM_FAILED) {
        wa_sim_status_failed(b, m);

    } else {
        wa_sim_status_billing(b, m, kind);
    }

    wa_sim_buf_lit(b, "}");

    if (++p->nbatch >= WA_SIM_BATCH_MAX) {
        wa_sim_phone_flush(p);

    } else if (!wa_sim_timer_armed(&p->flush)) {
        wa_sim_timer_add(&p->flush, WA_SIM_BATCH_WAIT_MS);
    }
}


/* "errors":[{"code","title","message","error_data":{"details"},"href"}] */
static void
wa_sim_status_failed(wa_sim_buf_t *b, wa_sim_msg_t *m)
{
    const char            *details;
    const wa_sim_error_t  *e;

    e = wa_sim_error_find(m->fail_code);
    details = m->fail_details ? m->fail_details
                              : e->details ? e->details : e->title;

    wa_sim_buf_lit(b, ",\"errors\":[{\"code\":");
    wa_sim_buf_u64(b, m->fail_code);
    wa_sim_buf_lit(b, ",\"title\":");
    wa_sim_buf_json_str(b, e->title);
    wa_sim_buf_lit(b, ",\"message\":");
    wa_sim_buf_json_str(b, e->title);
    wa_sim_buf_lit(b, ",\"error_data\":{\"details\":");
    wa_sim_buf_json_str(b, details);
    wa_sim_buf_lit(b, "},\"href\":");
    wa_sim_buf_json_str(b, WA_SIM_ERROR_HREF);
    wa_sim_buf_lit(b, "}]");
}


/*
 * "conversation" (before v24.0: on sent, with expiration_timestamp, and on
 * delivered) and "pricing" (on sent and delivered), per-message pricing
 * as since July 2025: a template is a billable marketing message, anything
 * else a free service reply inside the customer-service window.
 */
static void
wa_sim_status_billing(wa_sim_buf_t *b, wa_sim_msg_t *m, int kind)
{
    const char  *category;

    if (kind != WA_SIM_SENT && kind != WA_SIM_DELIVERED) {
        return;
    }

    category = m->template ? "marketing" : "service";

    if (!m->v24) {
        wa_sim_buf_lit(b, ",\"conversation\":{\"id\":\"");
        wa_sim_buf_str(b, m->conversation);

        if (kind == WA_SIM_SENT) {
            wa_sim_buf_lit(b, "\",\"expiration_timestamp\":\"");
            wa_sim_buf_u64(b, m->accepted_s + 24 * 3600);
        }

        wa_sim_buf_lit(b, "\",\"origin\":{\"type\":\"");
        wa_sim_buf_str(b, category);
        wa_sim_buf_lit(b, "\"}}");
    }

    wa_sim_buf_lit(b, ",\"pricing\":{\"billable\":");
    wa_sim_buf_str(b, m->template ? "true" : "false");
    wa_sim_buf_lit(b, ",\"pricing_model\":\"PMP\",\"category\":\"");
    wa_sim_buf_str(b, category);
    wa_sim_buf_lit(b, "\",\"type\":\"");
    wa_sim_buf_str(b, m->template ? "regular" : "free_customer_service");
    wa_sim_buf_lit(b, "\"}");
}


static wa_sim_phone_t *
wa_sim_phone_get(const char *id)
{
    uint32_t          h;
    const char       *s;
    wa_sim_phone_t   *p;

    /* FNV-1a */
    for (h = 2166136261u, s = id; *s; s++) {
        h = (h ^ (unsigned char) *s) * 16777619u;
    }

    h %= WA_SIM_PHONE_BUCKETS;

    for (p = wa_sim_phones[h]; p; p = p->next) {
        if (strcmp(p->id, id) == 0) {
            return p;
        }
    }

    p = wa_sim_calloc(1, sizeof(wa_sim_phone_t));
    p->id = wa_sim_strndup(id, strlen(id));
    p->flush.handler = wa_sim_phone_flush_handler;
    p->flush.data = p;
    p->retry.handler = wa_sim_phone_retry_handler;
    p->retry.data = p;
    p->next = wa_sim_phones[h];
    wa_sim_phones[h] = p;

    return p;
}


static void
wa_sim_phone_ready(wa_sim_phone_t *p)
{
    if (p->ready || p->busy || p->head == NULL) {
        return;
    }

    p->ready = 1;
    p->ready_next = NULL;
    *wa_sim_ready_tail = p;
    wa_sim_ready_tail = &p->ready_next;
}


static void
wa_sim_phone_flush_handler(wa_sim_timer_t *t)
{
    wa_sim_phone_flush(t->data);
}


static void
wa_sim_phone_retry_handler(wa_sim_timer_t *t)
{
    wa_sim_phone_t  *p;

    p = t->data;
    p->busy = 0;
    wa_sim_phone_ready(p);
    wa_sim_dispatch();
}


/* The batch becomes one signed POST in the phone number's queue. */
static void
wa_sim_phone_flush(wa_sim_phone_t *p)
{
    int                 i;
    char                hex[2 * WA_SHA256_LEN + 1];
    wa_sim_buf_t       *b, *q;
    unsigned char       digest[WA_SHA256_LEN];
    wa_sim_delivery_t  *d;
    static const char   digits[] = "0123456789abcdef";

    wa_sim_timer_del(&p->flush);

    if (p->nbatch == 0) {
        return;
    }

    b = &wa_sim_body;
    b->len = 0;

    wa_sim_buf_lit(b, "{\"object\":\"whatsapp_business_account\","
                      "\"entry\":[{\"id\":");
    wa_sim_buf_json_str(b, wa_sim_conf.waba_id);
    wa_sim_buf_lit(b, ",\"changes\":[{\"value\":{\"messaging_product\":"
                      "\"whatsapp\",\"metadata\":{\"display_phone_number\":");
    wa_sim_buf_json_str(b, wa_sim_conf.display_phone_number);
    wa_sim_buf_lit(b, ",\"phone_number_id\":");
    wa_sim_buf_json_str(b, p->id);
    wa_sim_buf_lit(b, "},\"statuses\":[");
    wa_sim_buf_add(b, p->batch.data, p->batch.len);
    wa_sim_buf_lit(b, "]},\"field\":\"messages\"}]}]}");

    if (wa_signature_compute(wa_sim_key, (unsigned char *) b->data, b->len,
                             digest) != 0)
    {
        wa_sim_log("HMAC failed: %u statuses lost", p->nbatch);
        wa_sim_stats.statuses_pending -= p->nbatch;
        p->batch.len = 0;
        p->nbatch = 0;
        return;
    }

    for (i = 0; i < WA_SHA256_LEN; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0xf];
    }

    hex[2 * WA_SHA256_LEN] = '\0';

    d = wa_sim_calloc(1, sizeof(wa_sim_delivery_t));
    d->statuses = p->nbatch;
    q = &d->request;

    wa_sim_buf_reserve(q, b->len + 512);
    wa_sim_buf_lit(q, "POST ");
    wa_sim_buf_str(q, wa_sim_path);
    wa_sim_buf_lit(q, " HTTP/1.1\r\nHost: ");
    wa_sim_buf_str(q, wa_sim_host);
    wa_sim_buf_lit(q, "\r\nUser-Agent: facebookexternalua\r\n"
                      "Accept: */*\r\n"
                      "Content-Type: application/json\r\n"
                      "X-Hub-Signature-256: sha256=");
    wa_sim_buf_str(q, hex);
    wa_sim_buf_lit(q, "\r\nContent-Length: ");
    wa_sim_buf_u64(q, b->len);
    wa_sim_buf_lit(q, "\r\n\r\n");
    wa_sim_buf_add(q, b->data, b->len);

    p->batch.len = 0;
    p->nbatch = 0;

    if (p->tail) {
        p->tail->next = d;

    } else {
        p->head = d;
    }

    p->tail = d;

    wa_sim_phone_ready(p);
    wa_sim_dispatch();
}


/* Ready phone numbers get free connections, oldest first. */
static void
wa_sim_dispatch(void)
{
    wa_sim_phone_t  *p;
    wa_sim_wconn_t  *c;

    while (wa_sim_ready_head) {
        c = wa_sim_wconn_free();
        if (c == NULL) {
            return;
        }

        p = wa_sim_ready_head;
        wa_sim_ready_head = p->ready_next;

        if (wa_sim_ready_head == NULL) {
            wa_sim_ready_tail = &wa_sim_ready_head;
        }

        p->ready = 0;
        p->busy = 1;

        wa_sim_wconn_start(c, p);
    }
}


/* The head delivery's outcome: next one, a retry later, or given up. */
static void
wa_sim_delivered(wa_sim_phone_t *p, int ok)
{
    wa_sim_delivery_t  *d;

    d = p->head;

    if (ok) {
        wa_sim_stats.webhooks_sent++;
        wa_sim_stats.statuses_sent += d->statuses;

    } else {
        wa_sim_stats.webhooks_failed++;

        if (d->failures++ < WA_SIM_RETRIES) {
            wa_sim_timer_add(&p->retry,
                             WA_SIM_RETRY_BASE_MS << (2 * (d->failures - 1)));
            return;
        }

        wa_sim_stats.webhooks_dropped++;
        wa_sim_log("webhook: %u statuses of %s dropped after %u attempts",
                   d->statuses, p->id, d->failures);
    }

    wa_sim_stats.statuses_pending -= d->statuses;

    p->head = d->next;
    if (p->head == NULL) {
        p->tail = NULL;
    }

    wa_sim_buf_free(&d->request);
    free(d);

    p->busy = 0;
    wa_sim_phone_ready(p);
}


/* an idle kept-alive connection first, else one to open, else NULL */
static wa_sim_wconn_t *
wa_sim_wconn_free(void)
{
    int              i;
    wa_sim_wconn_t  *closed;

    closed = NULL;

    for (i = 0; i < wa_sim_conf.webhook_connections; i++) {
        if (wa_sim_wconns[i].state == WA_SIM_WC_IDLE) {
            return &wa_sim_wconns[i];
        }

        if (wa_sim_wconns[i].state == WA_SIM_WC_CLOSED && closed == NULL) {
            closed = &wa_sim_wconns[i];
        }
    }

    return closed;
}


static void
wa_sim_wconn_start(wa_sim_wconn_t *c, wa_sim_phone_t *p)
{
    c->phone = p;
    c->sent = 0;
    c->in.len = 0;

    if (c->state == WA_SIM_WC_IDLE) {
        c->reused = 1;
        c->state = WA_SIM_WC_BUSY;
        wa_sim_timer_add(&c->timeout, WA_SIM_POST_TIMEOUT_MS);
        wa_sim_wconn_write(c);
        return;
    }

    c->reused = 0;

    if (wa_sim_wconn_connect(c) != 0) {
        /* failed at once: reported from the timer, not from inside the
         * dispatch loop that called us */
        c->state = WA_SIM_WC_CONNECTING;
        wa_sim_timer_at(&c->timeout, wa_sim_now);
        return;
    }

    wa_sim_timer_add(&c->timeout, WA_SIM_POST_TIMEOUT_MS);
}


static int
wa_sim_wconn_connect(wa_sim_wconn_t *c)
{
    int  fd, one;

    fd = socket(wa_sim_addr.ss_family,
                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &wa_sim_addr, wa_sim_addrlen) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    c->ev.fd = fd;
    c->state = WA_SIM_WC_CONNECTING;

    if (wa_sim_event_add(&c->ev, EPOLLOUT) == -1) {
        wa_sim_event_close(&c->ev);
        c->state = WA_SIM_WC_CLOSED;
        return -1;
    }

    return 0;
}


static void
wa_sim_wconn_handler(wa_sim_event_t *ev, uint32_t events)
{
    int              err;
    socklen_t        len;
    wa_sim_wconn_t  *c;

    c = ev->data;

    switch (c->state) {

    case WA_SIM_WC_CONNECTING:
        err = 0;
        len = sizeof(err);

        if (getsockopt(ev->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1
            || err != 0)
        {
            wa_sim_wconn_fail(c, 0);
            return;
        }

        c->state = WA_SIM_WC_BUSY;
        wa_sim_wconn_write(c);
        return;

    case WA_SIM_WC_BUSY:
        if ((events & EPOLLOUT)
            && c->sent < c->phone->head->request.len
            && wa_sim_wconn_write(c) != 0)
        {
            return;
        }

        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            wa_sim_wconn_read(c);
        }

        return;

    default:
        /* idle: the receiver closed it (or said something unasked) */
        wa_sim_wconn_close(c);
        wa_sim_dispatch();
        return;
    }
}


static void
wa_sim_wconn_timeout(wa_sim_timer_t *t)
{
    wa_sim_wconn_fail(t->data, 0);
}


/* 0, or -1 when the connection failed (and was dealt with) */
static int
wa_sim_wconn_write(wa_sim_wconn_t *c)
{
    ssize_t        n;
    wa_sim_buf_t  *q;

    q = &c->phone->head->request;

    while (c->sent < q->len) {
        n = send(c->ev.fd, q->data + c->sent, q->len - c->sent,
                 MSG_NOSIGNAL);

        if (n >= 0) {
            c->sent += n;
            continue;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN) {
            wa_sim_event_mod(&c->ev, EPOLLOUT | EPOLLIN);
            return 0;
        }

        wa_sim_wconn_fail(c, 1);
        return -1;
    }

    wa_sim_event_mod(&c->ev, EPOLLIN);

    return 0;
}


static void
wa_sim_wconn_read(wa_sim_wconn_t *c)
{
    int      rc, eof, status, keep_alive;
    ssize_t  n;

    eof = 0;

    for ( ;; ) {
        wa_sim_buf_reserve(&c->in, 4096);
        n = read(c->ev.fd, c->in.data + c->in.len, c->in.cap - c->in.len);

        if (n > 0) {
            c->in.len += n;

            if (c->in.len > WA_SIM_RESPONSE_MAX) {
                wa_sim_wconn_fail(c, 0);
                return;
            }

            continue;
        }

        if (n == 0) {
            eof = 1;
            break;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN) {
            break;
        }

        wa_sim_wconn_fail(c, 1);
        return;
    }

    rc = wa_sim_response_parse(c->in.data, c->in.len, eof, &status,
                               &keep_alive);

    if (rc == 0 && !eof) {
        return;
    }

    if (rc <= 0) {
        wa_sim_wconn_fail(c, 1);
        return;
    }

    wa_sim_wconn_done(c, status, keep_alive && !eof);
}


static void
wa_sim_wconn_done(wa_sim_wconn_t *c, int status, int keep_alive)
{
    wa_sim_phone_t  *p;

    p = c->phone;
    c->phone = NULL;
    wa_sim_timer_del(&c->timeout);

    if (keep_alive) {
        c->state = WA_SIM_WC_IDLE;
        c->in.len = 0;
        wa_sim_event_mod(&c->ev, EPOLLIN);

    } else {
        wa_sim_wconn_close(c);
    }

    wa_sim_delivered(p, status == 200);
    wa_sim_dispatch();
}


/*
 * A POST that got no answer.  On a kept-alive connection with nothing
 * read, the receiver most likely closed it as we reused it: that is
 * retried at once, once, without counting as a failed delivery.
 */
static void
wa_sim_wconn_fail(wa_sim_wconn_t *c, int may_be_stale)
{
    int              stale;
    wa_sim_phone_t  *p;

    p = c->phone;
    stale = may_be_stale && c->reused && c->in.len == 0;

    c->phone = NULL;
    wa_sim_wconn_close(c);

    if (p) {
        if (stale && !p->head->stale_retried) {
            p->head->stale_retried = 1;
            p->busy = 0;
            wa_sim_phone_ready(p);

        } else {
            wa_sim_delivered(p, 0);
        }
    }

    wa_sim_dispatch();
}


static void
wa_sim_wconn_close(wa_sim_wconn_t *c)
{
    wa_sim_timer_del(&c->timeout);
    wa_sim_event_close(&c->ev);
    c->state = WA_SIM_WC_CLOSED;
    c->in.len = 0;
}


/*
 * A whole response in p[0, len)?  1 with its status and whether the
 * connection stays open, 0 when more is needed, -1 when malformed.
 */
static int
wa_sim_response_parse(const char *p, size_t len, int eof, int *status,
    int *keep_alive)
{
    int          chunked;
    size_t       head, nlen, vlen;
    int64_t      clen;
    const char  *end, *line, *eol, *colon, *v;

    end = len >= 4 ? memmem(p, len, "\r\n\r\n", 4) : NULL;

    if (end == NULL) {
        return len > 64 * 1024 ? -1 : 0;
    }

    head = end - p + 4;

    if (head < 16 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' '
        || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9'
        || p[11] < '0' || p[11] > '9')
    {
        return -1;
    }

    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    *keep_alive = p[7] == '1';
    clen = -1;
    chunked = 0;

    eol = memmem(p, head, "\r\n", 2);

    for (line = eol + 2; line < end; line = eol + 2) {
        eol = memmem(line, end + 2 - line, "\r\n", 2);
        colon = memchr(line, ':', eol - line);

        if (colon == NULL) {
            return -1;
        }

        nlen = colon - line;

        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {
            /* void */
        }

        vlen = eol - v;

        if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            clen = strtoll(v, NULL, 10);

        } else if (nlen == 17
                   && strncasecmp(line, "Transfer-Encoding", 17) == 0)
        {
            chunked = 1;

        } else if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0) {
            if (vlen >= 5 && strncasecmp(v, "close", 5) == 0) {
                *keep_alive = 0;

            } else if (vlen >= 10 && strncasecmp(v, "keep-alive", 10) == 0) {
                *keep_alive = 1;
            }
        }
    }

    if (*status == 204 || *status == 304) {
        return 1;
    }

    if (chunked) {
        return wa_sim_chunked_whole(p + head, len - head);
    }

    if (clen >= 0) {
        return len - head >= (size_t) clen ? 1 : 0;
    }

    /* no length: the body ends with the connection */
    *keep_alive = 0;

    return eof ? 1 : 0;
}


/* 1: the chunked body is whole; 0: not yet; -1: malformed */
static int
wa_sim_chunked_whole(const char *p, size_t len)
{
    size_t       pos, size;
    const char  *eol, *s;

    pos = 0;

    for ( ;; ) {
        eol = memmem(p + pos, len - pos, "\r\n", 2);
        if (eol == NULL) {
            return 0;
        }

        size = 0;

        for (s = p + pos; s < eol && *s != ';'; s++) {
            if (size > WA_SIM_RESPONSE_MAX) {
                return -1;
            }

            if (*s >= '0' && *s <= '9') {
                size = size * 16 + (*s - '0');

            } else if ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'f') {
                size = size * 16 + ((*s | 0x20) - 'a' + 10);

            } else {
                return -1;
            }
        }

        if (s == p + pos) {
            return -1;
        }

        pos = eol - p + 2;

        if (size == 0) {
            /* trailers, up to an empty line */
            for ( ;; ) {
                eol = memmem(p + pos, len - pos, "\r\n", 2);
                if (eol == NULL) {
                    return 0;
                }

                if (eol == p + pos) {
                    return 1;
                }

                pos = eol - p + 2;
            }
        }

        if (len - pos < size + 2) {
            return 0;
        }

        pos += size + 2;
    }
}
