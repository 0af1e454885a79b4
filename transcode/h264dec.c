/* h264dec: a GStreamer H.264 decoder ("slh264dec") around libavcodec whose output buffers wrap
 * the decoder's own frames, used by the ladder in place of avdec_h264. */
#include "internal.h"

#include <gst/video/gstvideodecoder.h>
#include <gst/video/video.h>
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <limits.h>

/* Why not avdec_h264: it hands out each decoded picture in a GstBuffer that libavcodec still
 * references (the picture is the next one's reference frame), so GstVideoDecoder's
 * make_writable before the push copied every frame: about 40 MB/s for a 720p30 source, 3 % of
 * the ladder's CPU (bench/transcode). Here every output buffer is new and only wraps references
 * to the frame's planes, so nothing is copied; the planes are read-only, which is all the rungs
 * (slswscale, x264enc) do with them. */

/* Frames whose packet went in this many frames before the one coming out and that never came
 * out were lost in the decoder (a broken packet): released so the base class does not keep
 * them. H.264 reorders by at most 16 frames; frame threads add a few. */
#define H264DEC_LOST_AFTER 48

typedef struct {
    GstVideoDecoder parent;
    AVCodecContext *ctx;       /* owned */
    AVPacket *pkt;             /* owned */
    AVFrame *frame;            /* owned; the frame being received */
    GstVideoCodecState *input; /* owned */
    gboolean meta_ok;          /* downstream maps frames by GstVideoMeta: no copy needed */
    int out_w, out_h;          /* the negotiated output; 0 before the first frame */
    enum AVPixelFormat out_fmt;
} SlH264Dec;

typedef struct {
    GstVideoDecoderClass parent_class;
} SlH264DecClass;

GType sl_h264dec_get_type(void);
G_DEFINE_TYPE(SlH264Dec, sl_h264dec, GST_TYPE_VIDEO_DECODER)

static GstVideoFormat gst_format(enum AVPixelFormat f)
{
    switch (f) {
    case AV_PIX_FMT_YUV420P:
    case AV_PIX_FMT_YUVJ420P:
        return GST_VIDEO_FORMAT_I420;
    case AV_PIX_FMT_YUV422P:
    case AV_PIX_FMT_YUVJ422P:
        return GST_VIDEO_FORMAT_Y42B;
    case AV_PIX_FMT_YUV444P:
    case AV_PIX_FMT_YUVJ444P:
        return GST_VIDEO_FORMAT_Y444;
    case AV_PIX_FMT_YUV420P10LE:
        return GST_VIDEO_FORMAT_I420_10LE;
    case AV_PIX_FMT_YUV422P10LE:
        return GST_VIDEO_FORMAT_I422_10LE;
    case AV_PIX_FMT_YUV444P10LE:
        return GST_VIDEO_FORMAT_Y444_10LE;
    default:
        return GST_VIDEO_FORMAT_UNKNOWN;
    }
}

static void h264dec_close(SlH264Dec *self)
{
    avcodec_free_context(&self->ctx);
    self->out_w = self->out_h = 0;
    self->out_fmt = AV_PIX_FMT_NONE;
}

static gboolean h264dec_start(GstVideoDecoder *dec)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    self->pkt = av_packet_alloc();
    self->frame = av_frame_alloc();
    return self->pkt != NULL && self->frame != NULL;
}

static gboolean h264dec_stop(GstVideoDecoder *dec)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    h264dec_close(self);
    av_packet_free(&self->pkt);
    av_frame_free(&self->frame);
    g_clear_pointer(&self->input, gst_video_codec_state_unref);
    return TRUE;
}

static GstFlowReturn h264dec_drain(GstVideoDecoder *dec);

/* A new stream configuration: the pictures the old decoder still holds go out first, then a
 * fresh decoder with the avcC record as extradata (AVC) or none (Annex B, parameter sets in
 * band). */
