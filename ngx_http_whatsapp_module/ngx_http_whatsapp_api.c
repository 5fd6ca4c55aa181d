/*
 * whatsapp_api: the agent REST API under the location's prefix.
 *
 * Each request: authenticate (whatsapp_auth), route METHOD + path to ONE
 * SQL function of sql/004_api.sql, bind the scope and the request's
 * parameters as text (never SQL built from input), run it on the
 * PostgreSQL pool, and send back the (status, body) row it returns.
 * After a successful change the worker is woken through Redis to publish
 * the outbox row the function wrote.
 *
 * Every answer of an API location is JSON, NGINX's own error pages (413,
 * 400 of a broken body...) included: a header and body filter replaces
 * them.
 */

#include "ngx_http_whatsapp_module.h"


#define NGX_HTTP_WHATSAPP_API_SCOPE_PARAMS  3


typedef enum {
    NGX_HTTP_WHATSAPP_API_LIST = 0,
    NGX_HTTP_WHATSAPP_API_COUNTS,
    NGX_HTTP_WHATSAPP_API_CREATE,
    NGX_HTTP_WHATSAPP_API_UPDATE,
    NGX_HTTP_WHATSAPP_API_READ,
    NGX_HTTP_WHATSAPP_API_MESSAGES,
    NGX_HTTP_WHATSAPP_API_SUMMARY,
    NGX_HTTP_WHATSAPP_API_STATS,
    NGX_HTTP_WHATSAPP_API_SEND,
    NGX_HTTP_WHATSAPP_API_MESSAGE_READ
} ngx_http_whatsapp_api_stmt_e;


typedef struct {
    char                                *pattern;  /* "*": one segment */
    ngx_uint_t                           method;
    ngx_http_whatsapp_api_stmt_e         stmt;
    char                               **args;     /* query, in order */
    unsigned                             id:1;     /* the "*" segment */
    unsigned                             body:1;
    unsigned                             write:1;  /* wake the worker */
    unsigned                             send:1;   /* a message to check */
} ngx_http_whatsapp_api_route_t;


typedef struct {
    ngx_http_request_t                  *request;
    ngx_http_whatsapp_api_route_t       *route;
    ngx_http_whatsapp_scope_t            scope;
    ngx_str_t                            id;
    const char                         **values;
    ngx_http_whatsapp_postgres_query_t   query;
    ngx_str_t                            allow;    /* of a 405 */
    ngx_str_t                            error;    /* replaces NGINX's page */
    unsigned                             answered:1;
    unsigned                             json_error:1;
    unsigned                             error_sent:1;
} ngx_http_whatsapp_api_ctx_t;


static ngx_int_t ngx_http_whatsapp_api_route(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx);
static ngx_uint_t ngx_http_whatsapp_api_match(const char *pattern,
    ngx_str_t *path, ngx_str_t *id);
static ngx_int_t ngx_http_whatsapp_api_args(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx, const char **values, ngx_str_t *msg);
static void ngx_http_whatsapp_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_whatsapp_api_body(ngx_http_request_t *r,
    const char **value);
static ngx_int_t ngx_http_whatsapp_api_run(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx);
static void ngx_http_whatsapp_api_answer(void *data, PGresult *res,
    ngx_http_whatsapp_postgres_result_e result);
static ngx_int_t ngx_http_whatsapp_api_result(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx, PGresult *res);
static void ngx_http_whatsapp_api_sql_error(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx, PGresult *res);
static void ngx_http_whatsapp_api_cleanup(void *data);
static void ngx_http_whatsapp_api_wake(ngx_http_request_t *r);
static void ngx_http_whatsapp_api_xadded(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result);
static ngx_int_t ngx_http_whatsapp_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message);
static ngx_int_t ngx_http_whatsapp_api_respond(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body);
static const char *ngx_http_whatsapp_api_cstr(ngx_http_request_t *r,
    ngx_str_t *s);
static ngx_uint_t ngx_http_whatsapp_api_text(u_char *p, size_t len);
static ngx_int_t ngx_http_whatsapp_api_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_whatsapp_api_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


/*
 * One statement per function, prepared once per connection.  The scope
 * comes first, as every function takes it; then the route's parameters.
 */
