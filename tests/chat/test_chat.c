/* Integration tests of chat/ with real WebSocket clients, a real redis-server and the real
 * silklive binary: join, chat, history, recovery, rules, moderation, events from commerce, two
 * nodes on one Redis, slow consumers and shutdown. */
#include "core/core.h"
#include "harness/harness.h"
#include "harness/ws.h"

#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
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

/* ---- recovery ---- */

START_TEST(recovery_with_since)
{
    harness_ws *a = ws_open(sl.port), *b = ws_open(sl.port);
    json_decref(join_as(a, "ch1", SL_ROLE_VIEWER, "ua", NULL, NULL));
    json_decref(join_as(b, "ch1", SL_ROLE_VIEWER, "ub", NULL, NULL));
    say(b, "one");
    json_t *first = next_chat(a);
    char *last = g_strdup(str(first, "id"));
    json_decref(first);
    harness_ws_free(a); /* a drops off */
    say(b, "two");
    say(b, "three");
    json_decref(next_chat(b));
    json_decref(next_chat(b));

    harness_ws *again = ws_open(sl.port);
    json_t *j = join_as(again, "ch1", SL_ROLE_VIEWER, "ua", NULL, last);
    json_t *h = json_object_get(j, "history");
    ck_assert_int_eq(json_array_size(h), 2);
    ck_assert_str_eq(str(json_array_get(h, 0), "text"), "two");
    ck_assert_str_eq(str(json_array_get(h, 1), "text"), "three");
    ck_assert(json_is_false(json_object_get(j, "gap")));
    json_decref(j);

    /* a bad since is a bad request, not a lookup */
    ck_assert(harness_ws_send(again, "{\"type\":\"join\",\"channel\":\"ch1\",\"since\":\"x-1\"}"));
    json_decref(next_error(again, "bad_request"));
    /* an unknown channel */
    ck_assert(harness_ws_send(again, "{\"type\":\"join\",\"channel\":\"nope\"}"));
    json_decref(next_error(again, "not_found"));
    g_free(last);
    harness_ws_free(b);
    harness_ws_free(again);
}
END_TEST

/* Pub/sub can deliver an event after a joining viewer's history read already returned it (the
 * room's other members have not seen it yet, so the room does not drop it): the newcomer must
 * not get it twice. Staged: the event goes into the stream first and is published after. */
START_TEST(event_in_joined_history_is_not_delivered_again)
{
    harness_ws *a = ws_open(sl.port), *b = ws_open(sl.port);
    json_decref(join_as(a, "ch1", SL_ROLE_VIEWER, "ua", NULL, NULL));
    const char *text = "{\"type\":\"chat\",\"text\":\"late\",\"user\":{\"id\":\"ux\"}}";
    char *id = harness_redis_cmd(redis.port, "XADD sl:{room:ch1}:history * e %s", text);
    ck_assert_ptr_nonnull(id);
    json_t *j = join_as(b, "ch1", SL_ROLE_VIEWER, "ub", NULL, NULL);
    json_t *h = json_object_get(j, "history");
    json_t *last = json_array_get(h, json_array_size(h) - 1);
    ck_assert_str_eq(str(last, "id"), id);
    json_decref(j);
    char *live = g_strdup_printf("{\"id\":\"%s\",%s", id, text + 1);
    g_free(harness_redis_cmd(redis.port, "PUBLISH silklive:room:ch1 %s", live));
    json_t *on_a = next_chat(a); /* a never saw it: delivered live */
    ck_assert_str_eq(str(on_a, "id"), id);
    json_decref(on_a);
    say(b, "after");
    json_t *on_b = next_chat(b); /* b's next chat is the new one, not the late copy */
    ck_assert_str_eq(str(on_b, "text"), "after");
    json_decref(on_b);
    g_free(live);
    g_free(id);
    harness_ws_free(a);
    harness_ws_free(b);
}
END_TEST

/* Events trimmed from the capped history cannot be replayed: the client is told. */
START_TEST(recovery_gap)
{
    char *r = harness_redis_cmd(
        redis.port, "EVAL %s 1 sl:{room:ch1}:history",
        "for i = 1, 2500 do redis.call('XADD', KEYS[1], 'MAXLEN', '~', 2000, '*', 'e', "
        "'{\"type\":\"chat\",\"text\":\"filler\"}') end return 1");
    g_free(r);
    harness_ws *ws = ws_open(sl.port);
    json_t *j = join_as(ws, "ch1", 0, NULL, NULL, "1-0");
    ck_assert(json_is_true(json_object_get(j, "gap")));
    ck_assert_int_gt(json_array_size(json_object_get(j, "history")), 0);
    json_decref(j);
    /* a plain join replays the last 50 */
    j = join_as(ws, "ch1", 0, NULL, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(j, "history")), 50);
    json_decref(j);
    harness_ws_free(ws);
}
END_TEST

