/*
 * ngx_http_whatsapp_module: directives, configuration and process hooks.
 */

#include "ngx_http_whatsapp_module.h"


#define NGX_HTTP_WHATSAPP_DEFAULT_PREFIX       "wa:"
#define NGX_HTTP_WHATSAPP_DEFAULT_MAX_PENDING  1024

/* what nginx -t says to a location that serves agents without whatsapp_auth */
#define NGX_HTTP_WHATSAPP_AUTH_MISSING                                        \
    "whatsapp_auth: add \"whatsapp_auth jwt KEYFILE;\", "                      \
    "\"whatsapp_auth scope $agent $phones;\" or, to serve it "                 \
    "unauthenticated, \"whatsapp_auth off;\""


static ngx_int_t ngx_http_whatsapp_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_whatsapp_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_whatsapp_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_whatsapp_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_whatsapp_merge_events(ngx_conf_t *cf,
    ngx_http_whatsapp_loc_conf_t *conf);
static ngx_int_t ngx_http_whatsapp_needs(ngx_conf_t *cf,
    const char *directive, ngx_http_whatsapp_conf_at_t *at,
    const char *missing);
static ngx_int_t ngx_http_whatsapp_key(ngx_conf_t *cf, ngx_str_t *prefix,
    const char *name, ngx_str_t *key);
static ngx_int_t ngx_http_whatsapp_init_process(ngx_cycle_t *cycle);
static void ngx_http_whatsapp_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_whatsapp_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_whatsapp_redis_param(ngx_conf_t *cf,
    ngx_http_whatsapp_redis_t *rd, ngx_str_t *param);
static char *ngx_http_whatsapp_redis_address(ngx_conf_t *cf,
    ngx_http_whatsapp_redis_t *rd, ngx_str_t *addr);
static ngx_http_whatsapp_redis_t *ngx_http_whatsapp_redis_shared(
    ngx_http_whatsapp_main_conf_t *wmcf, ngx_http_whatsapp_redis_t *rd);
