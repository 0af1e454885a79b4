/* ingest module: RTMP connections on a libwebsockets raw vhost, the stream-key check and the
 * one-publisher-per-channel lease in Redis, key rotation, and handing media to transcode. */
#include "ingest.h"

#include "internal.h"
#include "transcode/transcode.h"

#include <gio/gio.h>

#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <string.h>

#define LEASE_MS          15000
#define LEASE_RENEW_S     5
#define HANDSHAKE_TIMEOUT 10         /* seconds from accept to an accepted publish */
#define MAX_OUTPUT        (1u << 20) /* replies a peer does not read: it is not an encoder */
#define WRITE_CHUNK       16384

struct ingest {
    sl_server *srv;
    GHashTable *conns;      /* struct rtmp_conn* set: every open connection */
    GHashTable *publishing; /* channel id (borrowed from the conn) -> struct rtmp_conn* */
    guint lease_timer;      /* renews every publisher's lease: one source, not one per stream */
    int64_t idle_timeout_s, max_connections;
    sl_script *lease_renew, *lease_release;
    guint64 next_conn_id;
    sl_metric *m_conns, *m_publishers, *m_bytes, *m_frames, *m_ts_fixes, *m_dropped;
    sl_metric *m_refused_key, *m_refused_busy, *m_refused_other, *m_protocol_errors;
    char *demo_key;           /* owned; --demo: the in-memory key of the demo's own publisher */
    struct demo_source *demo; /* owned */
};

struct rtmp_conn {
    int refs; /* the socket holds one; each Redis call in flight holds one */
    struct ingest *in;
    struct lws *wsi;       /* NULL once closed */
    rtmp_session *session; /* owned */
    guint64 id;
    char *key;     /* owned; the stream key asked for */
    char *channel; /* owned; once the publish is accepted */
    char *lease;   /* owned; our value in the publisher lease */
    transcode_stream *stream;
    gboolean closing; /* close once the output is sent */
    gboolean demo;    /* the demo's own test pattern: it gives way to a real encoder */
    struct rtmp_session_stats counted;
    uint8_t *wbuf; /* owned; LWS_PRE + WRITE_CHUNK */
};

struct conn_slot {
    struct rtmp_conn *c;
};

static struct ingest *ingest_of(sl_server *srv)
{
    return sl_server_module_data(srv, SL_MODULE_INGEST);
}

static struct rtmp_conn *conn_ref(struct rtmp_conn *c)
{
    c->refs++;
    return c;
}

static void conn_unref(struct rtmp_conn *c)
{
    if (--c->refs > 0) return;
    rtmp_session_free(c->session);
    g_free(c->key);
    g_free(c->channel);
    g_free(c->lease);
    g_free(c->wbuf);
    g_free(c);
}

static void conn_close(struct rtmp_conn *c, const char *why)
{
    if (c->wsi == NULL || c->closing) return;
    g_message("rtmp %" G_GUINT64_FORMAT " (%s): closing: %s", c->id, c->channel ? c->channel : "-",
              why);
    c->closing = TRUE;
    lws_callback_on_writable(c->wsi); /* sends what is queued (a refusal), then closes */
}

/* ---- publisher lease ---- */

static void lease_key(const struct rtmp_conn *c, char *buf, size_t n)
{
    g_snprintf(buf, n, SL_KEY_CHAN_PUBLISHER, c->channel);
}

static gboolean leases_renew(gpointer data)
{
    struct ingest *in = data;
    char ms[16];
    g_snprintf(ms, sizeof ms, "%d", LEASE_MS);
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, in->publishing);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct rtmp_conn *c = value;
        char key[128];
        lease_key(c, key, sizeof key);
        const char *argv[] = {key, c->lease, ms};
        sl_redis_eval(sl_server_redis(in->srv), in->lease_renew, NULL, NULL, 1, 3, argv, NULL);
    }
    return G_SOURCE_CONTINUE;
}

static void lease_release(struct rtmp_conn *c)
{
    if (c->channel == NULL || c->lease == NULL) return;
    char key[128];
    lease_key(c, key, sizeof key);
    const char *argv[] = {key, c->lease};
    sl_redis_eval(sl_server_redis(c->in->srv), c->in->lease_release, NULL, NULL, 1, 2, argv, NULL);
}

/* ---- publish ---- */

