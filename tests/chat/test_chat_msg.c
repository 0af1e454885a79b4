/* Unit tests of chat/msg.c and the moderation validators: the client message parser, the chat
 * text rules, stream ids, and the frames that are written to every client as they are. */
#include "chat/internal.h"

#include "harness/harness.h"

#include <check.h>
#include <string.h>

static int parse(const char *text, struct chat_msg *m, GError **err)
{
    return chat_msg_parse(text, strlen(text), m, err);
}

START_TEST(parses_each_type)
{
    struct chat_msg m;
    GError *err = NULL; /* stays NULL: every frame here is valid */
    ck_assert_int_eq(parse("{\"type\":\"ping\"}", &m, &err), SL_OK);
    ck_assert_int_eq(m.type, CHAT_MSG_PING);
    chat_msg_clear(&m);

    ck_assert_int_eq(parse("{\"type\":\"join\",\"channel\":\"cl-wine\",\"token\":\"a.b.c\","
                           "\"since\":\"1700000000000-3\"}",
                           &m, &err),
                     SL_OK);
    ck_assert_int_eq(m.type, CHAT_MSG_JOIN);
    ck_assert_str_eq(m.channel, "cl-wine");
    ck_assert_str_eq(m.token, "a.b.c");
    ck_assert(m.has_since);
    ck_assert_str_eq(m.since_text, "1700000000000-3");
    ck_assert(m.since.ms == 1700000000000ULL && m.since.seq == 3);
    chat_msg_clear(&m);

    /* anonymous join: token omitted or null; since empty or null means none */
    ck_assert_int_eq(
        parse("{\"type\":\"join\",\"channel\":\"c\",\"token\":null,\"since\":\"\"}", &m, &err),
        SL_OK);
    ck_assert(m.token == NULL && !m.has_since);
    chat_msg_clear(&m);

    ck_assert_int_eq(parse("{\"type\":\"chat\",\"text\":\"¡Hola! 你好\"}", &m, &err), SL_OK);
    ck_assert_str_eq(m.text, "¡Hola! 你好");
    chat_msg_clear(&m);
    ck_assert_ptr_null(err);
}
END_TEST

/* api.md's rules: each of these is an error frame, never a crash or a lookup. */
START_TEST(refuses_bad_frames)
{
    static const char *const bad[] = {
        "",
        "{",
        "null",
        "[]",
        "\"join\"",
        "{}",
        "{\"type\":null}",
        "{\"type\":\"JOIN\",\"channel\":\"c\"}",
        "{\"type\":\"join\"}",
        "{\"type\":\"join\",\"channel\":\"\"}",
        "{\"type\":\"join\",\"channel\":\"a b\"}",
        "{\"type\":\"join\",\"channel\":\"../x\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"token\":5}",
        "{\"type\":\"join\",\"channel\":\"c\",\"token\":\"\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"since\":\"12\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"since\":\"-1\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"since\":\"1-\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"since\":\"1-2-3\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"since\":\"99999999999999999999999-1\"}",
        "{\"type\":\"join\",\"channel\":\"c\",\"since\":7}",
        "{\"type\":\"chat\"}",
        "{\"type\":\"chat\",\"text\":\"\"}",
        "{\"type\":\"chat\",\"text\":\"   \"}",
        "{\"type\":\"chat\",\"text\":\"\\u0000\"}",
        "{\"type\":\"chat\",\"text\":\"\\u0007\\u202e\"}",
        "{\"type\":\"chat\",\"text\":7}",
        "{\"type\":\"ping\",\"type\":\"chat\"}",
        "{\"type\":\"chat\",\"text\":\"\\ud800\"}",
        NULL,
    };
    for (int i = 0; bad[i]; i++) {
        struct chat_msg m;
        GError *err = NULL;
        ck_assert_msg(parse(bad[i], &m, &err) == SL_EPROTO, "accepted: %s", bad[i]);
        ck_assert(err != NULL && err->domain == SL_ERROR && err->code == SL_ERROR_INVALID &&
                  *err->message);
        ck_assert(m.token == NULL && m.text == NULL);
        g_error_free(err);
    }
    /* not NUL-terminated, and invalid UTF-8 */
    char buf[] = {'{', '"', 't', 'y', 'p', 'e', '"', ':', '"', '\xff', '"', '}'};
    struct chat_msg m;
    GError *err = NULL;
    ck_assert_int_eq(chat_msg_parse(buf, sizeof buf, &m, &err), SL_EPROTO);
    g_clear_error(&err);
    /* over 4 KiB */
    char *big = g_malloc0(CHAT_FRAME_MAX + 2);
    memset(big, ' ', CHAT_FRAME_MAX + 1);
    ck_assert_int_eq(chat_msg_parse(big, CHAT_FRAME_MAX + 1, &m, &err), SL_EPROTO);
    ck_assert_ptr_nonnull(err);
    g_clear_error(&err);
    g_free(big);
}
END_TEST

