/* pipeline: one GStreamer pipeline per publish session. FLV tags enter through appsrc and
 * flvdemux; H.264 and AAC are parsed once. Output 0 ("source") remuxes them untouched; each
 * rung of the ladder decodes once (slh264dec, libavcodec), scales and encodes with x264enc, and
 * shares the source's AAC. Every output has its own mpegtsmux and an appsink that cuts segment
 * files; a keyframe-only decoder feeds the poster.
 *
 * Not splitmuxsink (nor hlssink2, built on it): it holds a whole GOP before deciding where to cut,
 * so a segment is listed two GOPs after it began. Here the cut is decided when the keyframe that
 * starts the next segment passes the output's parser, and made where mpegtsmux's output marks
 * that keyframe (its first non-delta buffer), with PAT/PMT repeated at the head of every file.
 * Rungs cut at the same instants as the source because every source keyframe is forwarded to
 * their encoders as a force-key-unit event, and x264's own keyframe decisions are switched off. */
#include "internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REMUX_MAX_QUEUED      (8u << 20)   /* bytes waiting in appsrc before tags are dropped */
#define RUNG_QUEUE_NS         (GST_SECOND) /* raw video waiting for an encoder before it is shed */
#define DECODE_QUEUE_NS       (2 * GST_SECOND) /* coded video waiting for the ladder's decoder */
#define REMUX_BACKGROUND_NICE 10               /* the ladder's threads yield to everything else */

struct remux_output {
    remux *r;
    int index;
    struct remux_rung rung; /* name, and the target size and bitrate of a rung */
    GstElement *mux;        /* borrowed from the pipeline */
    /* under r->lock */
    GArray *cuts; /* int64 running time where segment first_index + i starts */
    gboolean eos;
    char profile[24], level[8];
    gint width, height;
    /* the appsink's streaming thread only */
    FILE *file;        /* owned; the segment being written */
    char *file_path;   /* owned */
    guint files;       /* opened so far */
    GBytes *ts_header; /* owned; PAT + PMT from mpegtsmux's caps */
    gboolean write_failed;
    int write_errno; /* why, for the module: a full disk ends the stream */
};

struct remux {
    struct flvts *direct; /* owned; a session without rungs: no pipeline, flvts remuxes it */
    GstElement *pipeline; /* owned, NULL for a direct session */
    GstElement *src;      /* borrowed from the pipeline */
    int64_t segment_ns;
    int64_t first_index;
    char *dir, *prefix, *preset; /* owned */
    int64_t poster_interval_ns;
    int n_outputs;
    struct remux_output out[REMUX_MAX_OUTPUTS];
    /* a segment could not be written: no more files are opened, so the space the failed one
     * freed stays free for the playlists that end the stream (any thread; atomic) */
    gint write_broken;
    /* the demuxer's streaming thread (pad-added) */
    GstElement *audio_tee;
    /* shared with the streaming threads, under lock */
    GMutex lock;
    int64_t end_ns; /* running time where the last data seen ends */
    /* The first buffer's running time, and the publisher's timestamp (FLV ms) of the first tag
     * pushed (loop thread): together they place every segment on the publisher's clock.
     * Running time need not equal that clock: a pipeline built mid-stream (a rung shed or
     * restored) did not start at the stream's first tag. */
    int64_t first_rt;
    int64_t origin_ms;
    gboolean has_video;
    int64_t last_poster_rt;
    gint fps_n, fps_d;
    guint key_count;
    GstPad *decode_pad; /* owned; the ladder decoder's queue, where key-unit events go */
    gint overruns;      /* raw frames a rung's queue dropped: encoding is behind */
    /* the loop only */
    guint bus_watch;
    const struct remux_events *ev;
    void *user;
    gboolean header_sent;
    gboolean finished; /* EOS pushed */
    gboolean done;     /* done() was called */
    gboolean freed;    /* remux_free was called: no more callbacks */
    gint refs;         /* the owner's, one per callback on its way to the loop */
};

static remux *remux_ref(remux *r)
{
    g_atomic_int_inc(&r->refs);
    return r;
}

static void remux_unref(remux *r);

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

static struct remux_output *pad_output(GstPad *pad)
{
    return g_object_get_data(G_OBJECT(pad), "remux-output");
}

/* ---- cuts (streaming threads) ---- */

/* Every coded frame passes here on its way to an output's muxer: decide that output's cuts. A
 * cut is due at a video keyframe once the segment is long enough (or, for an output without
 * video, at any audio frame). */
static void cut_check(remux *r, struct remux_output *o, gboolean boundary, int64_t rt)
{
    gboolean cut = FALSE;
    if (o->cuts->len == 0) g_array_append_val(o->cuts, rt);
    int64_t start = g_array_index(o->cuts, int64_t, o->cuts->len - 1);
    /* a keyframe a few ms early still cuts: encoders' GOPs are rarely exact */
    if (boundary && rt - start >= r->segment_ns - 50 * GST_MSECOND) {
        g_array_append_val(o->cuts, rt);
        cut = TRUE;
    }
    if (cut) g_debug("%s: cut at %" G_GINT64_FORMAT " ms", o->rung.name, rt / 1000000);
}