static ngx_http_whatsapp_postgres_stmt_t  ngx_http_whatsapp_api_stmts[] = {

    { NGX_HTTP_WHATSAPP_API_LIST, "wa_api_conversations",
      "SELECT status, body FROM wa_api_conversations($1::text, $2::text[], "
      "$3::boolean, $4::text, $5::text, $6::text, $7::text, $8::text, "
      "$9::text, $10::text, $11::text)", 11 },

    { NGX_HTTP_WHATSAPP_API_COUNTS, "wa_api_conversation_counts",
      "SELECT status, body FROM wa_api_conversation_counts($1::text, "
      "$2::text[], $3::boolean, $4::text)", 4 },

    { NGX_HTTP_WHATSAPP_API_CREATE, "wa_api_conversation_create",
      "SELECT status, body FROM wa_api_conversation_create($1::text, "
      "$2::text[], $3::boolean, $4::text)", 4 },

    { NGX_HTTP_WHATSAPP_API_UPDATE, "wa_api_conversation_update",
      "SELECT status, body FROM wa_api_conversation_update($1::text, "
      "$2::text[], $3::boolean, $4::text, $5::text)", 5 },

    { NGX_HTTP_WHATSAPP_API_READ, "wa_api_conversation_read",
      "SELECT status, body FROM wa_api_conversation_read($1::text, "
      "$2::text[], $3::boolean, $4::text)", 4 },

    { NGX_HTTP_WHATSAPP_API_MESSAGES, "wa_api_messages",
      "SELECT status, body FROM wa_api_messages($1::text, $2::text[], "
      "$3::boolean, $4::text, $5::text, $6::text)", 6 },

    { NGX_HTTP_WHATSAPP_API_SUMMARY, "wa_api_notifications_summary",
      "SELECT status, body FROM wa_api_notifications_summary($1::text, "
      "$2::text[], $3::boolean)", 3 },

    { NGX_HTTP_WHATSAPP_API_STATS, "wa_api_stats",
      "SELECT status, body FROM wa_api_stats($1::text, $2::text[], "
      "$3::boolean, $4::text, $5::text, $6::text)", 6 },

    /* these two also answer a command for the sender (the doorbell) */

    { NGX_HTTP_WHATSAPP_API_SEND, "wa_api_send",
      "SELECT status, body, command FROM wa_api_send($1::text, $2::text[], "
      "$3::boolean, $4::text, $5::text, $6::boolean, $7::boolean, $8::text, "
      "$9::text)", 9 },

    { NGX_HTTP_WHATSAPP_API_MESSAGE_READ, "wa_api_message_read",
      "SELECT status, body, command FROM wa_api_message_read($1::text, "
      "$2::text[], $3::boolean, $4::text)", 4 }
};


static char  *ngx_http_whatsapp_api_list_args[] = {
    "phone_number_id", "type", "status", "assignee", "unread", "q", "cursor",
    "limit", NULL
};

static char  *ngx_http_whatsapp_api_counts_args[] = {
    "phone_number_id", NULL
};

static char  *ngx_http_whatsapp_api_messages_args[] = {
    "before", "limit", NULL
};

static char  *ngx_http_whatsapp_api_stats_args[] = {
    "phone_number_id", "from", "to", NULL
};

static char  *ngx_http_whatsapp_api_no_args[] = { NULL };


/*
 * The first route whose pattern matches the path decides; among the
 * routes of that pattern, the method's (else 405).  Literal segments
 * come before "*" so that "counts" is not taken for an id.
 */
