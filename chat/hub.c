/* hub: WebSocket connections on the HTTP vhost (subprotocol silklive.v1), rooms per channel
 * fed by Redis pub/sub, fan-out of shared frames through bounded per-connection queues, join
 * with history and recovery, chat sends, presence across nodes, keepalive and shutdown. */
#include "internal.h"

#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH_MAX           16384 /* bytes of queued frames written in one go */
#define PRESENCE_STALE_MS   5000
#define VIEWERS_TTL_MS      10000
#define WORDS_REFRESH_TICKS 30 /* besides the control message, in case one was lost */
#define KEEPALIVE_S         10 /* how often idle connections are looked at */
#define PING_AFTER_S        30
#define BAD_FRAMES_MAX      20 /* invalid frames in a row before the connection is closed */
#define ENDED_SALE_SHOWN_MS (3600 * 1000) /* ended sales stay in `joined` this long */

enum conn_state { CONN_IDLE, CONN_JOINING, CONN_JOINED };

struct room {
    struct chat *chat;
    char *channel; /* owned */
    char *pub;     /* owned: silklive:room:<channel> */
    guint64 serial;
    char pav[3];
    gboolean loaded, active, recovering;
    GPtrArray *members; /* struct conn*, borrowed: a conn removes itself */
    GPtrArray *held;    /* GBytes*, owned: live events that arrived during a recovery */
    gboolean has_last;
    struct chat_stream_id last; /* the newest event fanned out */
    int64_t viewers;            /* across nodes, as last summed */
    gchar **words;              /* owned: the pavilion's banned words */
};

struct conn {
    int refs; /* the socket holds one; each Redis call in flight holds one */
    struct chat *chat;
    struct lws *wsi; /* NULL once closed */
    guint64 id;
    enum conn_state state;
    struct room *room; /* while JOINING or JOINED */
    guint room_index;
    guint64 join_gen; /* a join reply for an older join is ignored */
    struct sl_claims who;
    gboolean authed;
    char since[CHAT_STREAM_ID_MAX];
    /* The newest event `joined` held: a live event up to it arriving later (pub/sub lags the
     * history read) was already delivered and is dropped. */
    struct chat_stream_id floor;
    gboolean has_floor;
    /* the send queue: a ring of shared frames */
    struct chat_frame **q; /* owned array; each frame holds one reference */
    guint q_head, q_len, q_cap;
    size_t q_bytes;
    GByteArray *rx; /* owned: a message arriving in fragments */
    int close_code;
    char close_reason[64];
    int bad_frames;
    double frame_tokens;
    gint64 frame_ts_us, last_rx_us;
    gboolean ping_sent;
};

struct conn_slot {
    struct conn *c;
};

static uint8_t write_scratch[LWS_PRE + BATCH_MAX];
static const uint8_t ping_frame[] = {0x89, 0x00};

struct chat *chat_of(sl_server *srv)
{
    return sl_server_module_data(srv, SL_MODULE_CHAT);
}

/* ---- connections: references, queue, close ---- */

static struct conn *conn_ref(struct conn *c)
{
    c->refs++;
    return c;
}

static void queue_clear(struct conn *c)
{
    for (guint i = 0; i < c->q_len; i++)
        chat_frame_unref(c->q[(c->q_head + i) % c->q_cap]);
    c->q_head = c->q_len = 0;
    c->q_bytes = 0;
}

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0) return;
    queue_clear(c);
    g_free(c->q);
    if (c->rx) g_byte_array_unref(c->rx);
    g_free(c);
}

static struct chat_frame *queue_at(const struct conn *c, guint i)
{
    return c->q[(c->q_head + i) % c->q_cap];
}

static void queue_grow(struct conn *c)
{
    guint cap = c->q_cap ? c->q_cap * 2 : 4;
    struct chat_frame **q = g_new(struct chat_frame *, cap);
    for (guint i = 0; i < c->q_len; i++)
        q[i] = queue_at(c, i);
    g_free(c->q);
    c->q = q;
    c->q_cap = cap;
    c->q_head = 0;
}

/* Keep only the frames keep() accepts, in order. */
static void queue_filter(struct conn *c, gboolean (*keep)(const struct chat_frame *, const void *),
                         const void *arg, guint *removed)
{
    guint n = 0;
    *removed = 0;
    for (guint i = 0; i < c->q_len; i++) {
        struct chat_frame *f = queue_at(c, i);
        if (keep(f, arg)) {
            c->q[(c->q_head + n++) % c->q_cap] = f;
        } else {
            c->q_bytes -= f->len;
            chat_frame_unref(f);
            (*removed)++;
        }
    }
    c->q_len = n;
}

static gboolean keep_not_coalescible(const struct chat_frame *f, const void *arg)
{
    return f->kind != CHAT_FRAME_COALESCIBLE;
}

static gboolean keep_replies(const struct chat_frame *f, const void *arg)
{
    return f->kind == CHAT_FRAME_REPLY;
}

static gboolean keep_newer(const struct chat_frame *f, const void *newest)
{
    return !f->has_id || chat_stream_id_cmp(&f->id, newest) > 0;
}

static gboolean conn_sending(const struct conn *c)
{
    return c->state != CONN_JOINING; /* a joining connection holds live events for `joined` */
}

/* Close with a WebSocket status once the close frame can be written; a peer that does not
 * read gets no more than a few seconds to take it. The queue is dropped now. */
static void conn_close(struct conn *c, int code, const char *reason)
{
    if (c->wsi == NULL || c->close_code) return;
    g_message("ws %" G_GUINT64_FORMAT " (%s): closing %d: %s", c->id,
              c->room ? c->room->channel : "-", code, reason);
    c->close_code = code;
    g_strlcpy(c->close_reason, reason, sizeof c->close_reason);
    queue_clear(c);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 3);
    lws_callback_on_writable(c->wsi);
}

/* Queue one shared frame. A full queue first sheds what can be coalesced (presence, stock);
 * a connection that is still full is a slow consumer and is closed with 1008. */
