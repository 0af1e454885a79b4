/* Unit tests of the ladder's H.264 decoder element (slh264dec) on a real ffmpeg-made stream with
 * B-frames: every frame out, in presentation order, pixel for pixel what avdec_h264 decodes,
 * both when downstream maps by GstVideoMeta (frames wrapped, not copied) and when it does not
 * (copied); damaged packets neither stop it nor leak frames; a new size mid-stream loses
 * nothing. */
#include "transcode/internal.h"
#include "tests/transcode/video_meta_probe.h"

#include <check.h>
#include <gst/app/gstappsink.h>
#include <gst/video/video.h>
#include <stdlib.h>
#include <string.h>

#include "harness/harness.h"

#define FRAMES 75 /* 3 s at 25 fps */

static char *dir, *flv;

static void setup(void)
{
    dir = harness_tmpdir();
    flv = g_build_filename(dir, "b.flv", NULL);
    /* 4:2:0 with B-frames (reordered output) and an odd height (chroma rounding) */
    const char *argv[] = {"ffmpeg",  "-v",       "error",    "-y",
                          "-f",      "lavfi",    "-i",       "testsrc2=size=320x182:rate=25",
                          "-t",      "3",        "-c:v",     "libx264",
                          "-preset", "veryfast", "-bf",      "3",
                          "-g",      "25",       "-pix_fmt", "yuv420p",
                          "-f",      "flv",      flv,        NULL};
    int st = -1;
    ck_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                           &st, NULL));
    ck_assert_int_eq(st, 0);
}

static void teardown(void)
{
    harness_rmtree(dir);
    g_free(dir);
    g_free(flv);
}

/* Every 7th delta frame gets its slice data scrambled on the way into the decoder. */
static GstPadProbeReturn damage(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    (void)pad;
    int *n = data;
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    if (!GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT) || ++*n % 7)
        return GST_PAD_PROBE_OK;
    buf = gst_buffer_make_writable(buf);
    GstMapInfo map;
    ck_assert(gst_buffer_map(buf, &map, GST_MAP_WRITE));
    for (gsize i = 12; i < map.size; i += 3)
        map.data[i] ^= 0x5a;
    gst_buffer_unmap(buf, &map);
    GST_PAD_PROBE_INFO_DATA(info) = buf;
    return GST_PAD_PROBE_OK;
}

struct decoded {
    GArray *sums;   /* guint64 per frame: a checksum of its visible pixels */
    GArray *pts;    /* GstClockTime per frame */
    GArray *widths; /* int per frame */
    int width, height;
    gboolean had_meta;
};

static guint64 frame_sum(GstVideoFrame *f)
{
    guint64 sum = 1469598103934665603ull;
    for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(f); p++) {
        const guint8 *d = GST_VIDEO_FRAME_PLANE_DATA(f, p);
        gint stride = GST_VIDEO_FRAME_PLANE_STRIDE(f, p);
        for (gint y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(f, p); y++)
            for (gint x = 0; x < GST_VIDEO_FRAME_COMP_WIDTH(f, p); x++)
                sum = (sum ^ d[(gsize)y * (gsize)stride + (gsize)x]) * 1099511628211ull;
    }
    return sum;
}

