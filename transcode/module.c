/* transcode module: per channel, the renditions' HLS playlists on disk (the source and the
 * ladder's rungs), the broadcast's recording, the live state in Redis and the stream events on
 * the room, across publish sessions (reconnect grace, end, retention) and rebuilt pipelines
 * (failures, shedding rungs under overload and restoring them). */
#include "transcode.h"

#include "internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <hiredis/hiredis.h>
#include <string.h>
#include <unistd.h>

#define LIVE_LEASE_MS      30000 /* a node that dies leaves its channels live this long at most */
#define LIVE_RENEW_S       10
#define DEFAULT_LADDER     "720p:2500,480p:1200,360p:700"
#define PIPELINE_WARMUP_MS 5000

enum { CH_IDLE, CH_LIVE, CH_GRACE, CH_ENDED };

struct transcode {
    sl_server *srv;
    int64_t segment_s, window, grace_s, retention_s, poster_s;
    int64_t restore_s;    /* quiet this long before a shed rung comes back; doubles on relapse */
    char *preset;         /* owned; x264 speed preset */
    GArray *ladder;       /* struct remux_rung: [transcode] ladder */
    GHashTable *ladders;  /* pavilion code -> GArray* of rungs: [ladder] <CODE> = ... */
    GHashTable *channels; /* id -> struct hls_channel (owned) */
    /* One timer for every stream's load check and every live lease: a source per stream would
     * make each turn of the loop, that is each frame received, walk them all. */
    guint tick_timer;
    sl_metric *m_live, *m_segments, *m_dropped, *m_unsupported, *m_failed, *m_shed, *m_restored,
        *m_write_failed, *m_late, *m_ladder_off;
};

/* One rendition of a channel: its directory, its live playlist and what the master says of it. */
struct rendition {
    char name[16];
    char *dir; /* owned; <media>/<channel>/<name> */
    struct hls_playlist playlist;
    char last_prefix[32]; /* pipeline of the last listed segment: a new one is a discontinuity */
    guint last_gen;       /* generation of that pipeline */
    int width, height, fps_n, fps_d;
    char *codecs;       /* owned */
    int64_t peak_bps;   /* BANDWIDTH */
    double bits, secs;  /* AVERAGE-BANDWIDTH */
    gboolean in_master; /* listed by the master playlist */
    gboolean current;   /* produced by the current pipeline */
};

struct hls_channel {
    struct transcode *tc;
    char *id;  /* owned */
    char *dir; /* owned; <media>/<id> */
    int state;
    GPtrArray *rends;         /* struct rendition* (owned); [0] is the source */
    transcode_stream *stream; /* the publishing stream, or NULL */
    GPtrArray *draining;      /* closed streams whose last segments are being written */
    guint gens;               /* pipelines built for the channel so far, each's generation */
    int64_t started_at_ms;
    gboolean listed; /* this session's first segment is out: the channel is live */
    guint grace_timer, retention_timer;
    int lease_age_s; /* -1: no live lease to renew; else seconds since it was stored */
    sl_metric *m_keyframe;
    struct recording *rec; /* the broadcast being recorded, or NULL */
};

struct transcode_stream {
    struct hls_channel *ch;
    remux *remux;       /* owned; NULL after a failure until the next keyframe rebuilds it */
    GPtrArray *retired; /* remux* (owned) finishing their last segments after a switch */
    char *prefix;       /* owned; segment file prefix, unique per pipeline */
    int rebuilds;
    int64_t wall0_ms;                /* wall clock at timestamp 0 */
    GBytes *avc_config, *aac_config; /* owned; replayed into a rebuilt pipeline */
    char video_codec[24], audio_codec[24];
    char pavilion[8]; /* from the channel document, for a pavilion's own ladder */
    /* Until the channel document has answered, which ladder applies is unknown: the first
     * frames wait here (bounded) rather than start a pipeline on the wrong ladder. */
    gboolean ladder_known;
    GQueue early; /* struct early_tag* */
    size_t early_bytes;
    gboolean saw_video, closed;
    int64_t last_key_ms;
    gboolean has_edge;
    int64_t edge_ts_ms, edge_wall_ms; /* the newest frame pushed, and when it arrived */
    /* overload: rungs shed from the top of the ladder, and when to try them again */
    int shed, n_rungs, quiet_s, behind_s, restore_after_s, since_restore_s;
    int64_t pipeline_ms; /* when the current pipeline started */
    GHashTable *gen_of;  /* pipelines still writing -> GUINT_TO_POINTER(generation) */
    gboolean rebuild;    /* switch pipelines at the next keyframe */
    char *failed;        /* owned; why the stream cannot go on (the disk is full), or NULL */
    /* pipelines that failed in a row: each waits longer to be rebuilt, and after
     * LADDER_FAILURES_MAX the ladder is given up for this stream (the source goes on) */
    int failures;
    int64_t retry_at_ms;
    gboolean ladder_off;
    gboolean said_unsupported; /* the log has the line about a codec it cannot carry */
};

#define LADDER_FAILURES_MAX 3
#define REBUILD_BACKOFF_MS  500
#define REBUILD_BACKOFF_MAX 30000

static struct transcode *transcode_of(sl_server *srv)
{
    return sl_server_module_data(srv, SL_MODULE_TRANSCODE);
}

