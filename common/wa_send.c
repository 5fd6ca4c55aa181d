/*
 * Validation of send requests (POST /messages bodies); see wa_send.h.
 *
 * Members are checked strictly, in every object whose members Meta
 * documents: a misspelt "caption" must be an error, not an image sent
 * without its caption.  Limits are Meta's (cloud-api-facts.md, section 4)
 * and count Unicode code points, as WhatsApp counts characters.
 */

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yajl/yajl_tree.h>

#include "wa_json.h"
#include "wa_send.h"


/* deeper JSON is refused before it is parsed: yajl_tree_free() recurses */
#define WA_SEND_MAX_DEPTH      64


/* why, by wa_json_precheck()'s answer */
static const char *const  wa_send_prechecked[] = {
    NULL,
    "the body is not valid JSON: it has a NUL byte",
    "the body must not have the character U+0000",
    "the body is not valid JSON: comments are not allowed",
    "the body nests deeper than 64 levels"
};

/* objects with more members are checked for duplicates by sorting */
#define WA_SEND_SORT_MIN       8

/* room for the first line of a yajl error, the only one we keep */
#define WA_SEND_YAJL_ERR_MAX   256

#define WA_SEND_PHONE_ID_MAX   32
#define WA_SEND_E164_MIN       8
#define WA_SEND_E164_MAX       15
#define WA_SEND_USER_ID_MAX    128    /* after "CC." */
#define WA_SEND_IDEM_MAX       128

/* what a media object may have besides "id" or "link" */
#define WA_SEND_CAPTION        0x01
#define WA_SEND_FILENAME       0x02
#define WA_SEND_VOICE          0x04

/* what an interactive type has besides its action: a body it requires,
 * a footer it allows, a header it requires */
#define WA_SEND_BODY           0x01
#define WA_SEND_FOOTER         0x02
#define WA_SEND_HEADER         0x04

/* in all the sections of a list: at most 10 rows, or 30 products */
#define WA_SEND_ROWS_MAX       10
#define WA_SEND_PRODUCTS_MAX   30

/* a carousel has up to 10 cards (an interactive one at least 2), at
 * card_index 0 to 9; a template's card has its header, maybe a body and
 * up to 2 buttons; an interactive media card's body has up to 160
 * characters on up to 3 lines */
#define WA_SEND_CARDS_MIN      2
#define WA_SEND_CARDS_MAX      10
#define WA_SEND_CARD_PARTS     4
#define WA_SEND_CARD_BODY_MAX  160
#define WA_SEND_CARD_BREAKS    2

#define WA_SEND_ANY            SIZE_MAX


typedef struct {
    wa_send_request_t  *out;
    size_t              len;
    char                path[WA_SEND_FIELD_MAX];   /* of the value being
                                                      checked */
    char                field[WA_SEND_FIELD_MAX];
    char                message[WA_SEND_MESSAGE_MAX];
} wa_send_ctx_t;


/* checks the value at ctx->path; 0 or -1 with the error set */
typedef int (*wa_send_check_pt)(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);


typedef struct {
    wa_send_check_pt   check;
    const void        *arg;
} wa_send_type_t;


typedef struct {
    const char        *where;     /* "for audio", ... for messages */
    unsigned           allow;     /* WA_SEND_CAPTION, ... */
} wa_send_media_t;


typedef struct {
    size_t              body_max;
    unsigned            parts;     /* WA_SEND_BODY, ... */
    const char *const  *headers;   /* the header types it allows, or NULL */
    wa_send_check_pt    action;
    const void         *action_arg;
} wa_send_interactive_t;


/* action {"name": <name>, "parameters": {...}}, parameters if checked */
typedef struct {
    const char *const  *name;
    wa_send_check_pt    parameters;
    int                 required;     /* the parameters */
} wa_send_named_action_t;


/* what the sections of a list hold: rows, or products of the catalog */
typedef struct {
    const char         *name;      /* "rows", "product_items" */
    const char         *noun;      /* for errors */
    size_t              max;       /* in all the sections */
    wa_send_check_pt    item;
    const char         *id;        /* a member unique across the sections,
                                      or NULL; only rows have one */
} wa_send_sections_t;


/* the items of a list's sections so far, and the ids of its rows */
typedef struct {
    const wa_send_sections_t  *of;
    size_t                     n;
    const char                *ids[WA_SEND_ROWS_MAX];
} wa_send_rows_t;


enum {
    WA_SEND_TEXT = 0,
    WA_SEND_IMAGE,
    WA_SEND_VIDEO,
    WA_SEND_AUDIO,
    WA_SEND_DOCUMENT,
    WA_SEND_STICKER,
    WA_SEND_LOCATION,
    WA_SEND_CONTACTS,
    WA_SEND_REACTION,
    WA_SEND_TEMPLATE,
    WA_SEND_INTERACTIVE
};

enum {
    WA_SEND_COMPONENT_HEADER = 0,
    WA_SEND_COMPONENT_BODY,
    WA_SEND_COMPONENT_BUTTON,
    WA_SEND_COMPONENT_CAROUSEL,
    WA_SEND_COMPONENT_LTO,
    WA_SEND_COMPONENTS
};

enum {
    WA_SEND_PARAM_TEXT = 0,
    WA_SEND_PARAM_CURRENCY,
    WA_SEND_PARAM_DATE_TIME,
    WA_SEND_PARAM_IMAGE,
    WA_SEND_PARAM_VIDEO,
    WA_SEND_PARAM_DOCUMENT,
    WA_SEND_PARAM_LOCATION,
    WA_SEND_PARAM_PAYLOAD,
    WA_SEND_PARAM_COUPON_CODE,
    WA_SEND_PARAM_ACTION,
    WA_SEND_PARAM_LTO,
    WA_SEND_PARAM_PRODUCT
};


/*
 * Where template components are: the template, or a carousel card.  The
 * types and sub_types a card allows are the first of the template's, so
 * that an index means the same in both.
 */
typedef struct {
    const char *const  *types;       /* component types */
    const char *const  *sub_types;   /* button sub_types */
    const char         *where;       /* "" or " of a carousel card" */
    unsigned            params[WA_SEND_COMPONENTS];   /* the parameter
                                                         types each
                                                         component type
                                                         takes, by bit */
    const unsigned     *buttons;     /* a button's by sub_type, or NULL:
                                        params[] for every sub_type */
} wa_send_components_t;


/* the parameters of a component: its type (and a button's sub_type), and
 * where it is */
typedef struct {
    int                          component;
    int                          sub_type;
    const wa_send_components_t  *in;
} wa_send_params_t;


static int wa_send_parse(wa_send_ctx_t *ctx, const unsigned char *body,
    size_t len, yajl_val *root);
static int wa_send_syntax_error(wa_send_ctx_t *ctx, const char *err);
static int wa_send_walk(wa_send_ctx_t *ctx, yajl_val v);
static int wa_send_duplicates(wa_send_ctx_t *ctx, yajl_val obj);
static int wa_send_strcmp(const void *a, const void *b);
static int wa_send_utf8(const char *s);
static size_t wa_send_chars(const char *s);

static int wa_send_request(wa_send_ctx_t *ctx, yajl_val root);
static int wa_send_phone_number_id(wa_send_ctx_t *ctx, yajl_val root);
static int wa_send_to(wa_send_ctx_t *ctx, yajl_val root);
static int wa_send_idempotency_key(wa_send_ctx_t *ctx, yajl_val root);
static int wa_send_type(wa_send_ctx_t *ctx, yajl_val root, int *type);
static int wa_send_context(wa_send_ctx_t *ctx, yajl_val v, const void *arg);

