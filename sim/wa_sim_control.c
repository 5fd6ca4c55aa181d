/*
 * The test-facing endpoints under /_sim/: rules that bend the answers,
 * the log of every /messages request, counters.
 *
 * The log keeps each request's raw bytes in 1 MB chunks (no per-request
 * allocation, freed in one sweep) and renders JSON only when asked, so
 * 100,000 requests of a benchmark cost their size and little more.
 */

#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "wa_sim.h"


#define WA_SIM_CHUNK_SIZE  (1024 * 1024)

#define WA_SIM_REC_JSON    0x01     /* the body is JSON: embed it as is */
#define WA_SIM_REC_AUTH    0x02
#define WA_SIM_REC_WAMID   0x04


typedef struct wa_sim_rule_s   wa_sim_rule_t;
typedef struct wa_sim_chunk_s  wa_sim_chunk_t;

struct wa_sim_rule_s {
    wa_sim_rule_t    *next;
    char             *phone_number_id;   /* match keys, NULL: any */
    char             *to;
    char             *token;
    char             *type;
    int64_t           times;             /* -1: until cleared */
    wa_sim_action_t   action;
};

struct wa_sim_chunk_s {
    wa_sim_chunk_t   *next;
    size_t            used;
    size_t            size;
    char              data[];
};

/* a logged request; its strings follow it in this order */
typedef struct {
    int64_t           t_ms;
    uint32_t          body_len;
    uint32_t          auth_len;
    uint16_t          http_status;
    uint8_t           pnid_len;
    uint8_t           version_len;
    uint8_t           wamid_len;
    uint8_t           flags;
    char              data[];
} wa_sim_rec_t;


static void wa_sim_control_rules(wa_sim_request_t *r, wa_sim_reply_t *reply);
static const char *wa_sim_rule_parse(wa_sim_rule_t *rule, yajl_val v);
static const char *wa_sim_rule_match_keys(wa_sim_rule_t *rule, yajl_val m);
static const char *wa_sim_rule_action(wa_sim_rule_t *rule, const char *key,
    yajl_val v);
static const char *wa_sim_rule_error(wa_sim_action_t *a, yajl_val v,
    int async);
static int wa_sim_rule_matches(const wa_sim_rule_t *rule,
    const wa_sim_match_t *m);
static int wa_sim_same(const char *want, const char *s, size_t n);
static void wa_sim_rule_free(wa_sim_rule_t *rule);
static void wa_sim_rules_free(void);
static void wa_sim_control_requests(wa_sim_reply_t *reply);
static void wa_sim_control_stats(wa_sim_reply_t *reply);
static void wa_sim_records_free(void);
static void *wa_sim_chunk_alloc(size_t size);
static void wa_sim_answer(wa_sim_reply_t *reply, int status,
    const char *json);
static int wa_sim_is(wa_sim_request_t *r, const char *method,
    const char *path);
static int64_t wa_sim_int(yajl_val v, int64_t min, int64_t max);


static wa_sim_rule_t    *wa_sim_rules;
static wa_sim_rule_t   **wa_sim_rules_tail = &wa_sim_rules;
static size_t            wa_sim_nrules;

static wa_sim_chunk_t   *wa_sim_chunks;
static wa_sim_rec_t    **wa_sim_recs;
static size_t            wa_sim_nrecs;
static size_t            wa_sim_recs_cap;
static uint64_t          wa_sim_unrecorded;


void
wa_sim_control_handle(wa_sim_request_t *r, wa_sim_reply_t *reply)
{
    if (wa_sim_is(r, "POST", "/_sim/rules")) {
        wa_sim_control_rules(r, reply);

    } else if (wa_sim_is(r, "DELETE", "/_sim/rules")) {
        wa_sim_rules_free();
        wa_sim_answer(reply, 200, "{\"ok\":true}");

    } else if (wa_sim_is(r, "GET", "/_sim/requests")) {
        wa_sim_control_requests(reply);

    } else if (wa_sim_is(r, "DELETE", "/_sim/requests")) {
        wa_sim_records_free();
        wa_sim_answer(reply, 200, "{\"ok\":true}");

    } else if (wa_sim_is(r, "GET", "/_sim/stats")) {
        wa_sim_control_stats(reply);

    } else if (wa_sim_is(r, NULL, "/_sim/rules")
               || wa_sim_is(r, NULL, "/_sim/requests")
               || wa_sim_is(r, NULL, "/_sim/stats"))
    {
        wa_sim_answer(reply, 405, "{\"error\":\"method not allowed\"}");

    } else {
        wa_sim_answer(reply, 404, "{\"error\":\"not found\"}");
    }
}


