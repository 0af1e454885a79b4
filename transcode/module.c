/* transcode module: per channel, the HLS playlists on disk, the live state in Redis and the
 * stream events on the room, across publish sessions (reconnect grace, end, retention). */
#include "transcode.h"

#include "internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <hiredis/hiredis.h>
#include <string.h>

#define LIVE_LEASE_MS 30000 /* a node that dies leaves its channels live this long at most */
#define LIVE_RENEW_S  10
#define RENDITION     "source"

enum { CH_IDLE, CH_LIVE, CH_GRACE, CH_ENDED };

struct transcode {
    sl_server *srv;
    int64_t segment_s, window, grace_s, retention_s;
    GHashTable *channels; /* id -> struct hls_channel (owned) */
    sl_metric *m_live, *m_segments, *m_dropped, *m_unsupported, *m_failed;
};

struct hls_channel {
    struct transcode *tc;
    char *id;         /* owned */
    char *dir;        /* owned; <media>/<id> */
    char *source_dir; /* owned; <dir>/source */
    int state;
    struct hls_playlist playlist;
    transcode_stream *stream; /* the publishing stream, or NULL */
    GPtrArray *draining;      /* closed streams whose last segment is being written */
    int64_t started_at_ms;
    gboolean listed; /* this session's first segment is out: the channel is live */
    char *codecs;    /* owned; for the master playlist */
    int width, height;
    int64_t bandwidth; /* written into the master playlist */
    guint grace_timer, retention_timer, lease_timer;
    sl_metric *m_keyframe;
};

struct transcode_stream {
    struct hls_channel *ch;
    remux *remux; /* owned; NULL after a failure until the next keyframe rebuilds it */
    char *prefix; /* owned; segment file prefix, unique per pipeline */
    int rebuilds;
    int64_t wall0_ms;                /* wall clock at timestamp 0 */
    GBytes *avc_config, *aac_config; /* owned; replayed into a rebuilt pipeline */
    char video_codec[24], audio_codec[24];
    gboolean saw_video, closed;
    int64_t last_key_ms;
    gboolean has_edge;
    int64_t edge_ts_ms, edge_wall_ms; /* the newest frame pushed, and when it arrived */
};

static struct transcode *transcode_of(sl_server *srv)
{
    return sl_server_module_data(srv, SL_MODULE_TRANSCODE);
}

/* ---- files ---- */

static void remove_media(struct hls_channel *ch)
{
    GDir *d = g_dir_open(ch->source_dir, 0, NULL);
    if (d) {
        const char *name;
        while ((name = g_dir_read_name(d))) {
            if (!g_str_has_suffix(name, ".ts") && !g_str_has_suffix(name, ".m3u8") &&
                !g_str_has_suffix(name, ".tmp") && strchr(name, '.') != NULL)
                continue; /* not ours */
            char *path = g_build_filename(ch->source_dir, name, NULL);
            g_unlink(path);
            g_free(path);
        }
        g_dir_close(d);
    }
    char *master = g_build_filename(ch->dir, "master.m3u8", NULL);
    g_unlink(master);
    g_free(master);
}

/* Write a playlist (text is consumed) to dir/name; a failure is logged, players keep the old. */
static void write_text(struct hls_channel *ch, const char *dir, const char *name, GString *text)
{
    char *path = g_build_filename(dir, name, NULL);
    GError *e = NULL;
    if (hls_write_atomic(path, text->str, text->len, &e) != SL_OK) {
        g_warning("channel %s: cannot write %s: %s", ch->id, path, e->message);
        g_error_free(e);
    }
    g_free(path);
    g_string_free(text, TRUE);
}

static void write_playlist(struct hls_channel *ch)
{
    write_text(ch, ch->source_dir, "index.m3u8", hls_playlist_render(&ch->playlist));
}

static void write_master(struct hls_channel *ch)
{
    GString *text = g_string_new("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    g_string_append_printf(text, "#EXT-X-STREAM-INF:BANDWIDTH=%" G_GINT64_FORMAT,
                           MAX(ch->bandwidth, 1));
    if (ch->width > 0) g_string_append_printf(text, ",RESOLUTION=%dx%d", ch->width, ch->height);
    if (ch->codecs && *ch->codecs) g_string_append_printf(text, ",CODECS=\"%s\"", ch->codecs);
    g_string_append(text, "\n" RENDITION "/index.m3u8\n");
    write_text(ch, ch->dir, "master.m3u8", text);
}