/* <head> ! <decoder> ! appsink, to the end. */
static void decode_from(const char *head, const char *decoder, gboolean meta, gboolean damaged,
                        struct decoded *out)
{
    char *desc = g_strdup_printf("%s ! %s name=dec ! appsink name=sink sync=false", head, decoder);
    GError *err = NULL;
    GstElement *pipe = gst_parse_launch(desc, &err);
    g_free(desc);
    ck_assert_msg(pipe != NULL, "%s", err ? err->message : "?");
    GstElement *sink = gst_bin_get_by_name(GST_BIN(pipe), "sink");
    GstElement *dec = gst_bin_get_by_name(GST_BIN(pipe), "dec");
    GstPad *decsrc = gst_element_get_static_pad(dec, "src");
    if (meta)
        gst_pad_add_probe(decsrc, GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM | GST_PAD_PROBE_TYPE_PUSH,
                          offer_video_meta, NULL, NULL);
    int counter = 0;
    GstPad *decpad = gst_element_get_static_pad(dec, "sink");
    if (damaged) gst_pad_add_probe(decpad, GST_PAD_PROBE_TYPE_BUFFER, damage, &counter, NULL);
    out->sums = g_array_new(FALSE, FALSE, sizeof(guint64));
    out->pts = g_array_new(FALSE, FALSE, sizeof(GstClockTime));
    out->widths = g_array_new(FALSE, FALSE, sizeof(int));
    out->had_meta = FALSE;
    ck_assert_int_ne(gst_element_set_state(pipe, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
    GstSample *s;
    while ((s = gst_app_sink_pull_sample(GST_APP_SINK(sink))) != NULL) {
        GstVideoInfo info;
        ck_assert(gst_video_info_from_caps(&info, gst_sample_get_caps(s)));
        out->width = GST_VIDEO_INFO_WIDTH(&info);
        out->height = GST_VIDEO_INFO_HEIGHT(&info);
        g_array_append_val(out->widths, out->width);
        GstBuffer *b = gst_sample_get_buffer(s);
        if (gst_buffer_get_video_meta(b)) out->had_meta = TRUE;
        GstVideoFrame f;
        ck_assert(gst_video_frame_map(&f, &info, b, GST_MAP_READ));
        guint64 sum = frame_sum(&f);
        gst_video_frame_unmap(&f);
        GstClockTime pts = GST_BUFFER_PTS(b);
        g_array_append_val(out->sums, sum);
        g_array_append_val(out->pts, pts);
        gst_sample_unref(s);
    }
    GstBus *bus = gst_element_get_bus(pipe);
    GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    if (m) {
        GError *e = NULL;
        gst_message_parse_error(m, &e, NULL);
        ck_abort_msg("%s: pipeline error: %s", decoder, e->message);
    }
    gst_object_unref(bus);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(decpad);
    gst_object_unref(decsrc);
    gst_object_unref(dec);
    gst_object_unref(sink);
    gst_object_unref(pipe);
}

/* filesrc ! flvdemux ! h264parse ! <decoder> ! appsink, to the end. */
static void decode(const char *decoder, gboolean meta, gboolean damaged, struct decoded *out)
{
    char *head = g_strdup_printf("filesrc location=%s ! flvdemux ! h264parse", flv);
    decode_from(head, decoder, meta, damaged, out);
    g_free(head);
}

static void decoded_clear(struct decoded *d)
{
    g_array_unref(d->widths);
    g_array_unref(d->sums);
    g_array_unref(d->pts);
}

START_TEST(every_frame_in_order_and_as_avdec_decodes_it)
{
    struct decoded ref, wrapped, copied;
    decode("avdec_h264", FALSE, FALSE, &ref);
    decode("slh264dec", TRUE, FALSE, &wrapped);
    decode("slh264dec", FALSE, FALSE, &copied);
    ck_assert_uint_eq(ref.sums->len, FRAMES);
    ck_assert(wrapped.had_meta); /* wrapped: strides travel in the meta */
    ck_assert(!copied.had_meta); /* copied into the standard layout */
    struct decoded *mine[] = {&wrapped, &copied};
    for (int k = 0; k < 2; k++) {
        struct decoded *d = mine[k];
        ck_assert_int_eq(d->width, 320);
        ck_assert_int_eq(d->height, 182);
        ck_assert_uint_eq(d->sums->len, FRAMES);
        for (guint i = 0; i < FRAMES; i++) {
            ck_assert_msg(g_array_index(d->sums, guint64, i) == g_array_index(ref.sums, guint64, i),
                          "frame %u differs from avdec_h264's (%s)", i, k ? "copied" : "wrapped");
            ck_assert_uint_eq(g_array_index(d->pts, GstClockTime, i),
                              g_array_index(ref.pts, GstClockTime, i));
            if (i) /* presentation order, though B-frames arrive out of it */
                ck_assert_uint_gt(g_array_index(d->pts, GstClockTime, i),
                                  g_array_index(d->pts, GstClockTime, i - 1));
        }
    }
    decoded_clear(&ref);
    decoded_clear(&wrapped);
    decoded_clear(&copied);
}
END_TEST

START_TEST(damaged_packets_do_not_stop_it)
{
    struct decoded d;
    decode("slh264dec", TRUE, TRUE, &d);
    /* damaged pictures are concealed or lost, never the stream: most frames still come out */
    ck_assert_uint_ge(d.sums->len, FRAMES * 2 / 3);
    ck_assert_uint_le(d.sums->len, FRAMES);
    for (guint i = 1; i < d.pts->len; i++)
        ck_assert_uint_gt(g_array_index(d.pts, GstClockTime, i),
                          g_array_index(d.pts, GstClockTime, i - 1));
    decoded_clear(&d);
}
END_TEST

/* Annex B of the given size and frame count, parameter sets in band. */
static char *make_h264(const char *size, int frames)
{
    char *path = g_strdup_printf("%s/%s.h264", dir, size);
    char *src = g_strdup_printf("testsrc2=size=%s:rate=25", size),
         *n = g_strdup_printf("%d", frames);
    const char *argv[] = {"ffmpeg", "-v",        "error", "-y",   "-f",      "lavfi",   "-i",
                          src,      "-frames:v", n,       "-c:v", "libx264", "-preset", "veryfast",
                          "-bf",    "2",         "-f",    "h264", path,      NULL};
    int st = -1;
    ck_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                           &st, NULL));
    ck_assert_int_eq(st, 0);
    g_free(src);
    g_free(n);
    return path;
}

