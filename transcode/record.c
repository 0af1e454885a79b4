/* record: a broadcast's recording for replay — every source segment kept (hard-linked) under
 * <channel>/vod/<broadcast>/ with a playlist that is EVENT while live and VOD once ended — and
 * its product highlights: each pin→unpin interval (from the room's events) cut into an MP4 on a
 * worker thread, listed in Redis and announced on the room. Also the two read endpoints. */
#include "internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <hiredis/hiredis.h>
#include <string.h>
#include <unistd.h>

#define HIGHLIGHTS_MAX 500
#define MIN_CLIP_MS    1000 /* a pin shorter than this is a slip of the finger, not a show */

struct span {
    char sku[65];
    int64_t start, end; /* PDT ms; end < 0 while the product is still pinned */
};

struct recording {
    sl_server *srv;
    char *channel, *id, *dir; /* owned */
    int64_t started_at_ms;
    struct hls_playlist playlist;
    GPtrArray *segments; /* struct highlight_input* (owned), in order */
    int64_t end_pdt;     /* end of the last recorded segment */
    struct span *open;   /* owned; the product pinned now */
    GPtrArray *waiting;  /* struct span* (owned): closed, until the recording covers them */
    gboolean ended;
    int jobs; /* clips being cut; the recording lives until they are done */
};

struct clip_job {
    struct recording *rec;
    struct span span;
    GPtrArray *inputs; /* struct highlight_input* (owned copies) */
    char *path, *url;  /* owned */
    int64_t clip_start, clip_end;
    GError *error; /* owned */
};

static void input_free(gpointer data)
{
    struct highlight_input *in = data;
    g_free(in->path);
    g_free(in);
}

static void recording_free(struct recording *rec)
{
    hls_playlist_clear(&rec->playlist);
    g_ptr_array_unref(rec->segments);
    g_ptr_array_unref(rec->waiting);
    g_free(rec->open);
    g_free(rec->channel);
    g_free(rec->id);
    g_free(rec->dir);
    g_free(rec);
}

/* ---- the broadcast document ---- */

static void store_broadcast(struct recording *rec)
{
    double secs = 0;
    for (GList *l = rec->playlist.segments.head; l; l = l->next)
        secs += ((struct hls_segment *)l->data)->duration;
    json_t *doc =
        json_pack("{s:s, s:s, s:I, s:o, s:f, s:b, s:o}", "id", rec->id, "channel", rec->channel,
                  "started_at_ms", (json_int_t)rec->started_at_ms, "ended_at_ms",
                  rec->ended ? json_integer(sl_now_ms()) : json_null(), "duration_s", secs, "live",
                  !rec->ended, "url", json_sprintf("/vod/%s/%s/index.m3u8", rec->channel, rec->id));
    char *text = json_dumps(doc, JSON_COMPACT);
    sl_redis_command(sl_server_redis(rec->srv), NULL, NULL, "HSET " SL_KEY_CHAN_BROADCASTS " %s %s",
                     rec->channel, rec->id, text);
    free(text);
    json_decref(doc);
}

static void write_vod_playlist(struct recording *rec)
{
    hls_write_text(rec->channel, rec->dir, "index.m3u8", hls_playlist_render(&rec->playlist));
}

/* ---- clips ---- */

static void clip_job_free(struct clip_job *job)
{
    g_ptr_array_unref(job->inputs);
    g_free(job->path);
    g_free(job->url);
    g_clear_error(&job->error);
    g_free(job);
}

/* Clips are cut on a small pool; finished jobs come back to the loop through a queue, and at
 * shutdown the pool is waited for and the queue drained while Redis is still there. */
static GThreadPool *clip_pool;
static GAsyncQueue *clip_finished;

