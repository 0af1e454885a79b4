/* transcode: turns a live channel's FLV tags into HLS under <media-dir>/<channel>/ and keeps the
 * channel's live state (Redis, room events) through publisher reconnects. */
#ifndef SL_TRANSCODE_H
#define SL_TRANSCODE_H

#include "core/core.h"

#include <stdint.h>

/* The module, for sl_server_add_module. Config section [transcode]: segment_s (2), window (6
 * segments in the live playlist), grace_s (10: a publisher that reconnects within it continues
 * the playlist), retention_s (300: an ended stream's files are removed after it). */
extern const struct sl_module transcode_module;

typedef struct transcode_stream transcode_stream;

/* A publisher went live on channel. Within the channel's grace period the playlist continues
 * after an #EXT-X-DISCONTINUITY; otherwise a new one starts. NULL with *err when the channel
 * already has a stream or the pipeline cannot be built. The caller owns the stream until
 * transcode_stream_close. */
transcode_stream *transcode_stream_open(sl_server *srv, const char *channel, GError **err);
/* One FLV tag body: type 8 (audio) or 9 (video), timestamp in ms on a monotonic timeline. Tags
 * of codecs HLS cannot carry here (anything but H.264 and AAC) are dropped and counted. SL_ERR
 * when the stream cannot go on (its media cannot be written): the caller closes the publisher
 * and then the stream, which ends the channel's playlists at once, without a grace period. */
int transcode_stream_push(transcode_stream *s, uint8_t type, uint32_t ts_ms, const uint8_t *data,
                          size_t len);
/* The publisher is gone: the last segment is finished and the grace period starts. The stream
 * is freed by transcode. */
void transcode_stream_close(transcode_stream *s);

#endif
