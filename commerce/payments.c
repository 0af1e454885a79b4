/* payments: an order exists only once the server verified its payment. Payment intents for held
 * reservations (the server computes every amount), the providers (WeChat Pay API v3, and dev,
 * which speaks the same protocol with keys made at start), their signed notifications, the
 * server's own query of the provider, and refunds. */
#include "internal.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

#define NOTIFY_REPLAY_TTL_S "900" /* longer than the timestamp window, so a replay is seen */
#define QUERY_AFTER_MS      5000  /* a notification usually comes within a few seconds */

struct provider {
    const char *id; /* "dev" or "wechatpay" */
    char *mchid, *appid, *serial_no, *platform_serial, *apiv3_key, *api_base, *notify_url;
    EVP_PKEY *merchant_key; /* signs requests to the provider (wechatpay) */
    EVP_PKEY *platform_key; /* verifies notifications and answers; dev: signs them too */
};

struct payments {
    struct provider *dev, *wechatpay; /* owned; NULL when off */
    int64_t grace_ms, min_hold_ms;
    cm_outbox *refunds;
};

static void provider_free(struct provider *p)
{
    if (p == NULL) return;
    g_free(p->mchid);
    g_free(p->appid);
    g_free(p->serial_no);
    g_free(p->platform_serial);
    if (p->apiv3_key) memset(p->apiv3_key, 0, strlen(p->apiv3_key));
    g_free(p->apiv3_key);
    g_free(p->api_base);
    g_free(p->notify_url);
    EVP_PKEY_free(p->merchant_key);
    EVP_PKEY_free(p->platform_key);
    g_free(p);
}

static struct provider *provider_named(struct payments *pm, const char *id)
{
    if (id == NULL) return NULL;
    if (strcmp(id, "dev") == 0) return pm->dev;
    if (strcmp(id, "wechatpay") == 0) return pm->wechatpay;
    return NULL;
}

static sl_metric *metric_notifications(const char *result)
{
    static const char *results[] = {"order", "repeat", "refund", "unknown", "rejected", "other"};
    static sl_metric *handles[G_N_ELEMENTS(results)];
    size_t i = 0;
    while (i + 1 < G_N_ELEMENTS(results) && strcmp(results[i], result) != 0)
        i++;
    if (handles[i] == NULL) {
        char labels[48];
        g_snprintf(labels, sizeof labels, "result=\"%s\"", results[i]);
        handles[i] =
            sl_metric_get("silklive_payment_notifications_total", SL_METRIC_COUNTER,
                          "Payment notifications from providers, by what they did", labels, 1);
    }
    return handles[i];
}

/* RFC 3339 in China's time, as WeChat Pay writes and reads times. */
static char *china_rfc3339(int64_t ms)
{
    GDateTime *utc = g_date_time_new_from_unix_utc(ms / 1000);
    GTimeZone *tz = g_time_zone_new_offset(8 * 3600);
    GDateTime *cn = g_date_time_to_timezone(utc, tz);
    char *s = g_date_time_format(cn, "%Y-%m-%dT%H:%M:%S+08:00");
    g_date_time_unref(cn);
    g_date_time_unref(utc);
    g_time_zone_unref(tz);
    return s;
}

/* WeChat Pay's out_trade_no is at most 32 characters: the reservation id (33) without the 'S'
 * every sale id starts with. */
static const char *trade_no_of(const char *rid)
{
    return rid[0] == 'S' ? rid + 1 : rid;
}

static char *rid_of_trade_no(const char *no)
{
    return g_strconcat("S", no, NULL);
}

/* ---- calls to the provider (WeChat Pay API v3 over HTTPS, libsoup) ---- */

typedef void (*provider_done)(struct commerce *cm, int status, json_t *answer, const char *err,
                              void *user);

struct provider_call {
    struct commerce *cm;
    struct provider *p;
    SoupMessage *msg; /* owned */
    provider_done done;
    void *user;
};

static void provider_answered(GObject *src, GAsyncResult *res, gpointer data)
{
    struct provider_call *call = data;
    GError *e = NULL;
    GBytes *bytes = soup_session_send_and_read_finish(SOUP_SESSION(src), res, &e);
    int status = (int)soup_message_get_status(call->msg);
    json_t *answer = NULL;
    const char *why = NULL;
    char *why_owned = NULL;
    if (bytes == NULL) {
        why = why_owned = g_strdup_printf("the provider did not answer: %s", e->message);
        status = 0;
    } else {
        gsize n;
        const char *body = g_bytes_get_data(bytes, &n);
        SoupMessageHeaders *h = soup_message_get_response_headers(call->msg);
        GError *verr = NULL;
        /* an answer is believed only if the platform signed it, as notifications are */
        if (cm_wxpay_verify(call->p->platform_key,
                            soup_message_headers_get_one(h, "Wechatpay-Timestamp"),
                            soup_message_headers_get_one(h, "Wechatpay-Nonce"),
                            soup_message_headers_get_one(h, "Wechatpay-Signature"),
                            body ? body : "", n, sl_now_ms() / 1000, &verr) != SL_OK) {
            why = why_owned = g_strdup_printf("the provider's answer (HTTP %d) is not signed by "
                                              "its platform key: %s",
                                              status, verr->message);
            g_error_free(verr);
            status = 0;
        } else if (n > 0) {
            answer = json_loadb(body, n, 0, NULL);
            if (answer == NULL) {
                why = "the provider's answer is not JSON";
                status = 0;
            }
        }
        g_bytes_unref(bytes);
    }
    if (status >= 300 && why == NULL)
        why = why_owned =
            g_strdup_printf("the provider refused (HTTP %d %s)", status,
                            json_string_value(json_object_get(answer, "code")) ?: "no code");
    call->done(call->cm, status, answer, why, call->user);
    json_decref(answer);
    g_free(why_owned);
    g_clear_error(&e);
    g_object_unref(call->msg);
    g_free(call);
}

/* method path (with its query) body: the answer goes to done, never from inside this call. */
static void provider_call(struct commerce *cm, struct provider *p, const char *method,
                          const char *path, json_t *body, provider_done done, void *user)
{
    struct provider_call *call = g_new0(struct provider_call, 1);
    call->cm = cm;
    call->p = p;
    call->done = done;
    call->user = user;
    char *url = g_strconcat(p->api_base, path, NULL);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    call->msg = soup_message_new(method, url);
    g_free(url);
    GError *err = NULL;
    char *auth = call->msg ? cm_wxpay_authorization(p->merchant_key, p->mchid, p->serial_no, method,
                                                    path, text, sl_now_ms() / 1000, &err)
                           : NULL;
    if (auth == NULL) {
        /* a bad api_base is refused at start, so this is a signing failure: answer later */
        g_warning("payments: cannot call %s: %s", p->id, err ? err->message : "bad URL");
        g_clear_error(&err);
        if (call->msg == NULL) call->msg = soup_message_new("GET", "http://127.0.0.1:9/");
        soup_message_set_uri(call->msg, g_uri_parse("http://127.0.0.1:9/", 0, NULL));
    } else {
        SoupMessageHeaders *h = soup_message_get_request_headers(call->msg);
        soup_message_headers_replace(h, "Authorization", auth);
        soup_message_headers_replace(h, "Accept", "application/json");
        g_free(auth);
    }
    if (text) {
        GBytes *b = g_bytes_new_take(text, strlen(text));
        soup_message_set_request_body_from_bytes(call->msg, "application/json", b);
        g_bytes_unref(b);
    }
    soup_session_send_and_read_async(cm->http, call->msg, G_PRIORITY_DEFAULT, NULL,
                                     provider_answered, call);
}

/* ---- the paid step: a verified success becomes an order (or a refund) ---- */

/* One verified payment result on its way into Redis: from a notification or a query. */
typedef void (*paid_done)(struct commerce *cm, const char *result, json_t *order, void *user);

