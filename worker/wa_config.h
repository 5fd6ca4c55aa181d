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
    char  worker_metrics_listen[64]; /* HOST:PORT of GET /metrics; "": off */

    int   sender_enabled;            /* 0: this worker does not send */
    char  sender_graph_url[WA_CONFIG_STR_MAX];
    char  sender_graph_version[16];
    char  sender_token_key[65];      /* 64 hex digits: AES-256-GCM key */
    char  sender_token_key_file[WA_CONFIG_STR_MAX];
    int   sender_rate;               /* messages/s per number */
    int   sender_high_rate;          /* once Meta raised its throughput */
    int   sender_pair_burst;         /* to one recipient, at once */
    int   sender_pair_interval_ms;   /* then one per interval */
    int   sender_concurrency;        /* requests in flight */
    int   sender_timeout_ms;         /* one request to Meta */
    int   sender_max_attempts;
    int   sender_retry_base_ms;      /* backoff: base * 2^(attempt - 1) */
    int   sender_retry_max_ms;
    int   sender_sweep_ms;           /* queued rows without a doorbell */
    int   sender_queue_max;          /* messages held in memory */
} wa_config_t;

/*
 * Defaults, then the file (if path is not NULL), then the environment.
 * Returns 0, or -1 with a message in err naming the file, line or
 * variable at fault.
 */
int wa_config_load(wa_config_t *cf, const char *path, char *err,
    size_t errlen);

/*
 * The token key: sender.token_key, else the file sender.token_key_file
 * names (64 hex digits, whitespace around allowed).  Returns 0, 1 when
 * neither is set, or -1 with a message in err.
 */
int wa_config_token_key(const wa_config_t *cf, unsigned char key[32],
    char *err, size_t errlen);

/* Prints the effective configuration, secrets masked. */
void wa_config_print(const wa_config_t *cf);

#endif /* WA_CONFIG_H */