START_TEST(a_new_size_mid_stream_keeps_every_frame)
{
    char *big = make_h264("320x182", 40), *small = make_h264("160x120", 30);
    gchar *a, *b;
    gsize na, nb;
    ck_assert(g_file_get_contents(big, &a, &na, NULL));
    ck_assert(g_file_get_contents(small, &b, &nb, NULL));
    char *both = g_build_filename(dir, "both.h264", NULL);
    GString *cat = g_string_new_len(a, (gssize)na);
    g_string_append_len(cat, b, (gssize)nb);
    ck_assert(g_file_set_contents(both, cat->str, (gssize)cat->len, NULL));
    char *head = g_strdup_printf("filesrc location=%s ! h264parse ! "
                                 "video/x-h264,stream-format=byte-stream,alignment=au",
                                 both);
    struct decoded d;
    decode_from(head, "slh264dec", TRUE, FALSE, &d);
    /* the pictures the first decoder still held came out before the second size began */
    ck_assert_uint_eq(d.widths->len, 70);
    for (guint i = 0; i < d.widths->len; i++)
        ck_assert_int_eq(g_array_index(d.widths, int, i), i < 40 ? 320 : 160);
    decoded_clear(&d);
    g_free(head);
    g_string_free(cat, TRUE);
    g_free(both);
    g_free(a);
    g_free(b);
    g_free(big);
    g_free(small);
}
END_TEST

static Suite *h264dec_suite(void)
{
    Suite *s = suite_create("h264dec");
    TCase *tc = tcase_create("decode");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_frame_in_order_and_as_avdec_decodes_it);
    tcase_add_test(tc, damaged_packets_do_not_stop_it);
    tcase_add_test(tc, a_new_size_mid_stream_keeps_every_frame);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    gst_init(NULL, NULL);
    if (!transcode_h264dec_register()) return 1;
    return harness_run_suite(h264dec_suite());
}
