/* router: method + path pattern -> handler; "{name}" segments capture, the rest match exactly. */
#include "internal.h"

#include <string.h>

struct router {
    GPtrArray *routes; /* owned struct route* */
};

static void route_free(gpointer p)
{
    struct route *rt = p;
    g_free(rt->method);
    g_strfreev(rt->segments);
    g_free(rt);
}

router *router_new(void)
{
    router *r = g_new0(router, 1);
    r->routes = g_ptr_array_new_with_free_func(route_free);
    return r;
}

void router_free(router *r)
{
    if (r == NULL) return;
    g_ptr_array_unref(r->routes);
    g_free(r);
}

void router_add(router *r, const char *method, const char *pattern, sl_http_handler fn, void *user)
{
    struct route *rt = g_new0(struct route, 1);
    rt->method = g_strdup(method);
    rt->segments = g_strsplit(pattern[0] == '/' ? pattern + 1 : pattern, "/", -1);
    rt->fn = fn;
    rt->user = user;
    g_ptr_array_add(r->routes, rt);
}

static gboolean is_capture(const char *seg)
{
    size_t n = strlen(seg);
    return n > 2 && seg[0] == '{' && seg[n - 1] == '}';
}

/* TRUE when the path's segments fit the pattern; captures go into params when non-NULL. */
static gboolean route_fits(const struct route *rt, gchar **parts, GHashTable *params)
{
    guint n = g_strv_length(rt->segments);
    if (n != g_strv_length(parts)) return FALSE;
    for (guint i = 0; i < n; i++) {
        const char *want = rt->segments[i];
        if (is_capture(want)) {
            if (parts[i][0] == '\0') return FALSE;
        } else if (strcmp(want, parts[i]) != 0) {
            return FALSE;
        }
    }
    if (params) {
        for (guint i = 0; i < n; i++) {
            const char *want = rt->segments[i];
            if (is_capture(want))
                g_hash_table_insert(params, g_strndup(want + 1, strlen(want) - 2),
                                    g_strdup(parts[i]));
        }
    }
    return TRUE;
}

enum route_result router_match(const router *r, const char *method, const char *path,
                               GHashTable *params, const struct route **out, GString *allow)
{
    *out = NULL;
    if (path == NULL || path[0] != '/') return ROUTE_NOT_FOUND;
    gchar **parts = g_strsplit(path + 1, "/", -1);
    gboolean path_known = FALSE;
    for (guint i = 0; i < r->routes->len; i++) {
        const struct route *rt = r->routes->pdata[i];
        if (!route_fits(rt, parts, NULL)) continue;
        path_known = TRUE;
        if (strcmp(rt->method, method) == 0) {
            route_fits(rt, parts, params);
            *out = rt;
            g_strfreev(parts);
            return ROUTE_FOUND;
        }
        if (allow && !strstr(allow->str, rt->method)) {
            if (allow->len) g_string_append(allow, ", ");
            g_string_append(allow, rt->method);
        }
    }
    g_strfreev(parts);
    return path_known ? ROUTE_BAD_METHOD : ROUTE_NOT_FOUND;
}
