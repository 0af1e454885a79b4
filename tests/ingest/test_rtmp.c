/* Unit tests of ingest's RTMP state machines: AMF0, both handshakes, the chunk stream fed whole,
 * byte by byte and in random splits, its limits, timestamp rebasing and a full publish session. */
#include "ingest/internal.h"

#include <check.h>
#include <string.h>

#include "harness/harness.h"

/* ---- AMF0 ---- */

START_TEST(amf0_roundtrip)
{
    GByteArray *b = g_byte_array_new();
    amf0_put_string(b, "connect");
    amf0_put_number(b, 1);
    amf0_put_object_start(b);
    amf0_put_key(b, "app");
    amf0_put_string(b, "live");
    amf0_put_key(b, "fpad");
    amf0_put_bool(b, FALSE);
    amf0_put_object_end(b);
    amf0_put_null(b);
    json_t *v = NULL;
    ck_assert_int_eq(amf0_read_all(b->data, b->len, &v), SL_OK);
    ck_assert_int_eq(json_array_size(v), 4);
    ck_assert_str_eq(json_string_value(json_array_get(v, 0)), "connect");
    ck_assert(json_number_value(json_array_get(v, 1)) == 1.0);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(v, 2), "app")), "live");
    ck_assert(json_is_false(json_object_get(json_array_get(v, 2), "fpad")));
    ck_assert(json_is_null(json_array_get(v, 3)));
    json_decref(v);
    /* every truncation of it is refused, never read past */
    for (guint n = 1; n < b->len; n++) {
        guint8 *copy = g_memdup2(b->data, n);
        json_t *t = NULL;
        int rc = amf0_read_all(copy, n, &t);
        if (rc == SL_OK) { /* only a cut between two whole values may parse */
            ck_assert_int_lt(json_array_size(t), 4);
            json_decref(t);
        }
        g_free(copy);
    }
    g_byte_array_unref(b);
}
END_TEST

START_TEST(amf0_refuses_bombs)
{
    /* 100 nested objects: deeper than AMF0_MAX_DEPTH */
    GByteArray *b = g_byte_array_new();
    for (int i = 0; i < 100; i++) {
        amf0_put_object_start(b);
        amf0_put_key(b, "a");
    }
    amf0_put_null(b);
    json_t *v = NULL;
    ck_assert_int_eq(amf0_read_all(b->data, b->len, &v), SL_EPROTO);
    /* a strict array claiming 4 billion elements in 5 bytes */
    const uint8_t huge[] = {0x0a, 0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(amf0_read_all(huge, sizeof huge, &v), SL_EPROTO);
    /* a string longer than what follows */
    const uint8_t lying[] = {0x02, 0x00, 0x10, 'a', 'b'};
    ck_assert_int_eq(amf0_read_all(lying, sizeof lying, &v), SL_EPROTO);
    const uint8_t unknown[] = {0x11};
    ck_assert_int_eq(amf0_read_all(unknown, sizeof unknown, &v), SL_EPROTO);
    g_byte_array_unref(b);
}
END_TEST

/* ---- handshake ---- */

static void run_handshake(const uint8_t *c1, gboolean byte_by_byte, GByteArray *out,
                          struct rtmp_handshake *h)
{
    uint8_t c[1 + 2 * RTMP_HANDSHAKE_SIZE + 3];
    c[0] = 3;
    memcpy(c + 1, c1, RTMP_HANDSHAKE_SIZE);
    memset(c + 1 + RTMP_HANDSHAKE_SIZE, 0x5a, RTMP_HANDSHAKE_SIZE); /* C2 */
    memcpy(c + 1 + 2 * RTMP_HANDSHAKE_SIZE, "abc", 3);              /* first chunk bytes */
    memset(h, 0, sizeof *h);
    size_t pos = 0, used = 0;
    int rc = SL_AGAIN;
    while (rc == SL_AGAIN) {
        size_t n = byte_by_byte ? 1 : sizeof c - pos;
        rc = rtmp_handshake_feed(h, c + pos, n, &used, out);
        pos += used;
    }
    ck_assert_int_eq(rc, SL_OK);
    ck_assert_uint_eq(pos, sizeof c - 3); /* stops exactly at the chunk stream */
    ck_assert_uint_eq(out->len, 1 + 2 * RTMP_HANDSHAKE_SIZE);
    ck_assert_int_eq(out->data[0], 3);
}

START_TEST(handshake_simple_echoes_c1)
{
    uint8_t c1[RTMP_HANDSHAKE_SIZE];
    for (int i = 0; i < RTMP_HANDSHAKE_SIZE; i++)
        c1[i] = (uint8_t)(i * 7);
    memset(c1 + 4, 0, 4); /* version 0: simple */
    for (int bb = 0; bb < 2; bb++) {
        GByteArray *out = g_byte_array_new();
        struct rtmp_handshake h;
        run_handshake(c1, bb, out, &h);
        ck_assert(!h.digest);
        ck_assert(memcmp(out->data + 1 + RTMP_HANDSHAKE_SIZE, c1, RTMP_HANDSHAKE_SIZE) == 0);
        g_byte_array_unref(out);
    }
}
END_TEST

START_TEST(handshake_digest_is_signed)
{
    uint8_t c1[RTMP_HANDSHAKE_SIZE];
    rtmp_handshake_client_c1(c1);
    GByteArray *out = g_byte_array_new();
    struct rtmp_handshake h;
    run_handshake(c1, FALSE, out, &h);
    ck_assert(h.digest);
    /* S1 carries a digest at its scheme-0 offset signed with the server key's first 36 bytes */
    const uint8_t *s1 = out->data + 1;
    size_t off = (size_t)(s1[8] + s1[9] + s1[10] + s1[11]) % 728 + 12;
    GHmac *mac =
        g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)"Genuine Adobe Flash Media Server 001", 36);
    g_hmac_update(mac, s1, (gssize)off);
    g_hmac_update(mac, s1 + off + 32, (gssize)(RTMP_HANDSHAKE_SIZE - off - 32));
    uint8_t d[32];
    gsize dn = sizeof d;
    g_hmac_get_digest(mac, d, &dn);
    g_hmac_unref(mac);
    ck_assert(memcmp(d, s1 + off, 32) == 0);
    /* and a bad C0 version is refused */
    struct rtmp_handshake h2 = {0};
    size_t used;
    const uint8_t rtmpe = 6;
    ck_assert_int_eq(rtmp_handshake_feed(&h2, &rtmpe, 1, &used, out), SL_EPROTO);
    g_byte_array_unref(out);
}
END_TEST

