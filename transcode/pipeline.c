/* pipeline: one GStreamer remux pipeline per publish session: FLV tags in through appsrc,
 * flvdemux, the H.264/AAC parsers, mpegtsmux, and an appsink that cuts segment files.
 * Not splitmuxsink (nor hlssink2, built on it): it holds a whole GOP before deciding where to cut,
 * so a segment is listed two GOPs after it began. Here the cut is decided when the keyframe that
 * starts the next segment passes the parser, and made where mpegtsmux's output marks that
 * keyframe (its first non-delta buffer), with PAT/PMT repeated at the head of every file. */
#include "internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/app/gstappsrc.h>
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <stdio.h>
#include <string.h>

#define REMUX_MAX_QUEUED (8u << 20) /* bytes waiting in appsrc before tags are dropped */

struct remux {
    GstElement *pipeline; /* owned */
    GstElement *src;      /* borrowed from the pipeline */
    GstElement *mux;      /* borrowed: mpegtsmux */
    int64_t segment_ns;
    int64_t first_index;
    /* shared with the streaming thread, under lock */
    GMutex lock;
    GArray *cuts;   /* int64 running time where segment first_index + i starts */
    int64_t end_ns; /* running time where the last data seen ends */
    gboolean has_video;
    /* the appsink's streaming thread only */
    char *dir, *prefix; /* owned */
    FILE *file;         /* owned; the segment being written */
    char *file_path;    /* owned */
    guint files;        /* opened so far */
    GBytes *ts_header;  /* owned; PAT + PMT from mpegtsmux's caps */
    gboolean write_failed;
    guint bus_watch;
    const struct remux_events *ev;
    void *user;
    gboolean header_sent;
    gboolean finished; /* EOS pushed */
    gboolean done;     /* done() was called */
    gboolean freed;    /* remux_free was called: no more callbacks */
    gint refs;         /* the owner's, one per file_done on its way to the loop, one per dispatch */
    gint width, height; /* written by a streaming thread */
};

/* ---- dynamic pads (streaming thread) ---- */

static GstPadProbeReturn on_video_caps(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    remux *r = data;
    GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
    if (GST_EVENT_TYPE(ev) == GST_EVENT_CAPS) {
        GstCaps *caps;
        gst_event_parse_caps(ev, &caps);
        const GstStructure *s = gst_caps_get_structure(caps, 0);
        int w = 0, h = 0;
        if (gst_structure_get_int(s, "width", &w) && gst_structure_get_int(s, "height", &h)) {
            g_atomic_int_set(&r->width, w);
            g_atomic_int_set(&r->height, h);
        }
    }
    return GST_PAD_PROBE_OK;
}

static int64_t running_time(GstPad *pad, GstClockTime t)
{
    GstEvent *ev = gst_pad_get_sticky_event(pad, GST_EVENT_SEGMENT, 0);
    int64_t rt = (int64_t)t;
    if (ev) {
        const GstSegment *seg;
        gst_event_parse_segment(ev, &seg);
        guint64 r = gst_segment_to_running_time(seg, GST_FORMAT_TIME, t);
        if (r != GST_CLOCK_TIME_NONE) rt = (int64_t)r;
        gst_event_unref(ev);
    }
    return rt;
}

/* Every parsed frame passes here on its way to the muxer: decide the cuts. A cut is due at a
 * video keyframe once the segment is long enough (or, without video, at any audio frame). */
