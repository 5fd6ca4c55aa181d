/*
 * whatsapp_status: counters in shared memory, summed over all worker
 * processes and kept across reloads, printed in Prometheus text format.
 */

#include "ngx_http_whatsapp_module.h"


#define NGX_HTTP_WHATSAPP_LATENCY_BUCKETS  12
#define NGX_HTTP_WHATSAPP_API_CLASSES      4      /* 2xx .. 5xx */


typedef struct {
    ngx_atomic_t  outcomes[NGX_HTTP_WHATSAPP_OUTCOME_N];
    ngx_atomic_t  redis_errors[NGX_HTTP_WHATSAPP_REDIS_ERR_N];
    ngx_atomic_t  redis_connected;
    ngx_atomic_t  latency[NGX_HTTP_WHATSAPP_LATENCY_BUCKETS];
    ngx_atomic_t  latency_count;
    ngx_atomic_t  latency_sum_usec;
    ngx_atomic_t  api[NGX_HTTP_WHATSAPP_API_CLASSES];
    ngx_atomic_t  postgres_errors[NGX_HTTP_WHATSAPP_POSTGRES_ERR_N];
    ngx_atomic_t  postgres_connected;
    ngx_atomic_t  sse[NGX_HTTP_WHATSAPP_SSE_N];
} ngx_http_whatsapp_stats_t;


static ngx_int_t ngx_http_whatsapp_status_init_zone(ngx_shm_zone_t *zone,
    void *data);
static u_char *ngx_http_whatsapp_status_print(u_char *p,
    ngx_http_whatsapp_stats_t *st);


/* upper bounds of the enqueue latency buckets, microseconds */
static uint64_t  ngx_http_whatsapp_latency_le[NGX_HTTP_WHATSAPP_LATENCY_BUCKETS]
    = { 250, 500, 1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000,
        500000, 1000000 };

static const char  *ngx_http_whatsapp_outcome_names[] = {
    "enqueued", "verified", "handshake_refused", "bad_signature",
    "bad_request", "method_not_allowed", "redis_unavailable",
    "redis_timeout", "redis_overloaded", "internal_error"
};

static const char  *ngx_http_whatsapp_redis_error_names[] = {
    "connect", "lost", "timeout", "reply"
};

static const char  *ngx_http_whatsapp_postgres_error_names[] = {
    "connect", "lost", "timeout", "query", "queue_full"
};

static ngx_http_whatsapp_stats_t  *ngx_http_whatsapp_stats;


ngx_int_t
ngx_http_whatsapp_status_add_zone(ngx_conf_t *cf)
{
    ngx_str_t        name = ngx_string("whatsapp_status");
    ngx_shm_zone_t  *zone;

    /* the smallest zone the slab allocator is comfortable with */
    zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                 &ngx_http_whatsapp_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_whatsapp_status_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_whatsapp_status_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        /* a reload: counters carry on, as Prometheus expects */
        zone->data = data;

    } else {
        shpool = (ngx_slab_pool_t *) zone->shm.addr;

        zone->data = ngx_slab_calloc(shpool,
                                     sizeof(ngx_http_whatsapp_stats_t));
        if (zone->data == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_http_whatsapp_stats = zone->data;

    return NGX_OK;
}


void
ngx_http_whatsapp_status_outcome(ngx_http_whatsapp_outcome_e outcome)
{
    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->outcomes[outcome],
                                1);
}


void
ngx_http_whatsapp_status_redis_error(ngx_http_whatsapp_redis_error_e e)
{
    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->redis_errors[e], 1);
}


void
ngx_http_whatsapp_status_redis_connected(ngx_int_t delta)
{
    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->redis_connected,
                                delta);
}


void
ngx_http_whatsapp_status_enqueue_latency(uint64_t usec)
{
    ngx_uint_t                  i;
    ngx_http_whatsapp_stats_t  *st = ngx_http_whatsapp_stats;

    for (i = 0; i < NGX_HTTP_WHATSAPP_LATENCY_BUCKETS; i++) {
        if (usec <= ngx_http_whatsapp_latency_le[i]) {
            (void) ngx_atomic_fetch_add(&st->latency[i], 1);
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&st->latency_count, 1);
    (void) ngx_atomic_fetch_add(&st->latency_sum_usec, usec);
}


/* API answers by status class: 2xx, 3xx, 4xx, 5xx */
void
ngx_http_whatsapp_status_api(ngx_uint_t status)
{
    ngx_uint_t  i;

    if (status < 200 || status > 599) {
        return;
    }

    i = status / 100 - 2;

    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->api[i], 1);
}


void
ngx_http_whatsapp_status_postgres_error(ngx_http_whatsapp_postgres_error_e e)
{
    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->postgres_errors[e],
                                1);
}


void
ngx_http_whatsapp_status_postgres_connected(ngx_int_t delta)
{
    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->postgres_connected,
                                delta);
}


void
ngx_http_whatsapp_status_sse(ngx_http_whatsapp_sse_stat_e what, ngx_int_t n)
{
    (void) ngx_atomic_fetch_add(&ngx_http_whatsapp_stats->sse[what], n);
}


/* NGINX's cached clock ticks in milliseconds; latencies need finer */
uint64_t
ngx_http_whatsapp_status_now_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


