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

struct create_flow {
    struct cm_ctx c;
    json_t *doc;    /* owned: what is stored */
    json_t *answer; /* owned: what the 201 shows when it is not doc (a channel's key and URLs) */
    char *name;     /* owned: the new document's id, for the conflict message */
};

static void create_flow_clear(struct cm_ctx *c)
{
    struct create_flow *f = CM_FLOW(struct create_flow, c);
    json_decref(f->doc);
    json_decref(f->answer);
    g_free(f->name);
}

static void created(struct cm_ctx *c, redisReply *r)
{
    struct create_flow *f = CM_FLOW(struct create_flow, c);
    if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
        if (strcmp(r->str, "exists") == 0) {
            cm_error(c, 409, "conflict", "%s already exists", f->name);
            return;
        }
        if (strcmp(r->str, "no_parent") == 0) {
            cm_error(c, 404, "not_found", "no pavilion %s", c->id);
            return;
        }
    }
    cm_reply(c, 201, json_incref(f->answer ? f->answer : f->doc));
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

/* Store f->doc under doc_key once, indexed under f->name. */
static void create_doc(struct create_flow *f, const char *doc_key, const char *parent,
                       const char *index, const char *index2, const char *map_key,
                       const char *map_value)
{
    struct cm_create_args a;
    cm_create_args_build(&a, f->doc, doc_key, parent, index, index2, f->name, map_key, map_value);
    cm_eval(&f->c, created, f->c.cm->create, 5, 9, a.argv);
    cm_create_args_clear(&a);
}

/* ---- lists: an index (sorted set) and the documents it names ---- */

struct list_flow {
    struct cm_ctx c;
    const char *doc_fmt; /* static: the key format of the documents the index names */
    const char *wrapper; /* static: the answer's one member, {"<wrapper>": [...]} */
};

static struct list_flow *list_flow_new(sl_http_req *req, void *user)
{
    return CM_FLOW_NEW(struct list_flow, req, user, NULL);
}

/* Channel items also carry `live`, `started_at_ms` and `viewers` (an extension), read in the
 * same MGET, so a channel directory needs no request per channel. */
static gboolean list_is_channels(const struct list_flow *f)
{
    return strcmp(f->doc_fmt, SL_KEY_CHANNEL) == 0;
}

static void list_docs(struct cm_ctx *c, redisReply *r)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    size_t per = list_is_channels(f) ? 3 : 1, n = r->elements / per;
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
    cm_reply(c, 200, json_pack("{s:o}", f->wrapper, items));
}

static void list_index(struct cm_ctx *c, redisReply *r)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    if (r->elements == 0) {
        cm_reply(c, 200, json_pack("{s:[]}", f->wrapper));
        return;
    }
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("MGET"));
    for (size_t i = 0; i < r->elements; i++)
        g_ptr_array_add(argv, g_strdup_printf(f->doc_fmt, r->element[i]->str));
    if (list_is_channels(f)) {
        for (size_t i = 0; i < r->elements; i++)
            g_ptr_array_add(argv, g_strdup_printf(SL_KEY_CHAN_LIVE, r->element[i]->str));
        for (size_t i = 0; i < r->elements; i++)
            g_ptr_array_add(argv, g_strdup_printf(SL_KEY_CHAN_VIEWERS, r->element[i]->str));
    }
    cm_cmd_argv(c, list_docs, argv);
    g_ptr_array_unref(argv);
}

static void list(struct list_flow *f, const char *index_key, const char *doc_fmt,
                 const char *wrapper)
{
    f->wrapper = wrapper;
    f->doc_fmt = doc_fmt;
    cm_cmd(&f->c, list_index, "ZRANGE %s 0 %d", index_key, LIST_MAX - 1);
}

/* ---- pavilions ---- */

