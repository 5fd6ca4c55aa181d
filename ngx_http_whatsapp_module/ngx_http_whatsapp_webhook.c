/*
 * whatsapp_webhook: Meta's verification handshake (GET) and signed event
 * deliveries (POST), each enqueued byte-exact into Redis before Meta is
 * told 200.
 */

#include "ngx_http_whatsapp_module.h"


#define NGX_HTTP_WHATSAPP_RETRY_AFTER  "1"


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_whatsapp_redis_cmd_t  *cmd;
    uint64_t                        started;
    u_char                          digest[WA_SHA256_LEN];
} ngx_http_whatsapp_webhook_ctx_t;


static ngx_int_t ngx_http_whatsapp_handshake(ngx_http_request_t *r);
static ngx_int_t ngx_http_whatsapp_signature(ngx_http_request_t *r,
    u_char digest[WA_SHA256_LEN]);
static void ngx_http_whatsapp_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_whatsapp_verify(ngx_http_request_t *r,
    ngx_http_whatsapp_webhook_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_whatsapp_enqueue(ngx_http_request_t *r,
    ngx_http_whatsapp_webhook_ctx_t *ctx, ngx_str_t *body);
static void ngx_http_whatsapp_enqueued(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result);
static void ngx_http_whatsapp_abandon(void *data);
static ngx_int_t ngx_http_whatsapp_respond(ngx_http_request_t *r,
    ngx_http_whatsapp_outcome_e outcome, ngx_str_t *text);


/* Each outcome's answer: the status, and a short text saying why. */
typedef struct {
    ngx_uint_t  status;
    ngx_str_t   reason;
} ngx_http_whatsapp_answer_t;


static ngx_http_whatsapp_answer_t  ngx_http_whatsapp_answers[] = {
    { NGX_HTTP_OK, ngx_null_string },                       /* enqueued */
    { NGX_HTTP_OK, ngx_null_string },                       /* verified */
    { NGX_HTTP_FORBIDDEN, ngx_string("verification refused\n") },
    { NGX_HTTP_UNAUTHORIZED, ngx_string("invalid signature\n") },
    { NGX_HTTP_BAD_REQUEST, ngx_string("bad request\n") },
    { NGX_HTTP_NOT_ALLOWED, ngx_string("method not allowed\n") },
    { NGX_HTTP_SERVICE_UNAVAILABLE,
      ngx_string("queue unavailable, retry later\n") },
    { NGX_HTTP_SERVICE_UNAVAILABLE,
      ngx_string("queue timed out, retry later\n") },
    { NGX_HTTP_SERVICE_UNAVAILABLE,
      ngx_string("queue overloaded, retry later\n") },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, ngx_string("internal error\n") }
};


ngx_int_t
ngx_http_whatsapp_webhook_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_whatsapp_webhook_ctx_t  *ctx;

    if (r->method == NGX_HTTP_GET) {
        return ngx_http_whatsapp_handshake(r);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_whatsapp_respond(r,
                                  NGX_HTTP_WHATSAPP_METHOD_NOT_ALLOWED, NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_whatsapp_webhook_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_whatsapp_module);

    /* a request without a usable signature is refused unread */

    if (ngx_http_whatsapp_signature(r, ctx->digest) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: webhook without a well-formed "
                      "X-Hub-Signature-256 header");
        return ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_BAD_SIGNATURE,
                                         NULL);
    }

    /* the HMAC and XADD need the body in one piece */
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_whatsapp_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_http_whatsapp_status_outcome(NGX_HTTP_WHATSAPP_BAD_REQUEST);
        return rc;
    }

    return NGX_DONE;
}


/*
 * GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C answers C.
 * The challenge is echoed, so anything but a plain token is refused.
 */
static ngx_int_t
ngx_http_whatsapp_handshake(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      mode, token, challenge;
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    if (ngx_http_whatsapp_arg(r, "hub.mode", &mode) != NGX_OK
        || ngx_http_whatsapp_arg(r, "hub.verify_token", &token) != NGX_OK
        || ngx_http_whatsapp_arg(r, "hub.challenge", &challenge) != NGX_OK
        || mode.len != sizeof("subscribe") - 1
        || ngx_strncmp(mode.data, "subscribe", mode.len) != 0)
    {
        return ngx_http_whatsapp_respond(r,
                                   NGX_HTTP_WHATSAPP_HANDSHAKE_REFUSED, NULL);
    }

    if (!wa_secret_equal(token.data, token.len, wlcf->verify_token.data,
                         wlcf->verify_token.len))
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: verification handshake with a wrong "
                      "hub.verify_token");
        return ngx_http_whatsapp_respond(r,
                                   NGX_HTTP_WHATSAPP_HANDSHAKE_REFUSED, NULL);
    }

    if (!wa_challenge_is_plain(challenge.data, challenge.len)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: verification handshake with a "
                      "hub.challenge that is not a plain token");
        return ngx_http_whatsapp_respond(r,
                                   NGX_HTTP_WHATSAPP_HANDSHAKE_REFUSED, NULL);
    }

    return ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_VERIFIED,
                                     &challenge);
}


