/* sale: flash sales, reservations and orders. Every stock movement is one Lua script (reserve,
 * confirm, release, sweep, control) so available + held + sold == quantity at every instant;
 * this file prepares keys and arguments, maps script answers to api.md, and tells the room. */
#include "internal.h"

#include <string.h>
#include <time.h>

#define SWEEP_INTERVAL_MS       250
#define SWEEP_BATCH             "200"
#define LAZY_RELEASE_MAX        "50"
#define IDEMPOTENCY_TTL_S       "86400"
#define STOCK_EVENT_INTERVAL_US (100 * 1000) /* at most 10 stock events per second per sale */
#define SALES_PER_CHANNEL_MAX   200

/* ---- metrics ---- */

/* Handles looked up once per result: this runs on every reservation. */
static void count_reservation(const char *result)
{
    static const char *results[] = {
        "ok",      "existing",    "sold_out", "limit_exceeded", "sale_not_active",
        "bad_qty", "quota_order", "not_found"};
    static sl_metric *handles[G_N_ELEMENTS(results) + 1];
    size_t i = 0;
    while (i < G_N_ELEMENTS(results) && strcmp(results[i], result) != 0)
        i++;
    if (handles[i] == NULL) {
        char labels[64];
        g_snprintf(labels, sizeof labels, "result=\"%s\"",
                   i < G_N_ELEMENTS(results) ? results[i] : "other");
        handles[i] = sl_metric_get("silklive_reservations_total", SL_METRIC_COUNTER,
                                   "Reservation attempts, by result", labels, 1);
    }
    sl_metric_add(handles[i], 1);
}

/* ---- the sale document ---- */

static json_t *int_or_null(const char *v)
{
    gint64 n = v ? g_ascii_strtoll(v, NULL, 10) : 0;
    return n > 0 ? json_integer(n) : json_null();
}

/* HGETALL reply -> api.md's sale object; NULL for an empty reply (no such sale). */
static json_t *sale_doc(redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0) return NULL;
    GHashTable *f = g_hash_table_new(g_str_hash, g_str_equal);
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        g_hash_table_insert(f, r->element[i]->str, r->element[i + 1]->str);
#define F(k) ((const char *)g_hash_table_lookup(f, k))
#define N(k) (json_int_t)(F(k) ? g_ascii_strtoll(F(k), NULL, 10) : 0)
    json_t *doc =
        json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, "
                  "s:o, s:I}",
                  "id", F("id"), "channel", F("channel"), "sku", F("sku"), "pavilion",
                  F("pavilion"), "state", F("state"), "quantity", N("quantity"), "available",
                  N("available"), "held", N("held"), "sold", N("sold"), "per_user_limit",
                  N("per_user_limit"), "price_cny_fen", N("price_cny_fen"), "hold_ttl_s",
                  N("hold_ttl_ms") / 1000, "starts_at_ms", int_or_null(F("starts_at_ms")),
                  "ends_at_ms", int_or_null(F("ends_at_ms")), "created_at_ms", N("created_at_ms"));
#undef F
#undef N
    g_hash_table_unref(f);
    return doc;
}

/* ---- room events, stock coalescing ---- */

struct sale_event {
    struct commerce *cm;
    char *sale_id; /* owned */
    char *event;   /* owned */
};

static void sale_event_loaded(redisReply *r, const char *err, void *user)
{
    struct sale_event *e = user;
    json_t *doc = sale_doc(r);
    if (doc) {
        const char *channel = json_string_value(json_object_get(doc, "channel"));
        json_t *ev = sl_room_event_new(SL_ROOM_EV_SALE);
        json_object_set_new(ev, "event", json_string(e->event));
        json_object_set(ev, "sale", doc);
        if (channel) sl_room_emit(e->cm->srv, channel, ev, NULL, NULL);
        json_decref(ev);
        json_decref(doc);
    } else if (r == NULL) {
        g_warning("sale %s: %s event lost: %s", e->sale_id, e->event, err);
    }
    g_free(e->sale_id);
    g_free(e->event);
    g_free(e);
}

