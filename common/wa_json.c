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


wa_json_precheck_e
wa_json_precheck(const unsigned char *text, size_t len, int max_depth)
{
    int            depth, in_string;
    size_t         i;
    unsigned char  c;

    if (memchr(text, '\0', len) != NULL) {
        return WA_JSON_NUL_BYTE;
    }

    depth = 0;
    in_string = 0;

    for (i = 0; i < len; i++) {
        c = text[i];

        if (in_string) {
            if (c == '\\') {
                if (len - i > 5 && memcmp(text + i + 1, "u0000", 5) == 0) {
                    return WA_JSON_NUL_ESCAPE;
                }

                i++;

            } else if (c == '"') {
                in_string = 0;
            }

            continue;
        }

        if (c == '"') {
            in_string = 1;

        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) {
                return WA_JSON_TOO_DEEP;
            }

        } else if (c == '}' || c == ']') {
            depth--;

        } else if (c == '/') {
            return WA_JSON_COMMENT;
        }
    }

    return WA_JSON_PLAIN;
}
