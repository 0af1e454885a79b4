/* swscale: a GStreamer video filter ("slswscale") that resizes raw frames with FFmpeg's
 * libswscale and hands them on as 8-bit 4:2:0 (I420), what every rung's encoder must get for
 * browsers to play it, used by the ladder's rungs in place of videoscale + videoconvert. */
#include "internal.h"

#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>
#include <libswscale/swscale.h>

/* Why not videoscale: on the ladder's 720p source, GStreamer 1.22's videoscale (its generic
 * resampler) spent about four times the CPU libswscale does for the same bilinear rungs
 * (bench/transcode, docs/BENCHMARKS.md), and scaling was half of the gap to the ffmpeg CLI. */

#define SWSCALE_FORMATS "{ I420, YV12, NV12, Y42B, Y444, I420_10LE, I422_10LE, Y444_10LE }"

typedef struct {
    GstVideoFilter parent;
    struct SwsContext *sws; /* owned; NULL in passthrough */
} SlSwscale;

typedef struct {
    GstVideoFilterClass parent_class;
} SlSwscaleClass;

GType sl_swscale_get_type(void);
G_DEFINE_TYPE(SlSwscale, sl_swscale, GST_TYPE_VIDEO_FILTER)

static enum AVPixelFormat av_format(GstVideoFormat f)
{
    switch (f) {
    case GST_VIDEO_FORMAT_I420:
    case GST_VIDEO_FORMAT_YV12: /* the same planes in another order; frames map them by name */
        return AV_PIX_FMT_YUV420P;
    case GST_VIDEO_FORMAT_NV12:
        return AV_PIX_FMT_NV12;
    case GST_VIDEO_FORMAT_Y42B:
        return AV_PIX_FMT_YUV422P;
    case GST_VIDEO_FORMAT_Y444:
        return AV_PIX_FMT_YUV444P;
    case GST_VIDEO_FORMAT_I420_10LE:
        return AV_PIX_FMT_YUV420P10LE;
    case GST_VIDEO_FORMAT_I422_10LE:
        return AV_PIX_FMT_YUV422P10LE;
    case GST_VIDEO_FORMAT_Y444_10LE:
        return AV_PIX_FMT_YUV444P10LE;
    default:
        return AV_PIX_FMT_NONE;
    }
}

/* Any size on the other side; out comes I420, in goes any format it reads; the frame rate
 * and the rest stay as they are. */
static GstCaps *swscale_transform_caps(GstBaseTransform *trans, GstPadDirection direction,
                                       GstCaps *caps, GstCaps *filter)
{
    (void)trans;
    GstCaps *out = gst_caps_copy(caps);
    GstCaps *any_format = gst_caps_from_string(GST_VIDEO_CAPS_MAKE(SWSCALE_FORMATS));
    const GValue *formats =
        gst_structure_get_value(gst_caps_get_structure(any_format, 0), "format");
    for (guint i = 0; i < gst_caps_get_size(out); i++) {
        GstStructure *s = gst_caps_get_structure(out, i);
        gst_structure_set(s, "width", GST_TYPE_INT_RANGE, 1, G_MAXINT, "height", GST_TYPE_INT_RANGE,
                          1, G_MAXINT, NULL);
        gst_structure_remove_field(s, "pixel-aspect-ratio");
        if (direction == GST_PAD_SINK)
            gst_structure_set(s, "format", G_TYPE_STRING, "I420", NULL);
        else
            gst_structure_set_value(s, "format", formats);
    }
    gst_caps_unref(any_format);
    if (filter != NULL) {
        GstCaps *both = gst_caps_intersect_full(filter, out, GST_CAPS_INTERSECT_FIRST);
        gst_caps_unref(out);
        out = both;
    }
    return out;
}

