/* flvts: the passthrough remuxer for sessions without ladder rungs. FLV tags become MPEG-TS
 * segment files through libavformat's mpegts muxer, in-process on the loop, with no thread hop
 * per frame; posters are decoded (libavcodec) and encoded as JPEG on a worker thread.
 *
 * Why not the GStreamer pipeline here: remuxing is a few memcpy per frame, but a pipeline runs
 * appsrc, flvdemux, two queues, two parsers and an aggregator on five threads, and every frame
 * crosses them; that cost 4.9× nginx-rtmp's CPU per stream (docs/BENCHMARKS.md). One muxer
 * lives for the whole session and only its output file changes at each cut, so continuity
 * counters and timestamps run on across segments as in one stream; PAT/PMT are repeated at the
 * head of every file. */
#include "internal.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <string.h>

enum { FLVTS_VIDEO, FLVTS_AUDIO, FLVTS_KINDS };

#define FLVTS_CUT_SLACK_MS 50 /* a keyframe a few ms early still cuts: GOPs are rarely exact */
#define POSTER_QUEUE_MAX   64 /* posters waiting for the worker before new ones are skipped */
#define FPS_SAMPLE_FRAMES  90 /* video frames the frame rate is measured over, without VUI */
#define POSTER_QSCALE      4  /* JPEG quantiser: visually clean, ~30 KB at 720p */

struct flvts {
    char *channel_dir, *dir, *prefix; /* owned; dir is <channel_dir>/<output> */
    int64_t next_index, segment_ms, poster_ms;
    const struct flvts_events *ev;
    void *user;
    GBytes *config[FLVTS_KINDS]; /* newest avcC / AudioSpecificConfig */
    gboolean stale;              /* the muxer was built before the configs changed */
    AVFormatContext *oc;         /* owned, NULL until the first segment */
    int stream[FLVTS_KINDS];     /* oc's stream per kind, -1: none */
    int64_t last_dts[FLVTS_KINDS];
    AVPacket *pkt; /* owned; reused for every frame */
    /* the segment being written */
    char *path; /* owned; NULL: none open */
    int64_t seg_start_ms, end_ms;
    int write_errno; /* the open segment could not be written */
    gboolean broken; /* a write failed: no more files, the disk keeps what space is left */
    gboolean finished;
    /* the source video, for the master playlist */
    int width, height, fps_n, fps_d;
    int64_t fps_first_dts, fps_frames, last_video_delta;
    int audio_rate;
    int64_t last_poster_ms;
};

/* ---- posters (worker thread) ---- */

struct poster_job {
    GBytes *config; /* avcC */
    uint8_t *frame; /* g_free; one keyframe, length-prefixed NAL units */
    size_t len;
    char *path; /* poster.jpg */
};

static GThreadPool *poster_pool; /* created and freed on the loop */

static void poster_job_free(struct poster_job *j)
{
    g_bytes_unref(j->config);
    g_free(j->frame);
    g_free(j->path);
    g_free(j);
}

static AVFrame *poster_decode(const struct poster_job *j)
{
    const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_H264);
    AVCodecContext *dec = codec ? avcodec_alloc_context3(codec) : NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    gsize n;
    const uint8_t *avcc = g_bytes_get_data(j->config, &n);
    gboolean ok = dec && pkt && frame && n <= INT_MAX - AV_INPUT_BUFFER_PADDING_SIZE &&
                  j->len <= INT_MAX - AV_INPUT_BUFFER_PADDING_SIZE;
    if (ok) {
        dec->extradata = av_mallocz(n + AV_INPUT_BUFFER_PADDING_SIZE);
        ok = dec->extradata != NULL;
    }
    if (ok) {
        memcpy(dec->extradata, avcc, n);
        dec->extradata_size = (int)n;
        dec->thread_count = 1;
        ok = avcodec_open2(dec, codec, NULL) >= 0 && av_new_packet(pkt, (int)j->len) >= 0;
    }
    if (ok) {
        memcpy(pkt->data, j->frame, j->len);
        pkt->flags |= AV_PKT_FLAG_KEY;
        pkt->pts = pkt->dts = 0;
        ok = avcodec_send_packet(dec, pkt) >= 0 && avcodec_send_packet(dec, NULL) >= 0 &&
             avcodec_receive_frame(dec, frame) >= 0;
    }
    if (!ok) av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    return frame;
}

