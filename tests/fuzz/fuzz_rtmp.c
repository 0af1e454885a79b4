/* fuzz_rtmp: arbitrary bytes into a whole RTMP session (handshake, chunk stream, AMF0 commands,
 * media) must never crash, read past them or grow without bound; the input is also replayed in
 * splits chosen by its first byte, so the resumable parsers see every boundary. */
#include "ingest/internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_publish(rtmp_session *s, const char *app, const char *name, void *user)
{
    rtmp_session_publish_result(s, name[0] != 'x', "NetStream.Publish.BadName", "refused");
}
static void on_media(rtmp_session *s, uint8_t type, uint32_t ts, const uint8_t *d, size_t n,
                     void *user)
{
    if (n == 0 || (type != 8 && type != 9)) __builtin_trap();
    volatile uint8_t sink = d[n - 1]; /* the whole payload is readable */
    (void)sink;
}
static void on_unpublish(rtmp_session *s, void *user)
{
}
static const struct rtmp_session_ops ops = {
    .publish = on_publish, .media = on_media, .unpublish = on_unpublish};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    data++, size--;
    /* a valid handshake first, so the bytes reach the chunk stream and commands */
    uint8_t hs[1 + 2 * RTMP_HANDSHAKE_SIZE];
    hs[0] = 3;
    memset(hs + 1, 0, sizeof hs - 1);
    rtmp_session *s = rtmp_session_new(&ops, NULL);
    rtmp_session_feed(s, hs, sizeof hs);
    for (size_t pos = 0; pos < size; pos += step) {
        size_t n = size - pos < step ? size - pos : step;
        if (rtmp_session_feed(s, data + pos, n) != SL_OK) break;
        GByteArray *out = rtmp_session_output(s);
        g_byte_array_set_size(out, 0); /* as if sent */
    }
    rtmp_session_free(s);
    /* and the same bytes as a handshake */
    s = rtmp_session_new(&ops, NULL);
    rtmp_session_feed(s, data, size);
    rtmp_session_free(s);
    return 0;
}
