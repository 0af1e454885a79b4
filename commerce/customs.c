/* customs: every paid order declared to China customs (CEB311Message) through the gateway.
 *
 *   commerce_paid.lua ──XADD──► sl:{customs}:outbox ──(outbox.c, group "declare")──► declare()
 *   declare: order (HGET) → pavilion, product (GET) → CEB311 → HSET guid → order id
 *            → POST [customs] gateway_url   Content-Type: application/xml, Idempotency-Key: guid
 *   answer (CEB312Message, OrderReturn/returnStatus):
 *     120 入库 → order "declared"           100 退单 → order "declaration_rejected" (returnInfo)
 *     1/2/3 (accepted, in progress) → declaration "delivered"; the final receipt comes to
 *       POST /api/v1/customs/receipts (signed), or to the next ask (same guid) a minute later
 *     anything else (5xx, timeout, garbage) → again after 1, 2, 4 ... 60 s, attempts and the
 *       last error kept in the order's declaration
 *
 * The guid made with the order is the declaration's identity at the gateway: every ask, by any
 * node, after any restart, sends the same one, so the gateway declares an order once. The buyer's
 * identity number is opened only to write the XML and wiped after; it is never logged. */
#include "internal.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>

#define GROUP          "declare"
#define LIST_MAX       500
#define REASON_MAX     500
#define GAUGE_EVERY_MS 1000

enum result { R_DELIVERED, R_DECLARED, R_REJECTED, R_RETRY, R_COUNT };

struct customs {
    struct commerce *cm;
    char *gateway_url;    /* owned; NULL: declarations stay queued */
    gboolean dev;         /* the in-process stand-in gateway answers (customs_dev.c) */
    char *ebp_code;       /* owned */
    char *ebp_name;       /* owned */
    char *receipt_secret; /* owned; NULL: receipts are refused */
    int64_t timeout_ms;
    cm_outbox *outbox; /* owned */
    GHashTable *posts; /* struct declare* with a POST in flight (cancelled at stop) */
    gboolean stopping; /* no new work; flows in flight end their jobs */
    gboolean failing;  /* the gateway failed last time: logged once until it answers */
    guint gauge_timer;
    sl_metric *m_results[R_COUNT], *m_length, *m_oldest, *src_length, *src_oldest;
};

static void count(struct customs *cu, enum result r)
{
    sl_metric_add(cu->m_results[r], 1);
}

/* ---- codes ---- */

/* A pavilion's country (ISO 3166-1 alpha-2) in customs' 3-digit country table (海关 国别(地区)
 * 代码), for products without origin_country_code. Written from the customs table, not checked
 * against its latest edition: a product's own code always wins. */
static const char *customs_country(const char *iso)
{
    static const struct {
        const char *iso, *code;
    } table[] = {
        {"AR", "402"}, {"AU", "601"}, {"BR", "410"}, {"CA", "501"}, {"CL", "412"}, {"CN", "142"},
        {"DE", "304"}, {"ES", "312"}, {"FR", "305"}, {"GB", "303"}, {"HK", "110"}, {"IT", "307"},
        {"JP", "116"}, {"KR", "133"}, {"MX", "429"}, {"MY", "122"}, {"NL", "309"}, {"NZ", "609"},
        {"SG", "132"}, {"TH", "136"}, {"US", "502"}, {"VN", "141"},
    };
    for (size_t i = 0; iso && i < G_N_ELEMENTS(table); i++)
        if (strcmp(table[i].iso, iso) == 0) return table[i].code;
    return NULL;
}

/* The payment enterprise of a provider as customs knows it. */
static void pay_enterprise(const char *provider, const char **code, const char **name)
{
    if (provider && strcmp(provider, "wechatpay") == 0) {
        *code = "4403169D3W"; /* Tenpay, WeChat Pay's licensed payment company */
        *name = "财付通支付科技有限公司";
    } else {
        *code = "0000000000"; /* the dev provider: no payment company */
        *name = "silklive dev payments";
    }
}

/* ---- the declaration of an order ---- */

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int64_t num(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* The CEB311Message of a stored order (g_free), or NULL with *err saying what is missing, in
 * words for the consul; never personal data. */
static char *declaration_build(struct customs *cu, json_t *order, json_t *pav, json_t *product,
                               GError **err)
{
    const char *pav_code = str(order, "pavilion"), *sku = str(order, "sku");
    const char *ebc_code = str(pav, "ebc_code"), *ebc_name = str(pav, "ebc_name");
    if (pav == NULL || ebc_code == NULL || ebc_name == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                    "the pavilion %s has no ebc_code and ebc_name (its enterprise as registered "
                    "with customs): set them on the pavilion",
                    pav_code ? pav_code : "?");
        return NULL;
    }
    if (product == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_NOT_FOUND, "the product %s is gone", sku ? sku : "?");
        return NULL;
    }
    const char *country = str(product, "origin_country_code");
    if (country == NULL) country = customs_country(pav_code);
    if (country == NULL) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                    "no customs country code for pavilion %s: set the product's "
                    "origin_country_code",
                    pav_code ? pav_code : "?");
        return NULL;
    }
    json_t *title = json_object_get(product, "title");
    const char *item_name = str(title, "zh") ? str(title, "zh") : str(title, "en");
    const char *unit = str(product, "customs_unit") ? str(product, "customs_unit") : "011";
    json_t *buyer = json_object_get(order, "buyer"),
           *consignee = json_object_get(order, "consignee");
    json_t *bd = json_object_get(order, "breakdown");
    GError *e = NULL;
    char *id_number = cm_id_number_open(&cu->cm->identity, str(buyer, "id_sealed"), &e);
    if (id_number == NULL) {
        g_clear_error(&e);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "the buyer's identity number does not open with this server's "
                            "[commerce] identity_key");
        return NULL;
    }
    const char *pay_code, *pay_name;
    pay_enterprise(str(order, "provider"), &pay_code, &pay_name);
    struct cm_declaration_line line = {
        .item_no = sku,
        .item_name = item_name ? item_name : sku,
        .unit = unit,
        .country = country,
        .qty = num(order, "qty"),
        .price_fen = num(order, "price_cny_fen"),
    };
    struct cm_declaration d = {
        .guid = str(json_object_get(order, "declaration"), "guid"),
        .order_no = str(order, "order_id"),
        .ebp_code = cu->ebp_code,
        .ebp_name = cu->ebp_name,
        .ebc_code = ebc_code,
        .ebc_name = ebc_name,
        .app_time_ms = num(order, "created_at_ms"), /* the same XML at every ask */
        .goods_fen = num(bd, "goods_cny_fen"),
        .freight_fen = num(bd, "freight_cny_fen"),
        .discount_fen = num(bd, "discount_cny_fen"),
        .tax_fen = num(bd, "tax_cny_fen"),
        .buyer_reg_no = str(order, "user"),
        .buyer_name = str(buyer, "name"),
        .buyer_phone = str(buyer, "phone"),
        .buyer_id_number = id_number,
        .pay_code = pay_code,
        .pay_name = pay_name,
        .pay_transaction_id = str(order, "transaction_id"),
        .consignee = str(consignee, "name"),
        .consignee_phone = str(consignee, "phone"),
        .consignee_address = str(consignee, "address"),
        .consignee_district = str(consignee, "district"),
        .lines = &line,
        .n_lines = 1,
    };
    char *xml = cm_declaration_xml(&d, err);
    memset(id_number, 0, strlen(id_number));
    g_free(id_number);
    return xml;
}