START_TEST(text_rules)
{
    const char *in = "  a\x01"
                     "b\tc\r\nd \xe2\x80\xae"
                     "e  ";
    char *t = chat_text_clean(in, strlen(in), 500);
    ck_assert_str_eq(t, "ab c  d e");
    g_free(t);
    ck_assert(chat_text_clean("\xc3", 1, 500) == NULL); /* truncated UTF-8 */
    ck_assert(chat_text_clean(" \t ", 3, 500) == NULL); /* empty after cleaning */
    /* 500 characters pass, 501 do not; characters, not bytes */
    GString *s = g_string_new(NULL);
    for (int i = 0; i < 500; i++)
        g_string_append(s, "好");
    t = chat_text_clean(s->str, s->len, 500);
    ck_assert(t != NULL);
    g_free(t);
    g_string_append(s, "好");
    ck_assert(chat_text_clean(s->str, s->len, 500) == NULL);
    g_string_free(s, TRUE);
}
END_TEST

START_TEST(masks_banned_words)
{
    const char *words[] = {"scam", "假货", "scammer", NULL};
    char *t = chat_text_mask("A SCAMMER sells 假货, not a scam?", words);
    ck_assert_str_eq(t, "A ******* sells **, not a ****?");
    g_free(t);
    ck_assert(chat_text_mask("clean text", words) == NULL);
    ck_assert(chat_text_mask("scam", NULL) == NULL);
    const char *none[] = {NULL};
    ck_assert(chat_text_mask("scam", none) == NULL);
}
END_TEST

START_TEST(stream_ids)
{
    struct chat_stream_id a, b;
    ck_assert_int_eq(chat_stream_id_parse("5-1", 3, &a), SL_OK);
    ck_assert_int_eq(chat_stream_id_parse("5-10", 4, &b), SL_OK);
    ck_assert_int_lt(chat_stream_id_cmp(&a, &b), 0);
    ck_assert_int_eq(chat_stream_id_parse("18446744073709551615-0", 22, &b), SL_OK);
    ck_assert_int_gt(chat_stream_id_cmp(&b, &a), 0);
    ck_assert_int_eq(chat_stream_id_cmp(&a, &a), 0);
    ck_assert_int_eq(chat_stream_id_parse("18446744073709551616-0", 22, &b), SL_EPROTO);
    ck_assert_int_eq(chat_stream_id_parse("+5-1", 4, &b), SL_EPROTO);
    ck_assert_int_eq(chat_stream_id_parse("5-1", 2, &b), SL_EPROTO); /* "5-": reads no further */
}
END_TEST

