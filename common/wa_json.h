/*
 * Members of a parsed yajl tree, shared by every yajl user (the module's
 * JWT and send checks, the worker's parser and sender, the simulator):
 * one lookup, not one per file.
 */

#ifndef WA_JSON_H
#define WA_JSON_H

#include <stddef.h>

#include <yajl/yajl_tree.h>


/* What wa_json_precheck found: the text must not be given to yajl_tree. */
typedef enum {
    WA_JSON_PLAIN = 0,
    WA_JSON_NUL_BYTE,
    WA_JSON_NUL_ESCAPE,     /* "\u0000" in a string */
    WA_JSON_COMMENT,
    WA_JSON_TOO_DEEP        /* objects and arrays nested over max_depth */
} wa_json_precheck_e;


/*
 * What yajl_tree would accept but must not be: NUL bytes and "\u0000"
 * (it keeps strings NUL-terminated, without length, so a value would be
 * silently cut there), comments (it enables them) and deep nesting (it
 * frees trees recursively).
 */
wa_json_precheck_e wa_json_precheck(const unsigned char *text, size_t len,
    int max_depth);


/* obj's member key (the first, should it be given twice); NULL when obj
 * is not an object or has none */
yajl_val wa_json_get(yajl_val obj, const char *key);

/* the member's string, or NULL (absent, or not a string) */
const char *wa_json_str(yajl_val obj, const char *key);

#endif /* WA_JSON_H */
