/*
 * whatsapp_auth: the caller's identity and scope for the agent API.
 *
 *   whatsapp_auth jwt KEYFILE;                      a bearer token
 *   whatsapp_auth scope $agent $phones [$assigned_only];
 *                                                   another module's verdict
 *   whatsapp_auth off;                              everyone sees everything
 *
 * The token is taken from "Authorization: Bearer ...", else (GET and
 * HEAD only) the cookie wa_token, as browsers' EventSource cannot set
 * headers, else the query argument access_token.  It is never logged by
 * the module (a token in the URL is, by NGINX, wherever the request line
 * is).
 */

#include "ngx_http_whatsapp_module.h"


static char *ngx_http_whatsapp_auth_jwt(ngx_conf_t *cf,
    ngx_http_whatsapp_auth_conf_t *ac, ngx_str_t *file);
static char *ngx_http_whatsapp_auth_compile(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t **cv);
static void ngx_http_whatsapp_auth_free_key(void *data);
static ngx_int_t ngx_http_whatsapp_auth_jwt_scope(ngx_http_request_t *r,
    ngx_http_whatsapp_auth_conf_t *conf, ngx_http_whatsapp_scope_t *scope,
    ngx_str_t *reason);
static ngx_int_t ngx_http_whatsapp_auth_var_scope(ngx_http_request_t *r,
    ngx_http_whatsapp_auth_conf_t *conf, ngx_http_whatsapp_scope_t *scope,
    ngx_str_t *reason);
static ngx_int_t ngx_http_whatsapp_auth_token(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_http_whatsapp_auth_challenge(ngx_http_request_t *r,
    const char *error);
static ngx_uint_t ngx_http_whatsapp_auth_agent_ok(u_char *p, size_t len);
static ngx_int_t ngx_http_whatsapp_auth_copy(ngx_http_request_t *r,
    ngx_str_t *dst, const char *src);


/* configuration */

void
ngx_http_whatsapp_auth_create_conf(ngx_http_whatsapp_auth_conf_t *conf)
{
    /*
     * set by ngx_pcalloc() of the location configuration:
     *
     *     conf->mode = NGX_HTTP_WHATSAPP_AUTH_UNSET;
     *     conf->key = NULL;
     *     conf->agent = NULL;
     *     conf->phones = NULL;
     *     conf->assigned_only = NULL;
     *     conf->issuer = { 0, NULL };
     *     conf->audience = { 0, NULL };
     */

    conf->leeway = NGX_CONF_UNSET;
}


void
ngx_http_whatsapp_auth_merge_conf(ngx_http_whatsapp_auth_conf_t *conf,
    ngx_http_whatsapp_auth_conf_t *prev)
{
    /* the mode and its arguments are inherited together */
    if (conf->mode == NGX_HTTP_WHATSAPP_AUTH_UNSET) {
        conf->mode = prev->mode;
        conf->key = prev->key;
        conf->agent = prev->agent;
        conf->phones = prev->phones;
        conf->assigned_only = prev->assigned_only;
    }

    if (conf->issuer.data == NULL) {
        conf->issuer = prev->issuer;
    }

    if (conf->audience.data == NULL) {
        conf->audience = prev->audience;
    }

    ngx_conf_merge_sec_value(conf->leeway, prev->leeway, 30);
}


char *
ngx_http_whatsapp_auth_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_whatsapp_auth_conf_t  *ac;

    ngx_str_t  *value;

    ac = (ngx_http_whatsapp_auth_conf_t *) ((char *) conf + cmd->offset);

    if (ac->mode != NGX_HTTP_WHATSAPP_AUTH_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        ac->mode = NGX_HTTP_WHATSAPP_AUTH_OFF;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "jwt") == 0 && cf->args->nelts == 3) {
        ac->mode = NGX_HTTP_WHATSAPP_AUTH_JWT;
        return ngx_http_whatsapp_auth_jwt(cf, ac, &value[2]);
    }

    if (ngx_strcmp(value[1].data, "scope") == 0 && cf->args->nelts >= 4) {
        ac->mode = NGX_HTTP_WHATSAPP_AUTH_SCOPE;

        if (ngx_http_whatsapp_auth_compile(cf, &value[2], &ac->agent)
            != NGX_CONF_OK
            || ngx_http_whatsapp_auth_compile(cf, &value[3], &ac->phones)
               != NGX_CONF_OK
            || (cf->args->nelts == 5
                && ngx_http_whatsapp_auth_compile(cf, &value[4],
                                                  &ac->assigned_only)
                   != NGX_CONF_OK))
        {
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid arguments of \"whatsapp_auth\" (expected "
                       "\"jwt KEYFILE\", \"scope $agent $phones "
                       "[$assigned_only]\" or \"off\")");
    return NGX_CONF_ERROR;
}