/* ---- live state ---- */

static json_t *live_doc(struct hls_channel *ch)
{
    json_t *rendition = json_pack("{s:s, s:i, s:i, s:I}", "name", RENDITION, "width", ch->width,
                                  "height", ch->height, "bandwidth", (json_int_t)ch->bandwidth);
    json_t *doc = json_pack("{s:I, s:[o], s:s}", "started_at_ms", (json_int_t)ch->started_at_ms,
                            "renditions", rendition, "node", sl_server_node_id(ch->tc->srv));
    /* PDT of the live edge minus the wall clock: an action at wall time T happened at PDT
     * T + offset in the picture (api.md pdt_ms). Refreshed with the lease. */
    transcode_stream *s = ch->stream;
    if (s && s->has_edge)
        json_object_set_new(doc, "pdt_offset_ms",
                            json_integer(s->wall0_ms + s->edge_ts_ms - s->edge_wall_ms));
    return doc;
}

static void live_store(struct hls_channel *ch)
{
    json_t *doc = live_doc(ch);
    char *text = json_dumps(doc, JSON_COMPACT);
    sl_redis *r = sl_server_redis(ch->tc->srv);
    sl_redis_command(r, NULL, NULL, "SET " SL_KEY_CHAN_LIVE " %s PX %d", ch->id, text,
                     LIVE_LEASE_MS);
    sl_redis_command(r, NULL, NULL, "ZADD " SL_KEY_LIVE_CHANS " %" G_GINT64_FORMAT " %s",
                     ch->started_at_ms, ch->id);
    free(text);
    json_decref(doc);
}

static gboolean live_renew(gpointer data)
{
    live_store(data);
    return G_SOURCE_CONTINUE;
}

static void live_clear(struct hls_channel *ch)
{
    sl_redis *r = sl_server_redis(ch->tc->srv);
    sl_redis_command(r, NULL, NULL, "DEL " SL_KEY_CHAN_LIVE, ch->id);
    sl_redis_command(r, NULL, NULL, "ZREM " SL_KEY_LIVE_CHANS " %s", ch->id);
    if (ch->lease_timer) g_source_remove(ch->lease_timer);
    ch->lease_timer = 0;
}

static void emit(struct hls_channel *ch, const char *event)
{
    json_t *ev = json_pack("{s:s, s:s, s:s}", "type", "stream", "event", event, "channel", ch->id);
    if (ch->started_at_ms)
        json_object_set_new(ev, "started_at_ms", json_integer(ch->started_at_ms));
    if (strcmp(event, "publish") == 0) {
        char *url = g_strdup_printf("/hls/%s/master.m3u8", ch->id);
        json_object_set_new(ev, "hls_path", json_string(url));
        g_free(url);
    }
    if (sl_room_emit(ch->tc->srv, ch->id, ev, NULL, NULL) != SL_OK)
        g_warning("channel %s: stream event %s not sent: Redis is down", ch->id, event);
    json_decref(ev);
}

/* ---- channel life cycle ---- */

static void channel_free(gpointer data)
{
    struct hls_channel *ch = data;
    if (ch->grace_timer) g_source_remove(ch->grace_timer);
    if (ch->retention_timer) g_source_remove(ch->retention_timer);
    if (ch->lease_timer) g_source_remove(ch->lease_timer);
    hls_playlist_clear(&ch->playlist);
    g_ptr_array_unref(ch->draining);
    g_free(ch->id);
    g_free(ch->dir);
    g_free(ch->source_dir);
    g_free(ch->codecs);
    g_free(ch);
}

static struct hls_channel *channel_get(struct transcode *tc, const char *id)
{
    struct hls_channel *ch = g_hash_table_lookup(tc->channels, id);
    if (ch) return ch;
    ch = g_new0(struct hls_channel, 1);
    ch->tc = tc;
    ch->id = g_strdup(id);
    ch->dir = g_build_filename(sl_server_config(tc->srv)->media_dir, id, NULL);
    ch->source_dir = g_build_filename(ch->dir, RENDITION, NULL);
    ch->draining = g_ptr_array_new();
    hls_playlist_init(&ch->playlist, (int)tc->window, (int)tc->segment_s);
    char *labels = g_strdup_printf("channel=\"%s\"", id);
    ch->m_keyframe = sl_metric_get("silklive_keyframe_interval_seconds", SL_METRIC_GAUGE,
                                   "Time between the last two video keyframes", labels, 1000);
    g_free(labels);
    g_hash_table_insert(tc->channels, ch->id, ch);
    return ch;
}