void cm_sale_event(struct commerce *cm, const char *sale_id, const char *event)
{
    struct sale_event *e = g_new0(struct sale_event, 1);
    e->cm = cm;
    e->sale_id = g_strdup(sale_id);
    e->event = g_strdup(event);
    /* read after the change, so the event carries the counts as they are now */
    if (sl_redis_command(sl_server_redis(cm->srv), sale_event_loaded, e, "HGETALL " SL_KEY_SALE_INV,
                         sale_id) != SL_OK)
        sale_event_loaded(NULL, "not connected", e);
}

struct sale_watch {
    struct commerce *cm;
    char *id; /* owned; also the hash key */
    gint64 last_emit_us;
    guint timer;
};

void cm_watch_free(gpointer p)
{
    struct sale_watch *w = p;
    if (w->timer) g_source_remove(w->timer);
    g_free(w->id);
    g_free(w);
}

static gboolean watch_flush(gpointer data)
{
    struct sale_watch *w = data;
    w->timer = 0;
    w->last_emit_us = g_get_monotonic_time();
    cm_sale_event(w->cm, w->id, "stock");
    return G_SOURCE_REMOVE;
}

/* Stock changed: one event now if none went out in the last 100 ms, else one at the end of that
 * window. The event reads the counts when it is sent, so the last one carries the final count. */
static void stock_changed(struct commerce *cm, const char *sale_id)
{
    if (cm->stopping) return;
    struct sale_watch *w = g_hash_table_lookup(cm->watches, sale_id);
    if (w == NULL) {
        w = g_new0(struct sale_watch, 1);
        w->cm = cm;
        w->id = g_strdup(sale_id);
        g_hash_table_insert(cm->watches, w->id, w);
    }
    if (w->timer) return;
    gint64 wait = w->last_emit_us + STOCK_EVENT_INTERVAL_US - g_get_monotonic_time();
    if (wait <= 0)
        watch_flush(w);
    else
        w->timer = g_timeout_add((guint)(wait / 1000) + 1, watch_flush, w);
}

/* Script replies end with the snapshot (state quantity available held sold ver) and an event. */
void cm_sale_after_script(struct commerce *cm, const char *sale_id, redisReply *r, size_t snap_at,
                          gboolean stock_moved)
{
    if (r->elements < snap_at + 7) return;
    redisReply *ev = r->element[snap_at + 6];
    if (ev->type == REDIS_REPLY_STRING && ev->len > 0) cm_sale_event(cm, sale_id, ev->str);
    if (stock_moved) stock_changed(cm, sale_id);
}

static int64_t snap_int(redisReply *r, size_t snap_at, int field)
{
    redisReply *e = r->element[snap_at + (size_t)field];
    return e->type == REDIS_REPLY_STRING ? g_ascii_strtoll(e->str, NULL, 10) : 0;
}

/* ---- keys ---- */

/* ---- create ---- */

struct sale_flow {
    struct cm_ctx c;
    json_t *sale;    /* owned: the validated request, then the sale as stored */
    json_t *channel; /* owned: the sale's channel document */
    char *sale_id;   /* owned */
};

static void sale_flow_clear(struct cm_ctx *c)
{
    struct sale_flow *f = CM_FLOW(struct sale_flow, c);
    json_decref(f->sale);
    json_decref(f->channel);
    g_free(f->sale_id);
}

static void sale_indexed(struct cm_ctx *c, redisReply *r)
{
    struct sale_flow *f = CM_FLOW(struct sale_flow, c);
    const char *state = json_string_value(json_object_get(f->sale, "state"));
    cm_sale_event(c->cm, f->sale_id, strcmp(state, "active") == 0 ? "started" : "scheduled");
    cm_reply(c, 201, json_incref(f->sale));
}

