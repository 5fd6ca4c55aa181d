/*
 * Configuration: one table drives defaults, the file, the environment and
 * --check-config's listing.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/crypto.h>

#include "wa_config.h"
#include "wa_log.h"
#include "wa_metrics.h"
#include "wa_parse.h"


typedef enum { WA_CF_STR, WA_CF_INT } wa_config_type_e;

typedef struct {
    const char        *section;
    const char        *name;
    wa_config_type_e   type;
    size_t             offset;
    size_t             size;        /* strings */
    const char        *dflt;
    int                min, max;    /* integers */
    int                secret;
} wa_config_item_t;


#define WA_STR(sec, nm, field, d, secret)                                  \
    { sec, nm, WA_CF_STR, offsetof(wa_config_t, field),                    \
      sizeof(((wa_config_t *) 0)->field), d, 0, 0, secret }
#define WA_INT(sec, nm, field, d, lo, hi)                                  \
    { sec, nm, WA_CF_INT, offsetof(wa_config_t, field), 0, d, lo, hi, 0 }

static const wa_config_item_t  wa_config_items[] = {
    WA_STR("redis", "host", redis_host, "127.0.0.1", 0),
    WA_INT("redis", "port", redis_port, "6379", 0, 65535),
    WA_STR("redis", "password", redis_password, "", 1),
    WA_INT("redis", "db", redis_db, "0", 0, 1 << 20),
    WA_STR("redis", "prefix", redis_prefix, "wa:", 0),
    WA_STR("postgres", "conninfo", postgres_conninfo, "dbname=wa", 1),
    WA_INT("postgres", "connections", postgres_connections, "2", 1,
           WA_SHARDS_MAX),
    WA_STR("worker", "consumer", worker_consumer, "", 0),
    WA_INT("worker", "batch", worker_batch, "1000", 1, 10000),
    WA_INT("worker", "block_ms", worker_block_ms, "1000", 10, 60000),
    WA_INT("worker", "claim_idle_ms", worker_claim_idle_ms, "60000", 100,
           86400000),
    WA_INT("worker", "max_deliveries", worker_max_deliveries, "5", 1, 1000),
    WA_INT("worker", "updates_maxlen", worker_updates_maxlen, "100000", 100,
           100000000),
    WA_INT("worker", "webhook_log_retention_days", worker_log_retention_days,
           "30", 1, 3650),
    WA_STR("worker", "log_level", worker_log_level, "info", 0),
    WA_STR("worker", "sql_dir", worker_sql_dir, "/usr/share/whatsapp/sql", 0),
    WA_STR("worker", "metrics_listen", worker_metrics_listen, "", 0),
    WA_INT("sender", "enabled", sender_enabled, "1", 0, 1),
    WA_STR("sender", "graph_url", sender_graph_url,
           "https://graph.facebook.com", 0),
    WA_STR("sender", "graph_version", sender_graph_version, "v25.0", 0),
    WA_STR("sender", "token_key", sender_token_key, "", 1),
    WA_STR("sender", "token_key_file", sender_token_key_file, "", 0),
    WA_INT("sender", "rate", sender_rate, "80", 1, 1000),
    WA_INT("sender", "high_rate", sender_high_rate, "1000", 1, 1000),
    WA_INT("sender", "pair_burst", sender_pair_burst, "10", 1, 45),
    WA_INT("sender", "pair_interval_ms", sender_pair_interval_ms, "6000", 10,
           600000),
    WA_INT("sender", "concurrency", sender_concurrency, "100", 1, 10000),
    WA_INT("sender", "timeout_ms", sender_timeout_ms, "20000", 100, 300000),
    WA_INT("sender", "max_attempts", sender_max_attempts, "5", 1, 100),
    WA_INT("sender", "retry_base_ms", sender_retry_base_ms, "1000", 1,
           3600000),
    WA_INT("sender", "retry_max_ms", sender_retry_max_ms, "60000", 1,
           86400000),
    WA_INT("sender", "sweep_ms", sender_sweep_ms, "5000", 10, 3600000),
    WA_INT("sender", "queue_max", sender_queue_max, "100000", 100, 10000000),
};