/* ---- renditions and files ---- */

static struct rendition *rendition_get(struct hls_channel *ch, const char *name)
{
    for (guint i = 0; i < ch->rends->len; i++) {
        struct rendition *r = ch->rends->pdata[i];
        if (strcmp(r->name, name) == 0) return r;
    }
    struct rendition *r = g_new0(struct rendition, 1);
    g_strlcpy(r->name, name, sizeof r->name);
    r->dir = g_build_filename(ch->dir, name, NULL);
    hls_playlist_init(&r->playlist, (int)ch->tc->window, (int)ch->tc->segment_s);
    g_ptr_array_add(ch->rends, r);
    return r;
}

static void rendition_free(gpointer data)
{
    struct rendition *r = data;
    hls_playlist_clear(&r->playlist);
    g_free(r->dir);
    g_free(r->codecs);
    g_free(r);
}

static gboolean media_file(const char *name)
{
    return g_str_has_suffix(name, ".ts") || g_str_has_suffix(name, ".m3u8") ||
           g_str_has_suffix(name, ".tmp") || g_str_has_suffix(name, ".jpg") ||
           strchr(name, '.') == NULL;
}

/* The live media of the channel: every rendition's segments and playlists, the master and the
 * poster. Recordings (<channel>/vod/) stay. */
static void remove_media(struct hls_channel *ch)
{
    GDir *top = g_dir_open(ch->dir, 0, NULL);
    if (top == NULL) return;
    const char *entry;
    while ((entry = g_dir_read_name(top))) {
        char *path = g_build_filename(ch->dir, entry, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
            GDir *d = strcmp(entry, "vod") == 0 ? NULL : g_dir_open(path, 0, NULL);
            const char *name;
            while (d && (name = g_dir_read_name(d))) {
                if (!media_file(name)) continue; /* not ours */
                char *file = g_build_filename(path, name, NULL);
                g_unlink(file);
                g_free(file);
            }
            if (d) g_dir_close(d);
            if (d) g_rmdir(path);
        } else if (strcmp(entry, "master.m3u8") == 0 || strcmp(entry, "poster.jpg") == 0) {
            g_unlink(path);
        }
        g_free(path);
    }
    g_dir_close(top);
}

static void write_playlist(struct hls_channel *ch, struct rendition *r)
{
    hls_write_text(ch->id, r->dir, "index.m3u8", hls_playlist_render(&r->playlist));
}

/* Every rendition with a listed segment, best first (players start with the first). */
static void write_master(struct hls_channel *ch)
{
    GString *text = g_string_new("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (guint i = 0; i < ch->rends->len; i++) {
        struct rendition *r = ch->rends->pdata[i];
        if (!r->in_master) continue;
        g_string_append_printf(text, "#EXT-X-STREAM-INF:BANDWIDTH=%" G_GINT64_FORMAT,
                               MAX(r->peak_bps, 1));
        if (r->secs > 0)
            g_string_append_printf(text, ",AVERAGE-BANDWIDTH=%" G_GINT64_FORMAT,
                                   (int64_t)(r->bits / r->secs));
        if (r->width > 0) g_string_append_printf(text, ",RESOLUTION=%dx%d", r->width, r->height);
        if (r->codecs && *r->codecs) g_string_append_printf(text, ",CODECS=\"%s\"", r->codecs);
        if (r->fps_n > 0 && r->fps_d > 0)
            g_string_append_printf(text, ",FRAME-RATE=%.3f", (double)r->fps_n / r->fps_d);
        g_string_append_printf(text, "\n%s/index.m3u8\n", r->name);
    }
    hls_write_text(ch->id, ch->dir, "master.m3u8", text);
}

/* ---- live state ---- */

static json_t *live_doc(struct hls_channel *ch)
{
    json_t *renditions = json_array();
    for (guint i = 0; i < ch->rends->len; i++) {
        struct rendition *r = ch->rends->pdata[i];
        if (!r->in_master) continue;
        json_array_append_new(renditions,
                              json_pack("{s:s, s:i, s:i, s:I}", "name", r->name, "width", r->width,
                                        "height", r->height, "bandwidth", (json_int_t)r->peak_bps));
    }
    json_t *doc = json_pack("{s:I, s:o, s:s}", "started_at_ms", (json_int_t)ch->started_at_ms,
                            "renditions", renditions, "node", sl_server_node_id(ch->tc->srv));
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
    ch->lease_age_s = 0; /* transcode_tick renews it from now on */
    sl_redis *r = sl_server_redis(ch->tc->srv);
    sl_redis_command(r, NULL, NULL, "SET " SL_KEY_CHAN_LIVE " %s PX %d", ch->id, text,
                     LIVE_LEASE_MS);
    sl_redis_command(r, NULL, NULL, "ZADD " SL_KEY_LIVE_CHANS " %" G_GINT64_FORMAT " %s",
                     ch->started_at_ms, ch->id);
    free(text);
    json_decref(doc);
}

static void live_clear(struct hls_channel *ch)
{
    sl_redis *r = sl_server_redis(ch->tc->srv);
    sl_redis_command(r, NULL, NULL, "DEL " SL_KEY_CHAN_LIVE, ch->id);
    sl_redis_command(r, NULL, NULL, "ZREM " SL_KEY_LIVE_CHANS " %s", ch->id);
    ch->lease_age_s = -1;
}