ngx_int_t
ngx_http_whatsapp_status_handler(ngx_http_request_t *r)
{
    size_t        size;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* every line is well under 128 bytes */
    size = 128 * (NGX_HTTP_WHATSAPP_OUTCOME_N + NGX_HTTP_WHATSAPP_REDIS_ERR_N
                  + NGX_HTTP_WHATSAPP_LATENCY_BUCKETS
                  + NGX_HTTP_WHATSAPP_API_CLASSES
                  + NGX_HTTP_WHATSAPP_POSTGRES_ERR_N + 40);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_http_whatsapp_status_print(b->last,
                                             ngx_http_whatsapp_stats);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_whatsapp_status_print(u_char *p, ngx_http_whatsapp_stats_t *st)
{
    ngx_uint_t    i;
    ngx_atomic_t  cumulative;

    p = ngx_sprintf(p,
            "# HELP whatsapp_webhook_requests_total "
            "Webhook requests by outcome.\n"
            "# TYPE whatsapp_webhook_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_WHATSAPP_OUTCOME_N; i++) {
        p = ngx_sprintf(p, "whatsapp_webhook_requests_total{outcome=\"%s\"} "
                        "%uA\n", ngx_http_whatsapp_outcome_names[i],
                        st->outcomes[i]);
    }

    p = ngx_sprintf(p,
            "# HELP whatsapp_redis_connected "
            "Redis connections ready, over all worker processes.\n"
            "# TYPE whatsapp_redis_connected gauge\n"
            "whatsapp_redis_connected %uA\n"
            "# HELP whatsapp_redis_errors_total Redis errors by kind.\n"
            "# TYPE whatsapp_redis_errors_total counter\n",
            st->redis_connected);

    for (i = 0; i < NGX_HTTP_WHATSAPP_REDIS_ERR_N; i++) {
        p = ngx_sprintf(p, "whatsapp_redis_errors_total{kind=\"%s\"} %uA\n",
                        ngx_http_whatsapp_redis_error_names[i],
                        st->redis_errors[i]);
    }

    p = ngx_sprintf(p,
            "# HELP whatsapp_enqueue_duration_seconds "
            "From XADD sent to Redis' answer.\n"
            "# TYPE whatsapp_enqueue_duration_seconds histogram\n");

    cumulative = 0;

    for (i = 0; i < NGX_HTTP_WHATSAPP_LATENCY_BUCKETS; i++) {
        cumulative += st->latency[i];
        p = ngx_sprintf(p, "whatsapp_enqueue_duration_seconds_bucket"
                        "{le=\"%uL.%06uL\"} %uA\n",
                        ngx_http_whatsapp_latency_le[i] / 1000000,
                        ngx_http_whatsapp_latency_le[i] % 1000000,
                        cumulative);
    }

    p = ngx_sprintf(p,
            "whatsapp_enqueue_duration_seconds_bucket{le=\"+Inf\"} %uA\n"
            "whatsapp_enqueue_duration_seconds_sum %uA.%06uA\n"
            "whatsapp_enqueue_duration_seconds_count %uA\n",
            st->latency_count,
            st->latency_sum_usec / 1000000, st->latency_sum_usec % 1000000,
            st->latency_count);

    p = ngx_sprintf(p,
            "# HELP whatsapp_api_requests_total "
            "Agent API answers by status class.\n"
            "# TYPE whatsapp_api_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_WHATSAPP_API_CLASSES; i++) {
        p = ngx_sprintf(p, "whatsapp_api_requests_total{status=\"%uixx\"} "
                        "%uA\n", i + 2, st->api[i]);
    }

    p = ngx_sprintf(p,
            "# HELP whatsapp_postgres_connected "
            "PostgreSQL connections up, over all worker processes.\n"
            "# TYPE whatsapp_postgres_connected gauge\n"
            "whatsapp_postgres_connected %uA\n"
            "# HELP whatsapp_postgres_errors_total "
            "PostgreSQL errors by kind.\n"
            "# TYPE whatsapp_postgres_errors_total counter\n",
            st->postgres_connected);

    for (i = 0; i < NGX_HTTP_WHATSAPP_POSTGRES_ERR_N; i++) {
        p = ngx_sprintf(p, "whatsapp_postgres_errors_total{kind=\"%s\"} "
                        "%uA\n", ngx_http_whatsapp_postgres_error_names[i],
                        st->postgres_errors[i]);
    }

    p = ngx_sprintf(p,
            "# HELP whatsapp_sse_subscribers "
            "Open whatsapp_events streams, over all worker processes.\n"
            "# TYPE whatsapp_sse_subscribers gauge\n"
            "whatsapp_sse_subscribers %uA\n"
            "# HELP whatsapp_sse_events_relayed_total "
            "Updates queued to a stream (one per update and stream).\n"
            "# TYPE whatsapp_sse_events_relayed_total counter\n"
            "whatsapp_sse_events_relayed_total %uA\n"
            "# HELP whatsapp_sse_slow_clients_total "
            "Streams closed because the client fell too far behind.\n"
            "# TYPE whatsapp_sse_slow_clients_total counter\n"
            "whatsapp_sse_slow_clients_total %uA\n"
            "# HELP whatsapp_sse_replays_total "
            "Reconnects whose missed updates were replayed.\n"
            "# TYPE whatsapp_sse_replays_total counter\n"
            "whatsapp_sse_replays_total %uA\n"
            "# HELP whatsapp_sse_resets_total "
            "Reconnects told to reload (event: reset).\n"
            "# TYPE whatsapp_sse_resets_total counter\n"
            "whatsapp_sse_resets_total %uA\n",
            st->sse[NGX_HTTP_WHATSAPP_SSE_SUBSCRIBERS],
            st->sse[NGX_HTTP_WHATSAPP_SSE_RELAYED],
            st->sse[NGX_HTTP_WHATSAPP_SSE_SLOW_CLIENTS],
            st->sse[NGX_HTTP_WHATSAPP_SSE_REPLAYS],
            st->sse[NGX_HTTP_WHATSAPP_SSE_RESETS]);

    return p;
}