/* A text from the gateway with every run of 15 or more digits (or X) masked as identity numbers
 * are: customs may quote the buyer's number in returnInfo, and that text is logged and shown
 * (g_free). */
static char *ids_masked(const char *text)
{
    GString *out = g_string_new(NULL);
    for (const char *p = text ? text : ""; *p;) {
        size_t n = 0;
        while (g_ascii_isdigit(p[n]) || p[n] == 'X' || p[n] == 'x')
            n++;
        if (n >= 15) {
            g_string_append_len(out, p, 3);
            for (size_t i = 3; i + 4 < n; i++)
                g_string_append_c(out, '*');
            g_string_append_len(out, p + n - 4, 4);
        } else if (n > 0) {
            g_string_append_len(out, p, (gssize)n);
        } else {
            g_string_append_c(out, *p);
            n = 1;
        }
        p += n;
    }
    return g_string_free(out, FALSE);
}

/* ---- the gateway's receipt (CEB312Message) ---- */

void cm_customs_receipt_clear(struct cm_receipt *r)
{
    g_free(r->guid);
    g_free(r->status);
    g_free(r->info);
    g_free(r->time);
    memset(r, 0, sizeof *r);
}

xmlNodePtr cm_xml_child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0) return n;
    return NULL;
}

/* A child's text, trimmed, up to max bytes of valid UTF-8 (g_free); NULL when absent. */
char *cm_xml_child_text(xmlNodePtr parent, const char *name, size_t max)
{
    xmlNodePtr n = cm_xml_child(parent, name);
    if (n == NULL) return NULL;
    xmlChar *t = xmlNodeGetContent(n);
    char *out = g_strstrip(g_strdup(t ? (const char *)t : ""));
    xmlFree(t);
    if (strlen(out) > max || !g_utf8_validate(out, -1, NULL)) {
        g_free(out);
        return NULL;
    }
    return out;
}

/* The first OrderReturn of a CEB312Message (any namespace prefix). SL_OK, or SL_EPROTO for
 * anything else, a document with a DTD included. No network access, no entities expanded. */