struct paid_step {
    struct commerce *cm;
    char *rid, *sale, *pid, *transaction_id; /* owned */
    int64_t total;
    paid_done done;
    void *user;
    json_t *order; /* owned: the order made, while replicas catch up */
};

static void paid_step_free(struct paid_step *s)
{
    g_free(s->rid);
    g_free(s->sale);
    g_free(s->pid);
    g_free(s->transaction_id);
    json_decref(s->order);
    g_free(s);
}

static void paid_finish(struct paid_step *s, const char *result)
{
    sl_metric_add(metric_notifications(result), 1);
    s->done(s->cm, result, s->order, s->user);
    paid_step_free(s);
}

static void paid_replicated(redisReply *r, const char *err, void *user)
{
    paid_finish(user, "order");
}

static void paid_applied(redisReply *r, const char *err, void *user)
{
    struct paid_step *s = user;
    const char *st = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                             r->element[0]->type == REDIS_REPLY_STRING
                         ? r->element[0]->str
                         : NULL;
    if (st == NULL) {
        g_warning("payment %s: the order could not be stored: %s", s->pid,
                  r && r->type == REDIS_REPLY_ERROR ? r->str
                  : err                             ? err
                                                    : "bad reply");
        paid_finish(s, "unavailable");
        return;
    }
    if (strcmp(st, "order") == 0) {
        s->order = json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL);
        static sl_metric *orders, *gmv;
        if (orders == NULL) {
            orders = sl_metric_get("silklive_orders_total", SL_METRIC_COUNTER,
                                   "Orders made from verified payments", NULL, 1);
            gmv = sl_metric_get("silklive_orders_cny_fen_total", SL_METRIC_COUNTER,
                                "Value of orders, CNY fen", NULL, 1);
        }
        sl_metric_add(orders, 1);
        sl_metric_add(gmv, json_integer_value(json_object_get(s->order, "amount_cny_fen")));
        cm_sale_after_script(s->cm, s->sale, r, 2, TRUE);
        if (s->order) cm_order_event(s->cm, s->order);
        /* behind Sentinel the acknowledgement waits until a replica has the order too */
        if (sl_redis_wait_replicas(s->cm->srv, paid_replicated, s) == SL_OK) return;
        paid_finish(s, "order");
        return;
    }
    if (strcmp(st, "repeat") == 0 && r->elements > 1) {
        s->order = json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL);
        paid_finish(s, "repeat");
        return;
    }
    if (strcmp(st, "refund") == 0) {
        g_message("payment %s: paid but its hold cannot be honoured; refunding", s->pid);
        paid_finish(s, "refund");
        return;
    }
    paid_finish(s, strcmp(st, "refunded") == 0 ? "repeat" : "unknown");
}

static void paid_applied_later(gpointer s)
{
    paid_applied(NULL, "not connected", s);
}

static void paid_payment_loaded(redisReply *r, const char *err, void *user)
{
    struct paid_step *s = user;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        paid_finish(s, "unavailable");
        return;
    }
    json_t *pay = cm_doc(r);
    if (pay == NULL) {
        g_warning("payment %s: a verified success for a payment this server never made", s->pid);
        paid_finish(s, "unknown");
        return;
    }
    struct commerce *cm = s->cm;
    int64_t now = sl_now_ms();
    const char *user_id = json_string_value(json_object_get(pay, "user"));
    const char *pav = json_string_value(json_object_get(pay, "pavilion"));
    const char *ref = json_string_value(json_object_get(json_object_get(pay, "buyer"), "id_ref"));
    char *keys[12] = {
        cm_key(SL_KEY_SALE_INV, s->sale),
        cm_key(SL_KEY_SALE_RES, s->sale),
        cm_key(SL_KEY_SALE_EXP, s->sale),
        cm_key(SL_KEY_SALE_USER, s->sale),
        cm_key(SL_KEY_SALE_ORDERS, s->sale),
        cm_key(SL_KEY_SALE_PAY, s->sale),
        cm_key(SL_KEY_SALE_ODOCS, s->sale),
        cm_key(SL_KEY_BUYER_ORDERS, user_id ? user_id : "-"),
        cm_key(SL_KEY_PAV_ORDERS, pav ? pav : "-"),
        g_strdup_printf(SL_KEY_PERSON_SPENT, ref ? ref : "-", cm_china_year(now)),
        g_strdup(SL_KEY_CUSTOMS_OUTBOX),
        g_strdup(SL_KEY_PAY_REFUNDS),
    };
    char now_s[SL_INT_TEXT_MAX], total[SL_INT_TEXT_MAX], annual[SL_INT_TEXT_MAX];
    sl_int_text(now, now_s);
    sl_int_text(s->total, total);
    sl_int_text(cm->quota_annual_fen, annual);
    char *oid = g_strdup_printf("O%s", s->rid);
    char *guid = g_uuid_string_random();
    char *guid_upper = g_ascii_strup(guid, -1);
    const char *argv[20];
    for (int i = 0; i < 12; i++)
        argv[i] = keys[i];
    argv[12] = now_s;
    argv[13] = s->pid;
    argv[14] = s->rid;
    argv[15] = oid;
    argv[16] = s->transaction_id;
    argv[17] = total;
    argv[18] = annual;
    argv[19] = guid_upper;
    if (sl_redis_eval(sl_server_redis_orders(cm->srv), cm->paid, paid_applied, s, 12, 20, argv,
                      NULL) != SL_OK)
        g_idle_add_once(paid_applied_later, s);
    for (int i = 0; i < 12; i++)
        g_free(keys[i]);
    g_free(oid);
    g_free(guid);
    g_free(guid_upper);
    json_decref(pay);
}

static void paid_load_later(gpointer s)
{
    paid_payment_loaded(NULL, "not connected", s);
}

/* A success the server verified for out_trade_no rid: done(result, order) later, with result
 * "order", "repeat", "refund", "unknown" or "unavailable" (nothing changed: ask again). */
static void payment_succeeded(struct commerce *cm, const char *rid, const char *transaction_id,
                              int64_t total, paid_done done, void *user)
{
    struct paid_step *s = g_new0(struct paid_step, 1);
    s->cm = cm;
    s->rid = g_strdup(rid);
    s->sale = cm_sale_of_rid(rid);
    s->pid = g_strdup_printf("P%s", rid);
    s->transaction_id = g_strdup(transaction_id);
    s->total = total;
    s->done = done;
    s->user = user;
    if (s->sale == NULL ||
        sl_redis_command(sl_server_redis(cm->srv), paid_payment_loaded, s,
                         "HGET " SL_KEY_SALE_PAY " %s", s->sale, s->pid) != SL_OK) {
        if (s->sale == NULL) {
            paid_finish(s, "unknown");
            return;
        }
        g_idle_add_once(paid_load_later, s);
    }
}

/* ---- notifications: POST /api/v1/payments/{provider}/notify ---- */

struct notify_flow {
    struct cm_ctx c;
    struct provider *p;
    char *nonce_key;  /* owned: forgotten again if the notification could not be applied */
    json_t *resource; /* owned: the opened resource */
};

static void notify_flow_clear(struct cm_ctx *c)
{
    struct notify_flow *f = CM_FLOW(struct notify_flow, c);
    g_free(f->nonce_key);
    json_decref(f->resource);
}

/* The provider's protocol answers: 204 for accepted, else {"code":"FAIL","message"}. */
static void notify_answer(struct cm_ctx *c, int status, const char *message)
{
    if (status == 204)
        sl_http_reply(c->req, 204, NULL, NULL, NULL);
    else
        sl_http_reply_json(c->req, status,
                           json_pack("{s:s, s:s}", "code", "FAIL", "message", message));
    cm_ctx_done(c);
}

