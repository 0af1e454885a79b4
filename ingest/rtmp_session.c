/* rtmp_session: one publisher's RTMP conversation (handshake, protocol control, the NetConnection
 * and NetStream commands, metadata, audio/video) as bytes in → callbacks and reply bytes out. */
#include "internal.h"

#include <string.h>

#define OUR_CHUNK_SIZE  4096
#define OUR_WINDOW_SIZE 5000000
#define STREAM_ID       1 /* the one message stream a publisher gets */
#define CSID_CONTROL    2
#define CSID_COMMAND    3
#define CSID_STATUS     5

enum { PUB_IDLE, PUB_PENDING, PUB_LIVE, PUB_REFUSED };

struct rtmp_session {
    const struct rtmp_session_ops *ops;
    void *user;
    struct rtmp_handshake hs;
    gboolean handshaken;
    struct rtmp_chunk_parser chunks;
    GByteArray *out; /* owned; bytes to send */
    uint32_t out_chunk_size;
    uint32_t peer_window; /* acknowledge after this many bytes */
    uint64_t acked_at;
    gboolean connected;
    char *app;  /* owned */
    char *name; /* owned; the stream name asked for */
    double publish_txn;
    int pub;
    char *error; /* owned; why the session failed */
    struct rtmp_ts_rebase ts;
    struct rtmp_session_stats stats;
};

/* ---- timestamps ---- */

int rtmp_ts_rebase_apply(struct rtmp_ts_rebase *r, int track, uint32_t in, uint32_t *out)
{
    int rc = SL_OK;
    int64_t ext;
    if (!r->started) {
        r->started = TRUE;
        r->offset = -(int64_t)in;
    }
    if (r->seen[track]) /* unwrap the 32-bit clock relative to this track's last value */
        ext = r->last_in[track] + (int32_t)(in - (uint32_t)r->last_in[track]);
    else if (r->seen[!track])
        ext = r->last_in[!track] + (int32_t)(in - (uint32_t)r->last_in[!track]);
    else
        ext = in;
    int64_t o = ext + r->offset;
    if (r->seen[track]) {
        int64_t d = o - r->last_out[track];
        if (d < -RTMP_TS_MAX_GAP_MS || d > RTMP_TS_MAX_GAP_MS) {
            /* a jump (encoder restart, clock reset): continue right after the last frame */
            int64_t want = r->last_out[track] + r->step[track];
            r->offset += want - o;
            o = want;
            rc = SL_AGAIN;
        } else if (d < 0) { /* a small step back: hold the clock instead */
            o = r->last_out[track];
            rc = SL_AGAIN;
        } else if (d > 0 && d <= 1000) {
            r->step[track] = d;
        }
    } else {
        r->step[track] = track ? 33 : 21;
        if (o < 0) { /* the second track starts before the first one did */
            o = 0;
            rc = SL_AGAIN;
        }
    }
    r->seen[track] = TRUE;
    r->last_in[track] = ext;
    r->last_out[track] = o;
    *out = (uint32_t)o;
    return rc;
}

/* ---- output ---- */

static void send_control(rtmp_session *s, uint8_t type, uint32_t value, int extra)
{
    uint8_t b[5] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8),
                    (uint8_t)value, (uint8_t)extra};
    rtmp_chunk_write(s->out, CSID_CONTROL, type, 0, 0, b, extra >= 0 ? 5 : 4, s->out_chunk_size);
}

static void send_user_control(rtmp_session *s, uint16_t event, uint32_t value)
{
    uint8_t b[6] = {(uint8_t)(event >> 8),  (uint8_t)event,        (uint8_t)(value >> 24),
                    (uint8_t)(value >> 16), (uint8_t)(value >> 8), (uint8_t)value};
    rtmp_chunk_write(s->out, CSID_CONTROL, RTMP_MSG_USER_CONTROL, 0, 0, b, sizeof b,
                     s->out_chunk_size);
}

static void send_command(rtmp_session *s, uint32_t csid, uint32_t stream_id, GByteArray *amf)
{
    rtmp_chunk_write(s->out, csid, RTMP_MSG_COMMAND_AMF0, stream_id, 0, amf->data, amf->len,
                     s->out_chunk_size);
    g_byte_array_unref(amf);
}

static GByteArray *command_start(const char *name, double txn)
{
    GByteArray *b = g_byte_array_new();
    amf0_put_string(b, name);
    amf0_put_number(b, txn);
    return b;
}

static void put_status(GByteArray *b, const char *level, const char *code, const char *desc)
{
    amf0_put_object_start(b);
    amf0_put_key(b, "level");
    amf0_put_string(b, level);
    amf0_put_key(b, "code");
    amf0_put_string(b, code);
    amf0_put_key(b, "description");
    amf0_put_string(b, desc);
    amf0_put_object_end(b);
}

