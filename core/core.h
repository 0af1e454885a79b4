/* core: what every silklive module shares: error codes, config, logging, tokens, metrics,
 * the HTTP router on libwebsockets, the Redis connection, and the server's lifecycle. */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <glib.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct lws_context;
struct lws_protocols;
struct lws;
struct redisReply;

/* ---- error codes (libuv's contract: negative, passed up unchanged) ---- */
enum { SL_OK = 0, SL_ERR = -1, SL_AGAIN = -2, SL_EPROTO = -3, SL_ENOMEM = -4, SL_ELIMIT = -5 };

#define SL_EXIT_RUNTIME 1
#define SL_EXIT_USAGE   2

/* ---- ids and small helpers ---- */

/* TRUE when s[0..len) matches api.md's id grammar [A-Za-z0-9_-]{1,64}. */
gboolean sl_id_valid(const char *s, size_t len);
/* Unix time in milliseconds (wall clock). */
int64_t sl_now_ms(void);
/* v in decimal and a NUL into out (SL_INT_TEXT_MAX bytes suffice); the digits' count. For the
 * per-request paths where printf's machinery cost more than the rest of building a command. */
#define SL_INT_TEXT_MAX 21
size_t sl_int_text(int64_t v, char *out);

/* ---- config ---- */

enum {
    SL_MODULE_INGEST = 1u << 0,
    SL_MODULE_TRANSCODE = 1u << 1,
    SL_MODULE_CHAT = 1u << 2,
    SL_MODULE_COMMERCE = 1u << 3,
    SL_MODULE_ALL = 0xfu,
};

struct sl_config {
    char *listen_host; /* owned; HTTP + WebSocket */
    int listen_port;
    char *rtmp_host; /* owned */
    int rtmp_port;
    char *media_dir;    /* owned */
    char *data_dir;     /* owned; secret, embedded Redis, lock */
    char *web_dir;      /* owned; static web client */
    char *redis_url;    /* owned; "embedded", redis://host:port[/db] or unix:///path */
    char *redis_server; /* owned; redis-server binary used for "embedded" */
    int redis_timeout_ms;
    char *secret; /* owned; NULL until resolved by sl_config_resolve_secret() */
    unsigned modules;
    gboolean demo;
    char *log_level; /* owned; error|warning|info|debug */
    GKeyFile *file;  /* owned; the loaded file (empty when none), for modules' own sections */
};

/* Built-in defaults (api.md "Command line"). Never fails. */
struct sl_config *sl_config_new(void);
void sl_config_free(struct sl_config *c);
/* Merge a config file over the current values. SL_OK, or SL_ERR with *err naming the cause. */
int sl_config_load_file(struct sl_config *c, const char *path, GError **err);
/* Apply one "HOST:PORT" value. SL_OK or SL_ERR (*err set). */
int sl_config_parse_listen(const char *value, char **host, int *port, GError **err);
/* Parse a comma list of module names into a mask. SL_OK or SL_ERR (*err set). */
int sl_config_parse_modules(const char *value, unsigned *mask, GError **err);
/* A module's integer setting [section] key: def when absent; SL_ERR (*err names it) when it is
 * not an integer in [min, max]. */
int sl_config_get_int(const struct sl_config *c, const char *section, const char *key, int64_t def,
                      int64_t min, int64_t max, int64_t *out, GError **err);
/* Is a secret given (c->secret or env SILKLIVE_SECRET), so none need be read from or generated
 * in the data dir? */
gboolean sl_config_secret_given(const struct sl_config *c);
/* Sets c->secret from env SILKLIVE_SECRET, else from <data_dir>/secret, generating that file
 * (mode 0600) on first use. SL_OK or SL_ERR (*err set). An already set secret is kept. */
int sl_config_resolve_secret(struct sl_config *c, GError **err);

/* ---- logging ---- */

/* Install the one-line structured log writer on stderr and route lws' logs into it. */
void sl_log_init(const char *level);

/* ---- tokens (HS256 JWT, api.md "Roles and tokens") ---- */

enum sl_role { SL_ROLE_NONE = 0, SL_ROLE_VIEWER, SL_ROLE_HOST, SL_ROLE_CONSUL, SL_ROLE_ADMIN };