static void refuse(struct rtmp_conn *c, sl_metric *m, const char *code, const char *why)
{
    sl_metric_add(m, 1);
    g_log(G_LOG_DOMAIN, c->demo ? G_LOG_LEVEL_DEBUG : G_LOG_LEVEL_MESSAGE,
          "rtmp %" G_GUINT64_FORMAT ": publish refused: %s", c->id, why);
    rtmp_session_publish_result(c->session, FALSE, code, why);
    conn_close(c, why);
}

static void publish_accept(struct rtmp_conn *c)
{
    struct ingest *in = c->in;
    GError *e = NULL;
    c->stream = transcode_stream_open(in->srv, c->channel, &e);
    if (c->stream == NULL) {
        lease_release(c);
        refuse(c, in->m_refused_other, "NetStream.Publish.Failed", e->message);
        g_error_free(e);
        g_clear_pointer(&c->channel, g_free);
        return;
    }
    g_hash_table_insert(in->publishing, c->channel, c);
    sl_metric_add(in->m_publishers, 1);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, (int)in->idle_timeout_s);
    rtmp_session_publish_result(c->session, TRUE, NULL, "publishing");
    g_message("rtmp %" G_GUINT64_FORMAT ": publishing on channel %s", c->id, c->channel);
}

static void lease_taken(struct redisReply *r, const char *err, void *user)
{
    struct rtmp_conn *c = user;
    if (c->wsi && !c->closing) {
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            g_clear_pointer(&c->channel, g_free);
            refuse(c, c->in->m_refused_other, "NetStream.Publish.Failed",
                   "service unavailable, try again");
        } else if (r->type != REDIS_REPLY_STATUS) { /* nil: somebody holds it */
            g_clear_pointer(&c->channel, g_free);
            refuse(c, c->in->m_refused_busy, "NetStream.Publish.BadName",
                   "the channel already has a publisher");
        } else if (g_hash_table_contains(c->in->publishing, c->channel)) {
            lease_release(c); /* cannot happen: the local check ran first; keep it tidy */
            g_clear_pointer(&c->channel, g_free);
            refuse(c, c->in->m_refused_busy, "NetStream.Publish.BadName",
                   "the channel already has a publisher");
        } else {
            publish_accept(c);
        }
    } else if (r && r->type == REDIS_REPLY_STATUS) {
        lease_release(c); /* the encoder left meanwhile */
    }
    conn_unref(c);
}

static void stop_publishing(struct rtmp_conn *c);

/* The key named a channel: take its one-publisher lease. The demo's test pattern holding the
 * channel here gives way to a real encoder; any other publisher makes this one busy. */
static void claim_channel(struct rtmp_conn *c, const char *channel, size_t len)
{
    struct ingest *in = c->in;
    char *id = g_strndup(channel, len);
    struct rtmp_conn *holder = g_hash_table_lookup(in->publishing, id);
    if (holder && holder->demo && !c->demo) {
        g_message("rtmp %" G_GUINT64_FORMAT ": takes channel %s over from the demo's test pattern",
                  c->id, id);
        /* the lease passes over as it is: released and taken anew, a Redis round trip would
         * leave the channel free for the demo's next try in between */
        g_free(c->lease);
        c->lease = g_steal_pointer(&holder->lease);
        stop_publishing(holder);
        conn_close(holder, "a real encoder took the channel over");
        c->channel = id;
        publish_accept(c);
        return;
    }
    if (holder) {
        g_free(id);
        refuse(c, in->m_refused_busy, "NetStream.Publish.BadName",
               "the channel already has a publisher");
        return;
    }
    c->channel = id;
    char key[128];
    lease_key(c, key, sizeof key);
    if (sl_redis_command(sl_server_redis(in->srv), lease_taken, conn_ref(c), "SET %s %s NX PX %d",
                         key, c->lease, LEASE_MS) != SL_OK) {
        conn_unref(c);
        g_clear_pointer(&c->channel, g_free);
        refuse(c, in->m_refused_other, "NetStream.Publish.Failed",
               "service unavailable, try again");
    }
}

static void key_looked_up(struct redisReply *r, const char *err, void *user)
{
    struct rtmp_conn *c = user;
    struct ingest *in = c->in;
    if (c->wsi == NULL || c->closing) {
        conn_unref(c);
        return;
    }
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        refuse(c, in->m_refused_other, "NetStream.Publish.Failed",
               "service unavailable, try again");
    } else if (r->type != REDIS_REPLY_STRING || !sl_id_valid(r->str, r->len)) {
        refuse(c, in->m_refused_key, "NetStream.Publish.BadName", "unknown or revoked stream key");
    } else {
        claim_channel(c, r->str, r->len);
    }
    conn_unref(c);
}

