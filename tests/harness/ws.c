/* ws: the tests' WebSocket client (see ws.h). Blocking, one connection per object. */
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct harness_ws {
    int fd;
    GByteArray *in; /* received, not yet parsed */
    int close_code; /* 0 while open */
};

static gint64 now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

/* Read more bytes, waiting until deadline. FALSE on timeout or EOF. */
static gboolean fill(harness_ws *ws, gint64 deadline)
{
    gint64 left = deadline - now_ms();
    if (left < 0) left = 0;
    struct pollfd p = {.fd = ws->fd, .events = POLLIN};
    if (poll(&p, 1, (int)left) <= 0) return FALSE;
    uint8_t buf[65536];
    ssize_t n = recv(ws->fd, buf, sizeof buf, 0);
    if (n <= 0) {
        if (ws->close_code == 0) ws->close_code = 1006;
        return FALSE;
    }
    g_byte_array_append(ws->in, buf, (guint)n);
    return TRUE;
}

static gboolean send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return FALSE;
        p += w;
        n -= (size_t)w;
    }
    return TRUE;
}

harness_ws *harness_ws_connect(int port, const char *path, const char *protocol, int *status)
{
    if (status) *status = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    uint8_t nonce[16];
    for (int i = 0; i < 16; i++)
        nonce[i] = (uint8_t)g_random_int();
    char *key = g_base64_encode(nonce, sizeof nonce);
    GString *req = g_string_new(NULL);
    g_string_append_printf(req,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n",
                           path, port, key);
    if (protocol) g_string_append_printf(req, "Sec-WebSocket-Protocol: %s\r\n", protocol);
    g_string_append(req, "\r\n");
    harness_ws *ws = g_new0(harness_ws, 1);
    ws->fd = fd;
    ws->in = g_byte_array_new();
    gboolean ok = send_all(fd, (const uint8_t *)req->str, req->len);
    g_string_free(req, TRUE);
    /* the response head */
    gint64 deadline = now_ms() + 5000;
    const uint8_t *end = NULL;
    while (ok &&
           (ws->in->len == 0 || (end = memmem(ws->in->data, ws->in->len, "\r\n\r\n", 4)) == NULL))
        ok = fill(ws, deadline);
    char *head = ok ? g_strndup((const char *)ws->in->data, (gsize)(end - ws->in->data)) : NULL;
    if (head) {
        g_byte_array_remove_range(ws->in, 0, (guint)(end + 4 - ws->in->data));
        int st = 0;
        if (sscanf(head, "HTTP/1.1 %d", &st) == 1 && status) *status = st;
        /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
        char *concat = g_strconcat(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", NULL);
        guint8 digest[20];
        gsize dlen = sizeof digest;
        GChecksum *sha = g_checksum_new(G_CHECKSUM_SHA1);
        g_checksum_update(sha, (const guchar *)concat, -1);
        g_checksum_get_digest(sha, digest, &dlen);
        g_checksum_free(sha);
        char *accept = g_base64_encode(digest, dlen);
        char *lower = g_ascii_strdown(head, -1);
        char *want = g_strdup_printf("sec-websocket-accept: %s", accept);
        char *want_lower = g_ascii_strdown(want, -1);
        ok = st == 101 && strstr(lower, want_lower) != NULL;
        if (ok && protocol) {
            char *proto = g_ascii_strdown(protocol, -1);
            char *line = g_strdup_printf("sec-websocket-protocol: %s", proto);
            ok = strstr(lower, line) != NULL;
            g_free(proto);
            g_free(line);
        }
        g_free(concat);
        g_free(accept);
        g_free(lower);
        g_free(want);
        g_free(want_lower);
        g_free(head);
    }
    g_free(key);
    if (!ok) {
        harness_ws_free(ws);
        return NULL;
    }
    return ws;
}

void harness_ws_free(harness_ws *ws)
{
    if (ws == NULL) return;
    close(ws->fd);
    g_byte_array_unref(ws->in);
    g_free(ws);
}

int harness_ws_fd(const harness_ws *ws)
{
    return ws->fd;
}

gboolean harness_ws_send_frame(harness_ws *ws, int opcode, const void *data, size_t len)
{
    GByteArray *f = g_byte_array_sized_new((guint)len + 14);
    uint8_t h[14];
    size_t hn = 0;
    h[hn++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[hn++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        h[hn++] = 0x80 | 126;
        h[hn++] = (uint8_t)(len >> 8);
        h[hn++] = (uint8_t)len;
    } else {
        h[hn++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hn++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = (uint8_t)g_random_int();
    memcpy(h + hn, mask, 4);
    hn += 4;
    g_byte_array_append(f, h, (guint)hn);
    for (size_t i = 0; i < len; i++) {
        uint8_t b = ((const uint8_t *)data)[i] ^ mask[i % 4];
        g_byte_array_append(f, &b, 1);
    }
    gboolean ok = send_all(ws->fd, f->data, f->len);
    g_byte_array_unref(f);
    return ok;
}

gboolean harness_ws_send(harness_ws *ws, const char *text)
{
    return harness_ws_send_frame(ws, 1, text, strlen(text));
}

/* One whole frame from the buffer: opcode, payload (g_free). 0 when more bytes are needed. */
static int take_frame(harness_ws *ws, int *opcode, char **payload, size_t *len)
{
    const uint8_t *p = ws->in->data;
    size_t n = ws->in->len;
    if (n < 2) return 0;
    size_t hl = 2;
    uint64_t pl = p[1] & 0x7f;
    if (pl == 126) {
        if (n < 4) return 0;
        pl = (uint64_t)p[2] << 8 | p[3];
        hl = 4;
    } else if (pl == 127) {
        if (n < 10) return 0;
        pl = 0;
        for (int i = 0; i < 8; i++)
            pl = pl << 8 | p[2 + i];
        hl = 10;
    }
    if (p[1] & 0x80) return -1; /* servers never mask */
    if (n < hl + pl) return 0;
    *opcode = p[0] & 0x0f;
    *payload = g_strndup((const char *)p + hl, (gsize)pl);
    *len = (size_t)pl;
    g_byte_array_remove_range(ws->in, 0, (guint)(hl + pl));
    return 1;
}

/* The next text payload (g_free), answering pings; NULL on timeout or close. */
static char *recv_text(harness_ws *ws, int timeout_ms)
{
    gint64 deadline = now_ms() + timeout_ms;
    for (;;) {
        int op = 0;
        char *payload = NULL;
        size_t len = 0;
        int r = take_frame(ws, &op, &payload, &len);
        if (r < 0) return NULL;
        if (r == 0) {
            if (ws->close_code || !fill(ws, deadline)) return NULL;
            continue;
        }
        if (op == 1) return payload;
        if (op == 9) harness_ws_send_frame(ws, 10, payload, len);
        if (op == 8) {
            ws->close_code = len >= 2 ? ((uint8_t)payload[0] << 8 | (uint8_t)payload[1]) : 1005;
            harness_ws_send_frame(ws, 8, payload, len >= 2 ? 2 : 0);
            g_free(payload);
            return NULL;
        }
        g_free(payload);
    }
}

json_t *harness_ws_recv(harness_ws *ws, int timeout_ms)
{
    char *t = recv_text(ws, timeout_ms);
    if (t == NULL) return NULL;
    json_t *j = json_loads(t, 0, NULL);
    g_free(t);
    return j;
}

json_t *harness_ws_expect(harness_ws *ws, const char *type, int timeout_ms)
{
    gint64 deadline = now_ms() + timeout_ms;
    for (;;) {
        gint64 left = deadline - now_ms();
        if (left <= 0) return NULL;
        json_t *j = harness_ws_recv(ws, (int)left);
        if (j == NULL) return NULL;
        const char *t = json_string_value(json_object_get(j, "type"));
        if (t && strcmp(t, type) == 0) return j;
        json_decref(j);
    }
}

int harness_ws_wait_close(harness_ws *ws, int timeout_ms)
{
    gint64 deadline = now_ms() + timeout_ms;
    while (ws->close_code == 0) {
        gint64 left = deadline - now_ms();
        if (left <= 0) return -1;
        char *t = recv_text(ws, (int)left);
        g_free(t);
    }
    return ws->close_code;
}
