/* Tests of core/redis.c against a real redis-server: answers, timeouts on a stopped server,
 * reconnect after a restart, and every command answered exactly once. */
#include "core/internal.h"
#include "harness/harness.h"

#include <check.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <string.h>

struct answer {
    int calls;
    int type;
    char *text;
    char *err;
};

static void on_answer(struct redisReply *rep, const char *err, void *user)
{
    struct answer *a = user;
    a->calls++;
    a->type = rep ? rep->type : -1;
    g_free(a->text);
    a->text = rep && rep->str ? g_strndup(rep->str, rep->len) : NULL;
    g_free(a->err);
    a->err = g_strdup(err);
}

static void answer_clear(struct answer *a)
{
    g_clear_pointer(&a->text, g_free);
    g_clear_pointer(&a->err, g_free);
}

static gboolean flag_set(gpointer p)
{
    *(gboolean *)p = TRUE;
    return G_SOURCE_REMOVE;
}

/* Iterate the default context until *done or timeout_ms. */
static void run_until(const int *done, int want, int timeout_ms)
{
    gboolean expired = FALSE;
    guint t = g_timeout_add((guint)timeout_ms, flag_set, &expired);
    while (*done < want && !expired)
        g_main_context_iteration(NULL, TRUE);
    if (!expired) g_source_remove(t);
}

static void run_until_connected(sl_redis *r, gboolean want, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + timeout_ms * 1000;
    while (sl_redis_connected(r) != want && g_get_monotonic_time() < end) {
        gboolean tick = FALSE;
        g_timeout_add(10, flag_set, &tick);
        while (!tick)
            g_main_context_iteration(NULL, TRUE);
    }
}

static sl_redis *connect_to(int port, int timeout_ms)
{
    char *url = g_strdup_printf("redis://127.0.0.1:%d", port);
    sl_redis *r = redis_new(g_main_context_default(), url, timeout_ms, NULL);
    g_free(url);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(redis_connect_wait(r, 3000, NULL), SL_OK);
    return r;
}

START_TEST(commands_are_answered)
{
    struct harness_redis hr;
    harness_redis_start(&hr, NULL);
    sl_redis *r = connect_to(hr.port, 1000);
    struct answer a = {0}, b = {0};
    ck_assert_int_eq(sl_redis_command(r, on_answer, &a, "SET k %s", "v 1"), SL_OK);
    ck_assert_int_eq(sl_redis_command(r, on_answer, &b, "GET k"), SL_OK);
    run_until(&b.calls, 1, 2000);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_str_eq(b.text, "v 1");
    const char *argv[] = {"INCRBY", "n", "5"};
    struct answer c = {0};
    ck_assert_int_eq(sl_redis_command_argv(r, on_answer, &c, 3, argv, NULL), SL_OK);
    run_until(&c.calls, 1, 2000);
    ck_assert_int_eq(c.type, REDIS_REPLY_INTEGER);
    answer_clear(&a);
    answer_clear(&b);
    answer_clear(&c);
    redis_free(r);
    harness_redis_stop(&hr);
}
END_TEST

static gboolean busy_loop(gpointer unused)
{
    g_usleep(5000); /* every iteration of the loop also does 5 ms of other work */
    return G_SOURCE_CONTINUE;
}

/* A server that keeps answering is not hung: when this loop is too busy to read a burst of
 * replies in time, the commands it was slow for may time out, but the connection stays, so the
 * other commands in flight are answered (not failed as "disconnected"), nothing reconnects,
 * and replies already waiting in the socket are read before a command is called late. */
START_TEST(busy_loop_keeps_the_connection)
{
    struct harness_redis hr;
    harness_redis_start(&hr, NULL);
    sl_redis *r = connect_to(hr.port, 1000);
    sl_metric *reconnects = sl_metric_get("silklive_redis_reconnects_total", SL_METRIC_COUNTER,
                                          "Redis connections lost", NULL, 1);
    int64_t reconnects_before = sl_metric_value(reconnects);
    char *big = g_malloc(1001);
    memset(big, 'x', 1000);
    big[1000] = '\0';
    struct answer set = {0};
    ck_assert_int_eq(sl_redis_command(r, on_answer, &set, "SET big %s", big), SL_OK);
    run_until(&set.calls, 1, 2000);
    enum { N = 8000 }; /* 8 MB of replies: ~500 reads of 16 KiB, 5 ms each: 2.5 s > 1 s */
    struct answer *a = g_new0(struct answer, N);
    int done = 0;
    guint busy = g_idle_add_full(G_PRIORITY_DEFAULT, busy_loop, NULL, NULL);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(sl_redis_command(r, on_answer, &a[i], "GET big"), SL_OK);
    gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (done < N && g_get_monotonic_time() < end) {
        g_main_context_iteration(NULL, TRUE);
        for (done = 0; done < N && a[done].calls == 1; done++) {
        }
    }
    g_source_remove(busy);
    int ok = 0, late = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(a[i].calls, 1);
        if (a[i].text && strcmp(a[i].text, big) == 0)
            ok++;
        else if (a[i].err && strcmp(a[i].err, "timeout") == 0)
            late++;
        answer_clear(&a[i]);
    }
    ck_assert_int_eq(ok + late, N); /* none failed as "disconnected" */
    ck_assert_int_gt(ok, 0);
    ck_assert_int_eq(sl_metric_value(reconnects), reconnects_before);
    ck_assert(sl_redis_connected(r));
    g_free(a);
    g_free(big);
    answer_clear(&set);
    redis_free(r);
    harness_redis_stop(&hr);
}
END_TEST