static int wa_send_text(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_media(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_url(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required);
static int wa_send_location(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_coordinate(wa_send_ctx_t *ctx, yajl_val obj,
    const char *name, int max);
static int wa_send_decimal(const char *s, double *d);
static int wa_send_contacts(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_contact(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_contact_name(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_strings(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_date(const char *s);
static int wa_send_reaction(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);

static int wa_send_template(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_language(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_language_code(const char *s);
static int wa_send_component(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_button_index(wa_send_ctx_t *ctx, yajl_val obj);
static int wa_send_carousel(wa_send_ctx_t *ctx, yajl_val v);
static int wa_send_card(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_card_header(wa_send_ctx_t *ctx, yajl_val components);
static int wa_send_card_indexes(wa_send_ctx_t *ctx, yajl_val cards);
static int wa_send_parameter(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_currency(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_date_time(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_lto(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_product(wa_send_ctx_t *ctx, yajl_val v, const void *arg);

static int wa_send_interactive(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_header(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_text_object(wa_send_ctx_t *ctx, yajl_val obj,
    const char *name, int required, size_t max);
static int wa_send_buttons(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_reply_button(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_reply(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static const char *wa_send_reply_id(yajl_val button);
static int wa_send_list(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_product_list(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_sections(wa_send_ctx_t *ctx, yajl_val obj,
    const wa_send_sections_t *of);
static int wa_send_section(wa_send_ctx_t *ctx, yajl_val v, int titled,
    wa_send_rows_t *rows);
static int wa_send_row(wa_send_ctx_t *ctx, yajl_val v, const void *arg);
static int wa_send_product_item(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_named_action(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_cta_parameters(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_catalog_parameters(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_interactive_carousel(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_interactive_card(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_card_action(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_cards_alike(wa_send_ctx_t *ctx, yajl_val cards);
static int wa_send_flow_parameters(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_flow_payload(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);
static int wa_send_any_object(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg);

static int wa_send_object(wa_send_ctx_t *ctx, yajl_val v,
    const char *const *names);
static int wa_send_member(wa_send_ctx_t *ctx, yajl_val obj,
    const char *name, int required, wa_send_check_pt check,
    const void *arg);
static int wa_send_array(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, size_t max, wa_send_check_pt check, const void *arg);
static int wa_send_items(wa_send_ctx_t *ctx, yajl_val v, int nonempty,
    size_t max, wa_send_check_pt check, const void *arg);
static int wa_send_string(wa_send_ctx_t *ctx, yajl_val obj,
    const char *name, int required, int nonempty, size_t max,
    const char **value);
static int wa_send_integer(wa_send_ctx_t *ctx, yajl_val obj,
    const char *name, long long min, long long max, const char *why);
static int wa_send_bool(wa_send_ctx_t *ctx, yajl_val obj, const char *name);
static int wa_send_enum(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, const char *const *values, int nocase, int *index);

static size_t wa_send_push(wa_send_ctx_t *ctx, const char *name);
static size_t wa_send_push_index(wa_send_ctx_t *ctx, size_t i);
static void wa_send_pop(wa_send_ctx_t *ctx, size_t len);
static void wa_send_append(wa_send_ctx_t *ctx, const char *s, size_t n);
static int wa_send_phone(wa_send_ctx_t *ctx, yajl_val v);
static int wa_send_user_id(wa_send_ctx_t *ctx, yajl_val v);
static int wa_send_error(wa_send_ctx_t *ctx, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static char wa_send_printable(char c);


static const char *const  wa_send_top_names[] = {
    "messaging_product", "recipient_type", "phone_number_id", "to",
    "recipient", "idempotency_key", "priority", "type", "context",
    "text", "image", "video", "audio", "document", "sticker", "location",
    "contacts", "reaction", "template", "interactive", NULL
};

/* the message types, in the order of the enum above */
static const char *const  wa_send_type_names[] = {
    "text", "image", "video", "audio", "document", "sticker", "location",
    "contacts", "reaction", "template", "interactive", NULL
};

static const wa_send_media_t  wa_send_image = {
    "for an image message", WA_SEND_CAPTION
};
static const wa_send_media_t  wa_send_video = {
    "for a video message", WA_SEND_CAPTION
};
static const wa_send_media_t  wa_send_audio = {
    "for audio", WA_SEND_VOICE
};
static const wa_send_media_t  wa_send_document = {
    "for a document message", WA_SEND_CAPTION | WA_SEND_FILENAME
};
static const wa_send_media_t  wa_send_sticker = {
    "for a sticker", 0
};

/* media in an interactive header or a template parameter */
static const wa_send_media_t  wa_send_part = {
    "in a header or parameter", 0
};
static const wa_send_media_t  wa_send_part_document = {
    "in a header or parameter", WA_SEND_FILENAME
};

static const wa_send_type_t  wa_send_types[] = {
    { wa_send_text, NULL },
    { wa_send_media, &wa_send_image },
    { wa_send_media, &wa_send_video },
    { wa_send_media, &wa_send_audio },
    { wa_send_media, &wa_send_document },
    { wa_send_media, &wa_send_sticker },
    { wa_send_location, NULL },
    { wa_send_contacts, NULL },
    { wa_send_reaction, NULL },
    { wa_send_template, NULL },
    { wa_send_interactive, NULL }
};

static const char *const  wa_send_whatsapp[] = { "whatsapp", NULL };
static const char *const  wa_send_individual[] = { "individual", NULL };
static const char *const  wa_send_priorities[] = { "normal", "bulk", NULL };

static const char *const  wa_send_contact_names[] = {
    "addresses", "birthday", "emails", "name", "org", "phones", "urls", NULL
};
static const char *const  wa_send_name_names[] = {
    "formatted_name", "first_name", "last_name", "middle_name", "suffix",
    "prefix", NULL
};
static const char *const  wa_send_org_names[] = {
    "company", "department", "title", NULL
};
static const char *const  wa_send_phone_names[] = {
    "phone", "type", "wa_id", NULL
};
static const char *const  wa_send_email_names[] = { "email", "type", NULL };
static const char *const  wa_send_url_names[] = { "url", "type", NULL };
static const char *const  wa_send_address_names[] = {
    "street", "city", "state", "zip", "country", "country_code", "type", NULL
};

/* matched without regard to case: Meta's examples use both */
static const char *const  wa_send_component_types[] = {
    "header", "body", "button", "carousel", "limited_time_offer", NULL
};
static const char *const  wa_send_button_sub_types[] = {
    "quick_reply", "url", "spm", "copy_code", "flow", "catalog", "mpm",
    "voice_call", NULL
};
static const char *const  wa_send_param_types[] = {
    "text", "currency", "date_time", "image", "video", "document",
    "location", "payload", "coupon_code", "action", "limited_time_offer",
    "product", NULL
};

/* no carousel in a card; its phone number buttons take no parameters */
static const char *const  wa_send_card_types[] = {
    "header", "body", "button", NULL
};
static const char *const  wa_send_card_sub_types[] = {
    "quick_reply", "url", "spm", NULL
};

/* what a body takes, in the template as in a card */
#define WA_SEND_BODY_PARAMS                                                 \
    ((1u << WA_SEND_PARAM_TEXT) | (1u << WA_SEND_PARAM_CURRENCY)           \
     | (1u << WA_SEND_PARAM_DATE_TIME))

/* a single-product template's header is the product */
static const wa_send_components_t  wa_send_in_template = {
    wa_send_component_types, wa_send_button_sub_types, "", {
        (1u << WA_SEND_PARAM_TEXT) | (1u << WA_SEND_PARAM_IMAGE)
        | (1u << WA_SEND_PARAM_VIDEO) | (1u << WA_SEND_PARAM_DOCUMENT)
        | (1u << WA_SEND_PARAM_LOCATION) | (1u << WA_SEND_PARAM_PRODUCT),

        WA_SEND_BODY_PARAMS,

        (1u << WA_SEND_PARAM_TEXT) | (1u << WA_SEND_PARAM_PAYLOAD)
        | (1u << WA_SEND_PARAM_COUPON_CODE) | (1u << WA_SEND_PARAM_ACTION),

        0,                              /* a carousel's are in its cards */

        1u << WA_SEND_PARAM_LTO
    }, NULL                             /* any button: the same */
};

/* by sub_type: a card's quick reply and URL button take a payload or a
 * text (the URL's end), its View (spm) button an action */
static const unsigned  wa_send_card_buttons[] = {
    (1u << WA_SEND_PARAM_TEXT) | (1u << WA_SEND_PARAM_PAYLOAD),
    (1u << WA_SEND_PARAM_TEXT) | (1u << WA_SEND_PARAM_PAYLOAD),
    1u << WA_SEND_PARAM_ACTION
};

/* a card's header is its image or video, or the product of a product
 * card */
static const wa_send_components_t  wa_send_in_card = {
    wa_send_card_types, wa_send_card_sub_types, " of a carousel card", {
        (1u << WA_SEND_PARAM_IMAGE) | (1u << WA_SEND_PARAM_VIDEO)
        | (1u << WA_SEND_PARAM_PRODUCT),

        WA_SEND_BODY_PARAMS,

        0,                              /* by sub_type: buttons */

        0, 0
    }, wa_send_card_buttons
};

static const char *const  wa_send_interactive_names[] = {
    "button", "list", "cta_url", "flow", "location_request_message",
    "product", "product_list", "catalog_message", "carousel", NULL
};

static const char *const  wa_send_cta_url_name[] = { "cta_url", NULL };
static const char *const  wa_send_flow_name[] = { "flow", NULL };
static const char *const  wa_send_location_name[] = { "send_location", NULL };
static const char *const  wa_send_catalog_name[] = {
    "catalog_message", NULL
};

static const wa_send_named_action_t  wa_send_cta_url = {
    wa_send_cta_url_name, wa_send_cta_parameters, 1
};
static const wa_send_named_action_t  wa_send_flow = {
    wa_send_flow_name, wa_send_flow_parameters, 1
};
static const wa_send_named_action_t  wa_send_location_request = {
    wa_send_location_name, NULL, 0
};
/* without parameters, the first product of the catalog is the thumbnail */
static const wa_send_named_action_t  wa_send_catalog = {
    wa_send_catalog_name, wa_send_catalog_parameters, 0
};

static const char *const  wa_send_header_types[] = {
    "text", "image", "video", "document", NULL
};
static const char *const  wa_send_header_text[] = { "text", NULL };
static const char *const  wa_send_header_card[] = { "image", "video", NULL };

/* by interactive type, in the order of wa_send_interactive_names */
static const wa_send_interactive_t  wa_send_interactives[] = {
    { 1024, WA_SEND_BODY | WA_SEND_FOOTER, wa_send_header_types,
      wa_send_buttons, NULL },
    { 4096, WA_SEND_BODY | WA_SEND_FOOTER, wa_send_header_text,
      wa_send_list, NULL },
    { 1024, WA_SEND_BODY | WA_SEND_FOOTER, wa_send_header_types,
      wa_send_named_action, &wa_send_cta_url },
    { 1024, WA_SEND_BODY | WA_SEND_FOOTER, wa_send_header_text,
      wa_send_named_action, &wa_send_flow },
    { 1024, WA_SEND_BODY, NULL,
      wa_send_named_action, &wa_send_location_request },

    /* the catalog gives a product's image, name and price */
    { 1024, WA_SEND_FOOTER, NULL,
      wa_send_product, NULL },
    { 1024, WA_SEND_BODY | WA_SEND_FOOTER | WA_SEND_HEADER,
      wa_send_header_text, wa_send_product_list, NULL },
    { 1024, WA_SEND_BODY | WA_SEND_FOOTER, NULL,
      wa_send_named_action, &wa_send_catalog },

    /* the cards have headers, bodies and buttons, the message only a body */
    { 1024, WA_SEND_BODY, NULL,
      wa_send_interactive_carousel, NULL }
};

/* what the sections of a list or a multi-product message hold */
static const wa_send_sections_t  wa_send_rows = {
    "rows", "rows", WA_SEND_ROWS_MAX, wa_send_row, "id"
};
static const wa_send_sections_t  wa_send_products = {
    "product_items", "products", WA_SEND_PRODUCTS_MAX, wa_send_product_item,
    NULL
};


int
wa_send_validate(const unsigned char *body, size_t len,
    wa_send_request_t *out)
{
    int            rc, parsed;
    yajl_val       root;
    wa_send_ctx_t  ctx;

    memset(out, 0, sizeof(wa_send_request_t));

    ctx.out = out;
    ctx.len = 0;
    ctx.path[0] = '\0';

    rc = wa_send_parse(&ctx, body, len, &root);
    parsed = (rc == 0);

    if (parsed) {
        rc = wa_send_walk(&ctx, root);

        if (rc == 0) {
            rc = wa_send_request(&ctx, root);
        }

        yajl_tree_free(root);
    }

    if (rc != 0) {
        /* no partly checked request can be used by mistake */
        memset(out, 0, sizeof(wa_send_request_t));
        memcpy(out->field, ctx.field, strlen(ctx.field) + 1);
        memcpy(out->message, ctx.message, strlen(ctx.message) + 1);
        out->malformed = !parsed;
    }

    return rc;
}


/* parsing and checks of the whole tree */

static int
wa_send_parse(wa_send_ctx_t *ctx, const unsigned char *body, size_t len,
    yajl_val *root)
{
    char        *text, err[WA_SEND_YAJL_ERR_MAX];
    const char  *msg;

    *root = NULL;

    if (len == 0) {
        return wa_send_error(ctx, NULL, "the body is empty: expected a JSON "
                             "object");
    }

    msg = wa_send_prechecked[wa_json_precheck(body, len, WA_SEND_MAX_DEPTH)];
    if (msg != NULL) {
        return wa_send_error(ctx, NULL, "%s", msg);
    }

    /* yajl_tree_parse() reads a NUL-terminated string */
    text = malloc(len + 1);
    if (text == NULL) {
        return wa_send_error(ctx, NULL, "the body cannot be checked: out of "
                             "memory");
    }

    memcpy(text, body, len);
    text[len] = '\0';
    err[0] = '\0';

    *root = yajl_tree_parse(text, err, sizeof(err));
    free(text);

    if (*root == NULL) {
        return wa_send_syntax_error(ctx, err);
    }

    if (!YAJL_IS_OBJECT(*root)) {
        yajl_tree_free(*root);
        return wa_send_error(ctx, NULL, "the body must be a JSON object");
    }

    return 0;
}


/*
 * yajl's error is "parse error: trailing garbage" and so on, then lines
 * that quote the input: only the reason after the first ": " is kept.
 */
static int
wa_send_syntax_error(wa_send_ctx_t *ctx, const char *err)
{
    size_t       n;
    const char  *p;

    p = strstr(err, ": ");
    n = 0;

    if (p != NULL) {
        p += 2;
        n = strcspn(p, "\n");

        while (n > 0 && (p[n - 1] == '.' || p[n - 1] == ' ')) {
            n--;
        }
    }

    if (n == 0) {
        return wa_send_error(ctx, NULL, "the body is not valid JSON");
    }

    wa_send_error(ctx, NULL, "the body is not valid JSON: %.*s", (int) n, p);

    for (n = 0; ctx->message[n] != '\0'; n++) {
        ctx->message[n] = wa_send_printable(ctx->message[n]);
    }

    return -1;
}


/* Refuses names given twice and strings that are not valid UTF-8. */
static int
wa_send_walk(wa_send_ctx_t *ctx, yajl_val v)
{
    size_t  i, old;

    switch (v->type) {

    case yajl_t_string:
        if (!wa_send_utf8(v->u.string)) {
            return wa_send_error(ctx, NULL, "is not valid UTF-8");
        }

        return 0;

    case yajl_t_object:
        for (i = 0; i < v->u.object.len; i++) {
            if (!wa_send_utf8(v->u.object.keys[i])) {
                return wa_send_error(ctx, v->u.object.keys[i],
                                     "is a name that is not valid UTF-8");
            }
        }

        if (wa_send_duplicates(ctx, v) != 0) {
            return -1;
        }

        for (i = 0; i < v->u.object.len; i++) {
            old = wa_send_push(ctx, v->u.object.keys[i]);

            if (wa_send_walk(ctx, v->u.object.values[i]) != 0) {
                return -1;
            }

            wa_send_pop(ctx, old);
        }

        return 0;

    case yajl_t_array:
        for (i = 0; i < v->u.array.len; i++) {
            old = wa_send_push_index(ctx, i);

            if (wa_send_walk(ctx, v->u.array.values[i]) != 0) {
                return -1;
            }

            wa_send_pop(ctx, old);
        }

        return 0;

    default:
        return 0;
    }
}


/*
 * yajl_tree keeps every member of a name given twice, and which one a
 * reader sees depends on the reader: refused.  Large objects are sorted
 * (a copy of their names) so that this is not quadratic.
 */
static int
wa_send_duplicates(wa_send_ctx_t *ctx, yajl_val obj)
{
    int           rc;
    size_t        i, j, n;
    const char  **keys;

    n = obj->u.object.len;
    keys = obj->u.object.keys;

    if (n <= WA_SEND_SORT_MIN) {
        for (i = 1; i < n; i++) {
            for (j = 0; j < i; j++) {
                if (strcmp(keys[i], keys[j]) == 0) {
                    return wa_send_error(ctx, keys[i], "is given twice");
                }
            }
        }

        return 0;
    }

    keys = malloc(n * sizeof(const char *));
    if (keys == NULL) {
        return wa_send_error(ctx, NULL, "cannot be checked: out of memory");
    }

    memcpy(keys, obj->u.object.keys, n * sizeof(const char *));
    qsort(keys, n, sizeof(const char *), wa_send_strcmp);

    for (i = 1; i < n && strcmp(keys[i - 1], keys[i]) != 0; i++) {
        /* void */
    }

    rc = (i < n) ? wa_send_error(ctx, keys[i], "is given twice") : 0;

    free(keys);

    return rc;
}


static int
wa_send_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


/*
 * Strict UTF-8 (RFC 3629): yajl lets overlong forms, surrogates and code
 * points above U+10FFFF through, and writes a lone "\uDC00" as a
 * surrogate.
 */
static int
wa_send_utf8(const char *s)
{
    size_t                n;
    unsigned char         lo, hi;
    const unsigned char  *p;

    p = (const unsigned char *) s;

    while (*p != '\0') {
        if (*p < 0x80) {
            p++;
            continue;
        }

        lo = 0x80;
        hi = 0xbf;

        if (*p >= 0xc2 && *p <= 0xdf) {
            n = 1;

        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 2;
            lo = (*p == 0xe0) ? 0xa0 : 0x80;
            hi = (*p == 0xed) ? 0x9f : 0xbf;

        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 3;
            lo = (*p == 0xf0) ? 0x90 : 0x80;
            hi = (*p == 0xf4) ? 0x8f : 0xbf;

        } else {
            return 0;
        }

        p++;

        /* the terminating NUL is no continuation byte: never read past */
        if (*p < lo || *p > hi) {
            return 0;
        }

        for (p++, n--; n > 0; p++, n--) {
            if (*p < 0x80 || *p > 0xbf) {
                return 0;
            }
        }
    }

    return 1;
}


/* Code points of valid UTF-8: the bytes that are not continuation bytes. */
static size_t
wa_send_chars(const char *s)
{
    size_t  n;

    for (n = 0; *s != '\0'; s++) {
        n += ((*s & 0xc0) != 0x80);
    }

    return n;
}


/* the request */

static int
wa_send_request(wa_send_ctx_t *ctx, yajl_val root)
{
    int                 type, priority, unused;
    wa_send_request_t  *out;

    out = ctx->out;

    if (wa_json_get(root, "biz_opaque_callback_data") != NULL) {
        return wa_send_error(ctx, "biz_opaque_callback_data",
                             "is set by the gateway, which matches status "
                             "webhooks to messages with it");
    }

    if (wa_send_object(ctx, root, wa_send_top_names) != 0
        || wa_send_enum(ctx, root, "messaging_product", 0, wa_send_whatsapp,
                        0, &unused) != 0
        || wa_send_enum(ctx, root, "recipient_type", 0, wa_send_individual,
                        0, &unused) != 0
        || wa_send_phone_number_id(ctx, root) != 0
        || wa_send_to(ctx, root) != 0
        || wa_send_idempotency_key(ctx, root) != 0
        || wa_send_enum(ctx, root, "priority", 0, wa_send_priorities, 0,
                        &priority) != 0
        || wa_send_type(ctx, root, &type) != 0
        || wa_send_member(ctx, root, "context", 0, wa_send_context,
                          &type) != 0
        || wa_send_member(ctx, root, wa_send_type_names[type], 1,
                          wa_send_types[type].check,
                          wa_send_types[type].arg) != 0)
    {
        return -1;
    }

    strcpy(out->type, wa_send_type_names[type]);
    out->free_form = (type != WA_SEND_TEMPLATE);
    out->bulk = (priority == 1);

    return 0;
}


static int
wa_send_phone_number_id(wa_send_ctx_t *ctx, yajl_val root)
{
    size_t       n;
    yajl_val     v;
    const char  *s;

    v = wa_json_get(root, "phone_number_id");

    if (v == NULL) {
        return wa_send_error(ctx, "phone_number_id", "is required");
    }

    s = YAJL_IS_STRING(v) ? v->u.string : "";
    n = strspn(s, "0123456789");

    if (n == 0 || n > WA_SEND_PHONE_ID_MAX || s[n] != '\0') {
        return wa_send_error(ctx, "phone_number_id",
                             "must be a string of 1 to 32 digits");
    }

    memcpy(ctx->out->phone_number_id, s, n + 1);

    return 0;
}


/*
 * The customer: "to", a phone number, or "recipient", the business-scoped
 * user id Meta gives a customer who shares no phone number (BSUID).  Meta
 * takes "to" when both are given; one of them only, so that the message
 * goes where the caller meant.
 */
static int
wa_send_to(wa_send_ctx_t *ctx, yajl_val root)
{
    yajl_val  to, user;

    to = wa_json_get(root, "to");
    user = wa_json_get(root, "recipient");

    if (to != NULL && user != NULL) {
        return wa_send_error(ctx, "recipient", "is for a customer without "
                             "a phone number: give to or recipient, not "
                             "both");
    }

    if (user != NULL) {
        return wa_send_user_id(ctx, user);
    }

    if (to == NULL) {
        return wa_send_error(ctx, "to", "is required (or recipient, a "
                             "business-scoped user id)");
    }

    return wa_send_phone(ctx, to);
}


/*
 * E.164 after dropping the separators people write ("+1 (650) 555-1234").
 * Meta reads a number without its "+" as national and prepends the
 * business's own country code: the message would reach someone else.
 */
static int
wa_send_phone(wa_send_ctx_t *ctx, yajl_val v)
{
    int          plus;
    char        *e164;
    size_t       digits;
    const char  *p;


    if (!YAJL_IS_STRING(v)) {
        return wa_send_error(ctx, "to", "must be a string");
    }

    e164 = ctx->out->to;
    plus = 0;
    digits = 0;

    for (p = v->u.string; *p != '\0'; p++) {
        if (*p == ' ' || *p == '-' || *p == '.' || *p == '(' || *p == ')') {
            continue;
        }

        if (*p == '+' && !plus && digits == 0) {
            plus = 1;

        } else if (*p >= '0' && *p <= '9') {
            if (digits < WA_SEND_E164_MAX) {
                e164[1 + digits] = *p;
            }

            digits++;

        } else {
            return wa_send_error(ctx, "to", "must be a phone number in "
                                 "E.164: + then 8 to 15 digits");
        }
    }

    if (!plus) {
        return wa_send_error(ctx, "to", "must start with + and the country "
                             "code: without them Meta prepends the "
                             "business's own country code");
    }

    if (digits < WA_SEND_E164_MIN || digits > WA_SEND_E164_MAX) {
        return wa_send_error(ctx, "to", "must have 8 to 15 digits after "
                             "the +");
    }

    if (e164[1] == '0') {
        return wa_send_error(ctx, "to", "must have the country code after "
                             "the +: it never starts with 0");
    }

    e164[0] = '+';
    e164[1 + digits] = '\0';

    return 0;
}


/* A BSUID: the country's two letters, a dot, 1 to 128 letters and digits
 * ("US.13491208655302741918") */
static int
wa_send_user_id(wa_send_ctx_t *ctx, yajl_val v)
{
    size_t       n;
    const char  *s;

    s = YAJL_IS_STRING(v) ? v->u.string : "";
    n = 0;

    if (s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
        && s[2] == '.')
    {
        n = strspn(s + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "abcdefghijklmnopqrstuvwxyz0123456789");
    }

    if (n == 0 || n > WA_SEND_USER_ID_MAX || s[3 + n] != '\0') {
        return wa_send_error(ctx, "recipient", "must be a business-scoped "
                             "user id: a country code, a dot and 1 to 128 "
                             "letters and digits");
    }

    memcpy(ctx->out->to, s, 3 + n + 1);

    return 0;
}


static int
wa_send_idempotency_key(wa_send_ctx_t *ctx, yajl_val root)
{
    size_t       n;
    yajl_val     v;
    const char  *s;

    v = wa_json_get(root, "idempotency_key");

    if (v == NULL) {
        return 0;
    }

    s = YAJL_IS_STRING(v) ? v->u.string : "";

    for (n = 0; s[n] > 0x20 && s[n] < 0x7f; n++) {
        /* void */
    }

    if (n == 0 || n > WA_SEND_IDEM_MAX || s[n] != '\0') {
        return wa_send_error(ctx, "idempotency_key", "must be a string of 1 "
                             "to 128 printable ASCII characters, without "
                             "spaces");
    }

    memcpy(ctx->out->idempotency_key, s, n + 1);

    return 0;
}


/*
 * "type" defaults to text, as at Meta; the object it names must be there
 * and no other message type's object may be.
 */
static int
wa_send_type(wa_send_ctx_t *ctx, yajl_val root, int *type)
{
    int          given, i;
    const char  *name;

    if (wa_send_enum(ctx, root, "type", 0, wa_send_type_names, 0, type)
        != 0)
    {
        return -1;
    }

    given = (*type >= 0);
    *type = given ? *type : WA_SEND_TEXT;

    for (i = 0; wa_send_type_names[i] != NULL; i++) {
        name = wa_send_type_names[i];

        if (i == *type || wa_json_get(root, name) == NULL) {
            continue;
        }

        if (given) {
            return wa_send_error(ctx, name, "is not allowed with type %s",
                                 wa_send_type_names[*type]);
        }

        return wa_send_error(ctx, name, "needs type %s: type defaults to "
                             "text", name);
    }

    name = wa_send_type_names[*type];

    if (wa_json_get(root, name) == NULL) {
        if (given) {
            return wa_send_error(ctx, name, "is required with type %s", name);
        }

        return wa_send_error(ctx, name, "is required: type defaults to text");
    }

    return 0;
}


/* a quoted reply; arg: the message type */
static int
wa_send_context(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "message_id", NULL };

    if (*(const int *) arg == WA_SEND_REACTION) {
        return wa_send_error(ctx, NULL, "is not allowed with a reaction");
    }

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "message_id", 1, 1, 256, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* message types */

static int
wa_send_text(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "body", "preview_url", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "body", 1, 1, 4096, NULL) != 0
        || wa_send_bool(ctx, v, "preview_url") != 0)
    {
        return -1;
    }

    return 0;
}


/* an uploaded media "id" or a hosted "link"; arg: a wa_send_media_t */
static int
wa_send_media(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    const wa_send_media_t  *media;

    static const char *const  names[] = {
        "id", "link", "caption", "filename", "voice", NULL
    };

    media = arg;

    if (wa_send_object(ctx, v, names) != 0) {
        return -1;
    }

    if (!(media->allow & WA_SEND_CAPTION)
        && wa_json_get(v, "caption") != NULL)
    {
        return wa_send_error(ctx, "caption", "is not allowed %s",
                             media->where);
    }

    if (!(media->allow & WA_SEND_FILENAME)
        && wa_json_get(v, "filename") != NULL)
    {
        return wa_send_error(ctx, "filename", "is not allowed %s",
                             media->where);
    }

    if (!(media->allow & WA_SEND_VOICE) && wa_json_get(v, "voice") != NULL) {
        return wa_send_error(ctx, "voice", "is not allowed %s", media->where);
    }

    if (wa_json_get(v, "id") != NULL && wa_json_get(v, "link") != NULL) {
        return wa_send_error(ctx, NULL, "must have id or link, not both");
    }

    if (wa_json_get(v, "id") == NULL && wa_json_get(v, "link") == NULL) {
        return wa_send_error(ctx, NULL, "needs id (of uploaded media) or "
                             "link");
    }

    if (wa_send_string(ctx, v, "id", 0, 1, WA_SEND_ANY, NULL) != 0
        || wa_send_url(ctx, v, "link", 0) != 0
        || wa_send_string(ctx, v, "caption", 0, 0, 1024, NULL) != 0
        || wa_send_string(ctx, v, "filename", 0, 1, 240, NULL) != 0
        || wa_send_bool(ctx, v, "voice") != 0)
    {
        return -1;
    }

    return 0;
}


/* Meta fetches it: an https URL with a host and without blanks */
static int
wa_send_url(wa_send_ctx_t *ctx, yajl_val obj, const char *name, int required)
{
    const char  *s, *p;

    if (wa_send_string(ctx, obj, name, required, 1, WA_SEND_ANY, &s) != 0) {
        return -1;
    }

    if (s == NULL) {
        return 0;
    }

    if (strncasecmp(s, "http://", 7) == 0) {
        return wa_send_error(ctx, name, "must be an https:// URL: plain "
                             "http is refused");
    }

    if (strncasecmp(s, "https://", 8) != 0 || s[8] == '\0' || s[8] == '/'
        || s[8] == '?' || s[8] == '#')
    {
        return wa_send_error(ctx, name, "must be an https:// URL");
    }

    for (p = s; *p != '\0'; p++) {
        if ((unsigned char) *p <= 0x20 || *p == 0x7f) {
            return wa_send_error(ctx, name, "must not have spaces or "
                                 "control characters: encode them");
        }
    }

    return 0;
}


static int
wa_send_location(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = {
        "latitude", "longitude", "name", "address", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_coordinate(ctx, v, "latitude", 90) != 0
        || wa_send_coordinate(ctx, v, "longitude", 180) != 0
        || wa_send_string(ctx, v, "name", 0, 0, WA_SEND_ANY, NULL) != 0
        || wa_send_string(ctx, v, "address", 0, 0, WA_SEND_ANY, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* a number or, as in Meta's example, a decimal in a string */
static int
wa_send_coordinate(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int max)
{
    double    d;
    yajl_val  v;

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return wa_send_error(ctx, name, "is required");
    }

    if (YAJL_IS_DOUBLE(v)) {
        d = YAJL_GET_DOUBLE(v);

    } else if (!YAJL_IS_STRING(v) || wa_send_decimal(v->u.string, &d) != 0) {
        d = max + 1;
    }

    if (!(d >= -max && d <= max)) {
        return wa_send_error(ctx, name, "must be a number from -%d to %d",
                             max, max);
    }

    return 0;
}


/* "-"? digits ("." digits)?: what strtod() alone would take is wider */
static int
wa_send_decimal(const char *s, double *d)
{
    const char  *p;

    p = s + (*s == '-');

    if (*p < '0' || *p > '9') {
        return -1;
    }

    p += strspn(p, "0123456789");

    if (*p == '.') {
        p++;

        if (*p < '0' || *p > '9') {
            return -1;
        }

        p += strspn(p, "0123456789");
    }

    if (*p != '\0') {
        return -1;
    }

    *d = strtod(s, NULL);

    return 0;
}


static int
wa_send_contacts(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    (void) arg;

    return wa_send_items(ctx, v, 1, WA_SEND_ANY, wa_send_contact, NULL);
}


static int
wa_send_contact(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    const char  *birthday;

    (void) arg;

    if (wa_send_object(ctx, v, wa_send_contact_names) != 0
        || wa_send_member(ctx, v, "name", 1, wa_send_contact_name, NULL)
           != 0
        || wa_send_string(ctx, v, "birthday", 0, 1, WA_SEND_ANY, &birthday)
           != 0
        || wa_send_member(ctx, v, "org", 0, wa_send_strings,
                          wa_send_org_names) != 0
        || wa_send_array(ctx, v, "phones", 0, WA_SEND_ANY, wa_send_strings,
                         wa_send_phone_names) != 0
        || wa_send_array(ctx, v, "emails", 0, WA_SEND_ANY, wa_send_strings,
                         wa_send_email_names) != 0
        || wa_send_array(ctx, v, "urls", 0, WA_SEND_ANY, wa_send_strings,
                         wa_send_url_names) != 0
        || wa_send_array(ctx, v, "addresses", 0, WA_SEND_ANY,
                         wa_send_strings, wa_send_address_names) != 0)
    {
        return -1;
    }

    if (birthday != NULL && wa_send_date(birthday) != 0) {
        return wa_send_error(ctx, "birthday", "must be a date as "
                             "YYYY-MM-DD");
    }

    return 0;
}


static int
wa_send_contact_name(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    (void) arg;

    if (wa_send_strings(ctx, v, wa_send_name_names) != 0
        || wa_send_string(ctx, v, "formatted_name", 1, 1, WA_SEND_ANY, NULL)
           != 0)
    {
        return -1;
    }

    return 0;
}


/* an object of optional strings; arg: their names */
static int
wa_send_strings(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    const char *const  *names;

    names = arg;

    if (wa_send_object(ctx, v, names) != 0) {
        return -1;
    }

    for ( /* void */ ; *names != NULL; names++) {
        if (wa_send_string(ctx, v, *names, 0, 0, WA_SEND_ANY, NULL) != 0) {
            return -1;
        }
    }

    return 0;
}


/* YYYY-MM-DD, month 01..12, day 01..31 */
static int
wa_send_date(const char *s)
{
    int     month, day;
    size_t  i;

    for (i = 0; i < 10; i++) {
        if ((i == 4 || i == 7) ? s[i] != '-' : (s[i] < '0' || s[i] > '9')) {
            return -1;
        }
    }

    month = (s[5] - '0') * 10 + (s[6] - '0');
    day = (s[8] - '0') * 10 + (s[9] - '0');

    return (s[10] == '\0' && month >= 1 && month <= 12 && day >= 1
            && day <= 31) ? 0 : -1;
}


/* an empty emoji removes the reaction; one emoji is a few code points */
static int
wa_send_reaction(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "message_id", "emoji", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "message_id", 1, 1, 256, NULL) != 0
        || wa_send_string(ctx, v, "emoji", 1, 0, 10, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* templates */

static int
wa_send_template(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = {
        "name", "language", "components", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "name", 1, 1, 512, NULL) != 0
        || wa_send_member(ctx, v, "language", 1, wa_send_language, NULL) != 0
        || wa_send_array(ctx, v, "components", 0, WA_SEND_ANY,
                         wa_send_component, &wa_send_in_template) != 0)
    {
        return -1;
    }

    return 0;
}


static int
wa_send_language(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int          unused;
    const char  *code;

    static const char *const  names[] = { "code", "policy", NULL };
    static const char *const  policies[] = { "deterministic", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "code", 1, 1, WA_SEND_ANY, &code) != 0
        || wa_send_enum(ctx, v, "policy", 0, policies, 0, &unused) != 0)
    {
        return -1;
    }

    if (wa_send_language_code(code) != 0) {
        return wa_send_error(ctx, "code", "must be a language code such as "
                             "en or en_US");
    }

    return 0;
}


/* 2 or 3 lower-case letters, then maybe "_" and 2 to 4 letters or digits */
static int
wa_send_language_code(const char *s)
{
    size_t  n, m;

    for (n = 0; s[n] >= 'a' && s[n] <= 'z'; n++) {
        /* void */
    }

    if (n < 2 || n > 3) {
        return -1;
    }

    if (s[n] == '\0') {
        return 0;
    }

    if (s[n] != '_') {
        return -1;
    }

    s += n + 1;

    for (m = 0; (s[m] >= 'A' && s[m] <= 'Z') || (s[m] >= 'a' && s[m] <= 'z')
                || (s[m] >= '0' && s[m] <= '9'); m++)
    {
        /* void */
    }

    return (m >= 2 && m <= 4 && s[m] == '\0') ? 0 : -1;
}


/* arg: a wa_send_components_t, where the component is */
static int
wa_send_component(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int               lto;
    wa_send_params_t  params;

    static const char *const  names[] = {
        "type", "sub_type", "index", "parameters", "cards", NULL
    };

    params.in = arg;
    params.sub_type = -1;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_enum(ctx, v, "type", 1, params.in->types, 1,
                        &params.component) != 0)
    {
        return -1;
    }

    if (params.component == WA_SEND_COMPONENT_BUTTON) {
        if (wa_send_enum(ctx, v, "sub_type", 1, params.in->sub_types, 1,
                         &params.sub_type) != 0
            || wa_send_button_index(ctx, v) != 0)
        {
            return -1;
        }

    } else if (wa_json_get(v, "sub_type") != NULL) {
        return wa_send_error(ctx, "sub_type", "is only for button "
                             "components");

    } else if (wa_json_get(v, "index") != NULL) {
        return wa_send_error(ctx, "index", "is only for button components");
    }

    if (params.component == WA_SEND_COMPONENT_CAROUSEL) {
        return wa_send_carousel(ctx, v);
    }

    if (wa_json_get(v, "cards") != NULL) {
        return wa_send_error(ctx, "cards", "is only for carousel "
                             "components");
    }

    /* a limited-time offer component is there for its expiration */
    lto = (params.component == WA_SEND_COMPONENT_LTO);

    return wa_send_array(ctx, v, "parameters", lto, lto ? 1 : WA_SEND_ANY,
                         wa_send_parameter, &params);
}


/* "0".."9" as in Meta's examples, or the number */
static int
wa_send_button_index(wa_send_ctx_t *ctx, yajl_val obj)
{
    yajl_val     v;
    const char  *s;

    v = wa_json_get(obj, "index");

    if (v == NULL) {
        return wa_send_error(ctx, "index", "is required for button "
                             "components");
    }

    if (YAJL_IS_INTEGER(v)) {
        if (YAJL_GET_INTEGER(v) >= 0 && YAJL_GET_INTEGER(v) <= 9) {
            return 0;
        }

    } else if (YAJL_IS_STRING(v)) {
        s = v->u.string;

        if (s[0] >= '0' && s[0] <= '9' && s[1] == '\0') {
            return 0;
        }
    }

    return wa_send_error(ctx, "index", "must be 0 to 9, as a string or a "
                         "number");
}


/*
 * A media or product card carousel: up to 10 cards, each with its own
 * components and at its own card_index; the carousel itself has no
 * parameters.
 */
static int
wa_send_carousel(wa_send_ctx_t *ctx, yajl_val v)
{
    if (wa_json_get(v, "parameters") != NULL) {
        return wa_send_error(ctx, "parameters", "is not allowed in a "
                             "carousel component: its cards have theirs");
    }

    if (wa_send_array(ctx, v, "cards", 1, WA_SEND_CARDS_MAX, wa_send_card,
                      NULL) != 0)
    {
        return -1;
    }

    return wa_send_card_indexes(ctx, wa_json_get(v, "cards"));
}


static int
wa_send_card(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "card_index", "components", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_integer(ctx, v, "card_index", 0, WA_SEND_CARDS_MAX - 1,
                           "must be an integer from 0 to 9") != 0
        || wa_send_array(ctx, v, "components", 1, WA_SEND_CARD_PARTS,
                         wa_send_component, &wa_send_in_card) != 0)
    {
        return -1;
    }

    return wa_send_card_header(ctx, wa_json_get(v, "components"));
}


/* Meta requires the header of every card: its one image or video, or its
 * product */
static int
wa_send_card_header(wa_send_ctx_t *ctx, yajl_val components)
{
    size_t    i;
    yajl_val  component, params;

    for (i = 0; i < components->u.array.len; i++) {
        component = components->u.array.values[i];

        if (strcasecmp(wa_json_get(component, "type")->u.string, "header")
            != 0)
        {
            continue;
        }

        params = wa_json_get(component, "parameters");

        if (params != NULL && params->u.array.len == 1) {
            return 0;
        }

        wa_send_push(ctx, "components");
        wa_send_push_index(ctx, i);

        return wa_send_error(ctx, "parameters", "must be one image, video "
                             "or product: Meta requires the header of "
                             "every card");
    }

    return wa_send_error(ctx, "components", "needs a header with the "
                         "card's image, video or product: Meta requires "
                         "one in every card");
}


/* each card at its own card_index, which its card's check kept to 0..9 */
static int
wa_send_card_indexes(wa_send_ctx_t *ctx, yajl_val cards)
{
    size_t    i;
    unsigned  seen, bit;

    seen = 0;

    for (i = 0; i < cards->u.array.len; i++) {
        bit = 1u << YAJL_GET_INTEGER(wa_json_get(cards->u.array.values[i],
                                                 "card_index"));

        if (seen & bit) {
            wa_send_push(ctx, "cards");
            wa_send_push_index(ctx, i);

            return wa_send_error(ctx, "card_index", "is the same as another "
                                 "card's");
        }

        seen |= bit;
    }

    return 0;
}


/*
 * arg: a wa_send_params_t, whose component (a button's sub_type) limits the
 * parameter types
 */
static int
wa_send_parameter(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int                      component, type;
    unsigned                 allowed;
    const char              *names[4];
    const wa_send_params_t  *params;

    params = arg;
    component = params->component;
    allowed = (component == WA_SEND_COMPONENT_BUTTON && params->in->buttons)
              ? params->in->buttons[params->sub_type]
              : params->in->params[component];

    if (!YAJL_IS_OBJECT(v)) {
        return wa_send_error(ctx, NULL, "must be an object");
    }

    if (wa_send_enum(ctx, v, "type", 1, wa_send_param_types, 1, &type)
        != 0)
    {
        return -1;
    }

    if (!(allowed & (1u << type))) {
        return wa_send_error(ctx, "type", "is not allowed in a %s "
                             "component%s",
                             wa_send_component_types[component],
                             params->in->where);
    }

    names[0] = "type";
    names[1] = "parameter_name";
    names[2] = wa_send_param_types[type];
    names[3] = NULL;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "parameter_name", 0, 1, WA_SEND_ANY, NULL)
           != 0)
    {
        return -1;
    }

    switch (type) {

    case WA_SEND_PARAM_TEXT:
        return wa_send_string(ctx, v, "text", 1, 1,
                              (component == WA_SEND_COMPONENT_HEADER)
                              ? 60 : 32768, NULL);

    case WA_SEND_PARAM_CURRENCY:
        return wa_send_member(ctx, v, "currency", 1, wa_send_currency, NULL);

    case WA_SEND_PARAM_DATE_TIME:
        return wa_send_member(ctx, v, "date_time", 1, wa_send_date_time,
                              NULL);

    case WA_SEND_PARAM_IMAGE:
    case WA_SEND_PARAM_VIDEO:
        return wa_send_member(ctx, v, names[2], 1, wa_send_media,
                              &wa_send_part);

    case WA_SEND_PARAM_DOCUMENT:
        return wa_send_member(ctx, v, "document", 1, wa_send_media,
                              &wa_send_part_document);

    case WA_SEND_PARAM_LOCATION:
        return wa_send_member(ctx, v, "location", 1, wa_send_location, NULL);

    case WA_SEND_PARAM_PAYLOAD:
        return wa_send_string(ctx, v, "payload", 1, 1, WA_SEND_ANY, NULL);

    case WA_SEND_PARAM_COUPON_CODE:
        return wa_send_string(ctx, v, "coupon_code", 1, 1, 15, NULL);

    case WA_SEND_PARAM_LTO:
        return wa_send_member(ctx, v, "limited_time_offer", 1, wa_send_lto,
                              NULL);

    case WA_SEND_PARAM_PRODUCT:
        return wa_send_member(ctx, v, "product", 1, wa_send_product, NULL);

    default: /* WA_SEND_PARAM_ACTION: flow, catalog, mpm or spm data */
        return wa_send_member(ctx, v, "action", 1, wa_send_any_object, NULL);
    }
}


static int
wa_send_currency(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    const char  *code;

    static const char *const  names[] = {
        "fallback_value", "code", "amount_1000", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "fallback_value", 1, 1, WA_SEND_ANY, NULL)
           != 0
        || wa_send_string(ctx, v, "code", 1, 1, WA_SEND_ANY, &code) != 0)
    {
        return -1;
    }

    if (strlen(code) != 3 || strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
    {
        return wa_send_error(ctx, "code", "must be an ISO 4217 currency "
                             "code such as USD");
    }

    return wa_send_integer(ctx, v, "amount_1000", LLONG_MIN, LLONG_MAX,
                           "must be an integer: the amount times 1000");
}


static int
wa_send_date_time(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "fallback_value", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "fallback_value", 1, 1, WA_SEND_ANY, NULL)
           != 0)
    {
        return -1;
    }

    return 0;
}


/* the end of a limited-time offer, which the message counts down to */
static int
wa_send_lto(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "expiration_time_ms", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_integer(ctx, v, "expiration_time_ms", 1, LLONG_MAX,
                           "must be a positive integer: the offer's end as "
                           "Unix time in milliseconds") != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * A product of the catalog: the action of a single-product message or of
 * a product card, a template's product header.
 */
static int
wa_send_product(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = {
        "catalog_id", "product_retailer_id", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "catalog_id", 1, 1, WA_SEND_ANY, NULL) != 0
        || wa_send_string(ctx, v, "product_retailer_id", 1, 1, WA_SEND_ANY,
                          NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* interactive messages */

static int
wa_send_interactive(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int                           type;
    const char                   *name;
    const wa_send_interactive_t  *ia;

    static const char *const  names[] = {
        "type", "header", "body", "footer", "action", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_enum(ctx, v, "type", 1, wa_send_interactive_names, 0,
                        &type) != 0)
    {
        return -1;
    }

    ia = &wa_send_interactives[type];
    name = wa_send_interactive_names[type];

    if (ia->headers == NULL && wa_json_get(v, "header") != NULL) {
        return wa_send_error(ctx, "header", "is not allowed with "
                             "interactive type %s", name);
    }

    if (!(ia->parts & WA_SEND_FOOTER) && wa_json_get(v, "footer") != NULL) {
        return wa_send_error(ctx, "footer", "is not allowed with "
                             "interactive type %s", name);
    }

    if (wa_send_member(ctx, v, "header", (ia->parts & WA_SEND_HEADER) != 0,
                       wa_send_header, ia->headers) != 0
        || wa_send_text_object(ctx, v, "body",
                               (ia->parts & WA_SEND_BODY) != 0,
                               ia->body_max) != 0
        || wa_send_text_object(ctx, v, "footer", 0, 60) != 0
        || wa_send_member(ctx, v, "action", 1, ia->action, ia->action_arg)
           != 0)
    {
        return -1;
    }

    return 0;
}


/* arg: the header types allowed, some of wa_send_header_types */
static int
wa_send_header(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int                 type, i;
    const char         *name, *given;
    const char *const  *types;

    static const char *const  names[] = {
        "type", "text", "image", "video", "document", NULL
    };

    types = arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_enum(ctx, v, "type", 1, types, 0, &type) != 0)
    {
        return -1;
    }

    given = types[type];

    for (i = 0; wa_send_header_types[i] != NULL; i++) {
        name = wa_send_header_types[i];

        if (strcmp(name, given) != 0 && wa_json_get(v, name) != NULL) {
            return wa_send_error(ctx, name, "is not allowed with header "
                                 "type %s", given);
        }
    }

    if (strcmp(given, "text") == 0) {
        return wa_send_string(ctx, v, "text", 1, 1, 60, NULL);
    }

    return wa_send_member(ctx, v, given, 1, wa_send_media,
                          (strcmp(given, "document") == 0)
                          ? &wa_send_part_document : &wa_send_part);
}


/* {"text": "..."}: an interactive body or footer */
static int
wa_send_text_object(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, size_t max)
{
    size_t    old;
    yajl_val  v;

    static const char *const  names[] = { "text", NULL };

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return required ? wa_send_error(ctx, name, "is required") : 0;
    }

    old = wa_send_push(ctx, name);

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "text", 1, 1, max, NULL) != 0)
    {
        return -1;
    }

    wa_send_pop(ctx, old);

    return 0;
}


/* reply buttons, whose ids come back in the reply webhook: unique */
static int
wa_send_buttons(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    size_t       i, j;
    yajl_val     buttons;
    const char  *id;

    static const char *const  names[] = { "buttons", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_array(ctx, v, "buttons", 1, 3, wa_send_reply_button,
                         "reply") != 0)
    {
        return -1;
    }

    buttons = wa_json_get(v, "buttons");

    for (i = 1; i < buttons->u.array.len; i++) {
        id = wa_send_reply_id(buttons->u.array.values[i]);

        for (j = 0; j < i; j++) {
            if (strcmp(id, wa_send_reply_id(buttons->u.array.values[j]))
                == 0)
            {
                wa_send_push(ctx, "buttons");
                wa_send_push_index(ctx, i);
                wa_send_push(ctx, "reply");

                return wa_send_error(ctx, "id", "is the same as in "
                                     "buttons[%zu]", j);
            }
        }
    }

    return 0;
}


/* {"type": T, T: {"id", "title"}}; arg: T, "reply" (a reply button) or
 * "quick_reply" (in a media card) */
static int
wa_send_reply_button(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int          unused;
    const char  *names[3], *types[2];

    types[0] = arg;
    types[1] = NULL;

    names[0] = "type";
    names[1] = types[0];
    names[2] = NULL;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_enum(ctx, v, "type", 1, types, 0, &unused) != 0
        || wa_send_member(ctx, v, types[0], 1, wa_send_reply, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


static int
wa_send_reply(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "id", "title", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "id", 1, 1, 256, NULL) != 0
        || wa_send_string(ctx, v, "title", 1, 1, 20, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* the id of a button wa_send_reply_button() accepted */
static const char *
wa_send_reply_id(yajl_val button)
{
    return wa_json_get(wa_json_get(button, "reply"), "id")->u.string;
}


static int
wa_send_list(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "button", "sections", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "button", 1, 1, 20, NULL) != 0)
    {
        return -1;
    }

    return wa_send_sections(ctx, v, &wa_send_rows);
}


/* a multi-product message: products of one catalog, in sections */
static int
wa_send_product_list(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "catalog_id", "sections", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "catalog_id", 1, 1, WA_SEND_ANY, NULL) != 0)
    {
        return -1;
    }

    return wa_send_sections(ctx, v, &wa_send_products);
}


/* the 1 to 10 sections of a list or a multi-product message */
static int
wa_send_sections(wa_send_ctx_t *ctx, yajl_val obj,
    const wa_send_sections_t *of)
{
    size_t          i, n, old;
    yajl_val        sections;
    wa_send_rows_t  rows;

    sections = wa_json_get(obj, "sections");

    if (sections == NULL) {
        return wa_send_error(ctx, "sections", "is required");
    }

    wa_send_push(ctx, "sections");

    if (!YAJL_IS_ARRAY(sections)) {
        return wa_send_error(ctx, NULL, "must be an array");
    }

    n = sections->u.array.len;

    if (n == 0) {
        return wa_send_error(ctx, NULL, "must not be empty");
    }

    if (n > 10) {
        return wa_send_error(ctx, NULL, "has more than 10 items");
    }

    rows.of = of;
    rows.n = 0;

    for (i = 0; i < n; i++) {
        old = wa_send_push_index(ctx, i);

        /* with several sections, their titles tell them apart */
        if (wa_send_section(ctx, sections->u.array.values[i], n > 1, &rows)
            != 0)
        {
            return -1;
        }

        wa_send_pop(ctx, old);
    }

    return 0;
}


/*
 * Row ids come back in the reply webhook: unique across sections.  Rows
 * are at most WA_SEND_ROWS_MAX in all, so their ids fit in rows->ids.
 */
static int
wa_send_section(wa_send_ctx_t *ctx, yajl_val v, int titled,
    wa_send_rows_t *rows)
{
    size_t                     i, j, old;
    yajl_val                   list, item;
    const char                *names[3], *id;
    const wa_send_sections_t  *of;

    of = rows->of;

    names[0] = "title";
    names[1] = of->name;
    names[2] = NULL;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "title", titled, 1, 24, NULL) != 0)
    {
        return -1;
    }

    list = wa_json_get(v, of->name);

    if (list == NULL) {
        return wa_send_error(ctx, of->name, "is required");
    }

    wa_send_push(ctx, of->name);

    if (!YAJL_IS_ARRAY(list)) {
        return wa_send_error(ctx, NULL, "must be an array");
    }

    if (list->u.array.len == 0) {
        return wa_send_error(ctx, NULL, "must not be empty");
    }

    if (list->u.array.len > of->max - rows->n) {
        return wa_send_error(ctx, NULL, "makes more than %zu %s in all "
                             "sections", of->max, of->noun);
    }

    for (i = 0; i < list->u.array.len; i++) {
        old = wa_send_push_index(ctx, i);
        item = list->u.array.values[i];

        if (of->item(ctx, item, NULL) != 0) {
            return -1;
        }

        if (of->id != NULL) {
            id = wa_json_get(item, of->id)->u.string;

            for (j = 0; j < rows->n; j++) {
                if (strcmp(id, rows->ids[j]) == 0) {
                    return wa_send_error(ctx, of->id, "is the same as "
                                         "another row's");
                }
            }

            rows->ids[rows->n] = id;
        }

        rows->n++;

        wa_send_pop(ctx, old);
    }

    return 0;
}


static int
wa_send_row(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = {
        "id", "title", "description", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "id", 1, 1, 200, NULL) != 0
        || wa_send_string(ctx, v, "title", 1, 1, 24, NULL) != 0
        || wa_send_string(ctx, v, "description", 0, 0, 72, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


static int
wa_send_product_item(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "product_retailer_id", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "product_retailer_id", 1, 1, WA_SEND_ANY,
                          NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* An action that names itself, with the parameters its name takes. */
static int
wa_send_named_action(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int                           unused;
    const wa_send_named_action_t  *na;

    static const char *const  with[] = { "name", "parameters", NULL };
    static const char *const  without[] = { "name", NULL };

    na = arg;

    if (wa_send_object(ctx, v, na->parameters ? with : without) != 0
        || wa_send_enum(ctx, v, "name", 1, na->name, 0, &unused) != 0
        || (na->parameters
            && wa_send_member(ctx, v, "parameters", na->required,
                              na->parameters, NULL) != 0))
    {
        return -1;
    }

    return 0;
}


static int
wa_send_cta_parameters(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "display_text", "url", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "display_text", 1, 1, 20, NULL) != 0
        || wa_send_url(ctx, v, "url", 1) != 0)
    {
        return -1;
    }

    return 0;
}


/* the product whose image heads a catalog message */
static int
wa_send_catalog_parameters(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = {
        "thumbnail_product_retailer_id", NULL
    };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "thumbnail_product_retailer_id", 0, 1,
                          WA_SEND_ANY, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * An interactive carousel's 2 to 10 cards, each at its own card_index:
 * media cards or product cards, alike.
 */
static int
wa_send_interactive_carousel(wa_send_ctx_t *ctx, yajl_val v,
    const void *arg)
{
    yajl_val  cards;

    static const char *const  names[] = { "cards", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_array(ctx, v, "cards", 1, WA_SEND_CARDS_MAX,
                         wa_send_interactive_card, NULL) != 0)
    {
        return -1;
    }

    cards = wa_json_get(v, "cards");

    if (cards->u.array.len < WA_SEND_CARDS_MIN) {
        return wa_send_error(ctx, "cards", "has fewer than 2 items: Meta "
                             "requires 2 to 10 cards");
    }

    if (wa_send_card_indexes(ctx, cards) != 0
        || wa_send_cards_alike(ctx, cards) != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * A media card: its image or video, maybe a body, a URL button or quick
 * replies; or a product card, which the catalog fills.
 */
static int
wa_send_interactive_card(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int          type;
    size_t       breaks;
    yajl_val     body;
    const char  *p;

    static const char *const  names[] = {
        "card_index", "type", "header", "body", "action", NULL
    };
    static const char *const  types[] = { "cta_url", "product", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_integer(ctx, v, "card_index", 0, WA_SEND_CARDS_MAX - 1,
                           "must be an integer from 0 to 9") != 0
        || wa_send_enum(ctx, v, "type", 1, types, 0, &type) != 0)
    {
        return -1;
    }

    if (type == 1) {
        if (wa_json_get(v, "header") != NULL) {
            return wa_send_error(ctx, "header", "is not allowed in a product "
                                 "card: the catalog gives its image");
        }

        if (wa_json_get(v, "body") != NULL) {
            return wa_send_error(ctx, "body", "is not allowed in a product "
                                 "card: the catalog gives its text");
        }

        return wa_send_member(ctx, v, "action", 1, wa_send_product, NULL);
    }

    if (wa_send_member(ctx, v, "header", 1, wa_send_header,
                       wa_send_header_card) != 0
        || wa_send_text_object(ctx, v, "body", 0, WA_SEND_CARD_BODY_MAX) != 0
        || wa_send_member(ctx, v, "action", 1, wa_send_card_action, NULL)
           != 0)
    {
        return -1;
    }

    body = wa_json_get(v, "body");

    if (body == NULL) {
        return 0;
    }

    breaks = 0;

    for (p = wa_json_get(body, "text")->u.string; *p != '\0'; p++) {
        breaks += (*p == '\n');
    }

    if (breaks > WA_SEND_CARD_BREAKS) {
        wa_send_push(ctx, "body");

        return wa_send_error(ctx, "text", "has more than 2 line breaks");
    }

    return 0;
}


/* a media card's one URL button, as a cta_url message's, or quick replies */
static int
wa_send_card_action(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "buttons", NULL };

    (void) arg;

    if (wa_json_get(v, "buttons") == NULL) {
        return wa_send_named_action(ctx, v, &wa_send_cta_url);
    }

    if (wa_json_get(v, "name") != NULL
        || wa_json_get(v, "parameters") != NULL)
    {
        return wa_send_error(ctx, "buttons", "is for quick replies: a card "
                             "has a URL button (name, parameters) or quick "
                             "replies, not both");
    }

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_array(ctx, v, "buttons", 1, WA_SEND_ANY,
                         wa_send_reply_button, "quick_reply") != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * Meta's carousel cards are alike: all of one type; a product carousel's
 * from one catalog; a media carousel's with the same buttons, a URL button
 * or as many quick replies.
 */
static int
wa_send_cards_alike(wa_send_ctx_t *ctx, yajl_val cards)
{
    size_t       i, old;
    yajl_val     card, action, buttons, first, first_buttons;
    const char  *type;

    first = wa_json_get(cards->u.array.values[0], "action");
    first_buttons = wa_json_get(first, "buttons");
    type = wa_json_get(cards->u.array.values[0], "type")->u.string;

    for (i = 1; i < cards->u.array.len; i++) {
        card = cards->u.array.values[i];
        action = wa_json_get(card, "action");
        buttons = wa_json_get(action, "buttons");

        old = wa_send_push(ctx, "cards");
        wa_send_push_index(ctx, i);

        if (strcmp(wa_json_get(card, "type")->u.string, type) != 0) {
            return wa_send_error(ctx, "type", "must be %s, as in cards[0]: "
                                 "a carousel's cards are all of one type",
                                 type);
        }

        if (strcmp(type, "product") == 0) {
            if (strcmp(wa_json_get(action, "catalog_id")->u.string,
                       wa_json_get(first, "catalog_id")->u.string)
                != 0)
            {
                wa_send_push(ctx, "action");

                return wa_send_error(ctx, "catalog_id", "must be the same "
                                     "in every card, as in cards[0]");
            }

        } else if ((buttons == NULL) != (first_buttons == NULL)
                   || (buttons != NULL
                       && buttons->u.array.len
                          != first_buttons->u.array.len))
        {
            return wa_send_error(ctx, "action", "must have the buttons of "
                                 "cards[0]: a URL button, or as many quick "
                                 "replies, in every card");
        }

        wa_send_pop(ctx, old);
    }

    return 0;
}


/*
 * The flow by flow_id or flow_name; flow_action navigate (the default)
 * opens flow_action_payload.screen, data_exchange asks the flow's
 * endpoint and takes no payload.
 */
static int
wa_send_flow_parameters(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    int  action, unused;

    static const char *const  names[] = {
        "flow_message_version", "flow_token", "flow_id", "flow_name",
        "flow_cta", "flow_action", "flow_action_payload", "mode", NULL
    };
    static const char *const  versions[] = { "3", NULL };
    static const char *const  actions[] = {
        "navigate", "data_exchange", NULL
    };
    static const char *const  modes[] = { "draft", "published", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_enum(ctx, v, "flow_message_version", 1, versions, 0,
                        &unused) != 0)
    {
        return -1;
    }

    if (wa_json_get(v, "flow_id") != NULL
        && wa_json_get(v, "flow_name") != NULL)
    {
        return wa_send_error(ctx, NULL, "must have flow_id or flow_name, "
                             "not both");
    }

    if (wa_json_get(v, "flow_id") == NULL
        && wa_json_get(v, "flow_name") == NULL)
    {
        return wa_send_error(ctx, NULL, "needs flow_id or flow_name");
    }

    if (wa_send_string(ctx, v, "flow_token", 0, 1, WA_SEND_ANY, NULL) != 0
        || wa_send_string(ctx, v, "flow_id", 0, 1, WA_SEND_ANY, NULL) != 0
        || wa_send_string(ctx, v, "flow_name", 0, 1, WA_SEND_ANY, NULL) != 0
        || wa_send_string(ctx, v, "flow_cta", 1, 1, 20, NULL) != 0
        || wa_send_enum(ctx, v, "flow_action", 0, actions, 0, &action) != 0
        || wa_send_enum(ctx, v, "mode", 0, modes, 0, &unused) != 0)
    {
        return -1;
    }

    if (action == 1) {
        if (wa_json_get(v, "flow_action_payload") != NULL) {
            return wa_send_error(ctx, "flow_action_payload", "is only for "
                                 "flow_action navigate");
        }

        return 0;
    }

    return wa_send_member(ctx, v, "flow_action_payload", 1,
                          wa_send_flow_payload, NULL);
}


static int
wa_send_flow_payload(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    static const char *const  names[] = { "screen", "data", NULL };

    (void) arg;

    if (wa_send_object(ctx, v, names) != 0
        || wa_send_string(ctx, v, "screen", 1, 1, WA_SEND_ANY, NULL) != 0
        || wa_send_member(ctx, v, "data", 0, wa_send_any_object, NULL) != 0)
    {
        return -1;
    }

    return 0;
}


/* data passed on to a flow or a catalog: its shape is theirs */
static int
wa_send_any_object(wa_send_ctx_t *ctx, yajl_val v, const void *arg)
{
    (void) arg;

    if (!YAJL_IS_OBJECT(v)) {
        return wa_send_error(ctx, NULL, "must be an object");
    }

    return 0;
}


/* members */

/* An object with no member but those in names (NULL-terminated). */
static int
wa_send_object(wa_send_ctx_t *ctx, yajl_val v, const char *const *names)
{
    size_t              i;
    const char *const  *name;

    if (!YAJL_IS_OBJECT(v)) {
        return wa_send_error(ctx, NULL, "must be an object");
    }

    for (i = 0; i < v->u.object.len; i++) {
        for (name = names; *name != NULL; name++) {
            if (strcmp(v->u.object.keys[i], *name) == 0) {
                break;
            }
        }

        if (*name == NULL) {
            return wa_send_error(ctx, v->u.object.keys[i],
                                 "is not a known field");
        }
    }

    return 0;
}


static int
wa_send_member(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, wa_send_check_pt check, const void *arg)
{
    size_t    old;
    yajl_val  v;

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return required ? wa_send_error(ctx, name, "is required") : 0;
    }

    old = wa_send_push(ctx, name);

    if (check(ctx, v, arg) != 0) {
        return -1;
    }

    wa_send_pop(ctx, old);

    return 0;
}


/* A member that is an array of up to max items; required: not empty. */
static int
wa_send_array(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, size_t max, wa_send_check_pt check, const void *arg)
{
    size_t    old;
    yajl_val  v;

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return required ? wa_send_error(ctx, name, "is required") : 0;
    }

    old = wa_send_push(ctx, name);

    if (wa_send_items(ctx, v, required, max, check, arg) != 0) {
        return -1;
    }

    wa_send_pop(ctx, old);

    return 0;
}


static int
wa_send_items(wa_send_ctx_t *ctx, yajl_val v, int nonempty, size_t max,
    wa_send_check_pt check, const void *arg)
{
    size_t  i, old;

    if (!YAJL_IS_ARRAY(v)) {
        return wa_send_error(ctx, NULL, "must be an array");
    }

    if (nonempty && v->u.array.len == 0) {
        return wa_send_error(ctx, NULL, "must not be empty");
    }

    if (v->u.array.len > max) {
        return wa_send_error(ctx, NULL, "has more than %zu item%s", max,
                             (max == 1) ? "" : "s");
    }

    for (i = 0; i < v->u.array.len; i++) {
        old = wa_send_push_index(ctx, i);

        if (check(ctx, v->u.array.values[i], arg) != 0) {
            return -1;
        }

        wa_send_pop(ctx, old);
    }

    return 0;
}


/* A string of up to max code points; *value is NULL when absent. */
static int
wa_send_string(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, int nonempty, size_t max, const char **value)
{
    size_t    n;
    yajl_val  v;

    if (value != NULL) {
        *value = NULL;
    }

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return required ? wa_send_error(ctx, name, "is required") : 0;
    }

    if (!YAJL_IS_STRING(v)) {
        return wa_send_error(ctx, name, "must be a string");
    }

    n = wa_send_chars(v->u.string);

    if (n == 0 && nonempty) {
        return wa_send_error(ctx, name, "must not be empty");
    }

    if (n > max) {
        return wa_send_error(ctx, name, "is longer than %zu characters", max);
    }

    if (value != NULL) {
        *value = v->u.string;
    }

    return 0;
}


/* A required integer from min to max; why says what it must be. */
static int
wa_send_integer(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    long long min, long long max, const char *why)
{
    yajl_val  v;

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return wa_send_error(ctx, name, "is required");
    }

    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < min
        || YAJL_GET_INTEGER(v) > max)
    {
        return wa_send_error(ctx, name, "%s", why);
    }

    return 0;
}


static int
wa_send_bool(wa_send_ctx_t *ctx, yajl_val obj, const char *name)
{
    yajl_val  v;

    v = wa_json_get(obj, name);

    if (v != NULL && !YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
        return wa_send_error(ctx, name, "must be true or false");
    }

    return 0;
}


/* One of values (NULL-terminated); *index is -1 when absent. */
static int
wa_send_enum(wa_send_ctx_t *ctx, yajl_val obj, const char *name,
    int required, const char *const *values, int nocase, int *index)
{
    int        i;
    size_t     n;
    yajl_val   v;

    *index = -1;

    v = wa_json_get(obj, name);

    if (v == NULL) {
        return required ? wa_send_error(ctx, name, "is required") : 0;
    }

    for (i = 0; YAJL_IS_STRING(v) && values[i] != NULL; i++) {
        if ((nocase ? strcasecmp(v->u.string, values[i])
                    : strcmp(v->u.string, values[i])) == 0)
        {
            *index = i;
            return 0;
        }
    }

    if (values[1] == NULL) {
        return wa_send_error(ctx, name, "must be %s", values[0]);
    }

    wa_send_error(ctx, name, "must be one of:");

    for (i = 0; values[i] != NULL; i++) {
        n = strlen(ctx->message);

        if (n + 1 >= sizeof(ctx->message)) {
            break;
        }

        snprintf(ctx->message + n, sizeof(ctx->message) - n, "%s %s",
                 (i > 0) ? "," : "", values[i]);
    }

    return -1;
}


/* the path of the value being checked, for errors */

/* Appends ".name" (or "name" at the top); returns the length before. */
static size_t
wa_send_push(wa_send_ctx_t *ctx, const char *name)
{
    size_t  len;

    len = ctx->len;

    if (len > 0) {
        wa_send_append(ctx, ".", 1);
    }

    wa_send_append(ctx, name, strlen(name));

    return len;
}


static size_t
wa_send_push_index(wa_send_ctx_t *ctx, size_t i)
{
    int     n;
    char    buf[32];
    size_t  len;

    len = ctx->len;
    n = snprintf(buf, sizeof(buf), "[%zu]", i);

    wa_send_append(ctx, buf, (size_t) n);

    return len;
}


static void
wa_send_pop(wa_send_ctx_t *ctx, size_t len)
{
    ctx->len = len;
    ctx->path[len] = '\0';
}


/* a path too long is cut rather than refused: it only names the field */
static void
wa_send_append(wa_send_ctx_t *ctx, const char *s, size_t n)
{
    while (n > 0 && ctx->len < WA_SEND_FIELD_MAX - 1) {
        ctx->path[ctx->len++] = wa_send_printable(*s++);
        n--;
    }

    ctx->path[ctx->len] = '\0';
}


/* Sets the error at the path (and its member name, if not NULL): -1. */
static int
wa_send_error(wa_send_ctx_t *ctx, const char *name, const char *fmt, ...)
{
    size_t   len;
    va_list  args;

    len = ctx->len;

    if (name != NULL) {
        wa_send_push(ctx, name);
    }

    memcpy(ctx->field, ctx->path, ctx->len + 1);
    wa_send_pop(ctx, len);

    va_start(args, fmt);
    vsnprintf(ctx->message, sizeof(ctx->message), fmt, args);
    va_end(args);

    return -1;
}


/* what the caller can put in a JSON string as it is */
static char
wa_send_printable(char c)
{
    return (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : c;
}
