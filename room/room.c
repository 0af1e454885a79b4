/* room: the event vocabulary, and one way for every module to put an event into a channel's room:
 * appended to the capped history stream, folded into the room's state snapshot, and published to
 * every node, atomically, with the stream id as the event id. */
#include "room.h"

#include <hiredis/hiredis.h>

#include <string.h>

static const char *const event_names[SL_ROOM_EV_COUNT] = {
    [SL_ROOM_EV_CHAT] = "chat",         [SL_ROOM_EV_MODERATION] = "moderation",
    [SL_ROOM_EV_PRESENCE] = "presence", [SL_ROOM_EV_PIN] = "pin",
    [SL_ROOM_EV_UNPIN] = "unpin",       [SL_ROOM_EV_SALE] = "sale",
    [SL_ROOM_EV_STREAM] = "stream",     [SL_ROOM_EV_HIGHLIGHT] = "highlight",
    [SL_ROOM_EV_ORDER] = "order",
};

const char *sl_room_event_name(enum sl_room_event type)
{
    return type > SL_ROOM_EV_UNKNOWN && type < SL_ROOM_EV_COUNT ? event_names[type] : NULL;
}

enum sl_room_event sl_room_event_parse(const char *name)
{
    for (int t = SL_ROOM_EV_UNKNOWN + 1; name && t < SL_ROOM_EV_COUNT; t++)
        if (strcmp(name, event_names[t]) == 0) return (enum sl_room_event)t;
    return SL_ROOM_EV_UNKNOWN;
}

enum sl_room_event sl_room_event_type(const json_t *event)
{
    return sl_room_event_parse(json_string_value(json_object_get(event, "type")));
}

json_t *sl_room_event_new(enum sl_room_event type)
{
    const char *name = sl_room_event_name(type);
    g_return_val_if_fail(name != NULL, NULL);
    return json_pack("{s:s}", "type", name);
}

gboolean sl_room_event_synced(enum sl_room_event type)
{
    return type == SL_ROOM_EV_PIN || type == SL_ROOM_EV_UNPIN || type == SL_ROOM_EV_SALE;
}

static sl_script *room_script;

static void ignore_reply(struct redisReply *reply, const char *err, void *user)
{
    if (reply == NULL) g_warning("room event not stored: %s", err);
}

/* Which snapshot field an event replaces: pin/unpin share "pinned"; each sale has its own. */
static char *state_field(json_t *event, gboolean *remove)
{
    *remove = FALSE;
    switch (sl_room_event_type(event)) {
    case SL_ROOM_EV_PIN:
        return g_strdup("pinned");
    case SL_ROOM_EV_UNPIN:
        *remove = TRUE;
        return g_strdup("pinned");
    case SL_ROOM_EV_SALE: {
        const char *id = json_string_value(json_object_get(json_object_get(event, "sale"), "id"));
        return id ? g_strdup_printf("sale:%s", id) : NULL;
    }
    default:
        return NULL;
    }
}

static int room_emit_now(sl_server *srv, const char *channel, json_t *event, sl_redis_cb cb,
                         void *user)
{
    if (room_script == NULL) room_script = sl_script_new(sl_lua_room_emit);
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
    gboolean synced = sl_room_event_synced(sl_room_event_type(event));
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

void sl_room_subscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user)
{
    char *pub = g_strdup_printf(SL_ROOM_CHANNEL, channel);
    sl_pubsub_subscribe(srv, pub, cb, user);
    g_free(pub);
}

void sl_room_unsubscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user)
{
    char *pub = g_strdup_printf(SL_ROOM_CHANNEL, channel);
    sl_pubsub_unsubscribe(srv, pub, cb, user);
    g_free(pub);
}