static void send_on_status(rtmp_session *s, const char *level, const char *code, const char *desc)
{
    GByteArray *b = command_start("onStatus", 0);
    amf0_put_null(b);
    put_status(b, level, code, desc);
    send_command(s, CSID_STATUS, STREAM_ID, b);
}

static void send_result(rtmp_session *s, const char *name, double txn, gboolean with_number,
                        double number)
{
    GByteArray *b = command_start(name, txn);
    amf0_put_null(b);
    if (with_number)
        amf0_put_number(b, number);
    else
        amf0_put_null(b);
    send_command(s, CSID_COMMAND, 0, b);
}

static void flush(rtmp_session *s)
{
    if (s->out->len && s->ops->output) s->ops->output(s, s->user);
}

static int fail(rtmp_session *s, int rc, const char *why)
{
    if (s->error == NULL) s->error = g_strdup(why);
    return rc;
}

/* ---- commands ---- */

static const char *arg_string(json_t *args, size_t i)
{
    return json_string_value(json_array_get(args, i));
}

/* A name off the wire: printable ASCII only, without an encoder's "?query" suffix. */
static char *clean_name(const char *raw)
{
    if (raw == NULL) return NULL;
    size_t n = strcspn(raw, "?");
    for (size_t i = 0; i < n; i++)
        if (raw[i] <= 0x20 || raw[i] >= 0x7f) return NULL;
    return g_strndup(raw, n);
}

static int on_connect(rtmp_session *s, double txn, json_t *args)
{
    json_t *cmd = json_array_get(args, 2);
    char *app = clean_name(json_string_value(json_object_get(cmd, "app")));
    if (s->connected || app == NULL) {
        g_free(app);
        return fail(s, SL_EPROTO, "connect without a valid app");
    }
    g_strstrip(app);
    if (g_str_has_suffix(app, "/")) app[strlen(app) - 1] = '\0';
    s->app = app;
    s->connected = TRUE;
    send_control(s, RTMP_MSG_WINDOW_ACK_SIZE, OUR_WINDOW_SIZE, -1);
    send_control(s, RTMP_MSG_SET_PEER_BW, OUR_WINDOW_SIZE, 2);
    send_control(s, RTMP_MSG_SET_CHUNK_SIZE, OUR_CHUNK_SIZE, -1);
    s->out_chunk_size = OUR_CHUNK_SIZE;
    gboolean ok = strcmp(app, "live") == 0;
    GByteArray *b = command_start(ok ? "_result" : "_error", txn);
    amf0_put_object_start(b);
    amf0_put_key(b, "fmsVer");
    amf0_put_string(b, "FMS/3,0,1,123");
    amf0_put_key(b, "capabilities");
    amf0_put_number(b, 31);
    amf0_put_object_end(b);
    amf0_put_object_start(b);
    amf0_put_key(b, "level");
    amf0_put_string(b, ok ? "status" : "error");
    amf0_put_key(b, "code");
    amf0_put_string(b, ok ? "NetConnection.Connect.Success" : "NetConnection.Connect.Rejected");
    amf0_put_key(b, "description");
    amf0_put_string(b, ok ? "Connection succeeded." : "unknown application: publish to /live");
    amf0_put_key(b, "objectEncoding");
    amf0_put_number(b, 0);
    amf0_put_object_end(b);
    send_command(s, CSID_COMMAND, 0, b);
    return ok ? SL_OK : fail(s, SL_EPROTO, "unknown application");
}

static int on_publish(rtmp_session *s, double txn, json_t *args)
{
    if (!s->connected) return fail(s, SL_EPROTO, "publish before connect");
    if (s->pub != PUB_IDLE) return fail(s, SL_EPROTO, "publish twice on one connection");
    s->pub = PUB_PENDING;
    s->publish_txn = txn;
    char *name = clean_name(arg_string(args, 3));
    if (name == NULL || *name == '\0') {
        g_free(name);
        rtmp_session_publish_result(s, FALSE, "NetStream.Publish.BadName", "no stream key");
        return SL_OK;
    }
    s->name = name;
    s->ops->publish(s, s->app, s->name, s->user);
    return SL_OK;
}