static void sale_stored(struct cm_ctx *c, redisReply *r)
{
    struct sale_flow *f = CM_FLOW(struct sale_flow, c);
    /* Indexes of the catalog slot; the open set is what the sweeper walks. */
    sl_redis_command(sl_server_redis(c->cm->srv), NULL, NULL, "ZADD " SL_KEY_CHAN_SALES " %lld %s",
                     json_string_value(json_object_get(f->sale, "channel")), (long long)sl_now_ms(),
                     f->sale_id);
    cm_cmd(c, sale_indexed, "SADD " SL_KEY_SALES_OPEN " %s", f->sale_id);
}

static void sale_parents_loaded(struct cm_ctx *c, redisReply *r)
{
    struct sale_flow *f = CM_FLOW(struct sale_flow, c);
    json_t *chan = r->elements == 2 ? cm_doc(r->element[0]) : NULL;
    json_t *product = r->elements == 2 ? cm_doc(r->element[1]) : NULL;
    json_t *sale = f->sale;
    const char *cpav = json_string_value(json_object_get(chan, "pavilion"));
    const char *ppav = json_string_value(json_object_get(product, "pavilion"));
    if (chan == NULL || product == NULL || cpav == NULL || ppav == NULL ||
        strcmp(cpav, ppav) != 0) {
        json_decref(chan);
        json_decref(product);
        cm_error(c, 404, "not_found",
                 chan == NULL ? "no such channel"
                              : "no such product in the "
                                "channel's pavilion");
        return;
    }
    f->channel = chan;
    if (!cm_may(c, SL_ROLE_CONSUL, cpav)) {
        json_decref(product);
        return;
    }
    int64_t now = sl_now_ms();
    int64_t price = json_integer_value(json_object_get(sale, "price_cny_fen"));
    if (price < 0) price = json_integer_value(json_object_get(product, "price_cny_fen"));
    json_decref(product);
    int64_t starts = json_integer_value(json_object_get(sale, "starts_at_ms"));
    int64_t ends = json_integer_value(json_object_get(sale, "ends_at_ms"));
    if (starts <= 0) starts = now;
    const char *state = starts <= now ? "active" : "scheduled";
    f->sale_id = cm_random_id("S", 15);
    int64_t qty = json_integer_value(json_object_get(sale, "quantity"));
    int64_t limit = json_integer_value(json_object_get(sale, "per_user_limit"));
    int64_t ttl = json_integer_value(json_object_get(sale, "hold_ttl_s"));
    const char *sku = json_string_value(json_object_get(sale, "sku"));
    const char *channel = json_string_value(json_object_get(sale, "channel"));
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:o, s:I}",
        "id", f->sale_id, "channel", channel, "sku", sku, "pavilion", cpav, "state", state,
        "quantity", (json_int_t)qty, "available", (json_int_t)qty, "held", (json_int_t)0, "sold",
        (json_int_t)0, "per_user_limit", (json_int_t)limit, "price_cny_fen", (json_int_t)price,
        "hold_ttl_s", (json_int_t)ttl, "starts_at_ms", (json_int_t)starts, "ends_at_ms",
        ends > 0 ? json_integer(ends) : json_null(), "created_at_ms", (json_int_t)now);
    /* sku and channel point into the request: it goes only after their last use below */
    json_t *request = f->sale;
    f->sale = doc;
    cm_cmd(c, sale_stored,
           "HSET " SL_KEY_SALE_INV " id %s channel %s sku %s pavilion %s state %s quantity %lld "
           "available %lld held 0 sold 0 ver 0 per_user_limit %lld price_cny_fen %lld "
           "hold_ttl_ms %lld starts_at_ms %lld ends_at_ms %lld created_at_ms %lld",
           f->sale_id, f->sale_id, channel, sku, cpav, state, (long long)qty, (long long)qty,
           (long long)limit, (long long)price, (long long)(ttl * 1000), (long long)starts,
           (long long)ends, (long long)now);
    json_decref(request);
}

