/*
 * whatsapp-worker configuration: an INI file, then WA_<SECTION>_<NAME>
 * environment variables over it (WA_REDIS_PORT=6380, ...).
 */

#ifndef WA_CONFIG_H
#define WA_CONFIG_H

#include <stddef.h>

#define WA_CONFIG_STR_MAX  1024

typedef struct {
    char  redis_host[WA_CONFIG_STR_MAX];
    int   redis_port;
    char  redis_password[WA_CONFIG_STR_MAX];
    int   redis_db;
    char  redis_prefix[64];

    char  postgres_conninfo[WA_CONFIG_STR_MAX];
    int   postgres_connections;      /* a batch's shares applied side by side */

    char  worker_consumer[256];
    int   worker_batch;              /* entries per XREADGROUP */
    int   worker_block_ms;           /* XREADGROUP BLOCK */
    int   worker_claim_idle_ms;      /* reclaim a dead consumer's entries */
    int   worker_max_deliveries;     /* then wa:dead */
    int   worker_updates_maxlen;     /* wa:updates cap */
    int   worker_log_retention_days;
    char  worker_log_level[16];
    char  worker_sql_dir[WA_CONFIG_STR_MAX];
} wa_config_t;

/*
 * Defaults, then the file (if path is not NULL), then the environment.
 * Returns 0, or -1 with a message in err naming the file, line or
 * variable at fault.
 */
int wa_config_load(wa_config_t *cf, const char *path, char *err,
    size_t errlen);

/* Prints the effective configuration, secrets masked. */
void wa_config_print(const wa_config_t *cf);

#endif /* WA_CONFIG_H */
