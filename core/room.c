/* room: one way for every module to put an event into a channel's room: appended to the capped
 * history stream, folded into the room's state snapshot, and published to every node,
 * atomically, with the stream id as the event id. */
#include "internal.h"

#include <string.h>

/* The event id is only known after XADD; it is spliced into the published text so every node
 * sees the same id that a later `since` recovery will use. The stored entry carries the text
 * without it (its own stream id is the id). Other scripts that append to a room (chat's send)
 * start with this same function so there is one definition of the wire form. */
const char sl_room_emit_lua[] =
    "local function room_emit(history, channel, text, maxlen)\n"
    "  local id = redis.call('XADD', history, 'MAXLEN', '~', maxlen, '*', 'e', text)\n"
    "  local msg = '{\"id\":\"' .. id .. '\",' .. string.sub(text, 2)\n"
    "  redis.call('PUBLISH', channel, msg)\n"
    "  return id, msg\n"
    "end\n";

/* KEYS: history, state. ARGV: channel, text, maxlen, state field ('' for none), state value
 * ('' deletes the field). The snapshot is what a joining viewer needs besides history: the
 * pinned product and the channel's sales, each as of its latest event. */
static const char room_emit_body_lua[] =
    "local id, msg = room_emit(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"
    "if ARGV[4] ~= '' then\n"
    "  if ARGV[5] == '' then redis.call('HDEL', KEYS[2], ARGV[4])\n"
    "  else redis.call('HSET', KEYS[2], ARGV[4], msg) end\n"
    "end\n"
    "return id\n";

static sl_script *room_script;

static void ignore_reply(struct redisReply *reply, const char *err, void *user)
{
    if (reply == NULL) g_warning("room event not stored: %s", err);
}

/* Which snapshot field an event replaces: pin/unpin share "pinned"; each sale has its own. */
static char *state_field(json_t *event, gboolean *remove)
{
    const char *type = json_string_value(json_object_get(event, "type"));
    *remove = FALSE;
    if (type == NULL) return NULL;
    if (strcmp(type, "pin") == 0) return g_strdup("pinned");
    if (strcmp(type, "unpin") == 0) {
        *remove = TRUE;
        return g_strdup("pinned");
    }
    if (strcmp(type, "sale") == 0) {
        const char *id = json_string_value(json_object_get(json_object_get(event, "sale"), "id"));
        return id ? g_strdup_printf("sale:%s", id) : NULL;
    }
    return NULL;
}

int sl_room_emit(sl_server *srv, const char *channel, json_t *event, sl_redis_cb cb, void *user)
{
    if (room_script == NULL) {
        char *src = g_strconcat(sl_room_emit_lua, room_emit_body_lua, NULL);
        room_script = sl_script_new(src);
        g_free(src);
    }
    if (json_object_get(event, "ts_ms") == NULL)
        json_object_set_new(event, "ts_ms", json_integer(sl_now_ms()));
    char *text = json_dumps(event, JSON_COMPACT);
    char *key = g_strdup_printf(SL_KEY_ROOM_HISTORY, channel);
    char *state = g_strdup_printf(SL_KEY_ROOM_STATE, channel);
    char *pub = g_strdup_printf(SL_ROOM_CHANNEL, channel);
    char maxlen[16];
    g_snprintf(maxlen, sizeof maxlen, "%d", SL_ROOM_HISTORY_MAX);
    gboolean remove = FALSE;
    char *field = state_field(event, &remove);
    const char *argv[] = {key, state, pub, text, maxlen, field ? field : "", remove ? "" : "1"};
    int rc = sl_redis_eval(sl_server_redis(srv), room_script, cb ? cb : ignore_reply, user, 2, 7,
                           argv, NULL);
    free(text);
    g_free(key);
    g_free(state);
    g_free(pub);
    g_free(field);
    return rc;
}
