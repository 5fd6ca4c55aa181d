/*
 * Unit tests of common/wa_send.c: Meta's own example bodies (from its
 * send documentation, with our phone_number_id and an E.164 "to") are
 * accepted, and each rule refuses with the exact field path.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "wa_send.h"


/* Meta's common members, and ours */
#define HEAD                                                              \
    "{\"messaging_product\":\"whatsapp\",\"recipient_type\":\"individual\"," \
    "\"phone_number_id\":\"106540352242922\",\"to\":\"+16505551234\","

/* a body: HEAD then members */
#define B(members)  HEAD members "}"

#define TEXT_OK  "\"type\":\"text\",\"text\":{\"body\":\"hi\"}"

/* an interactive message of a type with an action */
#define IA(type, action)                                                  \
    B("\"type\":\"interactive\",\"interactive\":{\"type\":\"" type "\","  \
      "\"body\":{\"text\":\"Pick one\"},\"action\":" action "}")

#define BUTTON(id, title)                                                 \
    "{\"type\":\"reply\",\"reply\":{\"id\":\"" id "\",\"title\":\""       \
    title "\"}}"

#define ROW(id)     "{\"id\":\"" id "\",\"title\":\"Row " id "\"}"

/* a template with these components */
#define TPL(components)                                                   \
    B("\"type\":\"template\",\"template\":{\"name\":\"hello\","           \
      "\"language\":{\"code\":\"en_US\"},\"components\":[" components "]}")

/* a carousel card at index i: its image, a quick reply */
#define CARD(i)                                                           \
    "{\"card_index\":" i ",\"components\":[{\"type\":\"header\","         \
    "\"parameters\":[{\"type\":\"image\",\"image\":{\"id\":\"" i "\"}}]}," \
    "{\"type\":\"button\",\"sub_type\":\"quick_reply\",\"index\":0,"      \
    "\"parameters\":[{\"type\":\"payload\",\"payload\":\"more" i "\"}]}]}"

/* a template with a carousel of these cards */
#define CAROUSEL(cards)                                                   \
    TPL("{\"type\":\"carousel\",\"cards\":[" cards "]}")

/* a carousel of one card with these components */
#define CARD_OF(components)                                               \
    CAROUSEL("{\"card_index\":0,\"components\":[" components "]}")

/* a card's header: its image */
#define CARD_IMAGE                                                        \
    "{\"type\":\"header\",\"parameters\":[{\"type\":\"image\","           \
    "\"image\":{\"id\":\"1\"}}]}"

/* a limited-time offer component with this offer */
#define LTO(offer)                                                        \
    TPL("{\"type\":\"limited_time_offer\",\"parameters\":[{\"type\":"     \
        "\"limited_time_offer\",\"limited_time_offer\":" offer "}]}")

/* a template carousel card at index i for a product of the catalog, then
 * these components */
#define PRODUCT_CARD(i, components)                                       \
    "{\"card_index\":" i ",\"components\":[{\"type\":\"header\","         \
    "\"parameters\":[{\"type\":\"product\",\"product\":{"                \
    "\"product_retailer_id\":\"sku" i "\",\"catalog_id\":\"1948\"}}]}"     \
    components "]}"

/* a card's View button */
#define SPM_BUTTON                                                        \
    ",{\"type\":\"button\",\"sub_type\":\"spm\",\"index\":0,"            \
    "\"parameters\":[{\"type\":\"action\",\"action\":{}}]}"

/* an interactive carousel of these cards */
#define IA_CAROUSEL(cards)  IA("carousel", "{\"cards\":[" cards "]}")

/* an interactive media card at index i: an image, a URL button */
#define MEDIA_CARD(i)                                                     \
    "{\"card_index\":" i ",\"type\":\"cta_url\",\"header\":{\"type\":"   \
    "\"image\",\"image\":{\"link\":\"https://example.com/" i ".png\"}},"   \
    "\"action\":{\"name\":\"cta_url\",\"parameters\":{\"display_text\":"  \
    "\"Buy now\",\"url\":\"https://example.com/" i "\"}}}"

/* an interactive media card at index 0 with these members too */
#define MEDIA_CARD_OF(members)                                            \
    "{\"card_index\":0,\"type\":\"cta_url\"," members "}"

#define CARD_HEADER                                                       \
    "\"header\":{\"type\":\"image\",\"image\":{\"id\":\"1\"}}"

/* a media card's quick reply */
#define QUICK_REPLY(id)                                                   \
    "{\"type\":\"quick_reply\",\"quick_reply\":{\"id\":\"" id "\","       \
    "\"title\":\"Reply " id "\"}}"

/* an interactive product card at index i, of catalog c */
#define PRODUCT(i, c)                                                     \
    "{\"card_index\":" i ",\"type\":\"product\",\"action\":{"              \
    "\"product_retailer_id\":\"sku" i "\",\"catalog_id\":\"" c "\"}}"

/* a multi-product message with these sections */
#define PRODUCT_LIST(sections)                                            \
    B("\"type\":\"interactive\",\"interactive\":{\"type\":"             \
      "\"product_list\",\"header\":{\"type\":\"text\",\"text\":"          \
      "\"Our picks\"},\"body\":{\"text\":\"Pick some\"},\"action\":{"     \
      "\"catalog_id\":\"1948\",\"sections\":[" sections "]}}")

#define ITEM                "{\"product_retailer_id\":\"sku\"}"
#define ITEMS10                                                           \
    ITEM "," ITEM "," ITEM "," ITEM "," ITEM "," ITEM "," ITEM "," ITEM   \
    "," ITEM "," ITEM

/* an interactive message of type with these members */
#define IA_OF(type, members)                                              \
    B("\"type\":\"interactive\",\"interactive\":{\"type\":\"" type "\","  \
      members "}")

/* a flow message with these action parameters */
#define FLOW(parameters)                                                  \
    IA("flow", "{\"name\":\"flow\",\"parameters\":{"                      \
       "\"flow_message_version\":\"3\",\"flow_cta\":\"Book!\"" parameters "}}")

#define EMOJI    "\xf0\x9f\x98\x80"      /* U+1F600, 4 bytes */

#define A20  "aaaaaaaaaaaaaaaaaaaa"
#define A24  A20 "aaaa"
#define A60  A20 A20 A20
#define A72  A60 "aaaaaaaaaaaa"
#define A160 A60 A60 A20 A20


static wa_send_request_t  req;


static int
validate(const char *body, size_t len)
{
    return wa_send_validate((const unsigned char *) body, len, &req);
}


static int
valid(const char *body)
{
    if (validate(body, strlen(body)) != 0) {
        printf("#   refused: [%s] %s\n", req.field, req.message);
        return 0;
    }

    return req.field[0] == '\0' && req.message[0] == '\0';
}


/* refused, naming exactly field, with message in its message */
static int
refused(const char *body, const char *field, const char *message)
{
    int  rc;

    rc = validate(body, strlen(body));

    if (rc != -1 || strcmp(req.field, field) != 0
        || strstr(req.message, message) == NULL)
    {
        printf("#   got %d: [%s] %s\n", rc, req.field, req.message);
        return 0;
    }

    return 1;
}


/* body with n copies of unit where "@" is, in a buffer of its own */
static char *
repeat(const char *body, const char *unit, size_t n)
{
    char        *buf, *p;
    size_t       i, len;
    const char  *at;

    at = strchr(body, '@');
    len = strlen(body) + n * strlen(unit);
    buf = malloc(len);

    if (buf == NULL) {
        abort();
    }

    p = buf;
    memcpy(p, body, at - body);
    p += at - body;

    for (i = 0; i < n; i++) {
        memcpy(p, unit, strlen(unit));
        p += strlen(unit);
    }

    strcpy(p, at + 1);

    return buf;
}


static int
repeat_valid(const char *body, const char *unit, size_t n)
{
    int    rc;
    char  *b;

    b = repeat(body, unit, n);
    rc = valid(b);
    free(b);

    return rc;
}


static int
repeat_refused(const char *body, const char *unit, size_t n,
    const char *field, const char *message)
{
    int    rc;
    char  *b;

    b = repeat(body, unit, n);
    rc = refused(b, field, message);
    free(b);

    return rc;
}


