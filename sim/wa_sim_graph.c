/*
 * POST /{version}/{phone_number_id}/messages as Meta's Graph API answers
 * it: authentication, validation, rules, the success body with a fresh
 * wamid, Meta's error envelope, and the request log.
 *
 * Messages are Meta's own where a capture or Meta's documentation shows
 * them ("(#100) The parameter messaging_product is required.", "The
 * parameter to is required.", 104 for a missing token); validation of the
 * typed objects answers 131008 / 131009 with the reason in
 * error_data.details, as Meta does since v16.
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <yajl/yajl_tree.h>

#include "wa_json.h"
#include "wa_sim.h"


#define WA_SIM_TEXT_MAX        4096
#define WA_SIM_OPAQUE_MAX      512
#define WA_SIM_ID_MAX          32
#define WA_SIM_VERSION_MAX     15
#define WA_SIM_RECIPIENT_MAX   64

#define WA_SIM_JSON  "application/json; charset=UTF-8"


typedef struct {
    int          code;
    int          http_status;        /* 0: Meta's for the code */
    const char  *type;               /* NULL: OAuthException */
    const char  *message;            /* NULL: "(#code) title" */
    const char  *details;            /* NULL: no error_data */
    int          subcode;
    char         buf[384];
} wa_sim_fail_t;

typedef struct {
    wa_sim_request_t  *r;
    char               pnid[WA_SIM_ID_MAX + 1];
    char               version[WA_SIM_VERSION_MAX + 1];
    int                v24;
    int                auth;         /* 1 a token, 0 none, -1 unparsable */
    const char        *token;
    size_t             token_len;
    yajl_val           tree;         /* the body parsed, or NULL */
    yajl_val           root;         /* the tree if Meta would read it */
    const char        *to;           /* "to" or "recipient" */
    const char        *type;         /* as sent, "text" when absent */
    char               wamid[160];
} wa_sim_send_t;


static int wa_sim_graph_route(const char *p, size_t n, wa_sim_send_t *s);
static void wa_sim_graph_token(wa_sim_send_t *s);
static void wa_sim_graph_parse(wa_sim_send_t *s);
static int wa_sim_json_plain(const char *p, size_t n);
static int wa_sim_graph_send(wa_sim_send_t *s, const wa_sim_action_t *act,
    wa_sim_reply_t *reply);
static int wa_sim_graph_check(wa_sim_send_t *s, wa_sim_fail_t *f);
static int wa_sim_graph_check_read(wa_sim_send_t *s, wa_sim_fail_t *f);
static int wa_sim_graph_check_typed(wa_sim_send_t *s, yajl_val obj,
    wa_sim_fail_t *f);
static int wa_sim_graph_check_media(const char *type, yajl_val obj,
    wa_sim_fail_t *f);
static int wa_sim_graph_accept(wa_sim_send_t *s, const wa_sim_action_t *act,
    wa_sim_reply_t *reply);
static int wa_sim_graph_error(wa_sim_reply_t *reply, const wa_sim_fail_t *f);
static void wa_sim_graph_unknown_path(wa_sim_request_t *r,
    wa_sim_reply_t *reply);
static void wa_sim_graph_record(wa_sim_send_t *s, int status);
static int wa_sim_recipient(const char *to, char *out, int *user_id);
static size_t wa_sim_wamid(char *out, const char *recipient);
static void wa_sim_trace_id(char *out);
static void wa_sim_expired_message(char *out, size_t size);

