/* ingest: the RTMP listener. Hosts publish to rtmp://HOST:PORT/live/<stream_key>; the key is
 * checked against the channel's current one and the stream's FLV tags go to transcode. */
#ifndef SL_INGEST_H
#define SL_INGEST_H

#include "core/core.h"

/* The module, for sl_server_add_module; it needs transcode enabled on the same node. Config
 * section [ingest]: idle_timeout_s (30: a publisher that sends nothing this long is dropped),
 * max_connections (1000). */
extern const struct sl_module ingest_module;

#endif