/* ---- chat rules ---- */

START_TEST(rate_limit_per_user)
{
    harness_ws *ws = ws_open(sl.port), *reader = ws_open(sl.port);
    json_decref(join_as(ws, "ch1", SL_ROLE_VIEWER, "fast", NULL, NULL));
    json_decref(join_as(reader, "ch1", 0, NULL, NULL, NULL));
    for (int i = 0; i < 5; i++)
        say(ws, "spam");
    json_t *e = next_error(ws, "rate_limited");
    ck_assert_int_gt(json_integer_value(json_object_get(e, "retry_after_ms")), 0);
    json_decref(e);
    int delivered = 0;
    json_t *m;
    while ((m = harness_ws_expect(reader, "chat", 1000)) != NULL) {
        delivered++;
        json_decref(m);
    }
    ck_assert_int_eq(delivered, 3); /* 3 messages per 2 s */
    harness_ws_free(ws);
    harness_ws_free(reader);
}
END_TEST

START_TEST(bad_frames)
{
    harness_ws *ws = ws_open(sl.port);
    const char *bad[] = {"not json",
                         "[1]",
                         "{\"type\":1}",
                         "{\"type\":\"dance\"}",
                         "{\"type\":\"join\"}",
                         "{\"type\":\"join\",\"channel\":\"a/b\"}",
                         "{\"type\":\"join\",\"channel\":\"ch1\",\"token\":\"nope\"}",
                         "{\"type\":\"chat\",\"text\":\"\"}",
                         "{\"type\":\"chat\",\"text\":\" \\u0001 \"}",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        ck_assert(harness_ws_send(ws, bad[i]));
        json_t *e = harness_ws_expect(ws, "error", WAIT);
        ck_assert_msg(e != NULL, "no error for %s", bad[i]);
        json_decref(e);
    }
    /* 501 characters */
    GString *t = g_string_new("{\"type\":\"chat\",\"text\":\"");
    for (int i = 0; i < 501; i++)
        g_string_append(t, "好");
    g_string_append(t, "\"}");
    ck_assert(harness_ws_send(ws, t->str));
    json_decref(next_error(ws, "bad_request"));
    g_string_free(t, TRUE);
    /* the connection is still up */
    ck_assert(harness_ws_send(ws, "{\"type\":\"ping\"}"));
    json_decref(harness_ws_expect(ws, "pong", WAIT));
    /* binary frames close 1003, frames over 4 KiB 1009 */
    ck_assert(harness_ws_send_frame(ws, 2, "\x01\x02", 2));
    ck_assert_int_eq(harness_ws_wait_close(ws, WAIT), 1003);
    harness_ws_free(ws);
    ws = ws_open(sl.port);
    char big[5000];
    memset(big, 'a', sizeof big);
    ck_assert(harness_ws_send_frame(ws, 1, big, sizeof big));
    ck_assert_int_eq(harness_ws_wait_close(ws, WAIT), 1009);
    harness_ws_free(ws);
    /* the WebSocket lives at /ws only, with its subprotocol */
    int status = 0;
    ck_assert(harness_ws_connect(sl.port, "/other", "silklive.v1", &status) == NULL);
    ck_assert(harness_ws_connect(sl.port, "/ws", "other.v1", &status) == NULL);
    /* HTTP still works beside it */
    ck_assert_int_eq(harness_api(sl.port, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
}
END_TEST

/* ---- moderation ---- */

static int moderate(const char *tok, const char *channel, const char *body, json_t **out)
{
    char path[128];
    g_snprintf(path, sizeof path, "/api/v1/channels/%s/moderation", channel);
    return harness_api(sl.port, "POST", path, tok, NULL, body, out);
}

START_TEST(moderation_actions)
{
    char *host = token(SL_ROLE_HOST, "h1", "CL"), *other = token(SL_ROLE_HOST, "h2", "PE");
    char *viewer = token(SL_ROLE_VIEWER, "v9", NULL);
    harness_ws *u1 = ws_open(sl.port), *u2 = ws_open(sl.port), *watch = ws_open(sl.port);
    json_decref(join_as(u1, "ch1", SL_ROLE_VIEWER, "u1", NULL, NULL));
    json_decref(join_as(u2, "ch1", SL_ROLE_VIEWER, "u2", NULL, NULL));
    json_decref(join_as(watch, "ch1", 0, NULL, NULL, NULL));

    /* who may: the host of the channel's pavilion, not a viewer or another pavilion's host */
    const char *mute = "{\"action\":\"mute\",\"user\":\"u1\",\"duration_s\":60}";
    ck_assert_int_eq(moderate(viewer, "ch1", mute, NULL), 403);
    ck_assert_int_eq(moderate(other, "ch1", mute, NULL), 403);
    ck_assert_int_eq(moderate(NULL, "ch1", mute, NULL), 401);
    ck_assert_int_eq(moderate(host, "nochan", mute, NULL), 404);
    ck_assert_int_eq(moderate(host, "ch1", "{\"action\":\"zap\",\"user\":\"u1\"}", NULL), 400);
    ck_assert_int_eq(moderate(host, "ch1", "{\"action\":\"mute\",\"user\":\"a b\"}", NULL), 400);
    ck_assert_int_eq(moderate(host, "ch1", "{\"action\":\"delete\",\"message_id\":\"1\"}", NULL),
                     400);
    ck_assert_int_eq(moderate(host, "ch1", mute, NULL), 200);
    say(u1, "can you hear me");
    json_decref(next_error(u1, "muted"));
    ck_assert_int_eq(moderate(host, "ch1", "{\"action\":\"unmute\",\"user\":\"u1\"}", NULL), 200);
    say(u1, "back");
    json_t *m = next_chat(watch);
    ck_assert_str_eq(str(m, "text"), "back");

    /* delete: everyone is told, and it is gone from the history of later joins */
    char *body = g_strdup_printf("{\"action\":\"delete\",\"message_id\":\"%s\"}", str(m, "id"));
    ck_assert_int_eq(moderate(host, "ch1", body, NULL), 200);
    json_t *d = harness_ws_expect(watch, "moderation", WAIT);
    ck_assert(d != NULL);
    ck_assert_str_eq(str(d, "action"), "delete");
    ck_assert_str_eq(str(d, "message_id"), str(m, "id"));
    json_decref(d);
    harness_ws *late = ws_open(sl.port);
    json_t *j = join_as(late, "ch1", 0, NULL, NULL, NULL);
    json_t *h = json_object_get(j, "history");
    size_t i;
    json_t *ev;
    json_array_foreach(h, i, ev)
    {
        ck_assert(g_strcmp0(str(ev, "id"), str(m, "id")) != 0);
    }
    json_decref(j);
    g_free(body);
    json_decref(m);

    /* ban: the user's sockets close 1008 and a new join is refused */
    ck_assert_int_eq(moderate(host, "ch1", "{\"action\":\"ban\",\"user\":\"u2\"}", NULL), 200);
    ck_assert_int_eq(harness_ws_wait_close(u2, WAIT), 1008);
    harness_ws *u2b = ws_open(sl.port);
    char *t2 = token(SL_ROLE_VIEWER, "u2", NULL);
    char *join = g_strdup_printf("{\"type\":\"join\",\"channel\":\"ch1\",\"token\":\"%s\"}", t2);
    ck_assert(harness_ws_send(u2b, join));
    json_decref(next_error(u2b, "forbidden"));
    g_free(join);
    g_free(t2);

    /* banned words of the pavilion are masked in chat */
    char *consul = token(SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(harness_api(sl.port, "PUT", "/api/v1/pavilions/CL/banned-words", host, NULL,
                                 "{\"words\":[\"scam\"]}", NULL),
                     403);
    ck_assert_int_eq(harness_api(sl.port, "PUT", "/api/v1/pavilions/CL/banned-words", consul, NULL,
                                 "{\"words\":[\"x\",1]}", NULL),
                     400);
    ck_assert_int_eq(harness_api(sl.port, "PUT", "/api/v1/pavilions/CL/banned-words", consul, NULL,
                                 "{\"words\":[\"scam\",\"假货\"]}", NULL),
                     200);
    json_t *w = NULL;
    ck_assert_int_eq(
        harness_api(sl.port, "GET", "/api/v1/pavilions/CL/banned-words", consul, NULL, NULL, &w),
        200);
    ck_assert_int_eq(json_array_size(json_object_get(w, "words")), 2);
    json_decref(w);
    /* every node reloads the list when told (a control message, then a read): it applies a
     * moment after the PUT, so send until it does (within 3 s), at the user's allowed rate */
    gboolean masked = FALSE;
    for (int attempt = 0; attempt < 5 && !masked; attempt++) {
        if (attempt > 0) g_usleep(700 * 1000);
        say(u1, "this is a SCAM and 假货!");
        m = next_chat(watch);
        masked = g_strcmp0(str(m, "text"), "this is a **** and **!") == 0;
        if (!masked) ck_assert_str_eq(str(m, "text"), "this is a SCAM and 假货!");
        json_decref(m);
    }
    ck_assert_msg(masked, "the pavilion's banned words were never applied");

    g_free(consul);
    g_free(host);
    g_free(other);
    g_free(viewer);
    harness_ws_free(u1);
    harness_ws_free(u2);
    harness_ws_free(u2b);
    harness_ws_free(watch);
    harness_ws_free(late);
}
END_TEST

/* ---- events from commerce ---- */

/* The channel's `viewers` once it equals want, or its last value after 3 s. */
static json_int_t channel_viewers(json_int_t want)
{
    json_int_t viewers = -1;
    for (int i = 0; i < 30 && viewers != want; i++) {
        json_t *chan = NULL;
        ck_assert_int_eq(
            harness_api(sl.port, "GET", "/api/v1/channels/ch1", NULL, NULL, NULL, &chan), 200);
        viewers = json_integer_value(json_object_get(chan, "viewers"));
        json_decref(chan);
        if (viewers != want) g_usleep(100 * 1000);
    }
    return viewers;
}

START_TEST(commerce_events_reach_the_room)
{
    char *consul = token(SL_ROLE_CONSUL, "c1", "CL");
    harness_ws *ws = ws_open(sl.port);
    json_decref(join_as(ws, "ch1", 0, NULL, NULL, NULL));
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions/CL/products", consul, NULL,
                                 "{\"sku\":\"p1\",\"title\":{\"en\":\"Wine\",\"zh\":\"葡萄酒\"},"
                                 "\"price\":{\"amount_minor\":30000,\"currency\":\"CLP\"},"
                                 "\"price_cny_fen\":9900,\"stock_location\":\"bonded_sh\"}",
                                 NULL),
                     201);
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/channels/ch1/pin", consul, NULL,
                                 "{\"sku\":\"p1\"}", NULL),
                     200);
    json_t *pin = harness_ws_expect(ws, "pin", WAIT);
    ck_assert(pin != NULL);
    ck_assert_str_eq(str(json_object_get(pin, "product"), "sku"), "p1");
    ck_assert(str(pin, "id") != NULL);
    json_decref(pin);
    json_t *sale = NULL;
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/sales", consul, NULL,
                                 "{\"channel\":\"ch1\",\"sku\":\"p1\",\"quantity\":10,"
                                 "\"per_user_limit\":2,\"hold_ttl_s\":60}",
                                 &sale),
                     201);
    json_t *ev = harness_ws_expect(ws, "sale", WAIT);
    ck_assert(ev != NULL);
    ck_assert_str_eq(str(json_object_get(ev, "sale"), "id"), str(sale, "id"));
    json_decref(ev);

    /* a new viewer gets the pinned product and the sale in `joined` */
    harness_ws *late = ws_open(sl.port);
    json_t *j = join_as(late, "ch1", 0, NULL, NULL, NULL);
    ck_assert_str_eq(str(json_object_get(j, "pinned"), "sku"), "p1");
    ck_assert_int_eq(json_array_size(json_object_get(j, "sales")), 1);
    ck_assert_str_eq(str(json_array_get(json_object_get(j, "sales"), 0), "id"), str(sale, "id"));
    json_decref(j);
    ck_assert_int_eq(
        harness_api(sl.port, "DELETE", "/api/v1/channels/ch1/pin", consul, NULL, NULL, NULL), 200);
    json_decref(harness_ws_expect(ws, "unpin", WAIT));
    j = join_as(late, "ch1", 0, NULL, NULL, NULL);
    ck_assert(json_is_null(json_object_get(j, "pinned")));
    json_decref(j);

    /* viewers show on the channel (counted every second), and drop when they leave */
    ck_assert_int_eq(channel_viewers(2), 2);
    harness_ws_free(ws);
    harness_ws_free(late);
    ck_assert_int_eq(channel_viewers(0), 0);
    json_decref(sale);
    g_free(consul);
}
END_TEST