int cm_customs_receipt_parse(const char *body, size_t len, struct cm_receipt *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0 || len > SL_HTTP_MAX_BODY) return SL_EPROTO;
    xmlDocPtr doc = xmlReadMemory(body, (int)len, "ceb312.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL) return SL_EPROTO;
    if (doc->intSubset || doc->extSubset) { /* no DTD, so no entities: customs sends none */
        xmlFreeDoc(doc);
        return SL_EPROTO;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr ret = root && strcmp((const char *)root->name, "CEB312Message") == 0
                         ? cm_xml_child(root, "OrderReturn")
                         : NULL;
    if (ret) {
        out->guid = cm_xml_child_text(ret, "guid", 64);
        out->status = cm_xml_child_text(ret, "returnStatus", 8);
        char *info = cm_xml_child_text(ret, "returnInfo", 1000);
        out->info = info ? ids_masked(info) : NULL;
        g_free(info);
        out->time = cm_xml_child_text(ret, "returnTime", 32);
    }
    xmlFreeDoc(doc);
    gboolean ok = out->guid && out->status && *out->status;
    for (const char *p = out->status; ok && *p; p++)
        ok = g_ascii_isdigit(*p);
    if (!ok) {
        cm_customs_receipt_clear(out);
        return SL_EPROTO;
    }
    return SL_OK;
}

/* 120 → "declared", 100 → "rejected", 1/2/3 → "delivered", NULL for anything else. */
static const char *receipt_state(const struct cm_receipt *r)
{
    if (strcmp(r->status, "120") == 0) return "declared";
    if (strcmp(r->status, "100") == 0) return "rejected";
    if (strcmp(r->status, "1") == 0 || strcmp(r->status, "2") == 0 || strcmp(r->status, "3") == 0)
        return "delivered";
    return NULL;
}

/* The order's declaration after a receipt: state, the receipt, the reason of a refusal. */
static json_t *declaration_with_receipt(json_t *order, const struct cm_receipt *r,
                                        const char *state, int attempts_add)
{
    json_t *decl = json_deep_copy(json_object_get(order, "declaration"));
    if (!json_is_object(decl)) {
        json_decref(decl);
        decl = json_object();
    }
    json_object_set_new(decl, "state", json_string(state));
    json_object_set_new(
        decl, "receipt",
        json_pack("{s:s, s:s?, s:s?}", "status", r->status, "info", r->info, "time", r->time));
    if (strcmp(state, "rejected") == 0)
        json_object_set_new(decl, "reason",
                            json_string(r->info && *r->info ? r->info : "refused by customs"));
    else
        json_object_set_new(decl, "reason", json_null());
    json_object_set_new(decl, "attempts", json_integer(num(decl, "attempts") + attempts_add));
    json_object_set_new(decl, "updated_at_ms", json_integer(sl_now_ms()));
    return decl;
}

/* Move an order by a receipt: the order's state (declared, declaration_rejected, or as it is)
 * and its declaration; a refusal joins the rejected list. cb as cm_order_update's. */
static void receipt_apply(struct customs *cu, json_t *order, const struct cm_receipt *r,
                          int attempts_add, cm_order_cb cb, void *user)
{
    const char *state = receipt_state(r);
    const char *order_state = strcmp(state, "declared") == 0   ? "declared"
                              : strcmp(state, "rejected") == 0 ? "declaration_rejected"
                                                               : "";
    const char *id = str(order, "order_id");
    if (strcmp(state, "rejected") == 0)
        sl_redis_command(sl_server_redis(cu->cm->srv), NULL, NULL,
                         "ZADD " SL_KEY_CUSTOMS_REJECTED " %lld %s", (long long)sl_now_ms(), id);
    json_t *patch =
        json_pack("{s:o}", "declaration", declaration_with_receipt(order, r, state, attempts_add));
    cm_order_update(cu->cm, id, "paid", order_state, patch, cb, user);
}

/* Count (and log a refusal) once the order took the receipt; before: its declaration's state
 * until then. */
static void count_outcome(struct customs *cu, const char *before, json_t *doc)
{
    const char *state = str(json_object_get(doc, "declaration"), "state");
    if (g_strcmp0(state, before) == 0 || state == NULL) return;
    if (strcmp(state, "declared") == 0) count(cu, R_DECLARED);
    if (strcmp(state, "delivered") == 0) count(cu, R_DELIVERED);
    if (strcmp(state, "rejected") == 0) {
        count(cu, R_REJECTED);
        g_message("customs: order %s: declaration refused: %s", str(doc, "order_id"),
                  str(json_object_get(doc, "declaration"), "reason"));
    }
}

/* ---- declaring one order (an outbox job) ---- */

struct declare {
    struct customs *cu; /* NULL once customs was freed under a POST in flight */
    cm_job *job;
    char *order_id, *sale; /* owned */
    json_t *order, *pav;   /* owned */
    SoupMessage *msg;      /* owned */
    GCancellable *cancel;  /* owned */
    guint deadline;
    gboolean timed_out;
};

static void declare_free(struct declare *d)
{
    if (d->deadline) g_source_remove(d->deadline);
    if (d->cancel) g_object_unref(d->cancel);
    if (d->msg) g_object_unref(d->msg);
    json_decref(d->order);
    json_decref(d->pav);
    g_free(d->order_id);
    g_free(d->sale);
    g_free(d);
}

static void declare_done(struct declare *d)
{
    cm_job_done(d->job);
    declare_free(d);
}

static void declare_again(struct declare *d, const char *why)
{
    cm_job_retry(d->job, why);
    declare_free(d);
}

/* Stopping, or Redis failed: the job waits (its entry stays in the outbox). */
static gboolean declare_gone(struct declare *d, redisReply *r, const char *err)
{
    if (d->cu->stopping) {
        declare_again(d, "stopping");
        return TRUE;
    }
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        char *why = g_strdup_printf("the store failed: %s", r ? r->str : err);
        declare_again(d, why);
        g_free(why);
        return TRUE;
    }
    return FALSE;
}

static void after_record(struct commerce *cm, const char *status, json_t *doc, void *user)
{
    (void)cm, (void)status, (void)doc;
    struct declare *d = user;
    const char *why = str(json_object_get(d->order, "declaration"), "reason");
    declare_again(d, why ? why : "retry");
}

/* Not delivered this time: keep why (and the attempt, when the gateway was asked) in the order,
 * then wait. An unchanged reason with no attempt is not written again. */
static void declare_failed(struct declare *d, const char *why, gboolean asked)
{
    struct customs *cu = d->cu;
    count(cu, R_RETRY);
    json_t *decl = json_object_get(d->order, "declaration");
    const char *old = str(decl, "reason");
    if (!asked && old && strcmp(old, why) == 0) {
        declare_again(d, why);
        return;
    }
    json_t *copy = json_deep_copy(decl);
    if (!json_is_object(copy)) {
        json_decref(copy);
        copy = json_object();
    }
    char *reason = g_utf8_make_valid(why, -1);
    if (strlen(reason) > REASON_MAX) reason[REASON_MAX] = '\0';
    gchar *cut = g_utf8_make_valid(reason, -1);
    json_object_set_new(copy, "reason", json_string(cut));
    g_free(cut);
    g_free(reason);
    if (asked) json_object_set_new(copy, "attempts", json_integer(num(copy, "attempts") + 1));
    json_object_set_new(copy, "updated_at_ms", json_integer(sl_now_ms()));
    json_object_set(d->order, "declaration", copy); /* after_record reads the reason here */
    cm_order_update(cu->cm, d->order_id, "paid", "", json_pack("{s:o}", "declaration", copy),
                    after_record, d);
}

static void after_receipt(struct commerce *cm, const char *status, json_t *doc, void *user)
{
    (void)cm;
    struct declare *d = user;
    const char *state = str(json_object_get(doc, "declaration"), "state");
    if (strcmp(status, "ok") == 0 && d->cu)
        count_outcome(d->cu, str(json_object_get(d->order, "declaration"), "state"), doc);
    if (strcmp(status, "unavailable") == 0)
        declare_again(d, "the store failed while recording the receipt");
    else if (strcmp(status, "ok") == 0 && state && strcmp(state, "delivered") == 0)
        /* accepted, not final: ask again (same guid) until the receipt is final */
        declare_again(d, "waiting for the final receipt");
    else /* final, or the order moved on (a receipt came first, a refund) */
        declare_done(d);
}

static void gateway_ok(struct customs *cu)
{
    if (cu->failing) g_message("customs: the gateway answers again");
    cu->failing = FALSE;
}

