/* internal: the pieces of transcode: the HLS playlist model (pure, tested on its own) and one
 * GStreamer remux pipeline per publish session. */
#ifndef TRANSCODE_INTERNAL_H
#define TRANSCODE_INTERNAL_H

#include "core/core.h"
#include "room/room.h"

#include <stdint.h>

/* ---- media playlist (hls_playlist.c) ---- */

struct hls_segment {
    char *uri; /* owned; relative to the playlist */
    double duration;
    int64_t pdt_ms;
    gboolean discontinuity;
};

struct hls_playlist {
    GQueue segments; /* struct hls_segment*, oldest first, at most window */
    GQueue retired;  /* uris (owned) out of the window but kept on disk for slow players */
    int window;
    int target_s;          /* EXT-X-TARGETDURATION, never decreases */
    int64_t media_seq;     /* sequence number of the first listed segment */
    int64_t disc_seq;      /* EXT-X-DISCONTINUITY-SEQUENCE */
    gboolean pending_disc; /* the next segment starts after a discontinuity */
    gboolean ended;
    gboolean recording; /* every segment stays listed: EVENT while live, VOD once ended */
};

/* window <= 0: a recording. */
void hls_playlist_init(struct hls_playlist *p, int window, int target_s);
void hls_playlist_clear(struct hls_playlist *p);
/* Append a finished segment. Returns the uri of a segment now old enough to delete (caller
 * g_frees it), or NULL. */
char *hls_playlist_append(struct hls_playlist *p, const char *uri, double duration, int64_t pdt_ms);
/* The next segment follows a gap (a publisher reconnected, a pipeline was rebuilt). */
void hls_playlist_discontinuity(struct hls_playlist *p);
void hls_playlist_end(struct hls_playlist *p);
/* Sequence number the next appended segment gets. */
int64_t hls_playlist_next_seq(const struct hls_playlist *p);
/* The playlist text (caller frees with g_string_free). */
GString *hls_playlist_render(const struct hls_playlist *p);
/* Write text to path atomically (temp file + rename), so players never read half a playlist. */
int hls_write_atomic(const char *path, const char *text, size_t len, GError **err);
/* hls_write_atomic of text (consumed) to dir/name; a failure is logged, players keep the old. */
void hls_write_text(const char *channel, const char *dir, const char *name, GString *text);

/* ---- pipeline (pipeline.c) ---- */

typedef struct remux remux;

#define REMUX_SOURCE      "source" /* output 0: the publisher's own H.264, remuxed */
#define REMUX_MAX_OUTPUTS 8

/* A rung of the ladder: a rendition transcoded from the source. */
struct remux_rung {
    char name[16]; /* "720p": also the directory and the playlist's name */
    int width, height, kbps;
};

struct remux_config {
    const char *dir;    /* the channel's media dir; output N writes <dir>/<name>/ */
    const char *prefix; /* segment file prefix, unique per pipeline */
    int64_t first_index, segment_ns;
    const struct remux_rung *rungs; /* transcoded outputs 1..n_rungs */
    int n_rungs;
    const char *preset;         /* x264 speed preset */
    int64_t poster_interval_ns; /* <dir>/poster.jpg from a keyframe this often; 0: none */
};

struct remux_segment {
    int output;
    char *location;           /* owned */
    int64_t start_ns, end_ns; /* running time; the same instants in every output */
    int64_t media_start_ms;   /* where it starts on the publisher's clock (FLV timestamps) */
};

struct remux_output_info {
    char name[16];
    int width, height, kbps; /* size from the output's own caps, 0 until known */
    char profile[24], level[8];
    int fps_n, fps_d; /* the source's frame rate */
};

struct remux_events {
    /* on the loop: a segment file is complete (the struct is borrowed) */
    void (*segment)(remux *r, const struct remux_segment *seg, void *user);
    /* on the loop: every output ended (after EOS) or the pipeline failed (error set) */
    void (*done)(remux *r, const char *error, void *user);
    /* on the loop: a segment file could not be written (errno err) and was not listed */
    void (*write_failed)(remux *r, int err, void *user);
};

/* SL_OK when every element the pipeline needs is installed, else SL_ERR naming the package. */
int remux_check(gboolean ladder, gboolean poster, GError **err);
/* appsrc (FLV) → flvdemux → h264parse/aacparse → per output mpegtsmux → appsink writing
 * <dir>/<output>/<prefix>_<index>.ts from first_index, cutting at keyframes after segment_ns;
 * rungs through slh264dec → slswscale → x264enc. NULL with *err when an element is missing.
 * A session without rungs has no pipeline: flvts remuxes it on the loop, and its callbacks come
 * from within remux_push and remux_finish. */
remux *remux_new(const struct remux_config *cfg, const struct remux_events *ev, void *user,
                 GError **err);
/* Push one FLV tag (type 8 audio, 9 video). SL_OK, SL_ELIMIT when the pipeline is behind and
 * the tag was dropped, SL_ERR when the pipeline is gone. */