static void note_end(remux *r, GstBuffer *buf, int64_t rt)
{
    if (r->first_rt < 0) r->first_rt = rt;
    int64_t end = rt + (GST_BUFFER_DURATION_IS_VALID(buf) ? (int64_t)GST_BUFFER_DURATION(buf) : 0);
    if (end > r->end_ns) r->end_ns = end;
}

/* Caps of an output's parsed video: its size, and for a rung the profile and level that
 * CODECS in the master playlist names. */
static void note_caps(remux *r, struct remux_output *o, GstEvent *ev)
{
    GstCaps *caps;
    gst_event_parse_caps(ev, &caps);
    const GstStructure *s = gst_caps_get_structure(caps, 0);
    int w = 0, h = 0, fn = 0, fd = 0;
    g_mutex_lock(&r->lock);
    if (gst_structure_get_int(s, "width", &w) && gst_structure_get_int(s, "height", &h)) {
        o->width = w;
        o->height = h;
    }
    if (o->index == 0 && gst_structure_get_fraction(s, "framerate", &fn, &fd) && fn > 0 && fd > 0) {
        r->fps_n = fn;
        r->fps_d = fd;
    }
    const char *profile = gst_structure_get_string(s, "profile");
    const char *level = gst_structure_get_string(s, "level");
    if (profile) g_strlcpy(o->profile, profile, sizeof o->profile);
    if (level) g_strlcpy(o->level, level, sizeof o->level);
    g_mutex_unlock(&r->lock);
}

static GstPadProbeReturn on_video(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    remux *r = data;
    struct remux_output *o = pad_output(pad);
    if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
        GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
        if (GST_EVENT_TYPE(ev) == GST_EVENT_CAPS) note_caps(r, o, ev);
        return GST_PAD_PROBE_OK;
    }
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    GstClockTime pts = GST_BUFFER_PTS(buf);
    if (!GST_CLOCK_TIME_IS_VALID(pts)) return GST_PAD_PROBE_OK;
    int64_t rt = running_time(pad, pts);
    gboolean key = !GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT);
    GstPad *decode = NULL;
    guint count = 0;
    g_mutex_lock(&r->lock);
    cut_check(r, o, key, rt);
    note_end(r, buf, rt);
    if (o->index == 0 && key && r->decode_pad) {
        decode = gst_object_ref(r->decode_pad);
        count = ++r->key_count;
    }
    g_mutex_unlock(&r->lock);
    if (decode) {
        /* Serialized: it enters the decoder's queue ahead of this keyframe, leaves the decoder
         * just before that frame, and tells every rung's encoder to make the next frame it
         * gets — this one — a keyframe. "As soon as possible", not a running time: x264enc
         * shifts its timeline (min-pts), and a time would be compared on the wrong one. */
        GstEvent *fku = gst_video_event_new_downstream_force_key_unit(
            GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, TRUE, count);
        gst_pad_send_event(decode, fku);
        gst_object_unref(decode);
    }
    return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn on_audio(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    remux *r = data;
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    GstClockTime pts = GST_BUFFER_PTS(buf);
    if (!GST_CLOCK_TIME_IS_VALID(pts)) return GST_PAD_PROBE_OK;
    int64_t rt = running_time(pad, pts);
    g_mutex_lock(&r->lock);
    note_end(r, buf, rt);
    if (!r->has_video) cut_check(r, &r->out[0], TRUE, rt);
    g_mutex_unlock(&r->lock);
    return GST_PAD_PROBE_OK;
}

/* The poster decoder sees one keyframe per poster interval and nothing else. */
static GstPadProbeReturn on_poster_frame(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    remux *r = data;
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT) ||
        !GST_CLOCK_TIME_IS_VALID(GST_BUFFER_PTS(buf)))
        return GST_PAD_PROBE_DROP;
    int64_t rt = running_time(pad, GST_BUFFER_PTS(buf));
    gboolean take = FALSE;
    g_mutex_lock(&r->lock);
    if (r->last_poster_rt < 0 || rt - r->last_poster_rt >= r->poster_interval_ns) {
        r->last_poster_rt = rt;
        take = TRUE;
    }
    g_mutex_unlock(&r->lock);
    return take ? GST_PAD_PROBE_OK : GST_PAD_PROBE_DROP;
}

static void on_rung_overrun(GstElement *queue, gpointer data)
{
    remux *r = data;
    g_atomic_int_inc(&r->overruns);
}

/* ---- building the graph (the demuxer's streaming thread) ---- */

static GstElement *make(remux *r, const char *factory)
{
    GstElement *e = gst_element_factory_make(factory, NULL);
    if (e) gst_bin_add(GST_BIN(r->pipeline), e);
    return e;
}

static GstElement *queue_new(remux *r, guint64 max_time, gboolean leaky)
{
    GstElement *q = make(r, "queue");
    g_object_set(q, "max-size-time", max_time, "max-size-buffers", 0u, "max-size-bytes",
                 (guint)(leaky ? 0 : 16u << 20), NULL);
    if (leaky) g_object_set(q, "leaky", 2 /* downstream: drop the oldest */, NULL);
    return q;
}

