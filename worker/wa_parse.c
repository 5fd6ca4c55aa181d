/*
 * Webhook payload parsing with yajl's tree API; see wa_parse.h.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "wa_json.h"
#include "wa_parse.h"


typedef struct {
    wa_batch_t   *batch;
    const char   *waba_id;
    yajl_val      entry_time;
    const char   *pn;             /* metadata.phone_number_id */
    const char   *display;        /* metadata.display_phone_number */
} wa_change_t;


static void wa_parse_change(wa_change_t *ch, yajl_val change);
static void wa_parse_messages_value(wa_change_t *ch, yajl_val value);
static void wa_parse_message(wa_change_t *ch, yajl_val m, const char *customer,
    const char *dir, const char *source);
static void wa_parse_status(wa_change_t *ch, yajl_val s);
static void wa_parse_contact(wa_change_t *ch, yajl_val c, yajl_val ts);
static void wa_parse_echoes(wa_change_t *ch, yajl_val value);
static void wa_parse_history(wa_change_t *ch, yajl_val value);
static void wa_parse_field(wa_change_t *ch, const char *field, yajl_val v);
static void wa_parse_metadata(wa_change_t *ch, yajl_val value);
static void wa_parse_one_line(char *s);
static wa_shard_t *wa_batch_shard(wa_batch_t *b, const char *customer);

static yajl_val wa_array(yajl_val obj, const char *key);
static int wa_is_timestamp(yajl_val v);
static long long wa_timestamp(yajl_val v);
static void wa_gen_key(yajl_gen g, const char *key);
static void wa_gen_str(yajl_gen g, const char *key, const char *value);
static void wa_gen_value(yajl_gen g, const char *key, yajl_val v);
static void wa_gen_tree(yajl_gen g, yajl_val v);


/* Every generator of a batch: the shared ones, then each share's. */
static size_t
wa_batch_gens(wa_batch_t *b, yajl_gen **g)
{
    int     i;
    size_t  n;

    n = 0;
    g[n++] = &b->phones;
    g[n++] = &b->fields;
    g[n++] = &b->deliveries;

    for (i = 0; i < b->nshards; i++) {
        g[n++] = &b->shard[i].contacts;
        g[n++] = &b->shard[i].messages;
        g[n++] = &b->shard[i].statuses;
    }

    return n;
}


int
wa_batch_init(wa_batch_t *b, int nshards)
{
    size_t     i, n;
    yajl_gen  *g[3 + 3 * WA_SHARDS_MAX];

    memset(b, 0, sizeof(*b));
    b->nshards = nshards;
    n = wa_batch_gens(b, g);

    for (i = 0; i < n; i++) {
        *g[i] = yajl_gen_alloc(NULL);

        if (*g[i] == NULL) {
            wa_batch_free(b);
            return -1;
        }

        yajl_gen_array_open(*g[i]);
    }

    return 0;
}


void
wa_batch_free(wa_batch_t *b)
{
    size_t     i, n;
    yajl_gen  *g[3 + 3 * WA_SHARDS_MAX];

    n = wa_batch_gens(b, g);

    for (i = 0; i < n; i++) {
        if (*g[i]) {
            yajl_gen_free(*g[i]);
        }
    }

    memset(b, 0, sizeof(*b));
}


int
wa_batch_shard_used(const wa_batch_t *b, int shard)
{
    return shard == 0 || b->shard[shard].rows > 0;
}


/*
 * Share 0 is always applied, for the webhook log: a batch whose every
 * customer hashed to another share (one webhook, one customer: half the
 * time) would otherwise commit twice, and a commit costs PostgreSQL more
 * than the rows of a small batch.
 */
void
wa_batch_fold(wa_batch_t *b)
{
    int         i, used;
    wa_shard_t  sh;

    if (b->shard[0].rows > 0) {
        return;
    }

    used = 0;

    for (i = 1; i < b->nshards; i++) {
        if (b->shard[i].rows > 0) {
            if (used) {
                return;
            }

            used = i;
        }
    }

    if (used) {
        sh = b->shard[0];
        b->shard[0] = b->shard[used];
        b->shard[used] = sh;
    }
}