static void conn_enqueue(struct conn *c, struct chat_frame *f, gboolean front)
{
    struct chat *chat = c->chat;
    if (c->wsi == NULL || c->close_code) return;
    if (c->has_floor && !keep_newer(f, &c->floor)) return;
    guint max = (guint)chat->queue_frames;
    if (f->kind == CHAT_FRAME_COALESCIBLE && c->q_len >= max / 4) {
        sl_metric_add(chat->m_dropped, 1);
        return;
    }
    if (!front && (c->q_len >= max || c->q_bytes + f->len > (size_t)chat->queue_bytes)) {
        guint removed = 0;
        queue_filter(c, keep_not_coalescible, NULL, &removed);
        sl_metric_add(chat->m_dropped, removed);
        if (c->q_len >= max || c->q_bytes + f->len > (size_t)chat->queue_bytes) {
            sl_metric_add(chat->m_slow, 1);
            conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow consumer");
            return;
        }
    }
    if (c->q_len == c->q_cap) queue_grow(c);
    if (front) {
        c->q_head = (c->q_head + c->q_cap - 1) % c->q_cap;
        c->q[c->q_head] = chat_frame_ref(f);
    } else {
        c->q[(c->q_head + c->q_len) % c->q_cap] = chat_frame_ref(f);
    }
    c->q_len++;
    c->q_bytes += f->len;
    if (conn_sending(c) && (c->q_len == 1 || front)) lws_callback_on_writable(c->wsi);
}

static void conn_send_json(struct conn *c, json_t *j)
{
    struct chat_frame *f = chat_frame_json(j, CHAT_FRAME_REPLY);
    conn_enqueue(c, f, FALSE);
    chat_frame_unref(f);
}

static void conn_error(struct conn *c, const char *code, const char *message)
{
    conn_send_json(c,
                   json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message));
}

static int conn_writeable(struct conn *c, struct lws *wsi)
{
    if (c->close_code) {
        lws_close_reason(wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        return -1;
    }
    if (c->q_len == 0 || !conn_sending(c)) return 0;
    /* Frames are complete, unmasked and the same for every reader: write them as they are,
     * several at a time when they queued up (one syscall instead of one per event). */
    struct chat_frame *f = queue_at(c, 0);
    const uint8_t *out = f->data;
    size_t n = f->len;
    guint k = 1;
    if (c->q_len > 1 && f->len < BATCH_MAX) {
        uint8_t *p = write_scratch + LWS_PRE;
        n = 0;
        for (k = 0; k < c->q_len && n + queue_at(c, k)->len <= BATCH_MAX; k++) {
            memcpy(p + n, queue_at(c, k)->data, queue_at(c, k)->len);
            n += queue_at(c, k)->len;
        }
        out = p;
    }
    if (lws_write(wsi, (unsigned char *)out, n, LWS_WRITE_RAW) != (int)n) return -1;
    for (guint i = 0; i < k; i++) {
        struct chat_frame *done = queue_at(c, 0);
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
        c->q_bytes -= done->len;
        chat_frame_unref(done);
    }
    sl_metric_add(c->chat->m_out, k);
    sl_metric_add(c->chat->m_writes, 1);
    if (c->q_len) lws_callback_on_writable(wsi);
    return 0;
}

/* ---- rooms ---- */

static void room_load(struct room *r);
static void room_on_message(const char *channel, const char *msg, size_t len, void *user);
static void join_read(struct conn *c);

/* The room of channel on this node; *created when it is new (and not loaded yet). */
static struct room *room_get(struct chat *chat, const char *channel, gboolean *created)
{
    struct room *r = g_hash_table_lookup(chat->rooms, channel);
    *created = r == NULL;
    if (r) return r;
    r = g_new0(struct room, 1);
    r->chat = chat;
    r->channel = g_strdup(channel);
    r->pub = g_strdup_printf(SL_ROOM_CHANNEL, channel);
    r->serial = ++chat->next_room_serial;
    r->members = g_ptr_array_new();
    r->held = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_hash_table_insert(chat->rooms, r->channel, r);
    sl_metric_set(chat->m_rooms, g_hash_table_size(chat->rooms));
    sl_room_subscribe(chat->srv, r->channel, room_on_message, r);
    return r;
}

static void room_free(gpointer data)
{
    struct room *r = data;
    g_ptr_array_unref(r->members);
    g_ptr_array_unref(r->held);
    g_strfreev(r->words);
    g_free(r->channel);
    g_free(r->pub);
    g_free(r);
}

/* A reply for a room that may be gone by now: it names the room by channel and serial. */
struct room_ref {
    struct chat *chat;
    char *channel; /* owned */
    guint64 serial;
};

/* serial 0 names no room (serials start at 1): for a channel this node has left. */
static struct room_ref *room_ref_for(struct chat *chat, const char *channel, guint64 serial)
{
    struct room_ref *ref = g_new0(struct room_ref, 1);
    ref->chat = chat;
    ref->channel = g_strdup(channel);
    ref->serial = serial;
    return ref;
}

static struct room_ref *room_ref_new(struct room *r)
{
    return room_ref_for(r->chat, r->channel, r->serial);
}

/* The room the reference names, if it still exists; frees the reference. */
static struct room *room_ref_take(struct room_ref *ref)
{
    struct room *r = g_hash_table_lookup(ref->chat->rooms, ref->channel);
    if (r && r->serial != ref->serial) r = NULL;
    g_free(ref->channel);
    g_free(ref);
    return r;
}

static void presence_report(struct chat *chat, const char *channel, int64_t local, struct room *r);

static void room_remove(struct conn *c)
{
    struct room *r = c->room;
    if (r == NULL) return;
    struct conn *last = g_ptr_array_index(r->members, r->members->len - 1);
    last->room_index = c->room_index;
    g_ptr_array_remove_index_fast(r->members, c->room_index);
    c->room = NULL;
    if (c->state == CONN_JOINING) { /* the live events it held belong to a join that failed */
        guint removed;
        queue_filter(c, keep_replies, NULL, &removed);
    }
    c->state = CONN_IDLE;
    if (c->q_len && c->wsi) lws_callback_on_writable(c->wsi);
    if (r->members->len > 0) return;
    /* The last member left: this node stops listening and stops counting viewers here. */
    struct chat *chat = r->chat;
    sl_room_unsubscribe(chat->srv, r->channel, room_on_message, r);
    presence_report(chat, r->channel, 0, NULL);
    g_hash_table_remove(chat->rooms, r->channel);
    sl_metric_set(chat->m_rooms, g_hash_table_size(chat->rooms));
}

static void room_add(struct room *r, struct conn *c)
{
    c->room = r;
    c->room_index = r->members->len;
    g_ptr_array_add(r->members, c);
}

/* Joining members whose history can be read now: the room is known and its subscription is
 * live, so nothing published after the read can be missed. */
static void room_start_joins(struct room *r)
{
    if (!r->loaded || !r->active || r->recovering) return;
    for (guint i = 0; i < r->members->len; i++) {
        struct conn *c = g_ptr_array_index(r->members, i);
        if (c->state == CONN_JOINING) join_read(c);
    }
}

/* Answers every member and empties the room, which frees it: r is gone afterwards. */
static void room_fail_members(struct room *r, const char *code, const char *message)
{
    for (guint n = r->members->len; n-- > 0;) {
        struct conn *c = g_ptr_array_index(r->members, n);
        conn_error(c, code, message);
        room_remove(c);
    }
}

/* A command about room r whose reply finds the room again by reference. SL_OK or SL_ERR (not
 * connected; cb is never called). */
static int room_command(struct room *r, sl_redis_cb cb, const char *fmt, ...)
{
    struct room_ref *ref = room_ref_new(r);
    va_list ap;
    va_start(ap, fmt);
    int rc = sl_redis_vcommand(sl_server_redis(r->chat->srv), cb, ref, fmt, ap);
    va_end(ap);
    if (rc != SL_OK) room_ref_take(ref);
    return rc;
}

static void room_words_loaded(struct redisReply *reply, const char *err, void *user)
{
    struct room *r = room_ref_take(user);
    if (r == NULL || reply == NULL || reply->type == REDIS_REPLY_ERROR) return; /* keep the list */
    json_t *a =
        reply->type == REDIS_REPLY_STRING ? json_loadb(reply->str, reply->len, 0, NULL) : NULL;
    GPtrArray *w = g_ptr_array_new();
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && json_string_length(v) > 0)
            g_ptr_array_add(w, g_strdup(json_string_value(v)));
    }
    g_ptr_array_add(w, NULL);
    g_strfreev(r->words);
    r->words = (gchar **)g_ptr_array_free(w, FALSE);
    json_decref(a);
}

