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
    GHashTable *params = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GString *allow = g_string_new(NULL);
    const struct route *rt;
    if (router_match(routes, methods[data[0] % 4], path, params, &rt, allow) == ROUTE_FOUND) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, params);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (strchr(v, '/') || *(char *)v == '\0') __builtin_trap();
    }
    g_string_free(allow, TRUE);
    g_hash_table_unref(params);
    g_free(path);
    return 0;
}
