/* fuzz_h264dec: the ladder's decoder element (slh264dec) gets a publisher's H.264 as it came over
 * RTMP; on arbitrary access units (Annex B or AVC with an arbitrary avcC) it must never crash,
 * hang or leak, whether it wraps its frames (downstream maps by video meta) or copies them.
 * Input: one flags byte (bit 0: AVC with the first unit as avcC; bit 1: downstream takes
 * video meta), then units, each a 2-byte big-endian length and its bytes. */
#include "transcode/internal.h"
#include "tests/transcode/video_meta_probe.h"

#include <gst/app/gstappsrc.h>
#include <gst/video/video.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next unit, or FALSE at the end of the input. */
static gboolean next_unit(const uint8_t **p, const uint8_t *end, const uint8_t **unit, size_t *len)
{
    if (end - *p < 2) return FALSE;
    size_t n = (size_t)(*p)[0] << 8 | (*p)[1];
    *p += 2;
    if ((size_t)(end - *p) < n) n = (size_t)(end - *p);
    *unit = *p;
    *len = n;
    *p += n;
    return TRUE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean ready;
    if (!ready) {
        gst_init(NULL, NULL);
        if (!transcode_h264dec_register()) __builtin_trap();
        ready = TRUE;
    }
    if (size < 1) return 0;
    gboolean avc = data[0] & 1, meta = (data[0] & 2) != 0;
    const uint8_t *p = data + 1, *end = data + size, *unit;
    size_t len;

    GstElement *pipe = gst_pipeline_new(NULL);
    GstElement *src = gst_element_factory_make("appsrc", NULL);
    GstElement *dec = gst_element_factory_make("slh264dec", NULL);
    GstElement *sink = gst_element_factory_make("fakesink", NULL);
    if (!pipe || !src || !dec || !sink) __builtin_trap();
    gst_bin_add_many(GST_BIN(pipe), src, dec, sink, NULL);
    if (!gst_element_link_many(src, dec, sink, NULL)) __builtin_trap();
    GstCaps *caps =
        gst_caps_new_simple("video/x-h264", "alignment", G_TYPE_STRING, "au", "stream-format",
                            G_TYPE_STRING, avc ? "avc" : "byte-stream", "width", G_TYPE_INT, 64,
                            "height", G_TYPE_INT, 48, "framerate", GST_TYPE_FRACTION, 25, 1, NULL);
    if (avc && next_unit(&p, end, &unit, &len)) {
        GstBuffer *cd = len ? gst_buffer_new_memdup(unit, len) : gst_buffer_new();
        gst_caps_set_simple(caps, "codec_data", GST_TYPE_BUFFER, cd, NULL);
        gst_buffer_unref(cd);
    }
    g_object_set(src, "caps", caps, "format", GST_FORMAT_TIME, "max-bytes", (guint64)0, NULL);
    gst_caps_unref(caps);
    g_object_set(sink, "sync", FALSE, NULL);
    GstPad *decsrc = gst_element_get_static_pad(dec, "src");
    if (meta)
        gst_pad_add_probe(decsrc, GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM | GST_PAD_PROBE_TYPE_PUSH,
                          offer_video_meta, NULL, NULL);
    gst_object_unref(decsrc);

    gst_element_set_state(pipe, GST_STATE_PLAYING);
    for (guint64 i = 0; next_unit(&p, end, &unit, &len); i++) {
        GstBuffer *b = len ? gst_buffer_new_memdup(unit, len) : gst_buffer_new();
        GST_BUFFER_PTS(b) = i * GST_SECOND / 25;
        GST_BUFFER_DURATION(b) = GST_SECOND / 25;
        if (i) GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DELTA_UNIT);
        if (gst_app_src_push_buffer(GST_APP_SRC(src), b) != GST_FLOW_OK) break;
    }
    gst_app_src_end_of_stream(GST_APP_SRC(src));
    /* an error is an answer too (a format it cannot output); only a hang is a finding */
    GstBus *bus = gst_element_get_bus(pipe);
    GstMessage *m =
        gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    if (m == NULL) __builtin_trap();
    gst_message_unref(m);
    gst_object_unref(bus);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(pipe);
    return 0;
}