static void gateway_failed(struct customs *cu, const char *why)
{
    if (!cu->failing)
        g_warning("customs: the gateway failed (%s); declarations wait and are asked again", why);
    cu->failing = TRUE;
}

static void declare_answered(GObject *src, GAsyncResult *res, gpointer data)
{
    struct declare *d = data;
    GError *e = NULL;
    GBytes *bytes = soup_session_send_and_read_finish(SOUP_SESSION(src), res, &e);
    struct customs *cu = d->cu;
    if (cu) g_hash_table_remove(cu->posts, d);
    if (cu == NULL || cu->stopping) {
        if (bytes) g_bytes_unref(bytes);
        g_clear_error(&e);
        declare_again(d, "stopping");
        return;
    }
    int status = (int)soup_message_get_status(d->msg);
    struct cm_receipt r = {0};
    char *why = NULL;
    if (bytes == NULL)
        why = d->timed_out
                  ? g_strdup_printf("the gateway did not answer within %" G_GINT64_FORMAT " ms",
                                    cu->timeout_ms)
                  : g_strdup_printf("the gateway cannot be reached: %s", e->message);
    else if (status != 200)
        why = g_strdup_printf("the gateway answered HTTP %d", status);
    else {
        gsize n = 0;
        const char *body = g_bytes_get_data(bytes, &n);
        const char *guid = str(json_object_get(d->order, "declaration"), "guid");
        if (cm_customs_receipt_parse(body, n, &r) != SL_OK)
            why = g_strdup("the gateway's answer is not a CEB312Message with an OrderReturn");
        else if (strcmp(r.guid, guid) != 0)
            why = g_strdup("the gateway's answer is about another declaration (guid)");
        else if (receipt_state(&r) == NULL)
            why = g_strdup_printf("the gateway's answer has an unknown returnStatus %s", r.status);
    }
    if (bytes) g_bytes_unref(bytes);
    g_clear_error(&e);
    if (why) {
        gateway_failed(cu, why);
        cm_customs_receipt_clear(&r);
        declare_failed(d, why, TRUE);
        g_free(why);
        return;
    }
    gateway_ok(cu);
    receipt_apply(cu, d->order, &r, 1, after_receipt, d);
    cm_customs_receipt_clear(&r);
}

static gboolean declare_deadline(gpointer data)
{
    struct declare *d = data;
    d->deadline = 0;
    d->timed_out = TRUE;
    g_cancellable_cancel(d->cancel);
    return G_SOURCE_REMOVE;
}

/* The guid is mapped to the order (a receipt may come back before the gateway answers): ask. */
static void declare_send(redisReply *r, const char *err, void *user)
{
    struct declare *d = user;
    if (declare_gone(d, r, err)) return;
    struct customs *cu = d->cu;
    d->cancel = g_cancellable_new();
    d->deadline = g_timeout_add((guint)cu->timeout_ms, declare_deadline, d);
    g_hash_table_add(cu->posts, d);
    soup_session_send_and_read_async(cu->cm->http, d->msg, G_PRIORITY_DEFAULT, d->cancel,
                                     declare_answered, d);
}

/* The product arrived: write the declaration. */
static void declare_build(redisReply *r, const char *err, void *user)
{
    struct declare *d = user;
    if (declare_gone(d, r, err)) return;
    struct customs *cu = d->cu;
    GError *e = NULL;
    json_t *product = cm_doc(r);
    char *xml = declaration_build(cu, d->order, d->pav, product, &e);
    json_decref(product);
    if (xml == NULL) {
        declare_failed(d, e->message, FALSE);
        g_error_free(e);
        return;
    }
    const char *guid = str(json_object_get(d->order, "declaration"), "guid");
    d->msg = soup_message_new("POST", cu->gateway_url);
    SoupMessageHeaders *h = soup_message_get_request_headers(d->msg);
    soup_message_headers_replace(h, "Idempotency-Key", guid);
    soup_message_headers_replace(h, "Accept", "application/xml");
    GBytes *body = g_bytes_new_take(xml, strlen(xml));
    soup_message_set_request_body_from_bytes(d->msg, "application/xml", body);
    g_bytes_unref(body);
    if (sl_redis_command(sl_server_redis(cu->cm->srv), declare_send, d,
                         "HSET " SL_KEY_CUSTOMS_GUIDS " %s %s", guid, d->order_id) != SL_OK)
        declare_again(d, "the store is unreachable");
}

static void declare_pavilion(redisReply *r, const char *err, void *user)
{
    struct declare *d = user;
    if (declare_gone(d, r, err)) return;
    d->pav = cm_doc(r);
    if (sl_redis_command(sl_server_redis(d->cu->cm->srv), declare_build, d, "GET " SL_KEY_PRODUCT,
                         str(d->order, "sku")) != SL_OK)
        declare_again(d, "the store is unreachable");
}

static void declare_order(redisReply *r, const char *err, void *user)
{
    struct declare *d = user;
    if (declare_gone(d, r, err)) return;
    struct customs *cu = d->cu;
    d->order = cm_doc(r);
    json_t *decl = json_object_get(d->order, "declaration");
    const char *state = str(d->order, "state"), *dstate = str(decl, "state");
    if (d->order == NULL || str(decl, "guid") == NULL) {
        g_warning("customs: order %s of the outbox is not stored (or has no declaration guid); "
                  "dropped",
                  d->order_id);
        declare_done(d);
        return;
    }
    /* declared, refused, refunded, or any state after paid: nothing to declare */
    if (g_strcmp0(state, "paid") != 0 || g_strcmp0(dstate, "declared") == 0 ||
        g_strcmp0(dstate, "rejected") == 0) {
        declare_done(d);
        return;
    }
    const char *pav = str(d->order, "pavilion");
    if (pav == NULL || !sl_id_valid(pav, strlen(pav)) || str(d->order, "sku") == NULL) {
        declare_failed(d, "the order has no pavilion or product", FALSE);
        return;
    }
    if (sl_redis_command(sl_server_redis(cu->cm->srv), declare_pavilion, d, "GET " SL_KEY_PAVILION,
                         pav) != SL_OK)
        declare_again(d, "the store is unreachable");
}