static void
test_meta_examples(void)
{
    ok(valid(B("\"type\":\"text\",\"text\":{\"preview_url\":true,"
               "\"body\":\"As requested, here's the link to our latest "
               "product: https://www.meta.com/quest/quest-3/\"}")),
       "text");
    ok(strcmp(req.type, "text") == 0 && req.free_form == 1
       && req.bulk == 0 && strcmp(req.to, "+16505551234") == 0
       && strcmp(req.phone_number_id, "106540352242922") == 0
       && req.idempotency_key[0] == '\0',
       "text: request filled");

    ok(valid(B("\"type\":\"image\",\"image\":{\"id\":\"1479537139650973\","
               "\"caption\":\"The best succulent ever?\"}")), "image");
    ok(strcmp(req.type, "image") == 0, "image: type");
    ok(valid(B("\"type\":\"video\",\"video\":{\"id\":\"1166846181421424\","
               "\"caption\":\"A succulent eclipse!\"}")), "video");
    ok(valid(B("\"type\":\"document\",\"document\":{\"id\":"
               "\"1376223850470843\",\"filename\":\"order_abc123.pdf\","
               "\"caption\":\"Your order confirmation (PDF)\"}")),
       "document");
    ok(valid(B("\"type\":\"audio\",\"audio\":{\"id\":\"1013859600285441\","
               "\"voice\":true}")), "audio, voice");
    ok(valid(B("\"type\":\"sticker\",\"sticker\":{\"id\":"
               "\"798882015472548\"}")), "sticker");
    ok(valid(B("\"type\":\"image\",\"image\":{\"link\":"
               "\"https://example.com/succulent.png\"}")), "image by link");

    ok(valid(B("\"type\":\"location\",\"location\":{\"latitude\":"
               "\"37.44216251868683\",\"longitude\":\"-122.16153582049394\","
               "\"name\":\"Philz Coffee\",\"address\":\"101 Forest Ave, "
               "Palo Alto, CA 94301\"}")), "location, strings");
    ok(valid(B("\"type\":\"location\",\"location\":{\"latitude\":-90,"
               "\"longitude\":180.0}")), "location, numbers at the limits");

    ok(valid(B("\"type\":\"contacts\",\"contacts\":[{"
               "\"addresses\":[{\"street\":\"1 Lucky Shrimp Way\","
               "\"city\":\"Menlo Park\",\"state\":\"CA\",\"zip\":\"94025\","
               "\"country\":\"United States\",\"country_code\":\"US\","
               "\"type\":\"WORK\"}],"
               "\"birthday\":\"1999-01-23\","
               "\"emails\":[{\"email\":\"bjohnson@luckyshrimp.com\","
               "\"type\":\"WORK\"}],"
               "\"name\":{\"formatted_name\":\"Barbara J. Johnson\","
               "\"first_name\":\"Barbara\",\"last_name\":\"Johnson\","
               "\"middle_name\":\"Joana\",\"suffix\":\"Esq.\","
               "\"prefix\":\"Dr.\"},"
               "\"org\":{\"company\":\"Lucky Shrimp\",\"department\":"
               "\"Legal\",\"title\":\"Lead Counsel\"},"
               "\"phones\":[{\"phone\":\"+16505559999\",\"type\":\"HOME\"},"
               "{\"phone\":\"+19175559999\",\"type\":\"WORK\","
               "\"wa_id\":\"19175559999\"}],"
               "\"urls\":[{\"url\":\"https://www.luckyshrimp.com\","
               "\"type\":\"WORK\"}]}]")), "contacts");

    ok(valid(B("\"type\":\"reaction\",\"reaction\":{\"message_id\":"
               "\"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"
               "\",\"emoji\":\"\\uD83D\\uDE00\"}")), "reaction, escaped");
    ok(valid(B("\"type\":\"reaction\",\"reaction\":{\"message_id\":"
               "\"wamid.HBgL\",\"emoji\":\"\"}")), "reaction removed");

    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"button\",\"header\":{\"type\":\"image\",\"image\":{\"id\":"
               "\"2762702990552401\"}},\"body\":{\"text\":\"Hi Pablo! Your "
               "gardening workshop is scheduled for 9am tomorrow. Use the "
               "buttons if you need to reschedule. Thank you!\"},"
               "\"footer\":{\"text\":\"Lucky Shrimp: Your gateway to "
               "succulents!\"},\"action\":{\"buttons\":["
               BUTTON("change-button", "Change") ","
               BUTTON("cancel-button", "Cancel") "]}}")),
       "interactive reply buttons");

    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"list\",\"header\":{\"type\":\"text\",\"text\":\"Choose "
               "Shipping Option\"},\"body\":{\"text\":\"Which shipping "
               "option do you prefer?\"},\"footer\":{\"text\":\"Lucky Shrimp "
               "Shipping\"},\"action\":{\"button\":\"Shipping Options\","
               "\"sections\":[{\"title\":\"I want it ASAP!\",\"rows\":["
               "{\"id\":\"priority_express\",\"title\":\"Priority Mail "
               "Express\",\"description\":\"Next Day to 2 Days\"},"
               "{\"id\":\"priority_mail\",\"title\":\"Priority Mail\","
               "\"description\":\"1-3 Days\"}]},{\"title\":\"I can wait a "
               "bit\",\"rows\":[{\"id\":\"usps_ground_advantage\","
               "\"title\":\"USPS Ground Advantage\",\"description\":"
               "\"2-5 Days\"}]}]}}")), "interactive list");

    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"cta_url\",\"header\":{\"type\":\"image\",\"image\":{"
               "\"link\":\"https://www.luckyshrimp.com/tour.png\"}},"
               "\"body\":{\"text\":\"Tap the button below to see available "
               "dates.\"},\"footer\":{\"text\":\"Dates subject to change.\"},"
               "\"action\":{\"name\":\"cta_url\",\"parameters\":{"
               "\"display_text\":\"See Dates\",\"url\":"
               "\"https://www.luckyshrimp.com/tour/?ref=wa\"}}}")),
       "interactive CTA URL");

    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"flow\",\"header\":{\"type\":\"text\",\"text\":\"Flow "
               "message header\"},\"body\":{\"text\":\"Flow message body\"},"
               "\"footer\":{\"text\":\"Flow message footer\"},\"action\":{"
               "\"name\":\"flow\",\"parameters\":{\"flow_message_version\":"
               "\"3\",\"flow_token\":\"AQAAAAACS5FpgQ_cAAAAAD0QI3s.\","
               "\"flow_id\":\"1\",\"flow_cta\":\"Book!\",\"flow_action\":"
               "\"navigate\",\"flow_action_payload\":{\"screen\":"
               "\"<SCREEN_NAME>\",\"data\":{\"product_name\":\"name\","
               "\"product_description\":\"description\",\"product_price\":"
               "100}}}}}")), "interactive flow");

    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"location_request_message\",\"body\":{\"text\":\"Let us "
               "start with your pickup. You can either manually *enter an "
               "address* or *share your current location*.\"},\"action\":{"
               "\"name\":\"send_location\"}}")), "location request");

    ok(valid(B("\"type\":\"template\",\"template\":{\"name\":"
               "\"TEMPLATE_NAME\",\"language\":{\"policy\":\"deterministic\","
               "\"code\":\"en_US\"},\"components\":["
               "{\"type\":\"header\",\"parameters\":[{\"type\":\"image\","
               "\"image\":{\"link\":\"https://example.com/header.png\"}}]},"
               "{\"type\":\"body\",\"parameters\":["
               "{\"type\":\"text\",\"text\":\"TEXT\"},"
               "{\"type\":\"currency\",\"currency\":{\"fallback_value\":"
               "\"$100.99\",\"code\":\"USD\",\"amount_1000\":100990}},"
               "{\"type\":\"date_time\",\"date_time\":{\"fallback_value\":"
               "\"February 25, 1977\"}}]},"
               "{\"type\":\"button\",\"sub_type\":\"quick_reply\","
               "\"index\":\"0\",\"parameters\":[{\"type\":\"payload\","
               "\"payload\":\"PAYLOAD\"}]}]}")), "template");
    ok(strcmp(req.type, "template") == 0 && req.free_form == 0,
       "template: not free-form");

    ok(valid(B("\"type\":\"template\",\"template\":{\"name\":"
               "\"summer_succulents\",\"language\":{\"code\":\"en_US\"},"
               "\"components\":[{\"type\":\"body\",\"parameters\":["
               "{\"type\":\"text\",\"text\":\"Pablo\"}]},"
               "{\"type\":\"carousel\",\"cards\":["
               "{\"card_index\":0,\"components\":["
               "{\"type\":\"header\",\"parameters\":[{\"type\":\"image\","
               "\"image\":{\"id\":\"1558081531584829\"}}]},"
               "{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
               "\"text\":\"10OFF\"}]},"
               "{\"type\":\"button\",\"sub_type\":\"quick_reply\","
               "\"index\":\"0\",\"parameters\":[{\"type\":\"payload\","
               "\"payload\":\"more-aloes\"}]},"
               "{\"type\":\"button\",\"sub_type\":\"url\",\"index\":\"1\","
               "\"parameters\":[{\"type\":\"text\",\"text\":\"blue-elf\"}]}]},"
               "{\"card_index\":1,\"components\":["
               "{\"type\":\"header\",\"parameters\":[{\"type\":\"image\","
               "\"image\":{\"id\":\"861236878885705\"}}]},"
               "{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
               "\"text\":\"15OFF\"}]},"
               "{\"type\":\"button\",\"sub_type\":\"quick_reply\","
               "\"index\":\"0\",\"parameters\":[{\"type\":\"payload\","
               "\"payload\":\"more-echeverias\"}]},"
               "{\"type\":\"button\",\"sub_type\":\"url\",\"index\":\"1\","
               "\"parameters\":[{\"type\":\"text\","
               "\"text\":\"black-prince\"}]}]}]}]}")),
       "template: media card carousel");
    ok(valid(B("\"type\":\"template\",\"template\":{\"name\":"
               "\"limited_time_offer_caribbean_pkg_2023\",\"language\":{"
               "\"code\":\"en_US\"},\"components\":["
               "{\"type\":\"header\",\"parameters\":[{\"type\":\"image\","
               "\"image\":{\"id\":\"1602186516975000\"}}]},"
               "{\"type\":\"body\",\"parameters\":["
               "{\"type\":\"text\",\"text\":\"Pablo\"},"
               "{\"type\":\"text\",\"text\":\"CARIBE25\"}]},"
               "{\"type\":\"limited_time_offer\",\"parameters\":[{\"type\":"
               "\"limited_time_offer\",\"limited_time_offer\":{"
               "\"expiration_time_ms\":1209600000}}]},"
               "{\"type\":\"button\",\"sub_type\":\"copy_code\",\"index\":0,"
               "\"parameters\":[{\"type\":\"coupon_code\","
               "\"coupon_code\":\"CARIBE25\"}]},"
               "{\"type\":\"button\",\"sub_type\":\"url\",\"index\":1,"
               "\"parameters\":[{\"type\":\"text\",\"text\":\"n3mtql\"}]}"
               "]}")),
       "template: limited-time offer");

    ok(valid(B("\"type\":\"template\",\"template\":{\"name\":"
               "\"carousel_template_product_cards_v1\",\"language\":{"
               "\"code\":\"en_US\"},\"components\":["
               "{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
               "\"text\":\"Pablo\"}]},"
               "{\"type\":\"carousel\",\"cards\":["
               "{\"card_index\":0,\"components\":[{\"type\":\"header\","
               "\"parameters\":[{\"type\":\"product\",\"product\":{"
               "\"product_retailer_id\":\"vrpj01fvwp\","
               "\"catalog_id\":\"194836987003835\"}}]}]},"
               "{\"card_index\":1,\"components\":[{\"type\":\"header\","
               "\"parameters\":[{\"type\":\"product\",\"product\":{"
               "\"product_retailer_id\":\"va2l5ioeat\","
               "\"catalog_id\":\"194836987003835\"}}]}]},"
               "{\"card_index\":2,\"components\":[{\"type\":\"header\","
               "\"parameters\":[{\"type\":\"product\",\"product\":{"
               "\"product_retailer_id\":\"sqpjv0mgde\","
               "\"catalog_id\":\"194836987003835\"}}]}]}]}]}")),
       "template: product card carousel");
    ok(valid(B("\"type\":\"template\",\"template\":{\"name\":"
               "\"spm_template_named_params\",\"language\":{\"code\":"
               "\"en_US\"},\"components\":["
               "{\"type\":\"header\",\"parameters\":[{\"type\":"
               "\"product\",\"product\":{\"product_retailer_id\":"
               "\"nqryix03ez\",\"catalog_id\":\"194836987003835\"}}]},"
               "{\"type\":\"body\",\"parameters\":["
               "{\"type\":\"text\",\"parameter_name\":\"code\","
               "\"text\":\"25OFF\"},"
               "{\"type\":\"text\",\"parameter_name\":\"percent\","
               "\"text\":\"25%\"}]}]}")),
       "template: single product");

    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"product\",\"body\":{\"text\":\"BODY_TEXT\"},"
               "\"footer\":{\"text\":\"FOOTER_TEXT\"},\"action\":{"
               "\"catalog_id\":\"CATALOG_ID\",\"product_retailer_id\":"
               "\"ID_TEST_ITEM_1\"}}")), "single product");
    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"product_list\",\"header\":{\"type\":\"text\","
               "\"text\":\"HEADER_CONTENT\"},\"body\":{\"text\":"
               "\"BODY_CONTENT\"},\"footer\":{\"text\":\"FOOTER_CONTENT\"},"
               "\"action\":{\"catalog_id\":\"CATALOG_ID\",\"sections\":["
               "{\"title\":\"SECTION_TITLE\",\"product_items\":["
               "{\"product_retailer_id\":\"PRODUCT-SKU\"},"
               "{\"product_retailer_id\":\"PRODUCT-SKU\"}]},"
               "{\"title\":\"SECTION_TITLE\",\"product_items\":["
               "{\"product_retailer_id\":\"PRODUCT-SKU\"},"
               "{\"product_retailer_id\":\"PRODUCT-SKU\"}]}]}}")),
       "multi-product");
    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"catalog_message\",\"body\":{\"text\":\"Hello! Thanks "
               "for your interest. Ordering is easy. Just visit our catalog "
               "and add items to purchase.\"},\"action\":{\"name\":"
               "\"catalog_message\",\"parameters\":{"
               "\"thumbnail_product_retailer_id\":\"2lc20305pt\"}},"
               "\"footer\":{\"text\":\"Best grocery deals on WhatsApp!\"}}")),
       "catalog message");
    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"carousel\",\"body\":{\"text\":\"Of course! Here are "
               "three of our latest arrivals, each under $25:\"},"
               "\"action\":{\"cards\":["
               "{\"card_index\":0,\"type\":\"cta_url\",\"header\":{"
               "\"type\":\"image\",\"image\":{\"link\":"
               "\"https://www.luckyshrub.com/assets/blue-echeveria.jpeg\"}},"
               "\"body\":{\"text\":\"*Blue Echeveria*\\n\\nA "
               "rosette-shaped succulent with powdery blue leaves, perfect "
               "for brightening up any space.\"},\"action\":{\"name\":"
               "\"cta_url\",\"parameters\":{\"display_text\":\"Buy now\","
               "\"url\":\"https://shop.luckyshrub.com/latest/"
               "blue-echeveria\"}}},"
               "{\"card_index\":1,\"type\":\"cta_url\",\"header\":{"
               "\"type\":\"image\",\"image\":{\"link\":"
               "\"https://www.luckyshrub.com/assets/zebra-haworthia.jpeg\"}},"
               "\"body\":{\"text\":\"*Zebra Haworthia*\\n\\nStriking "
               "white stripes on deep green leaves give this compact "
               "succulent a bold, modern look.\"},\"action\":{\"name\":"
               "\"cta_url\",\"parameters\":{\"display_text\":\"Buy now\","
               "\"url\":\"https://shop.luckyshrub.com/latest/"
               "zebra-haworthia\"}}}]}}")),
       "media carousel, URL buttons");
    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"carousel\",\"body\":{\"text\":\"Of course! Here are "
               "three of our latest arrivals, each under $25:\"},"
               "\"action\":{\"cards\":["
               "{\"card_index\":0,\"type\":\"cta_url\",\"header\":{"
               "\"type\":\"image\",\"image\":{\"link\":"
               "\"https://www.luckyshrub.com/assets/blue-echeveria.jpeg\"}},"
               "\"action\":{\"buttons\":["
               "{\"type\":\"quick_reply\",\"quick_reply\":{\"id\":"
               "\"learn-blue-echeveria\",\"title\":\"Learn more\"}},"
               "{\"type\":\"quick_reply\",\"quick_reply\":{\"id\":"
               "\"fav-blue-echeveria\",\"title\":\"Add to favorites\"}}]}},"
               "{\"card_index\":1,\"type\":\"cta_url\",\"header\":{"
               "\"type\":\"image\",\"image\":{\"link\":"
               "\"https://www.luckyshrub.com/assets/zebra-haworthia.jpeg\"}},"
               "\"action\":{\"buttons\":["
               "{\"type\":\"quick_reply\",\"quick_reply\":{\"id\":"
               "\"learn-zebra-haworthia\",\"title\":\"Learn more\"}},"
               "{\"type\":\"quick_reply\",\"quick_reply\":{\"id\":"
               "\"fav-zebra-haworthia\",\"title\":\"Add to favorites\"}}"
               "]}}]}}")),
       "media carousel, quick replies");
    ok(valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
               "\"carousel\",\"body\":{\"text\":\"Check out our featured "
               "products!\"},\"action\":{\"cards\":["
               "{\"card_index\":0,\"type\":\"product\",\"action\":{"
               "\"product_retailer_id\":\"abc123xyz\",\"catalog_id\":"
               "\"123456789\"}},"
               "{\"card_index\":1,\"type\":\"product\",\"action\":{"
               "\"product_retailer_id\":\"def456uvw\",\"catalog_id\":"
               "\"123456789\"}}]}}")),
       "product carousel");

    ok(valid(B("\"context\":{\"message_id\":\"wamid.HBgL\"}," TEXT_OK)),
       "reply to a message");
}