/* Full-range 4:2:0 (what JPEG viewers assume) at the picture's own size. */
static AVPacket *poster_encode(const AVFrame *picture)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
    AVCodecContext *enc = codec ? avcodec_alloc_context3(codec) : NULL;
    AVFrame *yuv = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    struct SwsContext *sws =
        sws_getContext(picture->width, picture->height, picture->format, picture->width,
                       picture->height, AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
    gboolean ok = enc && yuv && pkt && sws;
    if (ok) {
        const int *coefs = sws_getCoefficients(SWS_CS_DEFAULT);
        gboolean src_full = picture->color_range == AVCOL_RANGE_JPEG;
        sws_setColorspaceDetails(sws, coefs, src_full, coefs, 1, 0, 1 << 16, 1 << 16);
        yuv->format = AV_PIX_FMT_YUV420P;
        yuv->width = picture->width;
        yuv->height = picture->height;
        yuv->color_range = AVCOL_RANGE_JPEG;
        ok = av_frame_get_buffer(yuv, 0) >= 0;
    }
    if (ok) {
        sws_scale(sws, (const uint8_t *const *)picture->data, picture->linesize, 0, picture->height,
                  yuv->data, yuv->linesize);
        enc->width = picture->width;
        enc->height = picture->height;
        enc->pix_fmt = AV_PIX_FMT_YUV420P;
        enc->color_range = AVCOL_RANGE_JPEG;
        enc->time_base = (AVRational){1, 25};
        enc->flags |= AV_CODEC_FLAG_QSCALE;
        enc->global_quality = FF_QP2LAMBDA * POSTER_QSCALE;
        yuv->quality = enc->global_quality;
        yuv->pts = 0;
        ok = avcodec_open2(enc, codec, NULL) >= 0 && avcodec_send_frame(enc, yuv) >= 0 &&
             avcodec_receive_packet(enc, pkt) >= 0;
    }
    if (!ok) av_packet_free(&pkt);
    sws_freeContext(sws);
    av_frame_free(&yuv);
    avcodec_free_context(&enc);
    return pkt;
}

static void poster_make(gpointer data, gpointer unused)
{
    struct poster_job *j = data;
    AVFrame *picture = poster_decode(j);
    AVPacket *jpeg = picture ? poster_encode(picture) : NULL;
    if (jpeg) {
        GError *e = NULL;
        if (hls_write_atomic(j->path, (const char *)jpeg->data, (size_t)jpeg->size, &e) != SL_OK) {
            g_warning("cannot write %s: %s", j->path, e->message);
            g_error_free(e);
        }
    } else {
        g_info("%s: the keyframe did not decode; the poster stays as it was", j->path);
    }
    av_packet_free(&jpeg);
    av_frame_free(&picture);
    poster_job_free(j);
}

static void poster_request(struct flvts *t, const uint8_t *frame, size_t len)
{
    if (poster_pool == NULL) poster_pool = g_thread_pool_new(poster_make, NULL, 1, FALSE, NULL);
    if (poster_pool == NULL || g_thread_pool_unprocessed(poster_pool) >= POSTER_QUEUE_MAX) return;
    struct poster_job *j = g_new0(struct poster_job, 1);
    j->config = g_bytes_ref(t->config[FLVTS_VIDEO]);
    j->frame = g_memdup2(frame, len);
    j->len = len;
    j->path = g_build_filename(t->channel_dir, "poster.jpg", NULL);
    g_thread_pool_push(poster_pool, j, NULL);
}

void flvts_shutdown(void)
{
    if (poster_pool == NULL) return;
    g_thread_pool_free(poster_pool, FALSE, TRUE); /* the queued ones are short: let them run */
    poster_pool = NULL;
}

/* ---- the muxer ---- */