static gboolean h264dec_set_format(GstVideoDecoder *dec, GstVideoCodecState *state)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    h264dec_drain(dec);
    h264dec_close(self);
    g_clear_pointer(&self->input, gst_video_codec_state_unref);
    self->input = gst_video_codec_state_ref(state);
    const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_H264);
    self->ctx = codec ? avcodec_alloc_context3(codec) : NULL;
    if (self->ctx == NULL) return FALSE;
    /* an empty codec_data is no avcC at all: nothing to copy (and no pointer to copy from) */
    if (state->codec_data != NULL && gst_buffer_get_size(state->codec_data) > 0) {
        GstMapInfo map;
        if (!gst_buffer_map(state->codec_data, &map, GST_MAP_READ)) return FALSE;
        self->ctx->extradata = av_mallocz(map.size + AV_INPUT_BUFFER_PADDING_SIZE);
        if (self->ctx->extradata) {
            memcpy(self->ctx->extradata, map.data, map.size);
            self->ctx->extradata_size = (int)map.size;
        }
        gst_buffer_unmap(state->codec_data, &map);
        if (self->ctx->extradata == NULL) return FALSE;
    }
    /* as avdec_h264 by default: frame and slice threads, as many as the machine has */
    self->ctx->thread_count = 0;
    self->ctx->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    if (avcodec_open2(self->ctx, codec, NULL) < 0) {
        avcodec_free_context(&self->ctx);
        return FALSE;
    }
    /* frame threads hold back one frame per thread */
    if (state->info.fps_n > 0 && self->ctx->thread_count > 1)
        gst_video_decoder_set_latency(
            dec,
            gst_util_uint64_scale_int((guint64)self->ctx->thread_count * GST_SECOND,
                                      state->info.fps_d, state->info.fps_n),
            GST_CLOCK_TIME_NONE);
    return TRUE;
}

static gboolean h264dec_decide_allocation(GstVideoDecoder *dec, GstQuery *query)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    self->meta_ok = gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, NULL);
    return GST_VIDEO_DECODER_CLASS(sl_h264dec_parent_class)->decide_allocation(dec, query);
}

static gboolean h264dec_negotiate_for(SlH264Dec *self, const AVFrame *f)
{
    GstVideoFormat fmt = gst_format((enum AVPixelFormat)f->format);
    if (fmt == GST_VIDEO_FORMAT_UNKNOWN) {
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, (NULL),
                          ("unsupported decoded pixel format %d", f->format));
        return FALSE;
    }
    if (self->out_w == f->width && self->out_h == f->height && self->out_fmt == f->format)
        return TRUE;
    GstVideoCodecState *out = gst_video_decoder_set_output_state(
        GST_VIDEO_DECODER(self), fmt, (guint)f->width, (guint)f->height, self->input);
    gst_video_codec_state_unref(out);
    if (!gst_video_decoder_negotiate(GST_VIDEO_DECODER(self))) return FALSE;
    self->out_w = f->width;
    self->out_h = f->height;
    self->out_fmt = (enum AVPixelFormat)f->format;
    return TRUE;
}

static void frame_ref_free(gpointer data)
{
    AVFrame *f = data;
    av_frame_free(&f);
}

/* A buffer of read-only memories over the frame's planes, each holding its own reference. */
static GstBuffer *wrap_frame(SlH264Dec *self, const AVFrame *f)
{
    GstVideoCodecState *state = gst_video_decoder_get_output_state(GST_VIDEO_DECODER(self));
    const GstVideoInfo *info = &state->info;
    GstBuffer *buf = gst_buffer_new();
    gsize offsets[GST_VIDEO_MAX_PLANES] = {0};
    gint strides[GST_VIDEO_MAX_PLANES] = {0};
    gsize at = 0;
    guint planes = GST_VIDEO_INFO_N_PLANES(info);
    for (guint p = 0; p < planes; p++) {
        AVFrame *ref = av_frame_clone(f);
        if (ref == NULL || f->linesize[p] <= 0) {
            av_frame_free(&ref);
            gst_buffer_unref(buf);
            gst_video_codec_state_unref(state);
            return NULL;
        }
        gsize size = (gsize)f->linesize[p] * (gsize)GST_VIDEO_INFO_COMP_HEIGHT(info, p);
        gst_buffer_append_memory(buf, gst_memory_new_wrapped(GST_MEMORY_FLAG_READONLY, ref->data[p],
                                                             size, 0, size, ref, frame_ref_free));
        offsets[p] = at;
        strides[p] = f->linesize[p];
        at += size;
    }
    gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(info),
                                   (guint)f->width, (guint)f->height, planes, offsets, strides);
    gst_video_codec_state_unref(state);
    return buf;
}