static gboolean retention_over(gpointer data)
{
    struct hls_channel *ch = data;
    ch->retention_timer = 0;
    remove_media(ch);
    g_info("channel %s: media of the ended stream removed", ch->id);
    return G_SOURCE_REMOVE;
}

/* The grace period is over without a reconnect: the stream has ended. */
static void channel_end(struct hls_channel *ch)
{
    if (ch->grace_timer) g_source_remove(ch->grace_timer);
    ch->grace_timer = 0;
    ch->state = CH_ENDED;
    hls_playlist_end(&ch->playlist);
    write_playlist(ch);
    if (ch->listed) {
        live_clear(ch);
        emit(ch, "offline");
    }
    ch->listed = FALSE;
    ch->started_at_ms = 0;
    if (ch->tc->retention_s >= 0)
        ch->retention_timer = g_timeout_add_seconds((guint)ch->tc->retention_s, retention_over, ch);
    g_message("channel %s: offline", ch->id);
}

static gboolean grace_over(gpointer data)
{
    struct hls_channel *ch = data;
    ch->grace_timer = 0;
    channel_end(ch);
    return G_SOURCE_REMOVE;
}

/* ---- pipeline events ---- */

static void stream_free(transcode_stream *s)
{
    remux_free(s->remux);
    if (s->avc_config) g_bytes_unref(s->avc_config);
    if (s->aac_config) g_bytes_unref(s->aac_config);
    g_free(s->prefix);
    g_free(s);
}

static void update_rendition(struct hls_channel *ch, transcode_stream *s, const char *location,
                             double duration)
{
    GStatBuf st;
    if (duration > 0.1 && g_stat(location, &st) == 0) {
        int64_t bps = (int64_t)((double)st.st_size * 8 / duration * 1.1);
        if (bps > ch->bandwidth) ch->bandwidth = bps;
    }
    if (s->remux) remux_video_size(s->remux, &ch->width, &ch->height);
    g_free(ch->codecs);
    ch->codecs = s->video_codec[0] && s->audio_codec[0]
                     ? g_strdup_printf("%s,%s", s->video_codec, s->audio_codec)
                     : g_strdup(s->video_codec[0] ? s->video_codec : s->audio_codec);
}

static void on_segment(remux *r, const struct remux_segment *seg, void *user)
{
    transcode_stream *s = user;
    struct hls_channel *ch = s->ch;
    double duration = (double)(seg->end_ns - seg->start_ns) / 1e9;
    if (duration <= 0) {
        g_unlink(seg->location); /* nothing playable in it */
        return;
    }
    int64_t pdt = s->wall0_ms + seg->start_ns / 1000000;
    char *uri = g_path_get_basename(seg->location);
    char *old = hls_playlist_append(&ch->playlist, uri, duration, pdt);
    g_free(uri);
    if (old) {
        char *path = g_build_filename(ch->source_dir, old, NULL);
        g_unlink(path);
        g_free(path);
        g_free(old);
    }
    sl_metric_add(ch->tc->m_segments, 1);
    update_rendition(ch, s, seg->location, duration);
    write_playlist(ch);
    if (!ch->listed) { /* the first playable segment: the channel is live for viewers */
        ch->listed = TRUE;
        write_master(ch);
        live_store(ch);
        if (ch->lease_timer == 0)
            ch->lease_timer = g_timeout_add_seconds(LIVE_RENEW_S, live_renew, ch);
        emit(ch, "publish");
        g_message("channel %s: live (first segment listed)", ch->id);
    }
}

static void on_done(remux *r, const char *error, void *user)
{
    transcode_stream *s = user;
    remux_free(s->remux);
    s->remux = NULL;
    if (s->closed) {
        g_ptr_array_remove(s->ch->draining, s);
        stream_free(s);
        return;
    }
    if (error) {
        /* the publisher is still sending: rebuild at its next keyframe */
        sl_metric_add(s->ch->tc->m_failed, 1);
        hls_playlist_discontinuity(&s->ch->playlist);
    }
}

static const struct remux_events remux_events = {on_segment, on_done};

static int stream_start_pipeline(transcode_stream *s, GError **err)
{
    struct hls_channel *ch = s->ch;
    g_free(s->prefix);
    s->prefix = g_strdup_printf("%" G_GINT64_MODIFIER "x%d", s->wall0_ms, s->rebuilds++);
    s->remux = remux_new(ch->source_dir, s->prefix, hls_playlist_next_seq(&ch->playlist),
                         ch->tc->segment_s * GST_SECOND, &remux_events, s, err);
    return s->remux ? SL_OK : SL_ERR;
}