static void sale_create(sl_http_req *req, void *user)
{
    struct sale_flow *f = CM_FLOW_NEW(struct sale_flow, req, user, sale_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_auth(c) || !cm_may(c, SL_ROLE_CONSUL, c->who.pav) || !cm_body(c)) return;
    GError *err = NULL;
    f->sale = cm_validate_sale(c->body, sl_now_ms(), &err);
    if (f->sale == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return;
    }
    cm_cmd(c, sale_parents_loaded, "MGET " SL_KEY_CHANNEL " " SL_KEY_PRODUCT,
           json_string_value(json_object_get(f->sale, "channel")),
           json_string_value(json_object_get(f->sale, "sku")));
}

/* ---- read ---- */

static void sale_loaded(struct cm_ctx *c, redisReply *r)
{
    json_t *doc = sale_doc(r);
    if (doc == NULL) {
        cm_error(c, 404, "not_found", "no sale %s", c->id);
        return;
    }
    cm_reply(c, 200, doc);
}

static void sale_get(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id")) return;
    cm_cmd(c, sale_loaded, "HGETALL " SL_KEY_SALE_INV, c->id);
}

/* A channel's sales live in one slot each: read them all, answer when the last one is back. */
struct sales_fanout {
    struct cm_ctx *c;
    json_t **docs; /* owned, one per sale */
    size_t n, left;
    gboolean failed;
};

static void sales_fanout_reply(redisReply *r, const char *err, void *user)
{
    struct sales_fanout *f = user;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        f->failed = TRUE;
    else {
        for (size_t k = 0; k < f->n; k++)
            if (f->docs[k] == NULL) {
                f->docs[k] = sale_doc(r);
                if (f->docs[k] == NULL) f->docs[k] = json_null();
                break;
            }
    }
    if (--f->left > 0) return;
    if (f->failed) {
        cm_error(f->c, 503, "unavailable", "the store is unavailable");
    } else {
        json_t *arr = json_array();
        for (size_t k = 0; k < f->n; k++)
            if (json_is_object(f->docs[k])) json_array_append(arr, f->docs[k]);
        cm_reply(f->c, 200, json_pack("{s:o}", "sales", arr));
    }
    for (size_t k = 0; k < f->n; k++)
        json_decref(f->docs[k]);
    g_free(f->docs);
    g_free(f);
}

static void channel_sales_index(struct cm_ctx *c, redisReply *r)
{
    if (r->elements == 0) {
        cm_reply(c, 200, json_pack("{s:[]}", "sales"));
        return;
    }
    struct sales_fanout *f = g_new0(struct sales_fanout, 1);
    f->c = c;
    f->n = r->elements;
    f->docs = g_new0(json_t *, f->n);
    f->left = f->n;
    /* replies on one connection come back in order, so filling the first empty slot keeps
     * the index's order */
    for (size_t i = 0; i < r->elements; i++) {
        if (sl_redis_command(sl_server_redis(c->cm->srv), sales_fanout_reply, f,
                             "HGETALL " SL_KEY_SALE_INV, r->element[i]->str) != SL_OK)
            sales_fanout_reply(NULL, "not connected", f);
    }
}

static void channel_sales(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id")) return;
    cm_cmd(c, channel_sales_index, "ZRANGE " SL_KEY_CHAN_SALES " 0 %d", c->id,
           SALES_PER_CHANNEL_MAX - 1);
}

/* ---- start / stop ---- */

struct control_flow {
    struct cm_ctx c;
    const char *action; /* static: "start" or "stop" */
};

static void sale_controlled(struct cm_ctx *c, redisReply *r)
{
    const char *st = r->elements > 0 ? r->element[0]->str : "";
    if (strcmp(st, "not_found") == 0) {
        cm_error(c, 404, "not_found", "no sale %s", c->id);
        return;
    }
    if (strcmp(st, "conflict") == 0) {
        cm_error(c, 409, "conflict", "sale %s has ended and cannot start again", c->id);
        return;
    }
    cm_sale_after_script(c->cm, c->id, r, 1, FALSE);
    cm_cmd(c, sale_loaded, "HGETALL " SL_KEY_SALE_INV, c->id);
}

