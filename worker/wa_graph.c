/*
 * Requests to the Graph API with libcurl's multi interface, driven by
 * the sender's loop (wa_graph_run), and the classification of Meta's
 * answers: which outcomes allow a retry is what keeps a message from
 * being sent twice.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <yajl/yajl_tree.h>

#include "wa_graph.h"
#include "wa_log.h"


#define WA_GRAPH_RESPONSE_MAX  65536


typedef struct wa_graph_req_s  wa_graph_req_t;

struct wa_graph_req_s {
    CURL                *easy;
    struct curl_slist   *headers;
    char                *resp;
    size_t               resp_len;
    size_t               resp_cap;
    wa_graph_done_pt     done;
    void                *data;
    wa_graph_req_t      *next;       /* the free list */
    wa_graph_req_t      *all;        /* every request, for wa_graph_free */
};


struct wa_graph_s {
    CURLM           *multi;
    char            *base;           /* "<url>/<version>/" */
    long             timeout_ms;
    int              max_in_flight;
    int              in_flight;
    wa_graph_req_t  *free;
    wa_graph_req_t  *all;
};


/* Meta's codes that say what may follow (cloud-api-facts, section 5) */
typedef struct {
    int                  code;
    wa_graph_outcome_e   outcome;
} wa_graph_code_t;

static const wa_graph_code_t  wa_graph_codes[] = {
    { 0, WA_GRAPH_TOKEN },           /* AuthException */
    { 190, WA_GRAPH_TOKEN },         /* access token expired */
    { 1, WA_GRAPH_RETRY },           /* API unknown: possibly a server error */
    { 2, WA_GRAPH_RETRY },           /* API service: temporary */
    { 131000, WA_GRAPH_RETRY },      /* something went wrong */
    { 131016, WA_GRAPH_RETRY },      /* service unavailable */
    { 131057, WA_GRAPH_RETRY },      /* maintenance mode, about a minute */
    { 133004, WA_GRAPH_RETRY },      /* server temporarily unavailable */
    { 4, WA_GRAPH_THROTTLED },       /* app call rate */
    { 80007, WA_GRAPH_THROTTLED },   /* WABA rate */
    { 130429, WA_GRAPH_THROTTLED },  /* number's throughput */
    { 131056, WA_GRAPH_PAIR_LIMIT }, /* (business, consumer) pair rate */
};


static size_t wa_graph_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void wa_graph_finish(wa_graph_t *g, wa_graph_req_t *req,
    CURLcode rc);
static void wa_graph_transport(wa_graph_req_t *req, CURLcode rc,
    wa_graph_result_t *res);
static void wa_graph_error(const yajl_val err, long http_status,
    wa_graph_result_t *res);
static const char *wa_graph_string(yajl_val v, const char **path);


wa_graph_t *
wa_graph_new(const char *base_url, const char *version, long timeout_ms,
    int max_in_flight)
{
    size_t       len;
    wa_graph_t  *g;

    g = calloc(1, sizeof(wa_graph_t));
    if (g == NULL) {
        return NULL;
    }

    len = strlen(base_url) + strlen(version) + 3;

    g->base = malloc(len);
    g->multi = curl_multi_init();

    if (g->base == NULL || g->multi == NULL) {
        wa_graph_free(g);
        return NULL;
    }

    /* "https://graph.facebook.com/" and "v25.0": one slash each */
    len = strlen(base_url);

    while (len && base_url[len - 1] == '/') {
        len--;
    }

    sprintf(g->base, "%.*s/%s/", (int) len, base_url, version);

    g->timeout_ms = timeout_ms;
    g->max_in_flight = max_in_flight;

    /* keep a connection for every request that may be in flight */
    curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long) max_in_flight);
    curl_multi_setopt(g->multi, CURLMOPT_PIPELINING,
                      (long) CURLPIPE_MULTIPLEX);

    return g;
}


void
wa_graph_free(wa_graph_t *g)
{
    wa_graph_req_t  *req;

    if (g == NULL) {
        return;
    }

    /* in flight too: cut off, their callers are told nothing */
    while ((req = g->all) != NULL) {
        g->all = req->all;
        curl_multi_remove_handle(g->multi, req->easy);
        curl_easy_cleanup(req->easy);
        curl_slist_free_all(req->headers);
        free(req->resp);
        free(req);
    }

    if (g->multi) {
        curl_multi_cleanup(g->multi);
    }

    free(g->base);
    free(g);
}