static void clip_done(struct clip_job *job)
{
    struct recording *rec = job->rec;
    if (job->error) {
        g_warning("channel %s: highlight of %s not cut: %s", rec->channel, job->span.sku,
                  job->error->message);
    } else {
        json_t *doc = json_pack("{s:s, s:I, s:I, s:s, s:s}", "sku", job->span.sku, "start_ms",
                                (json_int_t)job->clip_start, "end_ms", (json_int_t)job->clip_end,
                                "url", job->url, "broadcast", rec->id);
        char *text = json_dumps(doc, JSON_COMPACT);
        sl_redis *r = sl_server_redis(rec->srv);
        sl_redis_command(r, NULL, NULL, "RPUSH " SL_KEY_CHAN_HIGHLIGHTS " %s", rec->channel, text);
        sl_redis_command(r, NULL, NULL, "LTRIM " SL_KEY_CHAN_HIGHLIGHTS " -%d -1", rec->channel,
                         HIGHLIGHTS_MAX);
        free(text);
        json_object_set_new(doc, "type", json_string(sl_room_event_name(SL_ROOM_EV_HIGHLIGHT)));
        json_object_set_new(doc, "channel", json_string(rec->channel));
        sl_room_emit(rec->srv, rec->channel, doc, NULL, NULL);
        json_decref(doc);
        g_message("channel %s: highlight of %s, %.1f s", rec->channel, job->span.sku,
                  (double)(job->clip_end - job->clip_start) / 1000);
    }
    clip_job_free(job);
    if (--rec->jobs == 0 && rec->ended) recording_free(rec);
}

static gboolean clips_drain(gpointer unused)
{
    struct clip_job *job;
    if (clip_finished == NULL) return G_SOURCE_REMOVE; /* an idle of a clip cut before shutdown */
    while ((job = g_async_queue_try_pop(clip_finished)))
        clip_done(job);
    return G_SOURCE_REMOVE;
}

static void clip_thread(gpointer data, gpointer unused)
{
    struct clip_job *job = data;
    highlight_cut(job->inputs, job->span.start, job->span.end, job->path, &job->clip_start,
                  &job->clip_end, &job->error);
    g_async_queue_push(clip_finished, job);
    g_idle_add(clips_drain, NULL);
}

/* Cut a closed span once the recording reaches its end (or the broadcast is over). */
static void clip_queue(struct recording *rec, const struct span *span)
{
    if (span->end - span->start < MIN_CLIP_MS) {
        /* said, because a replay a viewer expected and never got must be explainable */
        g_message("channel %s: %s was on screen for %" G_GINT64_FORMAT
                  " ms of the recording (%" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
                  ", recorded up to %" G_GINT64_FORMAT "); no highlight",
                  rec->channel, span->sku, span->end - span->start, span->start, span->end,
                  rec->end_pdt);
        return;
    }
    struct clip_job *job = g_new0(struct clip_job, 1);
    job->rec = rec;
    job->span = *span;
    job->inputs = g_ptr_array_new_with_free_func(input_free);
    for (guint i = 0; i < rec->segments->len; i++) {
        const struct highlight_input *seg = rec->segments->pdata[i];
        const struct highlight_input *next =
            i + 1 < rec->segments->len ? rec->segments->pdata[i + 1] : NULL;
        int64_t seg_end = next ? next->pdt_ms : rec->end_pdt;
        if (seg_end <= span->start || seg->pdt_ms > span->end) continue;
        struct highlight_input *copy = g_new0(struct highlight_input, 1);
        copy->path = g_strdup(seg->path);
        copy->pdt_ms = seg->pdt_ms;
        g_ptr_array_add(job->inputs, copy);
    }
    char *name = g_strdup_printf("highlight-%s-%" G_GINT64_FORMAT ".mp4", span->sku, span->start);
    job->path = g_build_filename(rec->dir, name, NULL);
    job->url = g_strdup_printf("/vod/%s/%s/%s", rec->channel, rec->id, name);
    g_free(name);
    rec->jobs++;
    g_thread_pool_push(clip_pool, job, NULL);
}

static void close_span(struct recording *rec, int64_t at)
{
    if (rec->open == NULL) return;
    rec->open->end = MAX(at, rec->open->start);
    g_ptr_array_add(rec->waiting, rec->open);
    rec->open = NULL;
}

/* Spans the recording now covers are cut; at the end, all of them. */
static void start_covered(struct recording *rec)
{
    for (guint i = 0; i < rec->waiting->len;) {
        struct span *s = rec->waiting->pdata[i];
        if (rec->ended || s->end <= rec->end_pdt) {
            clip_queue(rec, s);
            g_ptr_array_remove_index(rec->waiting, i);
        } else {
            i++;
        }
    }
}

/* ---- the room's pin and unpin ---- */