static void emit(struct hls_channel *ch, const char *event)
{
    json_t *ev = sl_room_event_new(SL_ROOM_EV_STREAM);
    json_object_set_new(ev, "event", json_string(event));
    json_object_set_new(ev, "channel", json_string(ch->id));
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
    recording_end(ch->rec);
    g_ptr_array_unref(ch->rends);
    g_ptr_array_unref(ch->draining);
    g_free(ch->id);
    g_free(ch->dir);
    g_free(ch);
}

static struct hls_channel *channel_get(struct transcode *tc, const char *id)
{
    struct hls_channel *ch = g_hash_table_lookup(tc->channels, id);
    if (ch) return ch;
    ch = g_new0(struct hls_channel, 1);
    ch->tc = tc;
    ch->lease_age_s = -1;
    ch->id = g_strdup(id);
    ch->dir = g_build_filename(sl_server_config(tc->srv)->media_dir, id, NULL);
    ch->rends = g_ptr_array_new_with_free_func(rendition_free);
    rendition_get(ch, REMUX_SOURCE);
    ch->draining = g_ptr_array_new();
    char *labels = g_strdup_printf("channel=\"%s\"", id);
    ch->m_keyframe = sl_metric_get("silklive_keyframe_interval_seconds", SL_METRIC_GAUGE,
                                   "Time between the last two video keyframes", labels, 1000);
    g_free(labels);
    g_hash_table_insert(tc->channels, ch->id, ch);
    return ch;
}

static void renditions_reset(struct hls_channel *ch)
{
    g_ptr_array_set_size(ch->rends, 0);
    rendition_get(ch, REMUX_SOURCE);
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
    for (guint i = 0; i < ch->rends->len; i++) {
        struct rendition *r = ch->rends->pdata[i];
        hls_playlist_end(&r->playlist);
        if (r->in_master) write_playlist(ch, r);
    }
    recording_end(ch->rec);
    ch->rec = NULL;
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

struct early_tag {
    uint8_t type;
    uint32_t ts_ms;
    GBytes *body;
};

static void early_tag_free(gpointer p)
{
    struct early_tag *t = p;
    g_bytes_unref(t->body);
    g_free(t);
}

static void stream_free(transcode_stream *s)
{
    g_queue_clear_full(&s->early, early_tag_free);
    g_hash_table_unref(s->gen_of);
    remux_free(s->remux);
    for (guint i = 0; i < s->retired->len; i++)
        remux_free(s->retired->pdata[i]);
    g_ptr_array_unref(s->retired);
    if (s->avc_config) g_bytes_unref(s->avc_config);
    if (s->aac_config) g_bytes_unref(s->aac_config);
    g_free(s->prefix);
    g_free(s->failed);
    g_free(s);
}

/* avc1.PPCCLL for CODECS from the profile and level strings of GStreamer's H.264 caps. */
static char *codec_of(const struct remux_output_info *info, const char *fallback)
{
    static const struct {
        const char *name, *hex;
    } profiles[] = {{"constrained-baseline", "42e0"},
                    {"baseline", "4200"},
                    {"main", "4d40"},
                    {"high", "6400"},
                    {"high-10", "6e00"},
                    {"high-4:2:2", "7a00"}};
    if (info->profile[0] == '\0' || info->level[0] == '\0') return g_strdup(fallback);
    const char *hex = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(profiles); i++)
        if (strcmp(info->profile, profiles[i].name) == 0) hex = profiles[i].hex;
    int major = 0, minor = 0;
    if (hex == NULL || sscanf(info->level, "%d.%d", &major, &minor) < 1) return g_strdup(fallback);
    return g_strdup_printf("avc1.%s%02x", hex, major * 10 + minor);
}

/* Takes a new segment's figures into the rendition; TRUE when what the master says of it changed
 * (a publisher that came back within the grace period with another size, rate or profile). */
static gboolean update_rendition(transcode_stream *s, const struct remux_segment *seg,
                                 const struct remux_output_info *info, struct rendition *r,
                                 double duration)
{
    GStatBuf st;
    if (duration > 0.1 && g_stat(seg->location, &st) == 0) {
        double bits = (double)st.st_size * 8;
        int64_t bps = (int64_t)(bits / duration * 1.1);
        if (bps > r->peak_bps) r->peak_bps = bps;
        r->bits += bits;
        r->secs += duration;
    }
    gboolean changed = FALSE;
    if (info->width > 0) {
        changed = r->width != info->width || r->height != info->height;
        r->width = info->width;
        r->height = info->height;
    }
    changed = changed || r->fps_n != info->fps_n || r->fps_d != info->fps_d;
    r->fps_n = info->fps_n;
    r->fps_d = info->fps_d;
    char *video = seg->output == 0 ? g_strdup(s->video_codec) : codec_of(info, "avc1.640028");
    char *codecs = video[0] && s->audio_codec[0] ? g_strdup_printf("%s,%s", video, s->audio_codec)
                                                 : g_strdup(video[0] ? video : s->audio_codec);
    changed = changed || g_strcmp0(codecs, r->codecs) != 0;
    g_free(r->codecs);
    r->codecs = codecs;
    g_free(video);
    return changed;
}