static void room_words_refresh(struct room *r)
{
    if (r->loaded && r->pav[0])
        room_command(r, room_words_loaded, "GET " SL_KEY_BANNED_WORDS, r->pav);
}

static void room_loaded(struct redisReply *reply, const char *err, void *user)
{
    struct room *r = room_ref_take(user);
    if (r == NULL) return;
    int rc = chat_channel_pavilion(reply, r->pav);
    if (rc != SL_OK) {
        if (rc == SL_EPROTO)
            room_fail_members(r, "not_found", "no such channel");
        else
            room_fail_members(r, "unavailable", "the store is unavailable; join again");
        return;
    }
    r->loaded = TRUE;
    room_words_refresh(r);
    room_start_joins(r);
}

int chat_channel_pavilion(struct redisReply *reply, char pav[3])
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) return SL_ERR;
    json_t *doc =
        reply->type == REDIS_REPLY_STRING ? json_loadb(reply->str, reply->len, 0, NULL) : NULL;
    const char *p = json_string_value(json_object_get(doc, "pavilion"));
    if (p) g_strlcpy(pav, p, 3);
    json_decref(doc);
    return p ? SL_OK : SL_EPROTO;
}

/* Reads the channel document once per room. May free r (Redis not connected). */
static void room_load(struct room *r)
{
    if (room_command(r, room_loaded, "GET " SL_KEY_CHANNEL, r->channel) != SL_OK)
        room_fail_members(r, "unavailable", "the store is unavailable; join again");
}

/* ---- fan-out ---- */

static void room_kick(struct room *r, const char *user)
{
    for (guint i = 0; i < r->members->len; i++) {
        struct conn *c = g_ptr_array_index(r->members, i);
        if (c->authed && strcmp(c->who.sub, user) == 0)
            conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "banned from this channel");
    }
}

/* One event as published (its text starts with "id"): dropped if this room has already fanned
 * it out (recovery and live delivery overlap), else queued once on every member. */
static void room_deliver(struct room *r, const char *msg, size_t len)
{
    json_t *j = json_loadb(msg, len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type == NULL) {
        json_decref(j);
        return;
    }
    if (type[0] == '_') { /* between nodes only */
        const char *user = json_string_value(json_object_get(j, "user"));
        if (strcmp(type, "_kick") == 0 && user) room_kick(r, user);
        json_decref(j);
        return;
    }
    if (sl_room_event_parse(type) == SL_ROOM_EV_ORDER) {
        /* orders carry buyers' details: only the staff of the order's pavilion get them */
        const char *pav = json_string_value(json_object_get(j, "pavilion"));
        struct chat_frame *f = chat_frame_new(msg, len, CHAT_FRAME_EVENT);
        for (guint i = 0; i < r->members->len; i++) {
            struct conn *c = g_ptr_array_index(r->members, i);
            if (c->authed &&
                (c->who.role == SL_ROLE_ADMIN ||
                 (c->who.role >= SL_ROLE_CONSUL && pav && strcmp(c->who.pav, pav) == 0)))
                conn_enqueue(c, f, FALSE);
        }
        chat_frame_unref(f);
        json_decref(j);
        return;
    }
    enum chat_frame_kind kind = CHAT_FRAME_EVENT;
    const char *event = json_string_value(json_object_get(j, "event"));
    if (sl_room_event_parse(type) == SL_ROOM_EV_SALE && event && strcmp(event, "stock") == 0)
        kind = CHAT_FRAME_COALESCIBLE; /* the next stock event, or sold_out, carries the count */
    struct chat_stream_id id;
    const char *ids = json_string_value(json_object_get(j, "id"));
    gboolean has_id = ids && chat_stream_id_parse(ids, strlen(ids), &id) == SL_OK;
    json_decref(j);
    if (has_id) {
        if (r->has_last && chat_stream_id_cmp(&id, &r->last) <= 0) return;
        r->last = id;
        r->has_last = TRUE;
    }
    struct chat_frame *f = chat_frame_new(msg, len, kind);
    f->has_id = has_id;
    if (has_id) f->id = id;
    for (guint i = 0; i < r->members->len; i++)
        conn_enqueue(g_ptr_array_index(r->members, i), f, FALSE);
    chat_frame_unref(f);
}