/* ---- chunk stream ---- */

struct got {
    GPtrArray *msgs; /* GBytes: type(1) csid(4) sid(4) ts(4) payload */
};

static int collect(const struct rtmp_message *m, void *user)
{
    struct got *g = user;
    GByteArray *b = g_byte_array_new();
    uint32_t f[3] = {m->csid, m->stream_id, m->timestamp};
    g_byte_array_append(b, &m->type, 1);
    g_byte_array_append(b, (const guint8 *)f, sizeof f);
    if (m->len) g_byte_array_append(b, m->payload, (guint)m->len);
    g_ptr_array_add(g->msgs, g_byte_array_free_to_bytes(b));
    return SL_OK;
}

/* A stream that uses every chunk format, interleaving, escapes and extended timestamps. */
static GByteArray *sample_stream(void)
{
    GByteArray *s = g_byte_array_new();
    uint8_t payload[1000];
    for (int i = 0; i < (int)sizeof payload; i++)
        payload[i] = (uint8_t)i;
    rtmp_chunk_write(s, 3, 20, 0, 0, payload, 300, 128);         /* fmt0 + fmt3 continuations */
    rtmp_chunk_write(s, 70, 9, 1, 0x1000000, payload, 500, 128); /* 2-byte csid, extended ts */
    rtmp_chunk_write(s, 400, 8, 1, 5, payload, 10, 128);         /* 3-byte csid */
    /* fmt1 (delta 40, new length and type) on csid 4 after a fmt0 */
    rtmp_chunk_write(s, 4, 9, 1, 1000, payload, 5, 128);
    const uint8_t fmt1[] = {0x44, 0, 0, 40, 0, 0, 3, 8, 'x', 'y', 'z'};
    g_byte_array_append(s, fmt1, sizeof fmt1);
    /* fmt2 (delta 20, same length) and then fmt3 starting a new message (delta repeated) */
    const uint8_t fmt2[] = {0x84, 0, 0, 20, 'a', 'b', 'c'};
    g_byte_array_append(s, fmt2, sizeof fmt2);
    const uint8_t fmt3[] = {0xc4, 'd', 'e', 'f'};
    g_byte_array_append(s, fmt3, sizeof fmt3);
    /* two messages interleaved chunk by chunk on csids 5 and 6 */
    GByteArray *a = g_byte_array_new(), *b = g_byte_array_new();
    rtmp_chunk_write(a, 5, 9, 1, 7, payload, 256, 128);
    rtmp_chunk_write(b, 6, 8, 1, 8, payload + 1, 200, 128);
    /* a: 12+128, 1+128 ; b: 12+128, 1+72 */
    g_byte_array_append(s, a->data, 140);
    g_byte_array_append(s, b->data, 140);
    g_byte_array_append(s, a->data + 140, a->len - 140);
    g_byte_array_append(s, b->data + 140, b->len - 140);
    g_byte_array_unref(a);
    g_byte_array_unref(b);
    /* an empty message */
    rtmp_chunk_write(s, 7, 20, 0, 9, payload, 0, 128);
    return s;
}