static void sale_control_authorised(struct cm_ctx *c, redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING) {
        cm_error(c, 404, "not_found", "no sale %s", c->id);
        return;
    }
    if (!cm_may(c, SL_ROLE_CONSUL, r->str)) return;
    char *inv = cm_key(SL_KEY_SALE_INV, c->id), now[24];
    g_snprintf(now, sizeof now, "%lld", (long long)sl_now_ms());
    const char *argv[] = {inv, now, CM_FLOW(struct control_flow, c)->action};
    cm_eval(c, sale_controlled, c->cm->control, 1, 3, argv);
    g_free(inv);
}

static void sale_control(sl_http_req *req, const char *action, void *user)
{
    struct control_flow *f = CM_FLOW_NEW(struct control_flow, req, user, NULL);
    struct cm_ctx *c = &f->c;
    f->action = action;
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    cm_cmd(c, sale_control_authorised, "HGET " SL_KEY_SALE_INV " pavilion", c->id);
}

static void sale_start(sl_http_req *req, void *user)
{
    sale_control(req, "start", user);
}

static void sale_stop(sl_http_req *req, void *user)
{
    sale_control(req, "stop", user);
}

/* ---- reservations ---- */

static json_t *reservation_view(const char *rid, const char *sale, const char *record,
                                int64_t available)
{
    gchar **f = g_strsplit(record, "|", 6);
    json_t *v = NULL;
    if (g_strv_length(f) >= 4) {
        v = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "reservation_id", rid, "sale", sale, "qty",
                      (json_int_t)g_ascii_strtoll(f[2], NULL, 10), "expires_at_ms",
                      (json_int_t)g_ascii_strtoll(f[3], NULL, 10), "available",
                      (json_int_t)available, "state", f[0]);
    }
    g_strfreev(f);
    return v;
}

static const struct {
    const char *status;
    int http;
    const char *code;
    const char *message;
} reserve_refusals[] = {
    {"not_found", 404, "not_found", "no such sale"},
    {"sale_not_active", 409, "sale_not_active", "the sale is not active"},
    {"bad_qty", 400, "bad_request", "qty must be from 1 to the sale's per_user_limit"},
    {"quota_order", 409, "quota_exceeded",
     "this order would pass the per-order limit for "
     "cross-border purchases"},
    {"limit_exceeded", 409, "limit_exceeded",
     "you would hold or have bought more than the "
     "per-user limit of this sale"},
    {"sold_out", 409, "sold_out", "sold out"},
};

static void reserved(struct cm_ctx *c, redisReply *r)
{
    const char *st = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->str : "";
    count_reservation(st);
    if (strcmp(st, "ok") == 0 || strcmp(st, "existing") == 0) {
        gboolean fresh = st[0] == 'o';
        json_t *v =
            reservation_view(r->element[1]->str, c->id, r->element[2]->str, snap_int(r, 3, 2));
        cm_sale_after_script(c->cm, c->id, r, 3, fresh);
        if (v == NULL) {
            cm_error(c, 503, "unavailable", "reservation record unreadable");
            return;
        }
        if (fresh) json_object_del(v, "state");
        cm_reply(c, fresh ? 201 : 200, v);
        return;
    }
    if (r->elements >= 10) cm_sale_after_script(c->cm, c->id, r, 3, FALSE);
    for (size_t i = 0; i < G_N_ELEMENTS(reserve_refusals); i++) {
        if (strcmp(st, reserve_refusals[i].status) == 0) {
            cm_error_static(c, reserve_refusals[i].http, reserve_refusals[i].code,
                            reserve_refusals[i].message);
            return;
        }
    }
    cm_error(c, 503, "unavailable", "unexpected answer from the store");
}

static gboolean idempotency_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n < 1 || n > 64) return FALSE;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e) return FALSE;
    return TRUE;
}