/* The text a room event was published with: its stream id spliced in front of the stored
 * text, as room_emit does. */
static GBytes *event_text(const char *id, const char *text, size_t len)
{
    GString *s = g_string_sized_new(len + 32);
    g_string_append_printf(s, "{\"id\":\"%s\",", id);
    g_string_append_len(s, text + 1, (gssize)len - 1);
    gsize n = s->len;
    return g_bytes_new_take(g_string_free(s, FALSE), n);
}

static void room_recovered(struct redisReply *reply, const char *err, void *user)
{
    struct room *r = room_ref_take(user);
    if (r == NULL) return;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            redisReply *e = reply->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements != 2)
                continue;
            redisReply *text = e->element[1]->element[1];
            if (text->len < 2) continue;
            GBytes *b = event_text(e->element[0]->str, text->str, text->len);
            gsize n;
            const char *d = g_bytes_get_data(b, &n);
            room_deliver(r, d, n);
            g_bytes_unref(b);
        }
    } else {
        g_warning("room %s: events missed during a Redis outage could not be read: %s", r->channel,
                  reply ? reply->str : err);
    }
    r->recovering = FALSE;
    for (guint i = 0; i < r->held->len; i++) {
        gsize n;
        const char *d = g_bytes_get_data(g_ptr_array_index(r->held, i), &n);
        room_deliver(r, d, n);
    }
    g_ptr_array_set_size(r->held, 0);
    room_start_joins(r);
}

static void room_on_message(const char *channel, const char *msg, size_t len, void *user)
{
    struct room *r = user;
    if (msg == NULL) {
        /* (Re)subscribed. After an outage, read what was published while we were away; live
         * events wait behind that read so members see them in order. */
        r->active = TRUE;
        if (r->has_last) {
            char since[CHAT_STREAM_ID_MAX + 1];
            g_snprintf(since, sizeof since, "(%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT, r->last.ms,
                       r->last.seq);
            r->recovering =
                room_command(r, room_recovered, "XRANGE " SL_KEY_ROOM_HISTORY " %s + COUNT %d",
                             r->channel, since, SL_ROOM_HISTORY_MAX) == SL_OK;
        }
        room_start_joins(r);
        return;
    }
    if (r->recovering) {
        g_ptr_array_add(r->held, g_bytes_new(msg, len));
        return;
    }
    room_deliver(r, msg, len);
}

/* ---- presence ---- */

/* The sum is stored for the channel even when the room is gone from this node (its last
 * viewer here left): other nodes may still count viewers, or the count is now 0. */
static void presence_summed(struct redisReply *reply, const char *err, void *user)
{
    struct room_ref *ref = user;
    gboolean counted = reply && reply->type == REDIS_REPLY_INTEGER;
    int64_t sum = counted ? reply->integer : 0;
    if (counted) {
        char key[128];
        g_snprintf(key, sizeof key, SL_KEY_CHAN_VIEWERS, ref->channel);
        sl_redis_command(sl_server_redis(ref->chat->srv), NULL, NULL, "SET %s %lld PX %d", key,
                         (long long)sum, VIEWERS_TTL_MS);
    }
    struct room *r = room_ref_take(ref);
    if (counted) {
        if (r && sum != r->viewers) {
            r->viewers = sum;
            struct chat_frame *f = chat_frame_json(
                json_pack("{s:s, s:I}", "type", sl_room_event_name(SL_ROOM_EV_PRESENCE), "viewers",
                          (json_int_t)sum),
                CHAT_FRAME_COALESCIBLE);
            for (guint i = 0; i < r->members->len; i++) {
                struct conn *c = g_ptr_array_index(r->members, i);
                if (c->state == CONN_JOINED) conn_enqueue(c, f, FALSE);
            }
            chat_frame_unref(f);
        }
    }
}

/* Writes this node's viewers of a room and reads the sum over every node; r is NULL when the
 * room is gone from this node (local is then 0). */
static void presence_report(struct chat *chat, const char *channel, int64_t local, struct room *r)
{
    char key[128], count[24], now[24], stale[16];
    g_snprintf(key, sizeof key, SL_KEY_ROOM_PRESENCE, channel);
    g_snprintf(count, sizeof count, "%lld", (long long)local);
    g_snprintf(now, sizeof now, "%lld", (long long)sl_now_ms());
    g_snprintf(stale, sizeof stale, "%d", PRESENCE_STALE_MS);
    const char *argv[] = {key, sl_server_node_id(chat->srv), count, now, stale};
    struct room_ref *ref = r ? room_ref_new(r) : room_ref_for(chat, channel, 0);
    if (sl_redis_eval(sl_server_redis(chat->srv), chat->presence, presence_summed, ref, 1, 5, argv,
                      NULL) != SL_OK)
        room_ref_take(ref);
}

/* Control messages between nodes: a pavilion's banned words changed. After a resubscribe
 * (msg NULL) a change may have been missed: every room reloads. */
