/*
 * See wa_outcomes.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "wa_metrics.h"
#include "wa_outcomes.h"


/* the metric of each wa_outcome_e, in its order */
static const wa_metric_e  wa_outcome_metric[] = {
    WA_M_SENDS_ACCEPTED, WA_M_SENDS_FAILED, WA_M_SENDS_UNKNOWN,
    WA_M_SENDS_RETRIED, WA_M_RECEIPTS_SENT, WA_M_RECEIPTS_FAILED,
    WA_M_RECEIPTS_RETRIED, WA_M_TOKEN_ERRORS, WA_M_SENDS_PAUSED
};


int
wa_outcomes_add(wa_outcomes_t *outcomes, wa_outcome_e kind, const char *key,
    int code, const char *text)
{
    int            cap;
    wa_outcome_t  *o;

    wa_metrics_add(wa_outcome_metric[kind], 1);

    if (kind == WA_OUT_PAUSED) {
        wa_metrics_paused(key, code);
    }

    if (outcomes->n == outcomes->cap) {
        cap = outcomes->cap ? 2 * outcomes->cap : 256;
        o = realloc(outcomes->list, cap * sizeof(wa_outcome_t));

        if (o == NULL) {
            return -1;
        }

        outcomes->list = o;
        outcomes->cap = cap;
    }

    o = &outcomes->list[outcomes->n++];
    o->kind = kind;
    o->code = code;
    snprintf(o->key, sizeof(o->key), "%s", key);
    snprintf(o->text, sizeof(o->text), "%s", text ? text : "");

    return 0;
}


char *
wa_outcomes_json(const wa_outcomes_t *outcomes)
{
    int            i;
    char          *json;
    size_t         k, len;
    yajl_gen       g;
    const wa_outcome_t  *o;
    const unsigned char  *buf;

    static const char  *lists[] = { "accepted", "failed", "unknown",
                                    "queued", "receipts", "paused" };

    /* the list of each wa_outcome_e, in its order */
    static const size_t  list_of[] = { 0, 1, 2, 3, 4, 4, 4, 5, 3 };

#define WA_STR(s)  yajl_gen_string(g, (const unsigned char *) (s), strlen(s))

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NULL;
    }

    yajl_gen_map_open(g);

    for (k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        WA_STR(lists[k]);
        yajl_gen_array_open(g);

        for (i = 0; i < outcomes->n; i++) {
            o = &outcomes->list[i];

            if (list_of[o->kind] != k) {
                continue;
            }

            yajl_gen_map_open(g);

            switch (o->kind) {

            case WA_OUT_ACCEPTED:
                WA_STR("id");
                WA_STR(o->key);
                WA_STR("wamid");
                WA_STR(o->text);
                break;

            case WA_OUT_FAILED:
            case WA_OUT_PAUSED:
                WA_STR(o->kind == WA_OUT_PAUSED ? "phone_number_id" : "id");
                WA_STR(o->key);
                WA_STR("code");
                yajl_gen_integer(g, o->code);
                WA_STR("title");
                WA_STR(o->text);
                break;

            case WA_OUT_UNKNOWN:
                WA_STR("id");
                WA_STR(o->key);
                WA_STR("title");
                WA_STR(o->text);
                break;

            case WA_OUT_QUEUED:
            case WA_OUT_HELD:
                WA_STR("id");
                WA_STR(o->key);
                break;

            default:
                WA_STR("wamid");
                WA_STR(o->key);
                WA_STR("receipt");
                WA_STR(o->kind == WA_OUT_RECEIPT_SENT ? "sent"
                       : o->kind == WA_OUT_RECEIPT_FAILED ? "failed"
                       : "queued");
            }

            yajl_gen_map_close(g);
        }

        yajl_gen_array_close(g);
    }

    yajl_gen_map_close(g);

#undef WA_STR

    json = NULL;

    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
        json = malloc(len + 1);

        if (json) {
            memcpy(json, buf, len);
            json[len] = '\0';
        }
    }

    yajl_gen_free(g);

    return json;
}


void
wa_outcomes_free(wa_outcomes_t *outcomes)
{
    free(outcomes->list);
    outcomes->list = NULL;
    outcomes->n = outcomes->cap = 0;
}