static void reservation_create(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    const char *key = sl_http_req_header(req, "idempotency-key");
    if (!idempotency_key_valid(key)) {
        cm_error(c, 400, "bad_request",
                 "the Idempotency-Key header is required: 1 to 64 "
                 "printable characters");
        return;
    }
    if (!cm_body(c)) return;
    json_t *qty = json_object_get(c->body, "qty");
    if (!json_is_integer(qty) || json_integer_value(qty) < 1 || json_integer_value(qty) > 1000000) {
        cm_error(c, 400, "bad_request", "qty must be an integer from 1 to the per_user_limit");
        return;
    }
    struct commerce *cm = c->cm;
    int64_t now = sl_now_ms();
    char *rid_suffix = cm_random_id("", 16);
    char *rid = g_strconcat(c->id, "_", rid_suffix, NULL);
    char *inv = cm_key(SL_KEY_SALE_INV, c->id), *res = cm_key(SL_KEY_SALE_RES, c->id),
         *exp = cm_key(SL_KEY_SALE_EXP, c->id);
    char *userh = cm_key(SL_KEY_SALE_USER, c->id);
    char *idem = g_strdup_printf(SL_KEY_SALE_IDEM, c->id, c->who.sub, key);
    char now_s[SL_INT_TEXT_MAX], qty_s[SL_INT_TEXT_MAX], annual[SL_INT_TEXT_MAX],
        per_order[SL_INT_TEXT_MAX];
    sl_int_text(now, now_s);
    sl_int_text(json_integer_value(qty), qty_s);
    sl_int_text(cm->quota_annual_fen, annual);
    sl_int_text(cm->quota_order_fen, per_order);
    const char *argv[] = {inv,
                          res,
                          exp,
                          userh,
                          idem,
                          now_s,
                          c->who.sub,
                          qty_s,
                          rid,
                          LAZY_RELEASE_MAX,
                          annual,
                          per_order,
                          IDEMPOTENCY_TTL_S};
    cm_eval(c, reserved, cm->reserve, 5, 13, argv);
    g_free(rid_suffix);
    g_free(rid);
    g_free(inv);
    g_free(res);
    g_free(exp);
    g_free(userh);
    g_free(idem);
}

/* Release: the reservation's sale. */
struct reservation_flow {
    struct cm_ctx c;
    char *sale_id; /* owned */
};

static void reservation_flow_clear(struct cm_ctx *c)
{
    g_free(CM_FLOW(struct reservation_flow, c)->sale_id);
}

static void released(struct cm_ctx *c, redisReply *r)
{
    struct reservation_flow *f = CM_FLOW(struct reservation_flow, c);
    const char *st = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->str : "";
    if (strcmp(st, "ok") == 0) {
        cm_sale_after_script(c->cm, f->sale_id, r, 2, TRUE);
        cm_reply(c, 200,
                 json_pack("{s:s, s:s, s:b, s:I}", "reservation_id", c->id, "sale", f->sale_id,
                           "released", 1, "available", (json_int_t)snap_int(r, 2, 2)));
    } else if (strcmp(st, "conflict") == 0) {
        cm_error(c, 409, "conflict", "the reservation is already confirmed as an order");
    } else {
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
    }
}

static void reservation_delete(sl_http_req *req, void *user)
{
    struct reservation_flow *f =
        CM_FLOW_NEW(struct reservation_flow, req, user, reservation_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "rid") || !cm_auth(c)) return;
    f->sale_id = cm_sale_of_rid(c->id);
    if (f->sale_id == NULL) {
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
        return;
    }
    char *inv = cm_key(SL_KEY_SALE_INV, f->sale_id), *res = cm_key(SL_KEY_SALE_RES, f->sale_id);
    char *exp = cm_key(SL_KEY_SALE_EXP, f->sale_id), *userh = cm_key(SL_KEY_SALE_USER, f->sale_id);
    char now_s[24];
    g_snprintf(now_s, sizeof now_s, "%lld", (long long)sl_now_ms());
    const char *argv[] = {inv, res, exp, userh, now_s, c->who.sub, c->id};
    cm_eval(c, released, c->cm->release, 4, 7, argv);
    g_free(inv);
    g_free(res);
    g_free(exp);
    g_free(userh);
}

/* ---- sweeper: time transitions and expired holds, within a second of their time ---- */

struct sweep_call {
    struct commerce *cm;
    char *sale_id; /* owned */
};

