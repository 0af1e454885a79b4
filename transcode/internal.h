/* internal: the pieces of transcode: the HLS playlist model (pure, tested on its own) and one
 * GStreamer remux pipeline per publish session. */
#ifndef TRANSCODE_INTERNAL_H
#define TRANSCODE_INTERNAL_H

#include "core/core.h"

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
};

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

/* ---- remux pipeline (pipeline.c) ---- */

typedef struct remux remux;

struct remux_segment {
    char *location;           /* owned */
    int64_t start_ns, end_ns; /* running time */
};

struct remux_events {
    /* on the loop: a segment file is complete (the struct is borrowed) */
    void (*segment)(remux *r, const struct remux_segment *seg, void *user);
    /* on the loop: the pipeline ended (after EOS) or failed (error set) */
    void (*done)(remux *r, const char *error, void *user);
};

/* appsrc (FLV) → flvdemux → h264parse/aacparse → mpegtsmux → multifilesink writing
 * <dir>/<prefix>_<index>.ts from first_index, cutting at keyframes after segment_ns.
 * NULL with *err when an element is missing. */
remux *remux_new(const char *dir, const char *prefix, int64_t first_index, int64_t segment_ns,
                 const struct remux_events *ev, void *user, GError **err);
/* Push one FLV tag (type 8 audio, 9 video). SL_OK, SL_ELIMIT when the pipeline is behind and
 * the tag was dropped, SL_ERR when the pipeline is gone. */
int remux_push(remux *r, uint8_t type, uint32_t ts_ms, const uint8_t *data, size_t len);
/* End of stream: the last segment is finished, then done() is called. */
void remux_finish(remux *r);
/* Stop at once (shutdown); no more callbacks. */
void remux_free(remux *r);
/* Video size from the parser's caps, 0 until known. */
void remux_video_size(const remux *r, int *width, int *height);

#endif