void
wa_sim_control_done(void)
{
    wa_sim_rules_free();
    wa_sim_records_free();
    free(wa_sim_recs);
    wa_sim_recs = NULL;
    wa_sim_recs_cap = 0;
}


/* ------------------------------------------------------------- rules */

static void
wa_sim_control_rules(wa_sim_request_t *r, wa_sim_reply_t *reply)
{
    char            errbuf[128];
    yajl_val        v;
    const char     *err;
    wa_sim_rule_t  *rule;

    v = yajl_tree_parse(r->body, errbuf, sizeof(errbuf));

    if (!YAJL_IS_OBJECT(v)) {
        yajl_tree_free(v);
        wa_sim_answer(reply, 400, "{\"error\":\"a rule is a JSON object\"}");
        return;
    }

    rule = wa_sim_calloc(1, sizeof(wa_sim_rule_t));
    rule->times = -1;

    err = wa_sim_rule_parse(rule, v);
    yajl_tree_free(v);

    if (err) {
        wa_sim_rule_free(rule);

        wa_sim_buf_lit(reply->body, "{\"error\":");
        wa_sim_buf_json_str(reply->body, err);
        wa_sim_buf_lit(reply->body, "}");
        reply->status = 400;
        return;
    }

    *wa_sim_rules_tail = rule;
    wa_sim_rules_tail = &rule->next;
    wa_sim_nrules++;

    wa_sim_buf_lit(reply->body, "{\"ok\":true,\"rules\":");
    wa_sim_buf_u64(reply->body, wa_sim_nrules);
    wa_sim_buf_lit(reply->body, "}");
    reply->status = 200;
}


/* NULL, or what is wrong with the rule */
static const char *
wa_sim_rule_parse(wa_sim_rule_t *rule, yajl_val v)
{
    size_t       i;
    yajl_val     val;
    const char  *key, *err;

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];
        val = v->u.object.values[i];

        if (strcmp(key, "match") == 0) {
            err = wa_sim_rule_match_keys(rule, val);

        } else if (strcmp(key, "times") == 0) {
            rule->times = wa_sim_int(val, 1, INT64_MAX);
            err = rule->times < 0 ? "times: a positive integer" : NULL;

        } else {
            err = wa_sim_rule_action(rule, key, val);
        }

        if (err) {
            return err;
        }
    }

    return rule->action.type ? NULL
                             : "no action: error, delay_ms, drop, "
                               "http_status or async_fail";
}


static const char *
wa_sim_rule_match_keys(wa_sim_rule_t *rule, yajl_val m)
{
    size_t       i;
    char       **field;
    const char  *key;

    if (!YAJL_IS_OBJECT(m)) {
        return "match: an object";
    }

    for (i = 0; i < m->u.object.len; i++) {
        key = m->u.object.keys[i];

        if (strcmp(key, "phone_number_id") == 0) {
            field = &rule->phone_number_id;

        } else if (strcmp(key, "to") == 0) {
            field = &rule->to;

        } else if (strcmp(key, "token") == 0) {
            field = &rule->token;

        } else if (strcmp(key, "type") == 0) {
            field = &rule->type;

        } else {
            return "match: keys are phone_number_id, to, token, type";
        }

        if (!YAJL_IS_STRING(m->u.object.values[i]) || *field) {
            return "match: each key once, a string";
        }

        *field = wa_sim_strndup(m->u.object.values[i]->u.string,
                                strlen(m->u.object.values[i]->u.string));
    }

    return NULL;
}


