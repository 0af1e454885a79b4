/* http: the HTTP side of the lws vhost: request snapshot, 64 KiB body cap, routing, static
 * files, and replies written one lws_write per WRITEABLE callback. Handlers may answer later. */
#include "internal.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <string.h>

#define HTTP_WRITE_CHUNK 16384

enum reply_phase { REPLY_NONE, REPLY_HEADERS, REPLY_BODY, REPLY_DONE };

/* A request's captures, query arguments and snapshot headers: a handful each, so a short list
 * searched from the end (the last of a repeated query argument wins) instead of three hash
 * tables, which cost a dozen allocations per request before a handler ran. */
#define REQ_FIELDS_MAX 48
enum field_kind { FIELD_PARAM, FIELD_QUERY, FIELD_HEADER };
struct req_field {
    enum field_kind kind;
    char *text;        /* owned: name, NUL, value, NUL */
    const char *value; /* in text */
};

struct sl_http_req {
    int refs;
    struct lws *wsi; /* NULL once the client is gone */
    sl_server *srv;
    char method[8];
    char *path;                              /* owned, decoded */
    GByteArray *body;                        /* owned */
    struct req_field fields[REQ_FIELDS_MAX]; /* header names lower-case */
    guint n_fields;
    gboolean body_expected;
    const struct route *route;
    struct sl_claims claims;
    /* the reply */
    enum reply_phase phase;
    int status;
    char *content_type;  /* owned */
    GBytes *reply_body;  /* owned */
    char *extra_headers; /* owned */
    size_t sent;
    gboolean close_after;
};

/* Spare request structs. One is 1.5 KiB, past glibc's fast and small bins: allocating one per
 * request made malloc consolidate its fast bins every time (2 % of silklive's CPU in the
 * reserve bench). Loop thread only, as every request. */
#define REQ_SPARES_MAX 256
static sl_http_req *req_spares[REQ_SPARES_MAX];
static guint n_req_spares;

/* A spare is poisoned under AddressSanitizer, so a use after release is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define REQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REQ_ASAN 1
#endif
#endif
#ifdef REQ_ASAN
#include <sanitizer/asan_interface.h>
#define REQ_POISON(p)   ASAN_POISON_MEMORY_REGION((p), sizeof *(p))
#define REQ_UNPOISON(p) ASAN_UNPOISON_MEMORY_REGION((p), sizeof *(p))
#else
#define REQ_POISON(p)   ((void)(p))
#define REQ_UNPOISON(p) ((void)(p))
#endif

static sl_http_req *req_alloc(void)
{
    if (n_req_spares == 0) return g_new0(sl_http_req, 1);
    sl_http_req *req = req_spares[--n_req_spares];
    REQ_UNPOISON(req);
    memset(req, 0, sizeof *req);
    return req;
}

static void req_release(sl_http_req *req)
{
    if (n_req_spares == REQ_SPARES_MAX) {
        g_free(req);
        return;
    }
    REQ_POISON(req);
    req_spares[n_req_spares++] = req;
}

struct http_session {
    sl_http_req *req; /* owned reference */
};

/* One series per status code, looked up once: this runs on every reply. */
static sl_metric *metric_requests(int status)
{
    static sl_metric *by_status[600];
    if (status < 100 || status > 599) status = 599;
    if (by_status[status] == NULL) {
        char labels[32];
        g_snprintf(labels, sizeof labels, "code=\"%d\"", status);
        by_status[status] = sl_metric_get("silklive_http_requests_total", SL_METRIC_COUNTER,
                                          "HTTP requests answered, by status code", labels, 1);
    }
    return by_status[status];
}

size_t http_session_size(void)
{
    return sizeof(struct http_session);
}

sl_http_req *sl_http_req_ref(sl_http_req *req)
{
    req->refs++;
    return req;
}

void sl_http_req_unref(sl_http_req *req)
{
    if (req == NULL || --req->refs > 0) return;
    g_free(req->path);
    for (guint i = 0; i < req->n_fields; i++)
        g_free(req->fields[i].text);
    g_byte_array_unref(req->body);
    g_free(req->content_type);
    if (req->reply_body) g_bytes_unref(req->reply_body);
    g_free(req->extra_headers);
    req_release(req);
}