/* The outbox's handler: one entry {order, sale}. */
static void declare(cm_job *job, json_t *fields, void *user)
{
    struct customs *cu = user;
    const char *order_id = str(fields, "order");
    char *sale = order_id ? cm_sale_of_ref(order_id) : NULL;
    if (order_id == NULL || sale == NULL || order_id[0] != 'O' ||
        !sl_id_valid(order_id, strlen(order_id))) {
        g_warning("customs: an outbox entry without a valid order id; dropped");
        g_free(sale);
        cm_job_done(job);
        return;
    }
    struct declare *d = g_new0(struct declare, 1);
    d->cu = cu;
    d->job = job;
    d->order_id = g_strdup(order_id);
    d->sale = sale;
    if (cu->stopping) {
        declare_again(d, "stopping");
        return;
    }
    if (sl_redis_command(sl_server_redis(cu->cm->srv), declare_order, d,
                         "HGET " SL_KEY_SALE_ODOCS " %s", sale, order_id) != SL_OK)
        declare_again(d, "the store is unreachable");
}

/* ---- GET /api/v1/orders/{id}/declaration: the XML, for the pavilion's consul ---- */

struct xml_flow {
    struct cm_ctx c;
    json_t *order, *pav; /* owned */
};

static void xml_flow_clear(struct cm_ctx *c)
{
    struct xml_flow *f = CM_FLOW(struct xml_flow, c);
    json_decref(f->order);
    json_decref(f->pav);
}

static void xml_product(struct cm_ctx *c, redisReply *r)
{
    struct xml_flow *f = CM_FLOW(struct xml_flow, c);
    json_t *product = cm_doc(r);
    GError *e = NULL;
    char *xml = declaration_build(c->cm->customs, f->order, f->pav, product, &e);
    json_decref(product);
    if (xml == NULL) {
        cm_error(c, 409, "conflict", "%s", e->message);
        g_error_free(e);
        return;
    }
    sl_http_reply(c->req, 200, "application/xml; charset=utf-8", g_bytes_new_take(xml, strlen(xml)),
                  "cache-control: no-store\r\n");
    cm_ctx_done(c);
}

static void xml_pavilion(struct cm_ctx *c, redisReply *r)
{
    struct xml_flow *f = CM_FLOW(struct xml_flow, c);
    f->pav = cm_doc(r);
    cm_cmd(c, xml_product, "GET " SL_KEY_PRODUCT, str(f->order, "sku"));
}

static void xml_order(struct cm_ctx *c, redisReply *r)
{
    struct xml_flow *f = CM_FLOW(struct xml_flow, c);
    f->order = cm_doc(r);
    if (f->order == NULL) {
        cm_error(c, 404, "not_found", "no order %s", c->id);
        return;
    }
    const char *pav = str(f->order, "pavilion");
    if (!cm_may(c, SL_ROLE_CONSUL, pav)) return;
    if (pav == NULL || str(f->order, "sku") == NULL) {
        cm_error_static(c, 409, "conflict", "the order has no pavilion or product");
        return;
    }
    cm_cmd(c, xml_pavilion, "GET " SL_KEY_PAVILION, pav);
}

static void declaration_get(sl_http_req *req, void *user)
{
    struct xml_flow *f = CM_FLOW_NEW(struct xml_flow, req, user, xml_flow_clear);
    struct cm_ctx *c = &f->c;
    if (!cm_path_id(c, "id") || !cm_auth(c)) return;
    if (c->who.role < SL_ROLE_CONSUL) {
        cm_error_static(c, 403, "forbidden", "this needs the consul role");
        return;
    }
    char *sale = cm_sale_of_ref(c->id);
    if (sale == NULL || c->id[0] != 'O') {
        g_free(sale);
        cm_error(c, 404, "not_found", "no order %s", c->id);
        return;
    }
    cm_cmd(c, xml_order, "HGET " SL_KEY_SALE_ODOCS " %s", sale, c->id);
    g_free(sale);
}

/* ---- POST /api/v1/customs/receipts: the gateway's final receipt, signed ---- */

struct receipt_flow {
    struct cm_ctx c;
    struct cm_receipt r;
    json_t *order; /* owned */
};

static void receipt_flow_clear(struct cm_ctx *c)
{
    struct receipt_flow *f = CM_FLOW(struct receipt_flow, c);
    cm_customs_receipt_clear(&f->r);
    json_decref(f->order);
}

static void receipt_applied(struct commerce *cm, const char *status, json_t *doc, void *user)
{
    struct cm_ctx *c = user;
    if (strcmp(status, "ok") == 0)
        count_outcome(
            cm->customs,
            str(json_object_get(CM_FLOW(struct receipt_flow, c)->order, "declaration"), "state"),
            doc);
    if (strcmp(status, "ok") == 0 || strcmp(status, "conflict") == 0)
        /* conflict: the order had moved on (a receipt seen before, a refund): as it is */
        cm_reply(c, 200,
                 json_pack("{s:s?, s:s?, s:O?}", "order_id", str(doc, "order_id"), "state",
                           str(doc, "state"), "declaration", json_object_get(doc, "declaration")));
    else if (strcmp(status, "not_found") == 0)
        cm_error_static(c, 404, "not_found", "no order has this declaration's guid");
    else
        cm_error_static(c, 503, "unavailable", "the store is unavailable; send it again");
}

static void receipt_order(struct cm_ctx *c, redisReply *r)
{
    struct receipt_flow *f = CM_FLOW(struct receipt_flow, c);
    f->order = cm_doc(r);
    if (f->order == NULL ||
        g_strcmp0(str(json_object_get(f->order, "declaration"), "guid"), f->r.guid) != 0) {
        cm_error_static(c, 404, "not_found", "no order has this declaration's guid");
        return;
    }
    receipt_apply(c->cm->customs, f->order, &f->r, 0, receipt_applied, c);
}