static int wa_sim_fail(wa_sim_fail_t *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int wa_sim_fail_param(wa_sim_fail_t *f, const char *message);


/*
 * Meta's error codes: HTTP status and title from Meta's table
 * (support/error-codes); details where Meta's captures show them.
 */
static const wa_sim_error_t  wa_sim_errors[] = {
    { 0, 401, "AuthException", NULL, 0 },
    { 1, 400, "API Unknown", NULL, 0 },
    { 2, 503, "API Service", NULL, 0 },
    { 3, 500, "API Method", NULL, 0 },
    { 4, 400, "API Too Many Calls", NULL, 0 },
    { 10, 403, "Permission Denied", NULL, 0 },
    { 100, 400, "Invalid parameter", NULL, 0 },
    { 104, 400, "An access token is required to request this resource.",
      NULL, 0 },
    { 190, 401, "Access token has expired", NULL, 463 },
    { 200, 403, "API Permission", NULL, 0 },
    { 368, 403, "Temporarily blocked for policies violations", NULL, 0 },
    { 2500, 400, "Unknown path components", NULL, 0 },
    { 80007, 400, "Rate limit issues", NULL, 0 },
    { 130429, 400, "Rate limit hit",
      "Cloud API message throughput has been reached.", 2494055 },
    { 130472, 400, "User's number is part of an experiment",
      "Failed to send message because this user's phone number is part of "
      "an experiment", 0 },
    { 130497, 403, "Business account is restricted from messaging users "
      "in this country", NULL, 0 },
    { 131000, 500, "Something went wrong", NULL, 0 },
    { 131005, 403, "Access denied", NULL, 0 },
    { 131008, 400, "Required parameter is missing", NULL, 0 },
    { 131009, 400, "Parameter value is not valid", NULL, 0 },
    { 131016, 500, "Service unavailable", NULL, 0 },
    { 131021, 400, "Recipient cannot be sender", NULL, 0 },
    { 131026, 400, "Message undeliverable", NULL, 0 },
    { 131030, 400, "Recipient phone number not in allowed list",
      "Recipient phone number not in allowed list: Add recipient phone "
      "number to recipient list and try again.", 0 },
    { 131031, 403, "Account has been locked", NULL, 0 },
    { 131037, 400, "WhatsApp provided number needs display name approval "
      "before message can be sent.", NULL, 0 },
    { 131042, 400, "Business eligibility payment issue", NULL, 0 },
    { 131045, 500, "Incorrect certificate", NULL, 0 },
    { 131047, 400, "Re-engagement message",
      "Message failed to send because more than 24 hours have passed "
      "since the customer last replied to this number.", 0 },
    { 131048, 400, "Spam rate limit hit", NULL, 0 },
    { 131049, 400, "This message was not delivered to maintain healthy "
      "ecosystem engagement.",
      "In order to maintain a healthy ecosystem engagement, the message "
      "failed to be delivered.", 0 },
    { 131050, 400, "Unable to deliver the message. This recipient has "
      "chosen to stop receiving marketing messages on WhatsApp from your "
      "business.", NULL, 0 },
    { 131051, 400, "Unsupported message type", NULL, 0 },
    { 131052, 400, "Media download error", NULL, 0 },
    { 131053, 400, "Media upload error", NULL, 0 },
    { 131055, 400, "Method not allowed", NULL, 0 },
    { 131056, 400, "(Business Account, Consumer Account) pair rate limit "
      "hit", NULL, 0 },
    { 131057, 500, "Account in maintenance mode", NULL, 0 },
    { 132000, 400, "Number of parameters does not match the expected "
      "number of params", NULL, 0 },
    { 132001, 404, "Template name does not exist in the translation",
      NULL, 0 },
    { 132005, 400, "Translated text too long", NULL, 0 },
    { 132007, 400, "Template Format Character Policy Violated", NULL, 0 },
    { 132012, 400, "Parameter format does not match format in the created "
      "template", NULL, 0 },
    { 132015, 400, "Template is Paused", NULL, 0 },
    { 132016, 400, "Template is Disabled", NULL, 0 },
    { 132068, 400, "Flow is in blocked state", NULL, 0 },
    { 132069, 400, "Flow is in throttled state", NULL, 0 },
    { 133000, 500, "Incomplete deregistration", NULL, 0 },
    { 133004, 503, "Server temporarily unavailable", NULL, 0 },
    { 133010, 400, "Account not registered", NULL, 0 },
    { 133015, 400, "Please wait a few minutes before attempting to "
      "register this phone number", NULL, 0 },
    { 133016, 400, "Account register deregister rate limit exceeded",
      NULL, 0 },
    { 135000, 400, "Generic user error", NULL, 0 },
};

static const char  *wa_sim_types[] = {
    "text", "image", "video", "audio", "document", "sticker", "location",
    "contacts", "reaction", "template", "interactive", NULL
};

static const char  *wa_sim_interactive_types[] = {
    "button", "list", "cta_url", "flow", "location_request_message",
    "address_message", "product", "product_list", "catalog_message",
    "call_permission_request", "carousel", "voice_call", NULL
};

static uint32_t  wa_sim_wamid_seed;
static uint64_t  wa_sim_wamid_counter;


void
wa_sim_graph_init(void)
{
    /* wamids unique within a run, and unlikely to repeat across runs */
    wa_sim_wamid_seed = (uint32_t) wa_sim_random();
}


const wa_sim_error_t *
wa_sim_error_find(int code)
{
    size_t                 i;
    static wa_sim_error_t  other;

    for (i = 0; i < sizeof(wa_sim_errors) / sizeof(wa_sim_errors[0]); i++) {
        if (wa_sim_errors[i].code == code) {
            return &wa_sim_errors[i];
        }
    }

    /* 200-299 share one meaning */
    if (code > 200 && code < 300) {
        return wa_sim_error_find(200);
    }

    other.code = code;
    other.http_status = 400;
    other.title = "Unknown error";

    return &other;
}


void
wa_sim_graph_handle(wa_sim_request_t *r, wa_sim_reply_t *reply)
{
    int                     status;
    wa_sim_send_t           s;
    wa_sim_match_t          m;
    const wa_sim_action_t  *act;

    memset(&s, 0, sizeof(s));
    s.r = r;

    if (!wa_sim_graph_route(r->path, r->path_len, &s)) {
        wa_sim_graph_unknown_path(r, reply);
        return;
    }

    wa_sim_stats.requests++;

    wa_sim_graph_token(&s);
    wa_sim_graph_parse(&s);
    s.to = wa_json_str(s.root, "to");

    if (s.to == NULL) {
        s.to = wa_json_str(s.root, "recipient");
    }

    s.type = wa_json_str(s.root, "type");

    if (s.type == NULL) {
        s.type = wa_json_get(s.root, "type") ? "" : "text";
    }

    m.phone_number_id = s.pnid;
    m.to = s.to;
    m.to_len = s.to ? strlen(s.to) : 0;
    m.token = s.auth == 1 ? s.token : NULL;
    m.token_len = s.token_len;
    m.type = wa_json_get(s.root, "status") ? wa_json_str(s.root, "status")
                                          : s.type;
    act = wa_sim_rules_match(&m);

    status = wa_sim_graph_send(&s, act, reply);

    if (status == 200) {
        wa_sim_stats.accepted++;

    } else {
        wa_sim_stats.errors++;
    }

    wa_sim_graph_record(&s, status);
    yajl_tree_free(s.tree);
}


/* "/v21.0/{digits or not}/messages"; the id is checked later, as Meta does */
static int
wa_sim_graph_route(const char *p, size_t n, wa_sim_send_t *s)
{
    size_t       i, vlen, idlen;
    const char  *v, *id, *end, *slash;

    end = p + n;

    if (n < 2 || p[0] != '/') {
        return 0;
    }

    v = p + 1;
    slash = memchr(v, '/', end - v);

    if (slash == NULL) {
        return 0;
    }

    vlen = slash - v;

    if (vlen < 2 || vlen > WA_SIM_VERSION_MAX || v[0] != 'v') {
        return 0;
    }

    for (i = 1; i < vlen; i++) {
        if ((v[i] < '0' || v[i] > '9') && v[i] != '.') {
            return 0;
        }
    }

    id = slash + 1;
    slash = memchr(id, '/', end - id);

    if (slash == NULL || (size_t) (end - slash) != sizeof("/messages") - 1
        || memcmp(slash, "/messages", sizeof("/messages") - 1) != 0)
    {
        return 0;
    }

    idlen = slash - id;

    if (idlen == 0 || idlen > WA_SIM_ID_MAX) {
        return 0;
    }

    memcpy(s->version, v, vlen);
    s->version[vlen] = '\0';
    memcpy(s->pnid, id, idlen);
    s->pnid[idlen] = '\0';

    /* v24.0 dropped "conversation" from status webhooks */
    s->v24 = atoi(s->version + 1) >= 24;

    return 1;
}


/* "Authorization: Bearer <token>" (or "OAuth"), else ?access_token= */
static void
wa_sim_graph_token(wa_sim_send_t *s)
{
    size_t       n, i;
    const char  *a, *q, *end;

    a = s->r->authorization;

    if (a) {
        n = s->r->authorization_len;

        if (n > 7 && strncasecmp(a, "Bearer ", 7) == 0) {
            a += 7; n -= 7;

        } else if (n > 6 && strncasecmp(a, "OAuth ", 6) == 0) {
            a += 6; n -= 6;

        } else {
            s->auth = -1;
            return;
        }

        while (n && *a == ' ') {
            a++; n--;
        }

        for (i = 0; i < n; i++) {
            if (a[i] == ' ' || a[i] == ',') {
                s->auth = -1;
                return;
            }
        }

        s->auth = n ? 1 : -1;
        s->token = a;
        s->token_len = n;
        return;
    }

    q = s->r->query;
    end = q + s->r->query_len;

    for ( ; q && q < end; q++) {
        if ((q == s->r->query || q[-1] == '&')
            && (size_t) (end - q) > 13 && memcmp(q, "access_token=", 13) == 0)
        {
            s->token = q + 13;
            for (n = 0; s->token + n < end && s->token[n] != '&'; n++) {
                /* void */
            }

            s->token_len = n;
            s->auth = n ? 1 : 0;
            return;
        }
    }

    s->auth = 0;
}


/*
 * s->tree: the body if it is JSON (the request log embeds it as such);
 * s->root: that, if an object sent as application/json, else NULL: Meta
 * then sees no parameters.
 */
static void
wa_sim_graph_parse(wa_sim_send_t *s)
{
    wa_sim_request_t  *r;

    r = s->r;

    if (r->body_len == 0 || !wa_sim_json_plain(r->body, r->body_len)) {
        return;
    }

    s->tree = yajl_tree_parse(r->body, NULL, 0);

    if (YAJL_IS_OBJECT(s->tree) && r->content_type
        && r->content_type_len >= 16
        && strncasecmp(r->content_type, "application/json", 16) == 0)
    {
        s->root = s->tree;
    }
}


/*
 * yajl accepts comments and stops at a NUL; a body with either is not
 * the JSON Meta would read (nor could the request log embed it as is).
 */
static int
wa_sim_json_plain(const char *p, size_t n)
{
    int     in_string;
    size_t  i;

    in_string = 0;

    for (i = 0; i < n; i++) {
        if (p[i] == '\0') {
            return 0;
        }

        if (in_string) {
            if (p[i] == '\\') {
                i++;

            } else if (p[i] == '"') {
                in_string = 0;
            }

        } else if (p[i] == '"') {
            in_string = 1;

        } else if (p[i] == '/') {
            return 0;
        }
    }

    return 1;
}


/* The answer to one /messages request; returns its status (0: dropped). */
static int
wa_sim_graph_send(wa_sim_send_t *s, const wa_sim_action_t *act,
    wa_sim_reply_t *reply)
{
    int            status;
    wa_sim_fail_t  f;

    if (act && act->type == WA_SIM_ACT_DROP) {
        reply->status = 0;
        return 0;
    }

    if (act && act->type == WA_SIM_ACT_HTTP) {
        /* a proxy's page, not Graph's JSON */
        reply->status = act->http_status;
        reply->content_type = "text/html";

        if (act->body) {
            wa_sim_buf_str(reply->body, act->body);

        } else {
            wa_sim_buf_printf(reply->body,
                              "<html><head><title>%d</title></head><body>"
                              "<h1>%d</h1><p>upstream unavailable</p>"
                              "</body></html>\n",
                              act->http_status, act->http_status);
        }

        return act->http_status;
    }

    memset(&f, 0, sizeof(f));

    if (act && act->type == WA_SIM_ACT_ERROR) {
        f.code = act->code;
        f.http_status = act->http_status;
        f.details = act->details ? act->details
                                 : wa_sim_error_find(act->code)->details;
        f.subcode = wa_sim_error_find(act->code)->subcode;
        status = wa_sim_graph_error(reply, &f);

    } else if (wa_sim_graph_check(s, &f) != 0) {
        status = wa_sim_graph_error(reply, &f);

    } else {
        status = wa_sim_graph_accept(s, act, reply);
    }

    if (act && act->type == WA_SIM_ACT_DELAY) {
        reply->delay_ms = act->delay_ms;
    }

    return status;
}


/* 0, or -1 with *f describing Meta's answer */
static int
wa_sim_graph_check(wa_sim_send_t *s, wa_sim_fail_t *f)
{
    int          user_id;
    char        *p;
    size_t       i;
    yajl_val     obj, v;
    const char  *mp;
    char         recipient[WA_SIM_RECIPIENT_MAX + 1];

    if (s->auth == 0) {
        f->code = 104;
        f->message = "An access token is required to request this resource.";
        return -1;
    }

    if (s->auth < 0) {
        f->code = 190;
        f->message = "Invalid OAuth access token - Cannot parse access token";
        return -1;
    }

    if (s->r->method_len != 4 || memcmp(s->r->method, "POST", 4) != 0
        || strspn(s->pnid, "0123456789") != strlen(s->pnid))
    {
        /* Graph's answer to a wrong id in the path, or another method */
        f->code = 100;
        f->type = "GraphMethodException";
        f->subcode = 33;
        f->message = f->buf;
        snprintf(f->buf, sizeof(f->buf),
                 "Unsupported %.*s request. Object with ID '%s' does not "
                 "exist, cannot be loaded due to missing permissions, or "
                 "does not support this operation. Please read the Graph "
                 "API documentation at "
                 "https://developers.facebook.com/docs/graph-api",
                 (int) s->r->method_len, s->r->method, s->pnid);

        /* "Unsupported get request": the method in lowercase */
        for (p = f->buf + 12; p < f->buf + 12 + s->r->method_len; p++) {
            *p = (char) tolower((unsigned char) *p);
        }

        return -1;
    }

    mp = wa_json_str(s->root, "messaging_product");

    if (mp == NULL) {
        return wa_sim_fail_param(f,
                   "(#100) The parameter messaging_product is required.");
    }

    if (strcmp(mp, "whatsapp") != 0) {
        return wa_sim_fail(f, 100, "Param messaging_product must be one of "
                           "{WHATSAPP} - got \"%.64s\".", mp);
    }

    if (wa_json_get(s->root, "status")) {
        return wa_sim_graph_check_read(s, f);
    }

    if (wa_json_get(s->root, "to") == NULL
        && wa_json_get(s->root, "recipient") == NULL)
    {
        /* Meta's own example (business-scoped user ids), without "(#100)" */
        return wa_sim_fail_param(f, "The parameter to is required.");
    }

    if (s->to == NULL || wa_sim_recipient(s->to, recipient, &user_id) != 0) {
        return wa_sim_fail(f, 131009, "Param to must be a phone number or "
                           "a business-scoped user id.");
    }

    if (s->type[0] == '\0') {
        return wa_sim_fail(f, 131009, "Param type must be a string.");
    }

    for (i = 0; wa_sim_types[i]; i++) {
        if (strcmp(s->type, wa_sim_types[i]) == 0) {
            break;
        }
    }

    if (wa_sim_types[i] == NULL) {
        return wa_sim_fail(f, 131051, "Message type is not currently "
                           "supported: %.64s", s->type);
    }

    obj = wa_json_get(s->root, s->type);

    if (obj == NULL || (strcmp(s->type, "contacts") == 0
                        ? !YAJL_IS_ARRAY(obj) : !YAJL_IS_OBJECT(obj)))
    {
        return wa_sim_fail(f, 131008, "The parameter %s is required.",
                           s->type);
    }

    if (wa_sim_graph_check_typed(s, obj, f) != 0) {
        return -1;
    }

    v = wa_json_get(s->root, "biz_opaque_callback_data");

    if (v && (!YAJL_IS_STRING(v)
              || wa_sim_utf8_length(v->u.string, strlen(v->u.string))
                 > WA_SIM_OPAQUE_MAX))
    {
        return wa_sim_fail(f, 131009, "Param biz_opaque_callback_data must "
                           "be a string of at most 512 characters.");
    }

    v = wa_json_get(s->root, "context");

    if (v && wa_json_str(v, "message_id") == NULL) {
        return wa_sim_fail(f, 131008,
                           "The parameter context['message_id'] is required.");
    }

    return 0;
}


/* {"messaging_product":"whatsapp","status":"read","message_id":"wamid.."} */
static int
wa_sim_graph_check_read(wa_sim_send_t *s, wa_sim_fail_t *f)
{
    const char  *status;
    yajl_val     typing;

    status = wa_json_str(s->root, "status");

    if (status == NULL || strcmp(status, "read") != 0) {
        return wa_sim_fail(f, 100, "Param status must be one of {READ} - "
                           "got \"%.64s\".", status ? status : "");
    }

    if (wa_json_str(s->root, "message_id") == NULL) {
        return wa_sim_fail_param(f,
                   "(#100) The parameter message_id is required.");
    }

    typing = wa_json_get(s->root, "typing_indicator");

    if (typing && wa_json_str(typing, "type") == NULL) {
        return wa_sim_fail(f, 131008, "The parameter "
                           "typing_indicator['type'] is required.");
    }

    return 0;
}


static int
wa_sim_graph_check_typed(wa_sim_send_t *s, yajl_val obj, wa_sim_fail_t *f)
{
    size_t       i, len;
    yajl_val     lang;
    const char  *t, *body;

    t = s->type;

    if (strcmp(t, "text") == 0) {
        body = wa_json_str(obj, "body");

        if (body == NULL || body[0] == '\0') {
            return wa_sim_fail(f, 131008,
                               "The parameter text['body'] is required.");
        }

        len = wa_sim_utf8_length(body, strlen(body));

        if (len > WA_SIM_TEXT_MAX) {
            return wa_sim_fail(f, 131009, "Param text['body'] must be at "
                               "most 4096 characters long.");
        }

        return 0;
    }

    if (strcmp(t, "image") == 0 || strcmp(t, "video") == 0
        || strcmp(t, "audio") == 0 || strcmp(t, "document") == 0
        || strcmp(t, "sticker") == 0)
    {
        return wa_sim_graph_check_media(t, obj, f);
    }

    if (strcmp(t, "location") == 0) {
        if (wa_json_get(obj, "latitude") == NULL
            || wa_json_get(obj, "longitude") == NULL)
        {
            return wa_sim_fail(f, 131008, "The parameters "
                               "location['latitude'] and "
                               "location['longitude'] are required.");
        }

        return 0;
    }

    if (strcmp(t, "contacts") == 0) {
        if (obj->u.array.len == 0) {
            return wa_sim_fail(f, 131008, "The parameter contacts must "
                               "have at least one contact.");
        }

        return 0;
    }

    if (strcmp(t, "reaction") == 0) {
        if (wa_json_str(obj, "message_id") == NULL) {
            return wa_sim_fail(f, 131008, "The parameter "
                               "reaction['message_id'] is required.");
        }

        return 0;
    }

    if (strcmp(t, "template") == 0) {
        if (wa_json_str(obj, "name") == NULL) {
            return wa_sim_fail(f, 131008,
                               "The parameter template['name'] is required.");
        }

        lang = wa_json_get(obj, "language");

        if (wa_json_str(lang, "code") == NULL) {
            return wa_sim_fail(f, 131008, "The parameter "
                               "template['language']['code'] is required.");
        }

        return 0;
    }

    /* interactive */

    t = wa_json_str(obj, "type");

    if (t == NULL) {
        return wa_sim_fail(f, 131008,
                           "The parameter interactive['type'] is required.");
    }

    for (i = 0; wa_sim_interactive_types[i]; i++) {
        if (strcmp(t, wa_sim_interactive_types[i]) == 0) {
            return 0;
        }
    }

    return wa_sim_fail(f, 131009, "Param interactive['type'] must be one of "
                       "{BUTTON, LIST, CTA_URL, FLOW, "
                       "LOCATION_REQUEST_MESSAGE, ADDRESS_MESSAGE, PRODUCT, "
                       "PRODUCT_LIST, CATALOG_MESSAGE, "
                       "CALL_PERMISSION_REQUEST, CAROUSEL, VOICE_CALL} - got "
                       "\"%.64s\".", t);
}


/* exactly one of "id" (uploaded) and "link" (hosted) */
static int
wa_sim_graph_check_media(const char *type, yajl_val obj, wa_sim_fail_t *f)
{
    int  id, link;

    id = wa_json_str(obj, "id") != NULL;
    link = wa_json_str(obj, "link") != NULL;

    if (!id && !link) {
        return wa_sim_fail(f, 131008, "The parameter %s['id'] or "
                           "%s['link'] is required.", type, type);
    }

    if (id && link) {
        return wa_sim_fail(f, 131009, "Param %s must have either an id or "
                           "a link, not both.", type);
    }

    return 0;
}


static int
wa_sim_graph_accept(wa_sim_send_t *s, const wa_sim_action_t *act,
    wa_sim_reply_t *reply)
{
    int                user_id;
    yajl_val           opaque;
    wa_sim_buf_t      *b;
    wa_sim_accepted_t  a;
    char               recipient[WA_SIM_RECIPIENT_MAX + 1];

    b = reply->body;
    reply->status = 200;

    if (wa_json_get(s->root, "status")) {
        wa_sim_buf_lit(b, "{\"success\":true}");
        return 200;
    }

    wa_sim_recipient(s->to, recipient, &user_id);
    wa_sim_wamid(s->wamid, recipient);

    wa_sim_buf_lit(b, "{\"messaging_product\":\"whatsapp\","
                      "\"contacts\":[{\"input\":");
    wa_sim_buf_json_str(b, s->to);
    wa_sim_buf_str(b, user_id ? ",\"user_id\":\"" : ",\"wa_id\":\"");
    wa_sim_buf_str(b, recipient);
    wa_sim_buf_lit(b, "\"}],\"messages\":[{\"id\":\"");
    wa_sim_buf_str(b, s->wamid);

    if (strcmp(s->type, "template") == 0) {
        wa_sim_buf_lit(b, "\",\"message_status\":\"accepted");
    }

    wa_sim_buf_lit(b, "\"}]}");

    opaque = wa_json_get(s->root, "biz_opaque_callback_data");

    a.phone_number_id = s->pnid;
    a.wamid = s->wamid;
    a.recipient = recipient;
    a.recipient_is_user_id = user_id;
    a.biz_opaque = opaque ? opaque->u.string : NULL;
    a.biz_opaque_len = opaque ? strlen(opaque->u.string) : 0;
    a.template = strcmp(s->type, "template") == 0;
    a.reaction = strcmp(s->type, "reaction") == 0;
    a.v24 = s->v24;
    a.fail = act && act->type == WA_SIM_ACT_ASYNC_FAIL ? act : NULL;

    wa_sim_webhook_accepted(&a);

    return 200;
}


/*
 * {"error":{"message":"(#131008) Required parameter is missing",
 *  "type":"OAuthException","code":131008,"error_data":{"messaging_product":
 *  "whatsapp","details":"..."},"error_subcode":..,"fbtrace_id":"..."}}
 */
static int
wa_sim_graph_error(wa_sim_reply_t *reply, const wa_sim_fail_t *f)
{
    char                   trace[32], msg[256];
    wa_sim_buf_t          *b;
    const wa_sim_error_t  *e;

    e = wa_sim_error_find(f->code);
    b = reply->body;

    wa_sim_buf_lit(b, "{\"error\":{\"message\":");

    if (f->message) {
        wa_sim_buf_json_str(b, f->message);

    } else if (f->code == 190) {
        wa_sim_expired_message(msg, sizeof(msg));
        wa_sim_buf_json_str(b, msg);

    } else if (f->code == 104) {
        /* Graph's own wording, no "(#104)" either */
        wa_sim_buf_json_str(b, e->title);

    } else {
        snprintf(msg, sizeof(msg), "(#%d) %s", f->code, e->title);
        wa_sim_buf_json_str(b, msg);
    }

    wa_sim_buf_lit(b, ",\"type\":\"");
    wa_sim_buf_str(b, f->type ? f->type : "OAuthException");
    wa_sim_buf_lit(b, "\",\"code\":");
    wa_sim_buf_u64(b, f->code);

    if (f->details) {
        wa_sim_buf_lit(b, ",\"error_data\":{\"messaging_product\":"
                          "\"whatsapp\",\"details\":");
        wa_sim_buf_json_str(b, f->details);
        wa_sim_buf_lit(b, "}");
    }

    if (f->subcode > 0) {
        wa_sim_buf_lit(b, ",\"error_subcode\":");
        wa_sim_buf_u64(b, f->subcode);
    }

    wa_sim_trace_id(trace);
    wa_sim_buf_lit(b, ",\"fbtrace_id\":\"");
    wa_sim_buf_str(b, trace);
    wa_sim_buf_lit(b, "\"}}");

    if (f->code == 104 || f->code == 190) {
        reply->headers = f->code == 104
            ? "WWW-Authenticate: OAuth \"Facebook Platform\" "
              "\"invalid_request\" \"An access token is required to "
              "request this resource.\"\r\n"
            : "WWW-Authenticate: OAuth \"Facebook Platform\" "
              "\"invalid_token\" \"Invalid OAuth access token\"\r\n";
    }

    reply->status = f->http_status ? f->http_status : e->http_status;
    reply->content_type = WA_SIM_JSON;

    return reply->status;
}


static void
wa_sim_graph_unknown_path(wa_sim_request_t *r, wa_sim_reply_t *reply)
{
    char           path[96];
    wa_sim_fail_t  f;

    memset(&f, 0, sizeof(f));
    f.code = 2500;
    f.message = f.buf;

    snprintf(path, sizeof(path), "%.*s",
             (int) (r->path_len < 80 ? r->path_len : 80), r->path);
    snprintf(f.buf, sizeof(f.buf), "Unknown path components: %s", path);

    wa_sim_graph_error(reply, &f);
}


static void
wa_sim_graph_record(wa_sim_send_t *s, int status)
{
    wa_sim_record_t  rec;

    rec.phone_number_id = s->pnid;
    rec.version = s->version;
    rec.version_len = strlen(s->version);
    rec.authorization = s->r->authorization;
    rec.authorization_len = s->r->authorization_len;
    rec.body = s->r->body;
    rec.body_len = s->r->body_len;
    rec.body_is_json = s->tree != NULL;
    rec.http_status = status;
    rec.wamid = s->wamid[0] ? s->wamid : NULL;

    wa_sim_record(&rec);
}


/*
 * The wa_id Meta answers with: the digits of a phone number ("+1 (650)
 * 555-1234" is 16505551234), or a business-scoped user id ("US.1349...")
 * as given.  -1 when it is neither.
 */
static int
wa_sim_recipient(const char *to, char *out, int *user_id)
{
    size_t       n;
    const char  *p;

    *user_id = 0;

    if (to[0] >= 'A' && to[0] <= 'Z' && to[1] >= 'A' && to[1] <= 'Z'
        && to[2] == '.')
    {
        n = strlen(to);

        if (n > WA_SIM_RECIPIENT_MAX || strspn(to + 3,
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                "0123456789.") != n - 3)
        {
            return -1;
        }

        memcpy(out, to, n + 1);
        *user_id = 1;
        return 0;
    }

    for (n = 0, p = to; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            if (n == WA_SIM_RECIPIENT_MAX) {
                return -1;
            }

            out[n++] = *p;

        } else if (*p != '+' && *p != '-' && *p != ' ' && *p != '('
                   && *p != ')' && *p != '.')
        {
            return -1;
        }
    }

    out[n] = '\0';

    return n ? 0 : -1;
}


