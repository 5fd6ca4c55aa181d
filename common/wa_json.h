/*
 * Members of a parsed yajl tree, shared by every yajl user (the module's
 * JWT and send checks, the worker's parser and sender, the simulator):
 * one lookup, not one per file.
 */

#ifndef WA_JSON_H
#define WA_JSON_H

#include <yajl/yajl_tree.h>


/* obj's member key (the first, should it be given twice); NULL when obj
 * is not an object or has none */
yajl_val wa_json_get(yajl_val obj, const char *key);

/* the member's string, or NULL (absent, or not a string) */
const char *wa_json_str(yajl_val obj, const char *key);

#endif /* WA_JSON_H */
