/* fuzz_router: route matching on arbitrary paths and methods; captures never hold a '/'. */
#include "core/internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void handler(sl_http_req *r, void *u)
{
}

static router *routes;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (routes == NULL) {
        routes = router_new();
        router_add(routes, "GET", "/api/v1/pavilions/{code}", handler, NULL);
        router_add(routes, "POST", "/api/v1/pavilions/{code}/channels", handler, NULL);
        router_add(routes, "GET", "/api/v1/channels/{id}", handler, NULL);
        router_add(routes, "DELETE", "/api/v1/channels/{id}/pin", handler, NULL);
    }
    /* first byte picks the method, the rest is the path (as lws hands it over: NUL-terminated) */
    static const char *methods[] = {"GET", "POST", "DELETE", "PUT"};
    if (size == 0) return 0;
    char *path = g_strndup((const char *)data + 1, size - 1);
    struct route_captures caps;
    GString *allow = g_string_new(NULL);
    const struct route *rt;
    if (router_match(routes, methods[data[0] % 4], path, &caps, &rt, allow) == ROUTE_FOUND) {
        if (caps.n > ROUTE_CAPTURES_MAX) __builtin_trap();
        for (guint i = 0; i < caps.n; i++) {
            const char *v = caps.at[i].value;
            size_t n = caps.at[i].len;
            /* inside the path, one whole non-empty segment */
            if (n == 0 || v < path || v + n > path + strlen(path) || memchr(v, '/', n))
                __builtin_trap();
        }
    }
    g_string_free(allow, TRUE);
    g_free(path);
    return 0;
}