static GPtrArray *parse_split(const GByteArray *s, int mode, GRand *rand)
{
    struct got g = {g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref)};
    struct rtmp_chunk_parser p;
    rtmp_chunk_parser_init(&p, collect, &g);
    size_t pos = 0;
    while (pos < s->len) {
        size_t n = mode == 0 ? s->len - pos : mode == 1 ? 1 : (size_t)g_rand_int_range(rand, 1, 40);
        n = MIN(n, s->len - pos);
        uint8_t *piece = g_memdup2(s->data + pos, n); /* ASan sees any read past it */
        ck_assert_int_eq(rtmp_chunk_parse(&p, piece, n), SL_OK);
        g_free(piece);
        pos += n;
    }
    rtmp_chunk_parser_clear(&p);
    return g.msgs;
}

static void check_sample(GPtrArray *msgs)
{
    ck_assert_uint_eq(msgs->len, 9);
    struct {
        uint8_t type;
        uint32_t csid, ts;
        size_t len;
    } want[] = {{20, 3, 0, 300}, {9, 70, 0x1000000, 500}, {8, 400, 5, 10},
                {9, 4, 1000, 5}, {8, 4, 1040, 3},         {8, 4, 1060, 3},
                {8, 4, 1080, 3}, {9, 5, 7, 256},          {8, 6, 8, 200}};
    for (guint i = 0; i < 9; i++) {
        gsize n;
        const uint8_t *d = g_bytes_get_data(msgs->pdata[i], &n);
        uint32_t f[3];
        memcpy(f, d + 1, sizeof f);
        ck_assert_int_eq(d[0], want[i].type);
        ck_assert_uint_eq(f[0], want[i].csid);
        ck_assert_uint_eq(f[2], want[i].ts);
        ck_assert_uint_eq(n - 13, want[i].len);
    }
}

START_TEST(chunk_any_split)
{
    GByteArray *s = sample_stream();
    GRand *rand = g_rand_new_with_seed(42);
    GPtrArray *whole = parse_split(s, 0, rand);
    /* the 10th (empty) message */
    ck_assert_uint_eq(whole->len, 10);
    g_ptr_array_remove_index(whole, 9);
    check_sample(whole);
    for (int mode = 1; mode < 2 + 50; mode++) {
        GPtrArray *other = parse_split(s, mode == 1 ? 1 : 2, rand);
        ck_assert_uint_eq(other->len, 10);
        for (guint i = 0; i < whole->len; i++)
            ck_assert(g_bytes_equal(whole->pdata[i], other->pdata[i]));
        g_ptr_array_unref(other);
    }
    g_ptr_array_unref(whole);
    g_rand_free(rand);
    g_byte_array_unref(s);
}
END_TEST

static int parse_all(const uint8_t *d, size_t n)
{
    struct got g = {g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref)};
    struct rtmp_chunk_parser p;
    rtmp_chunk_parser_init(&p, collect, &g);
    int rc = rtmp_chunk_parse(&p, d, n);
    rtmp_chunk_parser_clear(&p);
    g_ptr_array_unref(g.msgs);
    return rc;
}

/* The first chunk of a len-byte message on csid: the message stays incomplete. */
static void partial(GByteArray *s, uint32_t csid, uint32_t len)
{
    uint8_t *payload = g_malloc0(len);
    GByteArray *m = g_byte_array_new();
    rtmp_chunk_write(m, csid, 9, 1, 0, payload, len, 128);
    g_byte_array_append(s, m->data, (csid < 64 ? 1 : 2) + 11 + 128);
    g_byte_array_unref(m);
    g_free(payload);
}

