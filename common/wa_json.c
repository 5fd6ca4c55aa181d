/*
 * See wa_json.h.
 */

#include <string.h>

#include "wa_json.h"


yajl_val
wa_json_get(yajl_val obj, const char *key)
{
    size_t  i;

    if (!YAJL_IS_OBJECT(obj)) {
        return NULL;
    }

    for (i = 0; i < obj->u.object.len; i++) {
        if (strcmp(obj->u.object.keys[i], key) == 0) {
            return obj->u.object.values[i];
        }
    }

    return NULL;
}


const char *
wa_json_str(yajl_val obj, const char *key)
{
    yajl_val  v;

    v = wa_json_get(obj, key);

    return YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
}
