/* server: brings silklive up on one GLib loop (Redis, lws HTTP/WebSocket vhost, modules),
 * serves the operations endpoints, and shuts everything down in order at SIGTERM/SIGINT. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHUTDOWN_WATCHDOG_S 9
#define MODULE_SLOTS        4
#define SHUTDOWN_DRAIN_MS   300

struct sl_server {
    struct sl_config *cfg; /* owned */
    GMainContext *ctx;
    GMainLoop *loop;    /* owned */
    router *routes;     /* owned */
    GArray *protocols;  /* owned struct lws_protocols, zero-terminated at start */
    GPtrArray *modules; /* const struct sl_module*, enabled ones, in start order */
    void *module_data[MODULE_SLOTS];
    evloop *evloop;            /* owned; runs lws' sockets */
    struct lws_context *lws;   /* owned */
    sl_redis *redis;           /* owned */
    sl_redis *pubsub;          /* owned; subscriber connection */
    char *node_id;             /* owned */
    embedded_redis *embedded;  /* owned */
    struct peer_limits *peers; /* owned */
    /* [redis] wait_replicas: confirmed orders go over a connection of their own, where a WAIT
     * after each holds back only other orders, and only while replicas are online */
    int64_t wait_replicas, wait_ms;
    sl_redis *orders;        /* owned; NULL when nothing is waited for */
    int64_t replicas_online; /* as the primary's ROLE said last */
    guint role_timer;
    int lock_fd;
    guint sig_term, sig_int;
    gboolean started, stopping;
    gint64 started_us;
};

struct peer_limits *server_peer_limits(sl_server *srv)
{
    return srv->peers;
}

sl_redis *sl_server_redis_orders(const sl_server *srv)
{
    return srv->orders ? srv->orders : srv->redis;
}

int sl_redis_wait_replicas(sl_server *srv, sl_redis_cb cb, void *user)
{
    /* With no replica online (the one left was just promoted) a WAIT could only time out,
     * and each would stall the orders behind it. */
    if (srv->orders == NULL || srv->replicas_online <= 0 || !sl_redis_connected(srv->orders))
        return SL_ERR;
    return sl_redis_command(srv->orders, cb, user, "WAIT %lld %lld",
                            (long long)MIN(srv->wait_replicas, srv->replicas_online),
                            (long long)srv->wait_ms);
}

/* ROLE of the primary: [ "master", offset, [[host, port, offset], ...] ] */
static void role_answered(struct redisReply *r, const char *err, void *user)
{
    sl_server *srv = user;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
        r->element[2]->type == REDIS_REPLY_ARRAY)
        srv->replicas_online = (int64_t)r->element[2]->elements;
    else
        srv->replicas_online = 0;
}

static gboolean role_poll(gpointer data)
{
    sl_server *srv = data;
    if (sl_redis_command(srv->redis, role_answered, srv, "ROLE") != SL_OK) srv->replicas_online = 0;
    return G_SOURCE_CONTINUE;
}

int64_t sl_redis_replicas_wanted(const sl_server *srv)
{
    return srv->wait_replicas;
}

int sl_server_peer_event(sl_server *srv, struct lws *wsi, int reason, void *user)
{
    return peer_limits_event(srv->peers, wsi, reason, user);
}

router *server_router(sl_server *srv)
{
    return srv->routes;
}
const char *server_secret(const sl_server *srv)
{
    return srv->cfg->secret;
}
const char *server_web_root(const sl_server *srv)
{
    return srv->cfg->web_dir;
}
const char *server_media_root(const sl_server *srv)
{
    return srv->cfg->media_dir;
}
const struct sl_config *sl_server_config(const sl_server *srv)
{
    return srv->cfg;
}
GMainContext *sl_server_main_context(const sl_server *srv)
{
    return srv->ctx;
}
struct lws_context *sl_server_lws(const sl_server *srv)
{
    return srv->lws;
}
sl_redis *sl_server_redis(const sl_server *srv)
{
    return srv->redis;
}
const char *sl_server_node_id(const sl_server *srv)
{
    return srv->node_id;
}

void sl_pubsub_subscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user)
{
    g_return_if_fail(srv->pubsub != NULL);
    redis_subscribe(srv->pubsub, channel, cb, user);
}
void sl_pubsub_unsubscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user)
{
    if (srv->pubsub) redis_unsubscribe(srv->pubsub, channel, cb, user);
}

