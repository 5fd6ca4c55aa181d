/*
 * PostgreSQL for the worker; see wa_db.h.
 */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wa_db.h"
#include "wa_log.h"


static int wa_db_is_migration(const struct dirent *d);
static int wa_db_applied(wa_db_t *db, const char *name);
static wa_db_result_e wa_db_failed(wa_db_t *db, PGresult *res,
    const char *what, char *err, size_t errlen);
static int wa_db_exec(wa_db_t *db, const char *sql);
static int wa_db_migrations(const char *sql_dir, struct dirent ***list);
static char *wa_db_read_file(const char *path);


/* Server notices ("already exists, skipping") are not the operator's
 * business unless debugging. */
static void
wa_db_notice(void *arg, const char *message)
{
    (void) arg;
    wa_log_debug("postgres: %.*s", (int) strcspn(message, "\n"), message);
}


int
wa_db_connect(wa_db_t *db, const char *conninfo)
{
    db->conn = PQconnectdb(conninfo);

    if (PQstatus(db->conn) != CONNECTION_OK) {
        /* PQerrorMessage names host and reason, never the password */
        wa_log_error("postgres: %.*s",
                     (int) strcspn(PQerrorMessage(db->conn), "\n"),
                     PQerrorMessage(db->conn));
        wa_db_close(db);
        return -1;
    }

    PQsetNoticeProcessor(db->conn, wa_db_notice, NULL);

    return 0;
}


void
wa_db_close(wa_db_t *db)
{
    if (db->conn) {
        PQfinish(db->conn);
        db->conn = NULL;
    }
}


/*
 * A failed statement: a broken connection, a deadlock or a serialization
 * failure is worth retrying; anything else is the data's fault.
 */
static wa_db_result_e
wa_db_failed(wa_db_t *db, PGresult *res, const char *what, char *err,
    size_t errlen)
{
    char         class[3];
    const char  *state;

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    /* the SQLSTATE class, kept: state points into res */
    class[0] = '\0';

    if (state && strlen(state) >= 2) {
        class[0] = state[0];
        class[1] = state[1];
        class[2] = '\0';
    }

    snprintf(err, errlen, "%s: %s", what,
             res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn));
    err[strcspn(err, "\n")] = '\0';

    PQclear(res);

    if (PQstatus(db->conn) != CONNECTION_OK) {
        wa_db_close(db);
        return WA_DB_RETRY;
    }

    /* transaction rollback, resources, operator intervention, connection */
    if (class[0] == '\0' || strcmp(class, "40") == 0
        || strcmp(class, "53") == 0 || strcmp(class, "57") == 0
        || strcmp(class, "08") == 0)
    {
        return WA_DB_RETRY;
    }

    return WA_DB_REJECT;
}


wa_db_result_e
wa_db_apply_send(wa_db_t *db, const char *json, int n, const char **bodies,
    const int *lens, const char *consumer, const char *done, char *err,
    size_t errlen)
{
    int              i, *formats, *lengths;
    char            *sql, *p;
    const char     **values;
    wa_db_result_e   rc;

    /* the bodies are bytes: bound in binary, one parameter each */
    sql = malloc(128 + (size_t) n * 24);
    values = malloc((n + 3) * sizeof(char *));
    formats = malloc((n + 3) * sizeof(int));
    lengths = malloc((n + 3) * sizeof(int));

    if (sql == NULL || values == NULL || formats == NULL || lengths == NULL) {
        snprintf(err, errlen, "wa_apply_batch: out of memory");
        rc = WA_DB_RETRY;
        goto done;
    }

    p = sql + sprintf(sql, "SELECT outbox_id, events, commands "
                           "FROM wa_apply_batch($1::jsonb, ARRAY[");

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s$%d::bytea", i ? "," : "", i + 4);
        values[i + 3] = bodies[i];
        lengths[i + 3] = lens[i];
        formats[i + 3] = 1;
    }

    sprintf(p, "]::bytea[], $2, $3::bigint[])");

    values[0] = json;
    values[1] = consumer;
    values[2] = done;
    lengths[0] = lengths[1] = lengths[2] = 0;
    formats[0] = formats[1] = formats[2] = 0;

    rc = wa_db_call_send(db, "wa_apply_batch", sql, n + 3, values, lengths,
                         formats, err, errlen);

done:

    free(sql);
    free(values);
    free(formats);
    free(lengths);

    return rc;
}


wa_db_result_e
wa_db_outbox_take(wa_db_t *db, const char *consumer, int idle_ms, int limit,
    PGresult **rows)
{
    char         err[256], idle[16], max[16];
    PGresult    *res;
    const char  *values[3];

    *rows = NULL;

    res = PQexec(db->conn, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        return wa_db_failed(db, res, "BEGIN", err, sizeof(err));
    }

    PQclear(res);

    snprintf(idle, sizeof(idle), "%d", idle_ms);
    snprintf(max, sizeof(max), "%d", limit);
    values[0] = consumer;
    values[1] = idle;
    values[2] = max;

    /* ours, the API's, and those of a worker gone for the claim idle
     * time; locked, so that two sweeps never publish one row twice */
    res = PQexecParams(db->conn,
        "SELECT id, events FROM update_outbox"
        " WHERE owner IS NULL OR owner = $1"
        "    OR created_at < now() - $2::integer * interval '1 ms'"
        " ORDER BY id LIMIT $3::integer FOR UPDATE SKIP LOCKED",
        3, NULL, values, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        wa_db_outbox_abort(db);
        return wa_db_failed(db, res, "outbox", err, sizeof(err));
    }

    *rows = res;

    return WA_DB_OK;
}