static void chat_on_control(const char *channel, const char *msg, size_t len, void *user)
{
    struct chat *chat = user;
    json_t *j = msg ? json_loadb(msg, len, 0, NULL) : NULL;
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *pav = json_string_value(json_object_get(j, "pavilion"));
    if (msg == NULL || (type && pav && strcmp(type, "banned_words") == 0)) {
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, chat->rooms);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
            struct room *r = v;
            if (pav == NULL || strcmp(r->pav, pav) == 0) room_words_refresh(r);
        }
    }
    json_decref(j);
}

static gboolean chat_tick(gpointer data)
{
    struct chat *chat = data;
    chat->ticks++;
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, chat->rooms);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        struct room *r = v;
        presence_report(chat, r->channel, r->members->len, r);
        if (chat->ticks % WORDS_REFRESH_TICKS == 0) room_words_refresh(r);
    }
    return G_SOURCE_CONTINUE;
}

/* ---- join ---- */

struct join_ctx {
    struct conn *c; /* reference */
    guint64 gen;
};

/* The snapshot hash (field, event text, ...): the pinned product and the channel's sales. */
static void joined_state(struct redisReply *state, json_t **pinned, json_t *sales)
{
    int64_t now = sl_now_ms();
    for (size_t i = 0; i + 1 < state->elements; i += 2) {
        redisReply *v = state->element[i + 1];
        json_t *ev = json_loadb(v->str, v->len, 0, NULL);
        if (strcmp(state->element[i]->str, "pinned") == 0) {
            json_t *p = json_object_get(ev, "product");
            if (p) *pinned = json_incref(p);
        } else if (g_str_has_prefix(state->element[i]->str, "sale:")) {
            json_t *sale = json_object_get(ev, "sale");
            const char *st = json_string_value(json_object_get(sale, "state"));
            int64_t ts = json_integer_value(json_object_get(ev, "ts_ms"));
            if (sale && !(st && strcmp(st, "ended") == 0 && ts + ENDED_SALE_SHOWN_MS < now))
                json_array_append(sales, sale);
        }
        json_decref(ev);
    }
}

/* `joined`, assembled as text: the history entries are our own JSON and are spliced in as
 * they are stored, not parsed and printed again. */
static struct chat_frame *joined_frame(struct conn *c, redisReply *reply)
{
    struct room *r = c->room;
    json_t *pinned = NULL, *sales = json_array();
    joined_state(reply->element[4], &pinned, sales);
    int64_t viewers = MAX(r->viewers, (int64_t)r->members->len);
    GString *s = g_string_new("{\"type\":\"joined\",\"channel\":\"");
    g_string_append_printf(s, "%s\",\"viewers\":%lld,\"gap\":%s,\"history\":[", r->channel,
                           (long long)viewers, reply->element[1]->integer ? "true" : "false");
    redisReply *h = reply->element[3];
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        if (h->element[i + 1]->len < 2) continue;
        if (s->str[s->len - 1] != '[') g_string_append_c(s, ',');
        g_string_append_printf(s, "{\"id\":\"%s\",", h->element[i]->str);
        g_string_append_len(s, h->element[i + 1]->str + 1, (gssize)h->element[i + 1]->len - 1);
    }
    char *p = pinned ? json_dumps(pinned, JSON_COMPACT) : NULL;
    char *sa = json_dumps(sales, JSON_COMPACT);
    g_string_append_printf(s, "],\"pinned\":%s,\"sales\":%s", p ? p : "null", sa);
    if (c->authed)
        g_string_append_printf(s, ",\"user\":{\"id\":\"%s\",\"role\":\"%s\"}", c->who.sub,
                               sl_role_name(c->who.role));
    g_string_append_c(s, '}');
    free(p);
    free(sa);
    json_decref(pinned);
    json_decref(sales);
    struct chat_frame *f = chat_frame_new(s->str, s->len, CHAT_FRAME_REPLY);
    g_string_free(s, TRUE);
    return f;
}

static void join_replied(struct redisReply *reply, const char *err, void *user)
{
    struct join_ctx *j = user;
    struct conn *c = j->c;
    if (c->wsi == NULL || c->join_gen != j->gen || c->state != CONN_JOINING) goto out;
    const char *status = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
                                 reply->element[0]->type == REDIS_REPLY_STRING
                             ? reply->element[0]->str
                             : "";
    if (strcmp(status, "banned") == 0) {
        room_remove(c);
        conn_error(c, "forbidden", "you are banned from this channel");
        goto out;
    }
    if (strcmp(status, "ok") != 0 || reply->elements != 5) { /* never left joining */
        room_remove(c);
        conn_error(c, "unavailable", "the store is unavailable; join again");
        goto out;
    }
    struct chat_frame *f = joined_frame(c, reply);
    /* Live events queued while joining that the history already holds are dropped. */
    struct chat_stream_id newest = {0, 0};
    gboolean has_newest = FALSE;
    redisReply *nr = reply->element[2];
    if (nr->len > 0 && chat_stream_id_parse(nr->str, nr->len, &newest) == SL_OK) has_newest = TRUE;
    struct chat_stream_id since;
    if (c->since[0] && chat_stream_id_parse(c->since, strlen(c->since), &since) == SL_OK &&
        (!has_newest || chat_stream_id_cmp(&since, &newest) > 0)) {
        newest = since;
        has_newest = TRUE;
    }
    if (has_newest) {
        guint removed;
        queue_filter(c, keep_newer, &newest, &removed);
    }
    c->floor = newest;
    c->has_floor = has_newest;
    c->state = CONN_JOINED;
    conn_enqueue(c, f, TRUE);
    chat_frame_unref(f);
out:
    conn_unref(c);
    g_free(j);
}