static void
test_our_members(void)
{
    ok(valid("{\"phone_number_id\":\"1\",\"to\":\"+16505551234\","
             "\"text\":{\"body\":\"hi\"}}"),
       "minimal: type text by default, no messaging_product");
    ok(strcmp(req.type, "text") == 0, "type defaults to text");

    ok(valid(B("\"idempotency_key\":\"order-42/try:1\",\"priority\":"
               "\"bulk\"," TEXT_OK)), "idempotency_key and priority");
    ok(strcmp(req.idempotency_key, "order-42/try:1") == 0 && req.bulk == 1,
       "idempotency_key and bulk returned");
    ok(valid(B("\"priority\":\"normal\"," TEXT_OK)) && req.bulk == 0,
       "priority normal");

    ok(refused(B("\"priority\":\"urgent\"," TEXT_OK), "priority",
               "must be one of: normal, bulk"), "priority unknown");
    ok(refused(B("\"idempotency_key\":\"\"," TEXT_OK), "idempotency_key",
               "1 to 128 printable ASCII"), "idempotency_key empty");
    ok(refused(B("\"idempotency_key\":\"a b\"," TEXT_OK), "idempotency_key",
               "without spaces"), "idempotency_key with a space");
    ok(refused(B("\"idempotency_key\":\"caf\xc3\xa9\"," TEXT_OK),
               "idempotency_key", "printable ASCII"),
       "idempotency_key not ASCII");
    ok(refused(B("\"idempotency_key\":42," TEXT_OK), "idempotency_key",
               "must be a string"), "idempotency_key a number");
    ok(repeat_valid(B("\"idempotency_key\":\"@\"," TEXT_OK), "k", 128)
       && strlen(req.idempotency_key) == 128, "idempotency_key of 128");
    ok(repeat_refused(B("\"idempotency_key\":\"@\"," TEXT_OK), "k", 129,
                      "idempotency_key", "1 to 128"),
       "idempotency_key of 129");

    ok(refused("{\"to\":\"+16505551234\"," TEXT_OK "}", "phone_number_id",
               "is required"), "phone_number_id missing");
    ok(refused("{\"phone_number_id\":\"12a\",\"to\":\"+16505551234\","
               TEXT_OK "}", "phone_number_id", "1 to 32 digits"),
       "phone_number_id not digits");
    ok(refused("{\"phone_number_id\":106540352242922,\"to\":"
               "\"+16505551234\"," TEXT_OK "}", "phone_number_id",
               "must be a string"), "phone_number_id a number");
    ok(refused("{\"phone_number_id\":\"\",\"to\":\"+16505551234\","
               TEXT_OK "}", "phone_number_id", "1 to 32 digits"),
       "phone_number_id empty");
    ok(refused("{\"phone_number_id\":\"123456789012345678901234567890123\","
               "\"to\":\"+16505551234\"," TEXT_OK "}", "phone_number_id",
               "1 to 32 digits"), "phone_number_id of 33 digits");
    ok(valid("{\"phone_number_id\":\"12345678901234567890123456789012\","
             "\"to\":\"+16505551234\"," TEXT_OK "}"),
       "phone_number_id of 32 digits");

    ok(refused(B("\"messaging_product\":\"sms\"," TEXT_OK),
               "messaging_product", "is given twice"),
       "messaging_product twice");
    ok(refused("{\"messaging_product\":\"sms\",\"phone_number_id\":\"1\","
               "\"to\":\"+16505551234\"," TEXT_OK "}", "messaging_product",
               "must be whatsapp"), "messaging_product not whatsapp");
    ok(refused("{\"recipient_type\":\"group\",\"phone_number_id\":\"1\","
               "\"to\":\"+16505551234\"," TEXT_OK "}", "recipient_type",
               "must be individual"), "recipient_type group");

    ok(refused(B("\"biz_opaque_callback_data\":\"x\"," TEXT_OK),
               "biz_opaque_callback_data", "is set by the gateway"),
       "biz_opaque_callback_data refused");
    ok(refused(B("\"txt\":{\"body\":\"hi\"}"), "txt",
               "is not a known field"), "unknown top-level member");
    ok(refused(B("\"status\":\"read\",\"message_id\":\"wamid.x\""),
               "status", "is not a known field"), "a read receipt body");
}


static void
test_to(void)
{
    ok(valid("{\"phone_number_id\":\"1\",\"to\":\"+1 (650) 555-1234\","
             TEXT_OK "}") && strcmp(req.to, "+16505551234") == 0,
       "to: spaces, parentheses, dash removed");
    ok(valid("{\"phone_number_id\":\"1\",\"to\":\"+44 20.7946.0958\","
             TEXT_OK "}") && strcmp(req.to, "+442079460958") == 0,
       "to: dots removed");
    ok(valid("{\"phone_number_id\":\"1\",\"to\":\"+55 (11) 98765-4321\","
             TEXT_OK "}") && strcmp(req.to, "+5511987654321") == 0,
       "to: Brazilian mobile");
    ok(valid("{\"phone_number_id\":\"1\",\"to\":\" +12345678\","
             TEXT_OK "}") && strcmp(req.to, "+12345678") == 0,
       "to: 8 digits, leading space");
    ok(valid("{\"phone_number_id\":\"1\",\"to\":\"+123456789012345\","
             TEXT_OK "}") && strcmp(req.to, "+123456789012345") == 0,
       "to: 15 digits");

    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"16505551234\","
               TEXT_OK "}", "to", "Meta prepends the business's own "
               "country code"), "to without + (the pitfall)");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"(650) 555-1234\","
               TEXT_OK "}", "to", "must start with +"),
       "to: national format");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+1234567\","
               TEXT_OK "}", "to", "8 to 15 digits"), "to: 7 digits");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+1234567890123456\","
               TEXT_OK "}", "to", "8 to 15 digits"), "to: 16 digits");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+0441234567\","
               TEXT_OK "}", "to", "country code"), "to: starts with 0");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+1650555123a\","
               TEXT_OK "}", "to", "E.164"), "to: a letter");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"++16505551234\","
               TEXT_OK "}", "to", "E.164"), "to: two +");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"1+6505551234\","
               TEXT_OK "}", "to", "E.164"), "to: + inside");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+\","
               TEXT_OK "}", "to", "8 to 15 digits"), "to: + alone");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":16505551234,"
               TEXT_OK "}", "to", "must be a string"), "to: a number");
    ok(refused("{\"phone_number_id\":\"1\"," TEXT_OK "}", "to",
               "is required (or recipient"), "to missing");
    ok(req.to[0] == '\0' && req.phone_number_id[0] == '\0',
       "refused: request zeroed");

    ok(valid("{\"phone_number_id\":\"1\",\"recipient\":"
             "\"US.13491208655302741918\"," TEXT_OK "}")
       && strcmp(req.to, "US.13491208655302741918") == 0,
       "recipient: a business-scoped user id");
    ok(repeat_valid("{\"phone_number_id\":\"1\",\"recipient\":\"BR.@\","
                    TEXT_OK "}", "a", 128) && strlen(req.to) == 131,
       "recipient: 128 characters after the dot");
    ok(repeat_refused("{\"phone_number_id\":\"1\",\"recipient\":\"BR.@\","
                      TEXT_OK "}", "a", 129, "recipient", "1 to 128"),
       "recipient: 129 characters");
    ok(refused("{\"phone_number_id\":\"1\",\"recipient\":\"US.\","
               TEXT_OK "}", "recipient", "business-scoped user id"),
       "recipient: nothing after the dot");
    ok(refused("{\"phone_number_id\":\"1\",\"recipient\":\"us.1349\","
               TEXT_OK "}", "recipient", "business-scoped user id"),
       "recipient: lower-case country");
    ok(refused("{\"phone_number_id\":\"1\",\"recipient\":\"US\","
               TEXT_OK "}", "recipient", "business-scoped user id"),
       "recipient: a country alone");
    ok(refused("{\"phone_number_id\":\"1\",\"recipient\":\"U\","
               TEXT_OK "}", "recipient", "business-scoped user id"),
       "recipient: one letter");
    ok(refused("{\"phone_number_id\":\"1\",\"recipient\":\"US.13-49\","
               TEXT_OK "}", "recipient", "business-scoped user id"),
       "recipient: a dash");
    ok(refused("{\"phone_number_id\":\"1\",\"recipient\":1349,"
               TEXT_OK "}", "recipient", "business-scoped user id"),
       "recipient: a number");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+16505551234\","
               "\"recipient\":\"US.1349\"," TEXT_OK "}", "recipient",
               "not both"), "to and recipient");
}


static void
test_json(void)
{
    ok(refused("", "", "is empty"), "empty body");
    ok(refused("{", "", "is not valid JSON"), "not JSON: truncated");
    ok(refused("hello", "", "is not valid JSON"), "not JSON: a word");
    ok(refused("[" B(TEXT_OK) "]", "", "must be a JSON object"),
       "not an object: an array");
    ok(refused("\"text\"", "", "must be a JSON object"),
       "not an object: a string");
    ok(refused("42", "", "must be a JSON object"), "not an object: 42");
    ok(req.malformed == 1, "not an object: malformed (the API's "
                           "malformed_json)");
    ok(refused("{", "", "is not valid JSON") && req.malformed == 1,
       "not JSON: malformed");
    ok(refused(B("\"type\":\"text\""), "text", "is required")
       && req.malformed == 0, "a field missing: not malformed");
    ok(refused(B(TEXT_OK) "x", "", "trailing garbage"), "trailing garbage");
    ok(refused(B(TEXT_OK) B(TEXT_OK), "", "trailing garbage"),
       "two objects");
    ok(valid(B(TEXT_OK) " \r\n\t"), "trailing whitespace");
    ok(refused(B(TEXT_OK) " // note", "", "comments"), "a comment");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"a\\u0000b\"}"),
               "", "U+0000"), "\\u0000 in a string");
    ok(validate(B(TEXT_OK) "\0", sizeof(B(TEXT_OK))) == -1
       && strcmp(req.field, "") == 0 && strstr(req.message, "NUL") != NULL,
       "a NUL byte after the object");
    ok(validate(B(TEXT_OK), sizeof(B(TEXT_OK)) - 2) == -1
       && strstr(req.message, "premature EOF") != NULL,
       "length honoured: the body is not read to its NUL");

    ok(repeat_refused(B("\"type\":\"text\",\"text\":{\"body\":\"x\"},"
                        "\"context\":@"), "[", 64, "", "deeper than 64"),
       "65 levels refused before parsing");
    ok(repeat_refused(B("\"type\":\"text\",\"text\":{\"body\":\"x\"},"
                        "\"context\":@"), "[", 63, "", "is not valid JSON"),
       "64 levels parsed (unbalanced)");

    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"\xff\"}"),
               "", "is not valid JSON"), "a byte never in UTF-8");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"\xc0\xaf\"}"),
               "text.body", "is not valid UTF-8"), "an overlong form");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"\xed\xa0\x80\"}"),
               "text.body", "is not valid UTF-8"), "a raw surrogate");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"\\udc00\"}"),
               "text.body", "is not valid UTF-8"), "a lone low surrogate");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"\xf4\x90\x80\x80\"}"),
               "text.body", "is not valid UTF-8"), "above U+10FFFF");

    ok(refused(B("\"to\":\"+16505551235\"," TEXT_OK), "to",
               "is given twice"), "to given twice");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"a\",\"body\":\"b\"}"),
               "text.body", "is given twice"), "text.body given twice");
    ok(refused(FLOW(",\"flow_id\":\"1\",\"flow_action_payload\":{"
                    "\"screen\":\"S\",\"data\":{\"k0\":0,\"k1\":1,\"k2\":2,"
                    "\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,"
                    "\"k3\":9}}"),
               "interactive.action.parameters.flow_action_payload.data.k3",
               "is given twice"), "a name twice in a large free object");

    ok(refused(B("\"te\\\"xt\xc3\xa9\":1"), "te?xt??",
               "is not a known field"), "field names made printable");
}