/* Downstream cannot map by GstVideoMeta: copy into a buffer of the standard layout. */
static gboolean copy_frame(SlH264Dec *self, const AVFrame *f, GstVideoCodecFrame *frame)
{
    if (gst_video_decoder_allocate_output_frame(GST_VIDEO_DECODER(self), frame) != GST_FLOW_OK)
        return FALSE;
    GstVideoCodecState *state = gst_video_decoder_get_output_state(GST_VIDEO_DECODER(self));
    GstVideoFrame out;
    gboolean ok = gst_video_frame_map(&out, &state->info, frame->output_buffer, GST_MAP_WRITE);
    if (ok) {
        for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(&out); p++) {
            guint8 *d = GST_VIDEO_FRAME_PLANE_DATA(&out, p);
            gint ds = GST_VIDEO_FRAME_PLANE_STRIDE(&out, p);
            gsize row = (gsize)GST_VIDEO_FRAME_COMP_WIDTH(&out, p) *
                        (gsize)GST_VIDEO_FRAME_COMP_PSTRIDE(&out, p);
            for (gint y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(&out, p); y++)
                memcpy(d + (gsize)y * (gsize)ds, f->data[p] + (gsize)y * (gsize)f->linesize[p],
                       row);
        }
        gst_video_frame_unmap(&out);
    }
    gst_video_codec_state_unref(state);
    return ok;
}

/* Frames that went in long before this one and never came out were lost in the decoder. */
static void release_lost(SlH264Dec *self, guint32 current)
{
    GList *frames = gst_video_decoder_get_frames(GST_VIDEO_DECODER(self));
    for (GList *l = frames; l; l = l->next) {
        GstVideoCodecFrame *fr = l->data;
        if (fr->system_frame_number + H264DEC_LOST_AFTER < current)
            gst_video_decoder_release_frame(GST_VIDEO_DECODER(self), gst_video_codec_frame_ref(fr));
    }
    g_list_free_full(frames, (GDestroyNotify)gst_video_codec_frame_unref);
}

/* Everything the decoder has ready goes downstream. */
static GstFlowReturn h264dec_receive(SlH264Dec *self)
{
    GstVideoDecoder *dec = GST_VIDEO_DECODER(self);
    for (;;) {
        int rc = avcodec_receive_frame(self->ctx, self->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return GST_FLOW_OK;
        if (rc < 0) {
            GST_WARNING_OBJECT(self, "decoding failed: %s", av_err2str(rc));
            return GST_FLOW_OK; /* the stream goes on from the next good picture */
        }
        if (self->frame->pts == AV_NOPTS_VALUE) {
            av_frame_unref(self->frame);
            continue;
        }
        /* the packet's pts carried the frame number through the decoder's reordering */
        guint32 number = (guint32)self->frame->pts;
        GstVideoCodecFrame *frame = gst_video_decoder_get_frame(dec, (int)number);
        if (frame == NULL) {
            av_frame_unref(self->frame);
            continue;
        }
        release_lost(self, number);
        if (!h264dec_negotiate_for(self, self->frame)) {
            av_frame_unref(self->frame);
            gst_video_decoder_drop_frame(dec, frame);
            return GST_FLOW_NOT_NEGOTIATED;
        }
        gboolean ok;
        if (self->meta_ok) {
            frame->output_buffer = wrap_frame(self, self->frame);
            ok = frame->output_buffer != NULL;
        } else {
            ok = copy_frame(self, self->frame, frame);
        }
        av_frame_unref(self->frame);
        if (!ok) {
            gst_video_decoder_drop_frame(dec, frame);
            return GST_FLOW_ERROR;
        }
        GstFlowReturn ret = gst_video_decoder_finish_frame(dec, frame);
        if (ret != GST_FLOW_OK) return ret;
    }
}

static GstFlowReturn h264dec_handle_frame(GstVideoDecoder *dec, GstVideoCodecFrame *frame)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    if (self->ctx == NULL) {
        gst_video_decoder_drop_frame(dec, frame);
        return GST_FLOW_NOT_NEGOTIATED;
    }
    GstMapInfo map;
    if (!gst_buffer_map(frame->input_buffer, &map, GST_MAP_READ)) {
        gst_video_decoder_drop_frame(dec, frame);
        return GST_FLOW_ERROR;
    }
    if (map.size == 0 || map.size > INT_MAX / 2) { /* an empty packet would mean "drain" */
        gst_buffer_unmap(frame->input_buffer, &map);
        gst_video_decoder_drop_frame(dec, frame);
        return GST_FLOW_OK;
    }
    /* libavcodec reads up to AV_INPUT_BUFFER_PADDING_SIZE past the end: a padded copy */
    int rc = av_new_packet(self->pkt, (int)map.size);
    if (rc == 0) {
        memcpy(self->pkt->data, map.data, map.size);
        self->pkt->pts = frame->system_frame_number;
        if (GST_VIDEO_CODEC_FRAME_IS_SYNC_POINT(frame)) self->pkt->flags |= AV_PKT_FLAG_KEY;
    }
    gst_buffer_unmap(frame->input_buffer, &map);
    guint32 number = frame->system_frame_number;
    gst_video_codec_frame_unref(frame); /* the base class keeps it until it comes out */
    if (rc < 0) return GST_FLOW_ERROR;
    rc = avcodec_send_packet(self->ctx, self->pkt);
    av_packet_unref(self->pkt);
    if (rc < 0 && rc != AVERROR(EAGAIN)) {
        GST_WARNING_OBJECT(self, "packet %u refused: %s", number, av_err2str(rc));
        GstVideoCodecFrame *lost = gst_video_decoder_get_frame(dec, (int)number);
        if (lost) gst_video_decoder_release_frame(dec, lost);
        return GST_FLOW_OK; /* a broken packet; the next keyframe recovers */
    }
    return h264dec_receive(self);
}

