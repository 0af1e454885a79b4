/* chat: the WebSocket hub of api.md (GET /ws, subprotocol silklive.v1): rooms per channel,
 * fan-out, history and recovery, presence, chat rules and moderation, scale-out over Redis. */
#ifndef SL_CHAT_H
#define SL_CHAT_H

#include "core/core.h"

/* The module, for sl_server_add_module. Its config section is [chat]:
 * rate_messages (3) per rate_window_ms (2000): the per-user token bucket of chat messages;
 * history (50): events a plain join replays; queue_frames (256) and queue_bytes (1048576): a
 * connection's send queue, past which it is a slow consumer; idle_timeout_s (120): a connection
 * that sends nothing, not even a pong, for that long is closed; frame_rate (20): frames per
 * second one connection may send, in bursts of twice that; socket_sndbuf (0: the kernel's own
 * autotuning): a fixed kernel send buffer per connection, so a peer that stops reading is cut
 * off once its queue fills rather than after the kernel buffered up to megabytes for it. */
extern const struct sl_module chat_module;

#endif