/* Link an element's src pad to a request pad of a muxer or tee. */
static gboolean link_request(GstElement *from, GstElement *to, const char *templ)
{
    GstPad *sink = gst_element_request_pad_simple(to, templ);
    GstPad *src = gst_element_get_static_pad(from, "src");
    gboolean ok = sink && src && gst_pad_link(src, sink) == GST_PAD_LINK_OK;
    if (sink) gst_object_unref(sink);
    if (src) gst_object_unref(src);
    return ok;
}

static gboolean link_from_tee(GstElement *tee, GstElement *to)
{
    GstPad *src = gst_element_request_pad_simple(tee, "src_%u");
    GstPad *sink = gst_element_get_static_pad(to, "sink");
    gboolean ok = src && sink && gst_pad_link(src, sink) == GST_PAD_LINK_OK;
    if (src) gst_object_unref(src);
    if (sink) gst_object_unref(sink);
    return ok;
}

static void watch_video(remux *r, GstElement *parser, struct remux_output *o)
{
    GstPad *src = gst_element_get_static_pad(parser, "src");
    g_object_set_data(G_OBJECT(src), "remux-output", o);
    gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
                      on_video, r, NULL);
    gst_object_unref(src);
}

/* tee ! queue ! slh264dec ! tee, then per rung: queue (leaky) ! slswscale ! capsfilter !
 * x264enc ! h264parse ! the rung's muxer. A rung queue that overflows drops raw frames (the
 * encoder is behind) and counts an overrun; the owner sheds rungs by building the next
 * pipeline without them, never by blocking this one. */
static gboolean build_ladder(remux *r, GstElement *video_tee)
{
    GstElement *q = queue_new(r, DECODE_QUEUE_NS, TRUE);
    GstElement *dec = make(r, "slh264dec");
    g_object_set_data(G_OBJECT(q), "remux-background", GINT_TO_POINTER(1));
    GstElement *dtee = make(r, "tee");
    if (!q || !dec || !dtee || !gst_element_link_many(q, dec, dtee, NULL)) return FALSE;
    g_object_set(dtee, "allow-not-linked", TRUE, NULL);
    gboolean ok = TRUE;
    for (int i = 1; i < r->n_outputs && ok; i++) {
        struct remux_output *o = &r->out[i];
        GstElement *rq = queue_new(r, RUNG_QUEUE_NS, TRUE);
        if (rq) g_object_set_data(G_OBJECT(rq), "remux-background", GINT_TO_POINTER(1));
        GstElement *scale = make(r, "slswscale"), *filter = make(r, "capsfilter");
        GstElement *enc = make(r, "x264enc"), *parse = make(r, "h264parse");
        if (!rq || !scale || !filter || !enc || !parse) return FALSE;
        /* 8-bit 4:2:0, so the rung is High (not High 10 or 4:4:4): what browsers decode */
        GstCaps *caps =
            gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "I420", "width", G_TYPE_INT,
                                o->rung.width, "height", G_TYPE_INT, o->rung.height,
                                "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
        g_object_set(filter, "caps", caps, NULL);
        gst_caps_unref(caps);
        gst_util_set_object_arg(G_OBJECT(enc), "speed-preset", r->preset);
        gst_util_set_object_arg(G_OBJECT(enc), "tune", "zerolatency");
        /* keyframes only where the source has them (force-key-unit), never of x264's choosing */
        g_object_set(enc, "bitrate", (guint)o->rung.kbps, "key-int-max", 100000u, "option-string",
                     "scenecut=0", "vbv-buf-capacity", 1000u, NULL);
        g_object_set(parse, "config-interval", -1, NULL);
        g_signal_connect(rq, "overrun", G_CALLBACK(on_rung_overrun), r);
        ok = gst_element_link_many(rq, scale, filter, enc, parse, NULL) &&
             link_request(parse, o->mux, "sink_%d") && link_from_tee(dtee, rq);
        watch_video(r, parse, o);
    }
    if (ok) {
        GstPad *sink = gst_element_get_static_pad(q, "sink");
        g_mutex_lock(&r->lock);
        r->decode_pad = sink;
        g_mutex_unlock(&r->lock);
        ok = link_from_tee(video_tee, q);
    }
    return ok;
}

/* tee ! queue (leaky) [one keyframe per interval] ! avdec_h264 ! videoconvert ! jpegenc !
 * appsink */