static void pavilion_create(sl_http_req *req, void *user)
{
    struct create_flow *f = CM_FLOW_NEW(struct create_flow, req, user, create_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_auth(c) || !cm_may(c, SL_ROLE_ADMIN, NULL) || !cm_body(c)) return;
    GError *err = NULL;
    f->doc = cm_validate_pavilion(c->body, &err);
    if (f->doc == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    json_object_set_new(f->doc, "created_at_ms", json_integer(sl_now_ms()));
    f->name = g_strdup(json_string_value(json_object_get(f->doc, "code")));
    char *key = cm_key(SL_KEY_PAVILION, f->name);
    create_doc(f, key, NULL, SL_KEY_PAVILIONS, NULL, NULL, NULL);
    g_free(key);
}

static void pavilion_list(sl_http_req *req, void *user)
{
    list(list_flow_new(req, user), SL_KEY_PAVILIONS, SL_KEY_PAVILION, "pavilions");
}

/* A document read by its path id; kind names it in the 404. */
struct get_flow {
    struct cm_ctx c;
    const char *kind; /* static */
};

static void reply_doc_or_404(struct cm_ctx *c, redisReply *r)
{
    json_t *d = cm_doc(r);
    if (d == NULL) {
        cm_error(c, 404, "not_found", "no such %s: %s", CM_FLOW(struct get_flow, c)->kind, c->id);
        return;
    }
    cm_reply(c, 200, d);
}

static void get_doc(sl_http_req *req, void *user, const char *param, const char *kind,
                    const char *key_fmt)
{
    struct get_flow *f = CM_FLOW_NEW(struct get_flow, req, user, NULL);
    f->kind = kind;
    if (!cm_path_id(&f->c, param)) return;
    char *key = cm_key(key_fmt, f->c.id);
    cm_cmd(&f->c, reply_doc_or_404, "GET %s", key);
    g_free(key);
}

static void pavilion_get(sl_http_req *req, void *user)
{
    get_doc(req, user, "code", "pavilion", SL_KEY_PAVILION);
}

/* ---- products ---- */

static void product_create(sl_http_req *req, void *user)
{
    struct create_flow *f = CM_FLOW_NEW(struct create_flow, req, user, create_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "code") || !cm_auth(c) || !cm_may(c, SL_ROLE_CONSUL, c->id) || !cm_body(c))
        return;
    GError *err = NULL;
    f->doc = cm_validate_product(c->body, &err);
    if (f->doc == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    json_object_set_new(f->doc, "pavilion", json_string(c->id));
    json_object_set_new(f->doc, "created_at_ms", json_integer(sl_now_ms()));
    f->name = g_strdup(json_string_value(json_object_get(f->doc, "sku")));
    char *key = cm_key(SL_KEY_PRODUCT, f->name), *parent = cm_key(SL_KEY_PAVILION, c->id);
    char *index = cm_key(SL_KEY_PAV_PRODUCTS, c->id);
    create_doc(f, key, parent, index, NULL, NULL, NULL);
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
    list(CM_FLOW(struct list_flow, c), index, doc_fmt, wrapper);
    g_free(index);
}

static void product_list_checked(struct cm_ctx *c, redisReply *r)
{
    pavilion_children(c, r, SL_KEY_PAV_PRODUCTS, SL_KEY_PRODUCT, "products");
}

static void product_list(sl_http_req *req, void *user)
{
    struct cm_ctx *c = &list_flow_new(req, user)->c;
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
    struct cm_ctx *c = &list_flow_new(req, user)->c;
    if (!cm_path_id(c, "code")) return;
    cm_cmd(c, pavilion_channels_checked, "EXISTS " SL_KEY_PAVILION, c->id);
}

static void product_get(sl_http_req *req, void *user)
{
    get_doc(req, user, "sku", "product", SL_KEY_PRODUCT);
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
    struct create_flow *f = CM_FLOW_NEW(struct create_flow, req, user, create_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "code") || !cm_auth(c) || !cm_may(c, SL_ROLE_CONSUL, c->id) || !cm_body(c))
        return;
    GError *err = NULL;
    f->doc = cm_validate_channel(c->body, &err);
    if (f->doc == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    /* 240 bits from getrandom: the key is the publisher's only credential */
    char *stream_key = cm_random_id("sk_", 40);
    json_object_set_new(f->doc, "pavilion", json_string(c->id));
    json_object_set_new(f->doc, "stream_key", json_string(stream_key));
    json_object_set_new(f->doc, "created_at_ms", json_integer(sl_now_ms()));
    f->name = g_strdup(json_string_value(json_object_get(f->doc, "id")));
    f->answer =
        channel_urls(c->cm, json_pack("{s:s, s:s, s:O, s:s, s:s}", "id", f->name, "pavilion", c->id,
                                      "title", json_object_get(f->doc, "title"), "stream_key",
                                      stream_key, "rtmp_url", c->cm->public_rtmp_url));
    char *key = cm_key(SL_KEY_CHANNEL, f->name), *parent = cm_key(SL_KEY_PAVILION, c->id);
    char *index2 = cm_key(SL_KEY_PAV_CHANNELS, c->id), *map = cm_key(SL_KEY_STREAMKEY, stream_key);
    create_doc(f, key, parent, SL_KEY_CHANNELS, index2, map, f->name);
    g_free(key);
    g_free(parent);
    g_free(index2);
    g_free(map);
    g_free(stream_key);
}

/* GET channel: MGET doc, pin, live state, viewers; then the pinned product. */
struct channel_flow {
    struct cm_ctx c;
    json_t *channel; /* owned: the channel document */
    json_t *live;    /* owned: transcode's live state, NULL while offline */
    int64_t viewers;
};

static void channel_flow_clear(struct cm_ctx *c)
{
    struct channel_flow *f = CM_FLOW(struct channel_flow, c);
    json_decref(f->channel);
    json_decref(f->live);
}

static void channel_reply(struct cm_ctx *c, json_t *pinned)
{
    struct channel_flow *f = CM_FLOW(struct channel_flow, c);
    json_t *doc = f->channel;
    json_t *view =
        json_pack("{s:O, s:O, s:O, s:b, s:n, s:I, s:[], s:o}", "id", json_object_get(doc, "id"),
                  "pavilion", json_object_get(doc, "pavilion"), "title",
                  json_object_get(doc, "title"), "live", 0, "started_at_ms", "viewers",
                  (json_int_t)f->viewers, "renditions", "pinned", pinned ? pinned : json_null());
    json_t *live = f->live;
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
    struct channel_flow *f = CM_FLOW(struct channel_flow, c);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        (f->channel = cm_doc(r->element[0])) == NULL) {
        cm_error(c, 404, "not_found", "no channel %s", c->id);
        return;
    }
    f->live = cm_doc(r->element[2]);
    redisReply *v = r->element[3];
    f->viewers = v->type == REDIS_REPLY_STRING ? g_ascii_strtoll(v->str, NULL, 10) : 0;
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
    struct cm_ctx *c = &CM_FLOW_NEW(struct channel_flow, req, user, channel_flow_clear)->c;
    if (!cm_path_id(c, "id")) return;
    if (sl_http_req_header(req, "authorization") && !cm_auth(c)) return;
    cm_cmd(c, channel_got,
           "MGET " SL_KEY_CHANNEL " " SL_KEY_CHAN_PIN " " SL_KEY_CHAN_LIVE " " SL_KEY_CHAN_VIEWERS,
           c->id, c->id, c->id, c->id);
}