static void
test_types(void)
{
    ok(refused(B("\"type\":\"txt\",\"text\":{\"body\":\"hi\"}"), "type",
               "must be one of: text, image, video, audio, document, "
               "sticker, location, contacts, reaction, template, "
               "interactive"), "type unknown");
    ok(refused(B("\"type\":1,\"text\":{\"body\":\"hi\"}"), "type",
               "must be one of"), "type a number");
    ok(refused(B("\"type\":\"image\""), "image",
               "is required with type image"), "type object missing");
    ok(refused(B("\"type\":\"image\",\"image\":{\"id\":\"1\"},"
                 "\"text\":{\"body\":\"hi\"}"), "text",
               "is not allowed with type image"), "a second type object");
    ok(refused(B("\"image\":{\"id\":\"1\"}"), "image",
               "needs type image: type defaults to text"),
       "type absent with an image");
    ok(refused("{\"phone_number_id\":\"1\",\"to\":\"+16505551234\"}",
               "text", "is required: type defaults to text"),
       "nothing to send");
}


static void
test_context(void)
{
    ok(refused(B("\"context\":\"wamid.x\"," TEXT_OK), "context",
               "must be an object"), "context a string");
    ok(refused(B("\"context\":{}," TEXT_OK), "context.message_id",
               "is required"), "context.message_id missing");
    ok(refused(B("\"context\":{\"message_id\":\"\"}," TEXT_OK),
               "context.message_id", "must not be empty"),
       "context.message_id empty");
    ok(refused(B("\"context\":{\"message_id\":\"x\",\"from\":\"1\"},"
                 TEXT_OK), "context.from", "is not a known field"),
       "context unknown member");
    ok(repeat_valid(B("\"context\":{\"message_id\":\"@\"}," TEXT_OK),
                    "w", 256), "context.message_id of 256");
    ok(repeat_refused(B("\"context\":{\"message_id\":\"@\"}," TEXT_OK),
                      "w", 257, "context.message_id",
                      "is longer than 256 characters"),
       "context.message_id of 257");
    ok(refused(B("\"context\":{\"message_id\":\"wamid.x\"},"
                 "\"type\":\"reaction\",\"reaction\":{\"message_id\":"
                 "\"wamid.x\",\"emoji\":\"\"}"), "context",
               "is not allowed with a reaction"), "context with reaction");
}


static void
test_text(void)
{
    const char  *body = B("\"type\":\"text\",\"text\":{\"body\":\"@\"}");

    ok(refused(B("\"type\":\"text\",\"text\":{}"), "text.body",
               "is required"), "text.body missing");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"\"}"), "text.body",
               "must not be empty"), "text.body empty");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":42}"), "text.body",
               "must be a string"), "text.body a number");
    ok(refused(B("\"type\":\"text\",\"text\":\"hi\""), "text",
               "must be an object"), "text a string");
    ok(refused(B("\"type\":\"text\",\"text\":{\"body\":\"hi\","
                 "\"preview_url\":\"yes\"}"), "text.preview_url",
               "must be true or false"), "preview_url a string");
    ok(refused(B("\"type\":\"text\",\"text\":{\"bdy\":\"hi\"}"), "text.bdy",
               "is not a known field"), "text.bdy: a typo");

    ok(repeat_valid(body, EMOJI, 4096), "4096 emoji accepted");
    ok(repeat_refused(body, EMOJI, 4097, "text.body",
                      "is longer than 4096 characters"),
       "4097 emoji refused");
    ok(repeat_valid(body, "\xc3\xa9", 4096), "4096 e-acute (8192 bytes)");
    ok(repeat_refused(body, "a", 4097, "text.body", "longer than 4096"),
       "4097 ASCII characters");
}


static void
test_media(void)
{
    ok(refused(B("\"type\":\"image\",\"image\":{\"id\":\"1\",\"link\":"
                 "\"https://example.com/a.png\"}"), "image",
               "must have id or link, not both"), "id and link");
    ok(refused(B("\"type\":\"image\",\"image\":{\"caption\":\"x\"}"), "image",
               "needs id"), "neither id nor link");
    ok(refused(B("\"type\":\"image\",\"image\":{\"id\":\"\"}"), "image.id",
               "must not be empty"), "id empty");
    ok(refused(B("\"type\":\"image\",\"image\":{\"id\":1479537139650973}"),
               "image.id", "must be a string"), "id a number");
    ok(refused(B("\"type\":\"image\",\"image\":{\"link\":"
                 "\"http://example.com/a.png\"}"), "image.link",
               "plain http is refused"), "http link");
    ok(refused(B("\"type\":\"image\",\"image\":{\"link\":\"example.com/a\"}"),
               "image.link", "must be an https:// URL"), "link no scheme");
    ok(refused(B("\"type\":\"image\",\"image\":{\"link\":\"https://\"}"),
               "image.link", "must be an https:// URL"), "link no host");
    ok(refused(B("\"type\":\"image\",\"image\":{\"link\":"
                 "\"https://example.com/a b.png\"}"), "image.link",
               "must not have spaces"), "link with a space");
    ok(valid(B("\"type\":\"video\",\"video\":{\"link\":"
               "\"HTTPS://example.com/v.mp4\"}")), "link scheme in capitals");

    ok(refused(B("\"type\":\"audio\",\"audio\":{\"id\":\"1\",\"caption\":"
                 "\"x\"}"), "audio.caption", "is not allowed for audio"),
       "audio caption");
    ok(refused(B("\"type\":\"sticker\",\"sticker\":{\"id\":\"1\","
                 "\"caption\":\"x\"}"), "sticker.caption",
               "is not allowed for a sticker"), "sticker caption");
    ok(refused(B("\"type\":\"image\",\"image\":{\"id\":\"1\",\"filename\":"
                 "\"a.png\"}"), "image.filename",
               "is not allowed for an image message"), "image filename");
    ok(refused(B("\"type\":\"video\",\"video\":{\"id\":\"1\",\"voice\":"
                 "true}"), "video.voice", "is not allowed"), "video voice");
    ok(refused(B("\"type\":\"audio\",\"audio\":{\"id\":\"1\",\"voice\":1}"),
               "audio.voice", "must be true or false"), "voice a number");
    ok(refused(B("\"type\":\"image\",\"image\":{\"id\":\"1\",\"captoin\":"
                 "\"x\"}"), "image.captoin", "is not a known field"),
       "a misspelt caption");

    ok(repeat_valid(B("\"type\":\"image\",\"image\":{\"id\":\"1\","
                      "\"caption\":\"@\"}"), EMOJI, 1024), "caption of 1024");
    ok(repeat_refused(B("\"type\":\"document\",\"document\":{\"id\":\"1\","
                        "\"caption\":\"@\"}"), "c", 1025, "document.caption",
                      "is longer than 1024 characters"), "caption of 1025");
    ok(repeat_valid(B("\"type\":\"document\",\"document\":{\"id\":\"1\","
                      "\"filename\":\"@\"}"), "f", 240), "filename of 240");
    ok(repeat_refused(B("\"type\":\"document\",\"document\":{\"id\":\"1\","
                        "\"filename\":\"@\"}"), "f", 241,
                      "document.filename", "is longer than 240 characters"),
       "filename of 241");
}


static void
test_location(void)
{
    ok(refused(B("\"type\":\"location\",\"location\":{\"latitude\":91,"
                 "\"longitude\":0}"), "location.latitude",
               "must be a number from -90 to 90"), "latitude 91");
    ok(refused(B("\"type\":\"location\",\"location\":{\"latitude\":0,"
                 "\"longitude\":\"-180.5\"}"), "location.longitude",
               "from -180 to 180"), "longitude -180.5");
    ok(refused(B("\"type\":\"location\",\"location\":{\"latitude\":\"abc\","
                 "\"longitude\":0}"), "location.latitude",
               "must be a number"), "latitude not numeric");
    ok(refused(B("\"type\":\"location\",\"location\":{\"latitude\":\"1e1\","
                 "\"longitude\":0}"), "location.latitude",
               "must be a number"), "latitude string with an exponent");
    ok(refused(B("\"type\":\"location\",\"location\":{\"latitude\":true,"
                 "\"longitude\":0}"), "location.latitude",
               "must be a number"), "latitude true");
    ok(refused(B("\"type\":\"location\",\"location\":{\"longitude\":0}"),
               "location.latitude", "is required"), "latitude missing");
    ok(refused(B("\"type\":\"location\",\"location\":{\"latitude\":1,"
                 "\"longitude\":2,\"name\":3}"), "location.name",
               "must be a string"), "name a number");
}


static void
test_contacts(void)
{
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[]"), "contacts",
               "must not be empty"), "contacts empty");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":{}"), "contacts",
               "must be an array"), "contacts an object");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"phones\":[]}]"),
               "contacts[0].name", "is required"), "contact without name");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"first_name\":\"B\"}}]"), "contacts[0].name.formatted_name",
               "is required"), "name without formatted_name");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"formatted_name\":\"B\"},\"phones\":{\"phone\":\"1\"}}]"),
               "contacts[0].phones", "must be an array"),
       "phones an object");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"formatted_name\":\"A\"}},{\"name\":{\"formatted_name\":"
                 "\"B\"},\"phones\":[{\"phone\":\"1\",\"kind\":\"x\"}]}]"),
               "contacts[1].phones[0].kind", "is not a known field"),
       "phone with an unknown member");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"formatted_name\":\"B\"},\"emails\":[{\"email\":1}]}]"),
               "contacts[0].emails[0].email", "must be a string"),
       "email a number");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"formatted_name\":\"B\"},\"birthday\":\"23/01/1999\"}]"),
               "contacts[0].birthday", "YYYY-MM-DD"), "birthday format");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"formatted_name\":\"B\"},\"birthday\":\"1999-13-01\"}]"),
               "contacts[0].birthday", "YYYY-MM-DD"), "birthday month 13");
    ok(refused(B("\"type\":\"contacts\",\"contacts\":[{\"name\":{"
                 "\"formatted_name\":\"B\"},\"org\":[]}]"),
               "contacts[0].org", "must be an object"), "org an array");
}


static void
test_reaction(void)
{
    ok(refused(B("\"type\":\"reaction\",\"reaction\":{\"emoji\":\"x\"}"),
               "reaction.message_id", "is required"), "message_id missing");
    ok(refused(B("\"type\":\"reaction\",\"reaction\":{\"message_id\":"
                 "\"wamid.x\"}"), "reaction.emoji", "is required"),
       "emoji missing");
    ok(refused(B("\"type\":\"reaction\",\"reaction\":{\"message_id\":"
                 "\"wamid.x\",\"emoji\":128512}"), "reaction.emoji",
               "must be a string"), "emoji a number");
    ok(valid(B("\"type\":\"reaction\",\"reaction\":{\"message_id\":"
               "\"wamid.x\",\"emoji\":\"\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd\"}")),
       "emoji with a skin tone");
    ok(refused(B("\"type\":\"reaction\",\"reaction\":{\"message_id\":"
                 "\"wamid.x\",\"emoji\":\"" EMOJI EMOJI EMOJI EMOJI EMOJI
                 EMOJI EMOJI EMOJI EMOJI EMOJI EMOJI "\"}"),
               "reaction.emoji", "is longer than 10 characters"),
       "emoji of 11 code points");
}