static void sweep_done(struct commerce *cm)
{
    cm->sweeping--;
}

static void swept(redisReply *r, const char *err, void *user)
{
    struct sweep_call *s = user;
    struct commerce *cm = s->cm;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 8) {
        int64_t n = r->element[0]->type == REDIS_REPLY_INTEGER ? r->element[0]->integer : 0;
        cm_sale_after_script(cm, s->sale_id, r, 1, n > 0);
        redisReply *state = r->element[1];
        gboolean gone = state->type != REDIS_REPLY_STRING;
        gboolean finished = !gone && strcmp(state->str, "ended") == 0 && snap_int(r, 1, 3) == 0;
        if (gone || finished) {
            sl_redis_command(sl_server_redis(cm->srv), NULL, NULL, "SREM " SL_KEY_SALES_OPEN " %s",
                             s->sale_id);
            g_hash_table_remove(cm->watches, s->sale_id);
        }
    }
    sweep_done(cm);
    g_free(s->sale_id);
    g_free(s);
}

static void open_sales(redisReply *r, const char *err, void *user)
{
    struct commerce *cm = user;
    if (r && r->type == REDIS_REPLY_ARRAY && !cm->stopping) {
        char now[24];
        g_snprintf(now, sizeof now, "%lld", (long long)sl_now_ms());
        for (size_t i = 0; i < r->elements; i++) {
            const char *id = r->element[i]->str;
            char *inv = cm_key(SL_KEY_SALE_INV, id), *res = cm_key(SL_KEY_SALE_RES, id);
            char *exp = cm_key(SL_KEY_SALE_EXP, id), *userh = cm_key(SL_KEY_SALE_USER, id);
            const char *argv[] = {inv, res, exp, userh, now, SWEEP_BATCH};
            struct sweep_call *s = g_new0(struct sweep_call, 1);
            s->cm = cm;
            s->sale_id = g_strdup(id);
            cm->sweeping++;
            if (sl_redis_eval(sl_server_redis(cm->srv), cm->sweep, swept, s, 4, 6, argv, NULL) !=
                SL_OK) {
                cm->sweeping--;
                g_free(s->sale_id);
                g_free(s);
            }
            g_free(inv);
            g_free(res);
            g_free(exp);
            g_free(userh);
        }
    }
    sweep_done(cm);
}

static gboolean sweep_tick(gpointer data)
{
    struct commerce *cm = data;
    if (cm->sweeping > 0) return G_SOURCE_CONTINUE; /* the last round is still out */
    cm->sweeping++;
    if (sl_redis_command(sl_server_redis(cm->srv), open_sales, cm, "SMEMBERS " SL_KEY_SALES_OPEN) !=
        SL_OK)
        cm->sweeping--;
    return G_SOURCE_CONTINUE;
}

void cm_sweeper_start(struct commerce *cm)
{
    if (cm->sweep_timer == 0) cm->sweep_timer = g_timeout_add(SWEEP_INTERVAL_MS, sweep_tick, cm);
}

void cm_sweeper_stop(struct commerce *cm)
{
    if (cm->sweep_timer) g_source_remove(cm->sweep_timer);
    cm->sweep_timer = 0;
}

void cm_sale_routes(struct commerce *cm)
{
    sl_server *srv = cm->srv;
    sl_http_route(srv, "POST", "/api/v1/sales", sale_create, cm);
    sl_http_route(srv, "GET", "/api/v1/sales/{id}", sale_get, cm);
    sl_http_route(srv, "POST", "/api/v1/sales/{id}/start", sale_start, cm);
    sl_http_route(srv, "POST", "/api/v1/sales/{id}/stop", sale_stop, cm);
    sl_http_route(srv, "GET", "/api/v1/channels/{id}/sales", channel_sales, cm);
    sl_http_route(srv, "POST", "/api/v1/sales/{id}/reservations", reservation_create, cm);
    sl_http_route(srv, "DELETE", "/api/v1/reservations/{rid}", reservation_delete, cm);
}
