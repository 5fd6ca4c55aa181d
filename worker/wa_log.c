/*
 * Leveled logging; see wa_log.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "wa_log.h"


wa_log_level_e  wa_log_level = WA_LOG_INFO;

static const char  *wa_log_names[] = { "error", "warn", "info", "debug" };


int
wa_log_parse_level(const char *name, wa_log_level_e *level)
{
    int  i;

    for (i = 0; i <= WA_LOG_DEBUG; i++) {
        if (strcmp(name, wa_log_names[i]) == 0) {
            *level = (wa_log_level_e) i;
            return 0;
        }
    }

    return -1;
}


void
wa_log(wa_log_level_e level, const char *fmt, ...)
{
    char            stamp[32];
    va_list         ap;
    struct tm       tm;
    struct timeval  tv;

    if (level > wa_log_level) {
        return;
    }

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    /* one fprintf per line part; stderr is unbuffered, lines stay whole
     * enough for one process */
    fprintf(stderr, "%s.%03ldZ [%s] ", stamp, (long) tv.tv_usec / 1000,
            wa_log_names[level]);

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);

    fputc('\n', stderr);
}