static void
test_template(void)
{
    ok(valid(B("\"type\":\"template\",\"template\":{\"name\":"
               "\"hello_world\",\"language\":{\"code\":\"en_US\"}}")),
       "template without components");
    ok(valid(TPL("{\"type\":\"BODY\",\"parameters\":[{\"type\":\"TEXT\","
                 "\"text\":\"x\"}]},{\"type\":\"button\",\"sub_type\":"
                 "\"URL\",\"index\":1,\"parameters\":[{\"type\":\"text\","
                 "\"text\":\"order/42\"}]},{\"type\":\"button\",\"sub_type\":"
                 "\"copy_code\",\"index\":\"2\",\"parameters\":[{\"type\":"
                 "\"coupon_code\",\"coupon_code\":\"SAVE25\"}]},"
                 "{\"type\":\"button\",\"sub_type\":\"flow\",\"index\":\"3\","
                 "\"parameters\":[{\"type\":\"action\",\"action\":{"
                 "\"flow_token\":\"t\",\"flow_action_data\":{\"a\":1}}}]}")),
       "template: types in capitals, integer index, url, copy code, flow");
    ok(valid(TPL("{\"type\":\"header\",\"parameters\":[{\"type\":"
                 "\"document\",\"document\":{\"link\":"
                 "\"https://example.com/a.pdf\",\"filename\":\"a.pdf\"}}]},"
                 "{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
                 "\"parameter_name\":\"customer\",\"text\":\"Ann\"}]}")),
       "template: document header, named parameter");
    ok(valid(TPL("{\"type\":\"header\",\"parameters\":[{\"type\":"
                 "\"location\",\"location\":{\"latitude\":\"1.5\","
                 "\"longitude\":\"2\",\"name\":\"Shop\"}}]}")),
       "template: location header");

    ok(refused(B("\"type\":\"template\",\"template\":{\"language\":{"
                 "\"code\":\"en_US\"}}"), "template.name", "is required"),
       "name missing");
    ok(repeat_refused(B("\"type\":\"template\",\"template\":{\"name\":\"@\","
                        "\"language\":{\"code\":\"en\"}}"), "n", 513,
                      "template.name", "is longer than 512 characters"),
       "name of 513");
    ok(refused(B("\"type\":\"template\",\"template\":{\"name\":\"hello\"}"),
               "template.language", "is required"), "language missing");
    ok(refused(B("\"type\":\"template\",\"template\":{\"name\":\"hello\","
                 "\"language\":\"en_US\"}"), "template.language",
               "must be an object"), "language a string");
    ok(refused(B("\"type\":\"template\",\"template\":{\"name\":\"hello\","
                 "\"language\":{}}"), "template.language.code",
               "is required"), "language.code missing");
    ok(refused(B("\"type\":\"template\",\"template\":{\"name\":\"hello\","
                 "\"language\":{\"code\":\"english\"}}"),
               "template.language.code", "language code such as"),
       "language.code a word");
    ok(refused(B("\"type\":\"template\",\"template\":{\"name\":\"hello\","
                 "\"language\":{\"code\":\"en\",\"policy\":\"fallback\"}}"),
               "template.language.policy", "must be deterministic"),
       "policy fallback");
    ok(refused(B("\"type\":\"template\",\"template\":{\"name\":\"hello\","
                 "\"language\":{\"code\":\"en\"},\"components\":{}}"),
               "template.components", "must be an array"),
       "components an object");

    ok(refused(TPL("{\"type\":\"footer\"}"), "template.components[0].type",
               "must be one of: header, body, button"), "component footer");
    ok(refused(TPL("{\"type\":\"button\",\"index\":\"0\"}"),
               "template.components[0].sub_type", "is required"),
       "button without sub_type");
    ok(refused(TPL("{\"type\":\"button\",\"sub_type\":\"link\","
                   "\"index\":\"0\"}"), "template.components[0].sub_type",
               "must be one of: quick_reply, url"), "sub_type unknown");
    ok(refused(TPL("{\"type\":\"button\",\"sub_type\":\"url\"}"),
               "template.components[0].index", "is required"),
       "button without index");
    ok(refused(TPL("{\"type\":\"button\",\"sub_type\":\"url\","
                   "\"index\":\"10\"}"), "template.components[0].index",
               "must be 0 to 9"), "index \"10\"");
    ok(refused(TPL("{\"type\":\"button\",\"sub_type\":\"url\","
                   "\"index\":-1}"), "template.components[0].index",
               "must be 0 to 9"), "index -1");
    ok(refused(TPL("{\"type\":\"body\",\"sub_type\":\"url\"}"),
               "template.components[0].sub_type",
               "is only for button components"), "sub_type on a body");
    ok(refused(TPL("{\"type\":\"body\",\"index\":\"0\"}"),
               "template.components[0].index",
               "is only for button components"), "index on a body");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":\"txt\","
                   "\"txt\":\"x\"}]}"),
               "template.components[0].parameters[0].type",
               "must be one of: text, currency"), "parameter type unknown");
    ok(refused(TPL("{\"type\":\"body\"},{\"type\":\"body\",\"parameters\":"
                   "[{\"type\":\"payload\",\"payload\":\"x\"}]}"),
               "template.components[1].parameters[0].type",
               "is not allowed in a body component"), "payload in a body");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":\"text\"}]}"),
               "template.components[0].parameters[0].text", "is required"),
       "text parameter without text");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
                   "\"text\":\"\"}]}"),
               "template.components[0].parameters[0].text",
               "must not be empty"), "text parameter empty");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
                   "\"text\":\"x\",\"image\":{\"id\":\"1\"}}]}"),
               "template.components[0].parameters[0].image",
               "is not a known field"), "a second value in a parameter");
    ok(refused(TPL("{\"type\":\"header\",\"parameters\":[{\"type\":\"text\","
                   "\"text\":\"" A60 "a\"}]}"),
               "template.components[0].parameters[0].text",
               "is longer than 60 characters"), "header text of 61");
    ok(repeat_valid(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                        "\"text\",\"text\":\"@\"}]}"), "b", 32768),
       "body text of 32768");
    ok(repeat_refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                          "\"text\",\"text\":\"@\"}]}"), "b", 32769,
                      "template.components[0].parameters[0].text",
                      "is longer than 32768 characters"),
       "body text of 32769");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                   "\"currency\",\"currency\":{\"fallback_value\":\"$1\","
                   "\"code\":\"usd\",\"amount_1000\":1000}}]}"),
               "template.components[0].parameters[0].currency.code",
               "ISO 4217"), "currency code in lower case");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                   "\"currency\",\"currency\":{\"fallback_value\":\"$1\","
                   "\"code\":\"USD\",\"amount_1000\":1.5}}]}"),
               "template.components[0].parameters[0].currency.amount_1000",
               "must be an integer"), "amount_1000 with a fraction");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                   "\"currency\",\"currency\":{\"fallback_value\":\"$1\","
                   "\"code\":\"USD\",\"amount_1000\":\"1000\"}}]}"),
               "template.components[0].parameters[0].currency.amount_1000",
               "must be an integer"), "amount_1000 a string");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                   "\"date_time\",\"date_time\":{}}]}"),
               "template.components[0].parameters[0].date_time"
               ".fallback_value", "is required"), "date_time empty");
    ok(refused(TPL("{\"type\":\"header\",\"parameters\":[{\"type\":\"image\","
                   "\"image\":{\"id\":\"1\",\"caption\":\"x\"}}]}"),
               "template.components[0].parameters[0].image.caption",
               "is not allowed in a header or parameter"),
       "caption in a header parameter");
    ok(refused(TPL("{\"type\":\"header\",\"parameters\":[{\"type\":\"video\","
                   "\"video\":{\"link\":\"http://example.com/v.mp4\"}}]}"),
               "template.components[0].parameters[0].video.link",
               "https"), "http video in a header parameter");
    ok(refused(TPL("{\"type\":\"button\",\"sub_type\":\"copy_code\","
                   "\"index\":0,\"parameters\":[{\"type\":\"coupon_code\","
                   "\"coupon_code\":\"ABCDEFGHIJKLMNOP\"}]}"),
               "template.components[0].parameters[0].coupon_code",
               "is longer than 15 characters"), "coupon code of 16");
    ok(refused(TPL("{\"type\":\"button\",\"sub_type\":\"flow\","
                   "\"index\":0,\"parameters\":[{\"type\":\"action\","
                   "\"action\":[]}]}"),
               "template.components[0].parameters[0].action",
               "must be an object"), "action an array");
}


static void
test_carousel(void)
{
    ok(valid(CAROUSEL(CARD("9") "," CARD("0") "," CARD("1") "," CARD("2") ","
                      CARD("3") "," CARD("4") "," CARD("5") "," CARD("6") ","
                      CARD("7") "," CARD("8"))),
       "carousel of 10 cards, in any order");
    ok(valid(CARD_OF("{\"type\":\"HEADER\",\"parameters\":[{\"type\":"
                     "\"video\",\"video\":{\"link\":"
                     "\"https://example.com/v.mp4\"}}]},"
                     "{\"type\":\"body\",\"parameters\":[{\"type\":"
                     "\"text\",\"text\":\"x\"}]},"
                     "{\"type\":\"button\",\"sub_type\":\"URL\","
                     "\"index\":1,\"parameters\":[{\"type\":\"text\","
                     "\"text\":\"item/7\"}]}")),
       "card: video by link, body, url button");

    ok(refused(TPL("{\"type\":\"carousel\"}"),
               "template.components[0].cards", "is required"),
       "carousel without cards");
    ok(refused(CAROUSEL(""), "template.components[0].cards",
               "must not be empty"), "carousel of no card");
    ok(repeat_refused(CAROUSEL("@" CARD("9")), CARD("0") ",", 10,
                      "template.components[0].cards",
                      "has more than 10 items"), "carousel of 11 cards");
    ok(refused(TPL("{\"type\":\"carousel\",\"cards\":{}}"),
               "template.components[0].cards", "must be an array"),
       "cards an object");
    ok(refused(TPL("{\"type\":\"carousel\",\"parameters\":[],"
                   "\"cards\":[" CARD("0") "]}"),
               "template.components[0].parameters",
               "is not allowed in a carousel component"),
       "parameters on a carousel");
    ok(refused(TPL("{\"type\":\"carousel\",\"sub_type\":\"url\","
                   "\"cards\":[" CARD("0") "]}"),
               "template.components[0].sub_type",
               "is only for button components"), "sub_type on a carousel");
    ok(refused(TPL("{\"type\":\"carousel\",\"index\":0,"
                   "\"cards\":[" CARD("0") "]}"),
               "template.components[0].index",
               "is only for button components"), "index on a carousel");
    ok(refused(TPL("{\"type\":\"body\",\"cards\":[" CARD("0") "]}"),
               "template.components[0].cards",
               "is only for carousel components"), "cards on a body");

    ok(refused(CAROUSEL(CARD("0") "," CARD("1") "," CARD("0")),
               "template.components[0].cards[2].card_index",
               "is the same as another card's"), "card_index twice");
    ok(refused(CAROUSEL(CARD("10")),
               "template.components[0].cards[0].card_index",
               "must be an integer from 0 to 9"), "card_index 10");
    ok(refused(CAROUSEL(CARD("-1")),
               "template.components[0].cards[0].card_index",
               "must be an integer from 0 to 9"), "card_index -1");
    ok(refused(CAROUSEL("{\"card_index\":\"0\",\"components\":["
                        CARD_IMAGE "]}"),
               "template.components[0].cards[0].card_index",
               "must be an integer from 0 to 9"), "card_index a string");
    ok(refused(CAROUSEL(CARD("0.0")),
               "template.components[0].cards[0].card_index",
               "must be an integer from 0 to 9"), "card_index 0.0");
    ok(refused(CAROUSEL("{\"components\":[" CARD_IMAGE "]}"),
               "template.components[0].cards[0].card_index", "is required"),
       "card without card_index");
    ok(refused(CAROUSEL("[]"), "template.components[0].cards[0]",
               "must be an object"), "card an array");
    ok(refused(CAROUSEL("{\"card_index\":0,\"title\":\"x\","
                        "\"components\":[" CARD_IMAGE "]}"),
               "template.components[0].cards[0].title",
               "is not a known field"), "card with a title");
    ok(refused(CAROUSEL("{\"card_index\":0}"),
               "template.components[0].cards[0].components", "is required"),
       "card without components");

    ok(refused(CARD_OF(CARD_IMAGE ",{\"type\":\"carousel\",\"cards\":["
                       CARD("1") "]}"),
               "template.components[0].cards[0].components[1].type",
               "must be one of: header, body, button"), "carousel in a card");
    ok(refused(CARD_OF(CARD_IMAGE ",{\"type\":\"limited_time_offer\"}"),
               "template.components[0].cards[0].components[1].type",
               "must be one of: header, body, button"),
       "limited-time offer in a card");
    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"text\",\"text\":\"Aloes\"}]}"),
               "template.components[0].cards[0].components[0].parameters[0]"
               ".type", "is not allowed in a header component of a carousel "
               "card"), "text header in a card");
    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"document\",\"document\":{\"id\":\"1\"}}]}"),
               "template.components[0].cards[0].components[0].parameters[0]"
               ".type", "is not allowed in a header component of a carousel "
               "card"), "document header in a card");
    ok(refused(CARD_OF("{\"type\":\"body\",\"parameters\":[{\"type\":"
                       "\"text\",\"text\":\"x\"}]}"),
               "template.components[0].cards[0].components",
               "needs a header"), "card without a header");
    ok(refused(CARD_OF("{\"type\":\"header\"}"),
               "template.components[0].cards[0].components[0].parameters",
               "must be one image, video or product"),
       "card header without media");
    ok(refused(CARD_OF("{\"type\":\"body\"},{\"type\":\"header\","
                       "\"parameters\":[{\"type\":\"image\",\"image\":{"
                       "\"id\":\"1\"}},{\"type\":\"image\",\"image\":{"
                       "\"id\":\"2\"}}]}"),
               "template.components[0].cards[0].components[1].parameters",
               "must be one image, video or product"),
       "card header of two images");
    ok(refused(CARD_OF(CARD_IMAGE ",{\"type\":\"button\",\"sub_type\":"
                       "\"copy_code\",\"index\":0,\"parameters\":[{"
                       "\"type\":\"coupon_code\",\"coupon_code\":\"X\"}]}"),
               "template.components[0].cards[0].components[1].sub_type",
               "must be one of: quick_reply, url"), "copy code in a card");
    ok(refused(CARD_OF(CARD_IMAGE ",{\"type\":\"button\",\"sub_type\":"
                       "\"url\",\"index\":0,\"parameters\":[{\"type\":"
                       "\"action\",\"action\":{}}]}"),
               "template.components[0].cards[0].components[1].parameters[0]"
               ".type", "is not allowed in a button component of a carousel "
               "card"), "action in a card's button");
    ok(refused(CARD_OF(CARD_IMAGE ",{\"type\":\"body\"},{\"type\":"
                       "\"button\",\"sub_type\":\"url\",\"index\":0},"
                       "{\"type\":\"button\",\"sub_type\":\"url\","
                       "\"index\":1},{\"type\":\"button\",\"sub_type\":"
                       "\"url\",\"index\":2}"),
               "template.components[0].cards[0].components",
               "has more than 4 items"), "card of 5 components");
}