static int on_command(rtmp_session *s, const struct rtmp_message *m)
{
    const uint8_t *p = m->payload;
    size_t len = m->len;
    if (m->type == RTMP_MSG_COMMAND_AMF3) { /* AMF0 behind a format byte */
        if (len == 0) return fail(s, SL_EPROTO, "empty AMF3 command");
        p++, len--;
    }
    json_t *args = NULL;
    if (amf0_read_all(p, len, &args) != SL_OK) return fail(s, SL_EPROTO, "malformed AMF0 command");
    const char *name = arg_string(args, 0);
    double txn = json_number_value(json_array_get(args, 1));
    int rc = SL_OK;
    if (name == NULL) {
        rc = fail(s, SL_EPROTO, "command without a name");
    } else if (strcmp(name, "connect") == 0) {
        rc = on_connect(s, txn, args);
    } else if (!s->connected) {
        rc = fail(s, SL_EPROTO, "command before connect");
    } else if (strcmp(name, "createStream") == 0) {
        send_result(s, "_result", txn, TRUE, STREAM_ID);
    } else if (strcmp(name, "releaseStream") == 0) {
        send_result(s, "_result", txn, FALSE, 0);
    } else if (strcmp(name, "FCPublish") == 0) {
        GByteArray *b = command_start("onFCPublish", 0);
        amf0_put_null(b);
        put_status(b, "status", "NetStream.Publish.Start", "FCPublish");
        send_command(s, CSID_COMMAND, 0, b);
    } else if (strcmp(name, "publish") == 0) {
        rc = on_publish(s, txn, args);
    } else if (strcmp(name, "FCUnpublish") == 0 || strcmp(name, "deleteStream") == 0 ||
               strcmp(name, "closeStream") == 0) {
        if (s->pub == PUB_LIVE) {
            s->pub = PUB_IDLE;
            s->ops->unpublish(s, s->user);
        }
    } else if (strcmp(name, "play") == 0 || strcmp(name, "play2") == 0) {
        send_on_status(s, "error", "NetStream.Play.Failed",
                       "playback is over HLS, not RTMP: see /hls/<channel>/master.m3u8");
        rc = fail(s, SL_EPROTO, "play is not served");
    } else if (txn > 0) { /* an unknown call that wants an answer: say so rather than hang it */
        send_result(s, "_error", txn, FALSE, 0);
    }
    json_decref(args);
    return rc;
}

static void on_data(rtmp_session *s, const struct rtmp_message *m)
{
    json_t *args = NULL;
    const uint8_t *p = m->payload;
    size_t len = m->len;
    if (m->type == RTMP_MSG_DATA_AMF3 && len > 0) p++, len--;
    if (amf0_read_all(p, len, &args) != SL_OK) {
        s->stats.dropped++;
        return;
    }
    size_t i = 0;
    const char *first = arg_string(args, 0);
    if (first && strcmp(first, "@setDataFrame") == 0) i = 1;
    const char *what = arg_string(args, i);
    json_t *meta = json_array_get(args, i + 1);
    if (what && strcmp(what, "onMetaData") == 0 && json_is_object(meta) && s->pub == PUB_LIVE &&
        s->ops->metadata)
        s->ops->metadata(s, meta, s->user);
    json_decref(args);
}

static void media(rtmp_session *s, uint8_t type, uint32_t ts, const uint8_t *data, size_t len)
{
    if (s->pub != PUB_LIVE) {
        s->stats.dropped++;
        return;
    }
    uint32_t out;
    if (rtmp_ts_rebase_apply(&s->ts, type == RTMP_MSG_VIDEO, ts, &out) != SL_OK)
        s->stats.ts_fixes++;
    s->stats.frames++;
    s->ops->media(s, type, out, data, len, s->user);
}

/* Aggregate: FLV tags back to back, timed relative to the message's timestamp. */
static int on_aggregate(rtmp_session *s, const struct rtmp_message *m)
{
    size_t pos = 0;
    gboolean first = TRUE;
    uint32_t base = 0;
    while (m->len - pos >= 11) {
        const uint8_t *t = m->payload + pos;
        size_t size = (size_t)t[1] << 16 | (size_t)t[2] << 8 | t[3];
        uint32_t ts = (uint32_t)t[7] << 24 | (uint32_t)t[4] << 16 | (uint32_t)t[5] << 8 | t[6];
        if (m->len - pos - 11 < size) return fail(s, SL_EPROTO, "truncated aggregate message");
        if (first) base = ts, first = FALSE;
        if (t[0] == RTMP_MSG_AUDIO || t[0] == RTMP_MSG_VIDEO)
            media(s, t[0], m->timestamp + (ts - base), t + 11, size);
        pos += 11 + size;
        pos += MIN(4, m->len - pos); /* back pointer */
    }
    return SL_OK;
}