/* Exactly one X-Hub-Signature-256 header, "sha256=" and 64 hex digits. */
static ngx_int_t
ngx_http_whatsapp_signature(ngx_http_request_t *r,
    u_char digest[WA_SHA256_LEN])
{
    ngx_uint_t        found;
    ngx_table_elt_t  *signature;

    static ngx_str_t  name = ngx_string("X-Hub-Signature-256");

    found = ngx_http_whatsapp_header_in(r, &name, &signature);

    if (found != 1) {
        return NGX_DECLINED;
    }

    if (wa_signature_parse(signature->value.data, signature->value.len,
                           digest)
        != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_whatsapp_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         body;
    ngx_http_whatsapp_webhook_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_whatsapp_module);

    if (ngx_http_whatsapp_request_body(r, 0, &body) != NGX_OK) {
        rc = ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_INTERNAL_ERROR,
                                       NULL);
        goto done;
    }

    if (body.len == 0) {
        rc = ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_BAD_REQUEST,
                                       NULL);
        goto done;
    }

    switch (ngx_http_whatsapp_verify(r, ctx, &body)) {
    case -1:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: webhook signature does not match any "
                      "app secret (body of %uz bytes)", body.len);
        rc = ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_BAD_SIGNATURE,
                                       NULL);
        break;

    case -2:
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "whatsapp: HMAC-SHA256 failed in OpenSSL");
        rc = ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_INTERNAL_ERROR,
                                       NULL);
        break;

    default:
        rc = ngx_http_whatsapp_enqueue(r, ctx, &body);
    }

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * The signature is over the body as Meta escaped it; a body carrying raw
 * UTF-8 (decoded on the way by some proxy) is checked again in escaped
 * form.  The body enqueued stays the bytes received.
 */
static ngx_int_t
ngx_http_whatsapp_verify(ngx_http_request_t *r,
    ngx_http_whatsapp_webhook_ctx_t *ctx, ngx_str_t *body)
{
    int                            rc;
    long                           len;
    u_char                        *escaped, *p;
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    rc = wa_signature_match(ctx->digest, body->data, body->len,
                            wlcf->app_secrets->elts,
                            wlcf->app_secrets->nelts);
    if (rc != -1) {
        return rc;
    }

    for (p = body->data; p < body->data + body->len; p++) {
        if (*p >= 0x80) {
            break;
        }
    }

    if (p == body->data + body->len) {
        return -1;
    }

    escaped = ngx_pnalloc(r->pool, WA_ESCAPED_MAX(body->len));
    if (escaped == NULL) {
        return -2;
    }

    len = wa_unicode_escape(body->data, body->len, escaped);
    if (len < 0) {
        return -1;
    }

    rc = wa_signature_match(ctx->digest, escaped, len,
                            wlcf->app_secrets->elts,
                            wlcf->app_secrets->nelts);

    if (rc >= 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "whatsapp: signature matches the \\u-escaped form of "
                      "a body with raw UTF-8");
    }

    return rc;
}




