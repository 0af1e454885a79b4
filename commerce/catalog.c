/* catalog: pavilions, channels (with their stream keys and pinned product) and products, as
 * api.md defines them. Documents are JSON strings under the {cat} hash tag. */
#include "internal.h"

#include <string.h>

#define LIST_MAX 1000

json_t *cm_doc(redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING) return NULL;
    json_t *j = json_loadb(r->str, r->len, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- create (shared by pavilions, channels, products) ---- */

static void created(struct cm_ctx *c, redisReply *r)
{
    if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
        if (strcmp(r->str, "exists") == 0) {
            cm_error(c, 409, "conflict", "%s already exists", c->id2);
            return;
        }
        if (strcmp(r->str, "no_parent") == 0) {
            cm_error(c, 404, "not_found", "no pavilion %s", c->id);
            return;
        }
    }
    cm_reply(c, 201, json_incref(c->doc2 ? c->doc2 : c->doc));
}

void cm_create_args_build(struct cm_create_args *a, json_t *doc, const char *doc_key,
                          const char *parent, const char *index, const char *index2,
                          const char *member, const char *map_key, const char *map_value)
{
    a->text = json_dumps(doc, JSON_COMPACT);
    g_snprintf(a->score, sizeof a->score, "%" G_GINT64_FORMAT, sl_now_ms());
    const char *argv[9] = {doc_key,
                           parent ? parent : "",
                           index,
                           index2 ? index2 : "",
                           map_key ? map_key : "",
                           a->text,
                           member,
                           a->score,
                           map_value ? map_value : ""};
    memcpy(a->argv, argv, sizeof argv);
}

void cm_create_args_clear(struct cm_create_args *a)
{
    free(a->text);
    a->text = NULL;
}

/* Store c->doc under doc_key once; c->id2 names it in a conflict message. */
static void create_doc(struct cm_ctx *c, const char *doc_key, const char *parent, const char *index,
                       const char *index2, const char *map_key, const char *map_value)
{
    struct cm_create_args a;
    cm_create_args_build(&a, c->doc, doc_key, parent, index, index2, c->id2, map_key, map_value);
    cm_eval(c, created, c->cm->create, 5, 9, a.argv);
    cm_create_args_clear(&a);
}

/* ---- lists: an index (sorted set) and the documents it names ---- */

/* Channel items also carry `live`, `started_at_ms` and `viewers` (an extension), read in the
 * same MGET, so a channel directory needs no request per channel. */
static gboolean list_is_channels(const struct cm_ctx *c)
{
    return strcmp(c->doc_fmt, SL_KEY_CHANNEL) == 0;
}

static void list_docs(struct cm_ctx *c, redisReply *r)
{
    size_t per = list_is_channels(c) ? 3 : 1, n = r->elements / per;
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *d = cm_doc(r->element[i]);
        if (d == NULL) continue; /* removed between the two reads */
        json_object_del(d, "stream_key");
        if (per == 3) {
            json_t *live = cm_doc(r->element[n + i]);
            redisReply *v = r->element[2 * n + i];
            json_object_set_new(d, "live", json_boolean(live != NULL));
            json_object_set_new(d, "started_at_ms",
                                live ? json_incref(json_object_get(live, "started_at_ms"))
                                     : json_null());
            json_object_set_new(d, "viewers",
                                json_integer(v->type == REDIS_REPLY_STRING
                                                 ? g_ascii_strtoll(v->str, NULL, 10)
                                                 : 0));
            json_decref(live);
        }
        json_array_append_new(items, d);
    }
    cm_reply(c, 200, json_pack("{s:o}", c->id2, items));
}

static void list_index(struct cm_ctx *c, redisReply *r)
{
    if (r->elements == 0) {
        cm_reply(c, 200, json_pack("{s:[]}", c->id2));
        return;
    }
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("MGET"));
    for (size_t i = 0; i < r->elements; i++)
        g_ptr_array_add(argv, g_strdup_printf(c->doc_fmt, r->element[i]->str));
    if (list_is_channels(c)) {
        for (size_t i = 0; i < r->elements; i++)
            g_ptr_array_add(argv, g_strdup_printf(SL_KEY_CHAN_LIVE, r->element[i]->str));
        for (size_t i = 0; i < r->elements; i++)
            g_ptr_array_add(argv, g_strdup_printf(SL_KEY_CHAN_VIEWERS, r->element[i]->str));
    }
    cm_cmd_argv(c, list_docs, argv);
    g_ptr_array_unref(argv);
}

