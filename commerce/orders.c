/* orders: the order's life after payment (read, refund, shipment, delivery), the buyer's saved
 * checkout form, and the order events the pavilion's staff see live. */
#include "internal.h"

#include <string.h>
#include <time.h>

#define ORDERS_LIST_MAX   500
#define SALE_ORDERS_MAX   1000 /* the newest of a sale: the console pages by pavilion */
#define REFUND_REASON_MAX 80   /* WeChat Pay's limit on a refund's reason */
#define CARRIER_MAX       64

/* ---- ids ---- */

char *cm_sale_of_rid(const char *rid)
{
    const char *us = strchr(rid, '_');
    if (us == NULL || us == rid || strchr(us + 1, '_')) return NULL;
    return g_strndup(rid, (gsize)(us - rid));
}

char *cm_sale_of_ref(const char *id)
{
    if (id == NULL || (id[0] != 'P' && id[0] != 'O')) return NULL;
    return cm_sale_of_rid(id + 1);
}

int cm_china_year(int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    return tm.tm_year + 1900;
}

/* ---- the read form and events ---- */

json_t *cm_order_view(json_t *stored)
{
    json_t *v = json_deep_copy(stored);
    json_object_del(v, "user");
    json_t *buyer = json_object_get(v, "buyer");
    if (json_is_object(buyer)) {
        json_t *masked = json_object_get(buyer, "id_masked");
        json_object_set(buyer, "id_number", masked ? masked : json_string("******************"));
        json_object_del(buyer, "id_masked");
        json_object_del(buyer, "id_sealed");
        json_object_del(buyer, "id_ref");
    }
    return v;
}

void cm_order_event(struct commerce *cm, json_t *stored)
{
    const char *channel = json_string_value(json_object_get(stored, "channel"));
    if (channel == NULL || cm->stopping) return;
    /* Published on the room's channel but not kept in its history: the hub hands "order" events
     * only to the staff of the order's pavilion (chat/hub.c). */
    json_t *ev = sl_room_event_new(SL_ROOM_EV_ORDER);
    json_object_set_new(ev, "ts_ms", json_integer(sl_now_ms()));
    json_object_set(ev, "pavilion", json_object_get(stored, "pavilion"));
    json_object_set_new(ev, "order", cm_order_view(stored));
    char *text = json_dumps(ev, JSON_COMPACT);
    char *topic = g_strdup_printf(SL_ROOM_CHANNEL, channel);
    sl_redis_command(sl_server_redis(cm->srv), NULL, NULL, "PUBLISH %s %s", topic, text);
    g_free(topic);
    free(text);
    json_decref(ev);
}

/* ---- state changes ---- */

struct order_update {
    struct commerce *cm;
    cm_order_cb cb;
    void *user;
};

static void order_updated(redisReply *r, const char *err, void *user)
{
    struct order_update *u = user;
    const char *status = "unavailable";
    json_t *doc = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        status = r->element[0]->str;
        if (r->elements >= 2 && r->element[1]->type == REDIS_REPLY_STRING)
            doc = json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL);
        if (strcmp(status, "ok") == 0 && doc == NULL) status = "unavailable";
    } else if (r == NULL) {
        g_warning("order update: %s", err);
    }
    if (strcmp(status, "ok") == 0) cm_order_event(u->cm, doc);
    if (u->cb) u->cb(u->cm, status, doc, u->user);
    json_decref(doc);
    g_free(u);
}

static gboolean order_update_failed(gpointer data)
{
    order_updated(NULL, "not connected", data);
    return G_SOURCE_REMOVE;
}

void cm_order_update(struct commerce *cm, const char *order_id, const char *allowed_from,
                     const char *new_state, json_t *patch, cm_order_cb cb, void *user)
{
    struct order_update *u = g_new0(struct order_update, 1);
    u->cm = cm;
    u->cb = cb;
    u->user = user;
    char *sale = cm_sale_of_ref(order_id);
    char *docs = cm_key(SL_KEY_SALE_ODOCS, sale ? sale : "-");
    char now[SL_INT_TEXT_MAX];
    sl_int_text(sl_now_ms(), now);
    char *patch_text = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
    const char *argv[] = {docs,         order_id,  now,
                          allowed_from, new_state, patch_text ? patch_text : ""};
    /* a callback never runs inside the call that caused it */
    if (sl_redis_eval(sl_server_redis(cm->srv), cm->doc_update, order_updated, u, 1, 6, argv,
                      NULL) != SL_OK)
        g_idle_add(order_update_failed, u);
    free(patch_text);
    json_decref(patch);
    g_free(docs);
    g_free(sale);
}

