/* commerce internals shared by its files: the module state, the request context that carries one
 * API call through its Redis steps, validators and the key layout. */
#ifndef COMMERCE_INTERNAL_H
#define COMMERCE_INTERNAL_H

#include "commerce.h"
#include "room/room.h"

#include <hiredis/hiredis.h>
#include <libsoup/soup.h>
#include <stddef.h>

struct payments;
struct customs;

/* Keys derived from [commerce] identity_key (64 hex digits): one seals, one references. */
struct cm_identity_key {
    uint8_t seal[32], ref[32];
};

struct commerce {
    sl_server *srv;
    int64_t quota_annual_fen;
    int64_t quota_order_fen;
    char *public_url;      /* owned */
    char *public_rtmp_url; /* owned */
    char *self_url;        /* owned: this node's own HTTP address, for the dev stand-ins' calls */
    sl_script *create, *cas, *reserve, *confirm, *release, *sweep, *control; /* owned */
    sl_script *pay, *paid, *doc_update;                                      /* owned */
    struct cm_identity_key identity;
    SoupSession *http;         /* owned: calls to payment providers and the customs gateway */
    struct payments *payments; /* owned by payments.c */
    struct customs *customs;   /* owned by customs.c */
    GHashTable *watches;       /* sale id -> struct sale_watch*, owned */
    guint sweep_timer;
    int sweeping; /* sweep commands in flight; a new round waits for the last */
    gboolean stopping;
};

/* One API call in flight. Steps are Redis callbacks; any Redis failure answers 503. */
/* One API call carried through its Redis steps. A flow that needs more than the call itself has
 * a record of its own whose member `c` is this context (struct pin_flow { struct cm_ctx c;
 * json_t *product; ... }): CM_FLOW_NEW makes one, CM_FLOW finds it from a step's context, and
 * its clear function frees what the record owns when the call is answered. */
struct cm_ctx;
typedef void (*cm_step)(struct cm_ctx *c, redisReply *r);
struct cm_ctx {
    sl_http_req *req; /* owned reference */
    struct commerce *cm;
    struct sl_claims who; /* valid when authed */
    gboolean authed;
    json_t *body; /* owned */
    char *id;     /* owned: the path id */
    cm_step next;
    void (*clear)(struct cm_ctx *c); /* frees the flow record's fields; NULL for none */
};

struct cm_ctx *cm_ctx_new(sl_http_req *req, struct commerce *cm);
/* A flow record of size bytes whose member `c` comes first. */
struct cm_ctx *cm_ctx_new_flow(sl_http_req *req, struct commerce *cm, size_t size,
                               void (*clear)(struct cm_ctx *c));
#define CM_FLOW(type, ctx) ((type *)(void *)((char *)(ctx)-offsetof(type, c)))
#define CM_FLOW_NEW(type, req, cm, clear)          \
    (G_STATIC_ASSERT_EXPR(offsetof(type, c) == 0), \
     CM_FLOW(type, cm_ctx_new_flow((req), (cm), sizeof(type), (clear))))
void cm_ctx_done(struct cm_ctx *c);
/* Send a command whose reply goes to step; on failure to send, answers 503 and frees c. */
void cm_cmd(struct cm_ctx *c, cm_step step, const char *fmt, ...);
/* argv: the command and its arguments as g_strdup'ed strings. */
void cm_cmd_argv(struct cm_ctx *c, cm_step step, GPtrArray *argv);
void cm_eval(struct cm_ctx *c, cm_step step, const sl_script *s, int nkeys, int argc,
             const char **argv);
/* cm_eval on a given connection (sl_server_redis_orders for confirms). */
void cm_eval_on(struct cm_ctx *c, sl_redis *redis, cm_step step, const sl_script *s, int nkeys,
                int argc, const char **argv);