static void list(struct cm_ctx *c, const char *index_key, const char *doc_fmt, const char *wrapper)
{
    c->id2 = g_strdup(wrapper);
    c->doc_fmt = doc_fmt;
    cm_cmd(c, list_index, "ZRANGE %s 0 %d", index_key, LIST_MAX - 1);
}

/* ---- pavilions ---- */

static void pavilion_create(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_auth(c) || !cm_may(c, SL_ROLE_ADMIN, NULL) || !cm_body(c)) return;
    GError *err = NULL;
    c->doc = cm_validate_pavilion(c->body, &err);
    if (c->doc == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    json_object_set_new(c->doc, "created_at_ms", json_integer(sl_now_ms()));
    c->id2 = g_strdup(json_string_value(json_object_get(c->doc, "code")));
    char *key = cm_key(SL_KEY_PAVILION, c->id2);
    create_doc(c, key, NULL, SL_KEY_PAVILIONS, NULL, NULL, NULL);
    g_free(key);
}

static void pavilion_list(sl_http_req *req, void *user)
{
    list(cm_ctx_new(req, user), SL_KEY_PAVILIONS, SL_KEY_PAVILION, "pavilions");
}

static void reply_doc_or_404(struct cm_ctx *c, redisReply *r)
{
    json_t *d = cm_doc(r);
    if (d == NULL) {
        cm_error(c, 404, "not_found", "no such %s: %s", c->id2, c->id);
        return;
    }
    cm_reply(c, 200, d);
}

static void pavilion_get(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "code")) return;
    c->id2 = g_strdup("pavilion");
    cm_cmd(c, reply_doc_or_404, "GET " SL_KEY_PAVILION, c->id);
}

/* ---- products ---- */

static void product_create(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "code") || !cm_auth(c) || !cm_may(c, SL_ROLE_CONSUL, c->id) || !cm_body(c))
        return;
    GError *err = NULL;
    c->doc = cm_validate_product(c->body, &err);
    if (c->doc == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    json_object_set_new(c->doc, "pavilion", json_string(c->id));
    json_object_set_new(c->doc, "created_at_ms", json_integer(sl_now_ms()));
    c->id2 = g_strdup(json_string_value(json_object_get(c->doc, "sku")));
    char *key = cm_key(SL_KEY_PRODUCT, c->id2), *parent = cm_key(SL_KEY_PAVILION, c->id);
    char *index = cm_key(SL_KEY_PAV_PRODUCTS, c->id);
    create_doc(c, key, parent, index, NULL, NULL, NULL);
    g_free(key);
    g_free(parent);
    g_free(index);
}

/* A pavilion's products or channels: 404 for an unknown pavilion, not an empty list. */
static void pavilion_children(struct cm_ctx *c, redisReply *r, const char *index_fmt,
                              const char *doc_fmt, const char *wrapper)
{
    if (r->integer == 0) {
        cm_error(c, 404, "not_found", "no pavilion %s", c->id);
        return;
    }
    char *index = cm_key(index_fmt, c->id);
    list(c, index, doc_fmt, wrapper);
    g_free(index);
}

static void product_list_checked(struct cm_ctx *c, redisReply *r)
{
    pavilion_children(c, r, SL_KEY_PAV_PRODUCTS, SL_KEY_PRODUCT, "products");
}

static void product_list(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "code")) return;
    cm_cmd(c, product_list_checked, "EXISTS " SL_KEY_PAVILION, c->id);
}

static void pavilion_channels_checked(struct cm_ctx *c, redisReply *r)
{
    pavilion_children(c, r, SL_KEY_PAV_CHANNELS, SL_KEY_CHANNEL, "channels");
}