char *
wa_batch_json(wa_batch_t *b, int shard, size_t *len)
{
    char                 *out, *p;
    size_t                i, n, total;
    wa_shard_t           *sh;
    const unsigned char  *buf[6];
    size_t                blen[6];
    yajl_gen              g[6];
    static const char    *names[] = { "phones", "contacts", "messages",
                                      "statuses", "fields", "deliveries" };

    sh = &b->shard[shard];
    g[0] = b->phones;
    g[1] = sh->contacts;
    g[2] = sh->messages;
    g[3] = sh->statuses;
    g[4] = b->fields;
    g[5] = b->deliveries;
    total = 2;

    for (i = 0; i < 6; i++) {
        if (shard > 0 && (i == 0 || i >= 4)) {
            buf[i] = (const unsigned char *) "[]";
            blen[i] = 2;

        } else {
            yajl_gen_array_close(g[i]);
            yajl_gen_get_buf(g[i], &buf[i], &blen[i]);
        }

        total += strlen(names[i]) + 4 + blen[i];
    }

    out = malloc(total + 1);
    if (out == NULL) {
        return NULL;
    }

    p = out;
    *p++ = '{';

    for (i = 0; i < 6; i++) {
        n = (size_t) sprintf(p, "%s\"%s\":", i ? "," : "", names[i]);
        p += n;
        memcpy(p, buf[i], blen[i]);
        p += blen[i];
    }

    *p++ = '}';
    *p = '\0';
    *len = (size_t) (p - out);

    return out;
}


/*
 * The share of a customer's rows: FNV-1a of its id.  A status is routed
 * by its recipient, the customer of the message it reports on; one
 * without a recipient goes to share 0, and is applied correctly there
 * too (shares only spare waits: the apply is safe side by side).
 */
static wa_shard_t *
wa_batch_shard(wa_batch_t *b, const char *customer)
{
    uint32_t  h;

    if (customer == NULL) {
        return &b->shard[0];
    }

    for (h = 2166136261u; *customer; customer++) {
        h = (h ^ (unsigned char) *customer) * 16777619u;
    }

    return &b->shard[h % (uint32_t) b->nshards];
}


wa_parse_result_e
wa_parse_delivery(wa_batch_t *b, const char *body, size_t len, char *err,
    size_t errlen)
{
    size_t        i, j;
    yajl_val      root, entries, entry, changes;
    const char   *object;
    wa_change_t   ch;

    if (strlen(body) != len) {
        snprintf(err, errlen, "body contains a NUL byte");
        return WA_PARSE_INVALID;
    }

    root = yajl_tree_parse(body, err, errlen);

    if (root == NULL) {
        wa_parse_one_line(err);
        return WA_PARSE_INVALID;
    }

    if (!YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        snprintf(err, errlen, "body is not a JSON object");
        return WA_PARSE_INVALID;
    }

    object = wa_json_str(root, "object");

    if (object == NULL || strcmp(object, "whatsapp_business_account") != 0) {
        yajl_tree_free(root);
        return WA_PARSE_UNKNOWN;
    }

    entries = wa_array(root, "entry");

    for (i = 0; entries && i < entries->u.array.len; i++) {
        entry = entries->u.array.values[i];

        memset(&ch, 0, sizeof(ch));
        ch.batch = b;
        ch.waba_id = wa_json_str(entry, "id");
        ch.entry_time = wa_json_get(entry, "time");

        changes = wa_array(entry, "changes");

        for (j = 0; changes && j < changes->u.array.len; j++) {
            wa_parse_change(&ch, changes->u.array.values[j]);
        }
    }

    yajl_tree_free(root);

    return WA_PARSE_OK;
}


