/*
 * The publish of realtime events, one script so that each event's XADD to
 * the capped stream and its PUBLISH are one atomic step: the worker runs
 * it, and bench/sse-load publishes exactly as the worker does.
 */

#ifndef WA_PUBLISH_H
#define WA_PUBLISH_H

/*
 * KEYS[1] = wa:updates (stream and channel), ARGV[1] = cap, then pairs
 * of event name and JSON data.  The stream id becomes the SSE id.
 */
#define WA_PUBLISH_SCRIPT                                                    \
    "local n = 0\n"  \
    "for i = 2, #ARGV, 2 do\n"  \
    "  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',\n"  \
    "                        'event', ARGV[i], 'data', ARGV[i + 1])\n"  \
    "  redis.call('PUBLISH', KEYS[1], id .. ' {\"event\":\"' .. ARGV[i]\n"  \
    "                                    .. '\",\"data\":' .. ARGV[i + 1] .. '}')\n"  \
    "  n = n + 1\n"  \
    "end\n"  \
    "return n\n"

#endif /* WA_PUBLISH_H */