/* ---- one order ---- */

/* A route on one order: the order is loaded, then act runs if the caller may see it (its
 * buyer, with buyer_may; the staff of its pavilion; admin). */
struct order_flow {
    struct cm_ctx c;
    json_t *order; /* owned: as stored */
    gboolean buyer_may;
    void (*act)(struct cm_ctx *c);
};

static void order_flow_clear(struct cm_ctx *c)
{
    json_decref(CM_FLOW(struct order_flow, c)->order);
}

static void order_loaded(struct cm_ctx *c, redisReply *r)
{
    struct order_flow *f = CM_FLOW(struct order_flow, c);
    f->order = cm_doc(r);
    if (f->order == NULL) {
        cm_error(c, 404, "not_found", "no order %s", c->id);
        return;
    }
    const char *buyer = json_string_value(json_object_get(f->order, "user"));
    const char *pav = json_string_value(json_object_get(f->order, "pavilion"));
    gboolean own = buyer && strcmp(buyer, c->who.sub) == 0;
    if (!(own && f->buyer_may)) {
        if (c->who.role < SL_ROLE_CONSUL && own) {
            cm_error(c, 403, "forbidden", "this needs the consul role");
            return;
        }
        if (c->who.role < SL_ROLE_CONSUL) {
            /* another buyer's order does not exist for this caller */
            cm_error(c, 404, "not_found", "no order %s", c->id);
            return;
        }
        if (!cm_may(c, SL_ROLE_CONSUL, pav)) return;
    }
    f->act(c);
}

static void order_route(sl_http_req *req, void *user, gboolean buyer_may, gboolean body,
                        void (*act)(struct cm_ctx *c))
{
    struct order_flow *f = CM_FLOW_NEW(struct order_flow, req, user, order_flow_clear);
    struct cm_ctx *c = &f->c;
    f->buyer_may = buyer_may;
    f->act = act;
    if (!cm_path_id(c, "id") || !cm_auth(c) || (body && !cm_body(c))) return;
    char *sale = cm_sale_of_ref(c->id);
    if (sale == NULL || c->id[0] != 'O') {
        g_free(sale);
        cm_error(c, 404, "not_found", "no order %s", c->id);
        return;
    }
    cm_cmd(c, order_loaded, "HGET " SL_KEY_SALE_ODOCS " %s", sale, c->id);
    g_free(sale);
}

static void order_show(struct cm_ctx *c)
{
    cm_reply(c, 200, cm_order_view(CM_FLOW(struct order_flow, c)->order));
}

static void order_get(sl_http_req *req, void *user)
{
    order_route(req, user, TRUE, FALSE, order_show);
}

/* An update's answer: the order as it is now, or why not. */
static void order_changed(struct commerce *cm, const char *status, json_t *doc, void *user)
{
    struct cm_ctx *c = user;
    if (strcmp(status, "ok") == 0)
        cm_reply(c, 200, cm_order_view(doc));
    else if (strcmp(status, "conflict") == 0)
        cm_error(c, 409, "conflict", "order %s is %s", c->id,
                 json_string_value(json_object_get(doc, "state")));
    else if (strcmp(status, "not_found") == 0)
        cm_error(c, 404, "not_found", "no order %s", c->id);
    else
        cm_error(c, 503, "unavailable", "the store is unavailable; nothing was changed");
}

/* A text field of the body (cm_valid_text), or NULL. */
static const char *body_text(struct cm_ctx *c, const char *name, size_t max)
{
    json_t *v = json_object_get(c->body, name);
    return cm_valid_text(v, max) ? json_string_value(v) : NULL;
}