static int module_slot(unsigned mask)
{
    int slot = __builtin_ctz(mask);
    g_return_val_if_fail(slot < MODULE_SLOTS, 0);
    return slot;
}
void sl_server_set_module_data(sl_server *srv, unsigned mask, void *data)
{
    srv->module_data[module_slot(mask)] = data;
}
void *sl_server_module_data(const sl_server *srv, unsigned mask)
{
    return srv->module_data[module_slot(mask)];
}

void sl_http_route(sl_server *srv, const char *method, const char *pattern, sl_http_handler fn,
                   void *user)
{
    router_add(srv->routes, method, pattern, fn, user);
}

sl_server *sl_server_new(struct sl_config *cfg)
{
    sl_server *srv = g_new0(sl_server, 1);
    srv->cfg = cfg;
    srv->ctx = g_main_context_default();
    srv->loop = g_main_loop_new(srv->ctx, FALSE);
    srv->routes = router_new();
    srv->protocols = g_array_new(TRUE, TRUE, sizeof(struct lws_protocols));
    srv->modules = g_ptr_array_new();
    srv->lock_fd = -1;
    srv->node_id = g_strdup_printf("%s:%d:%08x", g_get_host_name(), (int)getpid(), g_random_int());
    struct lws_protocols http = {
        .name = "http",
        .callback = (lws_callback_function *)http_callback,
        .per_session_data_size = http_session_size(),
        .rx_buffer_size = 0,
    };
    g_array_append_val(srv->protocols, http);
    struct lws_protocols reject = {
        .name = "http-reject",
        .callback = (lws_callback_function *)http_reject_callback,
    };
    g_array_append_val(srv->protocols, reject);
    return srv;
}

void sl_server_add_module(sl_server *srv, const struct sl_module *m)
{
    if ((srv->cfg->modules & m->mask) == 0) return;
    g_ptr_array_add(srv->modules, (gpointer)m);
}

void sl_server_add_protocol(sl_server *srv, const struct lws_protocols *p)
{
    g_return_if_fail(srv->lws == NULL);
    g_array_append_val(srv->protocols, *p);
}

/* ---- operations endpoints ---- */

static void handle_healthz(sl_http_req *req, void *user)
{
    sl_http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* docs/openapi.json, compiled in (core/CMakeLists.txt) so the description always matches the
 * binary that serves it. */
static void handle_openapi(sl_http_req *req, void *user)
{
    static GBytes *body;
    if (body == NULL) body = g_bytes_new_static(sl_openapi_json, strlen(sl_openapi_json));
    sl_http_reply(req, 200, "application/json", g_bytes_ref(body), NULL);
}

struct readyz_ctx {
    sl_http_req *req; /* owned reference */
    gint64 started_us;
};

static gboolean modules_ready(sl_server *srv, const char **which)
{
    for (guint i = 0; i < srv->modules->len; i++) {
        const struct sl_module *m = srv->modules->pdata[i];
        if (m->ready && !m->ready(srv)) {
            *which = m->name;
            return FALSE;
        }
    }
    return TRUE;
}

static void readyz_pong(struct redisReply *reply, const char *err, void *user)
{
    struct readyz_ctx *c = user;
    sl_server *srv = sl_http_req_server(c->req);
    const char *module = NULL;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        sl_http_reply_error(c->req, 503, "unavailable", "redis: %s",
                            reply ? reply->str : (err ? err : "no answer"));
    } else if (srv->stopping) {
        sl_http_reply_error(c->req, 503, "unavailable", "shutting down");
    } else if (!modules_ready(srv, &module)) {
        sl_http_reply_error(c->req, 503, "unavailable", "module %s is not ready", module);
    } else {
        double ms = (double)(g_get_monotonic_time() - c->started_us) / 1000.0;
        sl_http_reply_json(c->req, 200,
                           json_pack("{s:s, s:{s:s, s:f}}", "status", "ready", "redis", "status",
                                     "ok", "latency_ms", ms));
    }
    sl_http_req_unref(c->req);
    g_free(c);
}