static void
wa_parse_change(wa_change_t *ch, yajl_val change)
{
    yajl_val     value;
    const char  *field;

    field = wa_json_str(change, "field");
    value = wa_json_get(change, "value");

    if (field == NULL || !YAJL_IS_OBJECT(value)) {
        wa_parse_field(ch, field ? field : "unknown", change);
        return;
    }

    ch->pn = NULL;
    ch->display = NULL;

    if (strcmp(field, "messages") == 0) {
        wa_parse_metadata(ch, value);
        wa_parse_messages_value(ch, value);
        return;
    }

    if (strcmp(field, "smb_message_echoes") == 0) {
        wa_parse_metadata(ch, value);
        wa_parse_echoes(ch, value);
        return;
    }

    if (strcmp(field, "history") == 0) {
        wa_parse_metadata(ch, value);
        wa_parse_history(ch, value);
        return;
    }

    wa_parse_field(ch, field, value);
}


static void
wa_parse_metadata(wa_change_t *ch, yajl_val value)
{
    yajl_gen  g = ch->batch->phones;
    yajl_val  metadata;

    metadata = wa_json_get(value, "metadata");
    ch->pn = wa_json_str(metadata, "phone_number_id");
    ch->display = wa_json_str(metadata, "display_phone_number");

    if (ch->pn == NULL) {
        return;
    }

    yajl_gen_map_open(g);
    wa_gen_str(g, "pn", ch->pn);
    wa_gen_str(g, "waba_id", ch->waba_id);
    wa_gen_str(g, "display", ch->display);
    yajl_gen_map_close(g);
}


static void
wa_parse_messages_value(wa_change_t *ch, yajl_val value)
{
    size_t       i;
    yajl_val     list, m, errors, latest;
    const char  *customer;

    /* the newest message dates the names in contacts[] */
    latest = NULL;
    list = wa_array(value, "messages");

    for (i = 0; list && i < list->u.array.len; i++) {
        m = wa_json_get(list->u.array.values[i], "timestamp");

        if (wa_is_timestamp(m)
            && (latest == NULL || wa_timestamp(m) > wa_timestamp(latest)))
        {
            latest = m;
        }
    }

    for (i = 0; list && i < list->u.array.len; i++) {
        m = list->u.array.values[i];
        customer = wa_json_str(m, "from");

        if (customer == NULL) {
            customer = wa_json_str(m, "from_user_id");
        }

        wa_parse_message(ch, m, customer, "in", "webhook");
    }

    list = wa_array(value, "contacts");

    for (i = 0; list && i < list->u.array.len; i++) {
        wa_parse_contact(ch, list->u.array.values[i], latest);
    }

    list = wa_array(value, "statuses");

    for (i = 0; list && i < list->u.array.len; i++) {
        wa_parse_status(ch, list->u.array.values[i]);
    }

    errors = wa_array(value, "errors");

    if (errors) {
        wa_parse_field(ch, "messages.errors", errors);
    }
}


/*
 * A message row; rows without an id, a customer or a numeric timestamp
 * cannot be keyed and go to field_events whole instead.
 */
static void
wa_parse_message(wa_change_t *ch, yajl_val m, const char *customer,
    const char *dir, const char *source)
{
    int          phone;
    yajl_gen     g;
    yajl_val     ts;
    wa_shard_t  *sh;
    const char  *wamid, *type;

    wamid = wa_json_str(m, "id");
    type = wa_json_str(m, "type");
    ts = wa_json_get(m, "timestamp");

    if (wamid == NULL || customer == NULL || type == NULL || ch->pn == NULL
        || !wa_is_timestamp(ts))
    {
        wa_parse_field(ch, "messages.unkeyed", m);
        return;
    }

    sh = wa_batch_shard(ch->batch, customer);
    g = sh->messages;

    yajl_gen_map_open(g);
    wa_gen_str(g, "wamid", wamid);
    wa_gen_str(g, "pn", ch->pn);
    wa_gen_str(g, "customer", customer);
    wa_gen_str(g, "dir", dir);
    wa_gen_str(g, "source", source);
    wa_gen_value(g, "ts", ts);
    wa_gen_value(g, "msg", m);
    yajl_gen_map_close(g);

    sh->rows++;

    /*
     * Every customer gets a contact row, named or not.  Phone numbers are
     * digits, business-scoped user ids ("US.1349...") are not: the same
     * identity fields whichever payload names the customer first.
     */
    phone = customer[strspn(customer, "0123456789")] == '\0';

    g = sh->contacts;
    yajl_gen_map_open(g);
    wa_gen_str(g, "pn", ch->pn);
    wa_gen_str(g, "customer", customer);
    wa_gen_str(g, "wa_id", phone ? customer : NULL);
    wa_gen_str(g, "user_id", phone ? NULL : customer);
    yajl_gen_map_close(g);
}


