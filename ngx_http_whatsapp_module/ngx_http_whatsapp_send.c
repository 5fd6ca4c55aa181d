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


/*
 * The body checked; what it says in values (phone number, recipient,
 * free-form, bulk, idempotency key: wa_api_send's parameters), pointing
 * into the checked request, which lives in the request's pool.  NGX_OK;
 * NGX_HTTP_BAD_REQUEST with msg saying what is wrong (the field, then
 * why), or NGX_DECLINED with msg when the body is not a JSON object at
 * all; NGX_ERROR.
 */
ngx_int_t
ngx_http_whatsapp_send_check(ngx_http_request_t *r, const char *body,
    const char **values, ngx_str_t *msg)
{
    wa_send_request_t  *req;

    req = ngx_palloc(r->pool, sizeof(wa_send_request_t));
    if (req == NULL) {
        return NGX_ERROR;
    }

    if (wa_send_validate((const unsigned char *) body, ngx_strlen(body), req)
        != 0)
    {
        /* field and message are plain ASCII: no escaping needed */
        msg->data = ngx_pnalloc(r->pool, WA_SEND_FIELD_MAX
                                         + WA_SEND_MESSAGE_MAX);
        if (msg->data == NULL) {
            return NGX_ERROR;
        }

        msg->len = ngx_sprintf(msg->data, "%s%s%s", req->field,
                               req->field[0] ? " " : "", req->message)
                   - msg->data;

        return req->malformed ? NGX_DECLINED : NGX_HTTP_BAD_REQUEST;
    }

    values[0] = req->phone_number_id;
    values[1] = req->to;
    values[2] = req->free_form ? "true" : "false";
    values[3] = req->bulk ? "true" : "false";
    values[4] = req->idempotency_key[0] ? req->idempotency_key : NULL;

    return NGX_OK;
}


/*
 * XADD wa:outbox * cmd <command> sub <agent> rcvd <ms>.  The message is
 * stored already: a doorbell lost with Redis costs only latency (the
 * sender also sweeps what is queued).
 */
void
ngx_http_whatsapp_send_ring(ngx_http_request_t *r, ngx_str_t *command,
    ngx_str_t *agent)
{
    u_char                         rcvd[NGX_INT64_LEN];
    size_t                         lens[6];
    ngx_time_t                    *tp;
    const char                    *fields[6];
    ngx_http_whatsapp_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module);

    tp = ngx_timeofday();

    fields[0] = "cmd";
    lens[0] = 3;
    fields[1] = (const char *) command->data;
    lens[1] = command->len;
    fields[2] = "sub";
    lens[2] = 3;
    fields[3] = agent->len ? (const char *) agent->data : "-";
    lens[3] = agent->len ? agent->len : 1;
    fields[4] = "rcvd";
    lens[4] = 4;
    fields[5] = (const char *) rcvd;
    lens[5] = ngx_sprintf(rcvd, "%M", (ngx_msec_t) tp->sec * 1000 + tp->msec)
              - rcvd;

    ngx_http_whatsapp_api_xadd(r, &wlcf->outbox_key, 6, fields, lens,
                               "the sender's doorbell did not ring: it "
                               "finds the message at its next sweep");
}