static void notify_rejected(struct cm_ctx *c, const char *why)
{
    sl_metric_add(metric_notifications("rejected"), 1);
    g_warning("payments: a notification to %s was rejected: %s",
              CM_FLOW(struct notify_flow, c)->p->id, why);
    notify_answer(c, 401, why);
}

static void notify_applied(struct commerce *cm, const char *result, json_t *order, void *user)
{
    struct cm_ctx *c = user;
    struct notify_flow *f = CM_FLOW(struct notify_flow, c);
    if (strcmp(result, "unavailable") == 0) {
        /* the provider sends it again; its nonce must not look like a replay then */
        sl_redis_command(sl_server_redis(cm->srv), NULL, NULL, "DEL %s", f->nonce_key);
        notify_answer(c, 503, "the store is unavailable; send it again");
        return;
    }
    notify_answer(c, 204, NULL);
}

static void refund_notified(struct commerce *cm, const char *status, json_t *doc, void *user)
{
    struct cm_ctx *c = user;
    if (strcmp(status, "unavailable") == 0) {
        /* the provider sends it again; its nonce must not look like a replay then */
        sl_redis_command(sl_server_redis(cm->srv), NULL, NULL, "DEL %s",
                         CM_FLOW(struct notify_flow, c)->nonce_key);
        notify_answer(c, 503, "the store is unavailable; send it again");
        return;
    }
    notify_answer(c, 204, NULL);
}

static void notify_fresh(struct cm_ctx *c, redisReply *r)
{
    struct notify_flow *f = CM_FLOW(struct notify_flow, c);
    if (r->type == REDIS_REPLY_NIL) {
        notify_rejected(c, "this notification's nonce was seen before (a replay)");
        return;
    }
    json_t *res = f->resource;
    const char *event = json_string_value(json_object_get(c->body, "event_type"));
    const char *rid = json_string_value(json_object_get(res, "out_trade_no"));
    const char *mchid = json_string_value(json_object_get(res, "mchid"));
    const char *appid = json_string_value(json_object_get(res, "appid"));
    gboolean refund = event && g_str_has_prefix(event, "REFUND.");
    if (g_strcmp0(mchid, f->p->mchid) != 0 || (!refund && g_strcmp0(appid, f->p->appid) != 0)) {
        notify_rejected(c, "the notification is for another merchant or app");
        return;
    }
    if (event && strcmp(event, "TRANSACTION.SUCCESS") == 0) {
        const char *state = json_string_value(json_object_get(res, "trade_state"));
        const char *tx = json_string_value(json_object_get(res, "transaction_id"));
        json_t *total = json_object_get(json_object_get(res, "amount"), "total");
        if (rid == NULL || tx == NULL || !json_is_integer(total) || state == NULL ||
            strcmp(state, "SUCCESS") != 0 || !sl_id_valid(rid, strlen(rid)) ||
            !sl_id_valid(tx, strlen(tx))) {
            sl_metric_add(metric_notifications("other"), 1);
            notify_answer(c, 204, NULL); /* nothing a shop acts on */
            return;
        }
        char *full = rid_of_trade_no(rid);
        payment_succeeded(c->cm, full, tx, json_integer_value(total), notify_applied, c);
        g_free(full);
        return;
    }
    if (refund) {
        /* out_refund_no is "R<rid>" for an order's refund, "Q<rid>" for a payment refunded
         * because its hold was gone */
        const char *no = json_string_value(json_object_get(res, "out_refund_no"));
        const char *rstatus = json_string_value(json_object_get(res, "refund_status"));
        sl_metric_add(metric_notifications("other"), 1);
        if (no && no[0] == 'R' && rstatus && sl_id_valid(no, strlen(no))) {
            char *oid = g_strdup_printf("O%s", no + 1);
            gboolean ok = strcmp(rstatus, "SUCCESS") == 0;
            /* merged into the refund as it is: its number, amount and reason stay */
            cm_order_update(c->cm, oid,
                            ok ? "" : "paid,declared,shipped,delivered,declaration_rejected",
                            ok ? "refunded" : "",
                            json_pack("{s:{s:s, s:s, s:I}}", "refund", "state",
                                      ok ? "done" : "failed", "provider_status", rstatus,
                                      ok ? "done_at_ms" : "failed_at_ms", (json_int_t)sl_now_ms()),
                            refund_notified, c);
            g_free(oid);
            return;
        }
        notify_answer(c, 204, NULL);
        return;
    }
    sl_metric_add(metric_notifications("other"), 1);
    notify_answer(c, 204, NULL);
}

static void payment_notify(sl_http_req *req, void *user)
{
    struct commerce *cm = user;
    struct notify_flow *f = CM_FLOW_NEW(struct notify_flow, req, cm, notify_flow_clear);
    struct cm_ctx *c = &f->c;
    f->p = provider_named(cm->payments, sl_http_req_param(req, "provider"));
    if (f->p == NULL) {
        notify_answer(c, 404, "no such payment provider here");
        return;
    }
    size_t len = 0;
    const uint8_t *body = sl_http_req_body(req, &len);
    const char *serial = sl_http_req_header(req, "wechatpay-serial");
    if (f->p->platform_serial && (serial == NULL || strcmp(serial, f->p->platform_serial) != 0)) {
        notify_rejected(c, "Wechatpay-Serial names a key this server does not trust");
        return;
    }
    GError *err = NULL;
    if (cm_wxpay_verify(f->p->platform_key, sl_http_req_header(req, "wechatpay-timestamp"),
                        sl_http_req_header(req, "wechatpay-nonce"),
                        sl_http_req_header(req, "wechatpay-signature"),
                        body ? (const char *)body : "", len, sl_now_ms() / 1000, &err) != SL_OK) {
        notify_rejected(c, err->message);
        g_error_free(err);
        return;
    }
    c->body = json_loadb((const char *)body, len, 0, NULL);
    f->resource = c->body ? cm_wxpay_open_resource(f->p->apiv3_key, c->body, &err) : NULL;
    if (f->resource == NULL) {
        notify_rejected(c, err ? err->message : "the body is not JSON");
        g_clear_error(&err);
        return;
    }
    /* a signed notification is accepted once: its nonce is remembered past the window */
    f->nonce_key =
        g_strdup_printf(SL_KEY_PAY_NONCES, f->p->id, sl_http_req_header(req, "wechatpay-nonce"));
    cm_cmd(c, notify_fresh, "SET %s 1 NX EX " NOTIFY_REPLAY_TTL_S, f->nonce_key);
}

/* ---- payment intents: POST /api/v1/reservations/{rid}/payment ---- */

struct intent_flow {
    struct cm_ctx c;
    struct provider *p;
    char *sale, *pid;  /* owned */
    char *id_number;   /* owned, wiped: the canonical identity number */
    json_t *buyer;     /* owned: name, phone */
    json_t *consignee; /* owned */
    gboolean h5;
    int64_t qty, price;
    json_t *inv;     /* owned: sku pavilion channel */
    json_t *product; /* owned */
    json_t *payment; /* owned: the stored payment */
    json_t *profile; /* owned: the checkout form to remember */
};

static void intent_flow_clear(struct cm_ctx *c)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    g_free(f->sale);
    g_free(f->pid);
    if (f->id_number) memset(f->id_number, 0, strlen(f->id_number));
    g_free(f->id_number);
    json_decref(f->buyer);
    json_decref(f->consignee);
    json_decref(f->inv);
    json_decref(f->product);
    json_decref(f->payment);
    json_decref(f->profile);
}

/* The read form of a payment: no user, sealed identity or its reference. */
static json_t *payment_view(json_t *stored)
{
    json_t *v = json_deep_copy(stored);
    json_object_del(v, "user");
    json_object_del(v, "quota_cny_fen");
    json_t *buyer = json_object_get(v, "buyer");
    if (json_is_object(buyer)) {
        json_object_set(buyer, "id_number", json_object_get(buyer, "id_masked"));
        json_object_del(buyer, "id_masked");
        json_object_del(buyer, "id_sealed");
        json_object_del(buyer, "id_ref");
    }
    return v;
}