static gboolean swscale_set_info(GstVideoFilter *filter, GstCaps *incaps, GstVideoInfo *in_info,
                                 GstCaps *outcaps, GstVideoInfo *out_info)
{
    (void)incaps;
    (void)outcaps;
    SlSwscale *self = (SlSwscale *)filter;
    if (self->sws != NULL) sws_freeContext(self->sws);
    self->sws = NULL;
    int iw = GST_VIDEO_INFO_WIDTH(in_info), ih = GST_VIDEO_INFO_HEIGHT(in_info);
    int ow = GST_VIDEO_INFO_WIDTH(out_info), oh = GST_VIDEO_INFO_HEIGHT(out_info);
    enum AVPixelFormat fmt = av_format(GST_VIDEO_INFO_FORMAT(in_info));
    if (fmt == AV_PIX_FMT_NONE || GST_VIDEO_INFO_FORMAT(out_info) != GST_VIDEO_FORMAT_I420)
        return FALSE;
    gboolean same = iw == ow && ih == oh && GST_VIDEO_INFO_FORMAT(in_info) == GST_VIDEO_FORMAT_I420;
    gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(filter), same);
    if (same) return TRUE;
    /* bilinear: what videoscale did by default, and what the benchmark's ffmpeg peer uses; a
     * 10-bit or 4:2:2/4:4:4 source is brought to 8-bit 4:2:0 in the same pass */
    self->sws =
        sws_getContext(iw, ih, fmt, ow, oh, AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
    return self->sws != NULL;
}

static GstFlowReturn swscale_transform_frame(GstVideoFilter *filter, GstVideoFrame *in,
                                             GstVideoFrame *out)
{
    SlSwscale *self = (SlSwscale *)filter;
    if (self->sws == NULL) return GST_FLOW_NOT_NEGOTIATED;
    const uint8_t *src[4] = {0};
    uint8_t *dst[4] = {0};
    int src_stride[4] = {0}, dst_stride[4] = {0};
    for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(in) && p < 4; p++) {
        src[p] = GST_VIDEO_FRAME_PLANE_DATA(in, p);
        src_stride[p] = GST_VIDEO_FRAME_PLANE_STRIDE(in, p);
    }
    for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(out) && p < 4; p++) {
        dst[p] = GST_VIDEO_FRAME_PLANE_DATA(out, p);
        dst_stride[p] = GST_VIDEO_FRAME_PLANE_STRIDE(out, p);
    }
    if (GST_VIDEO_FRAME_FORMAT(in) == GST_VIDEO_FORMAT_YV12) {
        /* YV12 stores V before U: plane 1 is V. libswscale's YUV420P wants U in plane 1. */
        const uint8_t *t = src[1];
        src[1] = src[2];
        src[2] = t;
        int ts = src_stride[1];
        src_stride[1] = src_stride[2];
        src_stride[2] = ts;
    }
    sws_scale(self->sws, src, src_stride, 0, GST_VIDEO_FRAME_HEIGHT(in), dst, dst_stride);
    return GST_FLOW_OK;
}

static void swscale_finalize(GObject *object)
{
    SlSwscale *self = (SlSwscale *)object;
    if (self->sws != NULL) sws_freeContext(self->sws);
    G_OBJECT_CLASS(sl_swscale_parent_class)->finalize(object);
}

static void sl_swscale_class_init(SlSwscaleClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS(klass);
    GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS(klass);
    object_class->finalize = swscale_finalize;
    GstCaps *caps = gst_caps_from_string(GST_VIDEO_CAPS_MAKE(SWSCALE_FORMATS));
    GstCaps *i420 = gst_caps_from_string(GST_VIDEO_CAPS_MAKE("I420"));
    gst_element_class_add_pad_template(
        element_class, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, caps));
    gst_element_class_add_pad_template(
        element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, i420));
    gst_caps_unref(caps);
    gst_caps_unref(i420);
    gst_element_class_set_static_metadata(element_class, "silklive libswscale scaler",
                                          "Filter/Converter/Video/Scaler",
                                          "Resizes video with FFmpeg's libswscale", "silklive");
    trans_class->transform_caps = swscale_transform_caps;
    filter_class->set_info = swscale_set_info;
    filter_class->transform_frame = swscale_transform_frame;
}

static void sl_swscale_init(SlSwscale *self)
{
    self->sws = NULL;
}

gboolean transcode_swscale_register(void)
{
    return gst_element_register(NULL, "slswscale", GST_RANK_NONE, sl_swscale_get_type());
}