static int wa_config_hex(int c);

#define WA_CONFIG_N  (sizeof(wa_config_items) / sizeof(wa_config_items[0]))


typedef struct {
    wa_config_t  *cf;
    char         *err;
    size_t        errlen;
    const char   *origin;
} wa_config_ctx_t;


static int
wa_config_set(wa_config_t *cf, const wa_config_item_t *it, const char *value,
    char *err, size_t errlen, const char *origin)
{
    long   n;
    char  *end;

    if (it->type == WA_CF_STR) {
        if (strlen(value) >= it->size) {
            snprintf(err, errlen, "%s: %s.%s is too long", origin,
                     it->section, it->name);
            return -1;
        }

        strcpy((char *) cf + it->offset, value);
        return 0;
    }

    errno = 0;
    n = strtol(value, &end, 10);

    if (errno || end == value || *end != '\0' || n < it->min || n > it->max) {
        snprintf(err, errlen, "%s: %s.%s must be an integer from %d to %d, "
                 "not \"%s\"", origin, it->section, it->name, it->min,
                 it->max, value);
        return -1;
    }

    *(int *) ((char *) cf + it->offset) = (int) n;

    return 0;
}


static const wa_config_item_t *
wa_config_find(const char *section, const char *name)
{
    size_t  i;

    for (i = 0; i < WA_CONFIG_N; i++) {
        if (strcmp(wa_config_items[i].section, section) == 0
            && strcmp(wa_config_items[i].name, name) == 0)
        {
            return &wa_config_items[i];
        }
    }

    return NULL;
}


static int
wa_config_ini_handler(void *user, const char *section, const char *name,
    const char *value)
{
    wa_config_ctx_t         *ctx = user;
    const wa_config_item_t  *it;

    it = wa_config_find(section, name);

    if (it == NULL) {
        snprintf(ctx->err, ctx->errlen, "%s: unknown setting [%s] %s",
                 ctx->origin, section, name);
        return 0;
    }

    return wa_config_set(ctx->cf, it, value, ctx->err, ctx->errlen,
                         ctx->origin) == 0;
}


int
wa_config_load(wa_config_t *cf, const char *path, char *err, size_t errlen)
{
    int               rc;
    char              var[128], *p;
    size_t            i;
    const char       *value;
    wa_config_ctx_t   ctx;
    wa_log_level_e    level;

    memset(cf, 0, sizeof(*cf));

    for (i = 0; i < WA_CONFIG_N; i++) {
        (void) wa_config_set(cf, &wa_config_items[i], wa_config_items[i].dflt,
                             err, errlen, "default");
    }

    if (path) {
        ctx.cf = cf;
        ctx.err = err;
        ctx.errlen = errlen;
        ctx.origin = path;
        err[0] = '\0';

        rc = ini_parse(path, wa_config_ini_handler, &ctx);

        if (rc == -1) {
            snprintf(err, errlen, "cannot open %s: %s", path,
                     strerror(errno));
            return -1;
        }

        if (rc != 0) {
            if (err[0] == '\0') {
                snprintf(err, errlen, "%s:%d: syntax error", path, rc);

            } else {
                /* name the line as well */
                size_t  len = strlen(err);
                snprintf(err + len, errlen - len, " (line %d)", rc);
            }

            return -1;
        }
    }

    for (i = 0; i < WA_CONFIG_N; i++) {
        snprintf(var, sizeof(var), "WA_%s_%s", wa_config_items[i].section,
                 wa_config_items[i].name);

        for (p = var; *p; p++) {
            *p = (char) toupper((unsigned char) *p);
        }

        value = getenv(var);

        if (value && wa_config_set(cf, &wa_config_items[i], value, err,
                                   errlen, var) != 0)
        {
            return -1;
        }
    }

    if (wa_log_parse_level(cf->worker_log_level, &level) != 0) {
        snprintf(err, errlen, "worker.log_level must be error, warn, info "
                 "or debug, not \"%s\"", cf->worker_log_level);
        return -1;
    }

    /* refused here, not at listen time: --check-config and a reload see
     * it too */
    if (wa_metrics_address(cf->worker_metrics_listen, NULL, NULL) != 0) {
        snprintf(err, errlen, "worker.metrics_listen must be HOST:PORT (an "
                 "IPv4 address, or an IPv6 one in brackets, and a port from "
                 "1 to 65535), or empty (off), not \"%s\"",
                 cf->worker_metrics_listen);
        return -1;
    }

    if (cf->worker_consumer[0] == '\0'
        && gethostname(cf->worker_consumer, sizeof(cf->worker_consumer) - 1)
           != 0)
    {
        snprintf(err, errlen, "worker.consumer is not set and the host "
                 "name is unknown");
        return -1;
    }

    return 0;
}


