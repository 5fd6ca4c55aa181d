/*
 * PostgreSQL for the worker: migrations, applying a batch, draining the
 * update outbox, the sender's calls.  Blocking libpq, a connection per
 * use; the long calls also in two halves (sent, then answered), so that
 * the caller goes on while PostgreSQL works.  A connection has one
 * statement at a time: a blocking call made while another is in flight
 * would swallow its answer.
 */

#ifndef WA_DB_H
#define WA_DB_H

#include <libpq-fe.h>


typedef enum {
    WA_DB_OK = 0,
    WA_DB_RETRY,            /* connection lost or transient: try again */
    WA_DB_REJECT            /* the data was refused: will never pass */
} wa_db_result_e;


typedef struct {
    PGconn  *conn;
} wa_db_t;


int wa_db_connect(wa_db_t *db, const char *conninfo);
void wa_db_close(wa_db_t *db);

/* Applies sql_dir's NNN_*.sql not yet applied, each in a transaction. */
int wa_db_migrate(wa_db_t *db, const char *sql_dir);

/*
 * WA_DB_OK when every migration in sql_dir is applied; WA_DB_REJECT (and
 * what is missing logged) when one is not; WA_DB_RETRY when PostgreSQL
 * could not tell (the connection is closed if it was lost).
 */
wa_db_result_e wa_db_check_schema(wa_db_t *db, const char *sql_dir);

/*
 * Outbox rows are (id, events): the events one line each, name TAB data
 * (JSON) LF, in order (sql/001_init.sql).
 */

/*
 * wa_apply_batch(json, ARRAY[bodies], consumer, done), one transaction
 * that also deletes the outbox rows done ("{id,...}": published), in two
 * halves so that the worker reads and parses the next batch while
 * PostgreSQL applies this one: send returns once the call is written,
 * and wa_db_call_result (below) waits for its answer.  On WA_DB_OK, its
 * rows hold the outbox row it wrote (id and events both NULL when there
 * was nothing to publish) and the doorbell commands of the auto-replies
 * it queued (NULL: none).
 */
wa_db_result_e wa_db_apply_send(wa_db_t *db, const char *json, int n,
    const char **bodies, const int *lens, const char *consumer,
    const char *done, char *err, size_t errlen);

/*
 * Takes up to limit outbox rows left unpublished (the consumer's own,
 * the API's, and another worker's older than idle_ms), locked so another
 * worker skips them, in a transaction
 * that wa_db_outbox_done() commits (deleting them) or wa_db_outbox_abort()
 * rolls back.
 */
wa_db_result_e wa_db_outbox_take(wa_db_t *db, const char *consumer,
    int idle_ms, int limit, PGresult **rows);
wa_db_result_e wa_db_outbox_done(wa_db_t *db, PGresult *rows);
void wa_db_outbox_abort(wa_db_t *db);

/* Deletes the outbox rows ids ("{id,...}": published). */
wa_db_result_e wa_db_outbox_delete(wa_db_t *db, const char *ids);

/*
 * One statement with text parameters (NULL: SQL NULL; lengths, formats
 * as PQexecParams takes them, NULL for text), for the sender's calls of
 * sql/007_send.sql.  With rows, a result set is expected and returned
 * (the caller clears it); without, a command.  what names it in err.
 */
wa_db_result_e wa_db_call(wa_db_t *db, const char *what, const char *sql,
    int n, const char *const *values, const int *lengths,
    const int *formats, PGresult **rows, char *err, size_t errlen);

/*
 * wa_db_call's statement (a result set expected) in three steps, so that
 * the caller goes on while PostgreSQL works: send returns once it is
 * written; ready tells, without waiting, whether the answer is in (or
 * the connection lost); result takes it, waiting for it if need be.
 */
wa_db_result_e wa_db_call_send(wa_db_t *db, const char *what,
    const char *sql, int n, const char *const *values, const int *lengths,
    const int *formats, char *err, size_t errlen);
int wa_db_call_ready(wa_db_t *db);
wa_db_result_e wa_db_call_result(wa_db_t *db, const char *what,
    PGresult **rows, char *err, size_t errlen);

/* Webhook log partitions: today's and tomorrow's, old ones dropped. */
wa_db_result_e wa_db_retain(wa_db_t *db, int days);

#endif /* WA_DB_H */