/* Is every output of the current pipeline listed (or has the source waited long enough)? */
static gboolean ready_to_list(struct hls_channel *ch)
{
    struct rendition *source = ch->rends->pdata[0];
    if (source->playlist.segments.length >= 2) return TRUE; /* a rung that lags is added later */
    for (guint i = 0; i < ch->rends->len; i++) {
        struct rendition *r = ch->rends->pdata[i];
        if (r->current && r->playlist.segments.length == 0) return FALSE;
    }
    return source->playlist.segments.length > 0;
}

static void on_segment(remux *rx, const struct remux_segment *seg, void *user)
{
    transcode_stream *s = user;
    struct hls_channel *ch = s->ch;
    double duration = (double)(seg->end_ns - seg->start_ns) / 1e9;
    if (duration <= 0) {
        g_unlink(seg->location); /* nothing playable in it */
        return;
    }
    struct remux_output_info info;
    remux_output_info(rx, seg->output, &info);
    struct rendition *r = rendition_get(ch, info.name);
    if (rx == s->remux) s->failures = 0; /* the current pipeline works */
    /* A retired pipeline still flushing its encoders can finish its last segment after the next
     * pipeline's first is listed: appended then, it would put the playlist out of time order
     * (PROGRAM-DATE-TIME going back). It is dropped: the switch is a discontinuity anyway, and
     * holding the new pipeline's segments until the old one is done stalled every rendition
     * for as long as an overloaded encoder took to flush. */
    guint gen = GPOINTER_TO_UINT(g_hash_table_lookup(s->gen_of, rx));
    if (gen < r->last_gen) {
        g_unlink(seg->location);
        sl_metric_add(ch->tc->m_late, 1);
        return;
    }
    r->last_gen = gen;
    int64_t pdt = s->wall0_ms + seg->media_start_ms;
    char *uri = g_path_get_basename(seg->location);
    /* a segment of another pipeline than the last one follows a gap */
    const char *cut = strrchr(uri, '_');
    char prefix[32];
    g_strlcpy(prefix, uri, MIN(sizeof prefix, cut ? (size_t)(cut - uri) + 1 : sizeof prefix));
    gboolean disc = r->last_prefix[0] && strcmp(prefix, r->last_prefix) != 0;
    if (disc) hls_playlist_discontinuity(&r->playlist);
    g_strlcpy(r->last_prefix, prefix, sizeof r->last_prefix);
    if (seg->output == 0 && ch->rec) recording_segment(ch->rec, seg->location, duration, pdt, disc);
    char *old = hls_playlist_append(&r->playlist, uri, duration, pdt);
    g_free(uri);
    if (old) {
        char *path = g_build_filename(r->dir, old, NULL);
        g_unlink(path);
        g_free(path);
        g_free(old);
    }
    sl_metric_add(ch->tc->m_segments, 1);
    gboolean described_anew = update_rendition(s, seg, &info, r, duration);
    write_playlist(ch, r);
    if (!ch->listed && ready_to_list(ch)) { /* the channel is live for viewers */
        ch->listed = TRUE;
        for (guint i = 0; i < ch->rends->len; i++) {
            struct rendition *x = ch->rends->pdata[i];
            x->in_master = x->playlist.segments.length > 0;
        }
        write_master(ch);
        live_store(ch);
        emit(ch, "publish");
        g_message("channel %s: live (%u renditions)", ch->id, ch->rends->len);
    } else if (ch->listed && (!r->in_master || described_anew)) {
        r->in_master = TRUE; /* a rung restored or one that lagged, or a new description */
        write_master(ch);
        live_store(ch);
    }
}

static void on_done(remux *rx, const char *error, void *user)
{
    transcode_stream *s = user;
    g_hash_table_remove(s->gen_of, rx);
    if (rx != s->remux) { /* a pipeline retired by a switch has written its last segments */
        g_ptr_array_remove_fast(s->retired, rx);
        remux_free(rx);
    } else {
        remux_free(s->remux);
        s->remux = NULL;
        if (error && !s->closed) {
            /* rebuilt at a keyframe after a backoff, never in a tight loop */
            sl_metric_add(s->ch->tc->m_failed, 1);
            s->failures++;
            s->retry_at_ms =
                sl_now_ms() +
                MIN((int64_t)REBUILD_BACKOFF_MS << MIN(s->failures - 1, 16), REBUILD_BACKOFF_MAX);
            if (s->failures >= LADDER_FAILURES_MAX && s->n_rungs > 0 && !s->ladder_off) {
                s->ladder_off = TRUE;
                sl_metric_add(s->ch->tc->m_ladder_off, 1);
                g_warning("channel %s: the ladder failed %d times (%s); going on with the source "
                          "alone (codec %s)",
                          s->ch->id, s->failures, error, s->video_codec);
            }
        }
    }
    if (s->closed && s->remux == NULL && s->retired->len == 0) {
        g_ptr_array_remove(s->ch->draining, s);
        stream_free(s);
    }
}

/* Media that cannot be written (a full or broken disk) would leave viewers a playlist that
 * silently stops: end the stream instead; the publisher is told on its next frame. */