/* The request's buyer and consignee, or a 400 naming the field. */
static gboolean intent_body_valid(struct intent_flow *f)
{
    struct cm_ctx *c = &f->c;
    GError *err = NULL;
    json_t *form = cm_validate_checkout(c->body, cm_china_year(sl_now_ms()), &f->id_number, &err);
    if (form == NULL) {
        cm_error(c, 400, "bad_request", "%s", err->message);
        g_error_free(err);
        return FALSE;
    }
    f->buyer = json_incref(json_object_get(form, "buyer"));
    f->consignee = json_incref(json_object_get(form, "consignee"));
    json_decref(form);
    return TRUE;
}

static void intent_reply(struct intent_flow *f, int status)
{
    cm_reply(&f->c, status, payment_view(f->payment));
}

static void client_stored(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    json_t *doc =
        r->type == REDIS_REPLY_ARRAY && r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING
            ? json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL)
            : NULL;
    if (doc) {
        json_decref(f->payment);
        f->payment = doc;
    }
    intent_reply(f, 201);
}

static void prepaid(struct commerce *cm, int status, json_t *answer, const char *err, void *user)
{
    struct cm_ctx *c = user;
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    const char *url = json_string_value(json_object_get(answer, f->h5 ? "h5_url" : "code_url"));
    if (err || url == NULL) {
        g_warning("payments: %s did not open payment %s: %s", f->p->id, f->pid,
                  err ? err : "no URL in its answer");
        cm_error(c, 503, "unavailable",
                 "the payment provider could not be reached; try again (the hold is kept)");
        return;
    }
    json_t *client = json_pack("{s:s, s:s}", "kind", f->h5 ? "wechatpay_h5" : "wechatpay_native",
                               f->h5 ? "h5_url" : "code_url", url);
    json_t *patch = json_pack("{s:o}", "client", client);
    char *text = json_dumps(patch, JSON_COMPACT);
    json_decref(patch);
    char *docs = cm_key(SL_KEY_SALE_PAY, f->sale), now[SL_INT_TEXT_MAX];
    sl_int_text(sl_now_ms(), now);
    const char *argv[] = {docs, f->pid, now, "", "", text};
    cm_eval(c, client_stored, cm->doc_update, 1, 6, argv);
    g_free(docs);
    free(text);
}

/* The provider's side of a stored payment: WeChat Pay opens a transaction; dev needs none. */
static void intent_open_at_provider(struct intent_flow *f)
{
    struct cm_ctx *c = &f->c;
    if (f->p == c->cm->payments->dev || json_object_get(f->payment, "client")) {
        intent_reply(f, 201);
        return;
    }
    const char *rid = json_string_value(json_object_get(f->payment, "reservation_id"));
    char *expire = china_rfc3339(json_integer_value(json_object_get(f->payment, "expires_at_ms")));
    const char *sku = json_string_value(json_object_get(f->payment, "sku"));
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:O, s:s}}", "appid", f->p->appid, "mchid",
                  f->p->mchid, "description", sku ? sku : "silklive", "out_trade_no",
                  trade_no_of(rid), "time_expire", expire, "notify_url", f->p->notify_url, "amount",
                  "total", json_object_get(f->payment, "amount_cny_fen"), "currency", "CNY");
    if (f->h5) {
        char ip[SL_ADDR_TEXT_MAX];
        if (!sl_http_req_client(c->req, ip)) g_strlcpy(ip, "127.0.0.1", sizeof ip);
        json_object_set_new(
            body, "scene_info",
            json_pack("{s:s, s:{s:s}}", "payer_client_ip", ip, "h5_info", "type", "Wap"));
    }
    provider_call(c->cm, f->p, "POST",
                  f->h5 ? "/v3/pay/transactions/h5" : "/v3/pay/transactions/native", body, prepaid,
                  c);
    json_decref(body);
    g_free(expire);
}

static void intent_stored(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    const char *st = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->str : "";
    if ((strcmp(st, "ok") == 0 || strcmp(st, "existing") == 0) && r->elements > 1) {
        json_decref(f->payment);
        f->payment = json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL);
        if (f->payment == NULL) {
            cm_error(c, 503, "unavailable", "payment record unreadable");
            return;
        }
        if (st[0] == 'e') {
            intent_reply(f, 200);
            return;
        }
        char *ptext = json_dumps(f->profile, JSON_COMPACT);
        sl_redis_command(sl_server_redis(c->cm->srv), NULL, NULL, "SET " SL_KEY_BUYER_PROFILE " %s",
                         c->who.sub, ptext);
        free(ptext);
        intent_open_at_provider(f);
        return;
    }
    if (strcmp(st, "not_found") == 0)
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
    else if (strcmp(st, "reservation_expired") == 0)
        cm_error(c, 409, "reservation_expired", "the reservation expired or was released");
    else
        cm_error(c, 409, "conflict", "the reservation changed; ask again");
}

static void intent_quota_checked(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    struct commerce *cm = c->cm;
    int64_t spent = r->type == REDIS_REPLY_STRING ? g_ascii_strtoll(r->str, NULL, 10) : 0;
    int64_t quota = json_integer_value(json_object_get(f->payment, "quota_cny_fen"));
    /* a check before money moves; the paid step checks again, exactly, under races */
    if (spent + quota > cm->quota_annual_fen) {
        cm_error_static(c, 409, "quota_exceeded",
                        "this order would pass the buyer's annual cross-border purchase quota");
        return;
    }
    char *inv = cm_key(SL_KEY_SALE_INV, f->sale), *res = cm_key(SL_KEY_SALE_RES, f->sale);
    char *exp = cm_key(SL_KEY_SALE_EXP, f->sale), *pay = cm_key(SL_KEY_SALE_PAY, f->sale);
    char *userh = cm_key(SL_KEY_SALE_USER, f->sale);
    char now[SL_INT_TEXT_MAX], qty[SL_INT_TEXT_MAX], price[SL_INT_TEXT_MAX], hold[SL_INT_TEXT_MAX],
        grace[SL_INT_TEXT_MAX];
    sl_int_text(sl_now_ms(), now);
    sl_int_text(f->qty, qty);
    sl_int_text(f->price, price);
    sl_int_text(cm->payments->min_hold_ms, hold);
    sl_int_text(cm->payments->grace_ms, grace);
    char *doc = json_dumps(f->payment, JSON_COMPACT);
    const char *argv[] = {inv,   res,    exp, pay, userh, now,  c->who.sub,
                          c->id, f->pid, doc, qty, price, hold, grace};
    cm_eval(c, intent_stored, cm->pay, 5, 14, argv);
    free(doc);
    g_free(inv);
    g_free(res);
    g_free(exp);
    g_free(pay);
    g_free(userh);
}