int
wa_graph_post(wa_graph_t *g, const char *phone_number_id, const char *token,
    const char *body, size_t len, wa_graph_done_pt done, void *data)
{
    char             url[2048], auth[4200];
    wa_graph_req_t  *req;

    if (g->in_flight >= g->max_in_flight) {
        return -1;
    }

    if ((size_t) snprintf(url, sizeof(url), "%s%s/messages", g->base,
                          phone_number_id) >= sizeof(url)
        || (size_t) snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
                             token) >= sizeof(auth))
    {
        return -1;
    }

    req = g->free;

    if (req) {
        g->free = req->next;
        curl_easy_reset(req->easy);

    } else {
        req = calloc(1, sizeof(wa_graph_req_t));
        if (req == NULL) {
            return -1;
        }

        req->easy = curl_easy_init();
        if (req->easy == NULL) {
            free(req);
            return -1;
        }

        req->all = g->all;
        g->all = req;
    }

    req->headers = curl_slist_append(NULL, "Content-Type: application/json");
    req->headers = req->headers ? curl_slist_append(req->headers, auth)
                                : NULL;
    /* the token is in the list now; no copy of it stays on the stack */
    OPENSSL_cleanse(auth, sizeof(auth));

    if (req->headers == NULL) {
        goto failed;
    }

    req->resp_len = 0;
    req->done = done;
    req->data = data;

    curl_easy_setopt(req->easy, CURLOPT_URL, url);
    curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE, (long) len);
    curl_easy_setopt(req->easy, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, wa_graph_write);
    curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, g->timeout_ms);
    curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     g->timeout_ms < 10000 ? g->timeout_ms : 10000L);
    curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(req->easy, CURLOPT_HTTP_VERSION,
                     (long) CURL_HTTP_VERSION_2TLS);
    /* wait for a connection being set up rather than open another */
    curl_easy_setopt(req->easy, CURLOPT_PIPEWAIT, 1L);

    if (curl_multi_add_handle(g->multi, req->easy) != CURLM_OK) {
        goto failed;
    }

    g->in_flight++;

    return 0;

failed:

    curl_slist_free_all(req->headers);
    req->headers = NULL;
    req->next = g->free;
    g->free = req;

    return -1;
}


int
wa_graph_run(wa_graph_t *g, struct curl_waitfd *extra, unsigned nextra,
    int timeout_ms)
{
    int        running, left;
    CURLMsg   *msg;
    CURLMcode  mc;

    mc = curl_multi_perform(g->multi, &running);

    if (mc == CURLM_OK) {
        mc = curl_multi_poll(g->multi, extra, nextra, timeout_ms, NULL);
    }

    if (mc == CURLM_OK) {
        mc = curl_multi_perform(g->multi, &running);
    }

    if (mc != CURLM_OK) {
        wa_log(WA_LOG_ERROR, "curl: %s", curl_multi_strerror(mc));
        return -1;
    }

    while ((msg = curl_multi_info_read(g->multi, &left)) != NULL) {
        wa_graph_req_t  *req;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
        wa_graph_finish(g, req, msg->data.result);
    }

    return 0;
}


int
wa_graph_in_flight(const wa_graph_t *g)
{
    return g->in_flight;
}


static size_t
wa_graph_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    char            *p;
    size_t           len, cap;
    wa_graph_req_t  *req = userdata;

    len = size * nmemb;

    /* Meta's answers are small; a huge one is not Meta's */
    if (req->resp_len + len + 1 > WA_GRAPH_RESPONSE_MAX) {
        return 0;
    }

    if (req->resp_len + len + 1 > req->resp_cap) {
        cap = req->resp_cap ? req->resp_cap : 1024;

        while (cap < req->resp_len + len + 1) {
            cap *= 2;
        }

        p = realloc(req->resp, cap);
        if (p == NULL) {
            return 0;
        }

        req->resp = p;
        req->resp_cap = cap;
    }

    memcpy(req->resp + req->resp_len, ptr, len);
    req->resp_len += len;
    req->resp[req->resp_len] = '\0';

    return len;
}


static void
wa_graph_finish(wa_graph_t *g, wa_graph_req_t *req, CURLcode rc)
{
    long               status;
    wa_graph_result_t  res;

    memset(&res, 0, sizeof(res));

    curl_multi_remove_handle(g->multi, req->easy);
    g->in_flight--;

    if (rc == CURLE_OK) {
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        wa_graph_classify(status, req->resp ? req->resp : "", req->resp_len,
                          &res);

    } else {
        wa_graph_transport(req, rc, &res);
    }

    curl_slist_free_all(req->headers);
    req->headers = NULL;
    req->next = g->free;
    g->free = req;

    req->done(req->data, &res);
}