/*
 * The key is read and prepared now, once; a key file that wa_jwt refuses
 * (a private key, a short secret...) fails nginx -t with its reason.
 */
static char *
ngx_http_whatsapp_auth_jwt(ngx_conf_t *cf, ngx_http_whatsapp_auth_conf_t *ac,
    ngx_str_t *file)
{
    char                 err[256];
    ngx_str_t            name, data;
    ngx_pool_cleanup_t  *cln;

    name = *file;

    if (ngx_http_whatsapp_conf_read_file(cf, &name, NGX_HTTP_WHATSAPP_FILE_MAX,
                                         &data)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_explicit_memzero(data.data, data.len);
        return NGX_CONF_ERROR;
    }

    ac->key = wa_jwt_key_load(data.data, data.len, err, sizeof(err));

    /* an HMAC secret lives on in the key only */
    ngx_explicit_memzero(data.data, data.len);

    if (ac->key == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "JWT key file \"%s\": %s", name.data, err);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_whatsapp_auth_free_key;
    cln->data = ac->key;

    return NGX_CONF_OK;
}


static char *
ngx_http_whatsapp_auth_compile(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t **cv)
{
    ngx_http_compile_complex_value_t  ccv;

    *cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (*cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = *cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_whatsapp_auth_free_key(void *data)
{
    wa_jwt_key_free(data);
}


/* requests */

ngx_int_t
ngx_http_whatsapp_auth_scope(ngx_http_request_t *r,
    ngx_http_whatsapp_auth_conf_t *conf, ngx_http_whatsapp_scope_t *scope,
    ngx_str_t *reason)
{
    ngx_memzero(scope, sizeof(ngx_http_whatsapp_scope_t));
    ngx_str_null(reason);

    switch (conf->mode) {

    case NGX_HTTP_WHATSAPP_AUTH_OFF:
        return NGX_OK;

    case NGX_HTTP_WHATSAPP_AUTH_JWT:
        return ngx_http_whatsapp_auth_jwt_scope(r, conf, scope, reason);

    case NGX_HTTP_WHATSAPP_AUTH_SCOPE:
        return ngx_http_whatsapp_auth_var_scope(r, conf, scope, reason);

    default:
        /* nginx -t refuses an API location without whatsapp_auth */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static ngx_int_t
ngx_http_whatsapp_auth_jwt_scope(ngx_http_request_t *r,
    ngx_http_whatsapp_auth_conf_t *conf, ngx_http_whatsapp_scope_t *scope,
    ngx_str_t *reason)
{
    ngx_int_t         rc;
    ngx_str_t         token;
    wa_jwt_policy_t   policy;
    wa_jwt_result_e   res;
    wa_jwt_claims_t   claims;

    rc = ngx_http_whatsapp_auth_token(r, &token);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_set(reason, "authentication required");
        return ngx_http_whatsapp_auth_challenge(r, NULL);
    }

    policy.issuer = conf->issuer.len ? (const char *) conf->issuer.data
                                     : NULL;
    policy.audience = conf->audience.len ? (const char *) conf->audience.data
                                         : NULL;
    policy.leeway = (long) conf->leeway;

    res = wa_jwt_verify(conf->key, (const char *) token.data, token.len,
                        (long long) ngx_time(), &policy, &claims);

    if (res != WA_JWT_OK) {
        reason->data = (u_char *) wa_jwt_strerror(res);
        reason->len = ngx_strlen(reason->data);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "whatsapp: API token refused: %V", reason);

        return ngx_http_whatsapp_auth_challenge(r, wa_jwt_strerror(res));
    }

    scope->assigned_only = claims.assigned_only ? 1 : 0;

    if (ngx_http_whatsapp_auth_copy(r, &scope->agent, claims.sub) != NGX_OK
        || (claims.phones[0] != '\0'
            && ngx_http_whatsapp_auth_copy(r, &scope->phones, claims.phones)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * Another module has authenticated the caller and set variables.  An
 * empty or malformed agent or phone list means that it has granted
 * nothing: 403 (the caller may be authenticated, but has no scope here).
 */
static ngx_int_t
ngx_http_whatsapp_auth_var_scope(ngx_http_request_t *r,
    ngx_http_whatsapp_auth_conf_t *conf, ngx_http_whatsapp_scope_t *scope,
    ngx_str_t *reason)
{
    char       phones[WA_JWT_PHONES_MAX];
    ngx_str_t  agent, list, only;

    if (ngx_http_complex_value(r, conf->agent, &agent) != NGX_OK
        || ngx_http_complex_value(r, conf->phones, &list) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ngx_http_whatsapp_auth_agent_ok(agent.data, agent.len)) {
        ngx_str_set(reason, "no valid agent in the scope");
        return NGX_HTTP_FORBIDDEN;
    }

    if (wa_scope_phones((const char *) list.data, list.len, phones,
                        sizeof(phones))
        != 0)
    {
        ngx_str_set(reason, "no valid phone numbers in the scope");
        return NGX_HTTP_FORBIDDEN;
    }

    scope->agent = agent;

    if (phones[0] != '\0'
        && ngx_http_whatsapp_auth_copy(r, &scope->phones, phones) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (conf->assigned_only == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, conf->assigned_only, &only) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    scope->assigned_only =
        (only.len == 1 && only.data[0] == '1')
        || (only.len == 4 && ngx_strncasecmp(only.data, (u_char *) "true", 4)
                             == 0)
        || (only.len == 3 && ngx_strncasecmp(only.data, (u_char *) "yes", 3)
                             == 0)
        || (only.len == 2 && ngx_strncasecmp(only.data, (u_char *) "on", 2)
                             == 0);

    return NGX_OK;
}


/*
 * NGX_OK and the token, NGX_DECLINED when none was presented.  A header
 * with another scheme (Basic for a proxy in front) is not a token.
 */
static ngx_int_t
ngx_http_whatsapp_auth_token(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    static ngx_str_t  cookie = ngx_string("wa_token");

    h = r->headers_in.authorization;

    if (h && h->value.len >= sizeof("Bearer") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer",
                           sizeof("Bearer") - 1)
           == 0
        && (h->value.len == sizeof("Bearer") - 1
            || h->value.data[sizeof("Bearer") - 1] == ' '))
    {
        p = h->value.data + sizeof("Bearer") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        token->data = p;
        token->len = last - p;
        return NGX_OK;
    }

    /*
     * The cookie is for reads only (EventSource cannot send headers): a
     * browser sends cookies with cross-site form posts too, and a form
     * can forge a JSON body (enctype="text/plain").
     */
    if ((r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
        && ngx_http_parse_multi_header_lines(&r->headers_in.cookies, &cookie,
                                             token)
           != NGX_DECLINED)
    {
        return NGX_OK;
    }

    return ngx_http_whatsapp_arg(r, "access_token", token);
}


/*
 * 401 with the challenge of RFC 6750: no error attribute when no token
 * was presented, invalid_token and a description otherwise.
 */
static ngx_int_t
ngx_http_whatsapp_auth_challenge(ngx_http_request_t *r, const char *error)
{
    size_t            len;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");

    if (error == NULL) {
        ngx_str_set(&h->value, "Bearer realm=\"whatsapp\"");

    } else {
        len = sizeof("Bearer realm=\"whatsapp\", error=\"invalid_token\", "
                     "error_description=\"\"") - 1
              + ngx_strlen(error);

        h->value.data = ngx_pnalloc(r->pool, len);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data,
                                   "Bearer realm=\"whatsapp\", "
                                   "error=\"invalid_token\", "
                                   "error_description=\"%s\"", error)
                       - h->value.data;
    }

    r->headers_out.www_authenticate = h;

    return NGX_HTTP_UNAUTHORIZED;
}


/* as the JWT's "sub": 1..128 printable ASCII characters but '"' and '\' */
static ngx_uint_t
ngx_http_whatsapp_auth_agent_ok(u_char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > WA_JWT_SUB_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e || p[i] == '"' || p[i] == '\\') {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_whatsapp_auth_copy(ngx_http_request_t *r, ngx_str_t *dst,
    const char *src)
{
    dst->len = ngx_strlen(src);
    dst->data = ngx_pnalloc(r->pool, dst->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, dst->len);

    return NGX_OK;
}