/* Every amount, computed here from the sale and the product (api.md's import tax). */
static void intent_price(struct intent_flow *f)
{
    struct cm_ctx *c = &f->c;
    struct commerce *cm = c->cm;
    int64_t goods = f->price * f->qty, discount = 0;
    int64_t freight = json_integer_value(json_object_get(f->product, "freight_cny_fen"));
    json_t *vat_v = json_object_get(f->product, "vat_rate_bp");
    int vat = json_is_integer(vat_v) ? (int)json_integer_value(vat_v) : 1300;
    int consumption =
        (int)json_integer_value(json_object_get(f->product, "consumption_tax_rate_bp"));
    int64_t tax = cm_import_tax_fen(goods - discount, vat, consumption);
    if (tax < 0) {
        cm_error(c, 409, "conflict", "the product's tax rates are out of range");
        return;
    }
    int64_t quota = goods - discount + freight;
    if (quota > cm->quota_order_fen) {
        cm_error_static(c, 409, "quota_exceeded",
                        "this order would pass the per-order limit for cross-border purchases");
        return;
    }
    char masked[CM_ID_MASKED_LEN + 1];
    cm_id_number_mask(f->id_number, masked);
    GError *err = NULL;
    char *sealed = cm_id_number_seal(&cm->identity, f->id_number, &err);
    if (sealed == NULL) {
        g_warning("payments: cannot seal an identity number: %s", err->message);
        g_error_free(err);
        cm_error(c, 503, "unavailable", "cannot store the buyer's identity now");
        return;
    }
    char *ref = cm_id_number_ref(&cm->identity, f->id_number);
    const char *rid = c->id;
    json_t *buyer =
        json_pack("{s:O, s:O, s:s, s:s, s:s, s:s}", "name", json_object_get(f->buyer, "name"),
                  "phone", json_object_get(f->buyer, "phone"), "id_type", "resident_id",
                  "id_masked", masked, "id_sealed", sealed, "id_ref", ref);
    f->payment = json_pack(
        "{s:s, s:s, s:s, s:O, s:O, s:O, s:s, s:s, s:I, s:I, s:I, s:I, s:I, "
        "s:{s:I, s:I, s:I, s:I}, s:o, s:O}",
        "payment_id", f->pid, "reservation_id", rid, "sale", f->sale, "sku",
        json_object_get(f->inv, "sku"), "pavilion", json_object_get(f->inv, "pavilion"), "channel",
        json_object_get(f->inv, "channel"), "user", c->who.sub, "provider", f->p->id, "qty",
        (json_int_t)f->qty, "price_cny_fen", (json_int_t)f->price, "amount_cny_fen",
        (json_int_t)(goods - discount + freight + tax), "quota_cny_fen", (json_int_t)quota, "year",
        (json_int_t)cm_china_year(sl_now_ms()), "breakdown", "goods_cny_fen", (json_int_t)goods,
        "discount_cny_fen", (json_int_t)discount, "freight_cny_fen", (json_int_t)freight,
        "tax_cny_fen", (json_int_t)tax, "buyer", buyer, "consignee", f->consignee);
    if (f->p == cm->payments->dev) {
        char *url = g_strdup_printf("/api/v1/payments/dev/%s/complete", f->pid);
        json_object_set_new(f->payment, "client",
                            json_pack("{s:s, s:s}", "kind", "dev", "complete_url", url));
        g_free(url);
    }
    /* the checkout form is remembered for the buyer's next order (identity sealed), once this
     * payment is stored */
    f->profile = json_pack("{s:O, s:O, s:I}", "buyer", buyer, "consignee", f->consignee,
                           "updated_at_ms", (json_int_t)sl_now_ms());
    cm_cmd(c, intent_quota_checked, "GET " SL_KEY_PERSON_SPENT, ref, cm_china_year(sl_now_ms()));
    g_free(sealed);
    g_free(ref);
}

static void intent_profile_loaded(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    json_t *profile = cm_doc(r);
    const char *sealed =
        json_string_value(json_object_get(json_object_get(profile, "buyer"), "id_sealed"));
    GError *err = NULL;
    f->id_number = sealed ? cm_id_number_open(&c->cm->identity, sealed, &err) : NULL;
    json_decref(profile);
    if (f->id_number == NULL) {
        if (err) g_warning("payments: a saved identity does not open: %s", err->message);
        g_clear_error(&err);
        cm_error_static(c, 400, "bad_request",
                        "buyer.id_number: required (no identity number is saved for you)");
        return;
    }
    intent_price(f);
}

static void intent_parents_loaded(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    f->product = r->elements == 1 ? cm_doc(r->element[0]) : NULL;
    if (f->product == NULL) {
        cm_error(c, 404, "not_found", "the sale's product is gone");
        return;
    }
    if (f->id_number == NULL) {
        cm_cmd(c, intent_profile_loaded, "GET " SL_KEY_BUYER_PROFILE, c->who.sub);
        return;
    }
    intent_price(f);
}

static void intent_sale_loaded(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    /* [record, price, sku, pavilion, channel] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[1]->elements != 4 || r->element[1]->element[1]->type != REDIS_REPLY_STRING) {
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
        return;
    }
    gchar **rec = g_strsplit(r->element[0]->str, "|", 8);
    gboolean mine = g_strv_length(rec) >= 4 && strcmp(rec[1], c->who.sub) == 0;
    gboolean held =
        mine && strcmp(rec[0], "held") == 0 && g_ascii_strtoll(rec[3], NULL, 10) > sl_now_ms();
    f->qty = mine ? g_ascii_strtoll(rec[2], NULL, 10) : 0;
    g_strfreev(rec);
    if (!mine) {
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
        return;
    }
    if (!held) {
        cm_error(c, 409, "reservation_expired", "the reservation expired or was released");
        return;
    }
    redisReply **inv = r->element[1]->element;
    f->price = g_ascii_strtoll(inv[0]->str ? inv[0]->str : "0", NULL, 10);
    f->inv = json_pack("{s:s?, s:s?, s:s?}", "sku", inv[1]->str, "pavilion", inv[2]->str, "channel",
                       inv[3]->str);
    cm_cmd(c, intent_parents_loaded, "MGET " SL_KEY_PRODUCT, inv[1]->str);
}

static void intent_existing(struct cm_ctx *c, redisReply *r)
{
    struct intent_flow *f = CM_FLOW(struct intent_flow, c);
    json_t *prior = cm_doc(r);
    if (prior) {
        if (g_strcmp0(json_string_value(json_object_get(prior, "user")), c->who.sub) != 0) {
            json_decref(prior);
            cm_error(c, 404, "not_found", "no reservation %s", c->id);
            return;
        }
        /* the same payment again; a provider that was unreachable the first time is asked now */
        f->payment = prior;
        f->p =
            provider_named(c->cm->payments, json_string_value(json_object_get(prior, "provider")));
        if (f->p && !json_object_get(prior, "client") &&
            g_strcmp0(json_string_value(json_object_get(prior, "state")), "pending") == 0) {
            intent_open_at_provider(f);
            return;
        }
        intent_reply(f, 200);
        return;
    }
    if (!intent_body_valid(f)) return;
    /* the reservation and its sale in one round trip */
    char *res = cm_key(SL_KEY_SALE_RES, f->sale), *inv = cm_key(SL_KEY_SALE_INV, f->sale);
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("EVAL"));
    g_ptr_array_add(argv, g_strdup("return {redis.call('HGET', KEYS[1], ARGV[1]) or false, "
                                   "redis.call('HMGET', KEYS[2], 'price_cny_fen', 'sku', "
                                   "'pavilion', 'channel')}"));
    g_ptr_array_add(argv, g_strdup("2"));
    g_ptr_array_add(argv, res);
    g_ptr_array_add(argv, inv);
    g_ptr_array_add(argv, g_strdup(c->id));
    cm_cmd_argv(c, intent_sale_loaded, argv);
    g_ptr_array_unref(argv);
}

static void payment_create(sl_http_req *req, void *user)
{
    struct commerce *cm = user;
    struct intent_flow *f = CM_FLOW_NEW(struct intent_flow, req, cm, intent_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "rid") || !cm_auth(c) || !cm_body(c)) return;
    f->sale = cm_sale_of_rid(c->id);
    if (f->sale == NULL) {
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
        return;
    }
    const char *provider = json_string_value(json_object_get(c->body, "provider"));
    f->p = provider_named(cm->payments, provider);
    if (f->p == NULL) {
        cm_error(c, 400, "bad_request", "provider: %s is not a payment provider of this server",
                 provider ? provider : "(missing)");
        return;
    }
    json_t *scene = json_object_get(c->body, "scene");
    const char *sc = json_string_value(scene);
    if (scene && (sc == NULL || (strcmp(sc, "h5") != 0 && strcmp(sc, "native") != 0))) {
        cm_error_static(c, 400, "bad_request",
                        "scene must be \"native\" (a QR code) or \"h5\" (a phone's browser)");
        return;
    }
    f->h5 = g_strcmp0(sc, "h5") == 0;
    f->pid = g_strdup_printf("P%s", c->id);
    cm_cmd(c, intent_existing, "HGET " SL_KEY_SALE_PAY " %s", f->sale, f->pid);
}