static void on_write_failed(remux *rx, int err, void *user)
{
    transcode_stream *s = user;
    if (s->failed || s->closed) return;
    s->failed = g_strdup_printf("cannot write its media: %s", g_strerror(err));
    sl_metric_add(s->ch->tc->m_write_failed, 1);
    g_warning("channel %s: %s; ending the stream", s->ch->id, s->failed);
}

static const struct remux_events remux_events = {on_segment, on_done, on_write_failed};

static const GArray *ladder_for(struct transcode *tc, const char *pavilion)
{
    const GArray *own = pavilion[0] ? g_hash_table_lookup(tc->ladders, pavilion) : NULL;
    return own ? own : tc->ladder;
}

static int stream_start_pipeline(transcode_stream *s, GError **err)
{
    struct hls_channel *ch = s->ch;
    struct transcode *tc = ch->tc;
    struct remux_rung rungs[REMUX_MAX_OUTPUTS];
    int n = 0, w = 0, h = 0;
    gsize len = 0;
    const uint8_t *avc = s->avc_config ? g_bytes_get_data(s->avc_config, &len) : NULL;
    if (avc && len > 5 && !s->ladder_off && ladder_source_size(avc + 5, len - 5, &w, &h))
        n = ladder_fit(ladder_for(tc, s->pavilion), w, h, rungs, REMUX_MAX_OUTPUTS - 1);
    s->n_rungs = n;
    /* the most expensive rungs (the first) go first when encoding falls behind */
    int skip = MIN(s->shed, n);
    g_free(s->prefix);
    s->prefix = g_strdup_printf("%" G_GINT64_MODIFIER "x%d", s->wall0_ms, s->rebuilds++);
    struct rendition *source = ch->rends->pdata[0];
    struct remux_config cfg = {.dir = ch->dir,
                               .prefix = s->prefix,
                               .first_index = hls_playlist_next_seq(&source->playlist),
                               .segment_ns = tc->segment_s * GST_SECOND,
                               .rungs = rungs + skip,
                               .n_rungs = n - skip,
                               .preset = tc->preset,
                               .poster_interval_ns = tc->poster_s * GST_SECOND};
    s->remux = remux_new(&cfg, &remux_events, s, err);
    if (s->remux == NULL) return SL_ERR;
    g_hash_table_insert(s->gen_of, s->remux, GUINT_TO_POINTER(++ch->gens));
    for (guint i = 0; i < ch->rends->len; i++)
        ((struct rendition *)ch->rends->pdata[i])->current = i == 0;
    for (int i = skip; i < n; i++)
        rendition_get(ch, rungs[i].name)->current = TRUE;
    /* a shed rung leaves the master: players switch to what is still produced */
    gboolean changed = FALSE;
    for (guint i = 0; i < ch->rends->len; i++) {
        struct rendition *r = ch->rends->pdata[i];
        if (r->in_master && !r->current) {
            r->in_master = FALSE;
            changed = TRUE;
        }
    }
    if (changed && ch->listed) {
        write_master(ch);
        live_store(ch);
    }
    return SL_OK;
}

/* Once a second: did the rungs' encoders drop frames? Shed the most expensive rung (the next
 * pipeline is built without it); after a quiet spell try the full ladder again, waiting twice
 * as long each time a restore did not hold. */
static void load_check(transcode_stream *s)
{
    struct transcode *tc = s->ch->tc;
    int overruns = s->remux ? remux_take_overruns(s->remux) : 0;
    s->since_restore_s++;
    /* A new pipeline's decoder and encoders start cold (threads, lookahead) and may drop a few
     * frames before they keep pace: that is not load, and shedding for it cost a rung for the
     * restore delay (30 s by default) of every broadcast's start. */
    if (s->remux && sl_now_ms() - s->pipeline_ms < PIPELINE_WARMUP_MS) return;
    /* behind for two seconds running, not a hiccup (a disk flush, a burst of chat) */
    s->behind_s = overruns > 0 ? s->behind_s + 1 : 0;
    if (s->behind_s >= 2 && s->shed < s->n_rungs && !s->rebuild) {
        s->behind_s = 0;
        if (s->since_restore_s < 2 * s->restore_after_s) /* the restore did not hold */
            s->restore_after_s = MIN(s->restore_after_s * 2, 3600);
        s->shed++;
        s->quiet_s = 0;
        s->rebuild = TRUE;
        sl_metric_add(tc->m_shed, 1);
        g_warning("channel %s: encoding fell behind real time (%d frames dropped); shedding "
                  "the most expensive rung, %d of %d rungs left",
                  s->ch->id, overruns, s->n_rungs - s->shed, s->n_rungs);
    } else if (overruns == 0 && s->shed > 0 && !s->rebuild && ++s->quiet_s >= s->restore_after_s) {
        s->shed--;
        s->quiet_s = 0;
        s->since_restore_s = 0;
        s->rebuild = TRUE;
        sl_metric_add(tc->m_restored, 1);
        g_message("channel %s: load allows; restoring a rung (%d of %d)", s->ch->id,
                  s->n_rungs - s->shed, s->n_rungs);
    }
}