static void join_read(struct conn *c)
{
    struct chat *chat = c->chat;
    const char *ch = c->room->channel;
    char *history = g_strdup_printf(SL_KEY_ROOM_HISTORY, ch);
    char *state = g_strdup_printf(SL_KEY_ROOM_STATE, ch);
    char *ban = g_strdup_printf(SL_KEY_ROOM_BAN, ch, c->authed ? c->who.sub : "");
    char *deleted = g_strdup_printf(SL_KEY_ROOM_DELETED, ch);
    char count[16], max[16];
    g_snprintf(count, sizeof count, "%lld", (long long)chat->history);
    g_snprintf(max, sizeof max, "%lld", (long long)chat->recovery_max);
    const char *argv[] = {history, state, ban, deleted, c->since, count, max};
    struct join_ctx *j = g_new0(struct join_ctx, 1);
    j->c = conn_ref(c);
    j->gen = c->join_gen;
    if (sl_redis_eval(sl_server_redis(chat->srv), chat->join, join_replied, j, 4, 7, argv, NULL) !=
        SL_OK) {
        conn_unref(c);
        g_free(j);
        room_remove(c);
        conn_error(c, "unavailable", "the store is unavailable; join again");
    }
    g_free(history);
    g_free(state);
    g_free(ban);
    g_free(deleted);
}

static void conn_join(struct conn *c, struct chat_msg *m)
{
    struct chat *chat = c->chat;
    struct sl_claims who;
    gboolean authed = FALSE;
    if (m->token) {
        if (sl_token_verify(sl_server_config(chat->srv)->secret, m->token, strlen(m->token),
                            sl_now_ms() / 1000, &who) != SL_OK) {
            conn_error(c, "unauthorized", "invalid or expired token");
            return;
        }
        authed = TRUE;
    }
    room_remove(c); /* one channel at a time */
    c->who = authed ? who : (struct sl_claims){0};
    c->authed = authed;
    g_strlcpy(c->since, m->has_since ? m->since_text : "", sizeof c->since);
    c->join_gen++;
    c->has_floor = FALSE; /* ids are per channel */
    /* Joining holds back live events; a reply or error already queued waits with them. */
    gboolean created;
    struct room *r = room_get(chat, m->channel, &created);
    room_add(r, c);
    c->state = CONN_JOINING;
    if (created)
        room_load(r); /* may answer and remove c at once */
    else if (r->loaded && r->active && !r->recovering)
        join_read(c);
}

/* ---- chat ---- */

static void conn_error_retry(struct conn *c, const char *code, const char *message,
                             int64_t retry_after_ms)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (retry_after_ms > 0) json_object_set_new(j, "retry_after_ms", json_integer(retry_after_ms));
    conn_send_json(c, j);
}

static void chat_sent(struct redisReply *reply, const char *err, void *user)
{
    struct conn *c = user;
    if (c->wsi == NULL) goto out;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        conn_error(c, "unavailable", "message not sent: the store is unavailable");
        goto out;
    }
    const char *status = reply->element[0]->str;
    int64_t arg = reply->elements > 1 && reply->element[1]->type == REDIS_REPLY_STRING
                      ? g_ascii_strtoll(reply->element[1]->str, NULL, 10)
                      : 0;
    if (strcmp(status, "ok") == 0) {
        sl_metric_add(c->chat->m_in, 1);
    } else if (strcmp(status, "muted") == 0) {
        sl_metric_add(c->chat->m_refused, 1);
        conn_error_retry(c, "muted", "you are muted in this channel", arg);
    } else if (strcmp(status, "rate_limited") == 0) {
        sl_metric_add(c->chat->m_refused, 1);
        conn_error_retry(c, "rate_limited", "you are sending messages too fast", arg);
    } else {
        sl_metric_add(c->chat->m_refused, 1);
        conn_error(c, "forbidden", "you are banned from this channel");
    }
out:
    conn_unref(c);
}

static void conn_chat(struct conn *c, struct chat_msg *m)
{
    struct chat *chat = c->chat;
    if (c->state != CONN_JOINED) {
        conn_error(c, "not_joined", "join a channel before you chat");
        return;
    }
    if (!c->authed) {
        conn_error(c, "unauthorized", "sign in to chat: join with a token");
        return;
    }
    const char *ch = c->room->channel;
    char *masked = chat_text_mask(m->text, (const char *const *)c->room->words);
    int64_t now = sl_now_ms();
    json_t *ev = json_pack("{s:s, s:I, s:{s:s, s:s, s:s}, s:s}", "type",
                           sl_room_event_name(SL_ROOM_EV_CHAT), "ts_ms", (json_int_t)now, "user",
                           "id", c->who.sub, "name", c->who.name[0] ? c->who.name : c->who.sub,
                           "role", sl_role_name(c->who.role), "text", masked ? masked : m->text);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    g_free(masked);
    char *history = g_strdup_printf(SL_KEY_ROOM_HISTORY, ch);
    char *mute = g_strdup_printf(SL_KEY_ROOM_MUTE, ch, c->who.sub);
    char *ban = g_strdup_printf(SL_KEY_ROOM_BAN, ch, c->who.sub);
    char *rate = g_strdup_printf(SL_KEY_ROOM_RATE, ch, c->who.sub);
    char maxlen[16], nows[24], cap[16], per[32];
    g_snprintf(maxlen, sizeof maxlen, "%d", SL_ROOM_HISTORY_MAX);
    g_snprintf(nows, sizeof nows, "%lld", (long long)now);
    g_snprintf(cap, sizeof cap, "%lld", (long long)chat->rate_messages);
    g_ascii_dtostr(per, sizeof per, (double)chat->rate_window_ms / (double)chat->rate_messages);
    const char *argv[] = {history, mute, ban, rate, c->room->pub, text, maxlen, nows, cap, per};
    if (sl_redis_eval(sl_server_redis(chat->srv), chat->send, chat_sent, conn_ref(c), 4, 10, argv,
                      NULL) != SL_OK) {
        conn_unref(c);
        conn_error(c, "unavailable", "message not sent: the store is unavailable");
    }
    free(text);
    g_free(history);
    g_free(mute);
    g_free(ban);
    g_free(rate);
}

/* ---- frames from the client ---- */

static void conn_bad(struct conn *c, const char *code, const char *message)
{
    sl_metric_add(c->chat->m_bad, 1);
    conn_error(c, code, message);
    if (++c->bad_frames >= BAD_FRAMES_MAX)
        conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many invalid frames");
}