static const char *
wa_sim_rule_action(wa_sim_rule_t *rule, const char *key, yajl_val v)
{
    wa_sim_action_t  *a;

    a = &rule->action;

    /* "body" goes with "http_status", whichever comes first */
    if (strcmp(key, "body") == 0) {
        if (!YAJL_IS_STRING(v) || a->body) {
            return "body: a string";
        }

        a->body = wa_sim_strndup(v->u.string, strlen(v->u.string));
        return NULL;
    }

    if (a->type) {
        return "one action per rule";
    }

    if (strcmp(key, "error") == 0) {
        a->type = WA_SIM_ACT_ERROR;
        return wa_sim_rule_error(a, v, 0);
    }

    if (strcmp(key, "async_fail") == 0) {
        a->type = WA_SIM_ACT_ASYNC_FAIL;
        return wa_sim_rule_error(a, v, 1);
    }

    if (strcmp(key, "delay_ms") == 0) {
        a->type = WA_SIM_ACT_DELAY;
        a->delay_ms = wa_sim_int(v, 0, 3600 * 1000);
        return (int64_t) a->delay_ms < 0 ? "delay_ms: 0 to 3600000" : NULL;
    }

    if (strcmp(key, "drop") == 0) {
        a->type = WA_SIM_ACT_DROP;
        return YAJL_IS_STRING(v) && strcmp(v->u.string, "close") == 0
               ? NULL : "drop: \"close\"";
    }

    if (strcmp(key, "http_status") == 0) {
        a->type = WA_SIM_ACT_HTTP;
        a->http_status = wa_sim_int(v, 100, 599);
        return a->http_status < 0 ? "http_status: 100 to 599" : NULL;
    }

    return "unknown key";
}


/* {"code":131047,"http_status":400,"details":"..."} */
static const char *
wa_sim_rule_error(wa_sim_action_t *a, yajl_val v, int async)
{
    size_t       i;
    yajl_val     val;
    const char  *key;

    if (!YAJL_IS_OBJECT(v)) {
        return "error, async_fail: an object with a code";
    }

    a->code = -1;

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];
        val = v->u.object.values[i];

        if (strcmp(key, "code") == 0) {
            a->code = wa_sim_int(val, 0, 99999999);

        } else if (strcmp(key, "details") == 0 && YAJL_IS_STRING(val)
                   && a->details == NULL)
        {
            a->details = wa_sim_strndup(val->u.string, strlen(val->u.string));

        } else if (strcmp(key, "http_status") == 0 && !async) {
            a->http_status = wa_sim_int(val, 100, 599);

            if (a->http_status < 0) {
                return "error.http_status: 100 to 599";
            }

        } else {
            return async ? "async_fail: code and details"
                         : "error: code, http_status and details";
        }
    }

    return a->code < 0 ? "error, async_fail: a code (integer)" : NULL;
}


const wa_sim_action_t *
wa_sim_rules_match(const wa_sim_match_t *m)
{
    wa_sim_rule_t  *rule;

    for (rule = wa_sim_rules; rule; rule = rule->next) {
        if (rule->times != 0 && wa_sim_rule_matches(rule, m)) {
            if (rule->times > 0) {
                rule->times--;
            }

            return &rule->action;
        }
    }

    return NULL;
}


static int
wa_sim_rule_matches(const wa_sim_rule_t *rule, const wa_sim_match_t *m)
{
    size_t       i, n;
    const char  *p;
    char         digits[64];

    if (rule->phone_number_id
        && strcmp(rule->phone_number_id, m->phone_number_id) != 0)
    {
        return 0;
    }

    if (rule->token && !wa_sim_same(rule->token, m->token, m->token_len)) {
        return 0;
    }

    if (rule->type && (m->type == NULL || strcmp(rule->type, m->type) != 0)) {
        return 0;
    }

    if (rule->to == NULL || wa_sim_same(rule->to, m->to, m->to_len)) {
        return 1;
    }

    /* "+1 650-555-1234" also matches a rule for "16505551234" */
    if (m->to == NULL) {
        return 0;
    }

    for (n = 0, i = 0, p = m->to; i < m->to_len && n < sizeof(digits); i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            digits[n++] = p[i];
        }
    }

    return wa_sim_same(rule->to, digits, n);
}


static int
wa_sim_same(const char *want, const char *s, size_t n)
{
    return s && strlen(want) == n && memcmp(want, s, n) == 0;
}


static void
wa_sim_rule_free(wa_sim_rule_t *rule)
{
    free(rule->phone_number_id);
    free(rule->to);
    free(rule->token);
    free(rule->type);
    free(rule->action.details);
    free(rule->action.body);
    free(rule);
}


