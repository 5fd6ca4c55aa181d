/*
 * POST /messages and POST /messages/{wamid}/read: the edge's part of
 * sending.
 *
 * The body is checked against Meta's shapes and limits here, in C, before
 * PostgreSQL is asked anything (common/wa_send.c): a mistake is a 400
 * naming the field, not a failed status minutes later.  wa_api_send()
 * then applies the rules that need the data (scope, opt-out, the 24-hour
 * window, idempotency) and stores the message as queued, in one
 * transaction; its answer carries a command, which rings the sender's
 * doorbell (wa:outbox).
 */

#include "ngx_http_whatsapp_module.h"

#include "wa_send.h"


#define NGX_HTTP_WHATSAPP_SEND_PARAMS  5


static void ngx_http_whatsapp_send_rung(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result);


/*
 * The body checked; what it says in values (phone number, recipient,
 * free-form, bulk, idempotency key: wa_api_send's parameters), copied to
 * the request's pool.  NGX_OK; NGX_HTTP_BAD_REQUEST with msg (and *code
 * set) saying what is wrong; NGX_ERROR.
 */
ngx_int_t
ngx_http_whatsapp_send_check(ngx_http_request_t *r, const char *body,
    const char **values, ngx_str_t *msg)
{
    size_t              len;
    ngx_uint_t          i;
    const char         *found[NGX_HTTP_WHATSAPP_SEND_PARAMS];
    wa_send_request_t   req;

    if (wa_send_validate((const unsigned char *) body, ngx_strlen(body), &req)
        != 0)
    {
        /* field and message are plain ASCII: no escaping needed */
        len = ngx_strlen(req.field) + 1 + ngx_strlen(req.message);

        msg->data = ngx_pnalloc(r->pool, len);
        if (msg->data == NULL) {
            return NGX_ERROR;
        }

        msg->len = req.field[0]
                   ? (size_t) (ngx_sprintf(msg->data, "%s %s", req.field,
                                           req.message) - msg->data)
                   : (size_t) (ngx_sprintf(msg->data, "%s", req.message)
                               - msg->data);

        return NGX_HTTP_BAD_REQUEST;
    }

    found[0] = req.phone_number_id;
    found[1] = req.to;
    found[2] = req.free_form ? "true" : "false";
    found[3] = req.bulk ? "true" : "false";
    found[4] = req.idempotency_key[0] ? req.idempotency_key : NULL;

    for (i = 0; i < NGX_HTTP_WHATSAPP_SEND_PARAMS; i++) {
        if (found[i] == NULL) {
            values[i] = NULL;
            continue;
        }

        len = ngx_strlen(found[i]) + 1;

        values[i] = ngx_pnalloc(r->pool, len);
        if (values[i] == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy((char *) values[i], found[i], len);
    }

    return NGX_OK;
}


/*
 * XADD wa:outbox * cmd <command> sub <agent> rcvd <ms>.  Fire and
 * forget: the message is stored already, and a doorbell lost with Redis
 * costs only latency (the sender also sweeps what is queued).
 */
void
ngx_http_whatsapp_send_ring(ngx_http_request_t *r, ngx_str_t *command,
    ngx_str_t *agent)
{
    u_char                         rcvd[NGX_INT64_LEN];
    size_t                         argvlen[9];
    ngx_int_t                      rc;
    ngx_time_t                    *tp;
    const char                    *argv[9];
    ngx_http_whatsapp_loc_conf_t  *wlcf;
    ngx_http_whatsapp_redis_cmd_t *cmd;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    if (wlcf->redis == NULL || wlcf->outbox_key.len == 0) {
        return;
    }

    tp = ngx_timeofday();

    argv[0] = "XADD";
    argv[1] = (const char *) wlcf->outbox_key.data;
    argvlen[1] = wlcf->outbox_key.len;
    argv[2] = "*";
    argv[3] = "cmd";
    argv[4] = (const char *) command->data;
    argvlen[4] = command->len;
    argv[5] = "sub";
    argv[6] = agent->len ? (const char *) agent->data : "-";
    argvlen[6] = agent->len ? agent->len : 1;
    argv[7] = "rcvd";
    argv[8] = (const char *) rcvd;
    argvlen[8] = ngx_sprintf(rcvd, "%M", (ngx_msec_t) tp->sec * 1000
                                          + tp->msec) - rcvd;

    argvlen[0] = 4;
    argvlen[2] = 1;
    argvlen[3] = 3;
    argvlen[5] = 3;
    argvlen[7] = 4;

    rc = ngx_http_whatsapp_redis_send(wlcf->redis, 9, argv, argvlen,
                                      wlcf->redis_timeout,
                                      ngx_http_whatsapp_send_rung, NULL,
                                      &cmd);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "whatsapp: the sender's doorbell did not ring (Redis "
                      "unavailable); it finds the message at its next "
                      "sweep");
    }
}


static void
ngx_http_whatsapp_send_rung(void *data, redisReply *reply,
    ngx_http_whatsapp_redis_result_e result)
{
    if (result != NGX_HTTP_WHATSAPP_REDIS_REPLY
        || reply->type == REDIS_REPLY_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "whatsapp: the sender's doorbell did not ring (Redis "
                      "did not take the entry); it finds the message at "
                      "its next sweep");
    }
}