static void conn_handle(struct conn *c, const char *buf, size_t len)
{
    gint64 now = g_get_monotonic_time();
    double per_s = (double)c->chat->frame_rate;
    c->frame_tokens =
        MIN(2.0 * per_s, c->frame_tokens + (double)(now - c->frame_ts_us) * per_s / 1e6);
    c->frame_ts_us = now;
    if (c->frame_tokens < 1.0) {
        conn_bad(c, "rate_limited", "too many frames; slow down");
        return;
    }
    c->frame_tokens -= 1.0;
    struct chat_msg m;
    GError *err = NULL;
    if (chat_msg_parse(buf, len, &m, &err) != SL_OK) {
        conn_bad(c, "bad_request", err->message);
        g_error_free(err);
        return;
    }
    c->bad_frames = 0;
    switch (m.type) {
    case CHAT_MSG_PING:
        conn_send_json(c, json_pack("{s:s}", "type", "pong"));
        break;
    case CHAT_MSG_JOIN:
        if (c->chat->stopping)
            conn_error(c, "unavailable", "the server is shutting down");
        else
            conn_join(c, &m);
        break;
    case CHAT_MSG_CHAT:
        conn_chat(c, &m);
        break;
    }
    chat_msg_clear(&m);
}

/* Returns the lws callback result: -1 closes (with the reason set here). */
static int conn_receive(struct conn *c, struct lws *wsi, const uint8_t *in, size_t len)
{
    c->last_rx_us = g_get_monotonic_time();
    c->ping_sent = FALSE;
    if (c->close_code) return 0;
    if (lws_frame_is_binary(wsi)) {
        static const char why[] = "binary frames are not accepted";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, (unsigned char *)why,
                         sizeof why - 1);
        return -1;
    }
    size_t more = lws_remaining_packet_payload(wsi);
    gboolean final = lws_is_final_fragment(wsi) && more == 0;
    size_t have = c->rx ? c->rx->len : 0;
    if (have + len + more > CHAT_FRAME_MAX) {
        static const char why[] = "frames are limited to 4096 bytes";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
                         sizeof why - 1);
        return -1;
    }
    if (c->rx == NULL && final) {
        conn_handle(c, (const char *)in, len);
        return 0;
    }
    if (c->rx == NULL) c->rx = g_byte_array_sized_new((guint)(len + more));
    g_byte_array_append(c->rx, in, (guint)len);
    if (final) {
        GByteArray *rx = c->rx;
        c->rx = NULL;
        conn_handle(c, (const char *)rx->data, rx->len);
        g_byte_array_unref(rx);
    }
    return 0;
}

static struct conn *conn_open(struct chat *chat, struct lws *wsi)
{
    struct conn *c = g_new0(struct conn, 1);
    c->refs = 1;
    c->chat = chat;
    c->wsi = wsi;
    c->id = ++chat->next_conn_id;
    c->last_rx_us = c->frame_ts_us = g_get_monotonic_time();
    c->frame_tokens = 2.0 * (double)chat->frame_rate;
    g_hash_table_add(chat->conns, c);
    sl_metric_set(chat->m_conns, g_hash_table_size(chat->conns));
    return c;
}

static void conn_closed(struct conn *c)
{
    struct chat *chat = c->chat;
    c->wsi = NULL;
    room_remove(c);
    queue_clear(c);
    g_hash_table_remove(chat->conns, c);
    sl_metric_set(chat->m_conns, g_hash_table_size(chat->conns));
    conn_unref(c);
}

static int chat_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct conn_slot *slot = user;
    struct lws_vhost *vh = lws_get_vhost(wsi);
    sl_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
    struct chat *chat = srv ? chat_of(srv) : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[8];
        if (chat == NULL || chat->stopping) return 1;
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0)
            return 1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        if (chat == NULL) return -1;
        /* Optionally bound what the kernel holds for a viewer who stops reading: the queue
         * above it then fills and the viewer is cut off sooner, instead of after the kernel's
         * autotuned buffer (up to megabytes) is full. Off by default: that buffer is also what
         * carries a reading viewer through a hiccup during a burst. */
        int sndbuf = (int)chat->socket_sndbuf;
        if (sndbuf > 0)
            setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        slot->c = conn_open(chat, wsi);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return slot->c ? conn_receive(slot->c, wsi, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (slot->c) {
            slot->c->last_rx_us = g_get_monotonic_time();
            slot->c->ping_sent = FALSE;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return slot->c ? conn_writeable(slot->c, wsi) : 0;
    case LWS_CALLBACK_CLOSED:
        if (slot->c) conn_closed(slot->c);
        slot->c = NULL;
        return 0;
    default:
        return 0;
    }
}

/* ---- keepalive ---- */

static gboolean chat_keepalive(gpointer data)
{
    struct chat *chat = data;
    static struct chat_frame *ping;
    if (ping == NULL) {
        ping = g_malloc(sizeof *ping + sizeof ping_frame);
        *ping = (struct chat_frame){.refs = 1, .kind = CHAT_FRAME_REPLY, .len = sizeof ping_frame};
        memcpy(ping->data, ping_frame, sizeof ping_frame);
    }
    gint64 now = g_get_monotonic_time();
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, chat->conns);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        struct conn *c = k;
        gint64 idle_s = (now - c->last_rx_us) / G_USEC_PER_SEC;
        if (idle_s >= chat->idle_timeout_s) {
            conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "idle");
        } else if (idle_s >= PING_AFTER_S && !c->ping_sent) {
            c->ping_sent = TRUE; /* a WebSocket ping: browsers answer it by themselves */
            conn_enqueue(c, ping, FALSE);
        }
    }
    return G_SOURCE_CONTINUE;
}

/* ---- module ---- */