static void
wa_sim_rules_free(void)
{
    wa_sim_rule_t  *rule, *next;

    for (rule = wa_sim_rules; rule; rule = next) {
        next = rule->next;
        wa_sim_rule_free(rule);
    }

    wa_sim_rules = NULL;
    wa_sim_rules_tail = &wa_sim_rules;
    wa_sim_nrules = 0;
}


/* ---------------------------------------------------------- requests */

void
wa_sim_record(const wa_sim_record_t *rec)
{
    size_t         size, pnid_len, wamid_len;
    char          *p;
    wa_sim_rec_t  *r;

    if (wa_sim_nrecs >= wa_sim_conf.max_recorded) {
        wa_sim_unrecorded++;
        return;
    }

    pnid_len = strlen(rec->phone_number_id);
    wamid_len = rec->wamid ? strlen(rec->wamid) : 0;

    size = sizeof(wa_sim_rec_t) + pnid_len + rec->version_len
           + rec->authorization_len + wamid_len + rec->body_len;

    r = wa_sim_chunk_alloc(size);
    r->t_ms = wa_sim_epoch_ms;
    r->body_len = rec->body_len;
    r->auth_len = rec->authorization_len;
    r->http_status = rec->http_status;
    r->pnid_len = pnid_len;
    r->version_len = rec->version_len;
    r->wamid_len = wamid_len;
    r->flags = (rec->body_is_json ? WA_SIM_REC_JSON : 0)
               | (rec->authorization ? WA_SIM_REC_AUTH : 0)
               | (rec->wamid ? WA_SIM_REC_WAMID : 0);

    p = r->data;
    memcpy(p, rec->phone_number_id, pnid_len);
    p += pnid_len;
    memcpy(p, rec->version, rec->version_len);
    p += rec->version_len;

    if (rec->authorization_len) {
        memcpy(p, rec->authorization, rec->authorization_len);
        p += rec->authorization_len;
    }

    if (wamid_len) {
        memcpy(p, rec->wamid, wamid_len);
        p += wamid_len;
    }

    if (rec->body_len) {
        memcpy(p, rec->body, rec->body_len);
    }

    if (wa_sim_nrecs == wa_sim_recs_cap) {
        wa_sim_recs_cap = wa_sim_recs_cap ? 2 * wa_sim_recs_cap : 1024;
        wa_sim_recs = realloc(wa_sim_recs,
                              wa_sim_recs_cap * sizeof(wa_sim_rec_t *));
        if (wa_sim_recs == NULL) {
            abort();
        }
    }

    wa_sim_recs[wa_sim_nrecs++] = r;
}


static void *
wa_sim_chunk_alloc(size_t size)
{
    void            *p;
    wa_sim_chunk_t  *c;

    size = (size + 7) & ~(size_t) 7;
    c = wa_sim_chunks;

    if (c == NULL || c->size - c->used < size) {
        c = wa_sim_alloc(sizeof(wa_sim_chunk_t)
                         + (size > WA_SIM_CHUNK_SIZE ? size
                                                     : WA_SIM_CHUNK_SIZE));
        c->size = size > WA_SIM_CHUNK_SIZE ? size : WA_SIM_CHUNK_SIZE;
        c->used = 0;
        c->next = wa_sim_chunks;
        wa_sim_chunks = c;
    }

    p = c->data + c->used;
    c->used += size;

    return p;
}


/*
 * [{"t_ms":..,"phone_number_id":"..","version":"v21.0","authorization":
 *   "Bearer .."|null,"body":<as sent>,"http_status":200|null,
 *   "wamid":".."|null}, ...]
 */