static void handle_readyz(sl_http_req *req, void *user)
{
    sl_server *srv = user;
    struct readyz_ctx *c = g_new0(struct readyz_ctx, 1);
    c->req = sl_http_req_ref(req);
    c->started_us = g_get_monotonic_time();
    if (sl_redis_command(srv->redis, readyz_pong, c, "PING") != SL_OK) {
        sl_http_reply_error(req, 503, "unavailable", "redis is not connected");
        sl_http_req_unref(c->req);
        g_free(c);
    }
}

/* Process figures from /proc, refreshed at each scrape. */
static void process_metrics_update(sl_server *srv)
{
    static sl_metric *rss, *cpu, *uptime;
    if (rss == NULL) {
        rss = sl_metric_get("process_resident_memory_bytes", SL_METRIC_GAUGE,
                            "Resident memory size in bytes", NULL, 1);
        cpu = sl_metric_get("process_cpu_seconds_total", SL_METRIC_COUNTER,
                            "User and system CPU time spent in seconds", NULL, 100);
        uptime = sl_metric_get("silklive_uptime_seconds", SL_METRIC_GAUGE,
                               "Seconds since the server started", NULL, 1);
    }
    char *stat = NULL;
    if (g_file_get_contents("/proc/self/stat", &stat, NULL, NULL)) {
        const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
        unsigned long utime = 0, stime = 0;
        long rss_pages = 0;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                        "%*d %*d %*d %*u %*u %ld",
                        &utime, &stime, &rss_pages) == 3) {
            long hz = sysconf(_SC_CLK_TCK);
            sl_metric_set(cpu, (int64_t)(utime + stime) * 100 / (hz > 0 ? hz : 100));
            sl_metric_set(rss, (int64_t)rss_pages * sysconf(_SC_PAGESIZE));
        }
        g_free(stat);
    }
    sl_metric_set(uptime, (g_get_monotonic_time() - srv->started_us) / G_USEC_PER_SEC);
}

static void handle_metrics(sl_http_req *req, void *user)
{
    process_metrics_update(user);
    GString *text = sl_metrics_render();
    gsize n = text->len;
    sl_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                  g_bytes_new_take(g_string_free(text, FALSE), n), NULL);
}

/* ---- start-up ---- */

static int lock_data_dir(sl_server *srv, GError **err)
{
    const char *dir = srv->cfg->data_dir;
    if (g_mkdir_with_parents(dir, 0700) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot create data dir %s: %s", dir,
                    g_strerror(errno));
        return SL_ERR;
    }
    char *path = g_build_filename(dir, "silklive.lock", NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "data dir %s: %s", dir,
                    e == EWOULDBLOCK ? "in use by another silklive" : g_strerror(e));
        if (fd >= 0) close(fd);
        g_free(path);
        return SL_ERR;
    }
    g_free(path);
    char pid[32];
    int n = g_snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n) { /* informative only */
    }
    srv->lock_fd = fd;
    return SL_OK;
}

/* lws reports a failed bind without its cause; try the bind ourselves first to name it. */
static int probe_listen(const char *what, const char *host, int port, GError **err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[8];
    g_snprintf(service, sizeof service, "%d", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "%s address %s: %s", what, host,
                    gai_strerror(gai));
        return SL_ERR;
    }
    int rc = SL_OK, one = 1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot listen on %s %s:%d: %s", what, host, port,
                    g_strerror(errno));
        rc = SL_ERR;
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return rc;
}

static int start_redis(sl_server *srv, GError **err)
{
    const struct sl_config *c = srv->cfg;
    const char *url = c->redis_url;
    if (strcmp(url, "embedded") == 0) {
        srv->embedded = embedded_redis_start(srv->ctx, c->redis_server, c->data_dir, err);
        if (srv->embedded == NULL) return SL_ERR;
        url = embedded_redis_url(srv->embedded);
    }
    srv->redis = redis_new(srv->ctx, url, c->redis_timeout_ms, err);
    if (srv->redis == NULL) return SL_ERR;
    if (redis_connect_wait(srv->redis, MAX(c->redis_timeout_ms, 3000), err) != SL_OK) return SL_ERR;
    if (srv->wait_replicas > 0) {
        srv->orders =
            redis_new_labelled(srv->ctx, url, c->redis_timeout_ms, "connection=\"orders\"", err);
        if (srv->orders == NULL) return SL_ERR;
        role_poll(srv);
        srv->role_timer = g_timeout_add_seconds(1, role_poll, srv);
    }
    srv->pubsub = redis_new_subscriber(srv->ctx, url, err);
    return srv->pubsub ? SL_OK : SL_ERR;
}