static void
wa_parse_contact(wa_change_t *ch, yajl_val c, yajl_val ts)
{
    yajl_gen     g;
    wa_shard_t  *sh;
    const char  *wa_id, *user_id, *customer;

    wa_id = wa_json_str(c, "wa_id");
    user_id = wa_json_str(c, "user_id");
    customer = wa_id ? wa_id : user_id;

    if (customer == NULL || ch->pn == NULL) {
        return;
    }

    sh = wa_batch_shard(ch->batch, customer);
    g = sh->contacts;
    sh->rows++;

    yajl_gen_map_open(g);
    wa_gen_str(g, "pn", ch->pn);
    wa_gen_str(g, "customer", customer);
    wa_gen_str(g, "wa_id", wa_id);
    wa_gen_str(g, "user_id", user_id);
    wa_gen_str(g, "name", wa_json_str(wa_json_get(c, "profile"), "name"));
    wa_gen_value(g, "ts", ts ? ts : ch->entry_time);
    yajl_gen_map_close(g);
}


static void
wa_parse_status(wa_change_t *ch, yajl_val s)
{
    yajl_gen     g;
    yajl_val     ts;
    wa_shard_t  *sh;
    const char  *wamid, *status, *recipient;

    wamid = wa_json_str(s, "id");
    status = wa_json_str(s, "status");
    ts = wa_json_get(s, "timestamp");

    if (wamid == NULL || status == NULL || ch->pn == NULL
        || !wa_is_timestamp(ts))
    {
        wa_parse_field(ch, "statuses.unkeyed", s);
        return;
    }

    /* the customer as its message names it: the number, else the
     * business-scoped user id */
    recipient = wa_json_str(s, "recipient_id");

    if (recipient == NULL) {
        recipient = wa_json_str(s, "recipient_user_id");
    }

    sh = wa_batch_shard(ch->batch, recipient);
    g = sh->statuses;

    yajl_gen_map_open(g);
    wa_gen_str(g, "wamid", wamid);
    wa_gen_str(g, "pn", ch->pn);
    wa_gen_str(g, "status", status);
    wa_gen_value(g, "ts", ts);
    wa_gen_value(g, "raw", s);
    yajl_gen_map_close(g);

    sh->rows++;
}


/* Messages sent from the business' other devices (coexistence). */
static void
wa_parse_echoes(wa_change_t *ch, yajl_val value)
{
    size_t    i;
    yajl_val  list, m;

    list = wa_array(value, "message_echoes");

    for (i = 0; list && i < list->u.array.len; i++) {
        m = list->u.array.values[i];
        wa_parse_message(ch, m, wa_json_str(m, "to"), "out", "echo");
    }
}


/* History sync: threads of past messages, both directions. */
static void
wa_parse_history(wa_change_t *ch, yajl_val value)
{
    size_t       i, j, k;
    yajl_val     history, threads, thread, list, m, errors;
    const char  *from;

    history = wa_array(value, "history");

    for (i = 0; history && i < history->u.array.len; i++) {
        threads = wa_array(history->u.array.values[i], "threads");

        for (j = 0; threads && j < threads->u.array.len; j++) {
            thread = threads->u.array.values[j];
            list = wa_array(thread, "messages");

            for (k = 0; list && k < list->u.array.len; k++) {
                m = list->u.array.values[k];
                from = wa_json_str(m, "from");

                wa_parse_message(ch, m, wa_json_str(thread, "id"),
                                 (from && ch->display
                                  && strcmp(from, ch->display) == 0)
                                 ? "out" : "in", "history");
            }
        }

        errors = wa_array(history->u.array.values[i], "errors");

        if (errors) {
            wa_parse_field(ch, "history.errors", errors);
        }
    }
}