static gboolean build_poster(remux *r, GstElement *video_tee, GstAppSinkCallbacks *cbs)
{
    GstElement *q = make(r, "queue"), *dec = make(r, "avdec_h264");
    GstElement *conv = make(r, "videoconvert"), *jpeg = make(r, "jpegenc");
    if (q) g_object_set_data(G_OBJECT(q), "remux-background", GINT_TO_POINTER(1));
    GstElement *sink = make(r, "appsink");
    if (!q || !dec || !conv || !jpeg || !sink) return FALSE;
    g_object_set(q, "max-size-buffers", 2u, "max-size-time", (guint64)0, "max-size-bytes", 0u,
                 "leaky", 2, NULL);
    /* one thread: frame threading would hold a picture until more keyframes arrive, 10 s each */
    g_object_set(dec, "max-threads", 1, NULL);
    g_object_set(jpeg, "quality", 80, NULL);
    g_object_set(sink, "sync", FALSE, "async", FALSE, "max-buffers", 1u, "drop", TRUE, NULL);
    gst_app_sink_set_callbacks(GST_APP_SINK(sink), cbs, r, NULL);
    GstPad *qsink = gst_element_get_static_pad(q, "sink");
    gst_pad_add_probe(qsink, GST_PAD_PROBE_TYPE_BUFFER, on_poster_frame, r, NULL);
    gst_object_unref(qsink);
    return gst_element_link_many(q, dec, conv, jpeg, sink, NULL) && link_from_tee(video_tee, q);
}

static GstAppSinkCallbacks poster_callbacks;

static gboolean build_video(remux *r, GstPad *pad)
{
    GstElement *q = queue_new(r, 0, FALSE), *parse = make(r, "h264parse");
    GstElement *tee = make(r, "tee"), *q0 = queue_new(r, 0, FALSE);
    if (!q || !parse || !tee || !q0) return FALSE;
    /* SPS/PPS before every IDR: each segment decodes on its own */
    g_object_set(parse, "config-interval", -1, NULL);
    g_object_set(tee, "allow-not-linked", TRUE, NULL);
    g_mutex_lock(&r->lock);
    r->has_video = TRUE;
    g_mutex_unlock(&r->lock);
    watch_video(r, parse, &r->out[0]);
    gboolean ok = gst_element_link_many(q, parse, tee, NULL) && link_from_tee(tee, q0) &&
                  link_request(q0, r->out[0].mux, "sink_%d");
    if (ok && r->n_outputs > 1) ok = build_ladder(r, tee);
    if (ok && r->poster_interval_ns > 0) ok = build_poster(r, tee, &poster_callbacks);
    GstPad *qsink = gst_element_get_static_pad(q, "sink");
    ok = ok && gst_pad_link(pad, qsink) == GST_PAD_LINK_OK;
    gst_object_unref(qsink);
    return ok;
}

/* queue ! aacparse ! tee, and from the tee a queue into every output's muxer: AAC is shared. */
static gboolean build_audio(remux *r, GstPad *pad)
{
    GstElement *q = queue_new(r, 0, FALSE), *parse = make(r, "aacparse"), *tee = make(r, "tee");
    if (!q || !parse || !tee) return FALSE;
    gboolean ok = gst_element_link_many(q, parse, tee, NULL);
    GstPad *src = gst_element_get_static_pad(parse, "src");
    gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, on_audio, r, NULL);
    gst_object_unref(src);
    for (int i = 0; i < r->n_outputs && ok; i++) {
        GstElement *oq = queue_new(r, 0, FALSE);
        ok = oq && link_from_tee(tee, oq) && link_request(oq, r->out[i].mux, "sink_%d");
    }
    r->audio_tee = tee;
    GstPad *qsink = gst_element_get_static_pad(q, "sink");
    ok = ok && gst_pad_link(pad, qsink) == GST_PAD_LINK_OK;
    gst_object_unref(qsink);
    return ok;
}

static void on_pad_added(GstElement *demux, GstPad *pad, gpointer data)
{
    remux *r = data;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (caps == NULL) caps = gst_pad_query_caps(pad, NULL);
    const GstStructure *s = gst_caps_get_structure(caps, 0);
    const char *name = gst_structure_get_name(s);
    int mpegversion = 0;
    gst_structure_get_int(s, "mpegversion", &mpegversion);
    gboolean ok = TRUE, known = TRUE;
    if (strcmp(name, "video/x-h264") == 0)
        ok = build_video(r, pad);
    else if (strcmp(name, "audio/mpeg") == 0 && mpegversion == 4 && r->audio_tee == NULL)
        ok = build_audio(r, pad);
    else
        known = FALSE; /* ingest filters these; be safe anyway */
    if (!known) {
        GstElement *sink = make(r, "fakesink");
        GstPad *fsink = gst_element_get_static_pad(sink, "sink");
        gst_pad_link(pad, fsink);
        gst_object_unref(fsink);
    }
    gst_caps_unref(caps);
    /* new elements start at the pipeline's state, downstream first */
    GstIterator *it = gst_bin_iterate_sorted(GST_BIN(r->pipeline));
    GValue v = G_VALUE_INIT;
    while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
        GstElement *e = g_value_get_object(&v);
        if (GST_STATE(e) != GST_STATE_PLAYING) gst_element_sync_state_with_parent(e);
        g_value_reset(&v);
    }
    g_value_unset(&v);
    gst_iterator_free(it);
    if (!ok) GST_ELEMENT_ERROR(r->pipeline, STREAM, FAILED, ("cannot link %s", name), (NULL));
}