static void receipt_guid(struct cm_ctx *c, redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING || !sl_id_valid(r->str, r->len)) {
        cm_error_static(c, 404, "not_found", "no order has this declaration's guid");
        return;
    }
    char *sale = cm_sale_of_ref(r->str);
    if (sale == NULL) {
        cm_error_static(c, 404, "not_found", "no order has this declaration's guid");
        return;
    }
    cm_cmd(c, receipt_order, "HGET " SL_KEY_SALE_ODOCS " %s", sale, r->str);
    g_free(sale);
}

static gboolean signature_ok(const char *secret, const uint8_t *body, size_t len, const char *given)
{
    if (given == NULL || strlen(given) != 64) return FALSE;
    char *want = g_compute_hmac_for_data(G_CHECKSUM_SHA256, (const guchar *)secret, strlen(secret),
                                         body, len);
    unsigned diff = 0;
    for (size_t i = 0; i < 64; i++)
        diff |= (unsigned)(want[i] ^ g_ascii_tolower(given[i]));
    g_free(want);
    return diff == 0;
}

static void receipt_post(sl_http_req *req, void *user)
{
    struct commerce *cm = user;
    struct customs *cu = cm->customs;
    struct receipt_flow *f = CM_FLOW_NEW(struct receipt_flow, req, cm, receipt_flow_clear);
    struct cm_ctx *c = &f->c;
    if (cu->receipt_secret == NULL) {
        cm_error_static(c, 403, "forbidden",
                        "receipts are not taken: [customs] receipt_secret is not set");
        return;
    }
    size_t len = 0;
    const uint8_t *body = sl_http_req_body(req, &len);
    if (!signature_ok(cu->receipt_secret, body, len,
                      sl_http_req_header(req, "x-silklive-signature"))) {
        cm_error_static(c, 401, "unauthorized",
                        "X-Silklive-Signature must be the hex HMAC-SHA256 of the body");
        return;
    }
    if (cm_customs_receipt_parse((const char *)body, len, &f->r) != SL_OK ||
        receipt_state(&f->r) == NULL) {
        cm_error_static(c, 400, "bad_request",
                        "the body must be a CEB312Message whose OrderReturn has a guid and a "
                        "returnStatus of 1, 2, 3, 100 or 120");
        return;
    }
    cm_cmd(c, receipt_guid, "HGET " SL_KEY_CUSTOMS_GUIDS " %s", f->r.guid);
}

/* ---- GET /api/v1/customs/declarations?state=queued|rejected ---- */

/* queued: the outbox's entries not yet done (pending, then unread), oldest first; rejected: the
 * rejected list, newest first. Each entry's order is read; a consul sees its pavilion's. */
struct list_flow {
    struct cm_ctx c;
    gboolean rejected;
    char last_delivered[48];
    GPtrArray *ids;  /* owned: order ids, in the order shown */
    GPtrArray *docs; /* owned: the orders read, in the order the replies came */
    int waiting;     /* replies of a fan-out still to come */
    gboolean failed; /* one of them failed */
};

static void list_flow_clear(struct cm_ctx *c)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    if (f->ids) g_ptr_array_unref(f->ids);
    if (f->docs) g_ptr_array_unref(f->docs);
}

static json_t *list_item(json_t *order)
{
    json_t *decl = json_object_get(order, "declaration");
    return json_pack(
        "{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "order_id",
        json_object_get(order, "order_id"), "sale", json_object_get(order, "sale"), "pavilion",
        json_object_get(order, "pavilion"), "state", json_object_get(decl, "state"), "guid",
        json_object_get(decl, "guid"), "attempts", json_object_get(decl, "attempts"), "reason",
        json_object_get(decl, "reason"), "updated_at_ms", json_object_get(decl, "updated_at_ms"));
}

static void list_answer(struct cm_ctx *c)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    if (f->failed) {
        cm_error_static(c, 503, "unavailable", "the store is unavailable");
        return;
    }
    json_t *items = json_array();
    for (guint i = 0; i < f->docs->len; i++) {
        json_t *o = f->docs->pdata[i];
        if (o == NULL) continue;
        const char *dstate = str(json_object_get(o, "declaration"), "state");
        gboolean open = g_strcmp0(dstate, "queued") == 0 || g_strcmp0(dstate, "delivered") == 0;
        if (f->rejected ? g_strcmp0(dstate, "rejected") != 0 : !open) continue;
        if (c->who.role != SL_ROLE_ADMIN && g_strcmp0(str(o, "pavilion"), c->who.pav) != 0)
            continue;
        json_array_append_new(items, list_item(o));
    }
    cm_reply(c, 200,
             json_pack("{s:s, s:o}", "state", f->rejected ? "rejected" : "queued", "declarations",
                       items));
}

static void list_order_loaded(redisReply *r, const char *err, void *user)
{
    (void)err;
    struct cm_ctx *c = user;
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) f->failed = TRUE;
    g_ptr_array_add(f->docs, cm_doc(r));
    if (--f->waiting == 0) list_answer(c);
}

/* Read the orders of f->ids (replies come back in the order sent). */
static void list_orders(struct cm_ctx *c)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    f->docs = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref);
    f->waiting = 1; /* held while sending */
    sl_redis *redis = sl_server_redis(c->cm->srv);
    for (guint i = 0; i < f->ids->len; i++) {
        char *sale = cm_sale_of_ref(f->ids->pdata[i]);
        if (sale == NULL) continue;
        f->waiting++;
        if (sl_redis_command(redis, list_order_loaded, c, "HGET " SL_KEY_SALE_ODOCS " %s", sale,
                             (const char *)f->ids->pdata[i]) != SL_OK) {
            f->waiting--;
            f->failed = TRUE;
        }
        g_free(sale);
    }
    if (--f->waiting == 0) list_answer(c);
}

/* An entry [id, [field, value, ...]]: its order id, if it names one. */
static void list_take_entry(struct list_flow *f, redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    redisReply *kv = e->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(kv->element[i]->str, "order") == 0 &&
            kv->element[i + 1]->type == REDIS_REPLY_STRING &&
            sl_id_valid(kv->element[i + 1]->str, kv->element[i + 1]->len) && f->ids->len < LIST_MAX)
            g_ptr_array_add(f->ids, g_strdup(kv->element[i + 1]->str));
}