static gboolean stream_add(struct flvts *t, int kind)
{
    gsize n;
    const uint8_t *cfg = g_bytes_get_data(t->config[kind], &n);
    AVStream *st = avformat_new_stream(t->oc, NULL);
    if (st == NULL || n > INT_MAX - AV_INPUT_BUFFER_PADDING_SIZE) return FALSE;
    AVCodecParameters *par = st->codecpar;
    par->extradata = av_mallocz(n + AV_INPUT_BUFFER_PADDING_SIZE);
    if (par->extradata == NULL) return FALSE;
    memcpy(par->extradata, cfg, n);
    par->extradata_size = (int)n;
    st->time_base = (AVRational){1, 1000};
    if (kind == FLVTS_VIDEO) {
        par->codec_type = AVMEDIA_TYPE_VIDEO;
        par->codec_id = AV_CODEC_ID_H264;
        par->width = t->width;
        par->height = t->height;
    } else {
        static const int rates[] = {96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                    22050, 16000, 12000, 11025, 8000,  7350};
        int index = n >= 2 ? ((cfg[0] & 0x07) << 1) | (cfg[1] >> 7) : 4;
        int channels = n >= 2 ? (cfg[1] >> 3) & 0x0f : 2;
        par->codec_type = AVMEDIA_TYPE_AUDIO;
        par->codec_id = AV_CODEC_ID_AAC;
        par->sample_rate = index < (int)G_N_ELEMENTS(rates) ? rates[index] : 44100;
        av_channel_layout_default(&par->ch_layout, channels > 0 && channels < 8 ? channels : 2);
        t->audio_rate = par->sample_rate;
    }
    t->stream[kind] = st->index;
    return TRUE;
}

/* A muxer for the configs seen so far; its header is written into the first file it gets. */
static gboolean mux_build(struct flvts *t)
{
    if (t->oc) avformat_free_context(t->oc);
    t->oc = NULL;
    t->stale = FALSE;
    for (int k = 0; k < FLVTS_KINDS; k++) {
        t->stream[k] = -1;
        t->last_dts[k] = INT64_MIN;
    }
    if (avformat_alloc_output_context2(&t->oc, NULL, "mpegts", NULL) < 0) return FALSE;
    for (int k = 0; k < FLVTS_KINDS; k++)
        if (t->config[k] && !stream_add(t, k)) return FALSE;
    return TRUE;
}

static void fail_write(struct flvts *t, int averr)
{
    if (t->write_errno == 0)
        t->write_errno = averr < 0 && AVUNERROR(averr) < 4096 ? AVUNERROR(averr) : EIO;
    t->broken = TRUE;
}

static void segment_open(struct flvts *t, int64_t start_ms)
{
    if (t->broken) return;
    gboolean fresh = t->oc == NULL || t->stale;
    if (fresh && !mux_build(t)) {
        g_warning("%s: cannot set up the MPEG-TS muxer", t->dir);
        fail_write(t, AVERROR(ENOMEM));
        return;
    }
    t->path =
        g_strdup_printf("%s/%s_%05" G_GINT64_MODIFIER "d.ts", t->dir, t->prefix, t->next_index++);
    t->seg_start_ms = start_ms;
    t->end_ms = start_ms;
    int rc = avio_open2(&t->oc->pb, t->path, AVIO_FLAG_WRITE, NULL, NULL);
    if (rc >= 0 && fresh) {
        rc = avformat_write_header(t->oc, NULL);
    } else if (rc >= 0) { /* players need PAT/PMT at the head of every file */
        rc = av_opt_set(t->oc->priv_data, "mpegts_flags", "+resend_headers", 0);
    }
    if (rc < 0) {
        char text[AV_ERROR_MAX_STRING_SIZE];
        g_warning("cannot write %s: %s", t->path, av_make_error_string(text, sizeof text, rc));
        fail_write(t, rc);
    }
}

/* Ends the open segment at end_ms: listed if it was written whole, else removed and reported. */
static void segment_close(struct flvts *t, int64_t end_ms)
{
    if (t->path == NULL) return;
    if (t->oc->pb) {
        if (t->write_errno == 0) {
            av_write_frame(t->oc, NULL); /* the PES the muxer still holds belong to this file */
            avio_flush(t->oc->pb);
            if (t->oc->pb->error < 0) fail_write(t, t->oc->pb->error);
        }
        int rc = avio_closep(&t->oc->pb);
        if (rc < 0) fail_write(t, rc);
    }
    char *path = t->path;
    t->path = NULL;
    if (t->write_errno) { /* a segment with a hole must not be listed */
        int err = t->write_errno;
        g_unlink(path);
        t->write_errno = 0;
        if (t->ev->write_failed) t->ev->write_failed(err, t->user);
    } else {
        struct flvts_segment seg = {
            .location = path, .start_ms = t->seg_start_ms, .end_ms = MAX(end_ms, t->seg_start_ms)};
        t->ev->segment(&seg, t->user);
    }
    g_free(path);
}

