/* rtmp_chunk: RTMP's chunk stream, read as a resumable state machine over whatever bytes arrived
 * (every chunk format, extended timestamps, interleaved chunk streams) and written for replies. */
#include "internal.h"

#include <string.h>

enum { CS_HEADER, CS_PAYLOAD };

struct rtmp_chunk_stream {
    gboolean known;     /* a full header was seen on this chunk stream */
    gboolean extended;  /* the last header carried an extended timestamp */
    uint32_t timestamp; /* of the current (or last) message */
    uint32_t delta;
    uint32_t msg_len;
    uint8_t type;
    uint32_t stream_id;
    uint8_t *buf; /* owned; the message being assembled, msg_len bytes */
    size_t have;
};

static const size_t header_len[4] = {11, 7, 3, 0};

static void stream_free(gpointer data)
{
    struct rtmp_chunk_stream *cs = data;
    g_free(cs->buf);
    g_free(cs);
}

void rtmp_chunk_parser_init(struct rtmp_chunk_parser *p, rtmp_message_cb cb, void *user)
{
    memset(p, 0, sizeof *p);
    p->state = CS_HEADER;
    p->hdr_need = 1;
    p->chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
    p->streams = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, stream_free);
    p->on_message = cb;
    p->user = user;
}

void rtmp_chunk_parser_clear(struct rtmp_chunk_parser *p)
{
    if (p->streams) g_hash_table_unref(p->streams);
    p->streams = NULL;
}

int rtmp_chunk_set_size(struct rtmp_chunk_parser *p, uint32_t size)
{
    size &= 0x7fffffff; /* the top bit is reserved */
    if (size < 1 || size > RTMP_MAX_CHUNK_SIZE) return SL_EPROTO;
    p->chunk_size = size;
    return SL_OK;
}

static void drop_partial(struct rtmp_chunk_parser *p, struct rtmp_chunk_stream *cs)
{
    if (cs->buf) p->pending -= cs->msg_len;
    g_free(cs->buf);
    cs->buf = NULL;
    cs->have = 0;
}

void rtmp_chunk_abort(struct rtmp_chunk_parser *p, uint32_t csid)
{
    struct rtmp_chunk_stream *cs = g_hash_table_lookup(p->streams, GUINT_TO_POINTER(csid));
    if (cs) drop_partial(p, cs);
}