static void
test_product_cards(void)
{
    ok(valid(CAROUSEL(PRODUCT_CARD("0", SPM_BUTTON) ","
                      PRODUCT_CARD("1", SPM_BUTTON))),
       "product cards with View buttons");
    ok(valid(CAROUSEL(PRODUCT_CARD("0", ",{\"type\":\"button\","
                                   "\"sub_type\":\"SPM\",\"index\":\"0\"}"))),
       "View button without parameters");
    ok(valid(CAROUSEL(PRODUCT_CARD("0", ",{\"type\":\"button\","
                                   "\"sub_type\":\"url\",\"index\":0,"
                                   "\"parameters\":[{\"type\":\"text\","
                                   "\"text\":\"aloe\"}]}"))),
       "product card with a URL button");
    ok(valid(TPL("{\"type\":\"header\",\"parameters\":[{\"type\":"
                 "\"product\",\"product\":{\"product_retailer_id\":\"a\","
                 "\"catalog_id\":\"1\"}}]},{\"type\":\"button\","
                 "\"sub_type\":\"spm\",\"index\":0,\"parameters\":[{"
                 "\"type\":\"action\",\"action\":{}}]}")),
       "single-product template with its View button");

    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"product\",\"product\":{\"product_retailer_id\":"
                       "\"a\"}}]}"),
               "template.components[0].cards[0].components[0].parameters[0]"
               ".product.catalog_id", "is required"),
       "product without catalog");
    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"product\",\"product\":{\"catalog_id\":\"1\","
                       "\"product_retailer_id\":\"\"}}]}"),
               "template.components[0].cards[0].components[0].parameters[0]"
               ".product.product_retailer_id", "must not be empty"),
       "product_retailer_id empty");
    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"product\",\"product\":{\"catalog_id\":1948,"
                       "\"product_retailer_id\":\"a\"}}]}"),
               "template.components[0].cards[0].components[0].parameters[0]"
               ".product.catalog_id", "must be a string"),
       "catalog_id a number");
    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"product\",\"product\":{\"catalog_id\":\"1\","
                       "\"product_retailer_id\":\"a\",\"quantity\":1}}]}"),
               "template.components[0].cards[0].components[0].parameters[0]"
               ".product.quantity", "is not a known field"),
       "product with a quantity");
    ok(refused(CARD_OF("{\"type\":\"header\",\"parameters\":[{\"type\":"
                       "\"product\",\"product\":{\"catalog_id\":\"1\","
                       "\"product_retailer_id\":\"a\"}},{\"type\":"
                       "\"product\",\"product\":{\"catalog_id\":\"1\","
                       "\"product_retailer_id\":\"b\"}}]}"),
               "template.components[0].cards[0].components[0].parameters",
               "must be one image, video or product"),
       "card header of two products");
    ok(refused(CAROUSEL(PRODUCT_CARD("0", ",{\"type\":\"button\","
                                     "\"sub_type\":\"spm\",\"index\":0,"
                                     "\"parameters\":[{\"type\":"
                                     "\"payload\",\"payload\":\"x\"}]}")),
               "template.components[0].cards[0].components[1].parameters[0]"
               ".type", "is not allowed in a button component of a carousel "
               "card"), "payload in a View button");
    ok(refused(CAROUSEL(PRODUCT_CARD("0", ",{\"type\":\"button\","
                                     "\"sub_type\":\"spm\",\"index\":0,"
                                     "\"parameters\":[{\"type\":"
                                     "\"action\",\"action\":\"view\"}]}")),
               "template.components[0].cards[0].components[1].parameters[0]"
               ".action", "must be an object"), "View button action a string");
    ok(refused(CAROUSEL(PRODUCT_CARD("0", ",{\"type\":\"button\","
                                     "\"sub_type\":\"quick_reply\","
                                     "\"index\":0,\"parameters\":[{"
                                     "\"type\":\"action\",\"action\":{}}]}")),
               "template.components[0].cards[0].components[1].parameters[0]"
               ".type", "is not allowed in a button component of a carousel "
               "card"), "action in a card's quick reply");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                   "\"product\",\"product\":{\"product_retailer_id\":\"a\","
                   "\"catalog_id\":\"1\"}}]}"),
               "template.components[0].parameters[0].type",
               "is not allowed in a body component"), "product in a body");
    ok(refused(CAROUSEL(PRODUCT_CARD("0", ",{\"type\":\"body\","
                                     "\"parameters\":[{\"type\":"
                                     "\"product\",\"product\":{"
                                     "\"product_retailer_id\":\"a\","
                                     "\"catalog_id\":\"1\"}}]}")),
               "template.components[0].cards[0].components[1].parameters[0]"
               ".type", "is not allowed in a body component of a carousel "
               "card"), "product in a card's body");
    ok(refused(CARD_OF(CARD_IMAGE ",{\"type\":\"button\",\"sub_type\":"
                       "\"mpm\",\"index\":0}"),
               "template.components[0].cards[0].components[1].sub_type",
               "must be one of: quick_reply, url, spm"), "mpm in a card");
}