static void refund_answered(struct commerce *cm, gboolean ok, const char *why, void *user)
{
    struct cm_ctx *c = user;
    if (!ok) {
        cm_order_update(cm, c->id, "", "",
                        json_pack("{s:{s:s, s:s, s:I}}", "refund", "state", "failed", "reason", why,
                                  "at_ms", (json_int_t)sl_now_ms()),
                        NULL, NULL);
        cm_error(c, 503, "unavailable", "the payment provider did not refund: %s", why);
        return;
    }
    json_t *refund =
        json_deep_copy(json_object_get(CM_FLOW(struct order_flow, c)->order, "refund"));
    /* PROCESSING: the provider took it and says when it is done (REFUND.SUCCESS) */
    gboolean done = strcmp(why, "PROCESSING") != 0;
    json_object_set_new(refund, "state", json_string(done ? "done" : "processing"));
    if (done) json_object_set_new(refund, "done_at_ms", json_integer(sl_now_ms()));
    cm_order_update(cm, c->id, "", done ? "refunded" : "", json_pack("{s:o}", "refund", refund),
                    order_changed, c);
}

static void refund_recorded(struct commerce *cm, const char *status, json_t *doc, void *user)
{
    struct cm_ctx *c = user;
    if (strcmp(status, "ok") != 0) {
        order_changed(cm, status, doc, user);
        return;
    }
    struct order_flow *f = CM_FLOW(struct order_flow, c);
    json_decref(f->order);
    f->order = json_incref(doc);
    cm_payments_refund(cm, doc, refund_answered, c);
}

static void order_refund_act(struct cm_ctx *c)
{
    struct order_flow *f = CM_FLOW(struct order_flow, c);
    const char *reason = body_text(c, "reason", REFUND_REASON_MAX);
    if (reason == NULL) {
        cm_error(c, 400, "bad_request", "reason must be a text of 1 to %d characters",
                 REFUND_REASON_MAX);
        return;
    }
    const char *rstate =
        json_string_value(json_object_get(json_object_get(f->order, "refund"), "state"));
    if (rstate && strcmp(rstate, "done") == 0) {
        cm_error(c, 409, "conflict", "order %s is refunded already", c->id);
        return;
    }
    /* A refund the provider has not confirmed can be asked for again: the refund number is the
     * provider's idempotency key, so no order is refunded twice. */
    char *refund_no = g_strdup_printf("R%s", c->id + 1);
    json_t *patch =
        json_pack("{s:{s:s, s:s, s:s, s:O, s:I}}", "refund", "state", "pending", "reason", reason,
                  "refund_no", refund_no, "amount_cny_fen",
                  json_object_get(f->order, "amount_cny_fen"), "at_ms", (json_int_t)sl_now_ms());
    g_free(refund_no);
    cm_order_update(c->cm, c->id, "paid,declared,shipped,delivered,declaration_rejected", "", patch,
                    refund_recorded, c);
}

static void order_refund(sl_http_req *req, void *user)
{
    order_route(req, user, FALSE, TRUE, order_refund_act);
}

static gboolean waybill_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 4 || n > 40) return FALSE;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isalnum(s[i]) && s[i] != '-') return FALSE;
    return TRUE;
}

static void order_ship_act(struct cm_ctx *c)
{
    const char *carrier = body_text(c, "carrier", CARRIER_MAX);
    const char *waybill = json_string_value(json_object_get(c->body, "waybill"));
    if (carrier == NULL || !waybill_valid(waybill)) {
        cm_error(c, 400, "bad_request",
                 "carrier must be a text of 1 to %d characters and waybill 4 to 40 letters, "
                 "digits or '-'",
                 CARRIER_MAX);
        return;
    }
    /* Goods leave the bonded warehouse once customs cleared them; a corrected waybill may
     * follow. */
    cm_order_update(c->cm, c->id, "declared,shipped", "shipped",
                    json_pack("{s:{s:s, s:s, s:I, s:n}}", "shipment", "carrier", carrier, "waybill",
                              waybill, "shipped_at_ms", (json_int_t)sl_now_ms(), "delivered_at_ms"),
                    order_changed, c);
}

static void order_ship(sl_http_req *req, void *user)
{
    order_route(req, user, FALSE, TRUE, order_ship_act);
}

static void order_deliver_act(struct cm_ctx *c)
{
    json_t *shipment =
        json_deep_copy(json_object_get(CM_FLOW(struct order_flow, c)->order, "shipment"));
    if (!json_is_object(shipment)) {
        json_decref(shipment);
        shipment = json_object();
    }
    json_object_set_new(shipment, "delivered_at_ms", json_integer(sl_now_ms()));
    cm_order_update(c->cm, c->id, "shipped", "delivered", json_pack("{s:o}", "shipment", shipment),
                    order_changed, c);
}