/* libwebsockets gives every HTTP transaction a header table (a struct and 8 KiB of data) and
 * frees it when the transaction ends, so keep-alive API traffic mallocs and frees 8 KiB per
 * request; freeing a block next to the heap's top also makes glibc consolidate its fast bins
 * each time (malloc_consolidate was 3 % of the reserve benchmark's profile). Through lws'
 * allocator hook, a few freed tables of each kind wait to be handed out again. Loop thread
 * only, like all of lws here. */
#define LWS_TABLE_CACHE 64

static struct lws_table_cache {
    const char *reason; /* lws' name for the allocation */
    size_t size;        /* learnt from its first allocation */
    size_t usable;      /* malloc_usable_size of such a block: how a free is recognised */
    void *free[LWS_TABLE_CACHE];
    guint n;
} lws_tables[] = {{.reason = "ah struct"}, {.reason = "ah data"}};

static void *lws_alloc(void *ptr, size_t size, const char *reason)
{
    if (size == 0) {
        if (ptr == NULL) return NULL;
        size_t usable = malloc_usable_size(ptr);
        for (size_t i = 0; i < G_N_ELEMENTS(lws_tables); i++) {
            struct lws_table_cache *t = &lws_tables[i];
            if (t->usable == usable && t->n < LWS_TABLE_CACHE) {
                t->free[t->n++] = ptr;
                return NULL;
            }
        }
        free(ptr);
        return NULL;
    }
    if (ptr == NULL && reason != NULL) {
        for (size_t i = 0; i < G_N_ELEMENTS(lws_tables); i++) {
            struct lws_table_cache *t = &lws_tables[i];
            if (strcmp(reason, t->reason) != 0) continue;
            if (t->size == size && t->n > 0) return t->free[--t->n];
            void *p = malloc(size);
            if (p && t->size == 0) {
                t->size = size;
                t->usable = malloc_usable_size(p);
            }
            return p;
        }
    }
    return realloc(ptr, size);
}

static void lws_tables_drop(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(lws_tables); i++)
        while (lws_tables[i].n > 0)
            free(lws_tables[i].free[--lws_tables[i].n]);
}

static int start_lws(sl_server *srv, GError **err)
{
    const struct sl_config *c = srv->cfg;
    srv->evloop = evloop_new(srv->ctx, err);
    if (srv->evloop == NULL) return SL_ERR;
    void *foreign_loops[1] = {evloop_ev_loop(srv->evloop)};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.foreign_loops = foreign_loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    /* lws' per-thread buffer: the size of each file fragment it sends (HLS segments, pages) and
     * the cap on each send() of a protocol without tx_packet_size; at the default 4 KiB a 1 MiB
     * segment took 256 sends, each after a poll() of the socket. */
    info.pt_serv_buf_size = 65536;
    info.max_http_header_data = 8192;
    info.max_http_header_pool = 256;
    info.timeout_secs = 10;      /* slowloris: a request must complete its headers in time */
    info.keepalive_timeout = 30; /* idle keep-alive connections are closed after this */
    info.fd_limit_per_thread = 0;
    lws_set_allocator(lws_alloc);
    srv->lws = lws_create_context(&info);
    if (srv->lws == NULL) {
        g_set_error(
            err, SL_ERROR, SL_ERROR_IO,
            "cannot create the libwebsockets context (is libwebsockets-evlib-ev installed?)");
        return SL_ERR;
    }
    if (evloop_attach(srv->evloop, srv->lws) != SL_OK) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO,
                    "libwebsockets %s keeps its timers in an unknown layout", LWS_LIBRARY_VERSION);
        return SL_ERR;
    }
    info.port = c->listen_port;
    info.iface = strcmp(c->listen_host, "0.0.0.0") == 0 ? NULL : c->listen_host;
    if (strchr(c->listen_host, ':') == NULL) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.protocols = (const struct lws_protocols *)(void *)srv->protocols->data;
    info.vhost_name = "http";
    info.options |= LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
    info.listen_accept_role = "raw-skt";
    info.listen_accept_protocol = "http-reject";
    info.user = srv;
    if (lws_create_vhost(srv->lws, &info) == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot listen on HTTP %s:%d", c->listen_host,
                    c->listen_port);
        return SL_ERR;
    }
    return SL_OK;
}

