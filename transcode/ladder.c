/* ladder: which renditions a channel gets — the configured rungs that fit the source, sized from
 * the publisher's own SPS (GStreamer's H.264 parser) before the first frame is decoded. */
#include "internal.h"

#include <gio/gio.h>
/* stable enough: the parser has been in -bad since 1.0 and 1.22 is what Debian 12 ships */
#define GST_USE_UNSTABLE_API
#include <gst/codecparsers/gsth264parser.h>
#include <string.h>

gboolean ladder_parse(const char *spec, GArray *rungs, GError **err)
{
    g_array_set_size(rungs, 0);
    char **parts = g_strsplit(spec, ",", -1);
    gboolean ok = TRUE;
    for (char **p = parts; *p && ok; p++) {
        char *item = g_strstrip(*p);
        if (*item == '\0') continue;
        guint64 height = 0, kbps = 0;
        char *colon = strchr(item, ':');
        size_t hlen = colon ? (size_t)(colon - item) : 0;
        char *h = colon ? g_strndup(item, hlen) : NULL;
        ok = h && hlen >= 2 && h[hlen - 1] == 'p';
        if (ok) h[hlen - 1] = '\0';
        ok = ok && g_ascii_string_to_unsigned(h, 10, 64, 4320, &height, NULL) &&
             g_ascii_string_to_unsigned(colon + 1, 10, 50, 100000, &kbps, NULL) &&
             rungs->len < REMUX_MAX_OUTPUTS - 1;
        g_free(h);
        if (!ok) {
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                        "ladder rung \"%s\": expected <height>p:<kbps>, e.g. 720p:2500 (at most "
                        "%d rungs)",
                        item, REMUX_MAX_OUTPUTS - 1);
            break;
        }
        struct remux_rung r = {.height = (int)height, .kbps = (int)kbps};
        g_snprintf(r.name, sizeof r.name, "%dp", r.height);
        g_array_append_val(rungs, r);
    }
    g_strfreev(parts);
    return ok;
}

int ladder_fit(const GArray *ladder, int width, int height, struct remux_rung *out, int max)
{
    int n = 0;
    if (width <= 0 || height <= 0) return 0;
    /* "720p" names the short side: a phone held upright (720x1280) gets 720x1280, not 405x720 */
    gboolean portrait = height > width;
    int shorter = portrait ? width : height, longer = portrait ? height : width;
    for (guint i = 0; i < ladder->len && n < max; i++) {
        struct remux_rung r = g_array_index(ladder, struct remux_rung, i);
        int side = r.height;          /* the short side the rung asks for */
        if (side > shorter) continue; /* never upscale */
        int across = (int)((int64_t)longer * side / shorter);
        across += across & 1; /* x264 wants even sizes */
        side += side & 1;
        r.width = portrait ? side : across;
        r.height = portrait ? across : side;
        out[n++] = r;
    }
    return n;
}

/* The first SPS of an AVCDecoderConfigurationRecord (clear it with gst_h264_sps_clear). */
static gboolean record_sps(const uint8_t *record, size_t len, GstH264SPS *sps)
{
    /* version, profile, compat, level, 0xfc|length size, 0xe0|SPS count, then 16-bit length +
     * SPS: the length prefix is read as a 2-byte AVC NAL length. */
    if (len < 8 || record[0] != 1 || (record[5] & 0x1f) == 0) return FALSE;
    GstH264NalParser *parser = gst_h264_nal_parser_new();
    GstH264NalUnit nalu;
    gboolean ok =
        gst_h264_parser_identify_nalu_avc(parser, record, 6, len, 2, &nalu) == GST_H264_PARSER_OK &&
        nalu.type == GST_H264_NAL_SPS && gst_h264_parse_sps(&nalu, sps) == GST_H264_PARSER_OK;
    gst_h264_nal_parser_free(parser);
    return ok;
}

gboolean ladder_source_size(const uint8_t *record, size_t len, int *width, int *height)
{
    GstH264SPS sps;
    if (!record_sps(record, len, &sps)) return FALSE;
    *width = sps.frame_cropping_flag ? sps.crop_rect_width : sps.width;
    *height = sps.frame_cropping_flag ? sps.crop_rect_height : sps.height;
    gst_h264_sps_clear(&sps);
    return *width > 0 && *height > 0;
}

gboolean ladder_source_rate(const uint8_t *record, size_t len, int *fps_n, int *fps_d)
{
    GstH264SPS sps;
    if (!record_sps(record, len, &sps)) return FALSE;
    const GstH264VUIParams *vui = &sps.vui_parameters;
    gboolean ok = sps.vui_parameters_present_flag && vui->timing_info_present_flag &&
                  vui->num_units_in_tick > 0 && vui->time_scale > 0;
    if (ok) { /* a tick is a field: two per frame */
        guint64 n = vui->time_scale, d = 2 * (guint64)vui->num_units_in_tick;
        guint64 a = n, b = d;
        while (b) {
            guint64 r = a % b;
            a = b;
            b = r;
        }
        ok = n / a <= G_MAXINT && d / a <= G_MAXINT;
        *fps_n = (int)(n / a);
        *fps_d = (int)(d / a);
    }
    gst_h264_sps_clear(&sps);
    return ok;
}