/* XADD <prefix>events * body <bytes> rcvd <ms> rid <connection.request> */
static ngx_int_t
ngx_http_whatsapp_enqueue(ngx_http_request_t *r,
    ngx_http_whatsapp_webhook_ctx_t *ctx, ngx_str_t *body)
{
    u_char                            rcvd[NGX_INT64_LEN];
    u_char                            rid[2 * NGX_ATOMIC_T_LEN + 2];
    size_t                            argvlen[9];
    ngx_int_t                         rc;
    const char                       *argv[9];
    ngx_pool_cleanup_t               *cln;
    ngx_http_whatsapp_loc_conf_t     *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_INTERNAL_ERROR,
                                         NULL);
    }

    argv[0] = "XADD";
    argvlen[0] = sizeof("XADD") - 1;
    argv[1] = (const char *) wlcf->events_key.data;
    argvlen[1] = wlcf->events_key.len;
    argv[2] = "*";
    argvlen[2] = 1;
    argv[3] = "body";
    argvlen[3] = sizeof("body") - 1;
    argv[4] = (const char *) body->data;
    argvlen[4] = body->len;
    argv[5] = "rcvd";
    argvlen[5] = sizeof("rcvd") - 1;
    argv[6] = (const char *) rcvd;
    argvlen[6] = ngx_sprintf(rcvd, "%T%03M", r->start_sec, r->start_msec)
                 - rcvd;
    argv[7] = "rid";
    argvlen[7] = sizeof("rid") - 1;
    /*
     * $connection.$connection_requests: unique within this NGINX (the
     * counter is shared by all workers) and free, where $request_id costs
     * a RAND_bytes() per request.  Log the same in access_log to match.
     */
    argv[8] = (const char *) rid;
    argvlen[8] = ngx_sprintf(rid, "%uA.%ui", r->connection->number,
                             r->connection->requests)
                 - rid;

    ctx->started = ngx_http_whatsapp_status_now_usec();

    rc = ngx_http_whatsapp_redis_send(wlcf->redis, 9, argv, argvlen,
                                      wlcf->redis_timeout,
                                      ngx_http_whatsapp_enqueued, ctx,
                                      &ctx->cmd);
    switch (rc) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return ngx_http_whatsapp_respond(r,
                                   NGX_HTTP_WHATSAPP_REDIS_UNAVAILABLE, NULL);

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: %ui Redis commands already in flight "
                      "(max_pending)", wlcf->redis->max_pending);
        return ngx_http_whatsapp_respond(r,
                                   NGX_HTTP_WHATSAPP_REDIS_OVERLOADED, NULL);

    default:
        return ngx_http_whatsapp_respond(r, NGX_HTTP_WHATSAPP_INTERNAL_ERROR,
                                         NULL);
    }

    /* should the request end first, the answer must not reach it */
    cln->handler = ngx_http_whatsapp_abandon;
    cln->data = ctx;

    return NGX_DONE;
}


static void
ngx_http_whatsapp_enqueued(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result)
{
    ngx_http_whatsapp_webhook_ctx_t  *ctx = data;

    ngx_int_t                     rc;
    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_http_whatsapp_outcome_e   outcome;

    r = ctx->request;
    c = r->connection;
    ctx->cmd = NULL;

    switch (result) {

    case NGX_HTTP_WHATSAPP_REDIS_REPLY:
        if (reply->type == REDIS_REPLY_STRING) {
            ngx_http_whatsapp_status_enqueue_latency(
                         ngx_http_whatsapp_status_now_usec() - ctx->started);
            outcome = NGX_HTTP_WHATSAPP_ENQUEUED;
            break;
        }

        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "whatsapp: Redis refused XADD: %*s",
                      (size_t) (reply->type == REDIS_REPLY_ERROR
                                ? reply->len : 0),
                      reply->str);
        outcome = NGX_HTTP_WHATSAPP_REDIS_UNAVAILABLE;
        break;

    case NGX_HTTP_WHATSAPP_REDIS_TIMEOUT:
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "whatsapp: Redis did not acknowledge the event in time");
        outcome = NGX_HTTP_WHATSAPP_REDIS_TIMED_OUT;
        break;

    default:
        outcome = NGX_HTTP_WHATSAPP_REDIS_UNAVAILABLE;
    }

    rc = ngx_http_whatsapp_respond(r, outcome, NULL);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_whatsapp_abandon(void *data)
{
    ngx_http_whatsapp_webhook_ctx_t  *ctx = data;

    if (ctx->cmd) {
        ngx_http_whatsapp_redis_abandon(ctx->cmd);
        ctx->cmd = NULL;
    }
}


/*
 * Answers with a short text/plain body (the challenge, or the reason) so
 * that Meta's delivery log and curl users see why, not an HTML page.
 */
static ngx_int_t
ngx_http_whatsapp_respond(ngx_http_request_t *r,
    ngx_http_whatsapp_outcome_e outcome, ngx_str_t *text)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_str_t         reason;
    ngx_chain_t       out;

    static ngx_str_t  allow = ngx_string("GET, POST");
    static ngx_str_t  retry = ngx_string(NGX_HTTP_WHATSAPP_RETRY_AFTER);

    ngx_http_whatsapp_status_outcome(outcome);

    reason = text ? *text : ngx_http_whatsapp_answers[outcome].reason;

    r->headers_out.status = ngx_http_whatsapp_answers[outcome].status;
    r->headers_out.content_length_n = reason.len;

    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->headers_out.status == NGX_HTTP_SERVICE_UNAVAILABLE
        || r->headers_out.status == NGX_HTTP_NOT_ALLOWED)
    {
        rc = (r->headers_out.status == NGX_HTTP_NOT_ALLOWED)
             ? ngx_http_whatsapp_header_out(r, "Allow", &allow)
             : ngx_http_whatsapp_header_out(r, "Retry-After", &retry);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_ERROR;
    }

    if (reason.len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = reason.data;
    b->last = reason.data + reason.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