static GstPadProbeReturn on_frame(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    remux *r = data;
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    gboolean video = GPOINTER_TO_INT(g_object_get_data(G_OBJECT(pad), "remux-video"));
    GstClockTime pts = GST_BUFFER_PTS(buf);
    if (!GST_CLOCK_TIME_IS_VALID(pts)) return GST_PAD_PROBE_OK;
    int64_t rt = running_time(pad, pts);
    gboolean cut = FALSE;
    g_mutex_lock(&r->lock);
    if (r->cuts->len == 0) g_array_append_val(r->cuts, rt);
    int64_t start = g_array_index(r->cuts, int64_t, r->cuts->len - 1);
    gboolean boundary =
        video ? !GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT) : !r->has_video;
    /* a keyframe a few ms early still cuts: encoders' GOPs are rarely exact */
    if (boundary && rt - start >= r->segment_ns - 50 * GST_MSECOND) {
        g_array_append_val(r->cuts, rt);
        cut = TRUE;
    }
    int64_t end = rt + (GST_BUFFER_DURATION_IS_VALID(buf) ? (int64_t)GST_BUFFER_DURATION(buf) : 0);
    if (end > r->end_ns) r->end_ns = end;
    g_mutex_unlock(&r->lock);
    if (cut)
        g_debug("cut at %" G_GINT64_FORMAT " ms (%s)", rt / 1000000, video ? "video" : "audio");
    return GST_PAD_PROBE_OK;
}

/* queue ! parser ! the muxer's request pad; or a fakesink for a codec HLS cannot carry. */
static void link_branch(remux *r, GstPad *pad, const char *parser)
{
    GstElement *queue = gst_element_factory_make("queue", NULL);
    GstElement *parse = parser ? gst_element_factory_make(parser, NULL) : NULL;
    if (parse == NULL) parse = gst_element_factory_make("fakesink", NULL);
    g_object_set(queue, "max-size-time", (guint64)0, "max-size-buffers", 0u, "max-size-bytes",
                 (guint)(16u << 20), NULL);
    gst_bin_add_many(GST_BIN(r->pipeline), queue, parse, NULL);
    gboolean ok = gst_element_link(queue, parse);
    if (ok && parser) {
        if (strcmp(parser, "h264parse") == 0) {
            /* SPS/PPS before every IDR: each segment decodes on its own */
            g_object_set(parse, "config-interval", -1, NULL);
            GstPad *src = gst_element_get_static_pad(parse, "src");
            gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, on_video_caps, r, NULL);
            g_object_set_data(G_OBJECT(src), "remux-video", GINT_TO_POINTER(1));
            gst_object_unref(src);
            g_mutex_lock(&r->lock);
            r->has_video = TRUE;
            g_mutex_unlock(&r->lock);
        }
        GstPad *sink = gst_element_request_pad_simple(r->mux, "sink_%d");
        GstPad *src = gst_element_get_static_pad(parse, "src");
        gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, on_frame, r, NULL);
        ok = sink && gst_pad_link(src, sink) == GST_PAD_LINK_OK;
        gst_object_unref(src);
        if (sink) gst_object_unref(sink);
    }
    gst_element_sync_state_with_parent(queue);
    gst_element_sync_state_with_parent(parse);
    GstPad *qsink = gst_element_get_static_pad(queue, "sink");
    if (!ok || gst_pad_link(pad, qsink) != GST_PAD_LINK_OK)
        GST_ELEMENT_ERROR(r->pipeline, STREAM, FAILED, ("cannot link %s", parser), (NULL));
    gst_object_unref(qsink);
}

static void on_pad_added(GstElement *demux, GstPad *pad, gpointer data)
{
    remux *r = data;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (caps == NULL) caps = gst_pad_query_caps(pad, NULL);
    const char *name = gst_structure_get_name(gst_caps_get_structure(caps, 0));
    int mpegversion = 0;
    gst_structure_get_int(gst_caps_get_structure(caps, 0), "mpegversion", &mpegversion);
    if (strcmp(name, "video/x-h264") == 0)
        link_branch(r, pad, "h264parse");
    else if (strcmp(name, "audio/mpeg") == 0 && mpegversion == 4)
        link_branch(r, pad, "aacparse");
    else
        link_branch(r, pad, NULL); /* ingest filters these; be safe anyway */
    gst_caps_unref(caps);
}

/* ---- bus (loop) ---- */

/* ---- segment files (appsink streaming thread → loop) ---- */

struct file_done {
    remux *r;
    char *location; /* owned */
    guint i;        /* segment number within this pipeline */
    gboolean last;  /* end of stream: done() follows */
};

