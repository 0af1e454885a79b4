/* Tests of core/metrics.c: Prometheus text exposition of counters and gauges. */
#include "core/core.h"
#include "harness/harness.h"

#include <check.h>
#include <string.h>

START_TEST(render_counters_and_gauges)
{
    sl_metric *a =
        sl_metric_get("t_requests_total", SL_METRIC_COUNTER, "Requests", "code=\"200\"", 1);
    sl_metric *b =
        sl_metric_get("t_requests_total", SL_METRIC_COUNTER, "Requests", "code=\"404\"", 1);
    sl_metric *g = sl_metric_get("t_live", SL_METRIC_GAUGE, "Live streams", NULL, 1);
    sl_metric *sec = sl_metric_get("t_seconds_total", SL_METRIC_COUNTER, "Seconds", NULL, 1000000);
    ck_assert_ptr_eq(a,
                     sl_metric_get("t_requests_total", SL_METRIC_COUNTER, NULL, "code=\"200\"", 1));
    sl_metric_add(a, 3);
    sl_metric_add(b, 1);
    sl_metric_set(g, 7);
    sl_metric_add(g, -2);
    sl_metric_add(sec, 1500000);
    ck_assert_int_eq(sl_metric_value(g), 5);
    GString *t = sl_metrics_render();
    ck_assert_ptr_nonnull(
        strstr(t->str, "# HELP t_requests_total Requests\n# TYPE t_requests_total counter\n"
                       "t_requests_total{code=\"200\"} 3\nt_requests_total{code=\"404\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t->str, "# TYPE t_live gauge\nt_live 5\n"));
    ck_assert_ptr_nonnull(strstr(t->str, "t_seconds_total 1.500000\n"));
    /* families are sorted by name; each HELP appears once */
    ck_assert_ptr_null(
        strstr(strstr(t->str, "# HELP t_requests_total") + 1, "# HELP t_requests_total"));
    ck_assert(strstr(t->str, "# HELP t_live") < strstr(t->str, "# HELP t_requests_total"));
    g_string_free(t, TRUE);
}
END_TEST

static gpointer adder(gpointer m)
{
    for (int i = 0; i < 100000; i++)
        sl_metric_add(m, 1);
    return NULL;
}

START_TEST(updates_from_threads)
{
    sl_metric *m = sl_metric_get("t_threads_total", SL_METRIC_COUNTER, "x", NULL, 1);
    GThread *t1 = g_thread_new("a", adder, m), *t2 = g_thread_new("b", adder, m);
    g_thread_join(t1);
    g_thread_join(t2);
    ck_assert_int_eq(sl_metric_value(m), 200000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, render_counters_and_gauges);
    tcase_add_test(tc, updates_from_threads);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