static void order_deliver(sl_http_req *req, void *user)
{
    order_route(req, user, FALSE, FALSE, order_deliver_act);
}

/* ---- lists ---- */

/* Orders named by an index, each read from its sale's hash: answered when the last is back. */
struct orders_fanout {
    struct cm_ctx *c;
    json_t *docs; /* owned: array, null until read */
    size_t left;
    gboolean failed;
    gboolean mine; /* the caller's own orders: first-round orders are read too */
};

struct fanout_slot {
    struct orders_fanout *f;
    size_t at;
    char *order_id; /* owned */
    gboolean legacy_tried;
};

static void orders_fanout_reply(redisReply *r, const char *err, void *user)
{
    struct fanout_slot *s = user;
    struct orders_fanout *f = s->f;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        f->failed = TRUE;
    } else {
        json_t *doc = cm_doc(r);
        if (doc == NULL && !s->legacy_tried && f->mine) {
            /* a buyer's order from before payments: filed under the buyer, paid on its word */
            s->legacy_tried = TRUE;
            if (sl_redis_command(sl_server_redis(f->c->cm->srv), orders_fanout_reply, s,
                                 "HGET " SL_KEY_BUYER_DOCS " %s", f->c->who.sub,
                                 s->order_id) == SL_OK)
                return;
            f->failed = TRUE;
        }
        if (doc && !json_object_get(doc, "state"))
            json_object_set_new(doc, "state", json_string("paid"));
        if (doc) json_array_set_new(f->docs, s->at, cm_order_view(doc));
        json_decref(doc);
    }
    g_free(s->order_id);
    g_free(s);
    if (--f->left > 0) return;
    if (f->failed) {
        cm_error(f->c, 503, "unavailable", "the store is unavailable");
    } else {
        json_t *arr = json_array();
        size_t i;
        json_t *o;
        json_array_foreach(f->docs, i, o) if (json_is_object(o)) json_array_append(arr, o);
        cm_reply(f->c, 200, json_pack("{s:o}", "orders", arr));
    }
    json_decref(f->docs);
    g_free(f);
}

static void orders_of_index_for(struct cm_ctx *c, redisReply *r, gboolean mine)
{
    if (r->elements == 0) {
        cm_reply(c, 200, json_pack("{s:[]}", "orders"));
        return;
    }
    struct orders_fanout *f = g_new0(struct orders_fanout, 1);
    f->c = c;
    f->mine = mine;
    f->docs = json_array();
    f->left = r->elements;
    for (size_t i = 0; i < r->elements; i++)
        json_array_append_new(f->docs, json_null());
    for (size_t i = 0; i < r->elements; i++) {
        struct fanout_slot *s = g_new0(struct fanout_slot, 1);
        s->f = f;
        s->at = i;
        s->order_id = g_strdup(r->element[i]->str);
        char *sale = cm_sale_of_ref(s->order_id);
        /* a stray index entry counts as read, so it does not hold the answer up */
        redisReply nil = {.type = REDIS_REPLY_NIL};
        if (sale == NULL)
            orders_fanout_reply(&nil, NULL, s);
        else if (sl_redis_command(sl_server_redis(c->cm->srv), orders_fanout_reply, s,
                                  "HGET " SL_KEY_SALE_ODOCS " %s", sale, s->order_id) != SL_OK)
            orders_fanout_reply(NULL, "not connected", s);
        g_free(sale);
    }
}

static void orders_of_index(struct cm_ctx *c, redisReply *r)
{
    orders_of_index_for(c, r, FALSE);
}

static void my_orders_of_index(struct cm_ctx *c, redisReply *r)
{
    orders_of_index_for(c, r, TRUE);
}

static void my_orders(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_auth(c)) return;
    cm_cmd(c, my_orders_of_index, "ZREVRANGE " SL_KEY_BUYER_ORDERS " 0 %d", c->who.sub,
           ORDERS_LIST_MAX - 1);
}

static void pavilion_orders(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_path_id(c, "code") || !cm_auth(c) || !cm_may(c, SL_ROLE_CONSUL, c->id)) return;
    cm_cmd(c, orders_of_index, "ZREVRANGE " SL_KEY_PAV_ORDERS " 0 %d", c->id, ORDERS_LIST_MAX - 1);
}