struct sl_claims {
    char sub[65];
    char name[129];
    char pav[3]; /* "" when absent */
    enum sl_role role;
    int64_t exp; /* seconds */
};

const char *sl_role_name(enum sl_role r);
enum sl_role sl_role_parse(const char *s); /* SL_ROLE_NONE when unknown */
/* Sign claims; returns a newly allocated token (g_free) or NULL if the claims are invalid. */
char *sl_token_sign(const char *secret, const struct sl_claims *claims);
/* Verify signature, algorithm, claims and expiry at now_s. SL_OK fills *out; SL_EPROTO for any
 * malformed, forged, expired or incomplete token. Never reads past len. */
int sl_token_verify(const char *secret, const char *token, size_t len, int64_t now_s,
                    struct sl_claims *out);

/* ---- metrics (Prometheus text format) ---- */

typedef struct sl_metric sl_metric;
enum sl_metric_type { SL_METRIC_COUNTER, SL_METRIC_GAUGE };

/* Find or create the series name{labels}; labels is e.g. "code=\"200\"" or NULL. The returned
 * handle lives as long as the process. scale divides the stored integer when rendered (1 for
 * plain counts, 1000000 for seconds kept in microseconds). Values may change from any thread. */
sl_metric *sl_metric_get(const char *name, enum sl_metric_type type, const char *help,
                         const char *labels, int64_t scale);
void sl_metric_add(sl_metric *m, int64_t delta);
void sl_metric_set(sl_metric *m, int64_t value);
int64_t sl_metric_value(const sl_metric *m);
/* Render every series; caller frees with g_string_free. */
GString *sl_metrics_render(void);

/* ---- HTTP ---- */

typedef struct sl_server sl_server;
typedef struct sl_http_req sl_http_req;
typedef void (*sl_http_handler)(sl_http_req *req, void *user);

#define SL_HTTP_MAX_BODY (64 * 1024)

/* Register a handler for method + pattern; pattern segments "{name}" capture one path segment
 * (percent-decoded, never containing '/'). Call before sl_server_start. */
void sl_http_route(sl_server *srv, const char *method, const char *pattern, sl_http_handler fn,
                   void *user);

const char *sl_http_req_method(const sl_http_req *req);
const char *sl_http_req_path(const sl_http_req *req);
/* Captured "{name}" segment, or NULL. */
const char *sl_http_req_param(const sl_http_req *req, const char *name);
/* Decoded query argument, or NULL. */
const char *sl_http_req_query(const sl_http_req *req, const char *name);
/* Request header by lower-case name ("authorization", "idempotency-key", ...), or NULL. */
const char *sl_http_req_header(const sl_http_req *req, const char *name);
const uint8_t *sl_http_req_body(const sl_http_req *req, size_t *len);
/* The client's address: the peer's, or behind a trusted proxy ([limits] trusted_proxies) the
 * one the proxy appended to X-Forwarded-For. FALSE when unknown (the client went away). */
#define SL_ADDR_TEXT_MAX 46
gboolean sl_http_req_client(const sl_http_req *req, char out[SL_ADDR_TEXT_MAX]);
sl_server *sl_http_req_server(const sl_http_req *req);
/* Parses the body as a JSON object. On failure replies 400 bad_request and returns NULL. */
json_t *sl_http_req_json(sl_http_req *req);
/* Verifies the bearer token. On failure replies 401 and returns NULL; the claims live with req. */
const struct sl_claims *sl_http_req_auth(sl_http_req *req);

/* Handlers may reply later (after Redis answers): take a reference, reply, drop it. A reply
 * to a request whose client went away is dropped silently. */
sl_http_req *sl_http_req_ref(sl_http_req *req);
void sl_http_req_unref(sl_http_req *req);

/* Reply with body (stolen, may be NULL). extra_headers: "Name: value\r\n..." or NULL. */
void sl_http_reply(sl_http_req *req, int status, const char *content_type, GBytes *body,
                   const char *extra_headers);