/* Extension: the console lists its pavilion's channels. */
static void pavilion_channels(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "code")) return;
    cm_cmd(c, pavilion_channels_checked, "EXISTS " SL_KEY_PAVILION, c->id);
}

static void product_get(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "sku")) return;
    c->id2 = g_strdup("product");
    cm_cmd(c, reply_doc_or_404, "GET " SL_KEY_PRODUCT, c->id);
}

/* ---- channels ---- */

static char *channel_ws_url(const struct commerce *cm)
{
    return g_str_has_prefix(cm->public_url, "https://")
               ? g_strdup_printf("wss://%s/ws", cm->public_url + 8)
               : g_strdup_printf("ws://%s/ws", cm->public_url + strlen("http://"));
}

static json_t *channel_urls(struct commerce *cm, json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    json_object_set_new(doc, "hls_url", json_sprintf("%s/hls/%s/master.m3u8", cm->public_url, id));
    char *ws = channel_ws_url(cm);
    json_object_set_new(doc, "ws_url", json_string(ws));
    g_free(ws);
    return doc;
}

static void channel_create(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "code") || !cm_auth(c) || !cm_may(c, SL_ROLE_CONSUL, c->id) || !cm_body(c))
        return;
    GError *err = NULL;
    c->doc = cm_validate_channel(c->body, &err);
    if (c->doc == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    /* 240 bits from getrandom: the key is the publisher's only credential */
    char *stream_key = cm_random_id("sk_", 40);
    json_object_set_new(c->doc, "pavilion", json_string(c->id));
    json_object_set_new(c->doc, "stream_key", json_string(stream_key));
    json_object_set_new(c->doc, "created_at_ms", json_integer(sl_now_ms()));
    c->id2 = g_strdup(json_string_value(json_object_get(c->doc, "id")));
    c->doc2 =
        channel_urls(c->cm, json_pack("{s:s, s:s, s:O, s:s, s:s}", "id", c->id2, "pavilion", c->id,
                                      "title", json_object_get(c->doc, "title"), "stream_key",
                                      stream_key, "rtmp_url", c->cm->public_rtmp_url));
    char *key = cm_key(SL_KEY_CHANNEL, c->id2), *parent = cm_key(SL_KEY_PAVILION, c->id);
    char *index2 = cm_key(SL_KEY_PAV_CHANNELS, c->id), *map = cm_key(SL_KEY_STREAMKEY, stream_key);
    create_doc(c, key, parent, SL_KEY_CHANNELS, index2, map, c->id2);
    g_free(key);
    g_free(parent);
    g_free(index2);
    g_free(map);
    g_free(stream_key);
}

/* GET channel: MGET doc, pin, live state, viewers; then the pinned product. */
static void channel_reply(struct cm_ctx *c, json_t *pinned)
{
    json_t *doc = c->doc;
    json_t *view =
        json_pack("{s:O, s:O, s:O, s:b, s:n, s:I, s:[], s:o}", "id", json_object_get(doc, "id"),
                  "pavilion", json_object_get(doc, "pavilion"), "title",
                  json_object_get(doc, "title"), "live", 0, "started_at_ms", "viewers",
                  (json_int_t)c->n, "renditions", "pinned", pinned ? pinned : json_null());
    json_t *live = c->doc2;
    if (live) { /* written by ingest/transcode: {"started_at_ms", "renditions"} */
        json_object_set_new(view, "live", json_true());
        json_object_set(view, "started_at_ms", json_object_get(live, "started_at_ms"));
        if (json_is_array(json_object_get(live, "renditions")))
            json_object_set(view, "renditions", json_object_get(live, "renditions"));
    }
    channel_urls(c->cm, view);
    const char *pav = json_string_value(json_object_get(doc, "pavilion"));
    if (c->authed && (c->who.role == SL_ROLE_ADMIN ||
                      (c->who.role >= SL_ROLE_HOST && pav && strcmp(c->who.pav, pav) == 0))) {
        json_object_set(view, "stream_key", json_object_get(doc, "stream_key"));
        json_object_set_new(view, "rtmp_url", json_string(c->cm->public_rtmp_url));
    }
    cm_reply(c, 200, view);
}