/* End of stream or a drain: everything held back comes out, then the decoder starts over. */
static GstFlowReturn h264dec_drain(GstVideoDecoder *dec)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    if (self->ctx == NULL) return GST_FLOW_OK;
    GstFlowReturn ret = GST_FLOW_OK;
    if (avcodec_send_packet(self->ctx, NULL) == 0) ret = h264dec_receive(self);
    avcodec_flush_buffers(self->ctx);
    return ret;
}

static gboolean h264dec_flush(GstVideoDecoder *dec)
{
    SlH264Dec *self = (SlH264Dec *)dec;
    if (self->ctx) avcodec_flush_buffers(self->ctx);
    return TRUE;
}

static void sl_h264dec_class_init(SlH264DecClass *klass)
{
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstVideoDecoderClass *dec_class = GST_VIDEO_DECODER_CLASS(klass);
    GstCaps *sink = gst_caps_from_string("video/x-h264, alignment=au, "
                                         "stream-format={ avc, byte-stream }");
    GstCaps *src = gst_caps_from_string(
        GST_VIDEO_CAPS_MAKE("{ I420, Y42B, Y444, I420_10LE, I422_10LE, Y444_10LE }"));
    gst_element_class_add_pad_template(
        element_class, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, sink));
    gst_element_class_add_pad_template(
        element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, src));
    gst_caps_unref(sink);
    gst_caps_unref(src);
    gst_element_class_set_static_metadata(
        element_class, "silklive H.264 decoder", "Codec/Decoder/Video",
        "Decodes H.264 with FFmpeg's libavcodec, without copies", "silklive");
    dec_class->start = h264dec_start;
    dec_class->stop = h264dec_stop;
    dec_class->set_format = h264dec_set_format;
    dec_class->decide_allocation = h264dec_decide_allocation;
    dec_class->handle_frame = h264dec_handle_frame;
    dec_class->drain = h264dec_drain;
    dec_class->finish = h264dec_drain;
    dec_class->flush = h264dec_flush;
}

static void sl_h264dec_init(SlH264Dec *self)
{
    self->out_fmt = AV_PIX_FMT_NONE;
    gst_video_decoder_set_packetized(GST_VIDEO_DECODER(self), TRUE);
    gst_video_decoder_set_needs_format(GST_VIDEO_DECODER(self), TRUE);
}

gboolean transcode_h264dec_register(void)
{
    return gst_element_register(NULL, "slh264dec", GST_RANK_NONE, sl_h264dec_get_type());
}