static void on_publish(rtmp_session *s, const char *app, const char *name, void *user)
{
    struct rtmp_conn *c = user;
    struct ingest *in = c->in;
    if (!sl_id_valid(name, strlen(name))) {
        refuse(c, in->m_refused_key, "NetStream.Publish.BadName", "unknown or revoked stream key");
        return;
    }
    c->key = g_strdup(name);
    if (in->demo_key && strcmp(name, in->demo_key) == 0) {
        c->demo = TRUE;
        claim_channel(c, SL_DEMO_CHANNEL, strlen(SL_DEMO_CHANNEL));
        return;
    }
    if (sl_redis_command(sl_server_redis(in->srv), key_looked_up, conn_ref(c),
                         "GET " SL_KEY_STREAMKEY, name) != SL_OK) {
        conn_unref(c);
        refuse(c, in->m_refused_other, "NetStream.Publish.Failed",
               "service unavailable, try again");
    }
}

static void stop_publishing(struct rtmp_conn *c)
{
    if (c->stream == NULL) return;
    transcode_stream_close(c->stream);
    c->stream = NULL;
    g_hash_table_remove(c->in->publishing, c->channel);
    sl_metric_add(c->in->m_publishers, -1);
    lease_release(c);
    g_message("rtmp %" G_GUINT64_FORMAT ": stopped publishing on channel %s", c->id, c->channel);
}

static void on_unpublish(rtmp_session *s, void *user)
{
    stop_publishing(user);
}

static void on_media(rtmp_session *s, uint8_t type, uint32_t ts, const uint8_t *data, size_t len,
                     void *user)
{
    struct rtmp_conn *c = user;
    if (c->stream && transcode_stream_push(c->stream, type, ts, data, len) != SL_OK) {
        stop_publishing(c); /* the channel cannot go on (its media cannot be written) */
        conn_close(c, "the stream ended: the server cannot write its media");
    }
}

static void on_output(rtmp_session *s, void *user)
{
    struct rtmp_conn *c = user;
    if (c->wsi) lws_callback_on_writable(c->wsi);
}

static const struct rtmp_session_ops session_ops = {
    .publish = on_publish,
    .media = on_media,
    .unpublish = on_unpublish,
    .output = on_output,
};

/* ---- key rotation ---- */

static void key_rechecked(struct redisReply *r, const char *err, void *user)
{
    struct rtmp_conn *c = user;
    if (c->wsi && c->stream && r &&
        (r->type != REDIS_REPLY_STRING || strcmp(r->str, c->channel) != 0)) {
        stop_publishing(c);
        conn_close(c, "the stream key was rotated");
    }
    conn_unref(c);
}

static void recheck(struct rtmp_conn *c)
{
    if (c->demo) return; /* its key lives in this process, not in Redis: nothing to rotate */
    if (sl_redis_command(sl_server_redis(c->in->srv), key_rechecked, conn_ref(c),
                         "GET " SL_KEY_STREAMKEY, c->key) != SL_OK)
        conn_unref(c);
}