static void channel_list(sl_http_req *req, void *user)
{
    struct list_flow *f = list_flow_new(req, user);
    const char *live = sl_http_req_query(req, "live");
    if (live && strcmp(live, "true") && strcmp(live, "false")) {
        cm_error(&f->c, 400, "bad_request", "live must be true or false");
        return;
    }
    list(f, live && strcmp(live, "true") == 0 ? SL_KEY_LIVE_CHANS : SL_KEY_CHANNELS, SL_KEY_CHANNEL,
         "channels");
}

/* ---- stream key rotation ---- */

struct rotate_flow {
    struct cm_ctx c;
    json_t *channel; /* owned: the channel document with its new key */
};

static void rotate_flow_clear(struct cm_ctx *c)
{
    json_decref(CM_FLOW(struct rotate_flow, c)->channel);
}

static void rotated(struct cm_ctx *c, redisReply *r)
{
    struct rotate_flow *f = CM_FLOW(struct rotate_flow, c);
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
                       json_object_get(f->channel, "stream_key"), "rtmp_url",
                       c->cm->public_rtmp_url));
}

static void rotate_loaded(struct cm_ctx *c, redisReply *r)
{
    json_t *doc = cm_doc(r);
    if (doc == NULL) {
        cm_error(c, 404, "not_found", "no channel %s", c->id);
        return;
    }
    CM_FLOW(struct rotate_flow, c)->channel = doc;
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
    struct cm_ctx *c = &CM_FLOW_NEW(struct rotate_flow, req, user, rotate_flow_clear)->c;
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    cm_cmd(c, rotate_loaded, "GET " SL_KEY_CHANNEL, c->id);
}

