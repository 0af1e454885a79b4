/* Tests of core/router.c: patterns, captures, 404 versus 405 with Allow. */
#include "core/internal.h"
#include "harness/harness.h"

#include <check.h>

static void h1(sl_http_req *r, void *u)
{
}
static void h2(sl_http_req *r, void *u)
{
}

static router *make(void)
{
    router *r = router_new();
    router_add(r, "GET", "/api/v1/pavilions", h1, "list");
    router_add(r, "POST", "/api/v1/pavilions", h2, "create");
    router_add(r, "GET", "/api/v1/pavilions/{code}", h1, "one");
    router_add(r, "POST", "/api/v1/pavilions/{code}/channels", h2, "channels");
    router_add(r, "DELETE", "/api/v1/channels/{id}/pin", h1, "unpin");
    router_add(r, "POST", "/api/v1/channels/{id}/pin", h2, "pin");
    return r;
}

START_TEST(exact_and_captures)
{
    router *r = make();
    GHashTable *params = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    const struct route *rt;
    ck_assert_int_eq(router_match(r, "GET", "/api/v1/pavilions", params, &rt, NULL), ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "list");
    ck_assert_int_eq(router_match(r, "POST", "/api/v1/pavilions", params, &rt, NULL), ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "create");
    ck_assert_int_eq(router_match(r, "GET", "/api/v1/pavilions/CL", params, &rt, NULL),
                     ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "one");
    ck_assert_str_eq(g_hash_table_lookup(params, "code"), "CL");
    g_hash_table_remove_all(params);
    ck_assert_int_eq(router_match(r, "POST", "/api/v1/pavilions/PE/channels", params, &rt, NULL),
                     ROUTE_FOUND);
    ck_assert_str_eq(g_hash_table_lookup(params, "code"), "PE");
    g_hash_table_unref(params);
    router_free(r);
}
END_TEST

START_TEST(not_found)
{
    router *r = make();
    const struct route *rt;
    const char *paths[] = {"/",
                           "",
                           "api/v1/pavilions",
                           "/api/v1/pavilions/",
                           "/api/v1/pavilions//channels",
                           "/api/v1/pavilions/CL/channels/x",
                           "/api/v1",
                           "/API/v1/pavilions"};
    for (size_t i = 0; i < G_N_ELEMENTS(paths); i++)
        ck_assert_msg(router_match(r, "GET", paths[i], NULL, &rt, NULL) == ROUTE_NOT_FOUND, "%s",
                      paths[i]);
    router_free(r);
}
END_TEST

START_TEST(method_not_allowed_lists_allow)
{
    router *r = make();
    const struct route *rt;
    GString *allow = g_string_new(NULL);
    ck_assert_int_eq(router_match(r, "PUT", "/api/v1/channels/c1/pin", NULL, &rt, allow),
                     ROUTE_BAD_METHOD);
    ck_assert_ptr_null(rt);
    ck_assert_str_eq(allow->str, "DELETE, POST");
    g_string_truncate(allow, 0);
    ck_assert_int_eq(router_match(r, "DELETE", "/api/v1/pavilions", NULL, &rt, allow),
                     ROUTE_BAD_METHOD);
    ck_assert_str_eq(allow->str, "GET, POST");
    g_string_free(allow, TRUE);
    router_free(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_add_test(tc, exact_and_captures);
    tcase_add_test(tc, not_found);
    tcase_add_test(tc, method_not_allowed_lists_allow);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