/* ---- public ---- */

transcode_stream *transcode_stream_open(sl_server *srv, const char *channel, GError **err)
{
    struct transcode *tc = transcode_of(srv);
    if (tc == NULL) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "transcode is not enabled");
        return NULL;
    }
    struct hls_channel *ch = channel_get(tc, channel);
    if (ch->stream) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_BUSY, "channel %s already has a publisher",
                    channel);
        return NULL;
    }
    if (g_mkdir_with_parents(ch->source_dir, 0755) != 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno), "cannot create %s: %s",
                    ch->source_dir, g_strerror(errno));
        return NULL;
    }
    transcode_stream *s = g_new0(transcode_stream, 1);
    s->ch = ch;
    s->wall0_ms = sl_now_ms();
    s->last_key_ms = -1;
    if (ch->state == CH_GRACE) { /* a reconnect: same playlist, after a discontinuity */
        g_source_remove(ch->grace_timer);
        ch->grace_timer = 0;
        hls_playlist_discontinuity(&ch->playlist);
    } else {
        if (ch->retention_timer) g_source_remove(ch->retention_timer);
        ch->retention_timer = 0;
        remove_media(ch); /* a new stream: what an earlier one left is gone */
        hls_playlist_clear(&ch->playlist);
        hls_playlist_init(&ch->playlist, (int)tc->window, (int)tc->segment_s);
        ch->started_at_ms = s->wall0_ms;
        ch->bandwidth = 0;
        ch->width = ch->height = 0;
    }
    if (stream_start_pipeline(s, err) != SL_OK) {
        stream_free(s);
        if (ch->state == CH_GRACE) channel_end(ch);
        return NULL;
    }
    ch->state = CH_LIVE;
    ch->stream = s;
    sl_metric_add(tc->m_live, 1);
    return s;
}

static void note_codec(transcode_stream *s, uint8_t type, const uint8_t *data, size_t len)
{
    if (type == 9 && len >= 9) { /* AVCDecoderConfigurationRecord: profile, compat, level */
        g_snprintf(s->video_codec, sizeof s->video_codec, "avc1.%02x%02x%02x", data[6], data[7],
                   data[8]);
        if (s->avc_config) g_bytes_unref(s->avc_config);
        s->avc_config = g_bytes_new(data, len);
    } else if (type == 8 && len >= 3) { /* AudioSpecificConfig: the object type */
        g_snprintf(s->audio_codec, sizeof s->audio_codec, "mp4a.40.%d", data[2] >> 3);
        if (s->aac_config) g_bytes_unref(s->aac_config);
        s->aac_config = g_bytes_new(data, len);
    }
}

static void push_config(transcode_stream *s, GBytes *b, uint8_t type, uint32_t ts)
{
    if (b == NULL) return;
    gsize n;
    const uint8_t *p = g_bytes_get_data(b, &n);
    remux_push(s->remux, type, ts, p, n);
}

void transcode_stream_push(transcode_stream *s, uint8_t type, uint32_t ts_ms, const uint8_t *data,
                           size_t len)
{
    struct transcode *tc = s->ch->tc;
    if (len < 2 || (type != 8 && type != 9)) return;
    gboolean supported = type == 9 ? (data[0] & 0x0f) == 7 : (data[0] >> 4) == 10;
    if (!supported) { /* HEVC over enhanced RTMP, VP6, MP3, Speex...: not remuxable to TS here */
        sl_metric_add(tc->m_unsupported, 1);
        return;
    }
    gboolean config = data[1] == 0;
    gboolean keyframe = type == 9 && (data[0] >> 4) == 1 && !config;
    s->has_edge = TRUE;
    s->edge_ts_ms = ts_ms;
    s->edge_wall_ms = sl_now_ms();
    if (config) note_codec(s, type, data, len);
    if (type == 9) s->saw_video = TRUE;
    if (keyframe) {
        if (s->last_key_ms >= 0) sl_metric_set(s->ch->m_keyframe, ts_ms - s->last_key_ms);
        s->last_key_ms = ts_ms;
    }
    if (s->remux == NULL) {
        /* rebuild after a failure where a segment can start: a keyframe (or any audio frame
         * when there is no video), with the codec configuration first */
        if (config || !(keyframe || (type == 8 && !s->saw_video))) return;
        GError *e = NULL;
        if (stream_start_pipeline(s, &e) != SL_OK) {
            g_warning("channel %s: cannot rebuild the pipeline: %s", s->ch->id, e->message);
            g_error_free(e);
            return;
        }
        push_config(s, s->avc_config, 9, ts_ms);
        push_config(s, s->aac_config, 8, ts_ms);
    }
    if (remux_push(s->remux, type, ts_ms, data, len) != SL_OK) sl_metric_add(tc->m_dropped, 1);
}