static void
wa_sim_control_requests(wa_sim_reply_t *reply)
{
    size_t         i;
    const char    *p;
    wa_sim_buf_t  *b;
    wa_sim_rec_t  *r;

    b = reply->body;
    wa_sim_buf_lit(b, "[");

    for (i = 0; i < wa_sim_nrecs; i++) {
        r = wa_sim_recs[i];
        p = r->data;

        wa_sim_buf_str(b, i ? ",\n{\"t_ms\":" : "{\"t_ms\":");
        wa_sim_buf_u64(b, r->t_ms);
        wa_sim_buf_lit(b, ",\"phone_number_id\":");
        wa_sim_buf_json(b, p, r->pnid_len);
        p += r->pnid_len;
        wa_sim_buf_lit(b, ",\"version\":");
        wa_sim_buf_json(b, p, r->version_len);
        p += r->version_len;
        wa_sim_buf_lit(b, ",\"authorization\":");

        if (r->flags & WA_SIM_REC_AUTH) {
            wa_sim_buf_json(b, p, r->auth_len);
            p += r->auth_len;

        } else {
            wa_sim_buf_lit(b, "null");
        }

        wa_sim_buf_lit(b, ",\"body\":");

        if (r->flags & WA_SIM_REC_JSON) {
            wa_sim_buf_add(b, p + r->wamid_len, r->body_len);

        } else {
            wa_sim_buf_json(b, p + r->wamid_len, r->body_len);
        }

        wa_sim_buf_lit(b, ",\"http_status\":");

        if (r->http_status) {
            wa_sim_buf_u64(b, r->http_status);

        } else {
            wa_sim_buf_lit(b, "null");
        }

        wa_sim_buf_lit(b, ",\"wamid\":");

        if (r->flags & WA_SIM_REC_WAMID) {
            wa_sim_buf_json(b, p, r->wamid_len);

        } else {
            wa_sim_buf_lit(b, "null");
        }

        wa_sim_buf_lit(b, "}");
    }

    wa_sim_buf_lit(b, "]\n");
    reply->status = 200;
}


static void
wa_sim_records_free(void)
{
    wa_sim_chunk_t  *c, *next;

    for (c = wa_sim_chunks; c; c = next) {
        next = c->next;
        free(c);
    }

    wa_sim_chunks = NULL;
    wa_sim_nrecs = 0;
    wa_sim_unrecorded = 0;

    /* a benchmark's million pointers need not outlive it */
    if (wa_sim_recs_cap > 65536) {
        free(wa_sim_recs);
        wa_sim_recs = NULL;
        wa_sim_recs_cap = 0;
    }
}


static void
wa_sim_control_stats(wa_sim_reply_t *reply)
{
    wa_sim_buf_printf(reply->body,
        "{\"requests\":%llu,\"accepted\":%llu,\"errors\":%llu,"
        "\"webhooks_sent\":%llu,\"webhooks_failed\":%llu,"
        "\"webhooks_dropped\":%llu,\"statuses_sent\":%llu,"
        "\"statuses_pending\":%llu,\"recorded\":%zu,\"unrecorded\":%llu,"
        "\"rules\":%zu}\n",
        (unsigned long long) wa_sim_stats.requests,
        (unsigned long long) wa_sim_stats.accepted,
        (unsigned long long) wa_sim_stats.errors,
        (unsigned long long) wa_sim_stats.webhooks_sent,
        (unsigned long long) wa_sim_stats.webhooks_failed,
        (unsigned long long) wa_sim_stats.webhooks_dropped,
        (unsigned long long) wa_sim_stats.statuses_sent,
        (unsigned long long) wa_sim_stats.statuses_pending,
        wa_sim_nrecs, (unsigned long long) wa_sim_unrecorded,
        wa_sim_nrules);
    reply->status = 200;
}


/* ----------------------------------------------------------- helpers */

static void
wa_sim_answer(wa_sim_reply_t *reply, int status, const char *json)
{
    wa_sim_buf_str(reply->body, json);
    wa_sim_buf_lit(reply->body, "\n");
    reply->status = status;
}


/* method NULL: any */
static int
wa_sim_is(wa_sim_request_t *r, const char *method, const char *path)
{
    size_t  n;

    n = strlen(path);

    if (r->path_len != n || memcmp(r->path, path, n) != 0) {
        return 0;
    }

    return method == NULL || (r->method_len == strlen(method)
                              && memcmp(r->method, method, r->method_len)
                                 == 0);
}


/* an integer within [min, max], or -1 */
static int64_t
wa_sim_int(yajl_val v, int64_t min, int64_t max)
{
    if (!YAJL_IS_INTEGER(v)) {
        return -1;
    }

    if (v->u.number.i < min || v->u.number.i > max) {
        return -1;
    }

    return v->u.number.i;
}