static remux *remux_ref(remux *r)
{
    g_atomic_int_inc(&r->refs);
    return r;
}

static void remux_unref(remux *r);

static gboolean file_done_on_loop(gpointer data)
{
    struct file_done *fd = data;
    remux *r = fd->r;
    struct remux_segment seg = {.location = fd->location};
    g_mutex_lock(&r->lock);
    gboolean known = fd->i < r->cuts->len;
    if (known) {
        seg.start_ns = g_array_index(r->cuts, int64_t, fd->i);
        seg.end_ns =
            fd->i + 1 < r->cuts->len ? g_array_index(r->cuts, int64_t, fd->i + 1) : r->end_ns;
    }
    g_mutex_unlock(&r->lock);
    if (known && !r->freed) r->ev->segment(r, &seg, r->user);
    if (fd->last && !r->done && !r->freed) {
        r->done = TRUE;
        r->ev->done(r, NULL, r->user);
    }
    g_free(fd->location);
    g_free(fd);
    remux_unref(r);
    return G_SOURCE_REMOVE;
}

static void file_close(remux *r, gboolean last)
{
    if (r->file == NULL && !last) return;
    struct file_done *fd = g_new0(struct file_done, 1);
    if (r->file) {
        if (fclose(r->file) != 0) r->write_failed = TRUE;
        r->file = NULL;
        fd->location = r->file_path;
        r->file_path = NULL;
        fd->i = r->files - 1;
    }
    if (r->write_failed) { /* a segment with a hole must not be listed */
        if (fd->location) g_unlink(fd->location);
        g_clear_pointer(&fd->location, g_free);
        fd->i = G_MAXUINT;
    }
    r->write_failed = FALSE;
    fd->r = remux_ref(r);
    fd->last = last;
    if (fd->location == NULL && !last) {
        remux_unref(r);
        g_free(fd);
        return;
    }
    g_main_context_invoke(NULL, file_done_on_loop, fd);
}

static void file_open(remux *r)
{
    r->file_path = g_strdup_printf("%s/%s_%05" G_GINT64_MODIFIER "d.ts", r->dir, r->prefix,
                                   r->first_index + r->files);
    r->files++;
    r->file = fopen(r->file_path, "wb");
    if (r->file == NULL) {
        g_warning("cannot write %s: %s", r->file_path, g_strerror(errno));
        r->write_failed = TRUE;
    }
}

static void file_write(remux *r, const void *p, size_t n)
{
    if (r->file && fwrite(p, 1, n, r->file) != n) r->write_failed = TRUE;
}

static GstFlowReturn on_sample(GstAppSink *sink, gpointer data)
{
    remux *r = data;
    GstSample *sample = gst_app_sink_pull_sample(sink);
    if (sample == NULL) return GST_FLOW_EOS;
    GstBuffer *buf = gst_sample_get_buffer(sample);
    if (r->ts_header == NULL) { /* PAT + PMT, to repeat at the head of every segment */
        const GstStructure *st = gst_caps_get_structure(gst_sample_get_caps(sample), 0);
        const GValue *hdr = gst_structure_get_value(st, "streamheader");
        if (hdr && GST_VALUE_HOLDS_ARRAY(hdr)) {
            GByteArray *b = g_byte_array_new();
            for (guint i = 0; i < gst_value_array_get_size(hdr); i++) {
                GstBuffer *h = gst_value_get_buffer(gst_value_array_get_value(hdr, i));
                GstMapInfo m;
                if (h && gst_buffer_map(h, &m, GST_MAP_READ)) {
                    g_byte_array_append(b, m.data, (guint)m.size);
                    gst_buffer_unmap(h, &m);
                }
            }
            r->ts_header = g_byte_array_free_to_bytes(b);
        }
    }
    /* mpegtsmux marks where a keyframe starts (or the PAT it repeats before one) non-delta */
    gboolean key = !GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT);
    g_mutex_lock(&r->lock);
    gboolean cut_due = r->cuts->len > r->files;
    g_mutex_unlock(&r->lock);
    GstMapInfo m;
    if (!gst_buffer_map(buf, &m, GST_MAP_READ)) {
        gst_sample_unref(sample);
        return GST_FLOW_ERROR;
    }
    if (r->file_path == NULL || (key && cut_due && r->files > 0)) {
        file_close(r, FALSE);
        file_open(r);
        gboolean starts_with_pat =
            m.size >= 3 && m.data[0] == 0x47 && ((m.data[1] & 0x1f) << 8 | m.data[2]) == 0;
        if (!starts_with_pat && r->ts_header) { /* players need PAT/PMT before anything else */
            gsize n;
            const void *p = g_bytes_get_data(r->ts_header, &n);
            file_write(r, p, n);
        }
    }
    file_write(r, m.data, m.size);
    gst_buffer_unmap(buf, &m);
    gst_sample_unref(sample);
    return GST_FLOW_OK;
}

