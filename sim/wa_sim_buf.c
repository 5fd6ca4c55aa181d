/*
 * Memory, growable buffers and JSON string output; see wa_sim.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wa_sim.h"


static void wa_sim_oom(void);
static size_t wa_sim_utf8_decode(const unsigned char *p, size_t n,
    uint32_t *cp);
static char *wa_sim_json_unit(char *o, uint32_t unit);


static const char  wa_sim_hex[] = "0123456789abcdef";


static void
wa_sim_oom(void)
{
    static const char  msg[] = "wa-graph-sim: out of memory\n";

    (void) !write(2, msg, sizeof(msg) - 1);
    abort();
}


void *
wa_sim_alloc(size_t size)
{
    void  *p;

    p = malloc(size ? size : 1);
    if (p == NULL) {
        wa_sim_oom();
    }

    return p;
}


void *
wa_sim_calloc(size_t n, size_t size)
{
    void  *p;

    p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        wa_sim_oom();
    }

    return p;
}


char *
wa_sim_strndup(const char *s, size_t n)
{
    char  *p;

    p = wa_sim_alloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';

    return p;
}


void
wa_sim_buf_reserve(wa_sim_buf_t *b, size_t more)
{
    size_t  cap;

    if (b->cap - b->len >= more) {
        return;
    }

    cap = b->cap ? b->cap : 256;

    while (cap - b->len < more) {
        cap *= 2;
    }

    b->data = realloc(b->data, cap);
    if (b->data == NULL) {
        wa_sim_oom();
    }

    b->cap = cap;
}


void
wa_sim_buf_add(wa_sim_buf_t *b, const void *p, size_t n)
{
    wa_sim_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}


void
wa_sim_buf_str(wa_sim_buf_t *b, const char *s)
{
    wa_sim_buf_add(b, s, strlen(s));
}


/* printf's cost shows at 20,000 answers a second; numbers are common. */
void
wa_sim_buf_u64(wa_sim_buf_t *b, uint64_t n)
{
    char   tmp[20], *p;

    p = tmp + sizeof(tmp);

    do {
        *--p = (char) ('0' + n % 10);
        n /= 10;
    } while (n);

    wa_sim_buf_add(b, p, tmp + sizeof(tmp) - p);
}


void
wa_sim_buf_printf(wa_sim_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    wa_sim_buf_reserve(b, 128);

    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);

    if (n < 0) {
        return;
    }

    if ((size_t) n >= b->cap - b->len) {
        wa_sim_buf_reserve(b, n + 1);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }

    b->len += n;
}


void
wa_sim_buf_free(wa_sim_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


void
wa_sim_buf_json(wa_sim_buf_t *b, const char *s, size_t n)
{
    char                 *o;
    size_t                used;
    uint32_t              cp;
    const unsigned char  *p, *end;

    /* the worst case: 4 UTF-8 bytes become 12 characters, 1 byte 6 */
    wa_sim_buf_reserve(b, 6 * n + 2);

    o = b->data + b->len;
    p = (const unsigned char *) s;
    end = p + n;

    *o++ = '"';

    while (p < end) {

        if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\' && *p != '/')
        {
            *o++ = *p++;
            continue;
        }

        if (*p >= 0x80) {
            used = wa_sim_utf8_decode(p, end - p, &cp);

            if (used == 0) {
                cp = 0xfffd;
                used = 1;
            }

            p += used;

            if (cp >= 0x10000) {
                cp -= 0x10000;
                o = wa_sim_json_unit(o, 0xd800 + (cp >> 10));
                o = wa_sim_json_unit(o, 0xdc00 + (cp & 0x3ff));

            } else {
                o = wa_sim_json_unit(o, cp);
            }

            continue;
        }

        *o++ = '\\';

        switch (*p) {
        case '"':  *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/':  *o++ = '/'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            o = wa_sim_json_unit(o - 1, *p);
        }

        p++;
    }

    *o++ = '"';
    b->len = o - b->data;
}


static char *
wa_sim_json_unit(char *o, uint32_t unit)
{
    *o++ = '\\';
    *o++ = 'u';
    *o++ = wa_sim_hex[(unit >> 12) & 0xf];
    *o++ = wa_sim_hex[(unit >> 8) & 0xf];
    *o++ = wa_sim_hex[(unit >> 4) & 0xf];
    *o++ = wa_sim_hex[unit & 0xf];

    return o;
}


/* Bytes used by one well-formed UTF-8 sequence, 0 when malformed. */
static size_t
wa_sim_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    size_t    len, i;
    uint32_t  c, min;

    if (*p >= 0xf0 && *p <= 0xf4) {
        len = 4; c = *p & 0x07; min = 0x10000;

    } else if (*p >= 0xe0) {
        len = 3; c = *p & 0x0f; min = 0x800;

    } else if (*p >= 0xc2 && *p < 0xe0) {
        len = 2; c = *p & 0x1f; min = 0x80;

    } else {
        return 0;
    }

    if (len > n || *p > 0xf4) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        c = (c << 6) | (p[i] & 0x3f);
    }

    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }

    *cp = c;

    return len;
}


size_t
wa_sim_utf8_length(const char *s, size_t n)
{
    size_t  i, count;

    count = 0;

    for (i = 0; i < n; i++) {
        count += ((unsigned char) s[i] & 0xc0) != 0x80;
    }

    return count;
}


/* xorshift64*: ids that only need to look random and not repeat soon */
uint64_t
wa_sim_random(void)
{
    static uint64_t  state;
    struct timespec  ts;

    if (state == 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        state = ((uint64_t) ts.tv_sec << 32) ^ (uint64_t) ts.tv_nsec
                ^ ((uint64_t) getpid() << 16) ^ 0x9e3779b97f4a7c15ULL;
    }

    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;

    return state * 0x2545f4914f6cdd1dULL;
}