static ngx_http_whatsapp_api_route_t  ngx_http_whatsapp_api_routes[] = {

    { "conversations/counts", NGX_HTTP_GET, NGX_HTTP_WHATSAPP_API_COUNTS,
      ngx_http_whatsapp_api_counts_args, 0, 0, 0, 0 },

    { "conversations", NGX_HTTP_GET, NGX_HTTP_WHATSAPP_API_LIST,
      ngx_http_whatsapp_api_list_args, 0, 0, 0, 0 },

    { "conversations", NGX_HTTP_POST, NGX_HTTP_WHATSAPP_API_CREATE,
      ngx_http_whatsapp_api_no_args, 0, 1, 1, 0 },

    { "conversations/*/read", NGX_HTTP_POST, NGX_HTTP_WHATSAPP_API_READ,
      ngx_http_whatsapp_api_no_args, 1, 0, 1, 0 },

    { "conversations/*/messages", NGX_HTTP_GET,
      NGX_HTTP_WHATSAPP_API_MESSAGES, ngx_http_whatsapp_api_messages_args,
      1, 0, 0, 0 },

    { "conversations/*", NGX_HTTP_PATCH, NGX_HTTP_WHATSAPP_API_UPDATE,
      ngx_http_whatsapp_api_no_args, 1, 1, 1, 0 },

    { "notifications/summary", NGX_HTTP_GET, NGX_HTTP_WHATSAPP_API_SUMMARY,
      ngx_http_whatsapp_api_no_args, 0, 0, 0, 0 },

    { "stats", NGX_HTTP_GET, NGX_HTTP_WHATSAPP_API_STATS,
      ngx_http_whatsapp_api_stats_args, 0, 0, 0, 0 },

    { "messages", NGX_HTTP_POST, NGX_HTTP_WHATSAPP_API_SEND,
      ngx_http_whatsapp_api_no_args, 0, 1, 1, 1 },

    { "messages/*/read", NGX_HTTP_POST, NGX_HTTP_WHATSAPP_API_MESSAGE_READ,
      ngx_http_whatsapp_api_no_args, 1, 0, 1, 0 },

    { NULL, 0, 0, NULL, 0, 0, 0, 0 }
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_whatsapp_api_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_whatsapp_api_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_whatsapp_api_body_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_whatsapp_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc, route;
    ngx_str_t                      reason;
    ngx_uint_t                     n;
    ngx_http_whatsapp_api_ctx_t   *ctx;
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_whatsapp_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_whatsapp_module);

    route = ngx_http_whatsapp_api_route(r, ctx);

    if (route == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* who asks comes first: routes are no secret, but answers are */

    rc = ngx_http_whatsapp_auth_scope(r, &wlcf->auth, &ctx->scope, &reason);

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        return ngx_http_whatsapp_api_error(r, rc, "unauthorized", &reason);
    }

    if (rc == NGX_HTTP_FORBIDDEN) {
        return ngx_http_whatsapp_api_error(r, rc, "forbidden", &reason);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (route == NGX_HTTP_NOT_FOUND) {
        ngx_str_set(&reason, "no such endpoint");
        return ngx_http_whatsapp_api_error(r, NGX_HTTP_NOT_FOUND,
                                           "not_found", &reason);
    }

    if (route == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&reason, "method not allowed");
        return ngx_http_whatsapp_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                           "method_not_allowed", &reason);
    }

    /* the scope, [the id], the query arguments, [the body] */

    n = ngx_http_whatsapp_api_stmts[ctx->route->stmt].nparams;

    ctx->values = ngx_pcalloc(r->pool, n * sizeof(char *));
    if (ctx->values == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->scope.agent.data) {
        ctx->values[0] = ngx_http_whatsapp_api_cstr(r, &ctx->scope.agent);
        if (ctx->values[0] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->scope.phones.data) {
        ctx->values[1] = ngx_http_whatsapp_api_cstr(r, &ctx->scope.phones);
        if (ctx->values[1] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->values[2] = ctx->scope.assigned_only ? "true" : "false";

    n = NGX_HTTP_WHATSAPP_API_SCOPE_PARAMS;

    if (ctx->route->id) {
        ctx->values[n++] = (char *) ctx->id.data;
    }

    rc = ngx_http_whatsapp_api_args(r, ctx, &ctx->values[n], &reason);

    if (rc == NGX_HTTP_BAD_REQUEST) {
        return ngx_http_whatsapp_api_error(r, rc, "invalid_parameter",
                                           &reason);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->route->body) {
        rc = ngx_http_read_client_request_body(r,
                                         ngx_http_whatsapp_api_body_handler);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_whatsapp_api_run(r, ctx);

    if (rc == NGX_DONE) {
        /* held until the answer: NGX_DONE only releases this count */
        r->main->count++;
    }

    return rc;
}


/*
 * The path after the location's prefix.  NGX_OK with ctx->route (and
 * ctx->id, NUL-terminated), 404, or 405 with ctx->allow.
 */
static ngx_int_t
ngx_http_whatsapp_api_route(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx)
{
    u_char                         *p;
    ngx_str_t                      *allow;
    ngx_str_t                       path, id;
    ngx_uint_t                      method;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_whatsapp_api_route_t  *rt, *found;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /* a prefix location; a regex one has no prefix to strip */

    if (r->uri.len < clcf->name.len
        || ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) != 0)
    {
        return NGX_HTTP_NOT_FOUND;
    }

    path.data = r->uri.data + clcf->name.len;
    path.len = r->uri.len - clcf->name.len;

    ngx_str_null(&id);

    /* "location /v1" serves /v1/conversations, not /v1conversations */

    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] != '/') {
        if (path.len && path.data[0] != '/') {
            return NGX_HTTP_NOT_FOUND;
        }

        if (path.len) {
            path.data++;
            path.len--;
        }
    }

    found = NULL;

    for (rt = ngx_http_whatsapp_api_routes; rt->pattern; rt++) {
        if (ngx_http_whatsapp_api_match(rt->pattern, &path, &id)) {
            found = rt;
            break;
        }
    }

    if (found == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    /* HEAD is answered as GET, without the body */
    method = (r->method == NGX_HTTP_HEAD) ? NGX_HTTP_GET : r->method;

    for (rt = found; rt->pattern; rt++) {
        if (ngx_strcmp(rt->pattern, found->pattern) == 0
            && rt->method == method)
        {
            break;
        }
    }

    if (rt->pattern == NULL) {
        allow = &ctx->allow;
        allow->data = ngx_pnalloc(r->pool, sizeof("GET, HEAD, POST, PATCH"));
        if (allow->data == NULL) {
            return NGX_ERROR;
        }

        p = allow->data;

        for (rt = found; rt->pattern; rt++) {
            if (ngx_strcmp(rt->pattern, found->pattern) != 0) {
                continue;
            }

            if (p != allow->data) {
                p = ngx_cpymem(p, ", ", 2);
            }

            p = ngx_cpymem(p, rt->method == NGX_HTTP_GET ? "GET, HEAD"
                              : rt->method == NGX_HTTP_POST ? "POST"
                              : "PATCH",
                           rt->method == NGX_HTTP_GET ? 9
                              : rt->method == NGX_HTTP_POST ? 4 : 5);
        }

        allow->len = p - allow->data;

        return NGX_HTTP_NOT_ALLOWED;
    }

    ctx->route = rt;

    if (!rt->id) {
        return NGX_OK;
    }

    /*
     * The id is passed as text and checked by SQL (an id that is not a
     * uuid is not found); text that PostgreSQL would refuse cannot name
     * a conversation either.
     */
    if (!ngx_http_whatsapp_api_text(id.data, id.len)) {
        return NGX_HTTP_NOT_FOUND;
    }

    ctx->id.len = id.len;
    ctx->id.data = ngx_pnalloc(r->pool, id.len + 1);
    if (ctx->id.data == NULL) {
        return NGX_ERROR;
    }

    *ngx_cpymem(ctx->id.data, id.data, id.len) = '\0';

    return NGX_OK;
}


/* "conversations/ * /read": each "*" is one non-empty segment */
static ngx_uint_t
ngx_http_whatsapp_api_match(const char *pattern, ngx_str_t *path,
    ngx_str_t *id)
{
    u_char  *p, *last;

    p = path->data;
    last = p + path->len;

    while (*pattern) {

        if (*pattern == '*') {
            id->data = p;

            while (p < last && *p != '/') {
                p++;
            }

            id->len = p - id->data;

            if (id->len == 0) {
                return 0;
            }

            pattern++;
            continue;
        }

        if (p == last || *p != (u_char) *pattern) {
            return 0;
        }

        p++;
        pattern++;
    }

    return p == last;
}


/*
 * The route's query arguments, percent-decoded ("+" stays "+", so an
 * RFC 3339 offset needs no encoding), in the order the function takes
 * them; absent ones are NULL, unknown ones ignored.  400 and why, when
 * one is given twice (which one would the caller mean?) or is not text.
 */
static ngx_int_t
ngx_http_whatsapp_api_args(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx, const char **values, ngx_str_t *msg)
{
    u_char      *p, *last, *amp, *eq, *dst, *src, *start;
    size_t       len;
    ngx_uint_t   i;
    const char  *why;
    char       **names;

    names = ctx->route->args;
    p = r->args.data;
    last = p + r->args.len;

    for ( /* void */ ; p < last; p = (amp < last) ? amp + 1 : last) {

        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');
        if (eq == NULL) {
            eq = amp;
        }

        len = eq - p;

        for (i = 0; names[i]; i++) {
            if (ngx_strlen(names[i]) == len
                && ngx_strncmp(names[i], p, len) == 0)
            {
                break;
            }
        }

        if (names[i] == NULL) {
            continue;
        }

        if (values[i]) {
            why = "given twice";
            goto invalid;
        }

        src = (eq < amp) ? eq + 1 : amp;
        len = amp - src;

        dst = ngx_pnalloc(r->pool, len + 1);
        if (dst == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        start = dst;
        ngx_unescape_uri(&dst, &src, len, 0);
        *dst = '\0';

        if (!ngx_http_whatsapp_api_text(start, dst - start)) {
            why = "is not valid UTF-8 text";
            goto invalid;
        }

        values[i] = (const char *) start;
    }

    return NGX_OK;

invalid:

    msg->len = ngx_strlen(names[i]) + 1 + ngx_strlen(why);
    msg->data = ngx_pnalloc(r->pool, msg->len);
    if (msg->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(msg->data, "%s %s", names[i], why);

    return NGX_HTTP_BAD_REQUEST;
}


static void
ngx_http_whatsapp_api_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     msg;
    ngx_uint_t                    n;
    ngx_http_whatsapp_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_whatsapp_module);

    /* the body is the last parameter */
    n = ngx_http_whatsapp_api_stmts[ctx->route->stmt].nparams - 1;

    rc = ngx_http_whatsapp_api_body(r, &ctx->values[n]);

    if (rc == NGX_DECLINED) {
        ngx_str_set(&msg, "the request body is not valid UTF-8 text");
        rc = ngx_http_whatsapp_api_error(r, NGX_HTTP_BAD_REQUEST,
                                         "malformed_json", &msg);

    } else if (rc == NGX_OK && ctx->route->send) {
        /* what the body says goes between the scope and the body */
        rc = ngx_http_whatsapp_send_check(r, ctx->values[n],
                               &ctx->values[NGX_HTTP_WHATSAPP_API_SCOPE_PARAMS],
                               &msg);

        if (rc == NGX_HTTP_BAD_REQUEST || rc == NGX_DECLINED) {
            rc = ngx_http_whatsapp_api_error(r, NGX_HTTP_BAD_REQUEST,
                                             rc == NGX_DECLINED
                                             ? "malformed_json"
                                             : "invalid_parameter",
                                             &msg);

        } else if (rc == NGX_OK) {
            rc = ngx_http_whatsapp_api_run(r, ctx);

        } else {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (rc == NGX_OK) {
        rc = ngx_http_whatsapp_api_run(r, ctx);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * The body as one NUL-terminated text in the request pool, whether NGINX
 * kept it in memory or in a temporary file.  NGX_DECLINED: not UTF-8.
 */
static ngx_int_t
ngx_http_whatsapp_api_body(ngx_http_request_t *r, const char **value)
{
    ngx_str_t  body;

    if (ngx_http_whatsapp_request_body(r, 1, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ngx_http_whatsapp_api_text(body.data, body.len)) {
        return NGX_DECLINED;
    }

    *value = (const char *) body.data;

    return NGX_OK;
}


/* NGX_DONE: the query runs and will answer; else the response's rc. */
static ngx_int_t
ngx_http_whatsapp_api_run(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx)
{
    ngx_int_t                           rc;
    ngx_str_t                           msg;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_whatsapp_loc_conf_t       *wlcf;
    ngx_http_whatsapp_postgres_query_t *q;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = &ctx->query;

    q->stmt = &ngx_http_whatsapp_api_stmts[ctx->route->stmt];
    q->values = ctx->values;
    q->timeout = wlcf->postgres_timeout;
    q->handler = ngx_http_whatsapp_api_answer;
    q->data = ctx;
    q->log = r->connection->log;

    rc = ngx_http_whatsapp_postgres_query(wlcf->postgres, q);

    if (rc == NGX_DECLINED) {
        ngx_str_set(&msg, "the database is unavailable, retry later");
        return ngx_http_whatsapp_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "unavailable", &msg);
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: %ui API queries already wait for a "
                      "PostgreSQL connection (queue)",
                      wlcf->postgres->queue_size);
        ngx_str_set(&msg, "too many requests wait for the database, "
                          "retry later");
        return ngx_http_whatsapp_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "unavailable", &msg);
    }

    /* should the request end first, the answer must not reach it */
    cln->handler = ngx_http_whatsapp_api_cleanup;
    cln->data = ctx;

    /*
     * Learn of a client that leaves while the query runs: the request
     * ends at once and its query is abandoned.  Not while a body is
     * still being discarded (that handler reads it).
     */
    if (r->read_event_handler == ngx_http_block_reading) {
        r->read_event_handler = ngx_http_test_reading;
    }

    return NGX_DONE;
}


static void
ngx_http_whatsapp_api_answer(void *data, PGresult *res,
    ngx_http_whatsapp_postgres_result_e result)
{
    ngx_http_whatsapp_api_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_str_t            msg;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    switch (result) {

    case NGX_HTTP_WHATSAPP_POSTGRES_RESULT:
        rc = ngx_http_whatsapp_api_result(r, ctx, res);
        break;

    case NGX_HTTP_WHATSAPP_POSTGRES_TIMEOUT:
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "whatsapp: %s did not answer within "
                      "whatsapp_postgres_timeout",
                      ngx_http_whatsapp_api_stmts[ctx->route->stmt].name);
        ngx_str_set(&msg, "the database did not answer in time");
        rc = ngx_http_whatsapp_api_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                         "timeout", &msg);
        break;

    default:
        ngx_str_set(&msg, "the database is unavailable, retry later");
        rc = ngx_http_whatsapp_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "unavailable", &msg);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* The function's one row: (status integer, body text), sent as is. */
static ngx_int_t
ngx_http_whatsapp_api_result(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx, PGresult *res)
{
    ngx_int_t   status, rc;
    ngx_str_t   body, msg, command;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_http_whatsapp_api_sql_error(r, ctx, res);
        goto internal;
    }

    if (PQntuples(res) != 1 || PQnfields(res) < 2 || PQnfields(res) > 3
        || PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "whatsapp: %s returned %d rows of %d columns, "
                      "not one (status, body[, command])",
                      ngx_http_whatsapp_api_stmts[ctx->route->stmt].name,
                      PQntuples(res), PQnfields(res));
        goto internal;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (status < 200 || status > 599) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "whatsapp: %s returned status \"%s\"",
                      ngx_http_whatsapp_api_stmts[ctx->route->stmt].name,
                      PQgetvalue(res, 0, 0));
        goto internal;
    }

    /* copied: the result is cleared as soon as this returns */

    body.len = PQgetlength(res, 0, 1);
    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(body.data, PQgetvalue(res, 0, 1), body.len);

    rc = ngx_http_whatsapp_api_respond(r, status, &body);

    if (ctx->route->write && status < 300) {
        ngx_http_whatsapp_api_wake(r);
    }

    if (PQnfields(res) == 3 && !PQgetisnull(res, 0, 2)) {
        command.data = (u_char *) PQgetvalue(res, 0, 2);
        command.len = PQgetlength(res, 0, 2);
        ngx_http_whatsapp_send_ring(r, &command, &ctx->scope.agent);
    }

    return rc;