static void
test_lto(void)
{
    ok(valid(LTO("{\"expiration_time_ms\":1708804800000}")),
       "limited-time offer, alone");

    ok(refused(LTO("{\"expiration_time_ms\":0}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".expiration_time_ms", "must be a positive integer"),
       "expiration 0");
    ok(refused(LTO("{\"expiration_time_ms\":-1708804800000}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".expiration_time_ms", "must be a positive integer"),
       "expiration negative");
    ok(refused(LTO("{\"expiration_time_ms\":\"1708804800000\"}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".expiration_time_ms", "must be a positive integer"),
       "expiration a string");
    ok(refused(LTO("{\"expiration_time_ms\":1.7088048e12}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".expiration_time_ms", "must be a positive integer"),
       "expiration with an exponent");
    ok(refused(LTO("{\"expiration_time_ms\":99999999999999999999}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".expiration_time_ms", "must be a positive integer"),
       "expiration beyond 64 bits");
    ok(refused(LTO("{}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".expiration_time_ms", "is required"), "expiration missing");
    ok(refused(LTO("{\"expiration_time_ms\":1,\"text\":\"Hurry\"}"),
               "template.components[0].parameters[0].limited_time_offer"
               ".text", "is not a known field"), "offer with a text");
    ok(refused(LTO("1708804800000"),
               "template.components[0].parameters[0].limited_time_offer",
               "must be an object"), "offer a number");

    ok(refused(TPL("{\"type\":\"limited_time_offer\"}"),
               "template.components[0].parameters", "is required"),
       "limited-time offer without parameters");
    ok(refused(TPL("{\"type\":\"limited_time_offer\",\"parameters\":["
                   "{\"type\":\"limited_time_offer\",\"limited_time_offer\":"
                   "{\"expiration_time_ms\":1}},{\"type\":"
                   "\"limited_time_offer\",\"limited_time_offer\":{"
                   "\"expiration_time_ms\":2}}]}"),
               "template.components[0].parameters", "has more than 1 item"),
       "limited-time offer of two");
    ok(refused(TPL("{\"type\":\"limited_time_offer\",\"parameters\":["
                   "{\"type\":\"text\",\"text\":\"x\"}]}"),
               "template.components[0].parameters[0].type",
               "is not allowed in a limited_time_offer component"),
       "text in a limited-time offer");
    ok(refused(TPL("{\"type\":\"body\",\"parameters\":[{\"type\":"
                   "\"limited_time_offer\",\"limited_time_offer\":{"
                   "\"expiration_time_ms\":1}}]}"),
               "template.components[0].parameters[0].type",
               "is not allowed in a body component"),
       "limited-time offer in a body");
    ok(refused(TPL("{\"type\":\"limited_time_offer\",\"sub_type\":"
                   "\"url\"}"),
               "template.components[0].sub_type",
               "is only for button components"),
       "sub_type on a limited-time offer");
}


static void
test_interactive(void)
{
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"body\":{"
                 "\"text\":\"x\"}}"), "interactive.type", "is required"),
       "interactive.type missing");
    ok(refused(IA("address_message", "{}"), "interactive.type",
               "must be one of: button, list, cta_url, flow, "
               "location_request_message, product, product_list, "
               "catalog_message, carousel"), "interactive.type unknown");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"button\",\"action\":{\"buttons\":[" BUTTON("a", "A")
                 "]}}"), "interactive.body", "is required"), "body missing");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"button\",\"body\":{\"text\":\"x\"}}"),
               "interactive.action", "is required"), "action missing");
    ok(repeat_refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                        "\"button\",\"body\":{\"text\":\"@\"},\"action\":{"
                        "\"buttons\":[" BUTTON("a", "A") "]}}"), "b", 1025,
                      "interactive.body.text",
                      "is longer than 1024 characters"), "button body 1025");
    ok(repeat_valid(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                      "\"list\",\"body\":{\"text\":\"@\"},\"action\":{"
                      "\"button\":\"Go\",\"sections\":[{\"rows\":["
                      ROW("1") "]}]}}"), "b", 4096), "list body 4096");
    ok(repeat_refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                        "\"list\",\"body\":{\"text\":\"@\"},\"action\":{"
                        "\"button\":\"Go\",\"sections\":[{\"rows\":["
                        ROW("1") "]}]}}"), "b", 4097,
                      "interactive.body.text",
                      "is longer than 4096 characters"), "list body 4097");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"button\",\"body\":{\"text\":\"x\"},\"footer\":{\"text\":"
                 "\"" A60 "a\"},\"action\":{\"buttons\":[" BUTTON("a", "A")
                 "]}}"), "interactive.footer.text",
               "is longer than 60 characters"), "footer of 61");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"button\",\"header\":{\"type\":\"text\",\"text\":\"" A60
                 "a\"},\"body\":{\"text\":\"x\"},\"action\":{\"buttons\":["
                 BUTTON("a", "A") "]}}"), "interactive.header.text",
               "is longer than 60 characters"), "header text of 61");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"button\",\"header\":{\"type\":\"text\",\"image\":{"
                 "\"id\":\"1\"}},\"body\":{\"text\":\"x\"},\"action\":{"
                 "\"buttons\":[" BUTTON("a", "A") "]}}"),
               "interactive.header.image",
               "is not allowed with header type text"),
       "header: text type with an image");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"list\",\"header\":{\"type\":\"image\",\"image\":{"
                 "\"id\":\"1\"}},\"body\":{\"text\":\"x\"},\"action\":{"
                 "\"button\":\"Go\",\"sections\":[{\"rows\":[" ROW("1")
                 "]}]}}"), "interactive.header.type", "must be text"),
       "list with an image header");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"location_request_message\",\"header\":{\"type\":"
                 "\"text\",\"text\":\"x\"},\"body\":{\"text\":\"x\"},"
                 "\"action\":{\"name\":\"send_location\"}}"),
               "interactive.header", "is not allowed with interactive type "
               "location_request_message"), "location request header");
    ok(refused(B("\"type\":\"interactive\",\"interactive\":{\"type\":"
                 "\"location_request_message\",\"footer\":{\"text\":\"x\"},"
                 "\"body\":{\"text\":\"x\"},\"action\":{\"name\":"
                 "\"send_location\"}}"), "interactive.footer",
               "is not allowed"), "location request footer");
    ok(refused(IA("location_request_message", "{\"name\":\"location\"}"),
               "interactive.action.name", "must be send_location"),
       "location request action name");

    /* reply buttons */
    ok(valid(IA("button", "{\"buttons\":[" BUTTON("a", A20) ","
                BUTTON("b", "B") "," BUTTON("c", "C") "]}")),
       "3 buttons, title of 20");
    ok(refused(IA("button", "{\"buttons\":[" BUTTON("a", "A") ","
                  BUTTON("b", "B") "," BUTTON("c", "C") "," BUTTON("d", "D")
                  "]}"), "interactive.action.buttons",
               "has more than 3 items"), "4 buttons");
    ok(refused(IA("button", "{\"buttons\":[]}"),
               "interactive.action.buttons", "must not be empty"),
       "no buttons");
    ok(refused(IA("button", "{\"buttons\":[" BUTTON("a", "A") ","
                  BUTTON("b", "B") "," BUTTON("c", A20 "a") "]}"),
               "interactive.action.buttons[2].reply.title",
               "is longer than 20 characters"), "title of 21");
    ok(refused(IA("button", "{\"buttons\":[" BUTTON("a", "A") ","
                  BUTTON("b", "") "]}"),
               "interactive.action.buttons[1].reply.title",
               "must not be empty"), "title empty");
    ok(repeat_refused(IA("button", "{\"buttons\":[" BUTTON("@", "A") "]}"),
                      "i", 257, "interactive.action.buttons[0].reply.id",
                      "is longer than 256 characters"), "id of 257");
    ok(refused(IA("button", "{\"buttons\":[" BUTTON("a", "A") ","
                  BUTTON("b", "B") "," BUTTON("a", "C") "]}"),
               "interactive.action.buttons[2].reply.id",
               "is the same as in buttons[0]"), "ids repeated");
    ok(refused(IA("button", "{\"buttons\":[{\"type\":\"url\",\"reply\":{"
                  "\"id\":\"a\",\"title\":\"A\"}}]}"),
               "interactive.action.buttons[0].type", "must be reply"),
       "button type url");
    ok(refused(IA("button", "{\"buttons\":[{\"type\":\"reply\"}]}"),
               "interactive.action.buttons[0].reply", "is required"),
       "button without reply");

    /* lists */
    ok(valid(IA("list", "{\"button\":\"" A20 "\",\"sections\":["
                "{\"title\":\"" A24 "\",\"rows\":[{\"id\":\"1\",\"title\":"
                "\"" A24 "\",\"description\":\"" A72 "\"}]},"
                "{\"title\":\"S2\",\"rows\":[" ROW("2") "," ROW("3") ","
                ROW("4") "," ROW("5") "," ROW("6") "," ROW("7") "," ROW("8")
                "," ROW("9") "," ROW("10") "]}]}")),
       "list: 10 rows in 2 sections, lengths at their limits");
    ok(refused(IA("list", "{\"button\":\"" A20 "a\",\"sections\":[{"
                  "\"rows\":[" ROW("1") "]}]}"),
               "interactive.action.button", "is longer than 20 characters"),
       "list button of 21");
    ok(refused(IA("list", "{\"button\":\"Go\"}"),
               "interactive.action.sections", "is required"),
       "list without sections");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[]}"),
               "interactive.action.sections", "must not be empty"),
       "list with no section");
    ok(repeat_refused(IA("list", "{\"button\":\"Go\",\"sections\":[@"
                         "{\"title\":\"s\",\"rows\":[" ROW("x") "]}]}"),
                      "{\"title\":\"s\",\"rows\":[]},", 10,
                      "interactive.action.sections",
                      "has more than 10 items"), "11 sections");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"title\":"
                  "\"S1\",\"rows\":[" ROW("1") "," ROW("2") "," ROW("3") ","
                  ROW("4") "," ROW("5") "," ROW("6") "]},{\"title\":\"S2\","
                  "\"rows\":[" ROW("7") "," ROW("8") "," ROW("9") ","
                  ROW("10") "," ROW("11") "]}]}"),
               "interactive.action.sections[1].rows",
               "makes more than 10 rows in all sections"),
       "11 rows in all");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"rows\":["
                  ROW("1") "]},{\"title\":\"S2\",\"rows\":[" ROW("2")
                  "]}]}"), "interactive.action.sections[0].title",
               "is required"), "two sections, one untitled");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"title\":"
                  "\"" A24 "a\",\"rows\":[" ROW("1") "]}]}"),
               "interactive.action.sections[0].title",
               "is longer than 24 characters"), "section title of 25");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"rows\":[]}]}"),
               "interactive.action.sections[0].rows", "must not be empty"),
       "a section without rows");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"rows\":["
                  "{\"id\":\"1\",\"title\":\"" A24 "a\"}]}]}"),
               "interactive.action.sections[0].rows[0].title",
               "is longer than 24 characters"), "row title of 25");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"rows\":["
                  "{\"id\":\"1\",\"title\":\"t\",\"description\":\"" A72
                  "a\"}]}]}"),
               "interactive.action.sections[0].rows[0].description",
               "is longer than 72 characters"), "row description of 73");
    ok(repeat_refused(IA("list", "{\"button\":\"Go\",\"sections\":[{"
                         "\"rows\":[{\"id\":\"@\",\"title\":\"t\"}]}]}"),
                      "i", 201, "interactive.action.sections[0].rows[0].id",
                      "is longer than 200 characters"), "row id of 201");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{\"title\":"
                  "\"S1\",\"rows\":[" ROW("1") "]},{\"title\":\"S2\","
                  "\"rows\":[" ROW("2") "," ROW("1") "]}]}"),
               "interactive.action.sections[1].rows[1].id",
               "is the same as another row's"), "row ids repeated");

    /* CTA URL */
    ok(refused(IA("cta_url", "{\"name\":\"url\",\"parameters\":{"
                  "\"display_text\":\"Go\",\"url\":\"https://a.example\"}}"),
               "interactive.action.name", "must be cta_url"),
       "cta_url action name");
    ok(refused(IA("cta_url", "{\"name\":\"cta_url\",\"parameters\":{"
                  "\"display_text\":\"" A20 "a\",\"url\":"
                  "\"https://a.example\"}}"),
               "interactive.action.parameters.display_text",
               "is longer than 20 characters"), "display_text of 21");
    ok(refused(IA("cta_url", "{\"name\":\"cta_url\",\"parameters\":{"
                  "\"display_text\":\"Go\",\"url\":\"http://a.example\"}}"),
               "interactive.action.parameters.url", "https"),
       "cta_url over http");
    ok(refused(IA("cta_url", "{\"name\":\"cta_url\",\"parameters\":{"
                  "\"display_text\":\"Go\"}}"),
               "interactive.action.parameters.url", "is required"),
       "cta_url without url");

    /* flows */
    ok(valid(FLOW(",\"flow_name\":\"booking\",\"flow_action\":"
                  "\"data_exchange\",\"mode\":\"draft\"")),
       "flow by name, data_exchange, draft");
    ok(refused(FLOW(",\"flow_id\":\"1\",\"flow_name\":\"booking\","
                    "\"flow_action\":\"data_exchange\""),
               "interactive.action.parameters",
               "must have flow_id or flow_name, not both"),
       "flow_id and flow_name");
    ok(refused(FLOW(",\"flow_action\":\"data_exchange\""),
               "interactive.action.parameters",
               "needs flow_id or flow_name"), "no flow_id nor flow_name");
    ok(refused(FLOW(",\"flow_id\":\"1\""),
               "interactive.action.parameters.flow_action_payload",
               "is required"), "navigate without a payload");
    ok(refused(FLOW(",\"flow_id\":\"1\",\"flow_action\":\"data_exchange\","
                    "\"flow_action_payload\":{\"screen\":\"S\"}"),
               "interactive.action.parameters.flow_action_payload",
               "is only for flow_action navigate"),
       "data_exchange with a payload");
    ok(refused(FLOW(",\"flow_id\":\"1\",\"flow_action_payload\":{}"),
               "interactive.action.parameters.flow_action_payload.screen",
               "is required"), "payload without a screen");
    ok(refused(IA("flow", "{\"name\":\"flow\",\"parameters\":{"
                  "\"flow_message_version\":\"2\",\"flow_id\":\"1\","
                  "\"flow_cta\":\"Go\",\"flow_action\":\"data_exchange\"}}"),
               "interactive.action.parameters.flow_message_version",
               "must be 3"), "flow_message_version 2");
    ok(refused(IA("flow", "{\"name\":\"flow\",\"parameters\":{"
                  "\"flow_message_version\":\"3\",\"flow_id\":\"1\","
                  "\"flow_cta\":\"" A20 "a\",\"flow_action\":"
                  "\"data_exchange\"}}"),
               "interactive.action.parameters.flow_cta",
               "is longer than 20 characters"), "flow_cta of 21");
}


static void
test_commerce(void)
{
    /* single product */
    ok(valid(IA_OF("product", "\"action\":{\"catalog_id\":\"1\","
                   "\"product_retailer_id\":\"a\"}")),
       "single product without body or footer");
    ok(refused(IA_OF("product", "\"header\":{\"type\":\"text\",\"text\":"
                     "\"x\"},\"action\":{\"catalog_id\":\"1\","
                     "\"product_retailer_id\":\"a\"}"),
               "interactive.header", "is not allowed with interactive type "
               "product"), "single product with a header");
    ok(refused(IA_OF("product", "\"footer\":{\"text\":\"" A60 "a\"},"
                     "\"action\":{\"catalog_id\":\"1\","
                     "\"product_retailer_id\":\"a\"}"),
               "interactive.footer.text", "is longer than 60 characters"),
       "single product footer of 61");
    ok(repeat_refused(IA_OF("product", "\"body\":{\"text\":\"@\"},"
                            "\"action\":{\"catalog_id\":\"1\","
                            "\"product_retailer_id\":\"a\"}"), "b", 1025,
                      "interactive.body.text",
                      "is longer than 1024 characters"),
       "single product body of 1025");
    ok(refused(IA("product", "{\"product_retailer_id\":\"a\"}"),
               "interactive.action.catalog_id", "is required"),
       "single product without catalog_id");
    ok(refused(IA("product", "{\"catalog_id\":\"1\"}"),
               "interactive.action.product_retailer_id", "is required"),
       "single product without product_retailer_id");
    ok(refused(IA("product", "{\"catalog_id\":\"1\",\"product_retailer_id\":"
                  "[\"a\"]}"), "interactive.action.product_retailer_id",
               "must be a string"), "product_retailer_id an array");
    ok(refused(IA_OF("product", "\"body\":{\"text\":\"x\"}"),
               "interactive.action", "is required"),
       "single product without action");

    /* multi-product */
    ok(valid(PRODUCT_LIST("{\"product_items\":[" ITEM "]}")),
       "multi-product: one section, untitled");
    ok(valid(PRODUCT_LIST("{\"title\":\"" A24 "\",\"product_items\":["
                          ITEMS10 "," ITEMS10 "]},{\"title\":\"S2\","
                          "\"product_items\":[" ITEMS10 "]}")),
       "multi-product: 30 products in 2 sections, title of 24");
    ok(refused(PRODUCT_LIST("{\"title\":\"S1\",\"product_items\":["
                            ITEMS10 "," ITEMS10 "]},{\"title\":\"S2\","
                            "\"product_items\":[" ITEMS10 "," ITEM "]}"),
               "interactive.action.sections[1].product_items",
               "makes more than 30 products in all sections"),
       "multi-product: 31 products");
    ok(repeat_refused(PRODUCT_LIST("{\"product_items\":[@" ITEM "]}"),
                      ITEM ",", 30,
                      "interactive.action.sections[0].product_items",
                      "makes more than 30 products in all sections"),
       "multi-product: 31 products in a section");
    ok(repeat_refused(PRODUCT_LIST("@{\"title\":\"s\",\"product_items\":["
                                   ITEM "]}"),
                      "{\"title\":\"s\",\"product_items\":[" ITEM "]},",
                      10, "interactive.action.sections",
                      "has more than 10 items"), "multi-product: 11 sections");
    ok(refused(PRODUCT_LIST("{\"title\":\"S1\",\"product_items\":[" ITEM
                            "]},{\"product_items\":[" ITEM "]}"),
               "interactive.action.sections[1].title", "is required"),
       "multi-product: two sections, one untitled");
    ok(refused(PRODUCT_LIST("{\"title\":\"" A24 "a\",\"product_items\":["
                            ITEM "]}"),
               "interactive.action.sections[0].title",
               "is longer than 24 characters"), "multi-product: title of 25");
    ok(refused(PRODUCT_LIST("{\"product_items\":[]}"),
               "interactive.action.sections[0].product_items",
               "must not be empty"), "multi-product: a section without items");
    ok(refused(PRODUCT_LIST("{\"rows\":[" ROW("1") "]}"),
               "interactive.action.sections[0].rows", "is not a known field"),
       "multi-product: rows");
    ok(refused(PRODUCT_LIST("{\"product_items\":[{\"product_retailer_id\":"
                            "\"a\",\"quantity\":1}]}"),
               "interactive.action.sections[0].product_items[0].quantity",
               "is not a known field"), "multi-product: item with a quantity");
    ok(refused(PRODUCT_LIST("{\"product_items\":[" ITEM ",{}]}"),
               "interactive.action.sections[0].product_items[1]"
               ".product_retailer_id", "is required"),
       "multi-product: item without product_retailer_id");
    ok(refused(PRODUCT_LIST(""), "interactive.action.sections",
               "must not be empty"), "multi-product: no section");
    ok(refused(IA_OF("product_list", "\"body\":{\"text\":\"x\"},"
                     "\"action\":{\"catalog_id\":\"1\",\"sections\":[{"
                     "\"product_items\":[" ITEM "]}]}"),
               "interactive.header", "is required"),
       "multi-product without a header");
    ok(refused(IA_OF("product_list", "\"header\":{\"type\":\"image\","
                     "\"image\":{\"id\":\"1\"}},\"body\":{\"text\":"
                     "\"x\"},\"action\":{\"catalog_id\":\"1\","
                     "\"sections\":[{\"product_items\":[" ITEM "]}]}"),
               "interactive.header.type", "must be text"),
       "multi-product with an image header");
    ok(refused(IA_OF("product_list", "\"header\":{\"type\":\"text\","
                     "\"text\":\"x\"},\"action\":{\"catalog_id\":\"1\","
                     "\"sections\":[{\"product_items\":[" ITEM "]}]}"),
               "interactive.body", "is required"),
       "multi-product without body");
    ok(refused(IA_OF("product_list", "\"header\":{\"type\":\"text\","
                     "\"text\":\"x\"},\"body\":{\"text\":\"x\"},"
                     "\"action\":{\"sections\":[{\"product_items\":["
                     ITEM "]}]}"),
               "interactive.action.catalog_id", "is required"),
       "multi-product without catalog_id");
    ok(refused(IA("list", "{\"button\":\"Go\",\"sections\":[{"
                  "\"product_items\":[" ITEM "]}]}"),
               "interactive.action.sections[0].product_items",
               "is not a known field"), "list with products");

    /* catalog */
    ok(valid(IA("catalog_message", "{\"name\":\"catalog_message\"}")),
       "catalog message without parameters");
    ok(refused(IA("catalog_message", "{\"name\":\"catalog\"}"),
               "interactive.action.name", "must be catalog_message"),
       "catalog message action name");
    ok(refused(IA("catalog_message", "{\"name\":\"catalog_message\","
                  "\"parameters\":{\"thumbnail\":\"a\"}}"),
               "interactive.action.parameters.thumbnail",
               "is not a known field"), "catalog message parameter misspelt");
    ok(refused(IA("catalog_message", "{\"name\":\"catalog_message\","
                  "\"parameters\":{\"thumbnail_product_retailer_id\":"
                  "\"\"}}"),
               "interactive.action.parameters.thumbnail_product_retailer_id",
               "must not be empty"), "catalog message thumbnail empty");
    ok(refused(IA_OF("catalog_message", "\"header\":{\"type\":\"text\","
                     "\"text\":\"x\"},\"body\":{\"text\":\"x\"},"
                     "\"action\":{\"name\":\"catalog_message\"}"),
               "interactive.header", "is not allowed with interactive type "
               "catalog_message"), "catalog message with a header");
    ok(refused(IA_OF("catalog_message", "\"action\":{\"name\":"
                     "\"catalog_message\"}"),
               "interactive.body", "is required"),
       "catalog message without body");
}