START_TEST(chunk_limits)
{
    /* a message longer than the cap */
    const uint8_t big[] = {0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0};
    ck_assert_int_eq(parse_all(big, sizeof big), SL_ELIMIT);
    /* fmt 3 and fmt 2 on a chunk stream never seen */
    const uint8_t orphan3[] = {0xc9, 1, 2, 3};
    ck_assert_int_eq(parse_all(orphan3, sizeof orphan3), SL_EPROTO);
    const uint8_t orphan2[] = {0x89, 0, 0, 1};
    ck_assert_int_eq(parse_all(orphan2, sizeof orphan2), SL_EPROTO);
    /* more chunk streams than allowed, each holding a partial message */
    GByteArray *s = g_byte_array_new();
    for (uint32_t csid = 3; csid < 3 + RTMP_MAX_CHUNK_STREAMS + 1; csid++)
        partial(s, csid, 200);
    ck_assert_int_eq(parse_all(s->data, s->len), SL_ELIMIT);
    g_byte_array_unref(s);
    /* partial messages whose lengths add up past the pending cap */
    s = g_byte_array_new();
    for (uint32_t csid = 3; csid < 3 + 4; csid++)
        partial(s, csid, RTMP_MAX_MESSAGE_SIZE);
    ck_assert_int_eq(parse_all(s->data, s->len), SL_ELIMIT);
    g_byte_array_unref(s);
    /* a new header in the middle of a message */
    s = g_byte_array_new();
    const uint8_t start[] = {0x03, 0, 0, 0, 0, 0x01, 0x00, 9, 1, 0, 0, 0};
    g_byte_array_append(s, start, sizeof start);
    uint8_t body[128] = {0};
    g_byte_array_append(s, body, sizeof body);
    g_byte_array_append(s, start, sizeof start);
    ck_assert_int_eq(parse_all(s->data, s->len), SL_EPROTO);
    g_byte_array_unref(s);
}
END_TEST

START_TEST(chunk_size_bounds)
{
    struct rtmp_chunk_parser p;
    rtmp_chunk_parser_init(&p, NULL, NULL);
    ck_assert_int_eq(rtmp_chunk_set_size(&p, 0), SL_EPROTO);
    ck_assert_int_eq(rtmp_chunk_set_size(&p, RTMP_MAX_CHUNK_SIZE + 1), SL_EPROTO);
    ck_assert_int_eq(rtmp_chunk_set_size(&p, 4096), SL_OK);
    ck_assert_uint_eq(p.chunk_size, 4096);
    rtmp_chunk_parser_clear(&p);
}
END_TEST

/* ---- timestamps ---- */

START_TEST(timestamps_rebased)
{
    struct rtmp_ts_rebase r = {0};
    uint32_t out;
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 1, 5000, &out), SL_OK);
    ck_assert_uint_eq(out, 0);
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 0, 5010, &out), SL_OK);
    ck_assert_uint_eq(out, 10);
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 1, 5033, &out), SL_OK);
    ck_assert_uint_eq(out, 33);
    /* a small step back is held */
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 1, 5020, &out), SL_AGAIN);
    ck_assert_uint_eq(out, 33);
    /* an encoder restart (clock back to 0) continues one frame later */
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 1, 0, &out), SL_AGAIN);
    ck_assert_uint_eq(out, 66);
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 1, 33, &out), SL_OK);
    ck_assert_uint_eq(out, 99);
    /* a jump forward by an hour, too */
    ck_assert_int_eq(rtmp_ts_rebase_apply(&r, 1, 3600033u, &out), SL_AGAIN);
    ck_assert_uint_eq(out, 132);
    /* the 32-bit wrap is not a jump */
    struct rtmp_ts_rebase w = {0};
    ck_assert_int_eq(rtmp_ts_rebase_apply(&w, 1, 0xffffffe0u, &out), SL_OK);
    ck_assert_int_eq(rtmp_ts_rebase_apply(&w, 1, 0x10u, &out), SL_OK);
    ck_assert_uint_eq(out, 0x30);
}
END_TEST

/* ---- a whole session ---- */

struct seen {
    char *name;
    int media, unpublished;
    uint32_t last_ts;
};

static void s_publish(rtmp_session *s, const char *app, const char *name, void *user)
{
    struct seen *v = user;
    ck_assert_str_eq(app, "live");
    v->name = g_strdup(name);
    rtmp_session_publish_result(s, TRUE, NULL, "ok");
}
static void s_media(rtmp_session *s, uint8_t type, uint32_t ts, const uint8_t *d, size_t n,
                    void *user)
{
    struct seen *v = user;
    v->media++;
    v->last_ts = ts;
}
static void s_unpublish(rtmp_session *s, void *user)
{
    ((struct seen *)user)->unpublished++;
}
static const struct rtmp_session_ops ops = {
    .publish = s_publish, .media = s_media, .unpublish = s_unpublish};