internal:

    ngx_str_set(&msg, "internal error");
    return ngx_http_whatsapp_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal_error", &msg);
}


/*
 * The API functions answer their errors as rows: an error result is a
 * bug or a broken database.  Logged without the parameters, and without
 * the message of a data exception, which may quote one.
 */
static void
ngx_http_whatsapp_api_sql_error(ngx_http_request_t *r,
    ngx_http_whatsapp_api_ctx_t *ctx, PGresult *res)
{
    char  *state, *msg;

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (state && ngx_strncmp(state, "22", 2) == 0) {
        msg = "(a data exception; not shown, it may quote a parameter)";
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "whatsapp: %s failed: SQLSTATE %s: %s",
                  ngx_http_whatsapp_api_stmts[ctx->route->stmt].name,
                  state ? state : "none", msg ? msg : "no message");
}


static void
ngx_http_whatsapp_api_cleanup(void *data)
{
    ngx_http_whatsapp_api_ctx_t  *ctx = data;

    ngx_http_whatsapp_postgres_cancel(&ctx->query);
}


/*
 * The function wrote an outbox row; the worker publishes it when told
 * (else at its next sweep).
 */
static void
ngx_http_whatsapp_api_wake(ngx_http_request_t *r)
{
    const char                    *fields[2];
    size_t                         lens[2];
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    fields[0] = "wake";
    lens[0] = sizeof("wake") - 1;
    fields[1] = "outbox";
    lens[1] = sizeof("outbox") - 1;

    ngx_http_whatsapp_api_xadd(r, &wlcf->events_key, 2, fields, lens,
                               "the worker was not woken: it publishes at "
                               "its next sweep");
}