void transcode_stream_close(transcode_stream *s)
{
    if (s == NULL) return;
    struct hls_channel *ch = s->ch;
    struct transcode *tc = ch->tc;
    s->closed = TRUE;
    ch->stream = NULL;
    sl_metric_add(tc->m_live, -1);
    ch->state = CH_GRACE;
    ch->grace_timer = g_timeout_add_seconds((guint)tc->grace_s, grace_over, ch);
    if (ch->listed) emit(ch, "unpublish");
    if (s->remux) {
        g_ptr_array_add(ch->draining, s);
        remux_finish(s->remux); /* on_done frees s, maybe right now */
    } else {
        stream_free(s);
    }
}

/* ---- module ---- */

static int transcode_init(sl_server *srv, GError **err)
{
    const struct sl_config *cfg = sl_server_config(srv);
    struct transcode *tc = g_new0(struct transcode, 1);
    tc->srv = srv;
    if (sl_config_get_int(cfg, "transcode", "segment_s", 2, 1, 10, &tc->segment_s, err) ||
        sl_config_get_int(cfg, "transcode", "window", 6, 3, 100, &tc->window, err) ||
        sl_config_get_int(cfg, "transcode", "grace_s", 10, 0, 3600, &tc->grace_s, err) ||
        sl_config_get_int(cfg, "transcode", "retention_s", 300, 0, 30 * 86400, &tc->retention_s,
                          err)) {
        g_free(tc);
        return SL_ERR;
    }
    gst_init(NULL, NULL);
    tc->channels = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, channel_free);
    tc->m_live = sl_metric_get("silklive_live_streams", SL_METRIC_GAUGE,
                               "Channels with a publisher on this node", NULL, 1);
    tc->m_segments = sl_metric_get("silklive_segments_written_total", SL_METRIC_COUNTER,
                                   "HLS segments listed in a playlist", NULL, 1);
    tc->m_dropped = sl_metric_get("silklive_transcode_dropped_total", SL_METRIC_COUNTER,
                                  "Frames dropped because a pipeline fell behind", NULL, 1);
    tc->m_unsupported = sl_metric_get("silklive_transcode_unsupported_total", SL_METRIC_COUNTER,
                                      "Frames of codecs other than H.264/AAC, dropped", NULL, 1);
    tc->m_failed = sl_metric_get("silklive_transcode_pipeline_failures_total", SL_METRIC_COUNTER,
                                 "Pipelines that failed and were rebuilt", NULL, 1);
    sl_server_set_module_data(srv, SL_MODULE_TRANSCODE, tc);
    return SL_OK;
}

/* Shutdown: no time to drain pipelines; end every playlist as it stands. */
static void transcode_stop(sl_server *srv)
{
    struct transcode *tc = transcode_of(srv);
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, tc->channels);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct hls_channel *ch = value;
        if (ch->stream) {
            stream_free(ch->stream);
            ch->stream = NULL;
            sl_metric_add(tc->m_live, -1);
        }
        for (guint i = 0; i < ch->draining->len; i++)
            stream_free(ch->draining->pdata[i]);
        g_ptr_array_set_size(ch->draining, 0);
        if (ch->state == CH_LIVE || ch->state == CH_GRACE) channel_end(ch);
    }
}

static void transcode_destroy(sl_server *srv)
{
    struct transcode *tc = transcode_of(srv);
    if (tc == NULL) return;
    transcode_stop(srv); /* no-op after a stop; frees streams after a failed start */
    g_hash_table_unref(tc->channels);
    g_free(tc);
    sl_server_set_module_data(srv, SL_MODULE_TRANSCODE, NULL);
}

const struct sl_module transcode_module = {
    .name = "transcode",
    .mask = SL_MODULE_TRANSCODE,
    .init = transcode_init,
    .stop = transcode_stop,
    .destroy = transcode_destroy,
};