static GByteArray *publish_script(void)
{
    GByteArray *s = g_byte_array_new();
    uint8_t c1[RTMP_HANDSHAKE_SIZE];
    rtmp_handshake_client_c1(c1);
    const uint8_t c0 = 3;
    g_byte_array_append(s, &c0, 1);
    g_byte_array_append(s, c1, sizeof c1);
    g_byte_array_append(s, c1, sizeof c1); /* C2 */
    const uint8_t chunk[] = {0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0};
    g_byte_array_append(s, chunk, sizeof chunk); /* set chunk size 4096 */
    /* from here on chunks are 4096 bytes */
    GByteArray *c = g_byte_array_new();
    GByteArray *b = g_byte_array_new();
    const char *names[] = {"connect", "releaseStream", "FCPublish", "createStream", "publish"};
    for (int i = 0; i < 5; i++) {
        g_byte_array_set_size(b, 0);
        amf0_put_string(b, names[i]);
        amf0_put_number(b, i + 1);
        if (i == 0) {
            amf0_put_object_start(b);
            amf0_put_key(b, "app");
            amf0_put_string(b, "live");
            amf0_put_object_end(b);
        } else {
            amf0_put_null(b);
        }
        if (i == 1 || i == 2) amf0_put_string(b, "sk_test");
        if (i == 4) amf0_put_string(b, "sk_test?x=1");
        rtmp_chunk_write(c, 3, RTMP_MSG_COMMAND_AMF0, i == 4 ? 1 : 0, 0, b->data, b->len, 4096);
    }
    const uint8_t avc[] = {0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f};
    for (uint32_t ts = 0; ts < 200; ts += 40)
        rtmp_chunk_write(c, 6, RTMP_MSG_VIDEO, 1, 1000 + ts, avc, sizeof avc, 4096);
    g_byte_array_set_size(b, 0);
    amf0_put_string(b, "FCUnpublish");
    amf0_put_number(b, 6);
    amf0_put_null(b);
    rtmp_chunk_write(c, 3, RTMP_MSG_COMMAND_AMF0, 0, 0, b->data, b->len, 4096);
    g_byte_array_append(s, c->data, c->len);
    g_byte_array_unref(b);
    g_byte_array_unref(c);
    return s;
}

START_TEST(session_publish_flow)
{
    GByteArray *script = publish_script();
    for (int bb = 0; bb < 2; bb++) {
        struct seen v = {0};
        rtmp_session *s = rtmp_session_new(&ops, &v);
        if (bb) {
            for (guint i = 0; i < script->len; i++)
                ck_assert_int_eq(rtmp_session_feed(s, script->data + i, 1), SL_OK);
        } else {
            ck_assert_int_eq(rtmp_session_feed(s, script->data, script->len), SL_OK);
        }
        ck_assert_str_eq(v.name, "sk_test"); /* the query part is not the key */
        ck_assert_int_eq(v.media, 5);
        ck_assert_uint_eq(v.last_ts, 160); /* rebased to start at 0 */
        ck_assert_int_eq(v.unpublished, 1);
        GByteArray *out = rtmp_session_output(s);
        ck_assert(memmem(out->data, out->len, "NetConnection.Connect.Success", 29) != NULL);
        ck_assert(memmem(out->data, out->len, "NetStream.Publish.Start", 23) != NULL);
        rtmp_session_free(s);
        g_free(v.name);
    }
    g_byte_array_unref(script);
}
END_TEST

START_TEST(session_refuses_garbage)
{
    struct seen v = {0};
    rtmp_session *s = rtmp_session_new(&ops, &v);
    ck_assert_int_eq(rtmp_session_feed(s, (const uint8_t *)"GET / HTTP/1.1\r\n", 16), SL_EPROTO);
    ck_assert_ptr_nonnull(rtmp_session_error(s));
    ck_assert_int_eq(rtmp_session_feed(s, (const uint8_t *)"x", 1), SL_EPROTO);
    rtmp_session_free(s);
}
END_TEST

static Suite *rtmp_suite(void)
{
    Suite *s = suite_create("rtmp");
    TCase *tc = tcase_create("units");
    tcase_add_test(tc, amf0_roundtrip);
    tcase_add_test(tc, amf0_refuses_bombs);
    tcase_add_test(tc, handshake_simple_echoes_c1);
    tcase_add_test(tc, handshake_digest_is_signed);
    tcase_add_test(tc, chunk_any_split);
    tcase_add_test(tc, chunk_limits);
    tcase_add_test(tc, chunk_size_bounds);
    tcase_add_test(tc, timestamps_rebased);
    tcase_add_test(tc, session_publish_flow);
    tcase_add_test(tc, session_refuses_garbage);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(rtmp_suite());
}