/*
 * No answer.  Whether Meta may have acted is whether the request may have
 * left: not while the connection was being made (libcurl had not reached
 * the point of sending: no pre-transfer time), which is retried; after
 * that, it is not, as Meta has no idempotency key and a retry could
 * deliver the message twice.
 */
static void
wa_graph_transport(wa_graph_req_t *req, CURLcode rc, wa_graph_result_t *res)
{
    curl_off_t  pretransfer = 0;

    curl_easy_getinfo(req->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);

    if (pretransfer == 0) {
        res->outcome = WA_GRAPH_RETRY;
        snprintf(res->title, sizeof(res->title), "not sent: %s",
                 curl_easy_strerror(rc));
        return;
    }

    res->outcome = WA_GRAPH_UNKNOWN;
    snprintf(res->title, sizeof(res->title),
             "no answer after the request was sent (%s): not sent again, "
             "Meta may have accepted it", curl_easy_strerror(rc));
}


void
wa_graph_classify(long http_status, const char *body, size_t len,
    wa_graph_result_t *res)
{
    char              errbuf[128];
    yajl_val          root, v;
    const char       *s;
    static const char  *msg_id[] = { "messages", NULL };
    static const char  *id[] = { "id", NULL };
    static const char  *success[] = { "success", NULL };
    static const char  *error[] = { "error", NULL };

    (void) len;

    res->http_status = http_status;

    root = yajl_tree_parse(body, errbuf, sizeof(errbuf));

    if (root && http_status == 200) {
        v = yajl_tree_get(root, msg_id, yajl_t_array);

        if (v && YAJL_GET_ARRAY(v)->len > 0) {
            s = wa_graph_string(YAJL_GET_ARRAY(v)->values[0], id);

            if (s && strlen(s) < sizeof(res->wamid)) {
                res->outcome = WA_GRAPH_ACCEPTED;
                strcpy(res->wamid, s);
                yajl_tree_free(root);
                return;
            }
        }

        if (YAJL_IS_TRUE(yajl_tree_get(root, success, yajl_t_true))) {
            res->outcome = WA_GRAPH_DONE;
            yajl_tree_free(root);
            return;
        }
    }

    v = root ? yajl_tree_get(root, error, yajl_t_object) : NULL;

    if (v) {
        wa_graph_error(v, http_status, res);

    } else if (http_status == 429) {
        res->outcome = WA_GRAPH_THROTTLED;
        snprintf(res->title, sizeof(res->title), "HTTP 429");

    } else if (http_status >= 500) {
        /* a proxy's page in front of Meta: Meta did not act on it */
        res->outcome = WA_GRAPH_RETRY;
        snprintf(res->title, sizeof(res->title), "HTTP %ld", http_status);

    } else {
        res->outcome = WA_GRAPH_FAILED;
        snprintf(res->title, sizeof(res->title),
                 "HTTP %ld and an answer that is not Meta's", http_status);
    }

    if (root) {
        yajl_tree_free(root);
    }
}


/* {"error":{"message":"(#131047) Re-engagement message","code":131047,
 *  "error_data":{"details":"..."}, ...}} */
static void
wa_graph_error(const yajl_val err, long http_status, wa_graph_result_t *res)
{
    size_t        i;
    yajl_val      v;
    const char   *message, *details, *p;
    static const char  *code[] = { "code", NULL };
    static const char  *msg[] = { "message", NULL };
    static const char  *det[] = { "error_data", "details", NULL };

    v = yajl_tree_get(err, code, yajl_t_number);
    res->code = (v && YAJL_IS_INTEGER(v)) ? (int) YAJL_GET_INTEGER(v) : -1;

    message = wa_graph_string(err, msg);
    details = wa_graph_string(err, det);

    /* "(#131047) Re-engagement message": the code is a column already */
    if (message && message[0] == '(' && (p = strstr(message, ") ")) != NULL) {
        message = p + 2;
    }

    if (message && details && strcmp(message, details) != 0) {
        snprintf(res->title, sizeof(res->title), "%s: %s", message, details);

    } else {
        snprintf(res->title, sizeof(res->title), "%s",
                 message ? message : details ? details : "no message");
    }

    res->outcome = (http_status >= 500) ? WA_GRAPH_RETRY : WA_GRAPH_FAILED;

    for (i = 0; i < sizeof(wa_graph_codes) / sizeof(wa_graph_codes[0]); i++) {
        if (wa_graph_codes[i].code == res->code) {
            res->outcome = wa_graph_codes[i].outcome;
            break;
        }
    }

    if (res->code < 0) {
        res->code = 0;
    }
}


static const char *
wa_graph_string(yajl_val v, const char **path)
{
    v = yajl_tree_get(v, path, yajl_t_string);

    return v ? YAJL_GET_STRING(v) : NULL;
}
