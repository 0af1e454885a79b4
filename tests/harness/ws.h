/* ws: a small blocking RFC 6455 client for the tests: the opening handshake (checked), masked
 * client frames, server frames read whole, pings answered, close codes reported. */
#ifndef SL_TEST_WS_H
#define SL_TEST_WS_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;
typedef struct harness_ws harness_ws;

/* Connect to ws://127.0.0.1:port<path> offering subprotocol (may be NULL). Returns NULL when
 * the server does not answer 101 with a valid Sec-WebSocket-Accept (*status gets the HTTP
 * status when status is not NULL). */
harness_ws *harness_ws_connect(int port, const char *path, const char *protocol, int *status);
void harness_ws_free(harness_ws *ws);
/* One frame with opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong); FALSE on a send error. */
gboolean harness_ws_send_frame(harness_ws *ws, int opcode, const void *data, size_t len);
gboolean harness_ws_send(harness_ws *ws, const char *text);
/* The next text message (pings are answered on the way), parsed; NULL on timeout, close or a
 * message that is not JSON. */
struct json_t *harness_ws_recv(harness_ws *ws, int timeout_ms);
/* The next message whose "type" is type, skipping others; NULL on timeout or close. */
struct json_t *harness_ws_expect(harness_ws *ws, const char *type, int timeout_ms);
/* Waits for the server's close; returns its status code, 1005 when it had none, 1006 when the
 * connection dropped without a close frame, -1 on timeout. */
int harness_ws_wait_close(harness_ws *ws, int timeout_ms);
/* The raw socket, for tests that stop reading. */
int harness_ws_fd(const harness_ws *ws);

#endif