/* ---- confirm: POST /api/v1/reservations/{rid}/confirm ---- */

struct confirm_flow {
    struct cm_ctx c;
    char *sale, *pid; /* owned */
    gboolean queried; /* the provider was asked already */
};

static void confirm_flow_clear(struct cm_ctx *c)
{
    struct confirm_flow *f = CM_FLOW(struct confirm_flow, c);
    g_free(f->sale);
    g_free(f->pid);
}

static void confirm_ask_store(struct confirm_flow *f);

static void confirm_after_query(struct commerce *cm, const char *result, json_t *order, void *user)
{
    struct confirm_flow *f = user;
    confirm_ask_store(f);
}

static void confirm_queried(struct commerce *cm, int status, json_t *answer, const char *err,
                            void *user)
{
    struct confirm_flow *f = user;
    const char *state = json_string_value(json_object_get(answer, "trade_state"));
    const char *tx = json_string_value(json_object_get(answer, "transaction_id"));
    json_t *total = json_object_get(json_object_get(answer, "amount"), "total");
    if (err == NULL && state && strcmp(state, "SUCCESS") == 0 && tx &&
        sl_id_valid(tx, strlen(tx)) && json_is_integer(total)) {
        /* the provider says paid though no notification came (yet): the same step makes it */
        payment_succeeded(cm, f->c.id, tx, json_integer_value(total), confirm_after_query, f);
        return;
    }
    if (err) g_message("payments: query of %s: %s", f->pid, err);
    cm_error_static(&f->c, 402, "payment_required", "the payment is not verified yet");
}

static void confirmed(struct cm_ctx *c, redisReply *r)
{
    struct confirm_flow *f = CM_FLOW(struct confirm_flow, c);
    const char *st = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->str : "";
    if (strcmp(st, "order") == 0) {
        json_t *order =
            r->elements > 1 ? json_loadb(r->element[1]->str, r->element[1]->len, 0, NULL) : NULL;
        if (order == NULL) {
            cm_error(c, 503, "unavailable", "order record unreadable");
            return;
        }
        json_t *v = cm_order_view(order);
        json_decref(order);
        cm_reply(c, 200, v);
        return;
    }
    if (strcmp(st, "payment_required") == 0) {
        json_t *pay = r->elements > 1 ? cm_doc(r->element[1]) : NULL;
        struct provider *p =
            provider_named(c->cm->payments, json_string_value(json_object_get(pay, "provider")));
        /* the provider is asked once its notification is overdue, not on every poll */
        int64_t age = sl_now_ms() - json_integer_value(json_object_get(pay, "created_at_ms"));
        gboolean ask = p && p != c->cm->payments->dev && !f->queried && age > QUERY_AFTER_MS &&
                       g_strcmp0(json_string_value(json_object_get(pay, "state")), "pending") == 0;
        json_decref(pay);
        if (ask) {
            f->queried = TRUE;
            char *path = g_strdup_printf("/v3/pay/transactions/out-trade-no/%s?mchid=%s",
                                         trade_no_of(c->id), p->mchid);
            provider_call(c->cm, p, "GET", path, NULL, confirm_queried, f);
            g_free(path);
            return;
        }
        cm_error_static(c, 402, "payment_required",
                        "the payment is not verified yet: an order exists once the provider "
                        "confirms it");
        return;
    }
    if (strcmp(st, "reservation_expired") == 0)
        cm_error_static(c, 409, "reservation_expired", "the reservation expired or was released");
    else
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
}

static void confirm_ask_store(struct confirm_flow *f)
{
    struct cm_ctx *c = &f->c;
    char *res = cm_key(SL_KEY_SALE_RES, f->sale), *pay = cm_key(SL_KEY_SALE_PAY, f->sale);
    char *odocs = cm_key(SL_KEY_SALE_ODOCS, f->sale);
    const char *argv[] = {res, pay, odocs, c->who.sub, c->id, f->pid};
    cm_eval(c, confirmed, c->cm->confirm, 3, 6, argv);
    g_free(res);
    g_free(pay);
    g_free(odocs);
}

static void reservation_confirm(sl_http_req *req, void *user)
{
    struct confirm_flow *f = CM_FLOW_NEW(struct confirm_flow, req, user, confirm_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "rid") || !cm_auth(c) || !cm_body(c)) return;
    json_t *ref = json_object_get(c->body, "payment_ref");
    const char *pid = json_string_value(ref);
    if (pid == NULL || !sl_id_valid(pid, strlen(pid))) {
        cm_error(c, 400, "bad_request", "payment_ref must be the payment_id of this reservation");
        return;
    }
    f->sale = cm_sale_of_rid(c->id);
    if (f->sale == NULL) {
        cm_error(c, 404, "not_found", "no reservation %s", c->id);
        return;
    }
    f->pid = g_strdup(pid);
    confirm_ask_store(f);
}

/* ---- the dev provider: POST /api/v1/payments/dev/{id}/complete ---- */

struct complete_flow {
    struct cm_ctx c;
    SoupMessage *msg; /* owned */
};

static void complete_flow_clear(struct cm_ctx *c)
{
    struct complete_flow *f = CM_FLOW(struct complete_flow, c);
    if (f->msg) g_object_unref(f->msg);
}

static void dev_notified(GObject *src, GAsyncResult *res, gpointer data)
{
    struct cm_ctx *c = data;
    struct complete_flow *f = CM_FLOW(struct complete_flow, c);
    GError *e = NULL;
    GBytes *b = soup_session_send_and_read_finish(SOUP_SESSION(src), res, &e);
    int status = (int)soup_message_get_status(f->msg);
    if (b) g_bytes_unref(b);
    if (e || status < 200 || status >= 300) {
        cm_error(c, 503, "unavailable", "the notification was not acknowledged (%s)",
                 e ? e->message : soup_message_get_reason_phrase(f->msg));
        g_clear_error(&e);
        return;
    }
    cm_reply(c, 200, json_pack("{s:s, s:b}", "payment_id", c->id, "notified", 1));
}

