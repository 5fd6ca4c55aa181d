/*
 * wa-graph-sim: command line, signals, the loop; see wa_sim.h.
 *
 *   wa-graph-sim --listen 127.0.0.1:PORT
 *                [--webhook URL --app-secret-file FILE]
 *                [--statuses sent,delivered,read|none] [--status-delay-ms N]
 *                [--pid-file FILE] ...
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "wa_sim.h"


static int wa_sim_options(int argc, char **argv);
static int wa_sim_statuses(const char *list);
static int wa_sim_number(const char *opt, const char *s, uint64_t max,
    uint64_t *out);
static int wa_sim_signals(wa_sim_event_t *ev);
static void wa_sim_signal_handler(wa_sim_event_t *ev, uint32_t events);
static int wa_sim_pid_file(const char *path);
static void wa_sim_more_files(void);
static void wa_sim_usage(FILE *f);


wa_sim_conf_t  wa_sim_conf = {
    .waba_id = "100000000000001",
    .display_phone_number = "15550100001",
    .stages = { WA_SIM_SENT, WA_SIM_DELIVERED, WA_SIM_READ },
    .nstages = 3,
    .max_recorded = 1000000,
    .webhook_connections = 2,
};

wa_sim_stats_t  wa_sim_stats;

static int  wa_sim_quit;


int
main(int argc, char **argv)
{
    int             rc;
    wa_sim_event_t  sig;

    rc = wa_sim_options(argc, argv);
    if (rc != 0) {
        return rc < 0 ? 2 : 0;
    }

    wa_sim_more_files();

    if (wa_sim_event_init() != 0 || wa_sim_signals(&sig) != 0) {
        wa_sim_log("epoll/signalfd: %s", strerror(errno));
        return 1;
    }

    wa_sim_graph_init();

    if (wa_sim_http_init(wa_sim_conf.listen) != 0
        || wa_sim_webhook_init() != 0
        || (wa_sim_conf.pid_file && wa_sim_pid_file(wa_sim_conf.pid_file)))
    {
        wa_sim_http_done();
        wa_sim_webhook_done();
        wa_sim_event_done();
        return 1;
    }

    wa_sim_log("listening on %s, webhook %s, %d status(es) %llu ms apart, "
               "pid %d", wa_sim_conf.listen,
               wa_sim_conf.webhook ? wa_sim_conf.webhook : "none",
               wa_sim_conf.webhook ? wa_sim_conf.nstages : 0,
               (unsigned long long) wa_sim_conf.status_delay_ms,
               (int) getpid());

    while (!wa_sim_quit) {
        wa_sim_event_process();
    }

    wa_sim_http_done();
    wa_sim_webhook_done();
    wa_sim_control_done();
    wa_sim_event_close(&sig);
    wa_sim_event_done();

    if (wa_sim_conf.pid_file) {
        unlink(wa_sim_conf.pid_file);
    }

    wa_sim_log("exiting: %llu requests, %llu webhooks sent",
               (unsigned long long) wa_sim_stats.requests,
               (unsigned long long) wa_sim_stats.webhooks_sent);

    return 0;
}


void
wa_sim_log(const char *fmt, ...)
{
    va_list  ap;
    char     line[1024];

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);

    fprintf(stderr, "wa-graph-sim: %s\n", line);
}


/* 0 to run, 1 to exit 0 (--help), -1 to exit 2 */
static int
wa_sim_options(int argc, char **argv)
{
    int              c;
    uint64_t         n;
    static struct option  opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "webhook", required_argument, NULL, 'w' },
        { "app-secret-file", required_argument, NULL, 's' },
        { "statuses", required_argument, NULL, 'S' },
        { "status-delay-ms", required_argument, NULL, 'd' },
        { "pid-file", required_argument, NULL, 'p' },
        { "waba-id", required_argument, NULL, 'W' },
        { "display-phone-number", required_argument, NULL, 'D' },
        { "webhook-connections", required_argument, NULL, 'c' },
        { "max-recorded", required_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': wa_sim_conf.listen = optarg; break;
        case 'w': wa_sim_conf.webhook = optarg; break;
        case 's': wa_sim_conf.app_secret_file = optarg; break;
        case 'p': wa_sim_conf.pid_file = optarg; break;
        case 'W': wa_sim_conf.waba_id = optarg; break;
        case 'D': wa_sim_conf.display_phone_number = optarg; break;

        case 'S':
            if (wa_sim_statuses(optarg) != 0) {
                return -1;
            }
            break;

        case 'd':
            if (wa_sim_number("--status-delay-ms", optarg, 86400000,
                              &wa_sim_conf.status_delay_ms) != 0)
            {
                return -1;
            }
            break;

        case 'c':
            if (wa_sim_number("--webhook-connections", optarg, 4, &n) != 0
                || n == 0)
            {
                wa_sim_log("--webhook-connections: 1 to 4");
                return -1;
            }

            wa_sim_conf.webhook_connections = (int) n;
            break;

        case 'm':
            if (wa_sim_number("--max-recorded", optarg, 100000000, &n) != 0) {
                return -1;
            }

            wa_sim_conf.max_recorded = n;
            break;

        case 'h':
            wa_sim_usage(stdout);
            return 1;

        default:
            wa_sim_usage(stderr);
            return -1;
        }
    }

    if (optind != argc || wa_sim_conf.listen == NULL) {
        wa_sim_usage(stderr);
        return -1;
    }

    return 0;
}