/* ---- pin ---- */

struct pin_flow {
    struct cm_ctx c;
    char *sku;       /* owned: the product to pin; NULL to unpin */
    json_t *channel; /* owned: the channel document */
    json_t *product; /* owned: the product document, once read */
};

static void pin_flow_clear(struct cm_ctx *c)
{
    struct pin_flow *f = CM_FLOW(struct pin_flow, c);
    g_free(f->sku);
    json_decref(f->channel);
    json_decref(f->product);
}

static void pin_stored(struct cm_ctx *c, redisReply *r)
{
    struct pin_flow *f = CM_FLOW(struct pin_flow, c);
    json_t *ev = sl_room_event_new(f->product ? SL_ROOM_EV_PIN : SL_ROOM_EV_UNPIN);
    if (f->product) json_object_set(ev, "product", f->product);
    json_object_set_new(ev, "channel", json_string(c->id));
    sl_room_emit(c->cm->srv, c->id, ev, NULL, NULL);
    json_decref(ev);
    cm_reply(
        c, 200,
        json_pack("{s:s, s:O}", "channel", c->id, "pinned", f->product ? f->product : json_null()));
}

static void pin_product_loaded(struct cm_ctx *c, redisReply *r)
{
    struct pin_flow *f = CM_FLOW(struct pin_flow, c);
    f->product = cm_doc(r);
    const char *pav = json_string_value(json_object_get(f->channel, "pavilion"));
    const char *ppav =
        f->product ? json_string_value(json_object_get(f->product, "pavilion")) : NULL;
    if (f->product == NULL || ppav == NULL || strcmp(ppav, pav) != 0) {
        cm_error(c, 404, "not_found", "no product %s in pavilion %s", f->sku, pav);
        return;
    }
    cm_cmd(c, pin_stored, "SET " SL_KEY_CHAN_PIN " %s", c->id, f->sku);
}

static void pin_channel_loaded(struct cm_ctx *c, redisReply *r)
{
    struct pin_flow *f = CM_FLOW(struct pin_flow, c);
    f->channel = cm_doc(r);
    if (f->channel == NULL) {
        cm_error(c, 404, "not_found", "no channel %s", c->id);
        return;
    }
    if (!cm_may(c, SL_ROLE_HOST, json_string_value(json_object_get(f->channel, "pavilion"))))
        return;
    if (f->sku == NULL) { /* unpin */
        cm_cmd(c, pin_stored, "DEL " SL_KEY_CHAN_PIN, c->id);
        return;
    }
    cm_cmd(c, pin_product_loaded, "GET " SL_KEY_PRODUCT, f->sku);
}

static void channel_pin(sl_http_req *req, void *user)
{
    struct pin_flow *f = CM_FLOW_NEW(struct pin_flow, req, user, pin_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "id") || !cm_auth(c) || !cm_body(c)) return;
    json_t *sku = json_object_get(c->body, "sku");
    if (!json_is_string(sku) || !sl_id_valid(json_string_value(sku), json_string_length(sku))) {
        cm_error(c, 400, "bad_request", "sku must match [A-Za-z0-9_-]{1,64}");
        return;
    }
    f->sku = g_strdup(json_string_value(sku));
    cm_cmd(c, pin_channel_loaded, "GET " SL_KEY_CHANNEL, c->id);
}

static void channel_unpin(sl_http_req *req, void *user)
{
    struct cm_ctx *c = &CM_FLOW_NEW(struct pin_flow, req, user, pin_flow_clear)->c;
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