static void dev_payment_loaded(struct cm_ctx *c, redisReply *r)
{
    struct complete_flow *f = CM_FLOW(struct complete_flow, c);
    struct commerce *cm = c->cm;
    struct provider *p = cm->payments->dev;
    json_t *pay = cm_doc(r);
    const char *owner = json_string_value(json_object_get(pay, "user"));
    if (pay == NULL || g_strcmp0(json_string_value(json_object_get(pay, "provider")), "dev") ||
        (g_strcmp0(owner, c->who.sub) != 0 && c->who.role != SL_ROLE_ADMIN)) {
        json_decref(pay);
        cm_error(c, 404, "not_found", "no dev payment %s", c->id);
        return;
    }
    /* what WeChat Pay would send for this payment, signed and sealed the same way */
    int64_t now = sl_now_ms();
    char *when = china_rfc3339(now);
    const char *rid = json_string_value(json_object_get(pay, "reservation_id"));
    if (rid == NULL) {
        json_decref(pay);
        cm_error(c, 503, "unavailable", "payment record unreadable");
        return;
    }
    char *tx = cm_random_id("DEV", 25);
    json_t *amount = json_object_get(pay, "amount_cny_fen");
    json_t *transaction = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s}, s:{s:O, s:O, s:s, s:s}}", "mchid",
        p->mchid, "appid", p->appid, "out_trade_no", trade_no_of(rid), "transaction_id", tx,
        "trade_type", "NATIVE", "trade_state", "SUCCESS", "trade_state_desc", "支付成功",
        "bank_type", "OTHERS", "success_time", when, "payer", "openid", "dev-buyer", "amount",
        "total", amount, "payer_total", amount, "currency", "CNY", "payer_currency", "CNY");
    char *plain = json_dumps(transaction, JSON_COMPACT);
    json_t *resource = cm_wxpay_seal_resource(p->apiv3_key, "transaction", plain);
    char *id = g_uuid_string_random();
    json_t *note = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "id", id, "create_time", when,
                             "resource_type", "encrypt-resource", "event_type",
                             "TRANSACTION.SUCCESS", "summary", "支付成功", "resource", resource);
    char *body = json_dumps(note, JSON_COMPACT);
    char ts[SL_INT_TEXT_MAX];
    sl_int_text(now / 1000, ts);
    char *nonce = cm_wxpay_nonce();
    const char *lines[] = {ts, nonce, body};
    char *sig = cm_wxpay_sign(p->platform_key, lines, 3, NULL);
    char *url = g_strconcat(cm->self_url, "/api/v1/payments/dev/notify", NULL);
    f->msg = soup_message_new("POST", url);
    SoupMessageHeaders *h = soup_message_get_request_headers(f->msg);
    soup_message_headers_replace(h, "Wechatpay-Timestamp", ts);
    soup_message_headers_replace(h, "Wechatpay-Nonce", nonce);
    soup_message_headers_replace(h, "Wechatpay-Signature", sig ? sig : "");
    soup_message_headers_replace(h, "Wechatpay-Serial", p->platform_serial);
    GBytes *bytes = g_bytes_new_take(body, strlen(body));
    soup_message_set_request_body_from_bytes(f->msg, "application/json", bytes);
    g_bytes_unref(bytes);
    soup_session_send_and_read_async(cm->http, f->msg, G_PRIORITY_DEFAULT, NULL, dev_notified, c);
    g_free(url);
    g_free(sig);
    g_free(nonce);
    g_free(id);
    free(plain);
    json_decref(note);
    json_decref(transaction);
    g_free(tx);
    g_free(when);
    json_decref(pay);
}

static void dev_complete(sl_http_req *req, void *user)
{
    struct commerce *cm = user;
    struct complete_flow *f = CM_FLOW_NEW(struct complete_flow, req, cm, complete_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    char *sale = cm_sale_of_ref(c->id);
    if (cm->payments->dev == NULL || sale == NULL || c->id[0] != 'P') {
        g_free(sale);
        cm_error(c, 404, "not_found", "no dev payment %s", c->id);
        return;
    }
    cm_cmd(c, dev_payment_loaded, "HGET " SL_KEY_SALE_PAY " %s", sale, c->id);
    g_free(sale);
}

static void providers_list(sl_http_req *req, void *user)
{
    struct payments *pm = ((struct commerce *)user)->payments;
    json_t *list = json_array();
    if (pm->wechatpay) json_array_append_new(list, json_string("wechatpay"));
    if (pm->dev) json_array_append_new(list, json_string("dev"));
    sl_http_reply_json(req, 200, json_pack("{s:o}", "providers", list));
}

/* ---- refunds ---- */

struct refund_call {
    struct commerce *cm;
    cm_refund_cb cb;
    void *user;
};

static void refund_answered(struct commerce *cm, int status, json_t *answer, const char *err,
                            void *user)
{
    struct refund_call *r = user;
    const char *st = json_string_value(json_object_get(answer, "status"));
    gboolean ok =
        err == NULL && st && (strcmp(st, "SUCCESS") == 0 || strcmp(st, "PROCESSING") == 0);
    r->cb(cm, ok, ok ? st : err ? err : "the provider refused the refund", r->user);
    g_free(r);
}

static void refund_dev_done(gpointer data)
{
    struct refund_call *r = data;
    r->cb(r->cm, TRUE, "SUCCESS", r->user);
    g_free(r);
}

/* Refund number no ("R<rid>" for an order, "Q<rid>" for a payment without one) of the payment
 * of out_trade_no rid: the number is the provider's idempotency key. */
static void refund_at_provider(struct commerce *cm, struct provider *p, const char *rid,
                               const char *no, int64_t amount, const char *reason, cm_refund_cb cb,
                               void *user)
{
    struct refund_call *r = g_new0(struct refund_call, 1);
    r->cm = cm;
    r->cb = cb;
    r->user = user;
    if (p == NULL || p == cm->payments->dev) {
        /* dev moves no money: its refund is done at once (not from inside this call) */
        g_idle_add_once(refund_dev_done, r);
        return;
    }
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:I, s:I, s:s}}", "out_trade_no", trade_no_of(rid),
                  "out_refund_no", no, "reason", reason, "notify_url", p->notify_url, "amount",
                  "refund", (json_int_t)amount, "total", (json_int_t)amount, "currency", "CNY");
    provider_call(cm, p, "POST", "/v3/refund/domestic/refunds", body, refund_answered, r);
    json_decref(body);
}

void cm_payments_refund(struct commerce *cm, json_t *order, cm_refund_cb cb, void *user)
{
    const char *rid = json_string_value(json_object_get(order, "reservation_id"));
    char *no = g_strdup_printf("R%s", rid ? rid : "");
    json_t *refund = json_object_get(order, "refund");
    const char *reason = json_string_value(json_object_get(refund, "reason"));
    refund_at_provider(
        cm, provider_named(cm->payments, json_string_value(json_object_get(order, "provider"))),
        rid ? rid : "", no, json_integer_value(json_object_get(order, "amount_cny_fen")),
        reason ? reason : "refund", cb, user);
    g_free(no);
}

/* A paid payment whose hold could not be honoured: the refund outbox's job. */
struct payment_refund {
    struct commerce *cm;
    cm_job *job;
    char *sale, *pid; /* owned */
};

static void payment_refund_free(struct payment_refund *j)
{
    g_free(j->sale);
    g_free(j->pid);
    g_free(j);
}

static void payment_refund_marked(redisReply *r, const char *err, void *user)
{
    struct payment_refund *j = user;
    if (r && r->type == REDIS_REPLY_ARRAY)
        cm_job_done(j->job);
    else
        cm_job_retry(j->job, err ? err : "the store refused");
    payment_refund_free(j);
}

static void payment_refunded(struct commerce *cm, gboolean ok, const char *why, void *user)
{
    struct payment_refund *j = user;
    if (!ok) {
        g_warning("payments: refund of %s failed, will retry: %s", j->pid, why);
        cm_job_retry(j->job, why);
        payment_refund_free(j);
        return;
    }
    g_message("payments: %s refunded (its hold was gone)", j->pid);
    char *docs = cm_key(SL_KEY_SALE_PAY, j->sale), now[SL_INT_TEXT_MAX];
    sl_int_text(sl_now_ms(), now);
    char patch[96];
    g_snprintf(patch, sizeof patch, "{\"refund\":{\"state\":\"done\",\"done_at_ms\":%s}}", now);
    const char *argv[] = {docs, j->pid, now, "refund_pending", "refunded", patch};
    if (sl_redis_eval(sl_server_redis(cm->srv), cm->doc_update, payment_refund_marked, j, 1, 6,
                      argv, NULL) != SL_OK) {
        cm_job_retry(j->job, "not connected");
        payment_refund_free(j);
    }
    g_free(docs);
}