static void sale_orders_loaded(struct cm_ctx *c, redisReply *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < r->elements; i++) {
        json_t *doc = cm_doc(r->element[i]);
        if (doc) json_array_append_new(arr, cm_order_view(doc));
        json_decref(doc);
    }
    cm_reply(c, 200, json_pack("{s:s, s:o}", "sale", c->id, "orders", arr));
}

/* The newest orders of the sale from its order stream, each read as it is now. */
static void sale_orders_listed(struct cm_ctx *c, redisReply *r)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("HMGET"));
    g_ptr_array_add(argv, cm_key(SL_KEY_SALE_ODOCS, c->id));
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *entry = r->element[i]; /* [id, [field, value]] */
        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
            entry->element[1]->type != REDIS_REPLY_ARRAY || entry->element[1]->elements < 2)
            continue;
        json_t *first = cm_doc(entry->element[1]->element[1]);
        const char *oid = json_string_value(json_object_get(first, "order_id"));
        if (oid) g_ptr_array_add(argv, g_strdup(oid));
        json_decref(first);
    }
    if (argv->len == 2) {
        g_ptr_array_unref(argv);
        cm_reply(c, 200, json_pack("{s:s, s:[]}", "sale", c->id, "orders"));
        return;
    }
    cm_cmd_argv(c, sale_orders_loaded, argv);
    g_ptr_array_unref(argv);
}

static void sale_orders_authorised(struct cm_ctx *c, redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING) {
        cm_error(c, 404, "not_found", "no sale %s", c->id);
        return;
    }
    if (!cm_may(c, SL_ROLE_CONSUL, r->str)) return;
    cm_cmd(c, sale_orders_listed, "XREVRANGE " SL_KEY_SALE_ORDERS " + - COUNT %d", c->id,
           SALE_ORDERS_MAX);
}

static void sale_orders(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_auth(c)) return;
    const char *sale = sl_http_req_query(req, "sale");
    if (sale == NULL || !sl_id_valid(sale, strlen(sale))) {
        cm_error(c, 400, "bad_request", "the sale query parameter must be a sale id");
        return;
    }
    if (c->who.role < SL_ROLE_CONSUL) {
        cm_error(c, 403, "forbidden", "orders of a sale are for its consul");
        return;
    }
    c->id = g_strdup(sale);
    cm_cmd(c, sale_orders_authorised, "HGET " SL_KEY_SALE_INV " pavilion", c->id);
}

/* ---- the buyer's saved checkout form ---- */

static void profile_loaded(struct cm_ctx *c, redisReply *r)
{
    json_t *p = cm_doc(r);
    if (p == NULL) {
        cm_error(c, 404, "not_found", "no saved checkout details");
        return;
    }
    json_t *buyer = json_object_get(p, "buyer");
    if (json_is_object(buyer)) {
        json_t *masked = json_object_get(buyer, "id_masked");
        if (masked) json_object_set(buyer, "id_number", masked);
        json_object_del(buyer, "id_masked");
        json_object_del(buyer, "id_sealed");
        json_object_del(buyer, "id_ref");
    }
    cm_reply(c, 200, p);
}

static void my_profile(sl_http_req *req, void *user)
{
    struct cm_ctx *c = cm_ctx_new(req, user);
    if (!cm_auth(c)) return;
    cm_cmd(c, profile_loaded, "GET " SL_KEY_BUYER_PROFILE, c->who.sub);
}

void cm_order_routes(struct commerce *cm)
{
    sl_server *srv = cm->srv;
    sl_http_route(srv, "GET", "/api/v1/orders/{id}", order_get, cm);
    sl_http_route(srv, "POST", "/api/v1/orders/{id}/refund", order_refund, cm);
    sl_http_route(srv, "POST", "/api/v1/orders/{id}/shipment", order_ship, cm);
    sl_http_route(srv, "POST", "/api/v1/orders/{id}/delivered", order_deliver, cm);
    sl_http_route(srv, "GET", "/api/v1/orders", sale_orders, cm);
    sl_http_route(srv, "GET", "/api/v1/me/orders", my_orders, cm);
    sl_http_route(srv, "GET", "/api/v1/me/profile", my_profile, cm);
    sl_http_route(srv, "GET", "/api/v1/pavilions/{code}/orders", pavilion_orders, cm);
}