static void on_eos(GstAppSink *sink, gpointer data)
{
    file_close(data, TRUE);
}

static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer data)
{
    remux *r = remux_ref(data); /* a callback may free it */
    GError *err = NULL;
    char *debug = NULL;
    switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_EOS: /* the appsink's last file_done reports it, after the last segment */
        break;
    case GST_MESSAGE_ERROR:
        gst_message_parse_error(msg, &err, &debug);
        g_warning("remux pipeline error from %s: %s (%s)", GST_OBJECT_NAME(msg->src), err->message,
                  debug ? debug : "");
        if (!r->done && !r->freed) {
            r->done = TRUE;
            r->ev->done(r, err->message, r->user);
        }
        g_clear_error(&err);
        g_free(debug);
        break;
    case GST_MESSAGE_WARNING:
        gst_message_parse_warning(msg, &err, &debug);
        g_info("remux pipeline warning from %s: %s", GST_OBJECT_NAME(msg->src), err->message);
        g_clear_error(&err);
        g_free(debug);
        break;
    default:
        break;
    }
    gboolean keep = !r->freed;
    remux_unref(r);
    return keep ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* ---- public ---- */

remux *remux_new(const char *dir, const char *prefix, int64_t first_index, int64_t segment_ns,
                 const struct remux_events *ev, void *user, GError **err)
{
    GstElement *pipeline = gst_pipeline_new(prefix);
    GstElement *src = gst_element_factory_make("appsrc", "src");
    GstElement *demux = gst_element_factory_make("flvdemux", "demux");
    GstElement *mux = gst_element_factory_make("mpegtsmux", "mux");
    GstElement *sink = gst_element_factory_make("appsink", "sink");
    if (!src || !demux || !mux || !sink) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "GStreamer elements missing (appsrc, flvdemux, mpegtsmux, appsink): "
                    "install gstreamer1.0-plugins-base/good/bad");
        for (GstElement **e = (GstElement *[]){src, demux, mux, sink, NULL}; *e; e++)
            gst_object_unref(*e);
        gst_object_unref(pipeline);
        return NULL;
    }
    remux *r = g_new0(remux, 1);
    r->refs = 1;
    r->pipeline = pipeline;
    r->src = src;
    r->mux = mux;
    r->ev = ev;
    r->user = user;
    r->segment_ns = segment_ns;
    r->first_index = first_index;
    g_mutex_init(&r->lock);
    r->cuts = g_array_new(FALSE, FALSE, sizeof(int64_t));
    GstCaps *caps = gst_caps_new_empty_simple("video/x-flv");
    g_object_set(src, "caps", caps, "format", GST_FORMAT_BYTES, "is-live", FALSE, "block", FALSE,
                 "max-bytes", (guint64)REMUX_MAX_QUEUED * 2, NULL);
    gst_caps_unref(caps);
    r->dir = g_strdup(dir);
    r->prefix = g_strdup(prefix);
    g_object_set(sink, "sync", FALSE, "async", FALSE, "max-buffers", 0u, NULL);
    GstAppSinkCallbacks cbs = {.eos = on_eos, .new_sample = on_sample};
    gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, r, NULL);
    gst_bin_add_many(GST_BIN(pipeline), src, demux, mux, sink, NULL);
    gst_element_link(src, demux);
    gst_element_link(mux, sink);
    g_signal_connect(demux, "pad-added", G_CALLBACK(on_pad_added), r);
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipeline));
    r->bus_watch = gst_bus_add_watch(bus, on_bus, r);
    gst_object_unref(bus);
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "the remux pipeline does not start");
        remux_free(r);
        return NULL;
    }
    return r;
}