/* ---- frames ---- */

/* Without VUI timing in the SPS: the frame rate measured over the first frames, snapped to the
 * usual integer and NTSC rates (FLV carries milliseconds: 29.97 arrives as 33 and 34 ms steps,
 * so 90 frames tell it from 30 within ±1 ms). */
static void measure_fps(struct flvts *t, int64_t dts)
{
    if (t->fps_n > 0) return;
    if (t->fps_frames++ == 0) {
        t->fps_first_dts = dts;
        return;
    }
    if (t->fps_frames < FPS_SAMPLE_FRAMES || dts <= t->fps_first_dts) return;
    double fps = (double)(t->fps_frames - 1) * 1000.0 / (double)(dts - t->fps_first_dts);
    double whole = round(fps), ntsc = round(fps * 1.001);
    if (fabs(fps - whole) < whole * 0.0004) {
        t->fps_n = (int)whole;
        t->fps_d = 1;
    } else if (fabs(fps - ntsc / 1.001) < ntsc * 0.0004) {
        t->fps_n = (int)ntsc * 1000;
        t->fps_d = 1001;
    } else {
        t->fps_n = (int)round(fps * 1000);
        t->fps_d = 1000;
    }
}

static void config_update(struct flvts *t, int kind, const uint8_t *cfg, size_t len)
{
    GBytes *b = g_bytes_new(cfg, len);
    if (t->config[kind] && g_bytes_equal(b, t->config[kind])) {
        g_bytes_unref(b);
        return;
    }
    if (t->config[kind]) g_bytes_unref(t->config[kind]);
    t->config[kind] = b;
    if (kind == FLVTS_VIDEO) {
        if (!ladder_source_size(cfg, len, &t->width, &t->height)) t->width = t->height = 0;
        if (!ladder_source_rate(cfg, len, &t->fps_n, &t->fps_d)) t->fps_n = t->fps_d = 0;
    }
    if (t->oc) t->stale = TRUE; /* a new muxer from the next cut */
}

static void frame_write(struct flvts *t, int kind, int64_t dts, int64_t pts, gboolean key,
                        const uint8_t *p, size_t n)
{
    if (t->write_errno || t->stream[kind] < 0 || n > INT_MAX) return;
    /* the muxer refuses a timestamp that does not advance; the ingest already rebased jumps */
    if (t->last_dts[kind] != INT64_MIN && dts <= t->last_dts[kind]) dts = t->last_dts[kind] + 1;
    if (pts < dts) pts = dts;
    t->last_dts[kind] = dts;
    AVStream *st = t->oc->streams[t->stream[kind]];
    AVPacket *pkt = t->pkt;
    if (av_new_packet(pkt, (int)n) < 0) return;
    memcpy(pkt->data, p, n);
    pkt->stream_index = st->index;
    pkt->dts = av_rescale_q(dts, (AVRational){1, 1000}, st->time_base);
    pkt->pts = av_rescale_q(pts, (AVRational){1, 1000}, st->time_base);
    if (key) pkt->flags |= AV_PKT_FLAG_KEY;
    int rc = av_write_frame(t->oc, pkt);
    av_packet_unref(pkt);
    if (rc < 0 && t->oc->pb && t->oc->pb->error < 0) {
        char text[AV_ERROR_MAX_STRING_SIZE];
        g_warning("cannot write %s: %s", t->path, av_make_error_string(text, sizeof text, rc));
        fail_write(t, t->oc->pb->error);
    }
}

