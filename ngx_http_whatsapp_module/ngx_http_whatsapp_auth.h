/*
 * whatsapp_auth: who the caller of the agent API is, and which phone
 * numbers (and conversations) it may see: a JWT verified at the edge,
 * NGINX variables set by another authentication, or nobody ("off").
 */

#ifndef NGX_HTTP_WHATSAPP_AUTH_H_INCLUDED_
#define NGX_HTTP_WHATSAPP_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "wa_jwt.h"


typedef enum {
    NGX_HTTP_WHATSAPP_AUTH_UNSET = 0,
    NGX_HTTP_WHATSAPP_AUTH_OFF,
    NGX_HTTP_WHATSAPP_AUTH_JWT,
    NGX_HTTP_WHATSAPP_AUTH_SCOPE
} ngx_http_whatsapp_auth_mode_e;


typedef struct {
    ngx_http_whatsapp_auth_mode_e   mode;
    wa_jwt_key_t                   *key;            /* jwt */
    ngx_http_complex_value_t       *agent;          /* scope */
    ngx_http_complex_value_t       *phones;
    ngx_http_complex_value_t       *assigned_only;  /* NULL: false */

    ngx_str_t                       issuer;         /* NUL-terminated */
    ngx_str_t                       audience;
    time_t                          leeway;
} ngx_http_whatsapp_auth_conf_t;


/*
 * The caller's scope, bound as the first three parameters of every API
 * function: agent text (data NULL: none), phones text[] (data NULL: all
 * numbers, else a literal such as "{123,456}"), assigned_only boolean.
 */
typedef struct {
    ngx_str_t                       agent;
    ngx_str_t                       phones;
    ngx_uint_t                      assigned_only;
} ngx_http_whatsapp_scope_t;


char *ngx_http_whatsapp_auth_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_whatsapp_auth_create_conf(ngx_http_whatsapp_auth_conf_t *conf);
void ngx_http_whatsapp_auth_merge_conf(ngx_http_whatsapp_auth_conf_t *conf,
    ngx_http_whatsapp_auth_conf_t *prev);

/*
 * NGX_OK and the scope; or 401 or 403 with a short reason for the error
 * body (a 401 has its WWW-Authenticate header set already); or 500.
 */
ngx_int_t ngx_http_whatsapp_auth_scope(ngx_http_request_t *r,
    ngx_http_whatsapp_auth_conf_t *conf, ngx_http_whatsapp_scope_t *scope,
    ngx_str_t *reason);


#endif /* NGX_HTTP_WHATSAPP_AUTH_H_INCLUDED_ */