/* ---- segment files (appsink streaming threads → loop) ---- */

struct file_done {
    struct remux_output *o;
    char *location;  /* owned */
    guint i;         /* segment number within this output */
    gboolean last;   /* end of stream of this output */
    int write_errno; /* the segment could not be written */
};

static gboolean all_outputs_ended(remux *r)
{
    for (int i = 0; i < r->n_outputs; i++)
        if (!r->out[i].eos) return FALSE;
    return TRUE;
}

static gboolean file_done_on_loop(gpointer data)
{
    struct file_done *fd = data;
    struct remux_output *o = fd->o;
    remux *r = o->r;
    struct remux_segment seg = {.output = o->index, .location = fd->location};
    g_mutex_lock(&r->lock);
    gboolean known = fd->location && fd->i < o->cuts->len;
    if (known) {
        seg.start_ns = g_array_index(o->cuts, int64_t, fd->i);
        seg.end_ns =
            fd->i + 1 < o->cuts->len ? g_array_index(o->cuts, int64_t, fd->i + 1) : r->end_ns;
        seg.media_start_ms = MAX(r->origin_ms, 0) + (seg.start_ns - MAX(r->first_rt, 0)) / 1000000;
    }
    if (fd->last) o->eos = TRUE;
    gboolean ended = fd->last && all_outputs_ended(r);
    g_mutex_unlock(&r->lock);
    if (known && !r->freed) r->ev->segment(r, &seg, r->user);
    if (fd->write_errno && !r->freed && r->ev->write_failed)
        r->ev->write_failed(r, fd->write_errno, r->user);
    if (ended && !r->done && !r->freed) {
        r->done = TRUE;
        r->ev->done(r, NULL, r->user);
    }
    g_free(fd->location);
    g_free(fd);
    remux_unref(r);
    return G_SOURCE_REMOVE;
}

static void fail_write(struct remux_output *o)
{
    if (!o->write_failed) o->write_errno = errno ? errno : EIO;
    o->write_failed = TRUE;
    g_atomic_int_set(&o->r->write_broken, 1);
}

static void file_close(struct remux_output *o, gboolean last)
{
    if (o->file == NULL && !last && !o->write_failed) return;
    struct file_done *fd = g_new0(struct file_done, 1);
    if (o->file) {
        if (fclose(o->file) != 0) fail_write(o);
        o->file = NULL;
        fd->location = o->file_path;
        o->file_path = NULL;
        fd->i = o->files - 1;
    }
    if (o->write_failed) { /* a segment with a hole must not be listed */
        if (fd->location) g_unlink(fd->location);
        g_clear_pointer(&fd->location, g_free);
        fd->write_errno = o->write_errno;
    }
    o->write_failed = FALSE;
    o->write_errno = 0;
    fd->o = o;
    fd->last = last;
    if (fd->location == NULL && !last && fd->write_errno == 0) {
        g_free(fd);
        return;
    }
    remux_ref(o->r);
    g_main_context_invoke(NULL, file_done_on_loop, fd);
}

static void file_open(struct remux_output *o)
{
    remux *r = o->r;
    if (g_atomic_int_get(&r->write_broken)) return;
    o->file_path = g_strdup_printf("%s/%s/%s_%05" G_GINT64_MODIFIER "d.ts", r->dir, o->rung.name,
                                   r->prefix, r->first_index + o->files);
    o->files++;
    o->file = fopen(o->file_path, "wb");
    if (o->file == NULL) {
        g_warning("cannot write %s: %s", o->file_path, g_strerror(errno));
        fail_write(o);
    }
}

static void file_write(struct remux_output *o, const void *p, size_t n)
{
    if (o->file && fwrite(p, 1, n, o->file) != n) fail_write(o);
}

static GBytes *stream_header(GstSample *sample)
{
    const GstStructure *st = gst_caps_get_structure(gst_sample_get_caps(sample), 0);
    const GValue *hdr = gst_structure_get_value(st, "streamheader");
    if (hdr == NULL || !GST_VALUE_HOLDS_ARRAY(hdr)) return NULL;
    GByteArray *b = g_byte_array_new();
    for (guint i = 0; i < gst_value_array_get_size(hdr); i++) {
        GstBuffer *h = gst_value_get_buffer(gst_value_array_get_value(hdr, i));
        GstMapInfo m;
        if (h && gst_buffer_map(h, &m, GST_MAP_READ)) {
            g_byte_array_append(b, m.data, (guint)m.size);
            gst_buffer_unmap(h, &m);
        }
    }
    return g_byte_array_free_to_bytes(b);
}

