/*
 * See wa_map.h.  FNV-1a: short keys, no adversary choosing them beyond
 * what the API already validated.
 */

#include <stdlib.h>
#include <string.h>

#include "wa_map.h"


static size_t wa_map_hash(const char *key);
static int wa_map_grow(wa_map_t *m);


int
wa_map_init(wa_map_t *m, size_t size)
{
    m->size = 16;

    while (m->size < size) {
        m->size *= 2;
    }

    m->count = 0;
    m->buckets = calloc(m->size, sizeof(wa_map_entry_t *));

    return m->buckets ? 0 : -1;
}


void
wa_map_free(wa_map_t *m)
{
    size_t           i;
    wa_map_entry_t  *e, *next;

    for (i = 0; m->buckets && i < m->size; i++) {
        for (e = m->buckets[i]; e; e = next) {
            next = e->next;
            free(e);
        }
    }

    free(m->buckets);
    m->buckets = NULL;
    m->count = 0;
}


void *
wa_map_get(const wa_map_t *m, const char *key)
{
    wa_map_entry_t  *e;

    for (e = m->buckets[wa_map_hash(key) & (m->size - 1)]; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return e->value;
        }
    }

    return NULL;
}


int
wa_map_put(wa_map_t *m, const char *key, void *value)
{
    size_t           len, i;
    wa_map_entry_t  *e;

    i = wa_map_hash(key) & (m->size - 1);

    for (e = m->buckets[i]; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return 1;
        }
    }

    if (m->count >= m->size && wa_map_grow(m) == 0) {
        i = wa_map_hash(key) & (m->size - 1);
    }

    len = strlen(key) + 1;

    e = malloc(sizeof(wa_map_entry_t) + len);
    if (e == NULL) {
        return -1;
    }

    memcpy(e->key, key, len);
    e->value = value;
    e->next = m->buckets[i];
    m->buckets[i] = e;
    m->count++;

    return 0;
}


void *
wa_map_del(wa_map_t *m, const char *key)
{
    void             *value;
    wa_map_entry_t  **pe, *e;

    for (pe = &m->buckets[wa_map_hash(key) & (m->size - 1)]; (e = *pe);
         pe = &e->next)
    {
        if (strcmp(e->key, key) == 0) {
            *pe = e->next;
            value = e->value;
            free(e);
            m->count--;
            return value;
        }
    }

    return NULL;
}


static size_t
wa_map_hash(const char *key)
{
    size_t  h = 14695981039346656037ULL;

    while (*key) {
        h = (h ^ (unsigned char) *key++) * 1099511628211ULL;
    }

    return h;
}


/* 0, or -1: the map stays as it is, only slower */
static int
wa_map_grow(wa_map_t *m)
{
    size_t            i, size, j;
    wa_map_entry_t  **buckets, *e, *next;

    size = m->size * 2;

    buckets = calloc(size, sizeof(wa_map_entry_t *));
    if (buckets == NULL) {
        return -1;
    }

    for (i = 0; i < m->size; i++) {
        for (e = m->buckets[i]; e; e = next) {
            next = e->next;
            j = wa_map_hash(e->key) & (size - 1);
            e->next = buckets[j];
            buckets[j] = e;
        }
    }

    free(m->buckets);
    m->buckets = buckets;
    m->size = size;

    return 0;
}
