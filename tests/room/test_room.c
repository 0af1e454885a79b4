/* Tests of room: the event vocabulary, and every Lua script of silklive compiling in a real
 * Redis after its includes are resolved. */
#include "room/room.h"
#include "harness/harness.h"

#include <check.h>
#include <hiredis/hiredis.h>
#include <string.h>

START_TEST(vocabulary_round_trips)
{
    int named = 0;
    for (int t = SL_ROOM_EV_UNKNOWN + 1; t < SL_ROOM_EV_COUNT; t++) {
        const char *name = sl_room_event_name((enum sl_room_event)t);
        ck_assert_msg(name != NULL && *name, "event %d has no name", t);
        ck_assert_int_eq(sl_room_event_parse(name), t);
        json_t *ev = sl_room_event_new((enum sl_room_event)t);
        ck_assert_str_eq(json_string_value(json_object_get(ev, "type")), name);
        ck_assert_int_eq(sl_room_event_type(ev), t);
        json_decref(ev);
        named++;
    }
    ck_assert_int_eq(named, SL_ROOM_EV_COUNT - 1);
    ck_assert_ptr_null(sl_room_event_name(SL_ROOM_EV_UNKNOWN));
    ck_assert_ptr_null(sl_room_event_name(SL_ROOM_EV_COUNT));
    ck_assert_int_eq(sl_room_event_parse(NULL), SL_ROOM_EV_UNKNOWN);
    ck_assert_int_eq(sl_room_event_parse("_kick"), SL_ROOM_EV_UNKNOWN);
    ck_assert_int_eq(sl_room_event_parse("Pin"), SL_ROOM_EV_UNKNOWN);
    json_t *odd = json_pack("{s:i}", "type", 3);
    ck_assert_int_eq(sl_room_event_type(odd), SL_ROOM_EV_UNKNOWN);
    json_decref(odd);
    /* the events shown at the picture's moment (api.md: pdt_ms) */
    ck_assert(sl_room_event_synced(SL_ROOM_EV_PIN));
    ck_assert(sl_room_event_synced(SL_ROOM_EV_UNPIN));
    ck_assert(sl_room_event_synced(SL_ROOM_EV_SALE));
    ck_assert(!sl_room_event_synced(SL_ROOM_EV_CHAT));
    ck_assert(!sl_room_event_synced(SL_ROOM_EV_STREAM));
}
END_TEST

/* Each script, its includes spliced in, loads into Redis 7: a syntax error or an include that
 * did not resolve fails here rather than at the first request that runs it. */
START_TEST(every_script_compiles)
{
    struct harness_redis r;
    harness_redis_start(&r, NULL);
    redisContext *c = redisConnect("127.0.0.1", r.port);
    ck_assert(c != NULL && c->err == 0);
    int n = 0;
    for (const struct sl_lua_script *s = sl_lua_all; s->name; s++, n++) {
        ck_assert_msg(strstr(s->source, "--! include") == NULL, "%s: an include was left", s->name);
        redisReply *reply = redisCommand(c, "SCRIPT LOAD %s", s->source);
        ck_assert_ptr_nonnull(reply);
        ck_assert_msg(reply->type == REDIS_REPLY_STRING, "%s: %s", s->name,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "not a sha");
        freeReplyObject(reply);
    }
    ck_assert_int_ge(n, 15);
    /* the scripts that append to a room carry room_emit, the one definition of how */
    ck_assert_ptr_nonnull(strstr(sl_lua_chat_send, "local function room_emit("));
    ck_assert_ptr_nonnull(strstr(sl_lua_chat_moderate, "local function room_emit("));
    ck_assert_ptr_nonnull(strstr(sl_lua_room_emit, "local function room_emit("));
    redisFree(c);
    harness_redis_stop(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("room");
    TCase *tc = tcase_create("room");
    tcase_add_test(tc, vocabulary_round_trips);
    tcase_add_test(tc, every_script_compiles);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