static gboolean transcode_tick(gpointer data)
{
    struct transcode *tc = data;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, tc->channels);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct hls_channel *ch = value;
        if (ch->stream) load_check(ch->stream);
        if (ch->lease_age_s >= 0 && ++ch->lease_age_s >= LIVE_RENEW_S) live_store(ch);
    }
    return G_SOURCE_CONTINUE;
}

/* The pavilion of the channel, for its own ladder; until it arrives the global one applies. */
struct channel_lookup {
    struct transcode *tc;
    char *id; /* owned */
};

static int stream_feed(transcode_stream *s, uint8_t type, uint32_t ts_ms, const uint8_t *data,
                       size_t len);

/* The ladder is settled (the pavilion is known, or cannot be): the held frames go in. */
static void stream_ladder_known(transcode_stream *s)
{
    if (s->ladder_known) return;
    s->ladder_known = TRUE;
    struct early_tag *t;
    while ((t = g_queue_pop_head(&s->early)) != NULL) {
        gsize n;
        const uint8_t *p = g_bytes_get_data(t->body, &n);
        stream_feed(s, t->type, t->ts_ms, p, n);
        early_tag_free(t);
    }
    s->early_bytes = 0;
}

static void got_channel(struct redisReply *reply, const char *err, void *user)
{
    struct channel_lookup *q = user;
    (void)err;
    /* the module outlives its Redis replies: they are answered or failed before destroy */
    struct hls_channel *ch = g_hash_table_lookup(q->tc->channels, q->id);
    if (ch && ch->stream) {
        if (reply && reply->type == REDIS_REPLY_STRING) {
            json_t *doc = json_loadb(reply->str, reply->len, 0, NULL);
            const char *pav = json_string_value(json_object_get(doc, "pavilion"));
            if (pav) g_strlcpy(ch->stream->pavilion, pav, sizeof ch->stream->pavilion);
            json_decref(doc);
        }
        stream_ladder_known(ch->stream); /* without an answer, the global ladder */
    }
    g_free(q->id);
    g_free(q);
}

/* ---- public ---- */

transcode_stream *transcode_stream_open(sl_server *srv, const char *channel, GError **err)
{
    struct transcode *tc = transcode_of(srv);
    if (tc == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "transcode is not enabled");
        return NULL;
    }
    struct hls_channel *ch = channel_get(tc, channel);
    if (ch->stream) {
        g_set_error(err, SL_ERROR, SL_ERROR_CONFLICT, "channel %s already has a publisher",
                    channel);
        return NULL;
    }
    if (remux_check(tc->ladder->len > 0 || g_hash_table_size(tc->ladders) > 0, tc->poster_s > 0,
                    err) != SL_OK)
        return NULL;
    if (g_mkdir_with_parents(ch->dir, 0755) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot create %s: %s", ch->dir, g_strerror(errno));
        return NULL;
    }
    transcode_stream *s = g_new0(transcode_stream, 1);
    s->ch = ch;
    s->wall0_ms = sl_now_ms();
    s->last_key_ms = -1;
    s->retired = g_ptr_array_new();
    s->gen_of = g_hash_table_new(NULL, NULL);
    s->restore_after_s = (int)tc->restore_s;
    s->since_restore_s = 1 << 20;
    if (ch->state == CH_GRACE) { /* a reconnect: same playlists, after a discontinuity */
        g_source_remove(ch->grace_timer);
        ch->grace_timer = 0;
    } else {
        if (ch->retention_timer) g_source_remove(ch->retention_timer);
        ch->retention_timer = 0;
        remove_media(ch); /* a new stream: what an earlier one left is gone */
        renditions_reset(ch);
        ch->started_at_ms = s->wall0_ms;
        ch->rec = recording_start(srv, ch->id, ch->dir, ch->started_at_ms, (int)tc->segment_s);
    }
    /* The pipeline starts at the first frame a segment can start with (a keyframe, or audio
     * when there is no video), when the codec configuration has told the source's size. */
    ch->state = CH_LIVE;
    ch->stream = s;
    struct channel_lookup *q = g_new0(struct channel_lookup, 1);
    q->tc = tc;
    q->id = g_strdup(channel);
    if (sl_redis_command(sl_server_redis(srv), got_channel, q, "GET " SL_KEY_CHANNEL, channel) !=
        SL_OK) {
        g_free(q->id);
        g_free(q);
        s->ladder_known = TRUE; /* Redis is down: the global ladder */
    }
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

/* Frames held while the channel document is on its way: a few seconds at a high bitrate. */
#define EARLY_MAX_BYTES (4u << 20)

int transcode_stream_push(transcode_stream *s, uint8_t type, uint32_t ts_ms, const uint8_t *data,
                          size_t len)
{
    if (s->failed) return SL_ERR;
    if (!s->ladder_known) {
        if (s->early_bytes + len <= EARLY_MAX_BYTES) {
            struct early_tag *t = g_new0(struct early_tag, 1);
            t->type = type;
            t->ts_ms = ts_ms;
            t->body = g_bytes_new(data, len);
            g_queue_push_tail(&s->early, t);
            s->early_bytes += len;
            return SL_OK;
        }
        stream_ladder_known(s); /* Redis is that slow: go on with the global ladder */
    }
    return stream_feed(s, type, ts_ms, data, len);
}