/* Reply with JSON; the reference to body is stolen. */
void sl_http_reply_json(sl_http_req *req, int status, json_t *body);
/* Reply with api.md's error body {"error":{"code","message"}}. */
void sl_http_reply_error(sl_http_req *req, int status, const char *code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* The error body as a JSON string (g_free). */
char *sl_http_error_body(const char *code, const char *message);
/* sl_http_reply_error with a message as it is. */
void sl_http_reply_error_msg(sl_http_req *req, int status, const char *code, const char *message);
/* The same for a code and message that live as long as the program (literals): each body is
 * built once and shared. */
void sl_http_reply_error_static(sl_http_req *req, int status, const char *code,
                                const char *message);

/* ---- static files ---- */

/* Map a decoded URL path (below a mount) to a file inside root. SL_OK sets *out (g_free);
 * SL_EPROTO for a path that tries to leave the root or is malformed (400); SL_ERR when no such
 * regular file inside the root (404), including symlinks that resolve outside it. */
int sl_static_resolve(const char *root, const char *rel, size_t len, char **out);
/* Content type by file extension. */
const char *sl_static_mime(const char *path);

/* ---- Redis ---- */

typedef struct sl_redis sl_redis;
/* reply is NULL on failure, then err says why ("timeout", "disconnected", ...). The reply is
 * freed after the callback returns. */
typedef void (*sl_redis_cb)(struct redisReply *reply, const char *err, void *user);

/* Queue a command. SL_OK: cb will be called exactly once. SL_ERR: not connected, cb never called.
 */
int sl_redis_command(sl_redis *r, sl_redis_cb cb, void *user, const char *fmt, ...);
int sl_redis_vcommand(sl_redis *r, sl_redis_cb cb, void *user, const char *fmt, va_list ap);
int sl_redis_command_argv(sl_redis *r, sl_redis_cb cb, void *user, int argc, const char **argv,
                          const size_t *lens);
gboolean sl_redis_connected(const sl_redis *r);
/* SL_OK when url is "embedded", redis://HOST:PORT[/DB] or unix:///PATH[?db=N]; else SL_ERR. */
int sl_redis_url_check(const char *url, GError **err);
/* After a write on sl_server_redis_orders that must survive a failover (a confirmed order):
 * WAIT until [redis] wait_replicas replicas (default 1 with a sentinel:// URL, else 0), or as
 * many as are online, acknowledged it, or wait_timeout_ms passed. SL_ERR when there is nothing
 * to wait for (no replica online) or no connection: go on at once. Otherwise cb gets WAIT's
 * reply (the number of replicas that acknowledged). */
int sl_redis_wait_replicas(sl_server *srv, sl_redis_cb cb, void *user);
int64_t sl_redis_replicas_wanted(const sl_server *srv);

/* A Lua script run with EVALSHA; a NOSCRIPT answer (a restarted or failed-over Redis) is retried
 * once with EVAL, which also caches it. */
typedef struct sl_script sl_script;
sl_script *sl_script_new(const char *source);
void sl_script_free(sl_script *s);
/* argv holds nkeys keys then the arguments; lens may be NULL for NUL-terminated strings; cb may
 * be NULL (fire and forget).
 * SL_OK: cb is called exactly once. SL_ERR: not connected, cb never called. */
int sl_redis_eval(sl_redis *r, const sl_script *s, sl_redis_cb cb, void *user, int nkeys, int argc,
                  const char **argv, const size_t *lens);

/* Pub/sub on a connection of its own. msg is NULL when the subscription became active (first
 * time, and again after a reconnect): messages published before that moment were not seen, so a
 * subscriber that must not miss anything reads its history then. Subscribe from the loop only. */
typedef void (*sl_pubsub_cb)(const char *channel, const char *msg, size_t len, void *user);
void sl_pubsub_subscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user);
void sl_pubsub_unsubscribe(sl_server *srv, const char *channel, sl_pubsub_cb cb, void *user);

/* ---- errors: one convention ----
 * A function that can fail takes GError **err last and sets it in the SL_ERROR domain: a code a
 * caller can act on and a message written for people, naming the cause. Callers pass it up
 * unchanged or turn it into the answer (an HTTP error body, a WebSocket error frame, an exit
 * status with one line on stderr). Return values say only whether it failed (SL_OK/SL_ERR/
 * SL_EPROTO, or NULL). */