static void payment_refund_loaded(redisReply *r, const char *err, void *user)
{
    struct payment_refund *j = user;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        cm_job_retry(j->job, err ? err : "the store refused");
        payment_refund_free(j);
        return;
    }
    json_t *pay = cm_doc(r);
    const char *state = json_string_value(json_object_get(pay, "state"));
    if (pay == NULL || g_strcmp0(state, "refund_pending") != 0) {
        json_decref(pay);
        cm_job_done(j->job); /* nothing (more) to refund */
        payment_refund_free(j);
        return;
    }
    struct commerce *cm = j->cm;
    const char *rid = json_string_value(json_object_get(pay, "reservation_id"));
    char *no = g_strdup_printf("Q%s", rid ? rid : "");
    refund_at_provider(
        cm, provider_named(cm->payments, json_string_value(json_object_get(pay, "provider"))),
        rid ? rid : "", no, json_integer_value(json_object_get(pay, "amount_cny_fen")),
        "the reserved units were no longer held", payment_refunded, j);
    g_free(no);
    json_decref(pay);
}

static void payment_refund_job(cm_job *job, json_t *fields, void *user)
{
    struct commerce *cm = user;
    const char *pid = json_string_value(json_object_get(fields, "payment"));
    const char *sale = json_string_value(json_object_get(fields, "sale"));
    if (pid == NULL || sale == NULL) {
        cm_job_done(job); /* not a job: nothing to do, ever */
        return;
    }
    struct payment_refund *j = g_new0(struct payment_refund, 1);
    j->cm = cm;
    j->job = job;
    j->sale = g_strdup(sale);
    j->pid = g_strdup(pid);
    if (sl_redis_command(sl_server_redis(cm->srv), payment_refund_loaded, j,
                         "HGET " SL_KEY_SALE_PAY " %s", sale, pid) != SL_OK) {
        cm_job_retry(job, "not connected");
        payment_refund_free(j);
    }
}

/* ---- life cycle ---- */

static char *config_string(const struct sl_config *cfg, const char *key)
{
    char *v = g_key_file_get_string(cfg->file, "wechatpay", key, NULL);
    if (v) g_strstrip(v);
    return v;
}

static EVP_PKEY *key_file(const char *path, gboolean private_key, const char *what, GError **err)
{
    char *pem = NULL;
    GError *e = NULL;
    if (!g_file_get_contents(path, &pem, NULL, &e)) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[wechatpay] %s: %s", what, e->message);
        g_error_free(e);
        return NULL;
    }
    EVP_PKEY *k = cm_wxpay_key_from_pem(pem, private_key, &e);
    memset(pem, 0, strlen(pem));
    g_free(pem);
    if (k == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[wechatpay] %s %s: %s", what, path,
                    e->message);
        g_error_free(e);
    }
    return k;
}

static struct provider *wechatpay_from_config(struct commerce *cm, GError **err)
{
    const struct sl_config *cfg = sl_server_config(cm->srv);
    if (!g_key_file_has_group(cfg->file, "wechatpay")) return NULL;
    struct provider *p = g_new0(struct provider, 1);
    p->id = "wechatpay";
    p->mchid = config_string(cfg, "mchid");
    p->appid = config_string(cfg, "appid");
    p->serial_no = config_string(cfg, "serial_no");
    p->platform_serial = config_string(cfg, "platform_serial");
    p->apiv3_key = config_string(cfg, "apiv3_key");
    p->api_base = config_string(cfg, "api_base");
    p->notify_url = config_string(cfg, "notify_url");
    char *key = config_string(cfg, "private_key_file");
    char *platform = config_string(cfg, "platform_public_key_file");
    const char *missing = !p->mchid       ? "mchid"
                          : !p->appid     ? "appid"
                          : !p->serial_no ? "serial_no"
                          : !key          ? "private_key_file"
                          : !platform     ? "platform_public_key_file"
                          : !p->apiv3_key ? "apiv3_key"
                                          : NULL;
    if (missing) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[wechatpay] %s is required", missing);
    } else if (strlen(p->apiv3_key) != 32) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "[wechatpay] apiv3_key must be the 32-character APIv3 key");
    } else if ((p->merchant_key = key_file(key, TRUE, "private_key_file", err)) != NULL &&
               (p->platform_key = key_file(platform, FALSE, "platform_public_key_file", err)) !=
                   NULL) {
        if (p->api_base == NULL) p->api_base = g_strdup("https://api.mch.weixin.qq.com");
        if (p->notify_url == NULL)
            p->notify_url = g_strconcat(cm->public_url, "/api/v1/payments/wechatpay/notify", NULL);
        if (!g_str_has_prefix(p->api_base, "https://") && !g_str_has_prefix(p->api_base, "http://"))
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "[wechatpay] api_base must be an http(s) URL");
    }
    g_free(key);
    g_free(platform);
    if (err && *err) {
        provider_free(p);
        return NULL;
    }
    return p;
}

/* dev: WeChat Pay's protocol with a platform key and an APIv3 key made at start. */
static struct provider *dev_provider(void)
{
    struct provider *p = g_new0(struct provider, 1);
    p->id = "dev";
    p->mchid = g_strdup("dev");
    p->appid = g_strdup("dev");
    p->platform_serial = cm_wxpay_nonce();
    p->apiv3_key = cm_random_id("", 32);
    p->platform_key = EVP_RSA_gen(2048);
    if (p->platform_key == NULL) g_error("payments: cannot make the dev provider's key");
    return p;
}

int cm_payments_init(struct commerce *cm, GError **err)
{
    const struct sl_config *cfg = sl_server_config(cm->srv);
    struct payments *pm = g_new0(struct payments, 1);
    cm->payments = pm;
    int64_t grace_s, hold_s;
    if (sl_config_get_int(cfg, "payments", "notify_grace_s", 60, 0, 3600, &grace_s, err) != SL_OK ||
        sl_config_get_int(cfg, "payments", "min_hold_s", 120, 1, 3600, &hold_s, err) != SL_OK)
        return SL_ERR;
    pm->grace_ms = grace_s * 1000;
    pm->min_hold_ms = hold_s * 1000;
    GError *e = NULL;
    gboolean dev = g_key_file_get_boolean(cfg->file, "payments", "dev", &e);
    if (e) {
        dev = cfg->demo;
        if (!g_error_matches(e, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND) &&
            !g_error_matches(e, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND)) {
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[payments] dev: %s", e->message);
            g_error_free(e);
            return SL_ERR;
        }
        g_clear_error(&e);
    }
    pm->wechatpay = wechatpay_from_config(cm, &e);
    if (e) {
        g_propagate_error(err, e);
        return SL_ERR;
    }
    if (dev) pm->dev = dev_provider();

    pm->refunds = cm_outbox_new(cm, SL_KEY_PAY_REFUNDS, "refunds", payment_refund_job, cm);
    sl_server *srv = cm->srv;
    sl_http_route(srv, "POST", "/api/v1/reservations/{rid}/payment", payment_create, cm);
    sl_http_route(srv, "POST", "/api/v1/reservations/{rid}/confirm", reservation_confirm, cm);
    sl_http_route(srv, "POST", "/api/v1/payments/{provider}/notify", payment_notify, cm);
    sl_http_route(srv, "POST", "/api/v1/payments/dev/{id}/complete", dev_complete, cm);
    sl_http_route(srv, "GET", "/api/v1/payments/providers", providers_list, cm);
    return SL_OK;
}

void cm_payments_start(struct commerce *cm)
{
    if (cm->payments->refunds) cm_outbox_start(cm->payments->refunds);
}

void cm_payments_stop(struct commerce *cm)
{
    if (cm->payments && cm->payments->refunds) cm_outbox_stop(cm->payments->refunds);
}

void cm_payments_free(struct commerce *cm)
{
    struct payments *pm = cm->payments;
    if (pm == NULL) return;
    if (pm->refunds) cm_outbox_free(pm->refunds);
    provider_free(pm->dev);
    provider_free(pm->wechatpay);
    g_free(pm);
    cm->payments = NULL;
}