static void on_room(const char *channel, const char *msg, size_t len, void *user)
{
    struct recording *rec = user;
    json_t *ev = json_loadb(msg, len, 0, NULL);
    enum sl_room_event type = sl_room_event_type(ev);
    if (type == SL_ROOM_EV_PIN || type == SL_ROOM_EV_UNPIN) {
        /* pdt_ms: the moment in the picture; without it (not live yet) the wall clock */
        json_t *pdt = json_object_get(ev, "pdt_ms");
        int64_t at = json_is_integer(pdt) ? json_integer_value(pdt)
                                          : json_integer_value(json_object_get(ev, "ts_ms"));
        close_span(rec, at);
        const char *sku = json_string_value(json_object_get(json_object_get(ev, "product"), "sku"));
        if (type == SL_ROOM_EV_PIN && sku && sl_id_valid(sku, strlen(sku))) {
            rec->open = g_new0(struct span, 1);
            g_strlcpy(rec->open->sku, sku, sizeof rec->open->sku);
            rec->open->start = at;
            rec->open->end = -1;
        }
        start_covered(rec);
    }
    json_decref(ev);
}

/* A product already pinned when the broadcast starts is on screen from its first frame. */
static void got_pinned(struct redisReply *reply, const char *err, void *user)
{
    struct recording *rec = user;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING || rec->open || rec->ended) return;
    json_t *ev = json_loadb(reply->str, reply->len, 0, NULL);
    const char *sku = json_string_value(json_object_get(json_object_get(ev, "product"), "sku"));
    if (sku && sl_id_valid(sku, strlen(sku))) {
        rec->open = g_new0(struct span, 1);
        g_strlcpy(rec->open->sku, sku, sizeof rec->open->sku);
        rec->open->start = rec->started_at_ms;
        rec->open->end = -1;
    }
    json_decref(ev);
}

/* ---- public ---- */

struct recording *recording_start(sl_server *srv, const char *channel, const char *channel_dir,
                                  int64_t started_at_ms, int target_s)
{
    struct recording *rec = g_new0(struct recording, 1);
    rec->srv = srv;
    rec->channel = g_strdup(channel);
    rec->started_at_ms = started_at_ms;
    rec->id = g_strdup_printf("%" G_GINT64_FORMAT, started_at_ms);
    rec->dir = g_build_filename(channel_dir, "vod", rec->id, NULL);
    rec->segments = g_ptr_array_new_with_free_func(input_free);
    rec->waiting = g_ptr_array_new_with_free_func(g_free);
    hls_playlist_init(&rec->playlist, 0, target_s);
    if (g_mkdir_with_parents(rec->dir, 0755) != 0)
        g_warning("channel %s: cannot create %s: %s; not recorded", channel, rec->dir,
                  g_strerror(errno));
    store_broadcast(rec);
    sl_room_subscribe(srv, rec->channel, on_room, rec);
    /* the pinned product as the room's snapshot has it, on the same connection as the
     * subscription's events will be handled after */
    sl_redis_command(sl_server_redis(srv), got_pinned, rec, "HGET " SL_KEY_ROOM_STATE " pinned",
                     channel);
    return rec;
}

void recording_segment(struct recording *rec, const char *path, double duration, int64_t pdt_ms,
                       gboolean discontinuity)
{
    char *name = g_path_get_basename(path);
    char *kept = g_build_filename(rec->dir, name, NULL);
    /* a hard link: the live window may delete its name, the recording keeps the data */
    gboolean ok = link(path, kept) == 0 || errno == EEXIST;
    if (!ok) {
        GFile *from = g_file_new_for_path(path), *to = g_file_new_for_path(kept);
        ok = g_file_copy(from, to, G_FILE_COPY_OVERWRITE, NULL, NULL, NULL, NULL);
        g_object_unref(from);
        g_object_unref(to);
    }
    if (ok) {
        if (discontinuity) hls_playlist_discontinuity(&rec->playlist);
        g_free(hls_playlist_append(&rec->playlist, name, duration, pdt_ms));
        struct highlight_input *in = g_new0(struct highlight_input, 1);
        in->path = g_strdup(kept);
        in->pdt_ms = pdt_ms;
        g_ptr_array_add(rec->segments, in);
        rec->end_pdt = pdt_ms + (int64_t)(duration * 1000);
        write_vod_playlist(rec);
        if (rec->segments->len == 1) store_broadcast(rec);
        start_covered(rec);
    } else {
        g_warning("channel %s: segment %s not recorded", rec->channel, name);
    }
    g_free(name);
    g_free(kept);
}