static void channel_got_pin(struct cm_ctx *c, redisReply *r)
{
    channel_reply(c, cm_doc(r));
}

static void channel_got(struct cm_ctx *c, redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        (c->doc = cm_doc(r->element[0])) == NULL) {
        cm_error(c, 404, "not_found", "no channel %s", c->id);
        return;
    }
    c->doc2 = cm_doc(r->element[2]);
    redisReply *v = r->element[3];
    c->n = v->type == REDIS_REPLY_STRING ? g_ascii_strtoll(v->str, NULL, 10) : 0;
    redisReply *pin = r->element[1];
    if (pin->type == REDIS_REPLY_STRING) {
        cm_cmd(c, channel_got_pin, "GET " SL_KEY_PRODUCT, pin->str);
        return;
    }
    channel_reply(c, NULL);
}

/* Public read; a token, when sent, must be valid and then may reveal the stream key. */
static void channel_get(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id")) return;
    if (sl_http_req_header(req, "authorization") && !cm_auth(c)) return;
    cm_cmd(c, channel_got,
           "MGET " SL_KEY_CHANNEL " " SL_KEY_CHAN_PIN " " SL_KEY_CHAN_LIVE " " SL_KEY_CHAN_VIEWERS,
           c->id, c->id, c->id, c->id);
}

static void channel_list(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    const char *live = sl_http_req_query(req, "live");
    if (live && strcmp(live, "true") && strcmp(live, "false")) {
        cm_error(c, 400, "bad_request", "live must be true or false");
        return;
    }
    list(c, live && strcmp(live, "true") == 0 ? SL_KEY_LIVE_CHANS : SL_KEY_CHANNELS, SL_KEY_CHANNEL,
         "channels");
}

/* ---- stream key rotation ---- */

static void rotated(struct cm_ctx *c, redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "changed") == 0) {
        cm_error(c, 409, "conflict", "the channel changed meanwhile; try again");
        return;
    }
    /* ingest nodes drop a publisher whose key is no longer the channel's */
    char *msg = g_strdup_printf("{\"type\":\"stream_key_rotated\",\"channel\":\"%s\"}", c->id);
    sl_redis_command(sl_server_redis(c->cm->srv), NULL, NULL, "PUBLISH silklive:control %s", msg);
    g_free(msg);
    cm_reply(c, 200,
             json_pack("{s:s, s:O, s:s}", "id", c->id, "stream_key",
                       json_object_get(c->doc, "stream_key"), "rtmp_url", c->cm->public_rtmp_url));
}

static void rotate_loaded(struct cm_ctx *c, redisReply *r)
{
    json_t *doc = cm_doc(r);
    if (doc == NULL) {
        cm_error(c, 404, "not_found", "no channel %s", c->id);
        return;
    }
    c->doc = doc;
    if (!cm_may(c, SL_ROLE_CONSUL, json_string_value(json_object_get(doc, "pavilion")))) return;
    char *old_text = g_strndup(r->str, r->len);
    char *old_map = cm_key(SL_KEY_STREAMKEY, json_string_value(json_object_get(doc, "stream_key")));
    char *fresh = cm_random_id("sk_", 40);
    json_object_set_new(doc, "stream_key", json_string(fresh));
    char *new_text = json_dumps(doc, JSON_COMPACT);
    char *new_map = cm_key(SL_KEY_STREAMKEY, fresh), *key = cm_key(SL_KEY_CHANNEL, c->id);
    const char *argv[] = {key, old_map, new_map, old_text, new_text, c->id};
    cm_eval(c, rotated, c->cm->cas, 3, 6, argv);
    g_free(old_text);
    g_free(old_map);
    g_free(fresh);
    free(new_text);
    g_free(new_map);
    g_free(key);
}

static void channel_rotate_key(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    cm_cmd(c, rotate_loaded, "GET " SL_KEY_CHANNEL, c->id);
}

/* ---- pin ---- */

