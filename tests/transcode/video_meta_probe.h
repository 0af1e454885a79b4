/* A pad probe for the decoder's src pad that answers its allocation query in the sink's place
 * (appsink and fakesink answer none) the way a downstream that maps frames by GstVideoMeta
 * (slswscale, x264enc) does; shared by test_h264dec and fuzz_h264dec. */
#ifndef SL_TESTS_VIDEO_META_PROBE_H
#define SL_TESTS_VIDEO_META_PROBE_H

#include <gst/gst.h>
#include <gst/video/video.h>

static inline GstPadProbeReturn offer_video_meta(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    (void)pad;
    (void)data;
    GstQuery *q = GST_PAD_PROBE_INFO_QUERY(info);
    if (GST_QUERY_TYPE(q) != GST_QUERY_ALLOCATION) return GST_PAD_PROBE_OK;
    gst_query_add_allocation_meta(q, GST_VIDEO_META_API_TYPE, NULL);
    return GST_PAD_PROBE_HANDLED;
}

#endif
