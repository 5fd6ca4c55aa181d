/*
 * wa-graph-sim: a local stand-in for Meta's WhatsApp Cloud API, for tests,
 * `make run` and the send benchmark.  It answers
 * POST /{version}/{phone_number_id}/messages the way the Graph API does and
 * posts signed status webhooks (sent, delivered, read, failed) back, like
 * Meta.  Tests steer it through /_sim/ endpoints on the same port.
 *
 * One thread, one epoll loop: HTTP server (wa_sim_http.c), the Graph API
 * itself (wa_sim_graph.c), rules and the request log (wa_sim_control.c),
 * the webhook client (wa_sim_webhook.c), and the loop with its timers
 * (wa_sim_event.c) over small buffers (wa_sim_buf.c).
 */

#ifndef WA_SIM_H
#define WA_SIM_H

#include <stddef.h>
#include <stdint.h>


/* ------------------------------------------------------------ buffers */

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} wa_sim_buf_t;


/* These never return NULL: a simulator out of memory aborts. */
void *wa_sim_alloc(size_t size);
void *wa_sim_calloc(size_t n, size_t size);
char *wa_sim_strndup(const char *s, size_t n);

void wa_sim_buf_reserve(wa_sim_buf_t *b, size_t more);
void wa_sim_buf_add(wa_sim_buf_t *b, const void *p, size_t n);
void wa_sim_buf_str(wa_sim_buf_t *b, const char *s);
void wa_sim_buf_u64(wa_sim_buf_t *b, uint64_t n);
void wa_sim_buf_printf(wa_sim_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void wa_sim_buf_free(wa_sim_buf_t *b);

/*
 * A JSON string, quotes included, escaped the way Meta escapes what it
 * sends: "/" as "\/" and non-ASCII as \uXXXX (lowercase hex, surrogate
 * pairs).  Invalid UTF-8 becomes \ufffd.
 */
void wa_sim_buf_json(wa_sim_buf_t *b, const char *s, size_t n);

#define wa_sim_buf_lit(b, s)      wa_sim_buf_add(b, s, sizeof(s) - 1)
#define wa_sim_buf_json_str(b, s) wa_sim_buf_json(b, s, strlen(s))

/* Characters (code points) in UTF-8 text. */
size_t wa_sim_utf8_length(const char *s, size_t n);

/* A fast non-cryptographic generator: trace ids, conversation ids. */
uint64_t wa_sim_random(void);


/* ------------------------------------------------- event loop, timers */

typedef struct wa_sim_event_s  wa_sim_event_t;
typedef struct wa_sim_timer_s  wa_sim_timer_t;

typedef void (*wa_sim_event_handler_pt)(wa_sim_event_t *ev, uint32_t events);
typedef void (*wa_sim_timer_handler_pt)(wa_sim_timer_t *t);

struct wa_sim_event_s {
    int                       fd;       /* -1 once closed */
    uint32_t                  mask;     /* the EPOLL* bits registered */
    wa_sim_event_handler_pt   handler;
    void                     *data;
};

struct wa_sim_timer_s {
    uint64_t                  when;     /* wa_sim_now's clock, ms */
    size_t                    slot;     /* 1 + heap index; 0: not armed */
    wa_sim_timer_handler_pt   handler;
    void                     *data;
};


extern uint64_t  wa_sim_now;            /* monotonic ms, once per turn */
extern int64_t   wa_sim_epoch_ms;       /* wall clock ms, once per turn */

int wa_sim_event_init(void);
void wa_sim_event_done(void);
void wa_sim_time_update(void);

int wa_sim_event_add(wa_sim_event_t *ev, uint32_t mask);
int wa_sim_event_mod(wa_sim_event_t *ev, uint32_t mask);
void wa_sim_event_close(wa_sim_event_t *ev);

/* Frees p after the current loop turn: events already fetched may name it. */
void wa_sim_defer_free(void *p);

/* One turn: wait for events or the next timer, run handlers and timers. */
void wa_sim_event_process(void);

void wa_sim_timer_at(wa_sim_timer_t *t, uint64_t when);
void wa_sim_timer_del(wa_sim_timer_t *t);

#define wa_sim_timer_add(t, ms)  wa_sim_timer_at(t, wa_sim_now + (ms))
#define wa_sim_timer_armed(t)    ((t)->slot != 0)


/* ----------------------------------------------- configuration, stats */

enum {
    WA_SIM_SENT = 0,
    WA_SIM_DELIVERED,
    WA_SIM_READ,
    WA_SIM_STAGES_MAX
};

typedef struct {
    const char  *listen;
    const char  *webhook;
    const char  *app_secret_file;
    const char  *pid_file;
    const char  *waba_id;
    const char  *display_phone_number;
    int          stages[WA_SIM_STAGES_MAX];
    int          nstages;
    uint64_t     status_delay_ms;
    size_t       max_recorded;
    int          webhook_connections;
} wa_sim_conf_t;

typedef struct {
    uint64_t     requests;          /* to /messages */
    uint64_t     accepted;          /* answered 200 */
    uint64_t     errors;            /* answered otherwise, or dropped */
    uint64_t     webhooks_sent;     /* POSTs answered 200 */
    uint64_t     webhooks_failed;   /* attempts not answered 200 */
    uint64_t     webhooks_dropped;  /* given up after the last retry */
    uint64_t     statuses_sent;     /* statuses in POSTs answered 200 */
    uint64_t     statuses_pending;  /* rendered or scheduled, not yet sent */
} wa_sim_stats_t;

extern wa_sim_conf_t   wa_sim_conf;
extern wa_sim_stats_t  wa_sim_stats;

void wa_sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


/* -------------------------------------------------------------- HTTP */

typedef struct {
    const char    *method;
    size_t         method_len;
    const char    *path;             /* without the query */
    size_t         path_len;
    const char    *query;            /* after '?', or NULL */
    size_t         query_len;
    const char    *authorization;    /* NULL: no such header */
    size_t         authorization_len;
    const char    *content_type;
    size_t         content_type_len;
    char          *body;             /* NUL-terminated in place */
    size_t         body_len;
    unsigned       http10:1;
    unsigned       keep_alive:1;
} wa_sim_request_t;

typedef struct {
    int            status;           /* 0: close the connection, no answer */
    const char    *content_type;
    const char    *headers;          /* extra lines, each ending CRLF */
    wa_sim_buf_t  *body;
    uint64_t       delay_ms;         /* answer later; the connection waits */
} wa_sim_reply_t;

int wa_sim_http_init(const char *listen);
void wa_sim_http_done(void);

/* The scratch buffer a handler writes its answer's body into. */
wa_sim_buf_t *wa_sim_http_body(void);


/* ------------------------------------------- Graph API, rules, errors */

typedef struct {
    int          code;
    int          http_status;
    const char  *title;
    const char  *details;            /* NULL: no error_data (as 133010) */
    int          subcode;            /* 0: none */
} wa_sim_error_t;

/* Meta's table; codes it does not list get a generic entry. */
const wa_sim_error_t *wa_sim_error_find(int code);

void wa_sim_graph_init(void);
void wa_sim_graph_handle(wa_sim_request_t *r, wa_sim_reply_t *reply);

enum {
    WA_SIM_ACT_ERROR = 1,
    WA_SIM_ACT_DELAY,
    WA_SIM_ACT_DROP,
    WA_SIM_ACT_HTTP,
    WA_SIM_ACT_ASYNC_FAIL
};

typedef struct {
    int          type;
    int          code;               /* error, async_fail */
    int          http_status;        /* error (0: Meta's), http */
    char        *details;            /* error, async_fail; NULL: Meta's */
    char        *body;               /* http */
    uint64_t     delay_ms;           /* delay */
} wa_sim_action_t;

typedef struct {
    const char  *phone_number_id;
    const char  *to;                 /* as given, or NULL */
    size_t       to_len;
    const char  *token;              /* bearer token, or NULL */
    size_t       token_len;
    const char  *type;               /* "text" when absent, "read" ... */
} wa_sim_match_t;

/* The first rule matching with times left (counted down), or NULL. */
const wa_sim_action_t *wa_sim_rules_match(const wa_sim_match_t *m);

void wa_sim_control_handle(wa_sim_request_t *r, wa_sim_reply_t *reply);
void wa_sim_control_done(void);

typedef struct {
    const char  *phone_number_id;
    const char  *version;
    size_t       version_len;
    const char  *authorization;      /* the header as received, or NULL */
    size_t       authorization_len;
    const char  *body;
    size_t       body_len;
    int          body_is_json;
    int          http_status;        /* 0: none (dropped) */
    const char  *wamid;              /* NULL: none */
} wa_sim_record_t;

void wa_sim_record(const wa_sim_record_t *rec);


/* ----------------------------------------------------------- webhooks */

typedef struct {
    const char             *phone_number_id;
    const char             *wamid;
    const char             *recipient;        /* digits, or a BSUID */
    int                     recipient_is_user_id;
    const char             *biz_opaque;       /* NULL: none */
    size_t                  biz_opaque_len;
    int                     template;
    int                     reaction;
    int                     v24;              /* version 24.0 or newer */
    const wa_sim_action_t  *fail;             /* async_fail, or NULL */
} wa_sim_accepted_t;

int wa_sim_webhook_init(void);
void wa_sim_webhook_done(void);

/* Schedules the statuses of an accepted message (no-op without --webhook). */
void wa_sim_webhook_accepted(const wa_sim_accepted_t *m);

#endif /* WA_SIM_H */