int sl_server_listen_raw(sl_server *srv, const char *what, const char *host, int port,
                         const struct lws_protocols *protocols, void *vhost_user, GError **err)
{
    if (probe_listen(what, host, port, err) != SL_OK) return SL_ERR;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = strcmp(host, "0.0.0.0") == 0 ? NULL : host;
    info.options = LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG;
    if (strchr(host, ':') == NULL) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.listen_accept_role = "raw-skt";
    info.listen_accept_protocol = protocols[0].name;
    info.protocols = protocols;
    info.vhost_name = what;
    info.user = vhost_user;
    info.timeout_secs = 10;
    if (lws_create_vhost(srv->lws, &info) == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot listen on %s %s:%d", what, host, port);
        return SL_ERR;
    }
    g_message("silklive serving %s on %s:%d", what, host, port);
    return SL_OK;
}

static gboolean on_signal(gpointer data)
{
    sl_server *srv = data;
    g_message("signal received: shutting down");
    sl_server_stop(srv);
    return G_SOURCE_CONTINUE;
}

/* Every viewer is a socket: take the whole descriptor allowance the system grants (the hard
 * limit, as systemd's LimitNOFILE or ulimit -Hn set it), not the 1024 of the soft default. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        g_warning("cannot raise the open file limit: %s", g_strerror(errno));
}

static void ensure_dirs(const struct sl_config *c)
{
    if (g_mkdir_with_parents(c->media_dir, 0755) != 0)
        g_warning("cannot create media dir %s: %s", c->media_dir, g_strerror(errno));
}

/* The modules' init registers their routes; the operations endpoints and the API's own
 * description are always on. */
static int init_modules(sl_server *srv, GError **err)
{
    for (guint i = 0; i < srv->modules->len; i++) {
        const struct sl_module *m = srv->modules->pdata[i];
        if (m->init && m->init(srv, err) != SL_OK) return SL_ERR;
    }
    sl_http_route(srv, "GET", "/healthz", handle_healthz, srv);
    sl_http_route(srv, "GET", "/readyz", handle_readyz, srv);
    sl_http_route(srv, "GET", "/metrics", handle_metrics, srv);
    sl_http_route(srv, "GET", "/api/v1/openapi.json", handle_openapi, srv);
    return SL_OK;
}

GPtrArray *sl_server_routes(sl_server *srv, GError **err)
{
    if (init_modules(srv, err) != SL_OK) return NULL;
    return router_list(srv->routes);
}

int sl_server_start(sl_server *srv, GError **err, int *exit_code)
{
    struct sl_config *c = srv->cfg;
    *exit_code = SL_EXIT_RUNTIME;
    srv->started_us = g_get_monotonic_time();
    if (probe_listen("HTTP", c->listen_host, c->listen_port, err) != SL_OK) return SL_ERR;
    /* The data dir holds the embedded Redis and a generated secret; a node that uses neither
     * (a shared Redis, a configured secret) leaves it alone, so nodes can share a directory. */
    gboolean uses_data_dir = strcmp(c->redis_url, "embedded") == 0 || !sl_config_secret_given(c);
    if (uses_data_dir && lock_data_dir(srv, err) != SL_OK) return SL_ERR;
    raise_fd_limit();
    if (sl_config_resolve_secret(c, err) != SL_OK) return SL_ERR;
    ensure_dirs(c);

    if (init_modules(srv, err) != SL_OK) {
        /* a module's config value out of range is a bad config like any other: exit 2 */
        if (g_error_matches(*err, SL_ERROR, SL_ERROR_INVALID)) *exit_code = SL_EXIT_USAGE;
        return SL_ERR;
    }

    srv->peers = peer_limits_new(c, err);
    gboolean sentinel = g_str_has_prefix(c->redis_url, "sentinel://");
    if (srv->peers == NULL ||
        sl_config_get_int(c, "redis", "wait_replicas", sentinel ? 1 : 0, 0, 16, &srv->wait_replicas,
                          err) != SL_OK ||
        sl_config_get_int(c, "redis", "wait_timeout_ms", MIN(500, c->redis_timeout_ms / 2), 1,
                          60000, &srv->wait_ms, err) != SL_OK) {
        *exit_code = SL_EXIT_USAGE;
        return SL_ERR;
    }
    if (start_redis(srv, err) != SL_OK) return SL_ERR;
    if (start_lws(srv, err) != SL_OK) return SL_ERR;
    for (guint i = 0; i < srv->modules->len; i++) {
        const struct sl_module *m = srv->modules->pdata[i];
        if (m->start && m->start(srv, err) != SL_OK) return SL_ERR;
    }
    srv->sig_term = g_unix_signal_add(SIGTERM, on_signal, srv);
    srv->sig_int = g_unix_signal_add(SIGINT, on_signal, srv);
    srv->started = TRUE;
    *exit_code = 0;
    g_message("silklive serving HTTP on http://%s:%d (redis %s)", c->listen_host, c->listen_port,
              redis_describe(srv->redis));
    return SL_OK;
}