/*
 * XADD key * fields... without waiting: the answer is not delayed for
 * it, and a failure costs only latency (consequence says what it costs).
 */
void
ngx_http_whatsapp_api_xadd(ngx_http_request_t *r, ngx_str_t *key,
    ngx_uint_t n, const char **fields, const size_t *lens,
    const char *consequence)
{
    size_t                          argvlen[3 + NGX_HTTP_WHATSAPP_XADD_MAX];
    ngx_uint_t                      i;
    const char                     *argv[3 + NGX_HTTP_WHATSAPP_XADD_MAX];
    ngx_http_whatsapp_loc_conf_t   *wlcf;
    ngx_http_whatsapp_redis_cmd_t  *cmd;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    if (wlcf->redis == NULL || key->len == 0) {
        return;
    }

    argv[0] = "XADD";
    argvlen[0] = sizeof("XADD") - 1;
    argv[1] = (const char *) key->data;
    argvlen[1] = key->len;
    argv[2] = "*";
    argvlen[2] = 1;

    for (i = 0; i < n && i < NGX_HTTP_WHATSAPP_XADD_MAX; i++) {
        argv[3 + i] = fields[i];
        argvlen[3 + i] = lens[i];
    }

    /* consequence is a literal: it outlives the request */
    if (ngx_http_whatsapp_redis_send(wlcf->redis, 3 + i, argv, argvlen,
                                     wlcf->redis_timeout,
                                     ngx_http_whatsapp_api_xadded,
                                     (void *) consequence, &cmd)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: Redis unavailable, %s", consequence);
    }
}