const char *sl_http_req_method(const sl_http_req *req)
{
    return req->method;
}
const char *sl_http_req_path(const sl_http_req *req)
{
    return req->path;
}
static const char *field_get(const sl_http_req *req, enum field_kind kind, const char *name)
{
    for (guint i = req->n_fields; i-- > 0;)
        if (req->fields[i].kind == kind && strcmp(req->fields[i].text, name) == 0)
            return req->fields[i].value;
    return NULL;
}

/* Room for a value of vlen bytes after the name; NULL when the request has no more room. */
static char *field_add(sl_http_req *req, enum field_kind kind, const char *name, size_t nlen,
                       size_t vlen)
{
    if (req->n_fields == REQ_FIELDS_MAX) return NULL;
    struct req_field *f = &req->fields[req->n_fields++];
    f->kind = kind;
    f->text = g_malloc(nlen + vlen + 2);
    memcpy(f->text, name, nlen);
    f->text[nlen] = '\0';
    char *value = f->text + nlen + 1;
    value[vlen] = '\0';
    f->value = value;
    return value;
}

static void field_set(sl_http_req *req, enum field_kind kind, const char *name, size_t nlen,
                      const char *value, size_t vlen)
{
    char *v = field_add(req, kind, name, nlen, vlen);
    if (v) memcpy(v, value, vlen);
}

const char *sl_http_req_param(const sl_http_req *req, const char *name)
{
    return field_get(req, FIELD_PARAM, name);
}
const char *sl_http_req_query(const sl_http_req *req, const char *name)
{
    return field_get(req, FIELD_QUERY, name);
}
const char *sl_http_req_header(const sl_http_req *req, const char *name)
{
    return field_get(req, FIELD_HEADER, name);
}
const uint8_t *sl_http_req_body(const sl_http_req *req, size_t *len)
{
    *len = req->body->len;
    return req->body->data;
}
gboolean sl_http_req_client(const sl_http_req *req, char out[SL_ADDR_TEXT_MAX])
{
    G_STATIC_ASSERT(SL_ADDR_TEXT_MAX >= INET6_ADDRSTRLEN);
    return req->wsi != NULL && peer_limits_client(server_peer_limits(req->srv), req->wsi,
                                                  sl_http_req_header(req, "x-forwarded-for"), out);
}

sl_server *sl_http_req_server(const sl_http_req *req)
{
    return req->srv;
}

/* The error body as jansson's text (free). */
static char *error_json(const char *code, const char *message)
{
    json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

char *sl_http_error_body(const char *code, const char *message)
{
    char *s = error_json(code, message);
    char *out = g_strdup(s);
    free(s);
    return out;
}

/* jansson's text as a reply body as it is, freed by jansson's allocator (free). */
static GBytes *json_text_bytes(char *text)
{
    if (text == NULL) return g_bytes_new_static("null", 4);
    return g_bytes_new_with_free_func(text, strlen(text), free, text);
}

static void reply_error_body(sl_http_req *req, int status, GBytes *body)
{
    const char *extra = NULL;
    if (status == 401) extra = "www-authenticate: Bearer\r\n";
    /* The client may still be sending a body we will not read: close after answering. */
    if (status == 400 || status == 413) req->close_after = TRUE;
    sl_http_reply(req, status, "application/json", body, extra);
}

void sl_http_reply(sl_http_req *req, int status, const char *content_type, GBytes *body,
                   const char *extra_headers)
{
    if (req->phase != REPLY_NONE) { /* a second reply is a bug in the caller; keep the first */
        g_warning("second reply to %s %s ignored", req->method, req->path);
        if (body) g_bytes_unref(body);
        return;
    }
    req->phase = REPLY_HEADERS;
    req->status = status;
    req->content_type = g_strdup(content_type ? content_type : "application/json");
    req->reply_body = body ? body : g_bytes_new_static("", 0);
    req->extra_headers = g_strdup(extra_headers);
    sl_metric_add(metric_requests(status), 1);
    if (req->wsi) lws_callback_on_writable(req->wsi);
}

void sl_http_reply_json(sl_http_req *req, int status, json_t *body)
{
    GBytes *b = json_text_bytes(json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY));
    json_decref(body);
    sl_http_reply(req, status, "application/json", b, NULL);
}

