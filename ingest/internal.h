/* internal: the RTMP pieces of ingest (AMF0, handshake, chunk stream, session, timestamp rebase),
 * each a pure state machine over bytes so that tests and fuzzers drive them without a socket. */
#ifndef INGEST_INTERNAL_H
#define INGEST_INTERNAL_H

#include "core/core.h"
#include "room/room.h"

#include <stdint.h>

/* ---- AMF0 (amf0.c) ---- */

/* Decode one AMF0 value at buf[*pos..len) into a JSON value (numbers become reals, strings keep
 * their bytes, objects and ECMA arrays become objects, strict arrays arrays, null/undefined null).
 * SL_OK advances *pos and sets *out (caller owns); SL_EPROTO for malformed or truncated input or
 * nesting deeper than AMF0_MAX_DEPTH. Never reads past len. */
#define AMF0_MAX_DEPTH 16
int amf0_read(const uint8_t *buf, size_t len, size_t *pos, json_t **out);
/* Decode every value of a command message into an array. SL_OK or SL_EPROTO. */
int amf0_read_all(const uint8_t *buf, size_t len, json_t **out);

void amf0_put_number(GByteArray *b, double v);
void amf0_put_bool(GByteArray *b, gboolean v);
void amf0_put_string(GByteArray *b, const char *s);
void amf0_put_null(GByteArray *b);
void amf0_put_object_start(GByteArray *b);
void amf0_put_key(GByteArray *b, const char *key); /* then one amf0_put_* value */
void amf0_put_object_end(GByteArray *b);

/* ---- handshake (rtmp_handshake.c) ---- */

#define RTMP_HANDSHAKE_SIZE 1536

struct rtmp_handshake {
    int state; /* see rtmp_handshake.c */
    size_t have;
    uint8_t c1[RTMP_HANDSHAKE_SIZE];
    gboolean digest; /* the client used the digest-style (Flash player) handshake */
};

/* Consume handshake bytes; appends S0+S1+S2 to out once C0+C1 are in. SL_OK once C2 is in (the
 * chunk stream starts at buf[*consumed]); SL_AGAIN wants more; SL_EPROTO for a version other than
 * 3. *consumed is what was used of buf. */
int rtmp_handshake_feed(struct rtmp_handshake *h, const uint8_t *buf, size_t len, size_t *consumed,
                        GByteArray *out);
/* Build a client's C1 with a valid digest (for tests and the bench publisher). */
void rtmp_handshake_client_c1(uint8_t c1[RTMP_HANDSHAKE_SIZE]);

/* ---- chunk stream (rtmp_chunk.c) ---- */

#define RTMP_DEFAULT_CHUNK_SIZE 128
#define RTMP_MAX_CHUNK_SIZE     (1u << 20)  /* a peer may ask for more; we refuse */
#define RTMP_MAX_MESSAGE_SIZE   (8u << 20)  /* one message: a keyframe at a high bitrate fits */
#define RTMP_MAX_PENDING        (16u << 20) /* all partly received messages of a connection */
#define RTMP_MAX_CHUNK_STREAMS  64

struct rtmp_message {
    uint32_t csid;
    uint8_t type;
    uint32_t stream_id;
    uint32_t timestamp; /* absolute, ms, wraps at 2^32 */
    const uint8_t *payload;
    size_t len;
};

/* Return SL_OK to go on; anything else stops the parse with that code. */
typedef int (*rtmp_message_cb)(const struct rtmp_message *m, void *user);

struct rtmp_chunk_stream; /* per chunk stream id state, in rtmp_chunk.c */

struct rtmp_chunk_parser {
    int state;
    uint8_t hdr[18]; /* the header being collected: basic (≤3) + message (≤11) + extended (4) */
    size_t hdr_have, hdr_need, chunk_left;
    uint32_t chunk_size;
    uint32_t csid;
    int fmt;
    struct rtmp_chunk_stream *cur;
    GHashTable *streams; /* csid -> struct rtmp_chunk_stream (owned) */
    size_t pending;      /* bytes held in partly received messages */
    rtmp_message_cb on_message;
    void *user;
};

void rtmp_chunk_parser_init(struct rtmp_chunk_parser *p, rtmp_message_cb cb, void *user);
void rtmp_chunk_parser_clear(struct rtmp_chunk_parser *p);
/* Parse buf; calls on_message for each complete message, in order. SL_OK (all of buf used),
 * SL_EPROTO (malformed), SL_ELIMIT (a cap was hit), or the code a callback returned. */