static void
wa_parse_field(wa_change_t *ch, const char *field, yajl_val v)
{
    yajl_gen  g = ch->batch->fields;

    yajl_gen_map_open(g);
    wa_gen_str(g, "waba_id", ch->waba_id ? ch->waba_id : "");
    wa_gen_str(g, "field", field);
    wa_gen_value(g, "time", ch->entry_time);
    wa_gen_value(g, "value", v);
    yajl_gen_map_close(g);
}


void
wa_batch_delivery(wa_batch_t *b, const char *stream_id, const char *rcvd,
    const char *rid, int body_index, const char *result, const char *error)
{
    yajl_gen  g = b->deliveries;

    yajl_gen_map_open(g);
    wa_gen_str(g, "stream_id", stream_id);
    wa_gen_str(g, "rcvd", rcvd);
    wa_gen_str(g, "rid", rid);
    wa_gen_key(g, "body");
    yajl_gen_integer(g, body_index);
    wa_gen_str(g, "result", result);
    wa_gen_str(g, "error", error);
    yajl_gen_map_close(g);
}


/* yajl's messages draw an arrow over several lines; logs want one */
static void
wa_parse_one_line(char *s)
{
    char  *p, *q;

    for (p = q = s; *p; p++) {
        if (*p == '\n' || *p == '\t' || *p == ' ') {
            if (q > s && q[-1] != ' ') {
                *q++ = ' ';
            }

            continue;
        }

        *q++ = *p;
    }

    while (q > s && q[-1] == ' ') {
        q--;
    }

    *q = '\0';
}


static yajl_val
wa_array(yajl_val obj, const char *key)
{
    yajl_val  v = wa_json_get(obj, key);

    return YAJL_IS_ARRAY(v) ? v : NULL;
}


/* Meta's timestamps are seconds as a string of digits (or a number). */
static int
wa_is_timestamp(yajl_val v)
{
    const char  *s;

    if (YAJL_IS_INTEGER(v)) {
        return 1;
    }

    if (!YAJL_IS_STRING(v)) {
        return 0;
    }

    s = v->u.string;

    if (*s == '\0' || strlen(s) > 12) {
        return 0;
    }

    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
    }

    return 1;
}


static long long
wa_timestamp(yajl_val v)
{
    return YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v)
                              : strtoll(v->u.string, NULL, 10);
}


static void
wa_gen_key(yajl_gen g, const char *key)
{
    yajl_gen_string(g, (const unsigned char *) key, strlen(key));
}


static void
wa_gen_str(yajl_gen g, const char *key, const char *value)
{
    wa_gen_key(g, key);

    if (value == NULL) {
        yajl_gen_null(g);
        return;
    }

    yajl_gen_string(g, (const unsigned char *) value, strlen(value));
}


static void
wa_gen_value(yajl_gen g, const char *key, yajl_val v)
{
    wa_gen_key(g, key);
    wa_gen_tree(g, v);
}


/* Re-serializes a parsed value; numbers keep their original text. */
static void
wa_gen_tree(yajl_gen g, yajl_val v)
{
    size_t  i;

    if (v == NULL || YAJL_IS_NULL(v)) {
        yajl_gen_null(g);

    } else if (YAJL_IS_STRING(v)) {
        yajl_gen_string(g, (const unsigned char *) v->u.string,
                        strlen(v->u.string));

    } else if (YAJL_IS_NUMBER(v)) {
        yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));

    } else if (YAJL_IS_TRUE(v)) {
        yajl_gen_bool(g, 1);

    } else if (YAJL_IS_FALSE(v)) {
        yajl_gen_bool(g, 0);

    } else if (YAJL_IS_OBJECT(v)) {
        yajl_gen_map_open(g);

        for (i = 0; i < v->u.object.len; i++) {
            wa_gen_value(g, v->u.object.keys[i], v->u.object.values[i]);
        }

        yajl_gen_map_close(g);

    } else if (YAJL_IS_ARRAY(v)) {
        yajl_gen_array_open(g);

        for (i = 0; i < v->u.array.len; i++) {
            wa_gen_tree(g, v->u.array.values[i]);
        }

        yajl_gen_array_close(g);
    }
}