static void list_unread(struct cm_ctx *c, redisReply *r)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        list_take_entry(f, r->element[i]);
    list_orders(c);
}

static void list_pending_release(struct cm_ctx *c)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    if (--f->waiting > 0) return;
    if (f->failed) {
        cm_error_static(c, 503, "unavailable", "the store is unavailable");
        return;
    }
    if (f->ids->len >= LIST_MAX)
        list_orders(c);
    else
        cm_cmd(c, list_unread, "XRANGE " SL_KEY_CUSTOMS_OUTBOX " (%s + COUNT %u", f->last_delivered,
               LIST_MAX - f->ids->len);
}

static void list_pending_entry(redisReply *r, const char *err, void *user)
{
    (void)err;
    struct cm_ctx *c = user;
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        f->failed = TRUE;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0)
        list_take_entry(f, r->element[0]);
    list_pending_release(c);
}

/* XPENDING's extended form: [[id, consumer, idle, deliveries], ...]; each entry is read. */
static void list_pending(struct cm_ctx *c, redisReply *r)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    f->waiting = 1;
    sl_redis *redis = sl_server_redis(c->cm->srv);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *p = r->element[i];
        if (p->type != REDIS_REPLY_ARRAY || p->elements < 1 ||
            p->element[0]->type != REDIS_REPLY_STRING)
            continue;
        f->waiting++;
        if (sl_redis_command(redis, list_pending_entry, c, "XRANGE " SL_KEY_CUSTOMS_OUTBOX " %s %s",
                             p->element[0]->str, p->element[0]->str) != SL_OK) {
            f->waiting--;
            f->failed = TRUE;
        }
    }
    list_pending_release(c); /* the hold kept while sending */
}

static void list_groups(struct cm_ctx *c, redisReply *r)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    f->last_delivered[0] = '\0';
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *g = r->element[i];
        const char *name = NULL, *last = NULL;
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
            if (g->element[k]->type != REDIS_REPLY_STRING ||
                g->element[k + 1]->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(g->element[k]->str, "name") == 0) name = g->element[k + 1]->str;
            if (strcmp(g->element[k]->str, "last-delivered-id") == 0) last = g->element[k + 1]->str;
        }
        if (name && last && strcmp(name, GROUP) == 0)
            g_strlcpy(f->last_delivered, last, sizeof f->last_delivered);
    }
    if (f->last_delivered[0] == '\0') /* no node has read it yet: every entry is unread */
        cm_cmd(c, list_unread, "XRANGE " SL_KEY_CUSTOMS_OUTBOX " - + COUNT %d", LIST_MAX);
    else
        cm_cmd(c, list_pending, "XPENDING " SL_KEY_CUSTOMS_OUTBOX " " GROUP " - + %d", LIST_MAX);
}

static void list_exists(struct cm_ctx *c, redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        list_orders(c); /* no outbox yet: nothing waits */
    else
        cm_cmd(c, list_groups, "XINFO GROUPS " SL_KEY_CUSTOMS_OUTBOX);
}

static void list_rejected(struct cm_ctx *c, redisReply *r)
{
    struct list_flow *f = CM_FLOW(struct list_flow, c);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            sl_id_valid(r->element[i]->str, r->element[i]->len))
            g_ptr_array_add(f->ids, g_strdup(r->element[i]->str));
    list_orders(c);
}

static void declarations_get(sl_http_req *req, void *user)
{
    struct list_flow *f = CM_FLOW_NEW(struct list_flow, req, user, list_flow_clear);
    struct cm_ctx *c = &f->c;
    f->ids = g_ptr_array_new_with_free_func(g_free);
    if (!cm_auth(c)) return;
    if (c->who.role < SL_ROLE_CONSUL) {
        cm_error_static(c, 403, "forbidden", "this needs the consul role");
        return;
    }
    const char *state = sl_http_req_query(req, "state");
    if (state && strcmp(state, "queued") != 0 && strcmp(state, "rejected") != 0) {
        cm_error_static(c, 400, "bad_request", "state must be queued or rejected");
        return;
    }
    f->rejected = state && strcmp(state, "rejected") == 0;
    if (f->rejected)
        cm_cmd(c, list_rejected, "ZREVRANGE " SL_KEY_CUSTOMS_REJECTED " 0 %d", LIST_MAX - 1);
    else
        cm_cmd(c, list_exists, "EXISTS " SL_KEY_CUSTOMS_OUTBOX);
}

/* ---- life cycle ---- */

static gboolean gauges_copy(gpointer data)
{
    struct customs *cu = data;
    sl_metric_set(cu->m_length, sl_metric_value(cu->src_length));
    sl_metric_set(cu->m_oldest, sl_metric_value(cu->src_oldest));
    return G_SOURCE_CONTINUE;
}

static void customs_metrics(struct customs *cu)
{
    static const char *results[R_COUNT] = {"delivered", "declared", "rejected", "retry"};
    for (int i = 0; i < R_COUNT; i++) {
        char labels[32];
        g_snprintf(labels, sizeof labels, "result=\"%s\"", results[i]);
        cu->m_results[i] = sl_metric_get(
            "silklive_customs_declarations_total", SL_METRIC_COUNTER,
            "Customs declarations by what the gateway said: delivered (accepted, in progress), "
            "declared, rejected, or retry (not delivered this time)",
            labels, 1);
    }
    cu->m_length = sl_metric_get("silklive_customs_queue_length", SL_METRIC_GAUGE,
                                 "Paid orders whose declaration is not final yet", NULL, 1);
    cu->m_oldest = sl_metric_get("silklive_customs_oldest_age_seconds", SL_METRIC_GAUGE,
                                 "Age of the oldest declaration not final yet", NULL, 1);
}

