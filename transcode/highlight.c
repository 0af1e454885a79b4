/* highlight: cuts one product's replay clip out of a broadcast's recorded MPEG-TS segments into
 * a single MP4 with libavformat — packets copied, never re-encoded — starting on the keyframe at
 * or before the pin and ending at the unpin, with the index up front (faststart). Pure file
 * work; it runs on a worker thread. */
#include "internal.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <libavformat/avformat.h>
#include <libavutil/mathematics.h>

#define MS       \
    (AVRational) \
    {            \
        1, 1000  \
    }

struct cut {
    AVFormatContext *out;
    int map[2];          /* output stream of [video, audio] */
    int64_t last_dts[2]; /* per output stream, to keep them increasing */
    int64_t clip0;       /* PDT of the clip's first frame (a keyframe) */
    gboolean video_started, video_done;
};

static int64_t packet_pdt(const AVFormatContext *in, const AVPacket *pkt, int64_t seg_pdt)
{
    AVRational tb = in->streams[pkt->stream_index]->time_base;
    int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
    int64_t start =
        in->start_time == AV_NOPTS_VALUE ? 0 : av_rescale_q(in->start_time, AV_TIME_BASE_Q, tb);
    return seg_pdt + av_rescale_q(ts - start, tb, MS);
}

static int open_input(const char *path, AVFormatContext **in, int *v, int *a, GError **err)
{
    *in = NULL;
    int rc = avformat_open_input(in, path, NULL, NULL);
    if (rc >= 0) rc = avformat_find_stream_info(*in, NULL);
    if (rc < 0) {
        char text[128];
        av_strerror(rc, text, sizeof text);
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "%s: %s", path, text);
        avformat_close_input(in);
        return -1;
    }
    *v = av_find_best_stream(*in, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    *a = av_find_best_stream(*in, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    return 0;
}

/* The last video keyframe at or before `start` in the first segment (which begins with one). */
static int64_t keyframe_before(const struct highlight_input *first, int64_t start)
{
    AVFormatContext *in;
    int v, a;
    if (open_input(first->path, &in, &v, &a, NULL) < 0) {
        return first->pdt_ms;
    }
    int64_t best = -1;
    AVPacket *pkt = av_packet_alloc();
    while (v >= 0 && av_read_frame(in, pkt) >= 0) {
        if (pkt->stream_index == v && (pkt->flags & AV_PKT_FLAG_KEY)) {
            int64_t pdt = packet_pdt(in, pkt, first->pdt_ms);
            if (pdt <= start || best < 0) best = pdt;
            if (pdt > start) {
                av_packet_unref(pkt);
                break;
            }
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    avformat_close_input(&in);
    return best >= 0 ? best : first->pdt_ms;
}

static int open_output(struct cut *c, const char *path, AVFormatContext *in, int v, int a,
                       GError **err)
{
    int rc = avformat_alloc_output_context2(&c->out, NULL, "mp4", path);
    int idx[2] = {v, a};
    for (int k = 0; k < 2 && rc >= 0; k++) {
        c->map[k] = -1;
        if (idx[k] < 0) continue;
        AVStream *os = avformat_new_stream(c->out, NULL);
        if (os == NULL) {
            rc = AVERROR(ENOMEM);
            break;
        }
        rc = avcodec_parameters_copy(os->codecpar, in->streams[idx[k]]->codecpar);
        os->codecpar->codec_tag = 0; /* MP4 picks its own (avc1, mp4a) */
        os->time_base = in->streams[idx[k]]->time_base;
        c->map[k] = os->index;
        c->last_dts[k] = INT64_MIN;
    }
    if (rc >= 0) rc = avio_open(&c->out->pb, path, AVIO_FLAG_WRITE);
    if (rc >= 0) {
        AVDictionary *opts = NULL;
        av_dict_set(&opts, "movflags", "+faststart", 0);
        rc = avformat_write_header(c->out, &opts);
        av_dict_free(&opts);
    }
    if (rc < 0) {
        char text[128];
        av_strerror(rc, text, sizeof text);
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "%s: %s", path, text);
        return -1;
    }
    return 0;
}

/* Copy one segment's packets that fall in the clip. */
static int copy_segment(struct cut *c, const struct highlight_input *seg, int64_t end,
                        const char *out_path, GError **err)
{
    AVFormatContext *in;
    int v, a;
    if (open_input(seg->path, &in, &v, &a, err) < 0) return -1;
    if (c->out == NULL && open_output(c, out_path, in, v, a, err) < 0) {
        avformat_close_input(&in);
        return -1;
    }
    AVPacket *pkt = av_packet_alloc();
    int rc = 0;
    while (rc >= 0 && av_read_frame(in, pkt) >= 0) {
        int k = pkt->stream_index == v ? 0 : pkt->stream_index == a ? 1 : -1;
        int64_t pdt = packet_pdt(in, pkt, seg->pdt_ms);
        gboolean take = k >= 0 && c->map[k] >= 0;
        if (take && k == 0) {
            /* video: from the clip's keyframe on, whole GOPs in decode order, until the end */
            if (!c->video_started && (pkt->flags & AV_PKT_FLAG_KEY) && pdt >= c->clip0 - 1)
                c->video_started = TRUE;
            if (c->video_started && pdt > end && (pkt->flags & AV_PKT_FLAG_KEY))
                c->video_done = TRUE;
            take = c->video_started && !c->video_done && pdt <= end;
        } else if (take) {
            take = pdt >= c->clip0 && pdt <= end;
        }
        if (take) {
            AVStream *ist = in->streams[pkt->stream_index];
            AVStream *ost = c->out->streams[c->map[k]];
            int64_t shift = av_rescale_q(seg->pdt_ms - c->clip0, MS, ist->time_base) -
                            (in->start_time == AV_NOPTS_VALUE
                                 ? 0
                                 : av_rescale_q(in->start_time, AV_TIME_BASE_Q, ist->time_base));
            if (pkt->pts != AV_NOPTS_VALUE) pkt->pts += shift;
            if (pkt->dts != AV_NOPTS_VALUE) pkt->dts += shift;
            av_packet_rescale_ts(pkt, ist->time_base, ost->time_base);
            if (pkt->dts != AV_NOPTS_VALUE && pkt->dts <= c->last_dts[k])
                pkt->dts = c->last_dts[k] + 1; /* a rounding or a discontinuity: keep order */
            if (pkt->pts != AV_NOPTS_VALUE && pkt->dts != AV_NOPTS_VALUE && pkt->pts < pkt->dts)
                pkt->pts = pkt->dts;
            if (pkt->dts != AV_NOPTS_VALUE) c->last_dts[k] = pkt->dts;
            pkt->stream_index = c->map[k];
            pkt->pos = -1;
            rc = av_interleaved_write_frame(c->out, pkt);
            if (rc < 0) {
                char text[128];
                av_strerror(rc, text, sizeof text);
                g_set_error(err, SL_ERROR, SL_ERROR_IO, "writing the clip: %s", text);
            }
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    avformat_close_input(&in);
    return rc < 0 ? -1 : 0;
}

int highlight_cut(GPtrArray *inputs, int64_t start_pdt, int64_t end_pdt, const char *path,
                  int64_t *clip_start, int64_t *clip_end, GError **err)
{
    if (inputs->len == 0) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_IO, "no recorded segment covers the interval");
        return SL_ERR;
    }
    av_log_set_level(AV_LOG_ERROR);
    struct cut c = {.clip0 = keyframe_before(inputs->pdata[0], start_pdt)};
    char *tmp = g_strconcat(path, ".part", NULL);
    int rc = 0;
    for (guint i = 0; i < inputs->len && rc == 0 && !c.video_done; i++) {
        rc = copy_segment(&c, inputs->pdata[i], end_pdt, tmp, err);
    }
    if (c.out) {
        if (rc == 0 && av_write_trailer(c.out) < 0) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_IO, "cannot finish the MP4");
            rc = -1;
        }
        avio_closep(&c.out->pb);
        avformat_free_context(c.out);
    }
    if (rc == 0 && g_rename(tmp, path) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "%s: %s", path, g_strerror(errno));
        rc = -1;
    }
    if (rc != 0) g_unlink(tmp);
    g_free(tmp);
    *clip_start = c.clip0;
    *clip_end = end_pdt;
    return rc == 0 ? SL_OK : SL_ERR;
}