static int chat_init(sl_server *srv, GError **err)
{
    const struct sl_config *cfg = sl_server_config(srv);
    struct chat *chat = g_new0(struct chat, 1);
    chat->srv = srv;
    sl_server_set_module_data(srv, SL_MODULE_CHAT, chat);
    chat->rooms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, room_free);
    chat->conns = g_hash_table_new(g_direct_hash, g_direct_equal);
    if (sl_config_get_int(cfg, "chat", "rate_messages", 3, 1, 1000000, &chat->rate_messages, err) !=
            SL_OK ||
        sl_config_get_int(cfg, "chat", "rate_window_ms", 2000, 1, 3600000, &chat->rate_window_ms,
                          err) != SL_OK ||
        sl_config_get_int(cfg, "chat", "history", 50, 0, SL_ROOM_HISTORY_MAX, &chat->history,
                          err) != SL_OK ||
        sl_config_get_int(cfg, "chat", "recovery_max", 500, 1, SL_ROOM_HISTORY_MAX,
                          &chat->recovery_max, err) != SL_OK ||
        sl_config_get_int(cfg, "chat", "queue_frames", 256, 8, 65536, &chat->queue_frames, err) !=
            SL_OK ||
        sl_config_get_int(cfg, "chat", "queue_bytes", 1 << 20, 65536, 1 << 28, &chat->queue_bytes,
                          err) != SL_OK ||
        sl_config_get_int(cfg, "chat", "idle_timeout_s", 120, 10, 86400, &chat->idle_timeout_s,
                          err) != SL_OK ||
        sl_config_get_int(cfg, "chat", "frame_rate", 20, 1, 1000000, &chat->frame_rate, err) !=
            SL_OK ||
        sl_config_get_int(cfg, "chat", "socket_sndbuf", 0, 0, 1 << 26, &chat->socket_sndbuf, err) !=
            SL_OK)
        return SL_ERR;
    struct lws_protocols p = {
        .name = "silklive.v1",
        .callback = (lws_callback_function *)chat_callback,
        .per_session_data_size = sizeof(struct conn_slot),
        .rx_buffer_size = 1024, /* larger messages arrive in parts; 4 KiB is the cap */
        /* Without it lws caps each send() at rx_buffer_size and keeps the rest of a batch in its
         * own buffer: a 16 KiB batch went out in 16 syscalls, each after another POLLOUT turn. */
        .tx_packet_size = BATCH_MAX,
    };
    sl_server_add_protocol(srv, &p);
    chat_moderation_routes(chat);
    chat->m_conns = sl_metric_get("silklive_chat_connections", SL_METRIC_GAUGE,
                                  "Open WebSocket connections", NULL, 1);
    chat->m_rooms = sl_metric_get("silklive_chat_rooms", SL_METRIC_GAUGE,
                                  "Rooms with members on this node", NULL, 1);
    chat->m_in = sl_metric_get("silklive_chat_messages_in_total", SL_METRIC_COUNTER,
                               "Chat messages accepted from clients", NULL, 1);
    chat->m_out = sl_metric_get("silklive_chat_messages_out_total", SL_METRIC_COUNTER,
                                "Frames delivered to WebSocket clients", NULL, 1);
    chat->m_writes = sl_metric_get("silklive_chat_writes_total", SL_METRIC_COUNTER,
                                   "Socket writes that delivered frames (several frames a write "
                                   "when a queue has a backlog)",
                                   NULL, 1);
    chat->m_dropped =
        sl_metric_get("silklive_chat_dropped_total", SL_METRIC_COUNTER,
                      "Coalescible frames (presence, stock) dropped for slow clients", NULL, 1);
    chat->m_slow = sl_metric_get("silklive_chat_slow_consumers_total", SL_METRIC_COUNTER,
                                 "Connections closed 1008 because they fell behind", NULL, 1);
    chat->m_refused = sl_metric_get("silklive_chat_refused_total", SL_METRIC_COUNTER,
                                    "Chat messages refused (muted, banned, rate limited)", NULL, 1);
    chat->m_bad = sl_metric_get("silklive_chat_bad_frames_total", SL_METRIC_COUNTER,
                                "Client frames answered with an error", NULL, 1);
    return SL_OK;
}

static int chat_start(sl_server *srv, GError **err)
{
    struct chat *chat = chat_of(srv);
    chat->send = sl_script_new(sl_lua_chat_send);
    chat->moderate = sl_script_new(sl_lua_chat_moderate);
    chat->join = sl_script_new(sl_lua_chat_join);
    chat->presence = sl_script_new(sl_lua_chat_presence);
    chat->tick_timer = g_timeout_add_seconds(1, chat_tick, chat);
    chat->keepalive_timer = g_timeout_add_seconds(KEEPALIVE_S, chat_keepalive, chat);
    sl_pubsub_subscribe(srv, SL_CONTROL_CHANNEL, chat_on_control, chat);
    return SL_OK;
}

static void chat_stop(sl_server *srv)
{
    struct chat *chat = chat_of(srv);
    chat->stopping = TRUE;
    sl_pubsub_unsubscribe(srv, SL_CONTROL_CHANNEL, chat_on_control, chat);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, chat->conns);
    while (g_hash_table_iter_next(&it, &k, NULL))
        conn_close(k, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
    g_hash_table_iter_init(&it, chat->rooms);
    while (g_hash_table_iter_next(&it, NULL, &v)) /* this node's viewers leave the sums now */
        presence_report(chat, ((struct room *)v)->channel, 0, NULL);
}

static void chat_destroy(sl_server *srv)
{
    struct chat *chat = chat_of(srv);
    if (chat == NULL) return;
    if (chat->tick_timer) g_source_remove(chat->tick_timer);
    if (chat->keepalive_timer) g_source_remove(chat->keepalive_timer);
    g_hash_table_unref(chat->rooms);
    g_hash_table_unref(chat->conns);
    sl_script_free(chat->send);
    sl_script_free(chat->moderate);
    sl_script_free(chat->join);
    sl_script_free(chat->presence);
    sl_server_set_module_data(srv, SL_MODULE_CHAT, NULL);
    g_free(chat);
}

const struct sl_module chat_module = {
    .name = "chat",
    .mask = SL_MODULE_CHAT,
    .init = chat_init,
    .start = chat_start,
    .stop = chat_stop,
    .destroy = chat_destroy,
};