static GstFlowReturn on_sample(GstAppSink *sink, gpointer data)
{
    struct remux_output *o = data;
    remux *r = o->r;
    GstSample *sample = gst_app_sink_pull_sample(sink);
    if (sample == NULL) return GST_FLOW_EOS;
    GstBuffer *buf = gst_sample_get_buffer(sample);
    if (o->ts_header == NULL) o->ts_header = stream_header(sample); /* PAT + PMT */
    /* mpegtsmux marks where a keyframe starts (or the PAT it repeats before one) non-delta */
    gboolean key = !GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT);
    g_mutex_lock(&r->lock);
    gboolean cut_due = o->cuts->len > o->files;
    g_mutex_unlock(&r->lock);
    GstMapInfo m;
    if (!gst_buffer_map(buf, &m, GST_MAP_READ)) {
        gst_sample_unref(sample);
        return GST_FLOW_ERROR;
    }
    if (o->file_path == NULL || (key && cut_due && o->files > 0)) {
        file_close(o, FALSE);
        file_open(o);
        gboolean starts_with_pat =
            m.size >= 3 && m.data[0] == 0x47 && ((m.data[1] & 0x1f) << 8 | m.data[2]) == 0;
        if (!starts_with_pat && o->ts_header) { /* players need PAT/PMT before anything else */
            gsize n;
            const void *p = g_bytes_get_data(o->ts_header, &n);
            file_write(o, p, n);
        }
    }
    file_write(o, m.data, m.size);
    gst_buffer_unmap(buf, &m);
    gst_sample_unref(sample);
    return GST_FLOW_OK;
}

static void on_eos(GstAppSink *sink, gpointer data)
{
    file_close(data, TRUE);
}

/* A JPEG of one keyframe: written beside the playlists, atomically (players and CDNs never read
 * half a file). A failed write keeps the previous poster. */
static GstFlowReturn on_poster(GstAppSink *sink, gpointer data)
{
    remux *r = data;
    GstSample *sample = gst_app_sink_pull_sample(sink);
    if (sample == NULL) return GST_FLOW_EOS;
    GstMapInfo m;
    GstBuffer *buf = gst_sample_get_buffer(sample);
    if (gst_buffer_map(buf, &m, GST_MAP_READ)) {
        char *path = g_build_filename(r->dir, "poster.jpg", NULL);
        GError *e = NULL;
        if (hls_write_atomic(path, (const char *)m.data, m.size, &e) != SL_OK) {
            g_warning("cannot write %s: %s", path, e->message);
            g_error_free(e);
        }
        g_free(path);
        gst_buffer_unmap(buf, &m);
    }
    gst_sample_unref(sample);
    return GST_FLOW_OK;
}

static GstAppSinkCallbacks poster_callbacks = {.new_sample = on_poster};

/* ---- thread priority (streaming threads) ---- */

/* The ladder's decoder, encoders and the poster run at a lower priority than everything else:
 * the loop (RTMP, HTTP, chat, sales) and every channel's passthrough always get the CPU first,
 * and when the rest is not enough the rungs' queues overflow, which is what sheds a rung. A
 * streaming thread entering one of these queues' tasks lowers its own priority; the threads
 * x264 starts from it inherit it. */
static GstBusSyncReply on_bus_sync(GstBus *bus, GstMessage *msg, gpointer data)
{
    if (GST_MESSAGE_TYPE(msg) != GST_MESSAGE_STREAM_STATUS) return GST_BUS_PASS;
    GstStreamStatusType type;
    GstElement *owner = NULL;
    gst_message_parse_stream_status(msg, &type, &owner);
    if (type == GST_STREAM_STATUS_TYPE_ENTER && owner &&
        g_object_get_data(G_OBJECT(owner), "remux-background"))
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), REMUX_BACKGROUND_NICE);
    return GST_BUS_PASS;
}

/* ---- bus (loop) ---- */