static int stream_feed(transcode_stream *s, uint8_t type, uint32_t ts_ms, const uint8_t *data,
                       size_t len)
{
    struct transcode *tc = s->ch->tc;
    if (s->failed) return SL_ERR;
    if (len < 2 || (type != 8 && type != 9)) return SL_OK;
    gboolean supported = type == 9 ? (data[0] & 0x0f) == 7 : (data[0] >> 4) == 10;
    if (!supported) { /* HEVC over enhanced RTMP, VP6, MP3, Speex...: not remuxable to TS here */
        sl_metric_add(tc->m_unsupported, 1);
        if (!s->said_unsupported) {
            static const char *const audio[16] = {
                [0] = "PCM",        [1] = "ADPCM",      [2] = "MP3",
                [3] = "PCM",        [4] = "Nellymoser", [5] = "Nellymoser",
                [6] = "Nellymoser", [7] = "G.711",      [8] = "G.711",
                [11] = "Speex",     [14] = "MP3",       [15] = "device-specific"};
            const char *name = type == 8 ? audio[data[0] >> 4] : NULL;
            s->said_unsupported = TRUE;
            g_warning("channel %s: %s codec %s (id %d) is not supported; the stream goes on "
                      "without it (send H.264 and AAC)",
                      s->ch->id, type == 8 ? "audio" : "video", name ? name : "?",
                      type == 8 ? data[0] >> 4 : data[0] & 0x0f);
        }
        return SL_OK;
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
    gboolean startable = keyframe || (type == 8 && !s->saw_video && !config);
    if (s->remux && s->rebuild && startable) {
        /* switch pipelines (shed or restore a rung) here, where a segment can start: the old
         * one finishes its segments, the new one continues the playlists after a gap */
        remux *old = s->remux;
        /* off s->remux first: a pipeline with nothing in flight calls done() from inside
         * remux_finish(), which must see a retired pipeline and take it out of s->retired */
        s->remux = NULL;
        g_ptr_array_add(s->retired, old);
        remux_finish(old);
    }
    if (s->remux == NULL) {
        if (!startable || sl_now_ms() < s->retry_at_ms) return SL_OK;
        s->rebuild = FALSE;
        GError *e = NULL;
        s->pipeline_ms = sl_now_ms();
        if (stream_start_pipeline(s, &e) != SL_OK) {
            g_warning("channel %s: cannot build the pipeline: %s", s->ch->id, e->message);
            g_error_free(e);
            return SL_OK;
        }
        push_config(s, s->avc_config, 9, ts_ms);
        push_config(s, s->aac_config, 8, ts_ms);
    }
    if (remux_push(s->remux, type, ts_ms, data, len) != SL_OK) sl_metric_add(tc->m_dropped, 1);
    return SL_OK;
}

void transcode_stream_close(transcode_stream *s)
{
    if (s == NULL) return;
    stream_ladder_known(s); /* what was held is part of the broadcast */
    struct hls_channel *ch = s->ch;
    struct transcode *tc = ch->tc;
    s->closed = TRUE;
    ch->stream = NULL;
    sl_metric_add(tc->m_live, -1);
    if (s->failed) { /* no grace: the playlists end now, with what was written */
        if (ch->listed) emit(ch, "unpublish");
        stream_free(s);
        channel_end(ch);
        return;
    }
    ch->state = CH_GRACE;
    ch->grace_timer = g_timeout_add_seconds((guint)tc->grace_s, grace_over, ch);
    if (ch->listed) emit(ch, "unpublish");
    if (s->remux || s->retired->len > 0) {
        g_ptr_array_add(ch->draining, s);
        if (s->remux) remux_finish(s->remux); /* on_done frees s, maybe right now */
    } else {
        stream_free(s);
    }
}

/* ---- module ---- */

static int ladders_load(struct transcode *tc, const struct sl_config *cfg, GError **err)
{
    char *spec = g_key_file_get_string(cfg->file, "transcode", "ladder", NULL);
    gboolean ok = ladder_parse(spec ? spec : DEFAULT_LADDER, tc->ladder, err);
    g_free(spec);
    char **codes = ok ? g_key_file_get_keys(cfg->file, "ladder", NULL, NULL) : NULL;
    for (char **c = codes; c && *c && ok; c++) {
        char *value = g_key_file_get_string(cfg->file, "ladder", *c, NULL);
        GArray *rungs = g_array_new(FALSE, FALSE, sizeof(struct remux_rung));
        ok = sl_id_valid(*c, strlen(*c)) && ladder_parse(value ? value : "", rungs, err);
        if (ok)
            g_hash_table_insert(tc->ladders, g_strdup(*c), rungs);
        else
            g_array_unref(rungs);
        if (!ok && err && *err == NULL)
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[ladder] keys are pavilion codes");
        g_free(value);
    }
    g_strfreev(codes);
    if (!ok && err && *err) g_prefix_error(err, "config: ");
    return ok ? SL_OK : SL_ERR;
}

static void transcode_free(struct transcode *tc)
{
    if (tc->tick_timer) g_source_remove(tc->tick_timer);
    if (tc->channels) g_hash_table_unref(tc->channels);
    g_array_unref(tc->ladder);
    g_hash_table_unref(tc->ladders);
    g_free(tc->preset);
    g_free(tc);
}

static int transcode_init(sl_server *srv, GError **err)
{
    const struct sl_config *cfg = sl_server_config(srv);
    struct transcode *tc = g_new0(struct transcode, 1);
    tc->srv = srv;
    tc->ladder = g_array_new(FALSE, FALSE, sizeof(struct remux_rung));
    tc->ladders =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_array_unref);
    tc->preset = g_key_file_get_string(cfg->file, "transcode", "preset", NULL);
    if (tc->preset == NULL) tc->preset = g_strdup("veryfast");
    gst_init(NULL, NULL);
    transcode_swscale_register();
    transcode_h264dec_register();
    if (sl_config_get_int(cfg, "transcode", "segment_s", 2, 1, 10, &tc->segment_s, err) ||
        sl_config_get_int(cfg, "transcode", "window", 6, 3, 100, &tc->window, err) ||
        sl_config_get_int(cfg, "transcode", "grace_s", 10, 0, 3600, &tc->grace_s, err) ||
        sl_config_get_int(cfg, "transcode", "retention_s", 300, 0, 30 * 86400, &tc->retention_s,
                          err) ||
        sl_config_get_int(cfg, "transcode", "poster_s", 10, 0, 3600, &tc->poster_s, err) ||
        sl_config_get_int(cfg, "transcode", "restore_s", 30, 1, 3600, &tc->restore_s, err) ||
        ladders_load(tc, cfg, err)) {
        transcode_free(tc);
        return SL_ERR;
    }
    static const char *const presets[] = {"ultrafast", "superfast", "veryfast", "faster",  "fast",
                                          "medium",    "slow",      "slower",   "veryslow"};
    gboolean known = FALSE;
    for (size_t i = 0; i < G_N_ELEMENTS(presets); i++)
        known |= strcmp(tc->preset, presets[i]) == 0;
    if (!known) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                    "config: [transcode] preset must be an x264 preset (ultrafast ... veryslow)");
        transcode_free(tc);
        return SL_ERR;
    }
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
    tc->m_ladder_off = sl_metric_get("silklive_transcode_ladder_given_up_total", SL_METRIC_COUNTER,
                                     "Streams whose ladder failed repeatedly and that went on "
                                     "with the source alone",
                                     NULL, 1);
    tc->m_write_failed = sl_metric_get("silklive_transcode_write_failures_total", SL_METRIC_COUNTER,
                                       "Streams ended because their media could not be written "
                                       "(disk full)",
                                       NULL, 1);
    tc->m_shed =
        sl_metric_get("silklive_transcode_rungs_shed_total", SL_METRIC_COUNTER,
                      "Ladder rungs dropped because encoding fell behind real time", NULL, 1);
    tc->m_restored = sl_metric_get("silklive_transcode_rungs_restored_total", SL_METRIC_COUNTER,
                                   "Shed ladder rungs brought back when load allowed", NULL, 1);
    tc->m_late = sl_metric_get("silklive_transcode_late_segments_total", SL_METRIC_COUNTER,
                               "Segments a replaced pipeline finished after its successor's first, "
                               "dropped to keep playlists in time order",
                               NULL, 1);
    tc->tick_timer = g_timeout_add_seconds(1, transcode_tick, tc);
    sl_server_set_module_data(srv, SL_MODULE_TRANSCODE, tc);
    record_routes(srv);
    return SL_OK;
}