void sl_http_reply_error(sl_http_req *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    reply_error_body(req, status, json_text_bytes(error_json(code, msg)));
    g_free(msg);
}

void sl_http_reply_error_msg(sl_http_req *req, int status, const char *code, const char *message)
{
    reply_error_body(req, status, json_text_bytes(error_json(code, message)));
}

/* Bodies of errors with a static message, by the message's address: after a flash sale sells
 * out, every buyer's try is answered "sold out", and building that JSON each time was 7 % of
 * silklive's instructions per request. Loop thread only. */
struct static_error {
    const char *code;
    GBytes *body; /* owned */
};

static void static_error_free(gpointer p)
{
    struct static_error *e = p;
    g_bytes_unref(e->body);
    g_free(e);
}

void sl_http_reply_error_static(sl_http_req *req, int status, const char *code, const char *message)
{
    static GHashTable *bodies; /* message (static) -> struct static_error */
    if (bodies == NULL) bodies = g_hash_table_new_full(NULL, NULL, NULL, static_error_free);
    struct static_error *e = g_hash_table_lookup(bodies, message);
    if (e == NULL || e->code != code) {
        e = g_new(struct static_error, 1);
        e->code = code;
        e->body = json_text_bytes(error_json(code, message));
        g_hash_table_replace(bodies, (gpointer)message, e);
    }
    reply_error_body(req, status, g_bytes_ref(e->body));
}