static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer data)
{
    remux *r = remux_ref(data); /* a callback may free it */
    GError *err = NULL;
    char *debug = NULL;
    switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_EOS: /* the appsinks' last file_done report it, after the last segments */
        break;
    case GST_MESSAGE_ERROR:
        gst_message_parse_error(msg, &err, &debug);
        g_warning("pipeline error from %s: %s (%s)", GST_OBJECT_NAME(msg->src), err->message,
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
        g_info("pipeline warning from %s: %s", GST_OBJECT_NAME(msg->src), err->message);
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

static const char *const needed[] = {"appsrc",    "flvdemux", "h264parse", "aacparse",
                                     "mpegtsmux", "appsink",  "tee",       "queue"};
static const char *const needed_ladder[] = {"slh264dec", "slswscale", "x264enc"};
static const char *const needed_poster[] = {"avdec_h264", "videoconvert", "jpegenc"};

static gboolean have_all(const char *const *names, size_t n, GError **err, const char *hint)
{
    for (size_t i = 0; i < n; i++) {
        GstElementFactory *f = gst_element_factory_find(names[i]);
        if (f == NULL) {
            g_set_error(err, SL_ERROR, SL_ERROR_NOT_FOUND,
                        "GStreamer element %s is missing: install %s", names[i], hint);
            return FALSE;
        }
        gst_object_unref(f);
    }
    return TRUE;
}

int remux_check(gboolean ladder, gboolean poster, GError **err)
{
    const char *base = "gstreamer1.0-plugins-base/good/bad";
    if (!have_all(needed, G_N_ELEMENTS(needed), err, base)) return SL_ERR;
    if (ladder && !have_all(needed_ladder, G_N_ELEMENTS(needed_ladder), err,
                            "gstreamer1.0-libav and gstreamer1.0-plugins-ugly"))
        return SL_ERR;
    if (poster && !have_all(needed_poster, G_N_ELEMENTS(needed_poster), err, "gstreamer1.0-libav"))
        return SL_ERR;
    return SL_OK;
}

/* ---- direct sessions (flvts on the loop) ---- */

static void direct_segment(const struct flvts_segment *fs, void *user)
{
    remux *r = user;
    if (r->freed) return;
    struct remux_segment seg = {.output = 0,
                                .location = (char *)fs->location,
                                .start_ns = fs->start_ms * 1000000,
                                .end_ns = fs->end_ms * 1000000,
                                .media_start_ms = fs->start_ms};
    r->ev->segment(r, &seg, r->user);
}

static void direct_write_failed(int err, void *user)
{
    remux *r = user;
    if (!r->freed && r->ev->write_failed) r->ev->write_failed(r, err, r->user);
}

static const struct flvts_events direct_events = {direct_segment, direct_write_failed};

static remux *remux_alloc(const struct remux_config *cfg, const struct remux_events *ev, void *user)
{
    remux *r = g_new0(remux, 1);
    r->refs = 1;
    r->first_rt = -1;
    r->origin_ms = -1;
    r->ev = ev;
    r->user = user;
    r->segment_ns = cfg->segment_ns;
    r->first_index = cfg->first_index;
    r->poster_interval_ns = cfg->poster_interval_ns;
    r->last_poster_rt = -1;
    r->dir = g_strdup(cfg->dir);
    r->prefix = g_strdup(cfg->prefix);
    r->preset = g_strdup(cfg->preset ? cfg->preset : "veryfast");
    g_mutex_init(&r->lock);
    r->n_outputs = 1 + MIN(cfg->n_rungs, REMUX_MAX_OUTPUTS - 1);
    for (int i = 0; i < r->n_outputs; i++) {
        struct remux_output *o = &r->out[i];
        o->r = r;
        o->index = i;
        if (i == 0)
            g_strlcpy(o->rung.name, REMUX_SOURCE, sizeof o->rung.name);
        else
            o->rung = cfg->rungs[i - 1];
        o->cuts = g_array_new(FALSE, FALSE, sizeof(int64_t));
    }
    return r;
}

remux *remux_new(const struct remux_config *cfg, const struct remux_events *ev, void *user,
                 GError **err)
{
    if (cfg->n_rungs == 0) { /* passthrough only: remuxed on the loop, no pipeline */
        remux *r = remux_alloc(cfg, ev, user);
        struct flvts_config fc = {.channel_dir = cfg->dir,
                                  .output = REMUX_SOURCE,
                                  .prefix = cfg->prefix,
                                  .first_index = cfg->first_index,
                                  .segment_ms = cfg->segment_ns / 1000000,
                                  .poster_ms = cfg->poster_interval_ns / 1000000};
        r->direct = flvts_new(&fc, &direct_events, r);
        return r;
    }
    if (remux_check(TRUE, cfg->poster_interval_ns > 0, err) != SL_OK) return NULL;
    remux *r = remux_alloc(cfg, ev, user);
    r->pipeline = gst_pipeline_new(cfg->prefix);
    for (int i = 0; i < r->n_outputs; i++) {
        struct remux_output *o = &r->out[i];
        char *dir = g_build_filename(r->dir, o->rung.name, NULL);
        g_mkdir_with_parents(dir, 0755);
        g_free(dir);
        o->mux = make(r, "mpegtsmux");
        GstElement *sink = make(r, "appsink");
        g_object_set(sink, "sync", FALSE, "async", FALSE, "max-buffers", 0u, NULL);
        GstAppSinkCallbacks cbs = {.eos = on_eos, .new_sample = on_sample};
        gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, o, NULL);
        gst_element_link(o->mux, sink);
    }
    r->src = make(r, "appsrc");
    GstElement *demux = make(r, "flvdemux");
    GstCaps *caps = gst_caps_new_empty_simple("video/x-flv");
    g_object_set(r->src, "caps", caps, "format", GST_FORMAT_BYTES, "is-live", FALSE, "block", FALSE,
                 "max-bytes", (guint64)REMUX_MAX_QUEUED * 2, NULL);
    gst_caps_unref(caps);
    gst_element_link(r->src, demux);
    g_signal_connect(demux, "pad-added", G_CALLBACK(on_pad_added), r);
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(r->pipeline));
    gst_bus_set_sync_handler(bus, on_bus_sync, NULL, NULL);
    r->bus_watch = gst_bus_add_watch(bus, on_bus, r);
    gst_object_unref(bus);
    if (gst_element_set_state(r->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "the pipeline does not start");
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
    if (r->direct) {
        flvts_push(r->direct, type, ts_ms, data, len);
        return SL_OK;
    }
    if (r->origin_ms < 0) r->origin_ms = ts_ms;
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
    if (r->direct) flvts_finish(r->direct); /* its last segment, now */
    if (r->direct || !r->header_sent) {     /* nothing left to flow: the stream has ended */
        if (!r->done) {
            r->done = TRUE;
            r->ev->done(r, NULL, r->user);
        }
        return;
    }
    gst_app_src_end_of_stream(GST_APP_SRC(r->src));
}

/* The first step of freeing: no more callbacks to the owner. FALSE if r was already freed. */
static gboolean remux_detach(remux *r)
{
    if (r->freed) return FALSE;
    r->freed = TRUE;
    if (r->bus_watch) g_source_remove(r->bus_watch); /* allowed from its own dispatch too */
    r->bus_watch = 0;
    return TRUE;
}

/* The pipelines remux_free_all() hands to its thread; freed by whichever side lets go last. */
struct teardown {
    GMutex lock;
    GCond cond;
    GPtrArray *remuxes; /* owned references */
    guint remaining;
    gint refs;
};

static void teardown_unref(struct teardown *t)
{
    if (!g_atomic_int_dec_and_test(&t->refs)) return;
    g_ptr_array_unref(t->remuxes);
    g_mutex_clear(&t->lock);
    g_cond_clear(&t->cond);
    g_free(t);
}

static gpointer teardown_thread(gpointer data)
{
    struct teardown *t = data;
    for (guint i = 0; i < t->remuxes->len; i++) {
        remux *r = t->remuxes->pdata[i];
        gst_element_set_state(r->pipeline, GST_STATE_NULL);
        remux_unref(r);
        g_mutex_lock(&t->lock);
        t->remaining--;
        g_cond_signal(&t->cond);
        g_mutex_unlock(&t->lock);
    }
    teardown_unref(t);
    return NULL;
}

int remux_free_all(GPtrArray *rs, guint timeout_ms)
{
    GPtrArray *stopping = g_ptr_array_new();
    for (guint i = 0; i < rs->len; i++) {
        remux *r = rs->pdata[i];
        if (r == NULL || !remux_detach(r)) continue;
        if (r->direct)
            remux_unref(r); /* no threads to stop */
        else
            g_ptr_array_add(stopping, r);
    }
    g_ptr_array_set_size(rs, 0);
    if (stopping->len == 0) {
        g_ptr_array_unref(stopping);
        return 0;
    }
    struct teardown *t = g_new0(struct teardown, 1);
    g_mutex_init(&t->lock);
    g_cond_init(&t->cond);
    t->remuxes = stopping;
    t->remaining = stopping->len;
    t->refs = 2;
    /* Why a thread and a deadline: stopping a pipeline joins its streaming threads, and a stop
     * that never returns must not keep the whole process from ending its playlists and exiting. */
    GThread *thread = g_thread_new("remux-teardown", teardown_thread, t);
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
    g_mutex_lock(&t->lock);
    while (t->remaining > 0 && g_cond_wait_until(&t->cond, &t->lock, deadline)) {
    }
    int left = (int)t->remaining;
    g_mutex_unlock(&t->lock);
    if (left == 0)
        g_thread_join(thread);
    else
        g_thread_unref(thread);
    teardown_unref(t);
    return left;
}

int remux_outputs(const remux *r)
{
    return r->n_outputs;
}

void remux_output_info(remux *r, int i, struct remux_output_info *info)
{
    memset(info, 0, sizeof *info);
    if (i < 0 || i >= r->n_outputs) return;
    struct remux_output *o = &r->out[i];
    if (r->direct) flvts_video_info(r->direct, &o->width, &o->height, &r->fps_n, &r->fps_d);
    g_mutex_lock(&r->lock);
    g_strlcpy(info->name, o->rung.name, sizeof info->name);
    info->width = o->width;
    info->height = o->height;
    info->kbps = o->rung.kbps;
    g_strlcpy(info->profile, o->profile, sizeof info->profile);
    g_strlcpy(info->level, o->level, sizeof info->level);
    info->fps_n = r->fps_n;
    info->fps_d = r->fps_d;
    g_mutex_unlock(&r->lock);
}

int remux_take_overruns(remux *r)
{
    return g_atomic_int_and(&r->overruns, 0);
}

static void remux_unref(remux *r)
{
    if (!g_atomic_int_dec_and_test(&r->refs)) return;
    flvts_free(r->direct);
    if (r->pipeline) gst_object_unref(r->pipeline);
    for (int i = 0; i < r->n_outputs; i++) {
        struct remux_output *o = &r->out[i];
        g_array_unref(o->cuts);
        if (o->file) fclose(o->file);
        g_free(o->file_path);
        if (o->ts_header) g_bytes_unref(o->ts_header);
    }
    if (r->decode_pad) gst_object_unref(r->decode_pad);
    g_mutex_clear(&r->lock);
    g_free(r->dir);
    g_free(r->prefix);
    g_free(r->preset);
    g_free(r);
}

void remux_free(remux *r)
{
    if (r == NULL || !remux_detach(r)) return;
    /* stops the streaming threads: no file_done is queued after this */
    if (r->pipeline) gst_element_set_state(r->pipeline, GST_STATE_NULL);
    remux_unref(r);
}