/* ---- two nodes, one Redis ---- */

START_TEST(two_nodes_are_one_hub)
{
    struct harness_silklive b;
    start_node(&b, "chat", "");
    harness_ws *on_a = ws_open(sl.port), *on_b = ws_open(b.port);
    json_decref(join_as(on_a, "ch1", SL_ROLE_VIEWER, "ua", NULL, NULL));
    json_decref(join_as(on_b, "ch1", SL_ROLE_VIEWER, "ub", NULL, NULL));
    for (int i = 0; i < 3; i++) {
        char text[16];
        g_snprintf(text, sizeof text, "a%d", i);
        say(on_a, text);
        g_snprintf(text, sizeof text, "b%d", i);
        say(on_b, text);
    }
    /* both see the same six events, in the same order, ids increasing */
    char *seen_a[6], *seen_b[6];
    for (int i = 0; i < 6; i++) {
        json_t *x = next_chat(on_a), *y = next_chat(on_b);
        seen_a[i] = g_strdup_printf("%s %s", str(x, "id"), str(x, "text"));
        seen_b[i] = g_strdup_printf("%s %s", str(y, "id"), str(y, "text"));
        json_decref(x);
        json_decref(y);
    }
    unsigned long long prev_ms = 0, prev_seq = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(seen_a[i], seen_b[i]);
        unsigned long long ms = 0, seq = 0;
        ck_assert_int_eq(sscanf(seen_a[i], "%llu-%llu", &ms, &seq), 2);
        ck_assert(ms > prev_ms || (ms == prev_ms && seq > prev_seq));
        prev_ms = ms;
        prev_seq = seq;
    }
    for (int i = 0; i < 6; i++) {
        g_free(seen_a[i]);
        g_free(seen_b[i]);
    }
    /* presence sums both nodes */
    gboolean two = FALSE;
    for (int i = 0; i < 5 && !two; i++) {
        json_t *p = harness_ws_expect(on_a, "presence", 1500);
        two = p && json_integer_value(json_object_get(p, "viewers")) == 2;
        json_decref(p);
    }
    ck_assert_msg(two, "presence never counted the viewer on the other node");
    /* a node that stops takes its viewers out of the sum */
    harness_ws_free(on_b);
    ck_assert_int_eq(harness_silklive_stop(&b), 0);
    gboolean one = FALSE;
    for (int i = 0; i < 5 && !one; i++) {
        json_t *p = harness_ws_expect(on_a, "presence", 1500);
        one = p && json_integer_value(json_object_get(p, "viewers")) == 1;
        json_decref(p);
    }
    ck_assert(one);
    harness_ws_free(on_a);
}
END_TEST