int cm_customs_init(struct commerce *cm, GError **err)
{
    GKeyFile *kf = sl_server_config(cm->srv)->file;
    int64_t timeout_ms = 10000;
    if (sl_config_get_int(sl_server_config(cm->srv), "customs", "timeout_ms", 10000, 100, 30000,
                          &timeout_ms, err) != SL_OK)
        return SL_ERR;
    char *url = g_key_file_get_string(kf, "customs", "gateway_url", NULL);
    if (url) g_strstrip(url);
    if (url && *url) {
        GUri *u = g_uri_parse(url, G_URI_FLAGS_NONE, NULL);
        const char *scheme = u ? g_uri_get_scheme(u) : NULL;
        gboolean ok =
            scheme &&
            (g_ascii_strcasecmp(scheme, "http") == 0 || g_ascii_strcasecmp(scheme, "https") == 0) &&
            g_uri_get_host(u) && *g_uri_get_host(u);
        if (u) g_uri_unref(u);
        if (!ok) {
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                        "[customs] gateway_url must be an http:// or https:// URL, not %s", url);
            g_free(url);
            return SL_ERR;
        }
    } else {
        g_clear_pointer(&url, g_free);
    }
    GError *e = NULL;
    gboolean dev = g_key_file_get_boolean(kf, "customs", "dev", &e);
    if (e) {
        gboolean absent = g_error_matches(e, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND) ||
                          g_error_matches(e, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND);
        if (!absent) {
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[customs] dev: %s", e->message);
            g_error_free(e);
            g_free(url);
            return SL_ERR;
        }
        g_clear_error(&e);
        dev = sl_server_config(cm->srv)->demo;
    }
    /* the demo declares to the stand-in in this process unless a real gateway is set */
    if (dev && url == NULL) url = g_strconcat(cm->self_url, "/api/v1/customs/dev/gateway", NULL);
    struct customs *cu = g_new0(struct customs, 1);
    cu->dev = dev;
    cu->cm = cm;
    cu->gateway_url = url;
    cu->timeout_ms = timeout_ms;
    cu->ebp_code = g_key_file_get_string(kf, "customs", "ebp_code", NULL);
    if (cu->ebp_code == NULL) cu->ebp_code = g_strdup("3120000000");
    cu->ebp_name = g_key_file_get_string(kf, "customs", "ebp_name", NULL);
    if (cu->ebp_name == NULL) cu->ebp_name = g_strdup("silklive");
    cu->receipt_secret = g_key_file_get_string(kf, "customs", "receipt_secret", NULL);
    if (cu->receipt_secret && !*g_strstrip(cu->receipt_secret))
        g_clear_pointer(&cu->receipt_secret, g_free);
    cu->posts = g_hash_table_new(g_direct_hash, g_direct_equal);
    customs_metrics(cu);
    cm->customs = cu;
    sl_http_route(cm->srv, "GET", "/api/v1/customs/declarations", declarations_get, cm);
    sl_http_route(cm->srv, "POST", "/api/v1/customs/receipts", receipt_post, cm);
    sl_http_route(cm->srv, "GET", "/api/v1/orders/{id}/declaration", declaration_get, cm);
    cm_customs_dev_routes(cm);
    return SL_OK;
}

gboolean cm_customs_dev(const struct commerce *cm)
{
    return cm->customs && cm->customs->dev;
}

void cm_customs_start(struct commerce *cm)
{
    struct customs *cu = cm->customs;
    if (cu == NULL || cu->outbox) return;
    /* Without a gateway this node takes no declarations (another node may have one): its
     * outbox only measures the queue. */
    gboolean can = cu->gateway_url && cm->http;
    if (!can)
        g_message("customs: %s: this node declares nothing; paid orders' declarations stay "
                  "queued (GET /api/v1/customs/declarations?state=queued)",
                  cu->gateway_url ? "no HTTP client" : "no [customs] gateway_url");
    cu->outbox = cm_outbox_new(cm, SL_KEY_CUSTOMS_OUTBOX, GROUP, can ? declare : NULL, cu);
    cm_outbox_start(cu->outbox);
    /* the outbox measures its stream (outbox.c); the customs gauges show its figures */
    cu->src_length = sl_metric_get("silklive_outbox_queue_length", SL_METRIC_GAUGE, NULL,
                                   "outbox=\"" GROUP "\"", 1);
    cu->src_oldest = sl_metric_get("silklive_outbox_oldest_age_seconds", SL_METRIC_GAUGE, NULL,
                                   "outbox=\"" GROUP "\"", 1);
    cu->gauge_timer = g_timeout_add(GAUGE_EVERY_MS, gauges_copy, cu);
}

void cm_customs_stop(struct commerce *cm)
{
    struct customs *cu = cm->customs;
    if (cu == NULL || cu->stopping) return;
    cu->stopping = TRUE;
    cm_outbox_stop(cu->outbox);
    if (cu->gauge_timer) g_source_remove(cu->gauge_timer);
    cu->gauge_timer = 0;
    /* POSTs in flight answer (cancelled) while the server drains; their jobs end then */
    GHashTableIter it;
    gpointer d;
    g_hash_table_iter_init(&it, cu->posts);
    while (g_hash_table_iter_next(&it, &d, NULL))
        g_cancellable_cancel(((struct declare *)d)->cancel);
}

void cm_customs_free(struct commerce *cm)
{
    struct customs *cu = cm->customs;
    if (cu == NULL) return;
    cm_customs_stop(cm);
    /* a POST still in flight finds no customs when (if) it answers, and ends its job alone */
    GHashTableIter it;
    gpointer d;
    g_hash_table_iter_init(&it, cu->posts);
    while (g_hash_table_iter_next(&it, &d, NULL))
        ((struct declare *)d)->cu = NULL;
    g_hash_table_unref(cu->posts);
    cm_outbox_free(cu->outbox);
    g_free(cu->gateway_url);
    g_free(cu->ebp_code);
    g_free(cu->ebp_name);
    if (cu->receipt_secret) memset(cu->receipt_secret, 0, strlen(cu->receipt_secret));
    g_free(cu->receipt_secret);
    g_free(cu);
    cm->customs = NULL;
}