/*
 * Meta's wamids are base64 of a small Thrift-like record:
 * 1c 18 <len> <recipient> 15 02 00 11 18 12 <18 uppercase hex> 00,
 * e.g. wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA.
 * The 18 hex digits here are a per-run seed and a counter.
 */
static size_t
wa_sim_wamid(char *out, const char *recipient)
{
    size_t          n, rlen;
    unsigned char   raw[WA_SIM_RECIPIENT_MAX + 32];
    char            hex[24];

    rlen = strlen(recipient);
    n = 0;

    raw[n++] = 0x1c;
    raw[n++] = 0x18;
    raw[n++] = (unsigned char) rlen;
    memcpy(raw + n, recipient, rlen);
    n += rlen;
    memcpy(raw + n, "\x15\x02\x00\x11\x18\x12", 6);
    n += 6;

    snprintf(hex, sizeof(hex), "%08X%010llX", wa_sim_wamid_seed,
             (unsigned long long) (++wa_sim_wamid_counter & 0xffffffffffULL));
    memcpy(raw + n, hex, 18);
    n += 18;
    raw[n++] = 0x00;

    memcpy(out, "wamid.", 6);

    return 6 + EVP_EncodeBlock((unsigned char *) out + 6, raw, (int) n);
}


static void
wa_sim_trace_id(char *out)
{
    int              i;
    uint64_t         r;
    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

    r = 0;

    /* 6 bits a character, 10 characters a draw */
    for (i = 0; i < 23; i++) {
        if (i % 10 == 0) {
            r = wa_sim_random();
        }

        out[i] = alphabet[r & 63];
        r >>= 6;
    }

    out[23] = '\0';
}