static void on_control(const char *channel, const char *msg, size_t len, void *user)
{
    struct ingest *in = user;
    if (msg == NULL) { /* (re)subscribed: a rotation may have been missed meanwhile */
        GHashTableIter it;
        gpointer value;
        g_hash_table_iter_init(&it, in->publishing);
        while (g_hash_table_iter_next(&it, NULL, &value))
            recheck(value);
        return;
    }
    json_t *ev = json_loadb(msg, len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *chan = json_string_value(json_object_get(ev, "channel"));
    if (type && chan && strcmp(type, "stream_key_rotated") == 0) {
        struct rtmp_conn *c = g_hash_table_lookup(in->publishing, chan);
        if (c) recheck(c);
    }
    json_decref(ev);
}

/* ---- lws ---- */

static void count_stats(struct rtmp_conn *c)
{
    const struct rtmp_session_stats *s = rtmp_session_stats(c->session);
    struct ingest *in = c->in;
    sl_metric_add(in->m_bytes, (int64_t)(s->bytes_in - c->counted.bytes_in));
    sl_metric_add(in->m_frames, (int64_t)(s->frames - c->counted.frames));
    sl_metric_add(in->m_ts_fixes, (int64_t)(s->ts_fixes - c->counted.ts_fixes));
    sl_metric_add(in->m_dropped, (int64_t)(s->dropped - c->counted.dropped));
    c->counted = *s;
}

static int on_writeable(struct rtmp_conn *c)
{
    GByteArray *out = rtmp_session_output(c->session);
    if (out->len > 0) {
        size_t n = MIN(out->len, WRITE_CHUNK);
        memcpy(c->wbuf + LWS_PRE, out->data, n);
        if (lws_write(c->wsi, c->wbuf + LWS_PRE, n, LWS_WRITE_RAW) < (int)n) return -1;
        g_byte_array_remove_range(out, 0, (guint)n);
        if (out->len > 0 || c->closing) lws_callback_on_writable(c->wsi);
        return 0;
    }
    return c->closing ? -1 : 0;
}

static int rtmp_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct conn_slot *slot = user;
    struct ingest *ing = lws_get_vhost_user(lws_get_vhost(wsi));
    struct rtmp_conn *c = slot ? slot->c : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    case LWS_CALLBACK_WSI_CREATE:
    case LWS_CALLBACK_WSI_DESTROY:
        return ing ? sl_server_peer_event(ing->srv, wsi, reason, user) : 0;
    case LWS_CALLBACK_RAW_ADOPT:
        if (ing == NULL) return -1;
        if ((int64_t)g_hash_table_size(ing->conns) >= ing->max_connections) {
            sl_metric_add(ing->m_refused_other, 1);
            return -1;
        }
        c = g_new0(struct rtmp_conn, 1);
        c->refs = 1;
        c->in = ing;
        c->wsi = wsi;
        c->id = ++ing->next_conn_id;
        c->session = rtmp_session_new(&session_ops, c);
        c->lease = g_strdup_printf("%s/%" G_GUINT64_FORMAT, sl_server_node_id(ing->srv), c->id);
        c->wbuf = g_malloc(LWS_PRE + WRITE_CHUNK);
        slot->c = c;
        g_hash_table_add(ing->conns, c);
        sl_metric_add(ing->m_conns, 1);
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HANDSHAKE_TIMEOUT);
        return 0;
    case LWS_CALLBACK_RAW_RX:
        if (c == NULL || c->closing) return 0;
        if (rtmp_session_feed(c->session, in, len) != SL_OK) {
            if (!rtmp_session_publishing(c->session) && c->stream == NULL && c->key == NULL)
                sl_metric_add(ing->m_protocol_errors, 1);
            stop_publishing(c);
            conn_close(c, rtmp_session_error(c->session));
        } else if (c->stream) {
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)ing->idle_timeout_s);
        }
        count_stats(c);
        if (rtmp_session_output(c->session)->len > MAX_OUTPUT) return -1;
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE:
        return c ? on_writeable(c) : 0;
    case LWS_CALLBACK_RAW_CLOSE:
        if (c == NULL) return 0;
        slot->c = NULL;
        stop_publishing(c);
        count_stats(c);
        c->wsi = NULL;
        g_hash_table_remove(ing->conns, c);
        sl_metric_add(ing->m_conns, -1);
        conn_unref(c);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols rtmp_protocols[] = {
    {.name = "rtmp",
     .callback = (lws_callback_function *)rtmp_callback,
     .per_session_data_size = sizeof(struct conn_slot),
     .rx_buffer_size = 65536},
    {0},
};

/* ---- module ---- */

static int ingest_init(sl_server *srv, GError **err)
{
    const struct sl_config *cfg = sl_server_config(srv);
    if (!(cfg->modules & SL_MODULE_TRANSCODE)) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                    "module ingest needs transcode on the same node: add it to --modules");
        return SL_ERR;
    }
    struct ingest *in = g_new0(struct ingest, 1);
    in->srv = srv;
    if (sl_config_get_int(cfg, "ingest", "idle_timeout_s", 30, 5, 3600, &in->idle_timeout_s, err) ||
        sl_config_get_int(cfg, "ingest", "max_connections", 1000, 1, 100000, &in->max_connections,
                          err)) {
        g_free(in);
        return SL_ERR;
    }
    in->conns = g_hash_table_new(NULL, NULL);
    in->publishing = g_hash_table_new(g_str_hash, g_str_equal);
    in->lease_renew = sl_script_new(sl_lua_ingest_lease_renew);
    in->lease_release = sl_script_new(sl_lua_ingest_lease_release);
    in->m_conns = sl_metric_get("silklive_rtmp_connections", SL_METRIC_GAUGE,
                                "Open RTMP connections", NULL, 1);
    in->m_publishers = sl_metric_get("silklive_rtmp_publishers", SL_METRIC_GAUGE,
                                     "RTMP connections publishing a channel", NULL, 1);
    in->m_bytes = sl_metric_get("silklive_rtmp_bytes_in_total", SL_METRIC_COUNTER,
                                "Bytes received from RTMP peers", NULL, 1);
    in->m_frames = sl_metric_get("silklive_rtmp_frames_total", SL_METRIC_COUNTER,
                                 "Audio and video messages received from publishers", NULL, 1);
    in->m_ts_fixes =
        sl_metric_get("silklive_rtmp_timestamp_fixes_total", SL_METRIC_COUNTER,
                      "Encoder timestamps that went back or jumped and were rebased", NULL, 1);
    in->m_dropped =
        sl_metric_get("silklive_rtmp_dropped_total", SL_METRIC_COUNTER,
                      "Media or data messages dropped (not publishing, malformed)", NULL, 1);
    const char *help = "RTMP publishes refused";
    in->m_refused_key =
        sl_metric_get("silklive_rtmp_refused_total", SL_METRIC_COUNTER, help, "reason=\"key\"", 1);
    in->m_refused_busy =
        sl_metric_get("silklive_rtmp_refused_total", SL_METRIC_COUNTER, help, "reason=\"busy\"", 1);
    in->m_refused_other = sl_metric_get("silklive_rtmp_refused_total", SL_METRIC_COUNTER, help,
                                        "reason=\"other\"", 1);
    in->m_protocol_errors =
        sl_metric_get("silklive_rtmp_protocol_errors_total", SL_METRIC_COUNTER,
                      "RTMP connections closed for malformed input before publishing", NULL, 1);
    sl_server_set_module_data(srv, SL_MODULE_INGEST, in);
    return SL_OK;
}

