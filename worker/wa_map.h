/*
 * A string-keyed hash map for the sender's in-memory state (jobs by
 * message id, recipients by number and address): chained, grown by
 * doubling, keys owned by the entries.
 */

#ifndef WA_MAP_H
#define WA_MAP_H

#include <stddef.h>


typedef struct wa_map_entry_s  wa_map_entry_t;

struct wa_map_entry_s {
    wa_map_entry_t  *next;
    void            *value;
    char             key[];
};


typedef struct {
    wa_map_entry_t  **buckets;
    size_t            size;        /* a power of two */
    size_t            count;
} wa_map_t;


int wa_map_init(wa_map_t *m, size_t size);
void wa_map_free(wa_map_t *m);      /* the entries, not their values */

void *wa_map_get(const wa_map_t *m, const char *key);

/* Returns 0, 1 when the key is there already (value unchanged), -1. */
int wa_map_put(wa_map_t *m, const char *key, void *value);

/* Returns the value removed, or NULL. */
void *wa_map_del(wa_map_t *m, const char *key);

#endif /* WA_MAP_H */