void recording_end(struct recording *rec)
{
    if (rec == NULL || rec->ended) return;
    rec->ended = TRUE;
    sl_room_unsubscribe(rec->srv, rec->channel, on_room, rec);
    close_span(rec, rec->end_pdt);
    hls_playlist_end(&rec->playlist);
    write_vod_playlist(rec);
    store_broadcast(rec);
    start_covered(rec);
    if (rec->jobs == 0) recording_free(rec);
}

/* ---- routes ---- */

struct read {
    sl_http_req *req;
    char *id; /* owned */
    gboolean highlights;
};

static void read_reply(struct redisReply *reply, const char *err, void *user)
{
    struct read *q = user;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        sl_http_reply_error(q->req, 503, "unavailable", "the store is unavailable");
    } else if (reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[0]->integer == 0) {
        sl_http_reply_error(q->req, 404, "not_found", "no channel %s", q->id);
    } else {
        redisReply *items = reply->element[1];
        json_t *list = json_array();
        /* highlights: a list, oldest first; broadcasts: a hash, field and value alternating */
        size_t step = q->highlights ? 1 : 2;
        for (size_t i = step - 1; i < items->elements; i += step) {
            json_t *doc = json_loadb(items->element[i]->str, items->element[i]->len, 0, NULL);
            if (doc) json_array_append_new(list, doc);
        }
        if (q->highlights) {
            sl_http_reply_json(q->req, 200, list); /* api.md: a bare array */
        } else {
            size_t n = json_array_size(list);
            for (size_t i = 1; i < n; i++) /* newest first; few per channel */
                for (size_t j = i; j > 0; j--) {
                    json_t *a = json_array_get(list, j - 1), *b = json_array_get(list, j);
                    if (json_integer_value(json_object_get(a, "started_at_ms")) >=
                        json_integer_value(json_object_get(b, "started_at_ms")))
                        break;
                    json_incref(a);
                    json_array_set(list, j - 1, b);
                    json_array_set_new(list, j, a);
                }
            sl_http_reply_json(q->req, 200, json_pack("{s:o}", "broadcasts", list));
        }
    }
    sl_http_req_unref(q->req);
    g_free(q->id);
    g_free(q);
}

static void read_list(sl_http_req *req, void *user, gboolean highlights)
{
    sl_server *srv = user;
    const char *id = sl_http_req_param(req, "id");
    if (id == NULL || !sl_id_valid(id, strlen(id))) {
        sl_http_reply_error(req, 400, "bad_request", "channel ids match [A-Za-z0-9_-]{1,64}");
        return;
    }
    struct read *q = g_new0(struct read, 1);
    q->req = sl_http_req_ref(req);
    q->id = g_strdup(id);
    q->highlights = highlights;
    char *exists = g_strdup_printf(SL_KEY_CHANNEL, id);
    char *key = g_strdup_printf(highlights ? SL_KEY_CHAN_HIGHLIGHTS : SL_KEY_CHAN_BROADCASTS, id);
    if (sl_redis_command(sl_server_redis(srv), read_reply, q, "EVAL %s 2 %s %s %s",
                         sl_lua_transcode_list, exists, key, highlights ? "list" : "hash") != SL_OK)
        read_reply(NULL, "not connected", q);
    g_free(exists);
    g_free(key);
}

static void broadcasts_get(sl_http_req *req, void *user)
{
    read_list(req, user, FALSE);
}

static void highlights_get(sl_http_req *req, void *user)
{
    read_list(req, user, TRUE);
}

void record_shutdown(void)
{
    if (clip_pool == NULL) return;
    g_thread_pool_free(clip_pool, FALSE, TRUE); /* the clips being cut are finished */
    clip_pool = NULL;
    clips_drain(NULL);
    g_async_queue_unref(clip_finished);
    clip_finished = NULL;
}

void record_routes(sl_server *srv)
{
    if (clip_pool == NULL) {
        clip_finished = g_async_queue_new();
        clip_pool = g_thread_pool_new(clip_thread, NULL, 1, FALSE, NULL);
    }
    sl_http_route(srv, "GET", "/api/v1/channels/{id}/broadcasts", broadcasts_get, srv);
    sl_http_route(srv, "GET", "/api/v1/channels/{id}/highlights", highlights_get, srv);
}
