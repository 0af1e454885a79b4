/* room: one way for every module to put an event into a channel's room: appended to the capped
 * history stream and published to every node, atomically, with the stream id as the event id. */
#include "internal.h"

#include <string.h>

#define ROOM_HISTORY_MAX "2000"

/* The event id is only known after XADD; it is spliced into the published text so every node
 * sees the same id that a later `since` recovery will use. The stored entry carries the text
 * without it (its own stream id is the id). */
static const char room_emit_lua[] =
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])\n"
    "local msg = '{\"id\":\"' .. id .. '\",' .. string.sub(ARGV[2], 2)\n"
    "redis.call('PUBLISH', ARGV[1], msg)\n"
    "return id\n";

static sl_script *room_script;

static void ignore_reply(struct redisReply *reply, const char *err, void *user)
{
    if (reply == NULL) g_warning("room event not stored: %s", err);
}

int sl_room_emit(sl_server *srv, const char *channel, json_t *event, sl_redis_cb cb, void *user)
{
    if (room_script == NULL) room_script = sl_script_new(room_emit_lua);
    if (json_object_get(event, "ts_ms") == NULL)
        json_object_set_new(event, "ts_ms", json_integer(sl_now_ms()));
    char *text = json_dumps(event, JSON_COMPACT);
    char *key = g_strdup_printf("sl:{room:%s}:history", channel);
    char *pub = g_strdup_printf("silklive:room:%s", channel);
    const char *argv[] = {key, pub, text, ROOM_HISTORY_MAX};
    int rc = sl_redis_eval(sl_server_redis(srv), room_script, cb ? cb : ignore_reply, user, 1, 4,
                           argv, NULL);
    free(text);
    g_free(key);
    g_free(pub);
    return rc;
}