/* Answer and free c. */
void cm_reply(struct cm_ctx *c, int status, json_t *body);
void cm_error(struct cm_ctx *c, int status, const char *code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* cm_error with a code and message that live as long as the program (literals). */
void cm_error_static(struct cm_ctx *c, int status, const char *code, const char *message);
/* Authenticate (401 and free on failure). */
gboolean cm_auth(struct cm_ctx *c);
/* May the caller act with at least role min for pavilion pav? Else 403 and free. */
gboolean cm_may(struct cm_ctx *c, enum sl_role min, const char *pav);
/* Path parameter that must be an api.md id; else 400 and free. Copies it into c->id. */
gboolean cm_path_id(struct cm_ctx *c, const char *param);
/* Parse the body (400 and free on failure). */
gboolean cm_body(struct cm_ctx *c);
/* A key from one of room/keys.h's formats with one id in it (g_free). */
char *cm_key(const char *fmt, const char *id);
/* A random id with prefix, [A-Za-z0-9], ≥ 96 random bits. */
char *cm_random_id(const char *prefix, int chars);

/* The create script's keys and arguments (create.lua): built in one place for the API and the
 * demo seed. Empty names are skipped by the script. */
struct cm_create_args {
    char *text; /* owned: the document */
    char score[24];
    const char *argv[9];
};
void cm_create_args_build(struct cm_create_args *a, json_t *doc, const char *doc_key,
                          const char *parent, const char *index, const char *index2,
                          const char *member, const char *map_key, const char *map_value);
void cm_create_args_clear(struct cm_create_args *a);

/* ---- validate.c: request bodies (pure; fuzzed) ---- */
/* Each returns a new document (the stored form), or NULL with *err set (SL_ERROR_INVALID). */
json_t *cm_validate_pavilion(json_t *body, GError **err);
json_t *cm_validate_channel(json_t *body, GError **err);
json_t *cm_validate_product(json_t *body, GError **err);
/* Sale fields (channel, sku, quantity, price_cny_fen?, per_user_limit, hold_ttl_s, starts/ends). */
json_t *cm_validate_sale(json_t *body, int64_t now_ms, GError **err);
gboolean cm_valid_country(const char *code);
/* A text field: a JSON string of 1 to max characters (and at most 500), no control characters. */
gboolean cm_valid_text(json_t *v, size_t max);
/* A payment's checkout form: {"buyer": {name, phone}, "consignee": {name, phone, address,
 * district}} or NULL with *err naming the field ("buyer.id_number: ..."). *id_number gets the
 * canonical identity number (g_free, wipe) when the form has one, else NULL. */
json_t *cm_validate_checkout(json_t *body, int today_year, char **id_number, GError **err);

/* ---- catalog.c ---- */
void cm_catalog_routes(struct commerce *cm);
/* Parse a stored JSON document from a bulk reply; NULL for nil or garbage. */
json_t *cm_doc(redisReply *r);

/* ---- sale.c ---- */
void cm_sale_routes(struct commerce *cm);
void cm_sweeper_start(struct commerce *cm);
void cm_sweeper_stop(struct commerce *cm);
/* Emit a sale event ("scheduled", "started", "stock", ...) for a sale, reading its state. */
void cm_sale_event(struct commerce *cm, const char *sale_id, const char *event);
void cm_watch_free(gpointer w);
/* After a sale script: its reply ends with the snapshot (state quantity available held sold ver)
 * at snap_at and an event; tell the room (the event, and stock if it moved). */
void cm_sale_after_script(struct commerce *cm, const char *sale_id, redisReply *r, size_t snap_at,
                          gboolean stock_moved);

/* The sale of a reservation id ("<sale>_<random>"), a payment id ("P<rid>") or an order id
 * ("O<rid>"): g_free, or NULL when the id is none of these. */
char *cm_sale_of_rid(const char *rid);
char *cm_sale_of_ref(const char *payment_or_order_id);
/* The calendar year in China (UTC+8) at now_ms: buyers' quotas count per year. */
int cm_china_year(int64_t now_ms);

/* ---- payments.c: payment intents, providers, notifications, refunds ---- */
int cm_payments_init(struct commerce *cm, GError **err);
void cm_payments_start(struct commerce *cm);
void cm_payments_stop(struct commerce *cm);
void cm_payments_free(struct commerce *cm);
/* Ask the order's provider to refund it (consul's refund); cb(cm, ok, why, user) later. */
typedef void (*cm_refund_cb)(struct commerce *cm, gboolean ok, const char *why, void *user);
void cm_payments_refund(struct commerce *cm, json_t *order, cm_refund_cb cb, void *user);

/* ---- orders.c: the order's life after payment ---- */
void cm_order_routes(struct commerce *cm);
/* The read form of a stored order (new reference): no user, sealed identity or reference;
 * buyer.id_number masked. */
json_t *cm_order_view(json_t *stored);
/* Change a stored order through commerce_doc_update.lua: allowed_from is a comma list of states
 * the order may be in ("" for any), new_state "" keeps it, patch's members replace the order's
 * (stolen; may be NULL). cb gets the stored order after the change, or NULL with status
 * "not_found", "conflict" (it was in another state; doc is then the order as it is) or
 * "unavailable". Every change is also an order event for the pavilion's staff. */
typedef void (*cm_order_cb)(struct commerce *cm, const char *status, json_t *doc, void *user);
void cm_order_update(struct commerce *cm, const char *order_id, const char *allowed_from,
                     const char *new_state, json_t *patch, cm_order_cb cb, void *user);
/* Tell the pavilion's staff (console) that an order changed. */
void cm_order_event(struct commerce *cm, json_t *stored);

/* ---- outbox.c: durable jobs on a Redis stream, at least once, surviving kill -9 ---- */
/* Producers XADD entries (in the Lua script that makes the job's reason true). Each node reads
 * with a consumer group, reclaims entries a dead node left pending, and hands each entry to the
 * handler, which ends it with cm_job_done (XACK) or cm_job_retry (again after a backoff of
 * 1 s, 2 s, 4 s ... 60 s), exactly once, possibly later. */
typedef struct cm_outbox cm_outbox;
typedef struct cm_job cm_job;
typedef void (*cm_job_fn)(cm_job *job, json_t *fields, void *user);
/* stream_key names the stream; name is its consumer group and the metrics' label. fn may be
 * NULL: the node then only measures the queue. The fields are lent to the handler until it
 * calls cm_job_done or cm_job_retry. */
cm_outbox *cm_outbox_new(struct commerce *cm, const char *stream_key, const char *name,
                         cm_job_fn fn, void *user);
void cm_outbox_start(cm_outbox *o);
void cm_outbox_stop(cm_outbox *o);
void cm_outbox_free(cm_outbox *o);
void cm_job_done(cm_job *job);
void cm_job_retry(cm_job *job, const char *why);
int cm_job_attempts(const cm_job *job);

/* ---- customs.c: declarations of paid orders to the customs gateway ---- */
int cm_customs_init(struct commerce *cm, GError **err);
void cm_customs_start(struct commerce *cm);
void cm_customs_stop(struct commerce *cm);
void cm_customs_free(struct commerce *cm);
/* A gateway's CEB312Message receipt: its first OrderReturn. Digit runs in returnInfo are masked
 * (customs may quote an identity number). */
struct cm_receipt {
    char *guid, *status, *info, *time; /* owned */
};
/* SL_OK, or SL_EPROTO for anything else (a DTD included); never reads past len (fuzzed). */
int cm_customs_receipt_parse(const char *body, size_t len, struct cm_receipt *out);
void cm_customs_receipt_clear(struct cm_receipt *r);
/* Customs' XML (libxml2): an element's first child element of that name (any namespace), and
 * its text trimmed, up to max bytes of UTF-8 (g_free), NULL when absent or longer. */
typedef struct _xmlNode *xmlNodePtr;
xmlNodePtr cm_xml_child(xmlNodePtr parent, const char *name);
char *cm_xml_child_text(xmlNodePtr parent, const char *name, size_t max);
/* Is the in-process stand-in gateway on ([customs] dev; with --demo by default)? */
gboolean cm_customs_dev(const struct commerce *cm);
/* customs_dev.c: that stand-in, POST /api/v1/customs/dev/gateway (404 unless it is on). */
void cm_customs_dev_routes(struct commerce *cm);

/* ---- crossborder.c: the cross-border retail import rules (pure; unit-tested) ---- */
/* A PRC resident identity number (GB 11643): 18 characters, a region that does not start with
 * 0, a real birth date from 1900 to today_year, the ISO 7064 MOD 11-2 check character. Returns
 * its canonical form (check 'X' upper case; g_free) or NULL with *err naming what is wrong. */
char *cm_id_number_check(const char *text, int today_year, GError **err);
/* "110***********123X": the first three and last four characters; all '*' for a malformed one. */
#define CM_ID_MASKED_LEN 18
void cm_id_number_mask(const char *id, char out[CM_ID_MASKED_LEN + 1]);
int cm_identity_key_init(struct cm_identity_key *k, const char *hex, GError **err);
/* Sealed at rest: AES-256-GCM with a random nonce, "v1.<base64>" (g_free). */
char *cm_id_number_seal(const struct cm_identity_key *k, const char *id, GError **err);
char *cm_id_number_open(const struct cm_identity_key *k, const char *sealed, GError **err);
/* A stable reference for per-person keys (quotas): HMAC-SHA256, 64 hex digits (g_free). Two
 * accounts of one person get the same reference; Redis never holds the number itself. */
char *cm_id_number_ref(const struct cm_identity_key *k, const char *id);
/* The import tax of an order in fen, 70 % of consumption tax and VAT, rounded half up; -1 when
 * an argument is out of range (goods 0..CM_TAX_GOODS_MAX, VAT 0..10000 bp, consumption
 * 0..9999 bp). */
#define CM_TAX_GOODS_MAX 1000000000000LL
int64_t cm_import_tax_fen(int64_t goods_fen, int vat_bp, int consumption_bp);

/* ---- wechatpay.c: WeChat Pay API v3's signatures and encryption (pure; unit-tested) ---- */
typedef struct evp_pkey_st EVP_PKEY;
/* An RSA key from PEM: a private key, or a public key / platform certificate. */
EVP_PKEY *cm_wxpay_key_from_pem(const char *pem, gboolean private_key, GError **err);
/* The Authorization header of a request to the provider: "WECHATPAY2-SHA256-RSA2048 mchid=...,
 * nonce_str=...,signature=...,timestamp=...,serial_no=..." over "METHOD\nPATH?QUERY\ntimestamp\n
 * nonce\nbody\n" with the merchant's key (g_free). */
char *cm_wxpay_authorization(EVP_PKEY *merchant_key, const char *mchid, const char *serial_no,
                             const char *method, const char *url_path, const char *body,
                             int64_t now_s, GError **err);
/* Base64 RSA-SHA256 (PKCS#1 v1.5) over the lines, each ending in '\n' (g_free). */
char *cm_wxpay_sign(EVP_PKEY *key, const char *const *lines, size_t n, GError **err);
/* 32 random hex digits (g_free). */
char *cm_wxpay_nonce(void);
/* A resource sealed as the provider seals it (AEAD_AES_256_GCM, associated data the
 * original_type): the dev provider's notifications. */
json_t *cm_wxpay_seal_resource(const char *apiv3_key, const char *original_type, const char *plain);
/* A notification is believed only if its Wechatpay-Timestamp is within CM_WXPAY_WINDOW_S of
 * now_s and Wechatpay-Signature verifies over "timestamp\nnonce\nbody\n" with the platform key.
 * The caller also refuses a nonce it has seen within the window (a replay). */
#define CM_WXPAY_WINDOW_S 300
int cm_wxpay_verify(EVP_PKEY *platform_key, const char *timestamp, const char *nonce,
                    const char *signature_b64, const char *body, size_t body_len, int64_t now_s,
                    GError **err);
/* The notification's resource opened with the APIv3 key (32 characters): the transaction
 * document, or NULL with *err (another algorithm, a changed byte, another key). */
#define CM_WXPAY_RESOURCE_MAX 65536
json_t *cm_wxpay_open_resource(const char *apiv3_key, json_t *notification, GError **err);

/* ---- declaration.c: the customs order declaration (pure; unit-tested) ---- */
struct cm_declaration_line {
    const char *item_no, *item_name, *unit, *country; /* unit and country: customs' codes */
    int64_t qty, price_fen;
};
struct cm_declaration {
    const char *guid, *order_no, *ebp_code, *ebp_name, *ebc_code, *ebc_name;
    int64_t app_time_ms;
    int64_t goods_fen, freight_fen, discount_fen, tax_fen;
    const char *buyer_reg_no, *buyer_name, *buyer_phone, *buyer_id_number;
    const char *pay_code, *pay_name, *pay_transaction_id;
    const char *consignee, *consignee_phone, *consignee_address, *consignee_district;
    const struct cm_declaration_line *lines;
    size_t n_lines;
};
/* The CEB311Message of a paid order (g_free), or NULL with *err when its lines do not add up
 * to goods_fen, an amount is negative or the discount exceeds what is paid, or a text is not
 * UTF-8 or holds a control character. */
char *cm_declaration_xml(const struct cm_declaration *d, GError **err);

#endif
