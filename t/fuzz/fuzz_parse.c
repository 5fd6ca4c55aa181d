/*
 * libFuzzer target: the worker's webhook payload parser (yajl) takes
 * whatever reached wa:events.  Beyond not crashing or leaking, the rows it
 * produces must be valid JSON, in every share: they go to PostgreSQL as
 * jsonb.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "wa_parse.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          shard;
    char        *body, *json, err[128];
    size_t       len;
    yajl_val     v;
    wa_batch_t   b;

    body = malloc(size + 1);
    if (body == NULL || wa_batch_init(&b, 3) != 0) {
        free(body);
        return 0;
    }

    memcpy(body, data, size);
    body[size] = '\0';

    (void) wa_parse_delivery(&b, body, size, err, sizeof(err));
    wa_batch_delivery(&b, "1-0", "1", "r", 1, "ok", NULL);
    wa_batch_fold(&b);

    for (shard = 0; shard < b.nshards; shard++) {
        json = wa_batch_json(&b, shard, &len);

        if (json == NULL) {
            continue;
        }

        v = yajl_tree_parse(json, err, sizeof(err));

        if (v == NULL) {
            abort();
        }

        yajl_tree_free(v);
        free(json);
    }

    wa_batch_free(&b);
    free(body);

    return 0;
}