START_TEST(unreachable_at_start)
{
    int port = harness_free_port();
    char *url = g_strdup_printf("redis://127.0.0.1:%d", port);
    sl_redis *r = redis_new(g_main_context_default(), url, 500, NULL);
    GError *e = NULL;
    ck_assert_int_eq(redis_connect_wait(r, 2000, &e), SL_ERR);
    ck_assert_ptr_nonnull(strstr(e->message, url));
    struct answer a = {0};
    ck_assert_int_eq(sl_redis_command(r, on_answer, &a, "PING"), SL_ERR);
    ck_assert_int_eq(a.calls, 0); /* an error return never also calls back */
    g_error_free(e);
    g_free(url);
    redis_free(r);
}
END_TEST

START_TEST(stopped_server_times_out_then_recovers)
{
    struct harness_redis hr;
    harness_redis_start(&hr, NULL);
    sl_redis *r = connect_to(hr.port, 300);
    kill(hr.pid, SIGSTOP);
    struct answer a[20] = {{0}};
    int total = 0;
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(sl_redis_command(r, on_answer, &a[i], "INCR n"), SL_OK);
    gint64 t0 = g_get_monotonic_time();
    for (int i = 0; i < 20; i++)
        run_until(&a[i].calls, 1, 3000);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(a[i].calls, 1);
        ck_assert_ptr_nonnull(a[i].err);
        total += a[i].calls;
    }
    ck_assert_int_eq(total, 20);
    ck_assert_int_lt(g_get_monotonic_time() - t0, 2 * G_USEC_PER_SEC);
    ck_assert(!sl_redis_connected(r));
    kill(hr.pid, SIGCONT);
    run_until_connected(r, TRUE, 5000);
    ck_assert(sl_redis_connected(r));
    struct answer ok = {0};
    ck_assert_int_eq(sl_redis_command(r, on_answer, &ok, "PING"), SL_OK);
    run_until(&ok.calls, 1, 2000);
    ck_assert_str_eq(ok.text, "PONG");
    /* late replies to the timed-out commands never reach their callers a second time */
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(a[i].calls, 1);
        answer_clear(&a[i]);
    }
    answer_clear(&ok);
    redis_free(r);
    harness_redis_stop(&hr);
}
END_TEST

START_TEST(reconnects_after_restart)
{
    struct harness_redis hr;
    harness_redis_start(&hr, NULL);
    sl_redis *r = connect_to(hr.port, 1000);
    struct answer inflight = {0};
    kill(hr.pid, SIGKILL);
    waitpid(hr.pid, NULL, 0);
    hr.pid = 0;
    sl_redis_command(r, on_answer, &inflight, "PING"); /* may or may not be accepted */
    run_until_connected(r, FALSE, 3000);
    ck_assert(!sl_redis_connected(r));
    ck_assert_int_le(inflight.calls, 1);
    answer_clear(&inflight);
    /* the same port again */
    harness_redis_restart(&hr, NULL);
    run_until_connected(r, TRUE, 8000);
    ck_assert(sl_redis_connected(r));
    redis_free(r);
    harness_redis_stop(&hr);
}
END_TEST

START_TEST(password_in_the_url)
{
    struct harness_redis hr;
    harness_redis_start(&hr, NULL);
    g_free(harness_redis_cmd(hr.port, "CONFIG SET requirepass %s", "s3cret pass"));
    char *url = g_strdup_printf("redis://:s3cret pass@127.0.0.1:%d", hr.port);
    sl_redis *r = redis_new(g_main_context_default(), url, 1000, NULL);
    ck_assert_int_eq(redis_connect_wait(r, 3000, NULL), SL_OK);
    /* never in what silklive prints */
    ck_assert_ptr_null(strstr(redis_describe(r), "s3cret"));
    struct answer a = {0};
    ck_assert_int_eq(sl_redis_command(r, on_answer, &a, "SET k v"), SL_OK);
    run_until(&a.calls, 1, 2000);
    ck_assert_int_eq(a.type, REDIS_REPLY_STATUS);
    redis_free(r);
    g_free(url);
    /* a wrong one: commands are refused, not run unauthenticated */
    url = g_strdup_printf("redis://default:wrong@127.0.0.1:%d", hr.port);
    r = redis_new(g_main_context_default(), url, 1000, NULL);
    ck_assert_int_eq(redis_connect_wait(r, 3000, NULL), SL_OK);
    struct answer b = {0};
    ck_assert_int_eq(sl_redis_command(r, on_answer, &b, "GET k"), SL_OK);
    run_until(&b.calls, 1, 2000);
    ck_assert_int_eq(b.type, REDIS_REPLY_ERROR);
    redis_free(r);
    g_free(url);
    answer_clear(&a);
    answer_clear(&b);
    ck_assert_int_eq(sl_redis_url_check("redis://:@127.0.0.1:1", NULL), SL_ERR);
    ck_assert_int_eq(sl_redis_url_check("redis://u:p@127.0.0.1:1/2", NULL), SL_OK);
    harness_redis_stop(&hr);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, commands_are_answered);
    tcase_add_test(tc, password_in_the_url);
    tcase_add_test(tc, busy_loop_keeps_the_connection);
    tcase_add_test(tc, unreachable_at_start);
    tcase_add_test(tc, stopped_server_times_out_then_recovers);
    tcase_add_test(tc, reconnects_after_restart);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