static void pin_stored(struct cm_ctx *c, redisReply *r)
{
    json_t *ev = sl_room_event_new(c->doc2 ? SL_ROOM_EV_PIN : SL_ROOM_EV_UNPIN);
    if (c->doc2) json_object_set(ev, "product", c->doc2);
    json_object_set_new(ev, "channel", json_string(c->id));
    sl_room_emit(c->cm->srv, c->id, ev, NULL, NULL);
    json_decref(ev);
    cm_reply(c, 200,
             json_pack("{s:s, s:O}", "channel", c->id, "pinned", c->doc2 ? c->doc2 : json_null()));
}

static void pin_product_loaded(struct cm_ctx *c, redisReply *r)
{
    c->doc2 = cm_doc(r);
    const char *pav = json_string_value(json_object_get(c->doc, "pavilion"));
    const char *ppav = c->doc2 ? json_string_value(json_object_get(c->doc2, "pavilion")) : NULL;
    if (c->doc2 == NULL || ppav == NULL || strcmp(ppav, pav) != 0) {
        cm_error(c, 404, "not_found", "no product %s in pavilion %s", c->id2, pav);
        return;
    }
    cm_cmd(c, pin_stored, "SET " SL_KEY_CHAN_PIN " %s", c->id, c->id2);
}

static void pin_channel_loaded(struct cm_ctx *c, redisReply *r)
{
    c->doc = cm_doc(r);
    if (c->doc == NULL) {
        cm_error(c, 404, "not_found", "no channel %s", c->id);
        return;
    }
    if (!cm_may(c, SL_ROLE_HOST, json_string_value(json_object_get(c->doc, "pavilion")))) return;
    if (c->id2 == NULL) { /* unpin */
        cm_cmd(c, pin_stored, "DEL " SL_KEY_CHAN_PIN, c->id);
        return;
    }
    cm_cmd(c, pin_product_loaded, "GET " SL_KEY_PRODUCT, c->id2);
}

static void channel_pin(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id") || !cm_auth(c) || !cm_body(c)) return;
    json_t *sku = json_object_get(c->body, "sku");
    if (!json_is_string(sku) || !sl_id_valid(json_string_value(sku), json_string_length(sku))) {
        cm_error(c, 400, "bad_request", "sku must match [A-Za-z0-9_-]{1,64}");
        return;
    }
    c->id2 = g_strdup(json_string_value(sku));
    cm_cmd(c, pin_channel_loaded, "GET " SL_KEY_CHANNEL, c->id);
}

static void channel_unpin(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    cm_cmd(c, pin_channel_loaded, "GET " SL_KEY_CHANNEL, c->id);
}

void cm_catalog_routes(struct commerce *cm)
{
    sl_server *srv = cm->srv;
    sl_http_route(srv, "POST", "/api/v1/pavilions", pavilion_create, cm);
    sl_http_route(srv, "GET", "/api/v1/pavilions", pavilion_list, cm);
    sl_http_route(srv, "GET", "/api/v1/pavilions/{code}", pavilion_get, cm);
    sl_http_route(srv, "POST", "/api/v1/pavilions/{code}/channels", channel_create, cm);
    sl_http_route(srv, "GET", "/api/v1/pavilions/{code}/channels", pavilion_channels, cm);
    sl_http_route(srv, "POST", "/api/v1/pavilions/{code}/products", product_create, cm);
    sl_http_route(srv, "GET", "/api/v1/pavilions/{code}/products", product_list, cm);
    sl_http_route(srv, "GET", "/api/v1/products/{sku}", product_get, cm);
    sl_http_route(srv, "GET", "/api/v1/channels", channel_list, cm);
    sl_http_route(srv, "GET", "/api/v1/channels/{id}", channel_get, cm);
    sl_http_route(srv, "POST", "/api/v1/channels/{id}/stream-key", channel_rotate_key, cm);
    sl_http_route(srv, "POST", "/api/v1/channels/{id}/pin", channel_pin, cm);
    sl_http_route(srv, "DELETE", "/api/v1/channels/{id}/pin", channel_unpin, cm);
}
