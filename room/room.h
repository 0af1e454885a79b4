/* room: where video, chat and commerce meet. A channel's room is its event vocabulary, a capped
 * history and a state snapshot in Redis, and the pub/sub channel every node listens on; chat,
 * commerce, ingest and transcode put events in and read them through this module. Every Redis
 * key is in room/keys.h and every Lua script in room/lua (as sl_lua_<name>, room/lua_scripts.h). */
#ifndef SL_ROOM_H
#define SL_ROOM_H

#include "core/core.h"
#include "room/keys.h"
#include "room/lua_scripts.h"

/* --demo: the channel commerce seeds with products and a sale, and ingest feeds a test pattern */
#define SL_DEMO_CHANNEL "cl-wine"

/* ---- the event vocabulary (api.md "WebSocket": server events) ---- */

enum sl_room_event {
    SL_ROOM_EV_UNKNOWN = 0,
    SL_ROOM_EV_CHAT,       /* a viewer's message (chat) */
    SL_ROOM_EV_MODERATION, /* a message deleted, a user muted or banned (chat) */
    SL_ROOM_EV_PRESENCE,   /* viewers across nodes (chat; published, not kept) */
    SL_ROOM_EV_PIN,        /* a product pinned (commerce) */
    SL_ROOM_EV_UNPIN,      /* the pin taken down (commerce) */
    SL_ROOM_EV_SALE,       /* a flash sale's state or stock changed (commerce) */
    SL_ROOM_EV_STREAM,     /* publish, unpublish, offline (transcode) */
    SL_ROOM_EV_HIGHLIGHT,  /* a replay clip is ready (transcode) */
    SL_ROOM_EV_ORDER, /* an order changed: for the pavilion's staff only, not kept (commerce) */
    SL_ROOM_EV_COUNT
};

/* The wire name ("chat", "pin", ...); NULL for UNKNOWN. */
const char *sl_room_event_name(enum sl_room_event type);
/* The type of a wire name (or of an event object's "type"); UNKNOWN when it is none of them. */
enum sl_room_event sl_room_event_parse(const char *name);
enum sl_room_event sl_room_event_type(const json_t *event);
/* A new event object {"type": name}; the caller adds its fields and owns it. */
json_t *sl_room_event_new(enum sl_room_event type);
/* Events tied to the picture: while the channel is live they carry "pdt_ms", the
 * program-date-time of the live picture at the action, and players show them at that moment. */
gboolean sl_room_event_synced(enum sl_room_event type);

/* ---- emit ---- */

/* Appends event to the channel's history stream (capped at SL_ROOM_HISTORY_MAX), updates the
 * state snapshot for pin/unpin/sale events and publishes it on SL_ROOM_CHANNEL with its history
 * id, in one script (sl_lua_room_emit). event gets "ts_ms" when it has none, and synced events
 * get "pdt_ms" while the channel is live; the published text starts with "id". cb may be NULL.
 * SL_OK: cb is called once. SL_ERR: not connected, cb never called. */
int sl_room_emit(sl_server *srv, const char *channel, json_t *event, sl_redis_cb cb, void *user);

/* ---- subscribe ---- */

/* Every node's copy of a room's events, as published (text starting with "id"); cb gets msg NULL
 * when the subscription became active (first, and after a reconnect), the moment to read what
 * was missed. The history and the snapshot are read by the scripts that need them with their
 * own checks in the same step (room/lua/chat_join.lua). */
void sl_room_subscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user);
void sl_room_unsubscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user);

#endif