static gboolean demo_channel_free(void *user)
{
    struct ingest *in = user;
    return !g_hash_table_contains(in->publishing, SL_DEMO_CHANNEL);
}

/* --demo: the demo channel is live by itself, fed by a test pattern through this node's own RTMP
 * port with a key that exists only in this process. */
static void demo_start(struct ingest *in, const struct sl_config *cfg)
{
    const char *host = cfg->rtmp_host;
    if (strcmp(host, "0.0.0.0") == 0 || *host == '\0') host = "127.0.0.1";
    if (strcmp(host, "::") == 0) host = "::1";
    char *raw = g_uuid_string_random();
    in->demo_key = g_strdup_printf("demo-%s", raw);
    g_free(raw);
    char *url = strchr(host, ':')
                    ? g_strdup_printf("rtmp://[%s]:%d/live/%s", host, cfg->rtmp_port, in->demo_key)
                    : g_strdup_printf("rtmp://%s:%d/live/%s", host, cfg->rtmp_port, in->demo_key);
    in->demo = demo_source_new(url, demo_channel_free, in);
    g_free(url);
}

static int ingest_start(sl_server *srv, GError **err)
{
    struct ingest *in = ingest_of(srv);
    const struct sl_config *cfg = sl_server_config(srv);
    sl_pubsub_subscribe(srv, SL_CONTROL_CHANNEL, on_control, in);
    in->lease_timer = g_timeout_add_seconds(LEASE_RENEW_S, leases_renew, in);
    if (sl_server_listen_raw(srv, "RTMP", cfg->rtmp_host, cfg->rtmp_port, rtmp_protocols, in,
                             err) != SL_OK)
        return SL_ERR;
    if (cfg->demo) demo_start(in, cfg);
    return SL_OK;
}

static void ingest_stop(sl_server *srv)
{
    struct ingest *in = ingest_of(srv);
    if (in->lease_timer) g_source_remove(in->lease_timer);
    in->lease_timer = 0;
    g_clear_pointer(&in->demo, demo_source_free);
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, in->conns);
    while (g_hash_table_iter_next(&it, &key, NULL))
        stop_publishing(key);
}

static void ingest_destroy(sl_server *srv)
{
    struct ingest *in = ingest_of(srv);
    if (in == NULL) return;
    sl_pubsub_unsubscribe(srv, SL_CONTROL_CHANNEL, on_control, in);
    if (in->lease_timer) g_source_remove(in->lease_timer);
    /* lws closed every connection before modules are destroyed */
    g_hash_table_unref(in->conns);
    g_hash_table_unref(in->publishing);
    sl_script_free(in->lease_renew);
    sl_script_free(in->lease_release);
    demo_source_free(in->demo);
    g_free(in->demo_key);
    g_free(in);
    sl_server_set_module_data(srv, SL_MODULE_INGEST, NULL);
}

const struct sl_module ingest_module = {
    .name = "ingest",
    .mask = SL_MODULE_INGEST,
    .init = ingest_init,
    .start = ingest_start,
    .stop = ingest_stop,
    .destroy = ingest_destroy,
};
