/* Integration tests of chat/ with real WebSocket clients, a real redis-server and the real
 * silklive binary: join, chat, history, recovery, rules, moderation, events from commerce, two
 * nodes on one Redis, slow consumers and shutdown. */
#include "core/core.h"
#include "harness/harness.h"
#include "harness/ws.h"

#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define SECRET "chat-test-secret"
#define WAIT   5000

static struct harness_redis redis;
static struct harness_silklive sl;
static char *config_dir;

static char *token(enum sl_role role, const char *sub, const char *pav)
{
    return harness_token(SECRET, role, sub, pav);
}

/* silklive on the test Redis with extra config lines and modules. */
static void start_node(struct harness_silklive *node, const char *modules, const char *ini_text)
{
    char *ini = g_build_filename(config_dir, modules, NULL);
    g_file_set_contents(ini, ini_text ? ini_text : "", -1, NULL);
    char url[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    const char *args[] = {"--redis", url,         "--secret", SECRET, "--config",
                          ini,       "--modules", modules,    NULL};
    ck_assert_msg(harness_silklive_start(node, args, NULL), "silklive did not start");
    g_free(ini);
}

static void seed(void)
{
    char *admin = token(SL_ROLE_ADMIN, "root", NULL), *consul = token(SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions", admin, NULL,
                                 "{\"code\":\"CL\",\"name\":{\"en\":\"Chile\",\"zh\":\"智利\"},"
                                 "\"currency\":\"CLP\",\"languages\":[\"es\",\"zh\"]}",
                                 NULL),
                     201);
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions", admin, NULL,
                                 "{\"code\":\"PE\",\"name\":{\"en\":\"Peru\",\"zh\":\"秘鲁\"},"
                                 "\"currency\":\"PEN\",\"languages\":[\"es\",\"zh\"]}",
                                 NULL),
                     201);
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions/CL/channels", consul, NULL,
                                 "{\"id\":\"ch1\",\"title\":{\"en\":\"Wine\"}}", NULL),
                     201);
    g_free(admin);
    g_free(consul);
}

static void start_with(const char *ini_text)
{
    harness_redis_start(&redis, NULL);
    config_dir = harness_tmpdir();
    start_node(&sl, "chat,commerce", ini_text);
    seed();
}

static void start(void)
{
    start_with("[chat]\nrate_messages = 3\nrate_window_ms = 2000\n");
}

static void stop(void)
{
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    harness_redis_stop(&redis);
    harness_rmtree(config_dir);
    g_free(config_dir);
}

static const char *str(json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

static harness_ws *ws_open(int port)
{
    harness_ws *ws = harness_ws_connect(port, "/ws", "silklive.v1", NULL);
    ck_assert_msg(ws != NULL, "WebSocket upgrade failed");
    return ws;
}

/* Join channel (with a token when sub is not NULL); returns the `joined` message. */
static json_t *join_as(harness_ws *ws, const char *channel, enum sl_role role, const char *sub,
                       const char *pav, const char *since)
{
    json_t *msg = json_pack("{s:s, s:s}", "type", "join", "channel", channel);
    if (sub) {
        char *t = token(role, sub, pav);
        json_object_set_new(msg, "token", json_string(t));
        g_free(t);
    }
    if (since) json_object_set_new(msg, "since", json_string(since));
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    ck_assert(harness_ws_send(ws, text));
    free(text);
    json_t *j = harness_ws_expect(ws, "joined", WAIT);
    ck_assert_msg(j != NULL, "no joined for %s", channel);
    return j;
}

static void say(harness_ws *ws, const char *text)
{
    json_t *m = json_pack("{s:s, s:s}", "type", "chat", "text", text);
    char *s = json_dumps(m, JSON_COMPACT);
    ck_assert(harness_ws_send(ws, s));
    free(s);
    json_decref(m);
}

/* The next chat event; fails the test after WAIT. */
static json_t *next_chat(harness_ws *ws)
{
    json_t *j = harness_ws_expect(ws, "chat", WAIT);
    ck_assert_msg(j != NULL, "no chat event");
    return j;
}

static json_t *next_error(harness_ws *ws, const char *code)
{
    json_t *j = harness_ws_expect(ws, "error", WAIT);
    ck_assert_msg(j != NULL, "no error frame (wanted %s)", code);
    ck_assert_str_eq(str(j, "code"), code);
    return j;
}

/* ---- join, chat, history ---- */

START_TEST(join_chat_and_history)
{
    harness_ws *anon = ws_open(sl.port), *viewer = ws_open(sl.port);
    json_t *j = join_as(anon, "ch1", 0, NULL, NULL, NULL);
    ck_assert_str_eq(str(j, "channel"), "ch1");
    ck_assert(json_is_array(json_object_get(j, "history")));
    ck_assert_int_eq(json_array_size(json_object_get(j, "history")), 0);
    ck_assert(json_is_null(json_object_get(j, "pinned")));
    ck_assert(json_is_array(json_object_get(j, "sales")));
    ck_assert_int_ge(json_integer_value(json_object_get(j, "viewers")), 1);
    json_decref(j);
    json_decref(join_as(viewer, "ch1", SL_ROLE_VIEWER, "u1", NULL, NULL));

    say(viewer, "  你好, \x01world\t ");
    json_t *a = next_chat(anon), *b = next_chat(viewer);
    ck_assert_str_eq(str(a, "text"), "你好, world");
    ck_assert_str_eq(str(a, "id"), str(b, "id"));
    ck_assert_str_eq(str(json_object_get(a, "user"), "id"), "u1");
    ck_assert_str_eq(str(json_object_get(a, "user"), "role"), "viewer");
    ck_assert_int_gt(json_integer_value(json_object_get(a, "ts_ms")), 0);

    /* anonymous viewers read but do not write */
    say(anon, "hi");
    json_decref(next_error(anon, "unauthorized"));

    /* a late joiner finds the message in history, with the same id */
    harness_ws *late = ws_open(sl.port);
    j = join_as(late, "ch1", 0, NULL, NULL, NULL);
    json_t *h = json_object_get(j, "history");
    ck_assert_int_eq(json_array_size(h), 1);
    ck_assert_str_eq(str(json_array_get(h, 0), "id"), str(a, "id"));
    ck_assert_str_eq(str(json_array_get(h, 0), "text"), "你好, world");
    json_decref(j);

    /* ping */
    ck_assert(harness_ws_send(late, "{\"type\":\"ping\"}"));
    json_decref(harness_ws_expect(late, "pong", WAIT));
    json_decref(a);
    json_decref(b);
    harness_ws_free(anon);
    harness_ws_free(viewer);
    harness_ws_free(late);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("hub");
    tcase_add_checked_fixture(tc, start, stop);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, join_chat_and_history);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(suite());
}