int remux_push(remux *r, uint8_t type, uint32_t ts_ms, const uint8_t *data, size_t len);
/* End of stream: the last segments are finished, then done() is called. */
void remux_finish(remux *r);
/* Stop at once (shutdown); no more callbacks. */
void remux_free(remux *r);
/* Shutdown: frees every remux in rs (and empties it) like remux_free, but waits at most
 * timeout_ms in all for their streaming threads to stop; pipelines that take longer are left to
 * stop by themselves on a thread of their own. Returns how many were left. */
int remux_free_all(GPtrArray *rs, guint timeout_ms);
int remux_outputs(const remux *r);
void remux_output_info(remux *r, int output, struct remux_output_info *info);
/* Raw frames the rungs' encoders could not take since the last call (they were dropped). */
int remux_take_overruns(remux *r);

/* ---- passthrough remuxer (flvts.c): FLV tags → MPEG-TS segments with libavformat ---- */

struct flvts;

struct flvts_config {
    const char *channel_dir; /* poster.jpg goes here */
    const char *output;      /* segments go to <channel_dir>/<output>/<prefix>_<index>.ts */
    const char *prefix;
    int64_t first_index, segment_ms;
    int64_t poster_ms; /* a poster from a keyframe this often; 0: none */
};

struct flvts_segment {
    const char *location;
    int64_t start_ms, end_ms; /* on the publisher's clock (FLV timestamps) */
};

struct flvts_events {
    /* a segment file is complete (called from flvts_push or flvts_finish) */
    void (*segment)(const struct flvts_segment *seg, void *user);
    /* a segment file could not be written (errno err): it was removed, no more are opened */
    void (*write_failed)(int err, void *user);
};

struct flvts *flvts_new(const struct flvts_config *cfg, const struct flvts_events *ev, void *user);
/* One FLV tag body (type 8 audio, 9 video); anything but H.264 and AAC is ignored. */
void flvts_push(struct flvts *t, uint8_t type, uint32_t ts_ms, const uint8_t *data, size_t len);
/* End of stream: the last segment is closed and reported. */
void flvts_finish(struct flvts *t);
void flvts_free(struct flvts *t);
/* The source video's size (0 until known) and frame rate (0 until measured). */
void flvts_video_info(const struct flvts *t, int *width, int *height, int *fps_n, int *fps_d);
/* Shutdown: wait for the posters being made. */
void flvts_shutdown(void);

/* ---- libswscale scaler element (swscale.c) ---- */
/* Registers "slswscale" with GStreamer (after gst_init); FALSE if it cannot. */
gboolean transcode_swscale_register(void);

/* ---- libavcodec H.264 decoder element (h264dec.c) ---- */
/* Registers "slh264dec" with GStreamer (after gst_init); FALSE if it cannot. */
gboolean transcode_h264dec_register(void);

/* ---- ladder (ladder.c) ---- */

/* Parse "720p:2500,480p:1200,360p:700" (height p : kbps). FALSE with *err naming the bad part. */
gboolean ladder_parse(const char *spec, GArray *rungs, GError **err);
/* The rungs of `ladder` (struct remux_rung) that fit a source of width x height: a rung's
 * "height" is the short side (so portrait sources keep their orientation), at most the source's,
 * the long side keeping the aspect, both even. Returns how many were written. */
int ladder_fit(const GArray *ladder, int width, int height, struct remux_rung *out, int max);
/* Width and height from an FLV AVC sequence header (AVCDecoderConfigurationRecord), cropping
 * applied. FALSE when it holds no parsable SPS. */
gboolean ladder_source_size(const uint8_t *record, size_t len, int *width, int *height);
/* The frame rate an SPS's VUI timing declares, reduced. FALSE when it declares none. */
gboolean ladder_source_rate(const uint8_t *record, size_t len, int *fps_n, int *fps_d);

/* ---- highlight clips (highlight.c) ---- */

struct highlight_input {
    char *path;     /* owned; a recorded segment */
    int64_t pdt_ms; /* program-date-time of its first frame */
};

/* Remux the part [start_pdt, end_pdt] of the segments (in order) into one MP4 at path, from the
 * keyframe at or before start_pdt; clip_start and clip_end tell what the clip covers. SL_ERR with
 * *err set on failure. Blocking: call it on a worker thread. */
int highlight_cut(GPtrArray *inputs, int64_t start_pdt, int64_t end_pdt, const char *path,
                  int64_t *clip_start, int64_t *clip_end, GError **err);

/* ---- recording and highlights of a broadcast (record.c) ---- */

struct recording;
/* A broadcast began: its recording goes to <channel_dir>/vod/<started_at_ms>/, it is listed in
 * Redis, and the room's pin/unpin events are followed for highlight clips. */
struct recording *recording_start(sl_server *srv, const char *channel, const char *channel_dir,
                                  int64_t started_at_ms, int target_s);
/* A source segment was listed: keep it (hard link) in the recording. */
void recording_segment(struct recording *rec, const char *path, double duration, int64_t pdt_ms,
                       gboolean discontinuity);
/* The broadcast ended (NULL: nothing). The VOD playlist is closed, an open pin becomes a clip;
 * the recording frees itself once its clips are cut. */
void recording_end(struct recording *rec);
/* GET /api/v1/channels/{id}/broadcasts and .../highlights; the pool that cuts clips. */
void record_routes(sl_server *srv);
/* Wait for the clips being cut and announce them (at stop, while Redis is still connected). */
void record_shutdown(void);

#endif
