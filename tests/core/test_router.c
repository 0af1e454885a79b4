/* Tests of core/router.c: patterns, captures, 404 versus 405 with Allow. */
#include "core/internal.h"
#include "harness/harness.h"

#include <check.h>
#include <string.h>

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

static const char *capture(const struct route_captures *caps, const char *name)
{
    static char buf[64];
    for (guint i = 0; i < caps->n; i++)
        if (strcmp(caps->at[i].name, name) == 0) {
            g_snprintf(buf, sizeof buf, "%.*s", (int)caps->at[i].len, caps->at[i].value);
            return buf;
        }
    return NULL;
}

START_TEST(exact_and_captures)
{
    router *r = make();
    struct route_captures caps;
    const struct route *rt;
    ck_assert_int_eq(router_match(r, "GET", "/api/v1/pavilions", &caps, &rt, NULL), ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "list");
    ck_assert_uint_eq(caps.n, 0);
    ck_assert_int_eq(router_match(r, "POST", "/api/v1/pavilions", &caps, &rt, NULL), ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "create");
    ck_assert_int_eq(router_match(r, "GET", "/api/v1/pavilions/CL", &caps, &rt, NULL), ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "one");
    ck_assert_uint_eq(caps.n, 1);
    ck_assert_str_eq(capture(&caps, "code"), "CL");
    ck_assert_int_eq(router_match(r, "POST", "/api/v1/pavilions/PE/channels", &caps, &rt, NULL),
                     ROUTE_FOUND);
    ck_assert_str_eq(capture(&caps, "code"), "PE");
    ck_assert_int_eq(router_match(r, "DELETE", "/api/v1/channels/a-b_c/pin", &caps, &rt, NULL),
                     ROUTE_FOUND);
    ck_assert_str_eq(rt->user, "unpin");
    ck_assert_str_eq(capture(&caps, "id"), "a-b_c");
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
                           "/api/v1/pavilionsX",
                           "/api/v1/pavilion",
                           "/api/v1/channels//pin",
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