wa_db_result_e
wa_db_outbox_done(wa_db_t *db, PGresult *rows)
{
    int         i, n;
    char       *ids, *p, err[256];
    PGresult   *res;

    n = PQntuples(rows);
    ids = malloc(3 + (size_t) n * 21);

    if (ids == NULL) {
        wa_db_outbox_abort(db);
        return WA_DB_RETRY;
    }

    p = ids;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i ? "," : "", PQgetvalue(rows, i, 0));
    }

    strcpy(p, "}");

    if (wa_db_outbox_delete(db, ids) != WA_DB_OK) {
        free(ids);
        wa_db_outbox_abort(db);
        return WA_DB_RETRY;
    }

    free(ids);

    res = PQexec(db->conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        return wa_db_failed(db, res, "COMMIT", err, sizeof(err));
    }

    PQclear(res);

    return WA_DB_OK;
}


wa_db_result_e
wa_db_outbox_delete(wa_db_t *db, const char *ids)
{
    char         err[256];
    PGresult    *res;
    const char  *values[1];

    values[0] = ids;

    res = PQexecParams(db->conn,
                       "DELETE FROM update_outbox WHERE id = ANY($1::bigint[])",
                       1, NULL, values, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        return wa_db_failed(db, res, "outbox delete", err, sizeof(err));
    }

    PQclear(res);

    return WA_DB_OK;
}


void
wa_db_outbox_abort(wa_db_t *db)
{
    if (db->conn && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(db->conn, "ROLLBACK"));
    }
}


wa_db_result_e
wa_db_call(wa_db_t *db, const char *what, const char *sql, int n,
    const char *const *values, const int *lengths, const int *formats,
    PGresult **rows, char *err, size_t errlen)
{
    PGresult  *res;

    if (db->conn == NULL) {
        snprintf(err, errlen, "%s: not connected", what);
        return WA_DB_RETRY;
    }

    res = PQexecParams(db->conn, sql, n, NULL, values, lengths, formats, 0);

    if (PQresultStatus(res) != (rows ? PGRES_TUPLES_OK : PGRES_COMMAND_OK)) {
        return wa_db_failed(db, res, what, err, errlen);
    }

    if (rows) {
        *rows = res;

    } else {
        PQclear(res);
    }

    return WA_DB_OK;
}


wa_db_result_e
wa_db_call_send(wa_db_t *db, const char *what, const char *sql, int n,
    const char *const *values, const int *lengths, const int *formats,
    char *err, size_t errlen)
{
    if (db->conn == NULL) {
        snprintf(err, errlen, "%s: not connected", what);
        return WA_DB_RETRY;
    }

    /* libpq copies the parameters: the caller may free them at once */
    if (!PQsendQueryParams(db->conn, sql, n, NULL, values, lengths, formats,
                           0))
    {
        return wa_db_failed(db, NULL, what, err, errlen);
    }

    return WA_DB_OK;
}


int
wa_db_call_ready(wa_db_t *db)
{
    /* a connection lost is ready too: the result says so */
    return db->conn == NULL || !PQconsumeInput(db->conn)
           || !PQisBusy(db->conn);
}


wa_db_result_e
wa_db_call_result(wa_db_t *db, const char *what, PGresult **rows, char *err,
    size_t errlen)
{
    PGresult  *res, *more;

    *rows = NULL;

    if (db->conn == NULL) {
        snprintf(err, errlen, "%s: not connected", what);
        return WA_DB_RETRY;
    }

    res = PQgetResult(db->conn);

    /* one statement: drain to the end so the connection is ready */
    while ((more = PQgetResult(db->conn)) != NULL) {
        PQclear(more);
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        return wa_db_failed(db, res, what, err, errlen);
    }

    *rows = res;

    return WA_DB_OK;
}


wa_db_result_e
wa_db_retain(wa_db_t *db, int days)
{
    char         err[256], keep[32];
    PGresult    *res;
    const char  *values[1];

    snprintf(keep, sizeof(keep), "%d days", days);
    values[0] = keep;

    res = PQexecParams(db->conn,
                       "SELECT wa_webhook_log_retain($1::interval)",
                       1, NULL, values, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        wa_db_result_e  rc = wa_db_failed(db, res, "retention", err,
                                          sizeof(err));
        wa_log_error("%s", err);
        return rc;
    }

    PQclear(res);

    return WA_DB_OK;
}