/* "sent,delivered,read" (any of them, in the order to send) or "none" */
static int
wa_sim_statuses(const char *list)
{
    int          i, kind;
    size_t       n;
    const char  *p, *end;
    static const char  *names[] = { "sent", "delivered", "read" };

    wa_sim_conf.nstages = 0;

    if (strcmp(list, "none") == 0) {
        return 0;
    }

    for (p = list; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ',');
        if (end == NULL) {
            end = p + strlen(p);
        }

        n = end - p;
        kind = -1;

        for (i = 0; i < WA_SIM_STAGES_MAX; i++) {
            if (strlen(names[i]) == n && strncmp(p, names[i], n) == 0) {
                kind = i;
            }
        }

        for (i = 0; i < wa_sim_conf.nstages; i++) {
            if (wa_sim_conf.stages[i] == kind) {
                kind = -1;
            }
        }

        if (kind < 0) {
            wa_sim_log("--statuses %s: a list of sent, delivered, read "
                       "(each once), or none", list);
            return -1;
        }

        wa_sim_conf.stages[wa_sim_conf.nstages++] = kind;
    }

    return 0;
}


static int
wa_sim_number(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    char                *end;
    unsigned long long   n;

    errno = 0;
    n = strtoull(s, &end, 10);

    if (errno || end == s || *end || s[0] == '-' || n > max) {
        wa_sim_log("%s %s: a number from 0 to %llu", opt, s,
                   (unsigned long long) max);
        return -1;
    }

    *out = n;

    return 0;
}


/* SIGTERM and SIGINT arrive as events of the loop, not as interruptions */
static int
wa_sim_signals(wa_sim_event_t *ev)
{
    sigset_t  set;

    signal(SIGPIPE, SIG_IGN);

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);

    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        return -1;
    }

    ev->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    ev->handler = wa_sim_signal_handler;
    ev->data = NULL;

    if (ev->fd == -1) {
        return -1;
    }

    return wa_sim_event_add(ev, EPOLLIN);
}


static void
wa_sim_signal_handler(wa_sim_event_t *ev, uint32_t events)
{
    struct signalfd_siginfo  si;

    (void) events;

    while (read(ev->fd, &si, sizeof(si)) == sizeof(si)) {
        wa_sim_quit = 1;
    }
}


static int
wa_sim_pid_file(const char *path)
{
    FILE  *f;

    f = fopen(path, "w");

    if (f == NULL || fprintf(f, "%d\n", (int) getpid()) < 0
        || fclose(f) != 0)
    {
        wa_sim_log("--pid-file %s: %s", path, strerror(errno));
        return -1;
    }

    return 0;
}


/* a benchmark opens many connections: take all the descriptors allowed */
static void
wa_sim_more_files(void)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}


static void
wa_sim_usage(FILE *f)
{
    fprintf(f,
        "usage: wa-graph-sim --listen HOST:PORT [options]\n"
        "\n"
        "A local WhatsApp Cloud API (Graph API) for tests: answers\n"
        "POST /{version}/{phone_number_id}/messages as Meta does and posts\n"
        "signed status webhooks back.\n"
        "\n"
        "  --webhook URL               where to POST status webhooks "
        "(http://)\n"
        "  --app-secret-file FILE      the app secret they are signed with\n"
        "  --statuses LIST             sent,delivered,read (default) or "
        "none\n"
        "  --status-delay-ms N         between a message's statuses "
        "(default 0)\n"
        "  --pid-file FILE\n"
        "  --waba-id ID                entry[].id (default %s)\n"
        "  --display-phone-number N    metadata (default %s)\n"
        "  --webhook-connections N     1 to 4 (default %d)\n"
        "  --max-recorded N            requests kept for GET /_sim/requests "
        "(default %zu)\n"
        "\n"
        "Control (same port): POST/DELETE /_sim/rules, GET/DELETE "
        "/_sim/requests,\n"
        "GET /_sim/stats.\n",
        wa_sim_conf.waba_id, wa_sim_conf.display_phone_number,
        wa_sim_conf.webhook_connections, wa_sim_conf.max_recorded);
}
