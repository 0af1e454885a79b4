/* demo_source: the demo's own publisher (--demo). A test pattern with a clock and a ticking tone,
 * encoded as a host's encoder would and sent to this node's RTMP port, so the demo channel is
 * live by itself through the same ingest path a host uses. */
#include "internal.h"

#include <gst/gst.h>

#define RETRY_S 2 /* how often a stopped source asks whether it may go live again */

struct demo_source {
    char *description; /* owned; the pipeline, with the RTMP URL in it */
    demo_source_may_start may_start;
    void *user;
    GstElement *pipeline; /* NULL while stopped */
    guint bus_watch;
    guint timer;
    gboolean said_why; /* the first failure is logged at info, the retries at debug */
};

static void source_stop(struct demo_source *d)
{
    if (d->pipeline == NULL) return;
    if (d->bus_watch) g_source_remove(d->bus_watch);
    d->bus_watch = 0;
    gst_element_set_state(d->pipeline, GST_STATE_NULL);
    gst_clear_object(&d->pipeline);
}

/* The pipeline ends when its connection does: refused while a real encoder holds the channel, or
 * dropped when one takes over. It is built anew on the next tick that finds the channel free. */
static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer data)
{
    struct demo_source *d = data;
    if (GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ERROR && GST_MESSAGE_TYPE(msg) != GST_MESSAGE_EOS)
        return G_SOURCE_CONTINUE;
    GError *e = NULL;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) gst_message_parse_error(msg, &e, NULL);
    if (!d->said_why)
        g_message("demo source: stopped (%s); it restarts when the channel is free",
                  e ? e->message : "end of stream");
    else
        g_debug("demo source: stopped (%s)", e ? e->message : "end of stream");
    d->said_why = TRUE;
    g_clear_error(&e);
    d->bus_watch = 0; /* returning REMOVE takes the watch away */
    source_stop(d);
    return G_SOURCE_REMOVE;
}

static void source_start(struct demo_source *d)
{
    GError *e = NULL;
    GstElement *p = gst_parse_launch(d->description, &e);
    if (p == NULL || e != NULL) {
        g_warning("demo source: cannot build the test pattern: %s (are gstreamer1.0-x, "
                  "gstreamer1.0-plugins-bad and gstreamer1.0-libav installed?)",
                  e ? e->message : "unknown error");
        g_clear_error(&e);
        if (p) gst_object_unref(p);
        g_source_remove(d->timer); /* a missing element stays missing: say it once */
        d->timer = 0;
        return;
    }
    GstBus *bus = gst_element_get_bus(p);
    d->bus_watch = gst_bus_add_watch(bus, on_bus, d);
    gst_object_unref(bus);
    d->pipeline = p;
    if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        g_warning("demo source: the test pattern does not start");
        source_stop(d);
    }
}

static gboolean on_tick(gpointer data)
{
    struct demo_source *d = data;
    if (d->pipeline == NULL && d->may_start(d->user)) source_start(d);
    return d->timer ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

struct demo_source *demo_source_new(const char *rtmp_url, demo_source_may_start may_start,
                                    void *user)
{
    struct demo_source *d = g_new0(struct demo_source, 1);
    /* 854x480 at 30 fps, a 2 s GOP, High profile 4:2:0 8-bit (x264enc would pick 4:4:4 10-bit
     * from videotestsrc without the format), AAC stereo: what OBS sends with its defaults,
     * at a size the ladder handles beside a browser on two cores. */
    d->description = g_strdup_printf(
        "videotestsrc is-live=true pattern=smpte "
        "! video/x-raw,format=I420,width=854,height=480,framerate=30/1 "
        "! clockoverlay halignment=center valignment=center font-desc=\"DejaVu Sans Mono 40\" "
        "time-format=\"%%H:%%M:%%S\" shaded-background=true "
        "! textoverlay text=\"silklive demo\" halignment=left valignment=top "
        "font-desc=\"DejaVu Sans 20\" shaded-background=true "
        "! video/x-raw,format=I420 "
        "! x264enc tune=zerolatency speed-preset=veryfast bitrate=1200 key-int-max=60 "
        "! video/x-h264,profile=high ! h264parse ! queue ! mux. "
        "audiotestsrc is-live=true wave=ticks freq=880 volume=0.4 "
        "! audio/x-raw,rate=44100,channels=2 ! audioconvert ! avenc_aac bitrate=96000 "
        "! aacparse ! queue ! mux. "
        "flvmux name=mux streamable=true ! rtmp2sink location=\"%s\"",
        rtmp_url);
    d->may_start = may_start;
    d->user = user;
    d->timer = g_timeout_add_seconds(RETRY_S, on_tick, d);
    return d;
}

void demo_source_free(struct demo_source *d)
{
    if (d == NULL) return;
    source_stop(d);
    if (d->timer) g_source_remove(d->timer);
    g_free(d->description);
    g_free(d);
}