/* An expired token's message, without "(#190)", as Meta words it. */
static void
wa_sim_expired_message(char *out, size_t size)
{
    time_t     now, then;
    struct tm  tm_now, tm_then;
    char       s_now[64], s_then[64];

    now = wa_sim_epoch_ms / 1000;
    then = now - 3600;
    gmtime_r(&now, &tm_now);
    gmtime_r(&then, &tm_then);
    strftime(s_now, sizeof(s_now), "%A, %d-%b-%y %H:%M:%S UTC", &tm_now);
    strftime(s_then, sizeof(s_then), "%A, %d-%b-%y %H:%M:%S UTC", &tm_then);

    snprintf(out, size, "Error validating access token: Session has expired "
             "on %s. The current time is %s.", s_then, s_now);
}


/* A WhatsApp error with its details: Meta's title from the table. */
static int
wa_sim_fail(wa_sim_fail_t *f, int code, const char *fmt, ...)
{
    va_list  ap;

    f->code = code;

    va_start(ap, fmt);
    vsnprintf(f->buf, sizeof(f->buf), fmt, ap);
    va_end(ap);

    f->details = f->buf;

    return -1;
}


/* Graph's own parameter check: code 100, the reason as the message. */
static int
wa_sim_fail_param(wa_sim_fail_t *f, const char *message)
{
    f->code = 100;
    f->message = message;

    return -1;
}