static int on_message(const struct rtmp_message *m, void *user)
{
    rtmp_session *s = user;
    uint32_t v = m->len >= 4 ? (uint32_t)m->payload[0] << 24 | (uint32_t)m->payload[1] << 16 |
                                   (uint32_t)m->payload[2] << 8 | m->payload[3]
                             : 0;
    switch (m->type) {
    case RTMP_MSG_SET_CHUNK_SIZE:
        if (m->len < 4 || rtmp_chunk_set_size(&s->chunks, v) != SL_OK)
            return fail(s, SL_EPROTO, "invalid chunk size");
        return SL_OK;
    case RTMP_MSG_ABORT:
        if (m->len >= 4) rtmp_chunk_abort(&s->chunks, v);
        return SL_OK;
    case RTMP_MSG_WINDOW_ACK_SIZE:
        if (m->len >= 4 && v > 0) s->peer_window = v;
        return SL_OK;
    case RTMP_MSG_USER_CONTROL:
        if (m->len >= 6 && m->payload[0] == 0 && m->payload[1] == 6) /* ping request */
            send_user_control(s, 7,
                              (uint32_t)m->payload[2] << 24 | (uint32_t)m->payload[3] << 16 |
                                  (uint32_t)m->payload[4] << 8 | m->payload[5]);
        return SL_OK;
    case RTMP_MSG_COMMAND_AMF0:
    case RTMP_MSG_COMMAND_AMF3:
        return on_command(s, m);
    case RTMP_MSG_DATA_AMF0:
    case RTMP_MSG_DATA_AMF3:
        on_data(s, m);
        return SL_OK;
    case RTMP_MSG_AUDIO:
    case RTMP_MSG_VIDEO:
        if (m->stream_id != STREAM_ID || m->len == 0) {
            s->stats.dropped++;
            return SL_OK;
        }
        media(s, m->type, m->timestamp, m->payload, m->len);
        return SL_OK;
    case RTMP_MSG_AGGREGATE:
        return on_aggregate(s, m);
    default: /* acknowledgements, bandwidth, shared objects: nothing to do for a publisher */
        return SL_OK;
    }
}

/* ---- public ---- */

rtmp_session *rtmp_session_new(const struct rtmp_session_ops *ops, void *user)
{
    rtmp_session *s = g_new0(rtmp_session, 1);
    s->ops = ops;
    s->user = user;
    s->out = g_byte_array_new();
    s->out_chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
    s->peer_window = 2500000;
    rtmp_chunk_parser_init(&s->chunks, on_message, s);
    return s;
}

void rtmp_session_free(rtmp_session *s)
{
    if (s == NULL) return;
    rtmp_chunk_parser_clear(&s->chunks);
    g_byte_array_unref(s->out);
    g_free(s->app);
    g_free(s->name);
    g_free(s->error);
    g_free(s);
}

int rtmp_session_feed(rtmp_session *s, const uint8_t *buf, size_t len)
{
    if (s->error) return SL_EPROTO;
    s->stats.bytes_in += len;
    int rc = SL_OK;
    if (!s->handshaken) {
        size_t used = 0;
        rc = rtmp_handshake_feed(&s->hs, buf, len, &used, s->out);
        if (rc == SL_EPROTO) {
            fail(s, rc, "not an RTMP handshake");
        } else if (rc == SL_OK) {
            s->handshaken = TRUE;
            buf += used, len -= used;
        } else {
            len = 0, rc = SL_OK;
        }
    }
    if (rc == SL_OK && len > 0) {
        rc = rtmp_chunk_parse(&s->chunks, buf, len);
        if (rc == SL_ELIMIT) fail(s, rc, "over a chunk stream limit");
        if (rc == SL_ENOMEM) fail(s, rc, "out of memory");
        if (rc != SL_OK) fail(s, rc, "malformed chunk stream");
    }
    if (rc == SL_OK && s->error) rc = SL_EPROTO;
    if (rc == SL_OK && s->handshaken && s->stats.bytes_in - s->acked_at >= s->peer_window) {
        s->acked_at = s->stats.bytes_in;
        send_control(s, RTMP_MSG_ACK, (uint32_t)s->stats.bytes_in, -1);
    }
    flush(s);
    return rc;
}

const char *rtmp_session_error(const rtmp_session *s)
{
    return s->error;
}

GByteArray *rtmp_session_output(rtmp_session *s)
{
    return s->out;
}

void rtmp_session_publish_result(rtmp_session *s, gboolean ok, const char *code,
                                 const char *description)
{
    if (s->pub != PUB_PENDING) return;
    if (ok) {
        s->pub = PUB_LIVE;
        send_user_control(s, 0, STREAM_ID); /* StreamBegin */
        send_on_status(s, "status", "NetStream.Publish.Start", description);
    } else {
        s->pub = PUB_REFUSED;
        send_on_status(s, "error", code ? code : "NetStream.Publish.BadName", description);
        GByteArray *b = command_start("_error", s->publish_txn);
        amf0_put_null(b);
        put_status(b, "error", code ? code : "NetStream.Publish.BadName", description);
        send_command(s, CSID_COMMAND, 0, b);
        fail(s, SL_EPROTO, description);
    }
    flush(s);
}

gboolean rtmp_session_publishing(const rtmp_session *s)
{
    return s->pub == PUB_LIVE;
}

const struct rtmp_session_stats *rtmp_session_stats(const rtmp_session *s)
{
    return &s->stats;
}