static char *ngx_http_whatsapp_set_handler(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_whatsapp_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_whatsapp_app_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_whatsapp_verify_token(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_whatsapp_read_secret(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t from_file, ngx_str_t *secret);
static void ngx_http_whatsapp_free_hmac_key(void *data);


/* a heartbeat is due at most once a second (the tick); replays of up to
 * 100,000 entries (the worker's default stream cap); at least one frame */
static ngx_conf_num_bounds_t  ngx_http_whatsapp_sse_heartbeat_bounds = {
    ngx_conf_check_num_bounds, 1000, 3600000
};

static ngx_conf_num_bounds_t  ngx_http_whatsapp_sse_replay_bounds = {
    ngx_conf_check_num_bounds, 0, 100000
};

static ngx_conf_num_bounds_t  ngx_http_whatsapp_sse_buffer_bounds = {
    ngx_conf_check_num_bounds, 4096, 1073741824
};


static ngx_command_t  ngx_http_whatsapp_commands[] = {

    { ngx_string("whatsapp_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_1MORE,
      ngx_http_whatsapp_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("whatsapp_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, redis_timeout),
      NULL },

    { ngx_string("whatsapp_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, prefix),
      NULL },

    { ngx_string("whatsapp_webhook"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_whatsapp_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, webhook),
      ngx_http_whatsapp_webhook_handler },

    { ngx_string("whatsapp_verify_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_whatsapp_verify_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("whatsapp_verify_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_whatsapp_verify_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("whatsapp_app_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_whatsapp_app_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("whatsapp_app_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_whatsapp_app_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("whatsapp_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_whatsapp_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("whatsapp_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_1MORE,
      ngx_http_whatsapp_postgres_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("whatsapp_postgres_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, postgres_timeout),
      NULL },

    { ngx_string("whatsapp_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_whatsapp_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, api),
      ngx_http_whatsapp_api_handler },

    { ngx_string("whatsapp_events"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_whatsapp_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, events),
      ngx_http_whatsapp_sse_handler },

    { ngx_string("whatsapp_sse_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, sse_heartbeat),
      &ngx_http_whatsapp_sse_heartbeat_bounds },

    { ngx_string("whatsapp_sse_replay"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, sse_replay),
      &ngx_http_whatsapp_sse_replay_bounds },

    { ngx_string("whatsapp_sse_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, sse_buffer),
      &ngx_http_whatsapp_sse_buffer_bounds },

    { ngx_string("whatsapp_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF
      |NGX_CONF_TAKE1234,
      ngx_http_whatsapp_auth_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, auth),
      NULL },

    { ngx_string("whatsapp_auth_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, auth.issuer),
      NULL },

    { ngx_string("whatsapp_auth_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, auth.audience),
      NULL },

    { ngx_string("whatsapp_auth_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_whatsapp_loc_conf_t, auth.leeway),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_whatsapp_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_whatsapp_postconfiguration,   /* postconfiguration */

    ngx_http_whatsapp_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_whatsapp_create_loc_conf,     /* create location configuration */
    ngx_http_whatsapp_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_whatsapp_module = {
    NGX_MODULE_V1,
    &ngx_http_whatsapp_module_ctx,         /* module context */
    ngx_http_whatsapp_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_whatsapp_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_whatsapp_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_whatsapp_postconfiguration(ngx_conf_t *cf)
{
    return ngx_http_whatsapp_api_init(cf);
}


static void *
ngx_http_whatsapp_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_whatsapp_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_whatsapp_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&wmcf->redis, cf->pool, 1,
                       sizeof(ngx_http_whatsapp_redis_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&wmcf->postgres, cf->pool, 1,
                       sizeof(ngx_http_whatsapp_postgres_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&wmcf->relays, cf->pool, 1,
                       sizeof(ngx_http_whatsapp_relay_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_http_whatsapp_status_add_zone(cf) != NGX_OK) {
        return NULL;
    }

    return wmcf;
}


static void *
ngx_http_whatsapp_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    wlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_whatsapp_loc_conf_t));
    if (wlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     wlcf->prefix = { 0, NULL };
     *     wlcf->events_key = { 0, NULL };
     *     wlcf->outbox_key = { 0, NULL };
     *     wlcf->verify_token = { 0, NULL };
     *     wlcf->webhook = { 0 };
     *     wlcf->api = { 0 };
     *     wlcf->events = { 0 };
     *     wlcf->relay = NULL;
     */

    wlcf->redis = NGX_CONF_UNSET_PTR;
    wlcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->app_secrets = NGX_CONF_UNSET_PTR;
    wlcf->postgres = NGX_CONF_UNSET_PTR;
    wlcf->postgres_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->sse_heartbeat = NGX_CONF_UNSET_MSEC;
    wlcf->sse_replay = NGX_CONF_UNSET_UINT;
    wlcf->sse_buffer = NGX_CONF_UNSET_SIZE;

    ngx_http_whatsapp_auth_create_conf(&wlcf->auth);

    return wlcf;
}


static char *
ngx_http_whatsapp_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_whatsapp_loc_conf_t  *prev = parent;
    ngx_http_whatsapp_loc_conf_t  *conf = child;

    const char  *missing;

    ngx_conf_merge_ptr_value(conf->redis, prev->redis, NULL);
    ngx_conf_merge_msec_value(conf->redis_timeout, prev->redis_timeout, 500);
    ngx_conf_merge_str_value(conf->prefix, prev->prefix,
                             NGX_HTTP_WHATSAPP_DEFAULT_PREFIX);
    ngx_conf_merge_ptr_value(conf->app_secrets, prev->app_secrets, NULL);
    ngx_conf_merge_str_value(conf->verify_token, prev->verify_token, "");
    ngx_conf_merge_ptr_value(conf->postgres, prev->postgres, NULL);
    ngx_conf_merge_msec_value(conf->postgres_timeout, prev->postgres_timeout,
                              5000);
    ngx_conf_merge_msec_value(conf->sse_heartbeat, prev->sse_heartbeat, 15000);
    ngx_conf_merge_uint_value(conf->sse_replay, prev->sse_replay, 1000);
    ngx_conf_merge_size_value(conf->sse_buffer, prev->sse_buffer,
                              256 * 1024);

    ngx_http_whatsapp_auth_merge_conf(&conf->auth, &prev->auth);

    /* secure by default: a location that cannot authenticate does not
     * start */

    if (conf->webhook.line) {

        if (conf->app_secrets == NULL) {
            missing = "whatsapp_app_secret or whatsapp_app_secret_file";

        } else if (conf->verify_token.len == 0) {
            missing = "whatsapp_verify_token or whatsapp_verify_token_file";

        } else if (conf->redis == NULL) {
            missing = "whatsapp_redis in the http or server block";

        } else {
            missing = NULL;
        }

        if (ngx_http_whatsapp_needs(cf, "whatsapp_webhook", &conf->webhook,
                                    missing)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->api.line) {

        if (conf->auth.mode == NGX_HTTP_WHATSAPP_AUTH_UNSET) {
            missing = NGX_HTTP_WHATSAPP_AUTH_MISSING;

        } else if (conf->postgres == NULL) {
            missing = "whatsapp_postgres in the http or server block";

        } else {
            missing = NULL;
        }

        if (ngx_http_whatsapp_needs(cf, "whatsapp_api", &conf->api, missing)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->events.line
        && ngx_http_whatsapp_merge_events(cf, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* the webhook's stream; the API wakes the worker through it */

    if (conf->redis == NULL || !(conf->webhook.line || conf->api.line)) {
        return NGX_CONF_OK;
    }

    if (ngx_http_whatsapp_key(cf, &conf->prefix, "events", &conf->events_key)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* the sender's doorbells */

    if (conf->api.line
        && ngx_http_whatsapp_key(cf, &conf->prefix, "outbox",
                                 &conf->outbox_key) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* A directive that cannot work without another: where it is, and what. */
static ngx_int_t
ngx_http_whatsapp_needs(ngx_conf_t *cf, const char *directive,
    ngx_http_whatsapp_conf_at_t *at, const char *missing)
{
    if (missing == NULL) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "\"%s\" in %V:%ui needs %s",
                  directive, &at->file, at->line, missing);

    return NGX_ERROR;
}


/* prefix + name, NUL-terminated (a relay logs its key by it) */
static ngx_int_t
ngx_http_whatsapp_key(ngx_conf_t *cf, ngx_str_t *prefix, const char *name,
    ngx_str_t *key)
{
    size_t  len;

    len = ngx_strlen(name);

    key->len = prefix->len + len;
    key->data = ngx_pnalloc(cf->pool, key->len + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(key->data, prefix->data, prefix->len), name,
               len + 1);

    return NGX_OK;
}


/* whatsapp_events: secure by default, and the relay of its stream */
static char *
ngx_http_whatsapp_merge_events(ngx_conf_t *cf,
    ngx_http_whatsapp_loc_conf_t *conf)
{
    ngx_str_t    key;
    const char  *missing;

    if (conf->auth.mode == NGX_HTTP_WHATSAPP_AUTH_UNSET) {
        missing = NGX_HTTP_WHATSAPP_AUTH_MISSING;

    } else if (conf->redis == NULL) {
        missing = "whatsapp_redis in the http or server block";

    } else {
        missing = NULL;
    }

    if (ngx_http_whatsapp_needs(cf, "whatsapp_events", &conf->events, missing)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_whatsapp_key(cf, &conf->prefix, "updates", &key) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    conf->relay = ngx_http_whatsapp_relay_get(cf, conf->redis, &key);

    return conf->relay ? NGX_CONF_OK : NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_whatsapp_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_whatsapp_redis_t     **rd;
    ngx_http_whatsapp_relay_t     **rl;
    ngx_http_whatsapp_postgres_t  **pg;
    ngx_http_whatsapp_main_conf_t  *wmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_whatsapp_module);
    if (wmcf == NULL) {
        return NGX_OK;
    }

    rd = wmcf->redis.elts;

    for (i = 0; i < wmcf->redis.nelts; i++) {
        if (ngx_http_whatsapp_redis_init_worker(rd[i], cycle) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    pg = wmcf->postgres.elts;

    for (i = 0; i < wmcf->postgres.nelts; i++) {
        if (ngx_http_whatsapp_postgres_init_worker(pg[i], cycle) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    rl = wmcf->relays.elts;

    for (i = 0; i < wmcf->relays.nelts; i++) {
        if (ngx_http_whatsapp_relay_init_worker(rl[i], cycle) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_whatsapp_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_whatsapp_redis_t     **rd;
    ngx_http_whatsapp_relay_t     **rl;
    ngx_http_whatsapp_postgres_t  **pg;
    ngx_http_whatsapp_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_whatsapp_module);
    if (wmcf == NULL) {
        return;
    }

    rl = wmcf->relays.elts;

    for (i = 0; i < wmcf->relays.nelts; i++) {
        ngx_http_whatsapp_relay_exit_worker(rl[i]);
    }

    rd = wmcf->redis.elts;

    for (i = 0; i < wmcf->redis.nelts; i++) {
        ngx_http_whatsapp_redis_exit_worker(rd[i]);
    }

    pg = wmcf->postgres.elts;

    for (i = 0; i < wmcf->postgres.nelts; i++) {
        ngx_http_whatsapp_postgres_exit_worker(pg[i]);
    }
}


/*
 * whatsapp_redis 127.0.0.1:6379 | unix:/path [password=...] [db=N]
 *                [connect_timeout=1s] [max_pending=1024];
 */
static char *
ngx_http_whatsapp_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_whatsapp_loc_conf_t  *wlcf = conf;

    char                           *rv;
    ngx_str_t                      *value;
    ngx_uint_t                      i;
    ngx_http_whatsapp_redis_t      *rd;
    ngx_http_whatsapp_main_conf_t  *wmcf;

    if (wlcf->redis != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rd = ngx_pcalloc(cf->pool, sizeof(ngx_http_whatsapp_redis_t));
    if (rd == NULL) {
        return NGX_CONF_ERROR;
    }

    rd->name = value[1];
    rd->connect_timeout = 1000;
    rd->max_pending = NGX_HTTP_WHATSAPP_DEFAULT_MAX_PENDING;

    rv = ngx_http_whatsapp_redis_address(cf, rd, &value[1]);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        rv = ngx_http_whatsapp_redis_param(cf, rd, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_whatsapp_module);

    wlcf->redis = ngx_http_whatsapp_redis_shared(wmcf, rd);

    return wlcf->redis ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/*
 * hiredis 0.14 resolves names with a blocking getaddrinfo() on every
 * connect, so the name is resolved here, once, and hiredis gets the IP.
 */
static char *
ngx_http_whatsapp_redis_address(ngx_conf_t *cf, ngx_http_whatsapp_redis_t *rd,
    ngx_str_t *addr)
{
    ngx_url_t  u;

    if (addr->len > 5 && ngx_strncmp(addr->data, "unix:", 5) == 0) {
        rd->host.len = addr->len - 5;
        rd->host.data = ngx_pnalloc(cf->pool, rd->host.len + 1);
        if (rd->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(rd->host.data, addr->data + 5, rd->host.len);
        rd->host.data[rd->host.len] = '\0';
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *addr;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in Redis address \"%V\"", u.err, addr);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "Redis address \"%V\" has no IP address", addr);
        return NGX_CONF_ERROR;
    }

    rd->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (rd->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    rd->host.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                 rd->host.data, NGX_SOCKADDR_STRLEN, 0);
    rd->host.data[rd->host.len] = '\0';
    rd->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}


static char *
ngx_http_whatsapp_redis_param(ngx_conf_t *cf, ngx_http_whatsapp_redis_t *rd,
    ngx_str_t *param)
{
    ngx_int_t   n;
    ngx_str_t   v;

    if (ngx_strncmp(param->data, "password=", 9) == 0) {
        rd->password.len = param->len - 9;
        rd->password.data = param->data + 9;

        if (rd->password.len == 0) {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "db=", 3) == 0) {
        rd->db = ngx_atoi(param->data + 3, param->len - 3);
        if (rd->db == NGX_ERROR) {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "connect_timeout=", 16) == 0) {
        v.len = param->len - 16;
        v.data = param->data + 16;

        rd->connect_timeout = ngx_parse_time(&v, 0);
        if (rd->connect_timeout == (ngx_msec_t) NGX_ERROR
            || rd->connect_timeout == 0)
        {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(param->data, "max_pending=", 12) == 0) {
        n = ngx_atoi(param->data + 12, param->len - 12);
        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        rd->max_pending = n;
        return NGX_CONF_OK;
    }

invalid:

    /* the value is not echoed: it may be a password */
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter of \"whatsapp_redis\" (expected "
                       "password=..., db=N, connect_timeout=time or "
                       "max_pending=N)");
    return NGX_CONF_ERROR;
}


/* Servers naming the same Redis share one connection per worker process. */
static ngx_http_whatsapp_redis_t *
ngx_http_whatsapp_redis_shared(ngx_http_whatsapp_main_conf_t *wmcf,
    ngx_http_whatsapp_redis_t *rd)
{
    ngx_uint_t                  i;
    ngx_http_whatsapp_redis_t  *known, **slot;

    for (i = 0; i < wmcf->redis.nelts; i++) {
        known = ((ngx_http_whatsapp_redis_t **) wmcf->redis.elts)[i];

        if (known->port == rd->port
            && known->db == rd->db
            && known->connect_timeout == rd->connect_timeout
            && known->max_pending == rd->max_pending
            && known->host.len == rd->host.len
            && known->password.len == rd->password.len
            && ngx_memcmp(known->host.data, rd->host.data, rd->host.len) == 0
            && ngx_memcmp(known->password.data, rd->password.data,
                          rd->password.len) == 0)
        {
            return known;
        }
    }

    slot = ngx_array_push(&wmcf->redis);
    if (slot == NULL) {
        return NULL;
    }

    *slot = rd;

    return rd;
}


/*
 * whatsapp_webhook, _api, _events: the location's handler is cmd->post;
 * where the directive was written is kept at cmd->offset.
 */
static char *
ngx_http_whatsapp_set_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_whatsapp_conf_at_t  *at;
    ngx_http_core_loc_conf_t     *clcf;

    at = (ngx_http_whatsapp_conf_at_t *) ((u_char *) conf + cmd->offset);

    if (at->line) {
        return "is duplicate";
    }

    at->file = cf->conf_file->file.name;
    at->line = cf->conf_file->line;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* the API's paths are what follows the location's prefix */
    if (ngx_strcmp(cmd->name.data, "whatsapp_api") == 0
        && (clcf->exact_match || clcf->named
#if (NGX_PCRE)
            || clcf->regex
#endif
           ))
    {
        return "needs a prefix location, e.g. \"location /whatsapp/v1/\"";
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;

    return NGX_CONF_OK;
}


static char *
ngx_http_whatsapp_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_whatsapp_status_handler;

    return NGX_CONF_OK;
}


/* whatsapp_app_secret SECRET; whatsapp_app_secret_file PATH; (repeatable) */
static char *
ngx_http_whatsapp_app_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_whatsapp_loc_conf_t  *wlcf = conf;

    char                *rv;
    ngx_str_t           *value, secret;
    wa_hmac_key_t      **key;
    ngx_pool_cleanup_t  *cln;

    value = cf->args->elts;

    rv = ngx_http_whatsapp_read_secret(cf, &value[1], cmd->offset, &secret);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (wlcf->app_secrets == NGX_CONF_UNSET_PTR) {
        wlcf->app_secrets = ngx_array_create(cf->pool, 2,
                                             sizeof(wa_hmac_key_t *));
        if (wlcf->app_secrets == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(wlcf->app_secrets);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    *key = wa_hmac_key_new(secret.data, secret.len);
    if (*key == NULL) {
        return "failed to prepare an HMAC-SHA256 key";
    }

    cln->handler = ngx_http_whatsapp_free_hmac_key;
    cln->data = *key;

    return NGX_CONF_OK;
}


static char *
ngx_http_whatsapp_verify_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_whatsapp_loc_conf_t  *wlcf = conf;

    ngx_str_t  *value;

    if (wlcf->verify_token.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_whatsapp_read_secret(cf, &value[1], cmd->offset,
                                         &wlcf->verify_token);
}


/*
 * A secret is written inline or kept in a file (so nginx.conf can be
 * shared); a file's trailing newline is not part of the secret.
 */
static char *
ngx_http_whatsapp_read_secret(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t from_file, ngx_str_t *secret)
{
    ngx_str_t  name;

    if (!from_file) {
        if (value->len == 0) {
            return "must not be empty";
        }

        *secret = *value;
        return NGX_CONF_OK;
    }

    name = *value;

    if (ngx_http_whatsapp_conf_read_file(cf, &name, NGX_HTTP_WHATSAPP_FILE_MAX,
                                         secret)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    while (secret->len
           && (secret->data[secret->len - 1] == '\n'
               || secret->data[secret->len - 1] == '\r'
               || secret->data[secret->len - 1] == ' '))
    {
        secret->len--;
    }

    if (secret->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%s\" is empty", name.data);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_whatsapp_free_hmac_key(void *data)
{
    wa_hmac_key_free(data);
}


/*
 * The request body in one piece, in r->pool, NUL-terminated if asked
 * (else a single in-memory buffer is used in place).  A body above
 * client_body_buffer_size is in a temporary file that this process has
 * just written, so reading it back hits the page cache.
 */
ngx_int_t
ngx_http_whatsapp_request_body(ngx_http_request_t *r, ngx_uint_t terminate,
    ngx_str_t *body)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    cl = r->request_body ? r->request_body->bufs : NULL;

    if (!terminate && cl == NULL) {
        return NGX_OK;
    }

    if (!terminate && cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for ( /* void */ ; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    body->data = ngx_pnalloc(r->pool, len + 1);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;

    for (cl = r->request_body ? r->request_body->bufs : NULL;
         cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (!b->in_file) {
            /* an empty body may come as a buffer without memory */
            if (b->last != b->pos) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
            }

            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                          "whatsapp: short read of the request body file");
            return NGX_ERROR;
        }

        p += n;
    }

    *p = '\0';
    body->len = p - body->data;

    return NGX_OK;
}


/* A response header; name and value must outlive the request. */
ngx_int_t
ngx_http_whatsapp_header_out(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* The body of every JSON error: {"error":{"code":..,"message":..}} */
ngx_int_t
ngx_http_whatsapp_error_json(ngx_http_request_t *r, const char *code,
    ngx_str_t *message, ngx_str_t *body)
{
    body->len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\"}}") - 1
                + ngx_strlen(code) + message->len;
    body->data = ngx_pnalloc(r->pool, body->len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(body->data, "{\"error\":{\"code\":\"%s\",\"message\":\"%V\"}}", code, message);

    return NGX_OK;
}


/*
 * A query argument, percent-decoded into the request pool; NGX_DECLINED
 * (and an empty value) when absent.
 */
ngx_int_t
ngx_http_whatsapp_arg(ngx_http_request_t *r, char *name, ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   raw;

    ngx_str_null(value);

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    value->data = dst;
    src = raw.data;

    ngx_unescape_uri(&dst, &src, raw.len, 0);

    value->len = dst - value->data;

    return NGX_OK;
}


/*
 * How many times a request header came, and the last of them: a header
 * that may come once must be refused when it came twice.
 */
ngx_uint_t
ngx_http_whatsapp_header_in(ngx_http_request_t *r, ngx_str_t *name,
    ngx_table_elt_t **found)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    *found = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            n++;
            *found = &h[i];
        }
    }

    return n;
}


/*
 * A file named in nginx.conf (a secret, a key), read whole into cf->pool
 * and NUL-terminated; *name becomes its full path, for messages.  Files
 * above max bytes are refused: they are not what the directive wants.
 */
ngx_int_t
ngx_http_whatsapp_conf_read_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *content)
{
    ssize_t          n;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *name;
    file.log = cf->log;
    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name->data);
        return NGX_ERROR;
    }

    n = NGX_ERROR;

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", name->data);
        goto done;
    }

    if (ngx_file_size(&fi) > (off_t) max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is larger than %uz bytes", name->data, max);
        goto done;
    }

    content->len = (size_t) ngx_file_size(&fi);
    content->data = ngx_pnalloc(cf->pool, content->len + 1);
    if (content->data == NULL) {
        goto done;
    }

    n = ngx_read_file(&file, content->data, content->len, 0);

done:

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%s\" failed", name->data);
    }

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    content->len = n;
    content->data[n] = '\0';

    return NGX_OK;
}