static void
test_interactive_carousel(void)
{
    ok(valid(IA_CAROUSEL(MEDIA_CARD("9") "," MEDIA_CARD("0") ","
                         MEDIA_CARD("1") "," MEDIA_CARD("2") ","
                         MEDIA_CARD("3") "," MEDIA_CARD("4") ","
                         MEDIA_CARD("5") "," MEDIA_CARD("6") ","
                         MEDIA_CARD("7") "," MEDIA_CARD("8"))),
       "media carousel of 10 cards, in any order");
    ok(valid(IA_CAROUSEL(MEDIA_CARD_OF("\"header\":{\"type\":\"video\","
                                       "\"video\":{\"id\":\"1\"}},"
                                       "\"body\":{\"text\":\"" A60 "\\n"
                                       A60 "\\n" A20 "aaaaaaaaaaaaaaaaaa\"},"
                                       "\"action\":{\"buttons\":["
                                       QUICK_REPLY("a") "," QUICK_REPLY("b")
                                       "," QUICK_REPLY("c") "]}") ","
                         "{\"card_index\":1,\"type\":\"cta_url\","
                         CARD_HEADER ",\"action\":{\"buttons\":["
                         QUICK_REPLY("a") "," QUICK_REPLY("b") ","
                         QUICK_REPLY("c") "]}}")),
       "video card, body of 160 on 3 lines, quick replies alike");
    ok(valid(IA_CAROUSEL(PRODUCT("0", "1948") "," PRODUCT("1", "1948") ","
                         PRODUCT("2", "1948"))),
       "product carousel");

    ok(refused(IA_CAROUSEL(MEDIA_CARD("0")), "interactive.action.cards",
               "has fewer than 2 items"), "a carousel of one card");
    ok(refused(IA_CAROUSEL(""), "interactive.action.cards",
               "must not be empty"), "a carousel of no card");
    ok(repeat_refused(IA_CAROUSEL("@" MEDIA_CARD("9")), MEDIA_CARD("0") ",",
                      10, "interactive.action.cards",
                      "has more than 10 items"), "a carousel of 11 cards");
    ok(refused(IA("carousel", "{}"), "interactive.action.cards",
               "is required"), "a carousel without cards");
    ok(refused(IA("carousel", "{\"cards\":[" MEDIA_CARD("0") ","
                  MEDIA_CARD("1") "],\"buttons\":[]}"),
               "interactive.action.buttons", "is not a known field"),
       "a carousel with buttons");
    ok(refused(IA_CAROUSEL(MEDIA_CARD("0") "," MEDIA_CARD("1") ","
                           MEDIA_CARD("0")),
               "interactive.action.cards[2].card_index",
               "is the same as another card's"), "card_index twice");
    ok(refused(IA_CAROUSEL(MEDIA_CARD("0") "," MEDIA_CARD("10")),
               "interactive.action.cards[1].card_index",
               "must be an integer from 0 to 9"), "card_index 10");
    ok(refused(IA_OF("carousel", "\"header\":{\"type\":\"text\","
                     "\"text\":\"x\"},\"body\":{\"text\":\"x\"},"
                     "\"action\":{\"cards\":[" MEDIA_CARD("0") ","
                     MEDIA_CARD("1") "]}"),
               "interactive.header", "is not allowed with interactive type "
               "carousel"), "a carousel with a header");
    ok(refused(IA_OF("carousel", "\"footer\":{\"text\":\"x\"},"
                     "\"body\":{\"text\":\"x\"},\"action\":{\"cards\":["
                     MEDIA_CARD("0") "," MEDIA_CARD("1") "]}"),
               "interactive.footer", "is not allowed with interactive type "
               "carousel"), "a carousel with a footer");
    ok(refused(IA_OF("carousel", "\"action\":{\"cards\":["
                     MEDIA_CARD("0") "," MEDIA_CARD("1") "]}"),
               "interactive.body", "is required"), "a carousel without body");

    ok(refused(IA_CAROUSEL("{\"card_index\":0,\"type\":\"image\"},"
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].type",
               "must be one of: cta_url, product"), "card type image");
    ok(refused(IA_CAROUSEL(MEDIA_CARD("0") "," PRODUCT("1", "1948")),
               "interactive.action.cards[1].type",
               "must be cta_url, as in cards[0]"), "media and product cards");
    ok(refused(IA_CAROUSEL(PRODUCT("0", "1948") "," PRODUCT("1", "1948") ","
                           PRODUCT("2", "2024")),
               "interactive.action.cards[2].action.catalog_id",
               "must be the same in every card"), "products of two catalogs");
    ok(refused(IA_CAROUSEL("{\"card_index\":0,\"type\":\"product\","
                           CARD_HEADER ",\"action\":{\"catalog_id\":\"1\","
                           "\"product_retailer_id\":\"a\"}}"),
               "interactive.action.cards[0].header",
               "is not allowed in a product card"), "product card header");
    ok(refused(IA_CAROUSEL("{\"card_index\":0,\"type\":\"product\","
                           "\"body\":{\"text\":\"x\"},\"action\":{"
                           "\"catalog_id\":\"1\",\"product_retailer_id\":"
                           "\"a\"}}"),
               "interactive.action.cards[0].body",
               "is not allowed in a product card"), "product card body");
    ok(refused(IA_CAROUSEL("{\"card_index\":0,\"type\":\"product\","
                           "\"action\":{\"catalog_id\":\"1\"}}"),
               "interactive.action.cards[0].action.product_retailer_id",
               "is required"), "product card without product_retailer_id");
    ok(refused(IA_CAROUSEL("{\"card_index\":0,\"type\":\"product\"}"),
               "interactive.action.cards[0].action", "is required"),
       "product card without action");

    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF("\"action\":{\"name\":\"cta_url\","
                                         "\"parameters\":{\"display_text\":"
                                         "\"Go\",\"url\":"
                                         "\"https://a.example\"}}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].header", "is required"),
       "media card without header");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF("\"header\":{\"type\":\"text\","
                                         "\"text\":\"x\"}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].header.type",
               "must be one of: image, video"), "media card text header");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF("\"header\":{\"type\":"
                                         "\"document\",\"document\":{"
                                         "\"id\":\"1\"}}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].header.type",
               "must be one of: image, video"), "media card document header");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"body\":{\"text\":"
                                         "\"" A160 "a\"}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].body.text",
               "is longer than 160 characters"), "card body of 161");
    ok(refused(IA_CAROUSEL(MEDIA_CARD("0") ","
                           "{\"card_index\":1,\"type\":\"cta_url\","
                           CARD_HEADER ",\"body\":{\"text\":\"a\\nb\\nc"
                           "\\nd\"},\"action\":{\"name\":\"cta_url\","
                           "\"parameters\":{\"display_text\":\"Go\","
                           "\"url\":\"https://a.example\"}}}"),
               "interactive.action.cards[1].body.text",
               "has more than 2 line breaks"), "card body of 4 lines");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER) "," MEDIA_CARD("1")),
               "interactive.action.cards[0].action", "is required"),
       "media card without action");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":[]") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].action", "must be an object"),
       "media card action an array");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"footer\":{"
                                         "\"text\":\"x\"}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].footer", "is not a known field"),
       "media card footer");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"name\":\"cta_url\","
                                         "\"buttons\":[" QUICK_REPLY("a")
                                         "]}") "," MEDIA_CARD("1")),
               "interactive.action.cards[0].action.buttons",
               "a URL button (name, parameters) or quick replies, not both"),
       "URL button and quick replies");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"name\":\"cta_url\","
                                         "\"parameters\":{\"display_text\":"
                                         "\"" A20 "a\",\"url\":"
                                         "\"https://a.example\"}}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].action.parameters.display_text",
               "is longer than 20 characters"), "card display_text of 21");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"name\":\"cta_url\","
                                         "\"parameters\":{\"display_text\":"
                                         "\"Go\",\"url\":"
                                         "\"http://a.example\"}}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].action.parameters.url", "https"),
       "card URL over http");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"buttons\":[]}") ","
                           MEDIA_CARD("1")),
               "interactive.action.cards[0].action.buttons",
               "must not be empty"), "card without quick replies");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"buttons\":[" BUTTON("a", "A")
                                         "]}") "," MEDIA_CARD("1")),
               "interactive.action.cards[0].action.buttons[0].reply",
               "is not a known field"), "card with a reply button");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"buttons\":[{\"type\":"
                                         "\"quick_reply\",\"quick_reply\":{"
                                         "\"id\":\"a\",\"title\":\"" A20
                                         "a\"}}]}") "," MEDIA_CARD("1")),
               "interactive.action.cards[0].action.buttons[0].quick_reply"
               ".title", "is longer than 20 characters"),
       "quick reply title of 21");
    ok(refused(IA_CAROUSEL(MEDIA_CARD("0") ","
                           "{\"card_index\":1,\"type\":\"cta_url\","
                           CARD_HEADER ",\"action\":{\"buttons\":["
                           QUICK_REPLY("a") "]}}"),
               "interactive.action.cards[1].action",
               "must have the buttons of cards[0]"),
       "a URL button, then quick replies");
    ok(refused(IA_CAROUSEL(MEDIA_CARD_OF(CARD_HEADER ",\"action\":{"
                                         "\"buttons\":[" QUICK_REPLY("a") ","
                                         QUICK_REPLY("b") "]}") ","
                           "{\"card_index\":1,\"type\":\"cta_url\","
                           CARD_HEADER ",\"action\":{\"buttons\":["
                           QUICK_REPLY("a") "]}}"),
               "interactive.action.cards[1].action",
               "must have the buttons of cards[0]"),
       "2 quick replies, then 1");
}


static void
test_field_bounds(void)
{
    size_t  i;
    char    body[1024];

    /* a long unknown name: the path is cut, still NUL-terminated */
    strcpy(body, HEAD TEXT_OK ",\"");

    for (i = 0; i < 300; i++) {
        strcat(body, "x");
    }

    strcat(body, "\":1}");

    ok(validate(body, strlen(body)) == -1
       && strlen(req.field) == WA_SEND_FIELD_MAX - 1
       && strcmp(req.message, "is not a known field") == 0,
       "a long field name is cut to fit");
}


int
main(void)
{
    test_meta_examples();
    test_our_members();
    test_to();
    test_json();
    test_types();
    test_context();
    test_text();
    test_media();
    test_location();
    test_contacts();
    test_reaction();
    test_template();
    test_carousel();
    test_product_cards();
    test_lto();
    test_interactive();
    test_commerce();
    test_interactive_carousel();
    test_field_bounds();

    return done_testing();
}
