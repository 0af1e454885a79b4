/* room: one way for every module to put an event into a channel's room: appended to the capped
 * history stream, folded into the room's state snapshot, and published to every node,
 * atomically, with the stream id as the event id. */
#include "internal.h"

#include <hiredis/hiredis.h>

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

static int room_emit_now(sl_server *srv, const char *channel, json_t *event, sl_redis_cb cb,
                         void *user)
{
    if (room_script == NULL) {
        char *src = g_strconcat(sl_room_emit_lua, room_emit_body_lua, NULL);
        room_script = sl_script_new(src);
        g_free(src);
    }
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

/* ---- video-synchronised events: pdt_ms ---- */

struct pdt_emit {
    sl_server *srv;
    char *channel; /* owned */
    json_t *event; /* owned reference */
    sl_redis_cb cb;
    void *user;
};

static void pdt_live_loaded(struct redisReply *reply, const char *err, void *user)
{
    struct pdt_emit *e = user;
    json_t *live = reply && reply->type == REDIS_REPLY_STRING
                       ? json_loadb(reply->str, reply->len, 0, NULL)
                       : NULL;
    json_t *offset = json_object_get(live, "pdt_offset_ms");
    if (json_is_integer(offset)) /* live: where the picture was at the moment of the action */
        json_object_set_new(e->event, "pdt_ms",
                            json_integer(json_integer_value(json_object_get(e->event, "ts_ms")) +
                                         json_integer_value(offset)));
    json_decref(live);
    if (room_emit_now(e->srv, e->channel, e->event, e->cb, e->user) != SL_OK) {
        if (e->cb)
            e->cb(NULL, "disconnected", e->user); /* SL_OK was promised: answer once */
        else
            g_warning("room event not stored: disconnected");
    }
    g_free(e->channel);
    json_decref(e->event);
    g_free(e);
}

int sl_room_emit(sl_server *srv, const char *channel, json_t *event, sl_redis_cb cb, void *user)
{
    if (json_object_get(event, "ts_ms") == NULL)
        json_object_set_new(event, "ts_ms", json_integer(sl_now_ms()));
    const char *type = json_string_value(json_object_get(event, "type"));
    gboolean synced = type && (strcmp(type, "pin") == 0 || strcmp(type, "unpin") == 0 ||
                               strcmp(type, "sale") == 0);
    if (!synced || json_object_get(event, "pdt_ms"))
        return room_emit_now(srv, channel, event, cb, user);
    /* Read the channel's live state first (commands on one connection keep their order, so
     * events still enter the room in the order they were emitted). */
    struct pdt_emit *e = g_new0(struct pdt_emit, 1);
    e->srv = srv;
    e->channel = g_strdup(channel);
    e->event = json_incref(event);
    e->cb = cb;
    e->user = user;
    if (sl_redis_command(sl_server_redis(srv), pdt_live_loaded, e, "GET " SL_KEY_CHAN_LIVE,
                         channel) != SL_OK) {
        g_free(e->channel);
        json_decref(e->event);
        g_free(e);
        return SL_ERR;
    }
    return SL_OK;
}