json_t *sl_http_req_json(sl_http_req *req)
{
    json_error_t e;
    if (req->body->len == 0) {
        sl_http_reply_error(req, 400, "bad_request", "a JSON object body is required");
        return NULL;
    }
    json_t *j =
        json_loadb((const char *)req->body->data, req->body->len, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        sl_http_reply_error(req, 400, "bad_request", "malformed JSON at line %d: %s", e.line,
                            e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        sl_http_reply_error(req, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* Verified tokens by their text: a viewer sends the same token with every call, and checking it
 * (base64, HMAC, two JSON parses) was the largest piece of silklive's own work per request.
 * Same text, same secret, same answer; only the expiry is checked again. Loop thread only. */
#define TOKEN_CACHE_MAX 65536

static int token_verify_cached(const char *secret, const char *tok, int64_t now_s,
                               struct sl_claims *out)
{
    static GHashTable *cache; /* token text (owned) -> struct sl_claims (owned) */
    if (cache == NULL) cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    const struct sl_claims *hit = g_hash_table_lookup(cache, tok);
    if (hit) {
        if (hit->exp <= now_s) return SL_EPROTO;
        *out = *hit;
        return SL_OK;
    }
    int rc = sl_token_verify(secret, tok, strlen(tok), now_s, out);
    if (rc != SL_OK) return rc; /* failures are not cached: nothing to gain for a forger */
    if (g_hash_table_size(cache) >= TOKEN_CACHE_MAX) g_hash_table_remove_all(cache);
    g_hash_table_insert(cache, g_strdup(tok), g_memdup2(out, sizeof *out));
    return SL_OK;
}

const struct sl_claims *sl_http_req_auth(sl_http_req *req)
{
    const char *h = sl_http_req_header(req, "authorization");
    if (h == NULL || g_ascii_strncasecmp(h, "Bearer ", 7) != 0) {
        sl_http_reply_error(req, 401, "unauthorized", "a Bearer token is required");
        return NULL;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    if (token_verify_cached(server_secret(req->srv), tok, sl_now_ms() / 1000, &req->claims) !=
        SL_OK) {
        sl_http_reply_error(req, 401, "unauthorized", "invalid or expired token");
        return NULL;
    }
    return &req->claims;
}

/* ---- request snapshot ---- */

static void snapshot_header(sl_http_req *req, struct lws *wsi, enum lws_token_indexes tok,
                            const char *name)
{
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0) return;
    char *v = field_add(req, FIELD_HEADER, name, strlen(name), (size_t)n);
    if (v && lws_hdr_copy(wsi, v, n + 1, tok) < 0) v[0] = '\0';
}

static void snapshot_custom_header(sl_http_req *req, struct lws *wsi, const char *name)
{
    char key[64];
    int klen = g_snprintf(key, sizeof key, "%s:", name);
    int n = lws_hdr_custom_length(wsi, key, klen);
    if (n < 0) return;
    char *v = field_add(req, FIELD_HEADER, name, strlen(name), (size_t)n);
    if (v && lws_hdr_custom_copy(wsi, v, n + 1, key, klen) < 0) v[0] = '\0';
}

static void snapshot_query(sl_http_req *req, struct lws *wsi)
{
    char frag[1024];
    for (int i = 0; i < 32; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0) break;
        char *eq = memchr(frag, '=', (size_t)n);
        if (eq)
            field_set(req, FIELD_QUERY, frag, (size_t)(eq - frag), eq + 1,
                      (size_t)n - (size_t)(eq - frag) - 1);
        else
            field_set(req, FIELD_QUERY, frag, (size_t)n, "", 0);
    }
}

static const char *method_name(int m)
{
    switch (m) {
    case LWSHUMETH_GET:
        return "GET";
    case LWSHUMETH_POST:
        return "POST";
    case LWSHUMETH_OPTIONS:
        return "OPTIONS";
    case LWSHUMETH_PUT:
        return "PUT";
    case LWSHUMETH_PATCH:
        return "PATCH";
    case LWSHUMETH_DELETE:
        return "DELETE";
    case LWSHUMETH_HEAD:
        return "HEAD";
    default:
        return NULL;
    }
}

static sl_http_req *req_new(sl_server *srv, struct lws *wsi, const char *method, const char *uri,
                            size_t uri_len)
{
    sl_http_req *req = req_alloc();
    req->refs = 1;
    req->wsi = wsi;
    req->srv = srv;
    g_strlcpy(req->method, method, sizeof req->method);
    req->path = g_strndup(uri, uri_len);
    req->body = g_byte_array_new();
    snapshot_header(req, wsi, WSI_TOKEN_HTTP_AUTHORIZATION, "authorization");
    snapshot_header(req, wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, "content-type");
    snapshot_header(req, wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, "content-length");
    snapshot_header(req, wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, "transfer-encoding");
    snapshot_header(req, wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH, "if-none-match");
    snapshot_custom_header(req, wsi, "idempotency-key");
    snapshot_header(req, wsi, WSI_TOKEN_X_FORWARDED_FOR, "x-forwarded-for");
    /* what payment providers and the customs gateway sign their calls with (only where they
     * call: each custom header is a scan of the request's headers) */
    if (g_str_has_prefix(req->path, "/api/v1/payments/")) {
        static const char *const wxpay[] = {"wechatpay-timestamp", "wechatpay-nonce",
                                            "wechatpay-signature", "wechatpay-serial"};
        for (size_t i = 0; i < G_N_ELEMENTS(wxpay); i++)
            snapshot_custom_header(req, wsi, wxpay[i]);
    } else if (g_str_has_prefix(req->path, "/api/v1/customs/")) {
        snapshot_custom_header(req, wsi, "x-silklive-signature");
    }
    snapshot_query(req, wsi);
    return req;
}

/* ---- static files ---- */

static const char *static_cache_control(const char *path, gboolean media)
{
    if (!media) return "no-cache";
    if (g_str_has_suffix(path, ".m3u8")) return "no-cache";
    if (g_str_has_suffix(path, ".jpg")) return "max-age=5";
    return "public, max-age=31536000, immutable"; /* segments never change once listed */
}

/* The web client's pages live at readable URLs; each is one HTML file that reads the rest of its
 * path itself (the channel id of /c/{id}). Everything else under / is a file of the client. */
static const char *web_page(const char *path)
{
    if (strcmp(path, "/") == 0 || g_str_has_prefix(path, "/c/")) return "index.html";
    if (strcmp(path, "/console") == 0 || strcmp(path, "/console/") == 0) return "console.html";
    return path + 1;
}

/* Returns the lws callback result: 0 to go on, -1 to close. Replies via req when not serving. */
static int static_serve(sl_http_req *req, struct lws *wsi)
{
    const char *root = NULL, *rel = NULL;
    char *vod = NULL;
    gboolean media = FALSE;
    if (g_str_has_prefix(req->path, "/hls/")) {
        root = server_media_root(req->srv);
        rel = req->path + 5;
        media = TRUE;
    } else if (g_str_has_prefix(req->path, "/vod/")) {
        /* /vod/{channel}/{broadcast}/... is the recording kept beside the channel's live media:
         * <media>/{channel}/vod/{broadcast}/... */
        const char *ch = req->path + 5, *slash = strchr(ch, '/');
        root = server_media_root(req->srv);
        vod = slash ? g_strdup_printf("%.*s/vod%s", (int)(slash - ch), ch, slash) : g_strdup("");
        rel = vod;
        media = TRUE;
    } else {
        root = server_web_root(req->srv);
        rel = web_page(req->path);
    }
    char *file = NULL;
    int rc = root ? sl_static_resolve(root, rel, strlen(rel), &file) : SL_ERR;
    g_free(vod);
    rel = NULL;
    if (rc == SL_EPROTO) {
        sl_http_reply_error(req, 400, "bad_request", "invalid path");
        return 0;
    }
    if (rc != SL_OK) {
        sl_http_reply_error(req, 404, "not_found", "no such file");
        return 0;
    }
    char headers[160];
    int hn = g_snprintf(headers, sizeof headers,
                        "cache-control: %s\r\nx-content-type-options: nosniff\r\n",
                        static_cache_control(file, media));
    if (media)
        hn += g_snprintf(headers + hn, sizeof headers - (size_t)hn,
                         "access-control-allow-origin: *\r\n");
    int n = lws_serve_http_file(wsi, file, sl_static_mime(file), headers, hn);
    g_free(file);
    sl_metric_add(metric_requests(200), 1);
    req->phase = REPLY_DONE; /* lws owns the transaction from here */
    if (n < 0) return -1;
    if (n > 0 && lws_http_transaction_completed(wsi)) return -1;
    return 0;
}

/* ---- dispatch ---- */

static int dispatch(sl_http_req *req, struct lws *wsi)
{
    if (req->route) {
        sl_http_req_ref(req);
        req->route->fn(req, req->route->user);
        sl_http_req_unref(req);
        return 0;
    }
    return static_serve(req, wsi);
}

static int on_request(sl_server *srv, struct http_session *s, struct lws *wsi)
{
    char *uri = NULL;
    int uri_len = 0;
    int m = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
    const char *method = m >= 0 ? method_name(m) : NULL;

    if (s->req) { /* keep-alive: the previous transaction is over */
        s->req->wsi = NULL;
        sl_http_req_unref(s->req);
    }
    s->req = req_new(srv, wsi, method ? method : "?", uri ? uri : "", uri ? (size_t)uri_len : 0);
    sl_http_req *req = s->req;
    if (method == NULL || uri == NULL) {
        sl_http_reply_error(req, 405, "method_not_allowed", "method not supported");
        req->close_after = TRUE;
        return 0;
    }

    const char *cl = sl_http_req_header(req, "content-length");
    const char *te = sl_http_req_header(req, "transfer-encoding");
    guint64 content_length = 0;
    if (cl && !g_ascii_string_to_unsigned(cl, 10, 0, G_MAXINT64, &content_length, NULL)) {
        sl_http_reply_error(req, 400, "bad_request", "invalid Content-Length");
        return 0;
    }
    if (content_length > SL_HTTP_MAX_BODY) {
        sl_http_reply_error(req, 413, "payload_too_large", "request bodies are limited to %d bytes",
                            SL_HTTP_MAX_BODY);
        return 0;
    }
    req->body_expected = content_length > 0 || (te && g_ascii_strcasecmp(te, "chunked") == 0);
    /* A POST without Content-Length on a connection the client will close: lws cannot tell
     * where its (empty) body ends and would hold the connection open for its timeout after an
     * answer given later (from Redis); close it as soon as the answer is out. */
    if (cl == NULL && te == NULL && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        char conn[32] = "";
        if (lws_hdr_copy(wsi, conn, sizeof conn, WSI_TOKEN_CONNECTION) > 0) {
            for (char *p = conn; *p; p++)
                *p = g_ascii_tolower(*p);
            if (strstr(conn, "close")) req->close_after = TRUE;
        }
    }
    int retry_after_s = 0;
    if (g_str_has_prefix(req->path, "/api/") &&
        !peer_limits_take(server_peer_limits(srv), wsi, sl_http_req_header(req, "x-forwarded-for"),
                          &retry_after_s)) {
        char *extra = g_strdup_printf("retry-after: %d\r\n", retry_after_s);
        char *body = sl_http_error_body("rate_limited", "too many requests from this address");
        req->close_after = req->body_expected;
        sl_http_reply(req, 429, "application/json", g_bytes_new_take(body, strlen(body)), extra);
        g_free(extra);
        return 0;
    }

    struct route_captures caps;
    enum route_result rr =
        router_match(server_router(srv), method, req->path, &caps, &req->route, NULL);
    if (rr == ROUTE_FOUND)
        for (guint i = 0; i < caps.n; i++)
            field_set(req, FIELD_PARAM, caps.at[i].name, strlen(caps.at[i].name), caps.at[i].value,
                      caps.at[i].len);
    if (rr == ROUTE_BAD_METHOD) {
        GString *allow = g_string_new(NULL); /* rare: the match again, listing the methods */
        router_match(server_router(srv), method, req->path, NULL, &req->route, allow);
        char *extra = g_strdup_printf("allow: %s\r\n", allow->str);
        char *body = sl_http_error_body("method_not_allowed", "method not allowed on this path");
        g_string_free(allow, TRUE);
        req->close_after = req->body_expected;
        sl_http_reply(req, 405, "application/json", g_bytes_new_take(body, strlen(body)), extra);
        g_free(extra);
        return 0;
    }
    if (rr == ROUTE_NOT_FOUND) {
        gboolean get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        if (!get || g_str_has_prefix(req->path, "/api/")) {
            req->close_after = req->body_expected;
            sl_http_reply_error(req, 404, "not_found", "no such resource");
            return 0;
        }
    }
    if (req->body_expected) return 0; /* dispatched at BODY_COMPLETION */
    return dispatch(req, wsi);
}

/* Small replies go out as one write, headers and body together: a second syscall per reply
 * was a fifth of the cost of a request. The content length is sent as a plain header so lws
 * does no accounting of its own for the body bytes. (HTTP/1 only; this vhost serves no h2.) */
#define REPLY_INLINE_MAX 8192

static int write_head(sl_http_req *req, struct lws *wsi, gboolean *body_sent)
{
    gsize body_len = g_bytes_get_size(req->reply_body);
    gboolean head = strcmp(req->method, "HEAD") == 0;
    gboolean inline_body = !head && body_len <= REPLY_INLINE_MAX;
    size_t cap = 1024 + (req->extra_headers ? strlen(req->extra_headers) * 2 : 0) +
                 (inline_body ? body_len : 0);
    uint8_t stack[LWS_PRE + 1024 + REPLY_INLINE_MAX];
    uint8_t *buf = cap <= sizeof stack - LWS_PRE ? stack : g_malloc(LWS_PRE + cap);
    uint8_t *start = buf + LWS_PRE, *p = start, *end = start + cap - 1;
    char num[24];
    int num_len = g_snprintf(num, sizeof num, "%" G_GSIZE_FORMAT, body_len);
    int rc = -1;
    if (lws_add_http_header_status(wsi, (unsigned)req->status, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const uint8_t *)req->content_type,
                                     (int)strlen(req->content_type), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (const uint8_t *)num,
                                     num_len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const uint8_t *)"no-store",
                                     8, &p, end))
        goto out;
    if (req->close_after && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                                         (const uint8_t *)"close", 5, &p, end))
        goto out;
    /* extra_headers: "name: value\r\n" lines; names are given lower-case by our callers */
    for (const char *line = req->extra_headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        const char *colon = strchr(line, ':');
        if (eol == NULL || colon == NULL || colon > eol) break;
        char name[64];
        size_t nlen = (size_t)(colon - line) + 1;
        if (nlen >= sizeof name) break;
        memcpy(name, line, nlen);
        name[nlen] = '\0';
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (lws_add_http_header_by_name(wsi, (const uint8_t *)name, (const uint8_t *)v,
                                        (int)(eol - v), &p, end))
            goto out;
        line = eol + 2;
    }
    if (lws_finalize_http_header(wsi, &p, end)) goto out;
    if (inline_body && body_len) {
        memcpy(p, g_bytes_get_data(req->reply_body, NULL), body_len);
        p += body_len;
    }
    int n = (int)(p - start);
    if (lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP_HEADERS) != n) goto out;
    *body_sent = inline_body || head || body_len == 0;
    rc = 0;