static uint32_t be(const uint8_t *b, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

/* How many header bytes this chunk has, as far as the bytes so far tell. */
static size_t header_need(const struct rtmp_chunk_parser *p, const struct rtmp_chunk_stream *cs,
                          size_t basic, int fmt, gboolean *ext)
{
    size_t n = basic + header_len[fmt];
    *ext = FALSE;
    if (p->hdr_have < n) return n;
    if (fmt < 3)
        *ext = be(p->hdr + basic, 3) == 0xffffff;
    else
        *ext = cs && cs->extended;
    return n + (*ext ? 4 : 0);
}

/* The whole header is in p->hdr: apply it to its chunk stream. */
static int header_apply(struct rtmp_chunk_parser *p, size_t basic, gboolean ext)
{
    uint32_t csid = p->csid;
    int fmt = p->fmt;
    const uint8_t *h = p->hdr + basic;
    struct rtmp_chunk_stream *cs = g_hash_table_lookup(p->streams, GUINT_TO_POINTER(csid));
    if (cs == NULL) {
        if (fmt >= 2) return SL_EPROTO; /* nothing to inherit the length and type from */
        if (g_hash_table_size(p->streams) >= RTMP_MAX_CHUNK_STREAMS) return SL_ELIMIT;
        cs = g_new0(struct rtmp_chunk_stream, 1);
        g_hash_table_insert(p->streams, GUINT_TO_POINTER(csid), cs);
    }
    uint32_t field = fmt < 3 ? be(h, 3) : 0;
    uint32_t extv = ext ? be(h + header_len[fmt], 4) : 0;
    if (fmt < 3 && cs->have > 0) return SL_EPROTO; /* a new header in the middle of a message */
    switch (fmt) {
    case 0:
        cs->timestamp = ext ? extv : field;
        cs->delta = cs->timestamp; /* a following fmt 3 message repeats it as its delta */
        cs->msg_len = be(h + 3, 3);
        cs->type = h[6];
        cs->stream_id =
            (uint32_t)h[7] | (uint32_t)h[8] << 8 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 24;
        break;
    case 1:
    case 2:
        cs->delta = ext ? extv : field;
        cs->timestamp += cs->delta;
        if (fmt == 1) {
            cs->msg_len = be(h + 3, 3);
            cs->type = h[6];
        }
        break;
    case 3:
        if (!cs->known) return SL_EPROTO;
        if (cs->have == 0) cs->timestamp += ext ? extv : cs->delta; /* a new message */
        break;
    }
    if (fmt < 3) cs->extended = ext;
    cs->known = TRUE;
    if (cs->msg_len > RTMP_MAX_MESSAGE_SIZE) return SL_ELIMIT;
    if (cs->have == 0 && cs->msg_len > 0) {
        if (p->pending + cs->msg_len > RTMP_MAX_PENDING) return SL_ELIMIT;
        cs->buf = g_try_malloc(cs->msg_len);
        if (cs->buf == NULL) return SL_ENOMEM;
        p->pending += cs->msg_len;
    }
    p->cur = cs;
    p->chunk_left = MIN(p->chunk_size, cs->msg_len - cs->have);
    return SL_OK;
}

static int deliver(struct rtmp_chunk_parser *p, struct rtmp_chunk_stream *cs)
{
    struct rtmp_message m = {
        .csid = p->csid,
        .type = cs->type,
        .stream_id = cs->stream_id,
        .timestamp = cs->timestamp,
        .payload = cs->buf,
        .len = cs->msg_len,
    };
    /* The callback may change the chunk size or drop other streams; this one's buffer is ours
     * until it returns. */
    uint8_t *buf = cs->buf;
    if (buf) p->pending -= cs->msg_len;
    cs->buf = NULL;
    cs->have = 0;
    int rc = p->on_message ? p->on_message(&m, p->user) : SL_OK;
    g_free(buf);
    return rc;
}

int rtmp_chunk_parse(struct rtmp_chunk_parser *p, const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        if (p->state == CS_HEADER) {
            /* collect byte by byte until the header is complete: it is at most 18 bytes */
            p->hdr[p->hdr_have++] = buf[pos++];
            uint8_t b0 = p->hdr[0];
            size_t basic = (b0 & 0x3f) == 0 ? 2 : (b0 & 0x3f) == 1 ? 3 : 1;
            if (p->hdr_have < basic) continue;
            p->fmt = b0 >> 6;
            p->csid = basic == 1   ? (b0 & 0x3fu)
                      : basic == 2 ? 64u + p->hdr[1]
                                   : 64u + p->hdr[1] + 256u * p->hdr[2];
            if (p->csid < 2) return SL_EPROTO; /* 0 and 1 only exist as escapes */
            struct rtmp_chunk_stream *cs =
                g_hash_table_lookup(p->streams, GUINT_TO_POINTER(p->csid));
            gboolean ext;
            p->hdr_need = header_need(p, cs, basic, p->fmt, &ext);
            if (p->hdr_have < p->hdr_need) continue;
            int rc = header_apply(p, basic, ext);
            p->hdr_have = 0;
            if (rc != SL_OK) return rc;
            if (p->chunk_left == 0) { /* an empty message is complete at its header */
                if (p->cur->msg_len == 0) {
                    rc = deliver(p, p->cur);
                    if (rc != SL_OK) return rc;
                }
                continue;
            }
            p->state = CS_PAYLOAD;
            continue;
        }
        struct rtmp_chunk_stream *cs = p->cur;
        size_t n = MIN(len - pos, p->chunk_left);
        memcpy(cs->buf + cs->have, buf + pos, n);
        cs->have += n;
        pos += n;
        p->chunk_left -= n;
        if (p->chunk_left > 0) continue;
        p->state = CS_HEADER;
        if (cs->have == cs->msg_len) {
            int rc = deliver(p, cs);
            if (rc != SL_OK) return rc;
        }
    }
    return SL_OK;
}

static void put_basic(GByteArray *out, int fmt, uint32_t csid)
{
    uint8_t b[3];
    if (csid < 64) {
        b[0] = (uint8_t)(fmt << 6 | csid);
        g_byte_array_append(out, b, 1);
    } else if (csid < 320) {
        b[0] = (uint8_t)(fmt << 6), b[1] = (uint8_t)(csid - 64);
        g_byte_array_append(out, b, 2);
    } else {
        b[0] = (uint8_t)(fmt << 6 | 1), b[1] = (uint8_t)((csid - 64) & 0xff);
        b[2] = (uint8_t)((csid - 64) >> 8);
        g_byte_array_append(out, b, 3);
    }
}

void rtmp_chunk_write(GByteArray *out, uint32_t csid, uint8_t type, uint32_t stream_id,
                      uint32_t timestamp, const uint8_t *payload, size_t len, uint32_t chunk_size)
{
    gboolean ext = timestamp >= 0xffffff;
    uint32_t field = ext ? 0xffffff : timestamp;
    uint8_t h[11] = {(uint8_t)(field >> 16),
                     (uint8_t)(field >> 8),
                     (uint8_t)field,
                     (uint8_t)(len >> 16),
                     (uint8_t)(len >> 8),
                     (uint8_t)len,
                     type,
                     (uint8_t)stream_id,
                     (uint8_t)(stream_id >> 8),
                     (uint8_t)(stream_id >> 16),
                     (uint8_t)(stream_id >> 24)};
    uint8_t e[4] = {(uint8_t)(timestamp >> 24), (uint8_t)(timestamp >> 16),
                    (uint8_t)(timestamp >> 8), (uint8_t)timestamp};
    put_basic(out, 0, csid);
    g_byte_array_append(out, h, sizeof h);
    if (ext) g_byte_array_append(out, e, 4);
    size_t pos = 0;
    do {
        size_t n = MIN(chunk_size, len - pos);
        if (pos > 0) {
            put_basic(out, 3, csid);
            if (ext) g_byte_array_append(out, e, 4);
        }
        g_byte_array_append(out, payload + pos, (guint)n);
        pos += n;
    } while (pos < len);
}