#define SL_ERROR (sl_error_quark())
GQuark sl_error_quark(void);
enum sl_error_code {
    SL_ERROR_INVALID = 1, /* bad input from a person or a peer: 400, exit status 2 */
    SL_ERROR_NOT_FOUND,   /* what was named does not exist */
    SL_ERROR_CONFLICT,    /* it exists already or is taken (a second publisher) */
    SL_ERROR_UNAVAILABLE, /* a dependency (Redis) cannot be reached: 503, try again */
    SL_ERROR_IO,          /* the system refused: a file, a socket, a library */
};

/* ---- server and modules ---- */

struct sl_module {
    const char *name;
    unsigned mask;
    /* Before listening: register routes and protocols. SL_OK or SL_ERR (*err set). */
    int (*init)(sl_server *srv, GError **err);
    /* The loop and Redis are up. */
    int (*start)(sl_server *srv, GError **err);
    /* Graceful stop at SIGTERM; finish within a few seconds. */
    void (*stop)(sl_server *srv);
    gboolean (*ready)(sl_server *srv);
    void (*destroy)(sl_server *srv);
};

/* Takes ownership of cfg. */
sl_server *sl_server_new(struct sl_config *cfg);
void sl_server_free(sl_server *srv);
/* Add a module; modules not enabled in cfg->modules are skipped. Before sl_server_start. */
void sl_server_add_module(sl_server *srv, const struct sl_module *m);
/* Add a libwebsockets protocol to the HTTP vhost (copied). Before sl_server_start. */
void sl_server_add_protocol(sl_server *srv, const struct lws_protocols *p);
/* Bring up Redis, modules and listeners. SL_OK, or SL_ERR with *err and *exit_code set. */
int sl_server_start(sl_server *srv, GError **err, int *exit_code);
/* Every route the compiled-in modules serve, as "METHOD /pattern" (g_ptr_array_unref), found by
 * running the modules' init without starting anything; for `silklive routes` and the test that
 * holds docs/openapi.json to them. The server cannot be started afterwards; NULL with *err. */
GPtrArray *sl_server_routes(sl_server *srv, GError **err);
/* docs/openapi.json, the description of the HTTP API served at /api/v1/openapi.json */
extern const char sl_openapi_json[];
/* Run the loop until SIGTERM/SIGINT or sl_server_stop, then shut down gracefully. */
void sl_server_run(sl_server *srv);
void sl_server_stop(sl_server *srv);

/* Listen for raw TCP (RTMP) on host:port with a vhost of its own whose protocol list is protocols
 * (zero-terminated); vhost_user is what lws_get_vhost_user returns. Call from a module's start. */
int sl_server_listen_raw(sl_server *srv, const char *what, const char *host, int port,
                         const struct lws_protocols *protocols, void *vhost_user, GError **err);
/* The per-address connection cap ([limits] connections_per_ip) for a raw vhost: call it from its
 * protocols[0] callback for FILTER_NETWORK_CONNECTION, WSI_CREATE and WSI_DESTROY; nonzero means
 * refuse the connection. */
int sl_server_peer_event(sl_server *srv, struct lws *wsi, int reason, void *user);
/* A short name of this process unique across nodes (host:pid:random), for leases in Redis. */
const char *sl_server_node_id(const sl_server *srv);

const struct sl_config *sl_server_config(const sl_server *srv);
GMainContext *sl_server_main_context(const sl_server *srv);
struct lws_context *sl_server_lws(const sl_server *srv);
sl_redis *sl_server_redis(const sl_server *srv);
/* The connection for confirmed orders: its own when [redis] wait_replicas is set (see
 * sl_redis_wait_replicas), else sl_server_redis. */
sl_redis *sl_server_redis_orders(const sl_server *srv);
/* Per-module state slot, keyed by the module's mask bit. */
void sl_server_set_module_data(sl_server *srv, unsigned mask, void *data);
void *sl_server_module_data(const sl_server *srv, unsigned mask);

#endif