void flvts_push(struct flvts *t, uint8_t type, uint32_t ts_ms, const uint8_t *data, size_t len)
{
    if (t->finished || t->broken) return;
    int kind = type == 9 ? FLVTS_VIDEO : FLVTS_AUDIO;
    gboolean video = kind == FLVTS_VIDEO;
    if ((type != 8 && type != 9) || len < (video ? 5u : 2u)) return;
    if (video ? (data[0] & 0x0f) != 7 : (data[0] >> 4) != 10) return; /* H.264 and AAC only */
    size_t head = video ? 5 : 2;
    if (data[1] == 0) {
        config_update(t, kind, data + head, len - head);
        return;
    }
    if ((video && data[1] != 1) || t->config[kind] == NULL || len == head) return;
    int64_t dts = ts_ms, pts = dts;
    gboolean key = !video || (data[0] >> 4) == 1;
    if (video) { /* composition time: a signed 24-bit offset */
        int32_t cts = (int32_t)((uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 | data[4]);
        if (cts & 0x800000) cts -= 0x1000000;
        pts = dts + cts;
    }
    /* a segment starts at a video keyframe, or at any audio frame of an audio-only stream */
    gboolean boundary = video ? key : t->config[FLVTS_VIDEO] == NULL;
    if (t->path == NULL) {
        if (!boundary) return;
        segment_open(t, pts);
    } else if (boundary &&
               (t->stale || pts - t->seg_start_ms >= t->segment_ms - FLVTS_CUT_SLACK_MS)) {
        segment_close(t, pts);
        segment_open(t, pts);
    }
    int64_t prev_dts = t->last_dts[kind];
    if (t->path && t->write_errno == 0)
        frame_write(t, kind, dts, pts, key, data + head, len - head);
    if (t->write_errno) { /* say so now: the owner ends the stream rather than list a hole */
        segment_close(t, t->end_ms);
        return;
    }
    if (t->path == NULL) return;
    int64_t duration;
    if (video) {
        measure_fps(t, dts);
        if (prev_dts != INT64_MIN && dts > prev_dts) t->last_video_delta = dts - prev_dts;
        duration = t->fps_n > 0 ? (int64_t)t->fps_d * 1000 / t->fps_n : t->last_video_delta;
    } else {
        duration = t->audio_rate > 0 ? 1024 * 1000 / t->audio_rate : 0;
    }
    t->end_ms = MAX(t->end_ms, pts + duration);
    if (video && key && t->poster_ms > 0 &&
        (t->last_poster_ms == INT64_MIN || pts - t->last_poster_ms >= t->poster_ms)) {
        t->last_poster_ms = pts;
        poster_request(t, data + head, len - head);
    }
}

/* ---- public ---- */

struct flvts *flvts_new(const struct flvts_config *cfg, const struct flvts_events *ev, void *user)
{
    struct flvts *t = g_new0(struct flvts, 1);
    t->channel_dir = g_strdup(cfg->channel_dir);
    t->dir = g_build_filename(cfg->channel_dir, cfg->output, NULL);
    t->prefix = g_strdup(cfg->prefix);
    t->next_index = cfg->first_index;
    t->segment_ms = cfg->segment_ms;
    t->poster_ms = cfg->poster_ms;
    t->last_poster_ms = INT64_MIN;
    t->ev = ev;
    t->user = user;
    t->pkt = av_packet_alloc();
    av_log_set_level(AV_LOG_ERROR); /* libav* warnings are not ours to print */
    for (int k = 0; k < FLVTS_KINDS; k++) {
        t->stream[k] = -1;
        t->last_dts[k] = INT64_MIN;
    }
    g_mkdir_with_parents(t->dir, 0755);
    return t;
}

void flvts_finish(struct flvts *t)
{
    if (t->finished) return;
    t->finished = TRUE;
    segment_close(t, t->end_ms);
}

void flvts_free(struct flvts *t)
{
    if (t == NULL) return;
    if (t->oc) {
        if (t->oc->pb) avio_closep(&t->oc->pb);
        avformat_free_context(t->oc);
    }
    if (t->path) g_unlink(t->path); /* stopped mid-segment (shutdown): never listed */
    g_free(t->path);
    av_packet_free(&t->pkt);
    for (int k = 0; k < FLVTS_KINDS; k++)
        if (t->config[k]) g_bytes_unref(t->config[k]);
    g_free(t->channel_dir);
    g_free(t->dir);
    g_free(t->prefix);
    g_free(t);
}

void flvts_video_info(const struct flvts *t, int *width, int *height, int *fps_n, int *fps_d)
{
    *width = t->width;
    *height = t->height;
    *fps_n = t->fps_n;
    *fps_d = t->fps_d;
}