out:
    if (buf != stack) g_free(buf);
    return rc;
}

static int on_writeable(struct http_session *s, struct lws *wsi)
{
    sl_http_req *req = s->req;
    if (req == NULL) return 0;
    if (req->phase == REPLY_HEADERS) {
        gboolean body_sent = FALSE;
        if (write_head(req, wsi, &body_sent)) return -1;
        req->phase = body_sent ? REPLY_DONE : REPLY_BODY;
        if (!body_sent) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (req->phase == REPLY_BODY) {
        gsize total;
        const uint8_t *data = g_bytes_get_data(req->reply_body, &total);
        size_t n = MIN(total - req->sent, (size_t)HTTP_WRITE_CHUNK);
        uint8_t buf[LWS_PRE + HTTP_WRITE_CHUNK];
        memcpy(buf + LWS_PRE, data + req->sent, n);
        if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP) != (int)n) return -1;
        req->sent += n;
        if (req->sent < total) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        req->phase = REPLY_DONE;
    } else {
        return 0;
    }
    /* REPLY_DONE */
    if (req->close_after) return -1;
    if (lws_http_transaction_completed(wsi)) return -1;
    return 0;
}

/* A first line that is not HTTP: lws hands the connection here (FALLBACK_TO_RAW) instead of
 * answering with its own HTML page; the client gets api.md's 400 body, then the close. */
