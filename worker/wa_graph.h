/*
 * The Graph API client: POST /<version>/<phone_number_id>/messages through
 * the libcurl multi interface (many requests in flight, connections kept
 * and reused, HTTP/2 multiplexing where the server offers it), each
 * answer classified by what may safely follow.
 */

#ifndef WA_GRAPH_H
#define WA_GRAPH_H

#include <stddef.h>

#include <curl/curl.h>


typedef enum {
    WA_GRAPH_ACCEPTED = 0,  /* 200: messages[0].id is the wamid */
    WA_GRAPH_DONE,          /* 200 {"success":true}: a read receipt */
    WA_GRAPH_FAILED,        /* Meta refused it for good: code and title */
    WA_GRAPH_RETRY,         /* Meta surely did not act: again later */
    WA_GRAPH_THROTTLED,     /* the number's throughput (130429, 429 ...) */
    WA_GRAPH_PAIR_LIMIT,    /* 131056: later, to that recipient */
    WA_GRAPH_TOKEN,         /* the token was refused (190): pause the number */
    WA_GRAPH_UNKNOWN        /* the request left, its answer did not come */
} wa_graph_outcome_e;


typedef struct {
    wa_graph_outcome_e   outcome;
    long                 http_status;     /* 0: no response */
    int                  code;            /* Meta's error code, 0: none */
    char                 title[256];      /* Meta's message, or our own */
    char                 wamid[160];
} wa_graph_result_t;


typedef void (*wa_graph_done_pt)(void *data, const wa_graph_result_t *res);

typedef struct wa_graph_s  wa_graph_t;


wa_graph_t *wa_graph_new(const char *base_url, const char *version,
    long timeout_ms, int max_in_flight);
void wa_graph_free(wa_graph_t *g);

/*
 * Starts a request; done is called from wa_graph_run with its result.
 * Returns 0, or -1 (out of memory, too many in flight).
 */
int wa_graph_post(wa_graph_t *g, const char *phone_number_id,
    const char *token, const char *body, size_t len, wa_graph_done_pt done,
    void *data);

/*
 * Waits up to timeout_ms for the transfers and the extra descriptors
 * (curl_multi_poll), moves the transfers on and calls done for each that
 * ended.  Returns 0 or -1.
 */
int wa_graph_run(wa_graph_t *g, struct curl_waitfd *extra, unsigned nextra,
    int timeout_ms);

int wa_graph_in_flight(const wa_graph_t *g);

/* Classifies an answer (exported for the unit test). */
void wa_graph_classify(long http_status, const char *body, size_t len,
    wa_graph_result_t *res);

#endif /* WA_GRAPH_H */