static void
ngx_http_whatsapp_api_xadded(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result)
{
    if (result != NGX_HTTP_WHATSAPP_REDIS_REPLY
        || reply->type == REDIS_REPLY_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "whatsapp: Redis did not take the entry, %s",
                      (const char *) data);
    }
}


/* {"error":{"code":"…","message":"…"}}; code and message need no escape */
static ngx_int_t
ngx_http_whatsapp_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message)
{
    ngx_str_t  body;

    if (ngx_http_whatsapp_error_json(r, code, message, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_whatsapp_api_respond(r, status, &body);
}


static ngx_int_t
ngx_http_whatsapp_api_respond(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_int_t                     rc;
    ngx_buf_t                    *b;
    ngx_str_t                     v;
    ngx_chain_t                   out;
    ngx_http_whatsapp_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_whatsapp_module);
    ctx->answered = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    ngx_str_set(&v, "no-store");

    if (ngx_http_whatsapp_header_out(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_str_set(&v, "1");

        if (ngx_http_whatsapp_header_out(r, "Retry-After", &v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (status == NGX_HTTP_NOT_ALLOWED
        && ngx_http_whatsapp_header_out(r, "Allow", &ctx->allow) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (body->len == 0) {
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

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* libpq takes text parameters NUL-terminated */
static const char *
ngx_http_whatsapp_api_cstr(ngx_http_request_t *r, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s->data, s->len) = '\0';

    return (const char *) p;
}


/*
 * Text PostgreSQL takes as UTF8: valid UTF-8, no NUL, no overlong forms,
 * surrogates or code points beyond U+10FFFF.
 */
static ngx_uint_t
ngx_http_whatsapp_api_text(u_char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {

        if (p[i] < 0x80) {
            if (p[i] == '\0') {
                return 0;
            }

            n = 1;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            n = 2; cp = p[i] & 0x1f; min = 0x80;

        } else if ((p[i] & 0xf0) == 0xe0) {
            n = 3; cp = p[i] & 0x0f; min = 0x800;

        } else if ((p[i] & 0xf8) == 0xf0) {
            n = 4; cp = p[i] & 0x07; min = 0x10000;

        } else {
            return 0;
        }

        if (i + n > len) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = cp << 6 | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


/* NGINX's own error pages in an API location: JSON, as our answers are */

typedef struct {
    ngx_uint_t   status;
    char        *code;
    char        *message;
} ngx_http_whatsapp_api_page_t;


static ngx_http_whatsapp_api_page_t  ngx_http_whatsapp_api_pages[] = {
    { NGX_HTTP_BAD_REQUEST, "bad_request", "bad request" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized", "authentication required" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "forbidden" },
    { NGX_HTTP_NOT_FOUND, "not_found", "not found" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "method not allowed" },
    { NGX_HTTP_REQUEST_TIME_OUT, "timeout", "request timed out" },
    { NGX_HTTP_LENGTH_REQUIRED, "length_required", "length required" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
      "the request body is larger than client_max_body_size" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "uri_too_long", "URI too long" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error", "internal error" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "unavailable, retry later" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "timeout", "timed out" },
    { 0, "error", "error" }
};


static ngx_int_t
ngx_http_whatsapp_api_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                      v;
    ngx_http_whatsapp_api_ctx_t   *ctx;
    ngx_http_whatsapp_loc_conf_t  *wlcf;
    ngx_http_whatsapp_api_page_t  *page;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    /* elsewhere the module's context is another's (the webhook's) */
    if (r != r->main || wlcf->api.line == 0) {
        return ngx_http_next_header_filter(r);
    }

    ngx_http_whatsapp_status_api(r->headers_out.status);

    ctx = ngx_http_get_module_ctx(r, ngx_http_whatsapp_module);

    if ((ctx && ctx->answered) || r->headers_out.status < 400) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_whatsapp_api_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->request = r;
        ngx_http_set_ctx(r, ctx, ngx_http_whatsapp_module);
    }

    for (page = ngx_http_whatsapp_api_pages; page->status; page++) {
        if (page->status == r->headers_out.status) {
            break;
        }
    }

    ctx->error.len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\"}}") - 1
                     + ngx_strlen(page->code) + ngx_strlen(page->message);
    ctx->error.data = ngx_pnalloc(r->pool, ctx->error.len);
    if (ctx->error.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->error.data,
                "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                page->code, page->message);

    ctx->json_error = 1;

    r->headers_out.content_length_n = ctx->error.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    ngx_str_set(&v, "no-store");

    if (ngx_http_whatsapp_header_out(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_whatsapp_api_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                     *b;
    ngx_uint_t                     last;
    ngx_chain_t                   *cl, out;
    ngx_http_whatsapp_api_ctx_t   *ctx;
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    /* elsewhere the module's context is another's (the webhook's) */
    if (r != r->main || wlcf->api.line == 0) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_whatsapp_module);

    if (ctx == NULL || !ctx->json_error) {
        return ngx_http_next_body_filter(r, in);
    }

    /* the page is dropped, the JSON goes out in its place */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            last = 1;
        }
    }

    if (!last || ctx->error_sent) {
        return NGX_OK;
    }

    ctx->error_sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error.data;
    b->last = ctx->error.data + ctx->error.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