/* Moves a stream's pipelines (current and retired) to rs, for remux_free_all(). */
static void stream_take_remuxes(transcode_stream *s, GPtrArray *rs)
{
    if (s->remux) g_ptr_array_add(rs, s->remux);
    s->remux = NULL;
    for (guint i = 0; i < s->retired->len; i++)
        g_ptr_array_add(rs, s->retired->pdata[i]);
    g_ptr_array_set_size(s->retired, 0);
}

/* Budget for stopping every pipeline at shutdown; the watchdog (core) allows 9 s in all. */
#define STOP_PIPELINES_MS 4000

/* Shutdown: no time to drain pipelines; end every playlist as it stands. */
static void transcode_stop(sl_server *srv)
{
    struct transcode *tc = transcode_of(srv);
    GPtrArray *rs = g_ptr_array_new();
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, tc->channels);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct hls_channel *ch = value;
        if (ch->stream) stream_take_remuxes(ch->stream, rs);
        for (guint i = 0; i < ch->draining->len; i++)
            stream_take_remuxes(ch->draining->pdata[i], rs);
    }
    int left = remux_free_all(rs, STOP_PIPELINES_MS);
    if (left > 0)
        g_warning("%d pipelines did not stop within %d ms; ending their playlists without them",
                  left, STOP_PIPELINES_MS);
    g_ptr_array_unref(rs);
    flvts_shutdown();
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
    record_shutdown();
}

static void transcode_destroy(sl_server *srv)
{
    struct transcode *tc = transcode_of(srv);
    if (tc == NULL) return;
    transcode_stop(srv); /* no-op after a stop; frees streams after a failed start */
    transcode_free(tc);
    sl_server_set_module_data(srv, SL_MODULE_TRANSCODE, NULL);
}

const struct sl_module transcode_module = {
    .name = "transcode",
    .mask = SL_MODULE_TRANSCODE,
    .init = transcode_init,
    .stop = transcode_stop,
    .destroy = transcode_destroy,
};