/* Where shutdown is, for the watchdog to say which step hung (static strings only: it is read
 * from a signal handler). */
static const char *volatile shutdown_step = "the loop";
static const char *volatile shutdown_module = "";

static void say(const char *text)
{
    if (write(STDERR_FILENO, text, strlen(text)) < 0) { /* nothing more to do */
    }
}

static void watchdog(int sig)
{
    (void)sig;
    say("silklive: shutdown did not finish in time (stuck in ");
    say(shutdown_step);
    say(shutdown_module);
    say("); exiting\n");
    _exit(SL_EXIT_RUNTIME);
}

static gboolean quit_loop(gpointer loop)
{
    g_main_loop_quit(loop);
    return G_SOURCE_REMOVE;
}

void sl_server_stop(sl_server *srv)
{
    if (srv->stopping) return;
    srv->stopping = TRUE;
    signal(SIGALRM, watchdog);
    alarm(SHUTDOWN_WATCHDOG_S);
    for (guint i = srv->modules->len; i-- > 0;) {
        const struct sl_module *m = srv->modules->pdata[i];
        shutdown_step = "stop of module ";
        shutdown_module = m->name;
        if (m->stop) m->stop(srv);
    }
    shutdown_step = "the drain of the loop";
    shutdown_module = "";
    /* What the modules queued at stop (WebSocket close frames with 1001, last Redis writes)
     * goes out on the loop: give it a moment before the loop ends. */
    g_timeout_add(SHUTDOWN_DRAIN_MS, quit_loop, srv->loop);
}

void sl_server_run(sl_server *srv)
{
    if (!srv->stopping) g_main_loop_run(srv->loop);
}

void sl_server_free(sl_server *srv)
{
    if (srv == NULL) return;
    if (srv->sig_term) g_source_remove(srv->sig_term);
    if (srv->sig_int) g_source_remove(srv->sig_int);
    /* Order matters: connections first (pending replies find their client gone), then Redis,
     * whose in-flight commands are answered now, while the modules they call back into still
     * exist; only then the modules. */
    if (srv->lws) {
        evloop_detach(srv->evloop);
        shutdown_step = "closing connections";
        lws_context_destroy(srv->lws);
        lws_tables_drop();
    }
    evloop_free(srv->evloop);
    peer_limits_free(srv->peers); /* after lws: closing connections still report to it */
    shutdown_step = "closing Redis";
    redis_free(srv->pubsub);
    srv->pubsub = NULL;
    if (srv->role_timer) g_source_remove(srv->role_timer);
    redis_free(srv->orders);
    srv->orders = NULL;
    redis_free(srv->redis);
    srv->redis = NULL;
    for (guint i = srv->modules->len; i-- > 0;) {
        const struct sl_module *m = srv->modules->pdata[i];
        shutdown_step = "destroy of module ";
        shutdown_module = m->name;
        if (m->destroy) m->destroy(srv);
    }
    shutdown_step = "stopping the embedded Redis";
    shutdown_module = "";
    embedded_redis_stop(srv->embedded);
    if (srv->lock_fd >= 0) close(srv->lock_fd);
    router_free(srv->routes);
    g_free(srv->node_id);
    g_array_unref(srv->protocols);
    g_ptr_array_unref(srv->modules);
    g_main_loop_unref(srv->loop);
    sl_config_free(srv->cfg);
    alarm(0);
    g_free(srv);
}
