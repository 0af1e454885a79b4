/* internal: pieces of core shared between its own files; no other module includes this. */
#ifndef SL_CORE_INTERNAL_H
#define SL_CORE_INTERNAL_H

#include "core.h"

struct lws;

/* ---- libwebsockets on libev inside the GLib loop (evloop.c) ---- */
struct lws_context;
typedef struct evloop evloop;
/* A libev loop served by one GSource attached to ctx; NULL with *err if libev cannot start. */
evloop *evloop_new(GMainContext *ctx, GError **err);
/* The struct ev_loop * to hand lws as its foreign loop. */
void *evloop_ev_loop(evloop *e);
/* Start (attach) and stop (detach, before lws_context_destroy) running lws' timed events.
 * SL_ERR if this libwebsockets keeps them in a way evloop does not know. */
int evloop_attach(evloop *e, struct lws_context *lws);
void evloop_detach(evloop *e);
void evloop_free(evloop *e);

/* ---- router (router.c) ---- */
struct route {
    char *method;     /* owned */
    gchar **segments; /* owned; "{name}" captures one segment */
    char **names;     /* owned; per segment, the capture's name or NULL for a literal */
    guint n_segments;
    sl_http_handler fn;
    void *user;
};

enum route_result { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_BAD_METHOD };

/* What a match captured: values point into the matched path (not NUL-terminated). */
#define ROUTE_CAPTURES_MAX 4
struct route_captures {
    guint n;
    struct {
        const char *name, *value;
        size_t len;
    } at[ROUTE_CAPTURES_MAX];
};

typedef struct router router;
router *router_new(void);
void router_free(router *r);
/* At most ROUTE_CAPTURES_MAX captures per pattern. */
void router_add(router *r, const char *method, const char *pattern, sl_http_handler fn, void *user);
/* Every route as "METHOD /pattern", in the order they were added (owned strings). */
GPtrArray *router_list(const router *r);
/* Match a decoded path, without allocating. ROUTE_FOUND sets *out and fills caps when non-NULL;
 * ROUTE_BAD_METHOD appends the allowed methods to allow ("GET, POST") when non-NULL. */
enum route_result router_match(const router *r, const char *method, const char *path,
                               struct route_captures *caps, const struct route **out,
                               GString *allow);

/* ---- HTTP protocol (http.c) ---- */
struct http_mount {
    const char *prefix; /* "/hls/" */
    const char *root;   /* directory */
};
/* The lws protocol callback of the HTTP vhost; user data of the vhost is the sl_server. */
int http_callback(struct lws *wsi, int reason, void *user, void *in, size_t len);
size_t http_session_size(void);
/* Protocol "http-reject" of the same vhost: answers 400 to a connection that is not HTTP. */
int http_reject_callback(struct lws *wsi, int reason, void *user, void *in, size_t len);

/* ---- server internals used by http.c ---- */
router *server_router(sl_server *srv);
const char *server_secret(const sl_server *srv);
/* Static roots: web client at "/", media at "/hls/". */
const char *server_web_root(const sl_server *srv);
const char *server_media_root(const sl_server *srv);

/* ---- per-address limits (peer.c) ---- */
struct peer_limits;
/* From the [limits] section; NULL with *err set when a value is invalid. */
struct peer_limits *peer_limits_new(const struct sl_config *c, GError **err);
void peer_limits_free(struct peer_limits *p);
/* Feed FILTER_NETWORK_CONNECTION, WSI_CREATE and WSI_DESTROY of a vhost's protocols[0]; nonzero
 * refuses the connection (its address has too many open). p may be NULL. */
int peer_limits_event(struct peer_limits *p, struct lws *wsi, int reason, void *user);
/* One API request of the client on wsi; FALSE (and *retry_after_s) when over its rate. */
gboolean peer_limits_take(struct peer_limits *p, struct lws *wsi, const char *forwarded_for,
                          int *retry_after_s);
struct peer_limits *server_peer_limits(sl_server *srv);
/* The address a request comes from (see client_of in peer.c); FALSE when unknown. */
gboolean peer_limits_client(struct peer_limits *p, struct lws *wsi, const char *forwarded_for,
                            char out[SL_ADDR_TEXT_MAX]);

/* ---- Redis (redis.c) ---- */
sl_redis *redis_new(GMainContext *ctx, const char *url, int timeout_ms, GError **err);
/* Another command connection, with its own connected/reconnects series (labels e.g.
 * "connection=\"orders\""). */
sl_redis *redis_new_labelled(GMainContext *ctx, const char *url, int timeout_ms, const char *labels,
                             GError **err);
/* Run ctx until the first connection succeeds or fails. SL_OK or SL_ERR (*err names the cause). */
int redis_connect_wait(sl_redis *r, int timeout_ms, GError **err);
void redis_free(sl_redis *r);
/* A connection that only subscribes; subscriptions are renewed after every reconnect. */
sl_redis *redis_new_subscriber(GMainContext *ctx, const char *url, GError **err);
void redis_subscribe(sl_redis *r, const char *channel, sl_pubsub_cb cb, void *user);
void redis_unsubscribe(sl_redis *r, const char *channel, sl_pubsub_cb cb, void *user);
const char *redis_describe(const sl_redis *r);

/* ---- embedded redis-server (embedded.c) ---- */
typedef struct embedded_redis embedded_redis;
embedded_redis *embedded_redis_start(GMainContext *ctx, const char *binary, const char *data_dir,
                                     GError **err);
/* "unix:///path/to/socket" (owned by e). */
const char *embedded_redis_url(const embedded_redis *e);
void embedded_redis_stop(embedded_redis *e);

#endif