int rtmp_chunk_parse(struct rtmp_chunk_parser *p, const uint8_t *buf, size_t len);
/* Set Chunk Size from the peer; SL_EPROTO when out of range. */
int rtmp_chunk_set_size(struct rtmp_chunk_parser *p, uint32_t size);
/* Abort Message: drop the partly received message on csid. */
void rtmp_chunk_abort(struct rtmp_chunk_parser *p, uint32_t csid);
/* Append one message as chunks (fmt 0 then fmt 3) of chunk_size to out. */
void rtmp_chunk_write(GByteArray *out, uint32_t csid, uint8_t type, uint32_t stream_id,
                      uint32_t timestamp, const uint8_t *payload, size_t len, uint32_t chunk_size);

/* ---- message types ---- */
enum {
    RTMP_MSG_SET_CHUNK_SIZE = 1,
    RTMP_MSG_ABORT = 2,
    RTMP_MSG_ACK = 3,
    RTMP_MSG_USER_CONTROL = 4,
    RTMP_MSG_WINDOW_ACK_SIZE = 5,
    RTMP_MSG_SET_PEER_BW = 6,
    RTMP_MSG_AUDIO = 8,
    RTMP_MSG_VIDEO = 9,
    RTMP_MSG_DATA_AMF3 = 15,
    RTMP_MSG_COMMAND_AMF3 = 17,
    RTMP_MSG_DATA_AMF0 = 18,
    RTMP_MSG_COMMAND_AMF0 = 20,
    RTMP_MSG_AGGREGATE = 22,
};

/* ---- timestamps (rtmp_session.c) ---- */

/* Encoder timestamps onto one monotonic timeline starting at 0: small steps back are clamped,
 * jumps (back, or forward by more than RTMP_TS_MAX_GAP_MS) are rebased onto the previous frame. */
#define RTMP_TS_MAX_GAP_MS 5000
struct rtmp_ts_rebase {
    gboolean started;
    gboolean seen[2];
    int64_t offset;
    int64_t last_in[2];  /* unwrapped input per track (0 audio, 1 video) */
    int64_t last_out[2]; /* output per track */
    int64_t step[2];     /* last normal frame step per track */
};
/* SL_OK, or SL_AGAIN when it had to correct the timestamp (count it). */
int rtmp_ts_rebase_apply(struct rtmp_ts_rebase *r, int track, uint32_t in, uint32_t *out);

/* ---- session (rtmp_session.c) ---- */

typedef struct rtmp_session rtmp_session;

struct rtmp_session_ops {
    /* The peer asked to publish app/name. Answer later with rtmp_session_publish_result. */
    void (*publish)(rtmp_session *s, const char *app, const char *name, void *user);
    /* @setDataFrame onMetaData (as decoded JSON, borrowed) */
    void (*metadata)(rtmp_session *s, json_t *meta, void *user);
    /* An audio (8) or video (9) message of the published stream; ts already rebased. */
    void (*media)(rtmp_session *s, uint8_t type, uint32_t ts, const uint8_t *data, size_t len,
                  void *user);
    /* FCUnpublish / deleteStream: the peer stopped publishing (the socket may stay open). */
    void (*unpublish)(rtmp_session *s, void *user);
    /* Bytes to send were appended to the session's output. */
    void (*output)(rtmp_session *s, void *user);
};

struct rtmp_session_stats {
    uint64_t bytes_in, frames, ts_fixes, dropped;
};

rtmp_session *rtmp_session_new(const struct rtmp_session_ops *ops, void *user);
void rtmp_session_free(rtmp_session *s);
/* Feed received bytes. SL_OK, or an error after which the connection must close (the reason is
 * in rtmp_session_error). */
int rtmp_session_feed(rtmp_session *s, const uint8_t *buf, size_t len);
const char *rtmp_session_error(const rtmp_session *s);
/* The pending output; the caller sends it and removes what was sent. */
GByteArray *rtmp_session_output(rtmp_session *s);
/* Answer a publish: ok starts the stream (NetStream.Publish.Start); otherwise the encoder sees
 * NetStream.Publish.BadName (or code) with description, and the session refuses further media. */
void rtmp_session_publish_result(rtmp_session *s, gboolean ok, const char *code,
                                 const char *description);
gboolean rtmp_session_publishing(const rtmp_session *s);
const struct rtmp_session_stats *rtmp_session_stats(const rtmp_session *s);

/* ---- the demo's own publisher (demo_source.c) ---- */

/* Asked every few seconds while the source is stopped: TRUE when it may publish again. */
typedef gboolean (*demo_source_may_start)(void *user);
struct demo_source;
/* Publishes a test pattern (clock, ticking tone; H.264 High + AAC in FLV) to rtmp_url whenever
 * may_start allows, and stops when the connection ends (refused, or taken over). */
struct demo_source *demo_source_new(const char *rtmp_url, demo_source_may_start may_start,
                                    void *user);
void demo_source_free(struct demo_source *d);

#endif