int
wa_config_token_key(const wa_config_t *cf, unsigned char key[32], char *err,
    size_t errlen)
{
    int            i, hi, lo;
    FILE          *f;
    char           buf[128], *p, *end;
    const char    *origin;
    unsigned char  parsed[32];

    if (cf->sender_token_key[0]) {
        snprintf(buf, sizeof(buf), "%s", cf->sender_token_key);
        origin = "sender.token_key";

    } else if (cf->sender_token_key_file[0]) {
        f = fopen(cf->sender_token_key_file, "r");
        if (f == NULL) {
            snprintf(err, errlen, "cannot open %s: %s",
                     cf->sender_token_key_file, strerror(errno));
            return -1;
        }

        p = fgets(buf, sizeof(buf), f);
        fclose(f);

        if (p == NULL) {
            buf[0] = '\0';
        }

        origin = cf->sender_token_key_file;

    } else {
        return 1;
    }

    for (p = buf; isspace((unsigned char) *p); p++) { /* void */ }
    for (end = p + strlen(p); end > p && isspace((unsigned char) end[-1]);
         end--)
    { /* void */ }

    if (end - p != 64) {
        goto invalid;
    }

    for (i = 0; i < 32; i++) {
        hi = wa_config_hex(p[2 * i]);
        lo = wa_config_hex(p[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            goto invalid;
        }

        parsed[i] = (unsigned char) (hi << 4 | lo);
    }

    /* all or nothing: a bad key leaves the one in hand as it was */
    memcpy(key, parsed, sizeof(parsed));
    OPENSSL_cleanse(parsed, sizeof(parsed));
    OPENSSL_cleanse(buf, sizeof(buf));

    return 0;

invalid:

    OPENSSL_cleanse(parsed, sizeof(parsed));
    OPENSSL_cleanse(buf, sizeof(buf));

    snprintf(err, errlen, "%s must be 64 hex digits (32 random bytes, e.g. "
             "`openssl rand -hex 32`)", origin);
    return -1;
}


static int
wa_config_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c = tolower(c);

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


void
wa_config_print(const wa_config_t *cf)
{
    size_t                   i;
    const char              *section = "";
    const wa_config_item_t  *it;

    for (i = 0; i < WA_CONFIG_N; i++) {
        it = &wa_config_items[i];

        if (strcmp(section, it->section) != 0) {
            section = it->section;
            printf("%s[%s]\n", i ? "\n" : "", section);
        }

        if (it->type == WA_CF_INT) {
            printf("%s = %d\n", it->name,
                   *(const int *) ((const char *) cf + it->offset));

        } else if (it->secret
                   && *((const char *) cf + it->offset) != '\0')
        {
            printf("%s = (set, not shown)\n", it->name);

        } else {
            printf("%s = %s\n", it->name, (const char *) cf + it->offset);
        }
    }
}