int http_reject_callback(struct lws *wsi, int reason, void *user, void *in, size_t len)
{
    static const char reply[] =
        "HTTP/1.1 400 Bad Request\r\n"
        "content-type: application/json\r\n"
        "content-length: 66\r\n"
        "connection: close\r\n\r\n"
        "{\"error\":{\"code\":\"bad_request\",\"message\":\"malformed request\"}}";
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
    case LWS_CALLBACK_RAW_RX:
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE: {
        uint8_t buf[LWS_PRE + sizeof reply];
        memcpy(buf + LWS_PRE, reply, sizeof reply - 1);
        sl_metric_add(metric_requests(400), 1);
        lws_write(wsi, buf + LWS_PRE, sizeof reply - 1, LWS_WRITE_RAW);
        return -1;
    }
    default:
        return 0;
    }
}

int http_callback(struct lws *wsi, int reason, void *user, void *in, size_t len)
{
    struct http_session *s = user;
    struct lws_vhost *vh = lws_get_vhost(wsi);
    sl_server *srv = vh ? lws_get_vhost_user(vh) : NULL;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    case LWS_CALLBACK_WSI_CREATE:
    case LWS_CALLBACK_WSI_DESTROY:
        return srv ? peer_limits_event(server_peer_limits(srv), wsi, reason, user) : 0;
    case LWS_CALLBACK_HTTP:
        return on_request(srv, s, wsi);
    case LWS_CALLBACK_HTTP_BODY:
        if (s->req == NULL || s->req->phase != REPLY_NONE) return 0;
        if (s->req->body->len + len > SL_HTTP_MAX_BODY) {
            sl_http_reply_error(s->req, 413, "payload_too_large",
                                "request bodies are limited to %d bytes", SL_HTTP_MAX_BODY);
            return 0;
        }
        g_byte_array_append(s->req->body, in, (guint)len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        /* Only a request that waited for its body: one with "Content-Length: 0" (what browsers
         * send for a POST without one) was dispatched at its headers, and its handler may still
         * be waiting on Redis, so it must not run a second time. */
        if (s->req == NULL || s->req->phase != REPLY_NONE || !s->req->body_expected) return 0;
        return dispatch(s->req, wsi);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return on_writeable(s, wsi);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        if (lws_http_transaction_completed(wsi)) return -1;
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL: /* keep-alive: lws frees the session data next */
        if (s && s->req) {
            s->req->wsi = NULL;
            sl_http_req_unref(s->req);
            s->req = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, (enum lws_callback_reasons)reason, user, in, len);
}