static int push_bytes(remux *r, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                      const uint8_t *c, size_t clen)
{
    GstBuffer *buf = gst_buffer_new_allocate(NULL, alen + blen + clen, NULL);
    gst_buffer_fill(buf, 0, a, alen);
    if (blen) gst_buffer_fill(buf, alen, b, blen);
    if (clen) gst_buffer_fill(buf, alen + blen, c, clen);
    return gst_app_src_push_buffer(GST_APP_SRC(r->src), buf) == GST_FLOW_OK ? SL_OK : SL_ERR;
}

int remux_push(remux *r, uint8_t type, uint32_t ts_ms, const uint8_t *data, size_t len)
{
    if (r->finished || r->done || len > 0xffffff) return SL_ERR;
    if (!r->header_sent) {
        static const uint8_t header[13] = {'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0};
        if (push_bytes(r, header, sizeof header, NULL, 0, NULL, 0) != SL_OK) return SL_ERR;
        r->header_sent = TRUE;
    }
    /* Behind (a stalled disk, an overloaded box): drop frames rather than grow without bound,
     * but never a codec configuration, without which nothing after it decodes. */
    gboolean config = len >= 2 && data[1] == 0;
    if (!config && gst_app_src_get_current_level_bytes(GST_APP_SRC(r->src)) > REMUX_MAX_QUEUED)
        return SL_ELIMIT;
    uint8_t tag[11] = {type,
                       (uint8_t)(len >> 16),
                       (uint8_t)(len >> 8),
                       (uint8_t)len,
                       (uint8_t)(ts_ms >> 16),
                       (uint8_t)(ts_ms >> 8),
                       (uint8_t)ts_ms,
                       (uint8_t)(ts_ms >> 24),
                       0,
                       0,
                       0};
    uint32_t prev = (uint32_t)(len + 11);
    uint8_t back[4] = {(uint8_t)(prev >> 24), (uint8_t)(prev >> 16), (uint8_t)(prev >> 8),
                       (uint8_t)prev};
    return push_bytes(r, tag, sizeof tag, data, len, back, sizeof back);
}

void remux_finish(remux *r)
{
    if (r->finished) return;
    r->finished = TRUE;
    if (!r->header_sent) { /* nothing ever flowed: there is no stream to end */
        if (!r->done) {
            r->done = TRUE;
            r->ev->done(r, NULL, r->user);
        }
        return;
    }
    gst_app_src_end_of_stream(GST_APP_SRC(r->src));
}

void remux_video_size(const remux *r, int *width, int *height)
{
    *width = g_atomic_int_get(&r->width);
    *height = g_atomic_int_get(&r->height);
}

static void remux_unref(remux *r)
{
    if (!g_atomic_int_dec_and_test(&r->refs)) return;
    gst_object_unref(r->pipeline);
    g_array_unref(r->cuts);
    g_mutex_clear(&r->lock);
    if (r->file) fclose(r->file);
    g_free(r->file_path);
    g_free(r->dir);
    g_free(r->prefix);
    if (r->ts_header) g_bytes_unref(r->ts_header);
    g_free(r);
}

void remux_free(remux *r)
{
    if (r == NULL || r->freed) return;
    r->freed = TRUE;
    if (r->bus_watch) g_source_remove(r->bus_watch); /* allowed from its own dispatch too */
    r->bus_watch = 0;
    /* stops the streaming threads: no file_done is queued after this */
    gst_element_set_state(r->pipeline, GST_STATE_NULL);
    remux_unref(r);
}
