/*
 * Leveled logging to stderr (journald or the supervisor adds nothing but
 * what it captures): "2026-11-21T13:00:00.123Z [info] message".
 */

#ifndef WA_LOG_H
#define WA_LOG_H

typedef enum {
    WA_LOG_ERROR = 0,
    WA_LOG_WARN,
    WA_LOG_INFO,
    WA_LOG_DEBUG
} wa_log_level_e;

extern wa_log_level_e  wa_log_level;

int wa_log_parse_level(const char *name, wa_log_level_e *level);
void wa_log(wa_log_level_e level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define wa_log_error(...)  wa_log(WA_LOG_ERROR, __VA_ARGS__)
#define wa_log_warn(...)   wa_log(WA_LOG_WARN, __VA_ARGS__)
#define wa_log_info(...)   wa_log(WA_LOG_INFO, __VA_ARGS__)
#define wa_log_debug(...)                                                 \
    do { if (wa_log_level >= WA_LOG_DEBUG) wa_log(WA_LOG_DEBUG, __VA_ARGS__); } \
    while (0)

#endif /* WA_LOG_H */