/* The three header sizes of RFC 6455 5.2, unmasked, FIN + text. */
START_TEST(frame_headers)
{
    size_t sizes[] = {0, 125, 126, 65535, 65536};
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        char *payload = g_malloc0(sizes[i] + 1);
        memset(payload, 'x', sizes[i]);
        struct chat_frame *f = chat_frame_new(payload, sizes[i], CHAT_FRAME_EVENT);
        ck_assert_int_eq(f->data[0], 0x81);
        size_t head = sizes[i] < 126 ? 2 : sizes[i] <= 65535 ? 4 : 10;
        ck_assert_uint_eq(f->len, head + sizes[i]);
        uint64_t len = f->data[1];
        if (head == 4) len = (uint64_t)f->data[2] << 8 | f->data[3];
        if (head == 10) {
            len = 0;
            for (int k = 0; k < 8; k++)
                len = len << 8 | f->data[2 + k];
        }
        ck_assert_uint_eq(len, sizes[i]);
        ck_assert(memcmp(f->data + head, payload, sizes[i]) == 0);
        chat_frame_ref(f);
        chat_frame_unref(f);
        chat_frame_unref(f);
        g_free(payload);
    }
}
END_TEST

START_TEST(moderation_bodies)
{
    struct {
        const char *body;
        gboolean ok;
        long long duration_ms;
    } cases[] = {
        {"{\"action\":\"mute\",\"user\":\"u1\"}", TRUE, 600000},
        {"{\"action\":\"mute\",\"user\":\"u1\",\"duration_s\":5}", TRUE, 5000},
        {"{\"action\":\"ban\",\"user\":\"u1\"}", TRUE, 0},
        {"{\"action\":\"unban\",\"user\":\"u1\"}", TRUE, 0},
        {"{\"action\":\"delete\",\"message_id\":\"1-2\"}", TRUE, 0},
        {"{\"action\":\"delete\",\"message_id\":\"x\"}", FALSE, 0},
        {"{\"action\":\"delete\"}", FALSE, 0},
        {"{\"action\":\"mute\"}", FALSE, 0},
        {"{\"action\":\"mute\",\"user\":\"\"}", FALSE, 0},
        {"{\"action\":\"mute\",\"user\":\"u1\",\"duration_s\":0}", FALSE, 0},
        {"{\"action\":\"mute\",\"user\":\"u1\",\"duration_s\":1.5}", FALSE, 0},
        {"{\"action\":\"mute\",\"user\":\"u1\",\"duration_s\":99999999999}", FALSE, 0},
        {"{\"action\":\"kick\",\"user\":\"u1\"}", FALSE, 0},
        {"{}", FALSE, 0},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        json_t *body = json_loads(cases[i].body, 0, NULL);
        GError *err = NULL;
        json_t *out = chat_moderation_validate(body, &err);
        ck_assert_msg((out != NULL) == cases[i].ok, "%s", cases[i].body);
        if (out)
            ck_assert_int_eq(json_integer_value(json_object_get(out, "duration_ms")),
                             cases[i].duration_ms);
        else
            ck_assert(err != NULL);
        g_clear_error(&err);
        json_decref(out);
        json_decref(body);
    }
    json_t *w = json_loads("{\"words\":[\" Scam \",\"假货\"]}", 0, NULL);
    GError *err = NULL;
    json_t *out = chat_words_validate(w, &err);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(json_string_value(json_array_get(out, 0)), "Scam");
    json_decref(out);
    json_decref(w);
    w = json_loads("{\"words\":[\"\"]}", 0, NULL);
    ck_assert(chat_words_validate(w, &err) == NULL);
    ck_assert_ptr_nonnull(err);
    g_clear_error(&err);
    json_decref(w);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chat_msg");
    TCase *tc = tcase_create("msg");
    tcase_add_test(tc, parses_each_type);
    tcase_add_test(tc, refuses_bad_frames);
    tcase_add_test(tc, text_rules);
    tcase_add_test(tc, masks_banned_words);
    tcase_add_test(tc, stream_ids);
    tcase_add_test(tc, frame_headers);
    tcase_add_test(tc, moderation_bodies);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(suite());
}