static int
wa_db_exec(wa_db_t *db, const char *sql)
{
    PGresult  *res;

    res = PQexec(db->conn, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK
        && PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        wa_log_error("postgres: %s", PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }

    PQclear(res);

    return 0;
}


static int
wa_db_is_migration(const struct dirent *d)
{
    size_t  len = strlen(d->d_name);

    return len > 8 && d->d_name[0] >= '0' && d->d_name[0] <= '9'
           && strcmp(d->d_name + len - 4, ".sql") == 0;
}


/* NNN_name.sql files, in order */
static int
wa_db_migrations(const char *sql_dir, struct dirent ***list)
{
    int  n;

    n = scandir(sql_dir, list, wa_db_is_migration, alphasort);

    if (n < 0) {
        wa_log_error("cannot read migrations in %s", sql_dir);
    }

    return n;
}


static char *
wa_db_read_file(const char *path)
{
    long   len;
    char  *buf;
    FILE  *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    buf = NULL;

    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0
        && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc(len + 1)) != NULL)
    {
        if (fread(buf, 1, len, f) != (size_t) len) {
            free(buf);
            buf = NULL;

        } else {
            buf[len] = '\0';
        }
    }

    fclose(f);

    return buf;
}


/* 1: the migration is recorded, 0: it is not, -1: cannot tell */
static int
wa_db_applied(wa_db_t *db, const char *name)
{
    int          rc;
    PGresult    *res;
    const char  *values[1];

    values[0] = name;
    res = PQexecParams(db->conn, "SELECT 1 FROM wa_migrations WHERE name = $1",
                       1, NULL, values, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        wa_log_error("postgres: %s", PQresultErrorMessage(res));
        rc = -1;

    } else {
        rc = PQntuples(res) == 1;
    }

    PQclear(res);

    return rc;
}


int
wa_db_migrate(wa_db_t *db, const char *sql_dir)
{
    int              i, n, rc, applied, applied_already;
    char             path[2048], *sql;
    PGresult        *res;
    const char      *values[1];
    struct dirent  **list;

    n = wa_db_migrations(sql_dir, &list);
    if (n < 0) {
        return -1;
    }

    /* one migrator at a time, whoever runs it */
    if (wa_db_exec(db, "SELECT pg_advisory_lock(727201)") != 0
        || wa_db_exec(db, "CREATE TABLE IF NOT EXISTS wa_migrations ("
                          "name text PRIMARY KEY, "
                          "applied_at timestamptz NOT NULL DEFAULT now())")
           != 0)
    {
        rc = -1;
        goto done;
    }

    rc = 0;
    applied = 0;

    for (i = 0; i < n && rc == 0; i++) {
        applied_already = wa_db_applied(db, list[i]->d_name);

        if (applied_already != 0) {
            rc = applied_already < 0 ? -1 : 0;
            continue;
        }

        values[0] = list[i]->d_name;

        snprintf(path, sizeof(path), "%s/%s", sql_dir, list[i]->d_name);
        sql = wa_db_read_file(path);

        if (sql == NULL) {
            wa_log_error("cannot read %s", path);
            rc = -1;
            break;
        }

        rc = wa_db_exec(db, "BEGIN");
        rc = rc ? rc : wa_db_exec(db, sql);
        free(sql);

        if (rc == 0) {
            res = PQexecParams(db->conn,
                               "INSERT INTO wa_migrations (name) VALUES ($1)",
                               1, NULL, values, NULL, NULL, 0);
            rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
            PQclear(res);
        }

        if (rc == 0 && wa_db_exec(db, "COMMIT") == 0) {
            wa_log_info("migration %s applied", list[i]->d_name);
            applied++;

        } else {
            wa_log_error("migration %s failed, rolled back", list[i]->d_name);
            PQclear(PQexec(db->conn, "ROLLBACK"));
            rc = -1;
        }
    }

    if (rc == 0 && applied == 0) {
        wa_log_info("database schema is up to date");
    }

done:

    PQclear(PQexec(db->conn, "SELECT pg_advisory_unlock(727201)"));

    for (i = 0; i < n; i++) {
        free(list[i]);
    }

    free(list);

    return rc;
}


wa_db_result_e
wa_db_check_schema(wa_db_t *db, const char *sql_dir)
{
    int              i, n, applied;
    struct dirent  **list;
    wa_db_result_e   rc;

    n = wa_db_migrations(sql_dir, &list);
    if (n < 0) {
        return WA_DB_REJECT;
    }

    rc = WA_DB_OK;

    for (i = 0; i < n; i++) {
        applied = rc == WA_DB_RETRY ? -1 : wa_db_applied(db, list[i]->d_name);

        if (applied == 0) {
            wa_log_error("migration %s is not applied: run "
                         "\"whatsapp-worker migrate\"", list[i]->d_name);
            rc = WA_DB_REJECT;

        } else if (applied < 0 && rc == WA_DB_OK) {
            /* PostgreSQL went away (or is starting): not a verdict */
            rc = WA_DB_RETRY;
        }

        free(list[i]);
    }

    free(list);

    if (rc == WA_DB_RETRY && PQstatus(db->conn) != CONNECTION_OK) {
        wa_db_close(db);
    }

    return rc;
}