/* ---- slow consumers and shutdown ---- */

static gpointer publish_burst(gpointer unused)
{
    for (int batch = 0; batch < 40; batch++) {
        g_free(harness_redis_cmd(redis.port, "EVAL %s 0",
                                 "local t = string.rep('x', 1000) for i = 1, 500 do "
                                 "redis.call('PUBLISH', 'silklive:room:ch1', "
                                 "'{\"type\":\"chat\",\"text\":\"' .. t .. '\"}') end return 1"));
        g_usleep(50 * 1000);
    }
    return NULL;
}

START_TEST(slow_consumer_is_closed)
{
    harness_ws *stuck = ws_open(sl.port), *fine = ws_open(sl.port);
    json_decref(join_as(stuck, "ch1", 0, NULL, NULL, NULL));
    json_decref(join_as(fine, "ch1", 0, NULL, NULL, NULL));
    /* 20 MB of events published straight into the room at ~10 MB/s; `stuck` never reads */
    GThread *pub = g_thread_new("publisher", publish_burst, NULL);
    int got = 0;
    json_t *m;
    while (got < 20000 && (m = harness_ws_expect(fine, "chat", WAIT)) != NULL) {
        got++;
        json_decref(m);
    }
    g_thread_join(pub);
    ck_assert_int_eq(got, 20000);
    ck_assert_int_eq(harness_metric(sl.port, "silklive_chat_slow_consumers_total"), 1);
    harness_ws_free(stuck);
    harness_ws_free(fine);
}
END_TEST

START_TEST(shutdown_closes_1001)
{
    harness_ws *ws = ws_open(sl.port);
    json_decref(join_as(ws, "ch1", 0, NULL, NULL, NULL));
    kill(sl.pid, SIGTERM);
    ck_assert_int_eq(harness_ws_wait_close(ws, WAIT), 1001);
    harness_ws_free(ws);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("hub");
    tcase_add_checked_fixture(tc, start, stop);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, join_chat_and_history);
    tcase_add_test(tc, recovery_with_since);
    tcase_add_test(tc, recovery_gap);
    tcase_add_test(tc, event_in_joined_history_is_not_delivered_again);
    tcase_add_test(tc, rate_limit_per_user);
    tcase_add_test(tc, bad_frames);
    tcase_add_test(tc, moderation_actions);
    tcase_add_test(tc, commerce_events_reach_the_room);
    tcase_add_test(tc, two_nodes_are_one_hub);
    tcase_add_test(tc, slow_consumer_is_closed);
    tcase_add_test(tc, shutdown_closes_1001);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(suite());
}
