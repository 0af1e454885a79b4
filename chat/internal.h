/* chat internals: the client message parser and text rules (pure, fuzzed), the refcounted
 * frames that are fanned out, and the hub's shared state. */
#ifndef CHAT_INTERNAL_H
#define CHAT_INTERNAL_H

#include "chat.h"
#include "room/room.h"

#include <stdint.h>

#define CHAT_FRAME_MAX     4096 /* api.md: client frames are at most 4 KiB */
#define CHAT_TEXT_MAX      500  /* characters */
#define CHAT_TOKEN_MAX     2048
#define CHAT_STREAM_ID_MAX 41 /* "<20 digits>-<20 digits>" */

/* ---- msg.c: one client frame, parsed and checked (no I/O) ---- */

enum chat_msg_type { CHAT_MSG_JOIN = 1, CHAT_MSG_CHAT, CHAT_MSG_PING };

struct chat_stream_id {
    uint64_t ms, seq;
};

struct chat_msg {
    enum chat_msg_type type;
    char channel[65];                    /* join */
    char *token;                         /* join, owned, NULL when anonymous */
    gboolean has_since;                  /* join */
    struct chat_stream_id since;         /* join */
    char since_text[CHAT_STREAM_ID_MAX]; /* join: as sent */
    char *text;                          /* chat: owned, cleaned, 1..500 characters */
};

/* Parse one text frame. SL_OK fills *out (free with chat_msg_clear); SL_EPROTO sets *err, whose
 * message goes into the client's error frame. Never reads past len; buf need not end in NUL. */
int chat_msg_parse(const char *buf, size_t len, struct chat_msg *out, GError **err);
void chat_msg_clear(struct chat_msg *m);

/* Strip control characters and surrounding white space from valid UTF-8 text. Returns a new
 * string (g_free) or NULL when the text is not valid UTF-8, empty after cleaning, or longer
 * than max_chars characters. */
char *chat_text_clean(const char *text, size_t len, size_t max_chars);
/* Mask every case-insensitive occurrence of each word with '*', one per character, in place
 * of the word's bytes. words: NULL-terminated, non-empty, valid UTF-8. Returns a new string
 * (g_free) or NULL when nothing matched. */
char *chat_text_mask(const char *text, const char *const *words);

/* "<ms>-<seq>" as Redis stream ids are written. SL_OK or SL_EPROTO. */
int chat_stream_id_parse(const char *s, size_t len, struct chat_stream_id *out);
int chat_stream_id_cmp(const struct chat_stream_id *a, const struct chat_stream_id *b);

/* ---- frames: one serialised server message, shared by every connection it is queued on ---- */

enum chat_frame_kind {
    CHAT_FRAME_EVENT = 0,   /* part of the room's history: never dropped; a full queue closes */
    CHAT_FRAME_COALESCIBLE, /* presence, stock: dropped first when a queue fills up */
    CHAT_FRAME_REPLY,       /* to one connection only (joined, error, pong) */
};

struct chat_frame {
    int refs;
    enum chat_frame_kind kind;
    gboolean has_id;
    struct chat_stream_id id;
    size_t len;     /* of data: the WebSocket frame header and the payload */
    uint8_t data[]; /* a complete unmasked text frame, written to the socket as is */
};

/* A text frame around payload. Returns a frame with one reference. */
struct chat_frame *chat_frame_new(const char *payload, size_t len, enum chat_frame_kind kind);
struct chat_frame *chat_frame_ref(struct chat_frame *f);
void chat_frame_unref(struct chat_frame *f);
/* A frame of a JSON value (the reference to j is stolen). */
struct chat_frame *chat_frame_json(json_t *j, enum chat_frame_kind kind);

/* ---- the hub (hub.c) and its HTTP endpoints (moderation.c) ---- */

#define CHAT_WORDS_MAX  500
#define CHAT_WORD_CHARS 64

struct chat {
    sl_server *srv;
    GHashTable *rooms;                            /* channel -> struct room*, owned */
    GHashTable *conns;                            /* struct conn* set: every open connection */
    sl_script *send, *join, *presence, *moderate; /* owned */
    int64_t rate_messages, rate_window_ms, history, recovery_max;
    int64_t queue_frames, queue_bytes, idle_timeout_s, frame_rate;
    int64_t socket_sndbuf; /* SO_SNDBUF of each connection; 0 (default) leaves the kernel's
                              autotuning */
    guint64 next_conn_id, next_room_serial;
    guint tick_timer, keepalive_timer;
    unsigned ticks;
    gboolean stopping;
    sl_metric *m_conns, *m_rooms, *m_in, *m_out, *m_writes, *m_dropped, *m_slow, *m_refused, *m_bad;
};

struct chat *chat_of(sl_server *srv);
struct redisReply;
/* The pavilion of a channel document as GET answered it: SL_OK fills pav; SL_EPROTO when there
 * is no such channel; SL_ERR when Redis failed. */
int chat_channel_pavilion(struct redisReply *reply, char pav[3]);
void chat_moderation_routes(struct chat *chat);
/* Validate a banned-word list body {"words":[...]}; returns the cleaned array or NULL with
 * *err set. Pure; fuzzed with the client parser. */
json_t *chat_words_validate(json_t *body, GError **err);
/* Validate a moderation body; returns {"action", "user"?, "message_id"?, "duration_ms"} or NULL
 * with *err set. Pure; fuzzed. */
json_t *chat_moderation_validate(json_t *body, GError **err);

#endif
