/* module: commerce's life cycle (config, scripts, routes, sweeper, demo seed) and the request
 * context that walks one API call through its Redis steps. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* ---- request context ---- */

struct cm_ctx *cm_ctx_new_flow(sl_http_req *req, struct commerce *cm, size_t size,
                               void (*clear)(struct cm_ctx *c))
{
    /* every flow record starts with its context, so one allocation and one free serve both */
    struct cm_ctx *c = g_malloc0(size);
    c->req = sl_http_req_ref(req);
    c->cm = cm;
    c->clear = clear;
    return c;
}

struct cm_ctx *cm_ctx_new(sl_http_req *req, struct commerce *cm)
{
    return cm_ctx_new_flow(req, cm, sizeof(struct cm_ctx), NULL);
}

void cm_ctx_done(struct cm_ctx *c)
{
    if (c->clear) c->clear(c);
    sl_http_req_unref(c->req);
    json_decref(c->body);
    g_free(c->id);
    g_free(c);
}

void cm_reply(struct cm_ctx *c, int status, json_t *body)
{
    sl_http_reply_json(c->req, status, body);
    cm_ctx_done(c);
}

void cm_error(struct cm_ctx *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    sl_http_reply_error_msg(c->req, status, code, msg);
    g_free(msg);
    cm_ctx_done(c);
}

void cm_error_static(struct cm_ctx *c, int status, const char *code, const char *message)
{
    sl_http_reply_error_static(c->req, status, code, message);
    cm_ctx_done(c);
}

static sl_metric *metric_redis_failures(void)
{
    static sl_metric *m;
    if (m == NULL)
        m = sl_metric_get("silklive_commerce_unavailable_total", SL_METRIC_COUNTER,
                          "API calls answered 503 because Redis failed or was unreachable", NULL,
                          1);
    return m;
}

static void step_trampoline(redisReply *r, const char *err, void *user)
{
    struct cm_ctx *c = user;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        sl_metric_add(metric_redis_failures(), 1);
        if (r)
            g_warning("%s %s: redis refused: %s", sl_http_req_method(c->req),
                      sl_http_req_path(c->req), r->str);
        cm_error(c, 503, "unavailable", "the store is unavailable (%s); nothing was changed",
                 r ? "refused" : err);
        return;
    }
    c->next(c, r);
}

void cm_cmd(struct cm_ctx *c, cm_step step, const char *fmt, ...)
{
    c->next = step;
    va_list ap;
    va_start(ap, fmt);
    int rc = sl_redis_vcommand(sl_server_redis(c->cm->srv), step_trampoline, c, fmt, ap);
    va_end(ap);
    if (rc != SL_OK) {
        sl_metric_add(metric_redis_failures(), 1);
        cm_error(c, 503, "unavailable", "the store is unavailable; nothing was changed");
    }
}

void cm_cmd_argv(struct cm_ctx *c, cm_step step, GPtrArray *argv)
{
    c->next = step;
    if (sl_redis_command_argv(sl_server_redis(c->cm->srv), step_trampoline, c, (int)argv->len,
                              (const char **)argv->pdata, NULL) != SL_OK) {
        sl_metric_add(metric_redis_failures(), 1);
        cm_error(c, 503, "unavailable", "the store is unavailable; nothing was changed");
    }
}

void cm_eval_on(struct cm_ctx *c, sl_redis *redis, cm_step step, const sl_script *s, int nkeys,
                int argc, const char **argv)
{
    c->next = step;
    if (sl_redis_eval(redis, s, step_trampoline, c, nkeys, argc, argv, NULL) != SL_OK) {
        sl_metric_add(metric_redis_failures(), 1);
        cm_error(c, 503, "unavailable", "the store is unavailable; nothing was changed");
    }
}

void cm_eval(struct cm_ctx *c, cm_step step, const sl_script *s, int nkeys, int argc,
             const char **argv)
{
    cm_eval_on(c, sl_server_redis(c->cm->srv), step, s, nkeys, argc, argv);
}

gboolean cm_auth(struct cm_ctx *c)
{
    const struct sl_claims *who = sl_http_req_auth(c->req);
    if (who == NULL) {
        cm_ctx_done(c); /* 401 already answered */
        return FALSE;
    }
    c->who = *who;
    c->authed = TRUE;
    return TRUE;
}

gboolean cm_may(struct cm_ctx *c, enum sl_role min, const char *pav)
{
    if (c->who.role == SL_ROLE_ADMIN) return TRUE;
    if (min == SL_ROLE_ADMIN || c->who.role < min) {
        cm_error(c, 403, "forbidden", "this needs the %s role", sl_role_name(min));
        return FALSE;
    }
    if (min >= SL_ROLE_HOST && (pav == NULL || strcmp(c->who.pav, pav) != 0)) {
        cm_error(c, 403, "forbidden", "your token acts for pavilion %s, not %s", c->who.pav,
                 pav ? pav : "?");
        return FALSE;
    }
    return TRUE;
}

gboolean cm_path_id(struct cm_ctx *c, const char *param)
{
    const char *v = sl_http_req_param(c->req, param);
    if (v == NULL || !sl_id_valid(v, strlen(v))) {
        cm_error(c, 400, "bad_request", "%s must match [A-Za-z0-9_-]{1,64}", param);
        return FALSE;
    }
    c->id = g_strdup(v);
    return TRUE;
}

gboolean cm_body(struct cm_ctx *c)
{
    c->body = sl_http_req_json(c->req);
    if (c->body == NULL) {
        cm_ctx_done(c); /* 400 already answered */
        return FALSE;
    }
    return TRUE;
}

char *cm_key(const char *fmt, const char *id)
{
    /* Joined by hand: a reservation builds seven keys, and printf's machinery for them was a
     * larger share of the request than the joining itself. */
    const char *at = strstr(fmt, "%s");
    g_assert(at != NULL && memchr(fmt, '%', (size_t)(at - fmt)) == NULL &&
             strchr(at + 2, '%') == NULL);
    size_t head = (size_t)(at - fmt), id_len = strlen(id), tail = strlen(at + 2);
    char *key = g_malloc(head + id_len + tail + 1);
    memcpy(key, fmt, head);
    memcpy(key + head, id, id_len);
    memcpy(key + head + id_len, at + 2, tail + 1);
    return key;
}

/* Bytes from the kernel's CSPRNG, fetched 512 at a time: one getrandom() per id was a syscall
 * on every reservation. Per thread, so no lock. */
static guint8 random_byte(void)
{
    static _Thread_local guint8 pool[512];
    static _Thread_local size_t left;
    if (left == 0) {
        if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool) g_error("getrandom failed");
        left = sizeof pool;
    }
    guint8 b = pool[--left];
    pool[left] = 0; /* a byte handed out is not kept */
    return b;
}

char *cm_random_id(const char *prefix, int chars)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    GString *s = g_string_sized_new(strlen(prefix) + (size_t)chars);
    g_string_append(s, prefix);
    /* 62 symbols from a byte: reject 248..255 so every symbol is equally likely */
    for (int i = 0; i < chars;) {
        guint8 b = random_byte();
        if (b < 248) {
            g_string_append_c(s, alphabet[b % 62]);
            i++;
        }
    }
    return g_string_free(s, FALSE);
}

/* ---- life cycle ---- */

static struct commerce *commerce_of(sl_server *srv)
{
    return sl_server_module_data(srv, SL_MODULE_COMMERCE);
}

static int commerce_init(sl_server *srv, GError **err)
{
    const struct sl_config *cfg = sl_server_config(srv);
    struct commerce *cm = g_new0(struct commerce, 1);
    cm->srv = srv;
    if (sl_config_get_int(cfg, "commerce", "quota_annual_fen", 2600000, 0, G_MAXINT64,
                          &cm->quota_annual_fen, err) != SL_OK ||
        sl_config_get_int(cfg, "commerce", "quota_order_fen", 500000, 0, G_MAXINT64,
                          &cm->quota_order_fen, err) != SL_OK) {
        g_free(cm);
        return SL_ERR;
    }
    cm->public_url = g_key_file_get_string(cfg->file, "commerce", "public_url", NULL);
    if (cm->public_url == NULL)
        cm->public_url = g_strdup_printf("http://%s:%d", cfg->listen_host, cfg->listen_port);
    /* the dev stand-ins call this node itself: its listening address, the loopback for "any" */
    const char *host = cfg->listen_host;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0) host = "127.0.0.1";
    if (strcmp(host, "::") == 0) host = "::1";
    cm->self_url = strchr(host, ':') ? g_strdup_printf("http://[%s]:%d", host, cfg->listen_port)
                                     : g_strdup_printf("http://%s:%d", host, cfg->listen_port);
    cm->public_rtmp_url = g_key_file_get_string(cfg->file, "commerce", "public_rtmp_url", NULL);
    if (cm->public_rtmp_url == NULL)
        cm->public_rtmp_url = g_strdup_printf("rtmp://%s:%d/live", cfg->rtmp_host, cfg->rtmp_port);
    /* Identity numbers are sealed with [commerce] identity_key; without one, with a key derived
     * from the auth secret (so a change of secret makes stored identities unreadable: set the
     * key in production). */
    char *ikey = g_key_file_get_string(cfg->file, "commerce", "identity_key", NULL);
    if (ikey == NULL) {
        char *seed = g_strconcat("silklive identity key:", cfg->secret ? cfg->secret : "", NULL);
        ikey = g_compute_checksum_for_string(G_CHECKSUM_SHA256, seed, -1);
        memset(seed, 0, strlen(seed));
        g_free(seed);
    }
    GError *kerr = NULL;
    int kok = cm_identity_key_init(&cm->identity, g_strstrip(ikey), &kerr);
    memset(ikey, 0, strlen(ikey));
    g_free(ikey);
    if (kok != SL_OK) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[commerce] identity_key: %s", kerr->message);
        g_error_free(kerr);
        g_free(cm->public_url);
        g_free(cm->public_rtmp_url);
        g_free(cm->self_url);
        g_free(cm);
        return SL_ERR;
    }
    /* a stalled peer ends a call after 30 s at most; callers keep shorter deadlines of their
     * own ([customs] timeout_ms) */
    /* up to 32 calls in flight to one provider: libsoup's default of 2 queued a flash sale's
     * payment intents behind each other (bench/payments: p50 160 ms -> 114 ms) */
    cm->http =
        soup_session_new_with_options("timeout", 30, "idle-timeout", 60, "user-agent", "silklive/1",
                                      "max-conns-per-host", 32, "max-conns", 64, NULL);
    cm->create = sl_script_new(sl_lua_commerce_create);
    cm->cas = sl_script_new(sl_lua_commerce_cas);
    cm->reserve = sl_script_new(sl_lua_commerce_reserve);
    cm->confirm = sl_script_new(sl_lua_commerce_confirm);
    cm->release = sl_script_new(sl_lua_commerce_release);
    cm->sweep = sl_script_new(sl_lua_commerce_sweep);
    cm->control = sl_script_new(sl_lua_commerce_control);
    cm->pay = sl_script_new(sl_lua_commerce_pay);
    cm->paid = sl_script_new(sl_lua_commerce_paid);
    cm->doc_update = sl_script_new(sl_lua_commerce_doc_update);
    cm->watches = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, cm_watch_free);
    sl_server_set_module_data(srv, SL_MODULE_COMMERCE, cm);
    cm_catalog_routes(cm);
    cm_sale_routes(cm);
    cm_order_routes(cm);
    if (cm_payments_init(cm, err) != SL_OK || cm_customs_init(cm, err) != SL_OK) return SL_ERR;
    return SL_OK;
}

/* ---- demo seed (--demo) ---- */

/* Seeding runs in phases, each a batch of commands: the catalog (idempotent creates), then the
 * demo channel's sales, then their states, then a sale only if none is scheduled or live (so
 * every start of the demo has one counting down or on), then the printout. */
struct demo {
    struct commerce *cm;
    int phase;
    int pending;
    GPtrArray *sale_ids; /* owned: the demo channel's sales */
    int open_sales;      /* of them, scheduled or active */
    char *stream_key;
    char *sale_id;
};

static void demo_next(struct demo *d);

static void demo_reply(redisReply *r, const char *err, void *user)
{
    struct demo *d = user;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        g_warning("demo seed: %s", r ? r->str : err);
    } else if (d->phase == 1 && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                g_ptr_array_add(d->sale_ids, g_strdup(r->element[i]->str));
    } else if (d->phase == 2 && r->type == REDIS_REPLY_STRING) {
        if (strcmp(r->str, "scheduled") == 0 || strcmp(r->str, "active") == 0) d->open_sales++;
    } else if (d->phase == 1 && r->type == REDIS_REPLY_STRING) {
        json_t *doc = json_loadb(r->str, r->len, 0, NULL);
        d->stream_key = g_strdup(json_string_value(json_object_get(doc, "stream_key")));
        json_decref(doc);
    }
    if (--d->pending == 0) demo_next(d);
}

static void demo_send(struct demo *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    d->pending++;
    if (sl_redis_vcommand(sl_server_redis(d->cm->srv), demo_reply, d, fmt, ap) != SL_OK)
        d->pending--;
    va_end(ap);
}

static void demo_create(struct demo *d, const char *doc_key, const char *parent, const char *index,
                        const char *index2, json_t *doc, const char *member, const char *map_key,
                        const char *map_value)
{
    struct cm_create_args a;
    cm_create_args_build(&a, doc, doc_key, parent, index, index2, member, map_key, map_value);
    d->pending++;
    if (sl_redis_eval(sl_server_redis(d->cm->srv), d->cm->create, demo_reply, d, 5, 9, a.argv,
                      NULL) != SL_OK)
        d->pending--;
    cm_create_args_clear(&a);
    json_decref(doc);
}

static void demo_catalog(struct demo *d)
{
    int64_t now = sl_now_ms();
    demo_create(d, "sl:{cat}:pav:CL", NULL, SL_KEY_PAVILIONS, NULL,
                json_pack("{s:s, s:{s:s, s:s, s:s}, s:s, s:[s,s,s], s:s, s:s, s:I}", "code", "CL",
                          "name", "en", "Chile", "zh", "智利", "es", "Chile", "currency", "CLP",
                          "languages", "es", "en", "zh", "ebc_code", "3120960001", "ebc_name",
                          "智利馆跨境电商（演示）有限公司", "created_at_ms", (json_int_t)now),
                "CL", NULL, NULL);
    char *key = cm_random_id("sk_", 40);
    char *map = g_strdup_printf(SL_KEY_STREAMKEY, key);
    demo_create(d, "sl:{cat}:chan:cl-wine", "sl:{cat}:pav:CL", SL_KEY_CHANNELS,
                "sl:{cat}:pav:CL:chans",
                json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:I}", "id", "cl-wine", "pavilion", "CL",
                          "title", "en", "Wines of the Andes, live from the Chile pavilion", "zh",
                          "安第斯山脉的葡萄酒：智利馆直播", "stream_key", key, "created_at_ms",
                          (json_int_t)now),
                "cl-wine", map, "cl-wine");
    g_free(key);
    g_free(map);
    /* the import rules' rates: wine pays 10 % consumption tax, farm produce 9 % VAT */
    static const struct {
        const char *sku, *en, *zh, *loc, *unit;
        int clp, fen, vat_bp, consumption_bp, freight_fen;
    } products[] = {
        {"cl-wine-001", "Carmenere Reserva 2021, 750 ml", "佳美娜珍藏干红 2021，750毫升",
         "bonded_sh", "011", 12990, 9900, 1300, 1000, 0},
        {"cl-cherry-002", "Fresh Bing cherries, 2.5 kg", "新鲜宾莹车厘子 2.5公斤", "direct_mail",
         "011", 24990, 16800, 900, 0, 1500},
        {"cl-honey-003", "Ulmo honey, 500 g", "乌尔莫蜂蜜 500克", "overseas", "011", 8990, 6800,
         900, 0, 1000},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(products); i++) {
        char *pk = g_strdup_printf(SL_KEY_PRODUCT, products[i].sku);
        demo_create(
            d, pk, "sl:{cat}:pav:CL", "sl:{cat}:pav:CL:products", NULL,
            json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:i, s:s}, s:i, s:s, s:o, s:i, s:i, "
                      "s:i, s:s, s:s, s:I}",
                      "sku", products[i].sku, "pavilion", "CL", "title", "en", products[i].en, "zh",
                      products[i].zh, "price", "amount_minor", products[i].clp, "currency", "CLP",
                      "price_cny_fen", products[i].fen, "stock_location", products[i].loc,
                      "image_url", json_sprintf("/img/demo/%s.svg", products[i].sku), "vat_rate_bp",
                      products[i].vat_bp, "consumption_tax_rate_bp", products[i].consumption_bp,
                      "freight_cny_fen", products[i].freight_fen, "customs_unit", products[i].unit,
                      "origin_country_code", "412", "created_at_ms", (json_int_t)now),
            products[i].sku, NULL, NULL);
        g_free(pk);
    }
}

/* Two minutes to its start, half an hour on: a demo started later gets a sale of its own. */
#define DEMO_SALE_IN_MS  (2 * 60 * 1000)
#define DEMO_SALE_FOR_MS (30 * 60 * 1000)

static void demo_sale(struct demo *d)
{
    int64_t now = sl_now_ms();
    d->sale_id = cm_random_id("S", 15);
    demo_send(d,
              "HSET " SL_KEY_SALE_INV " id %s channel cl-wine sku cl-wine-001 pavilion CL "
              "state scheduled quantity 500 available 500 held 0 sold 0 ver 0 per_user_limit 2 "
              "price_cny_fen 6900 hold_ttl_ms 300000 starts_at_ms %lld ends_at_ms %lld "
              "created_at_ms %lld",
              d->sale_id, d->sale_id, (long long)(now + DEMO_SALE_IN_MS),
              (long long)(now + DEMO_SALE_IN_MS + DEMO_SALE_FOR_MS), (long long)now);
    demo_send(d, "ZADD " SL_KEY_CHAN_SALES " %lld %s", "cl-wine", (long long)now, d->sale_id);
    demo_send(d, "SADD " SL_KEY_SALES_OPEN " %s", d->sale_id);
}

static char *demo_token(const struct sl_config *cfg, enum sl_role role, const char *sub,
                        const char *name, const char *pav)
{
    struct sl_claims claims = {.role = role, .exp = sl_now_ms() / 1000 + 7 * 86400};
    g_strlcpy(claims.sub, sub, sizeof claims.sub);
    g_strlcpy(claims.name, name, sizeof claims.name);
    g_strlcpy(claims.pav, pav, sizeof claims.pav);
    return sl_token_sign(cfg->secret, &claims);
}

static void demo_print(struct demo *d)
{
    const struct sl_config *cfg = sl_server_config(d->cm->srv);
    char *consul = demo_token(cfg, SL_ROLE_CONSUL, "demo-consul", "Demo consul (Chile)", "CL");
    char *viewer = demo_token(cfg, SL_ROLE_VIEWER, "demo-viewer", "Demo viewer", "");
    const char *url = d->cm->public_url;
    gboolean pattern = (cfg->modules & SL_MODULE_INGEST) != 0;
    printf("\nsilklive demo: pavilion CL (Chile), channel cl-wine, 3 products%s\n"
           "%s"
           "  watch:          %s/c/cl-wine\n"
           "  watch, signed in to chat and buy:\n"
           "                  %s/c/cl-wine#token=%s\n"
           "  consul console: %s/console#token=%s\n"
           "  go live:        ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i "
           "sine=frequency=440 -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv %s/%s\n"
           "%s"
           "  the API:        %s/api/v1/channels/cl-wine\n"
           "  more tokens:    silklive token --role viewer --sub alice --data-dir %s\n\n",
           d->sale_id ? ", a flash sale starting in 2 minutes" : "",
           pattern
               ? "  live now:       a test pattern with a clock, from this server's own encoder\n"
               : "",
           url, url, viewer, url, consul, d->cm->public_rtmp_url,
           d->stream_key ? d->stream_key : "<stream key>",
           pattern ? "                  (your encoder takes over from the test pattern, which "
                     "comes back when you stop)\n"
                   : "",
           url, cfg->data_dir);
    fflush(stdout);
    g_free(consul);
    g_free(viewer);
}

static void demo_next(struct demo *d)
{
    d->phase++;
    if (d->phase == 1) {
        demo_send(d, "ZRANGE " SL_KEY_CHAN_SALES " 0 -1", SL_DEMO_CHANNEL);
        demo_send(d, "GET " SL_KEY_CHANNEL, SL_DEMO_CHANNEL);
    } else if (d->phase == 2) {
        for (guint i = 0; i < d->sale_ids->len; i++)
            demo_send(d, "HGET " SL_KEY_SALE_INV " state", (const char *)d->sale_ids->pdata[i]);
    } else if (d->phase == 3 && d->open_sales == 0) {
        demo_sale(d);
    }
    if (d->pending > 0) return;
    if (d->phase < 4) {
        demo_next(d);
        return;
    }
    demo_print(d);
    g_ptr_array_unref(d->sale_ids);
    g_free(d->stream_key);
    g_free(d->sale_id);
    g_free(d);
}

static void demo_seed(struct commerce *cm)
{
    struct demo *d = g_new0(struct demo, 1);
    d->sale_ids = g_ptr_array_new_with_free_func(g_free);
    d->cm = cm;
    d->pending = 1; /* held while phase 0 is being sent */
    demo_catalog(d);
    if (--d->pending == 0) demo_next(d);
}

static int commerce_start(sl_server *srv, GError **err)
{
    struct commerce *cm = commerce_of(srv);
    cm_sweeper_start(cm);
    cm_payments_start(cm);
    cm_customs_start(cm);
    if (sl_server_config(srv)->demo) demo_seed(cm);
    return SL_OK;
}

static void commerce_stop(sl_server *srv)
{
    struct commerce *cm = commerce_of(srv);
    cm->stopping = TRUE;
    cm_sweeper_stop(cm);
    cm_payments_stop(cm);
    cm_customs_stop(cm);
}

static gboolean commerce_ready(sl_server *srv)
{
    return sl_redis_connected(sl_server_redis(srv));
}

static void commerce_destroy(sl_server *srv)
{
    struct commerce *cm = commerce_of(srv);
    if (cm == NULL) return;
    cm_sweeper_stop(cm);
    cm_customs_free(cm);
    cm_payments_free(cm);
    if (cm->http) {
        soup_session_abort(cm->http);
        g_object_unref(cm->http);
    }
    memset(&cm->identity, 0, sizeof cm->identity);
    g_hash_table_unref(cm->watches);
    sl_script_free(cm->create);
    sl_script_free(cm->cas);
    sl_script_free(cm->reserve);
    sl_script_free(cm->confirm);
    sl_script_free(cm->release);
    sl_script_free(cm->sweep);
    sl_script_free(cm->control);
    sl_script_free(cm->pay);
    sl_script_free(cm->paid);
    sl_script_free(cm->doc_update);
    g_free(cm->public_url);
    g_free(cm->public_rtmp_url);
    g_free(cm->self_url);
    g_free(cm);
    sl_server_set_module_data(srv, SL_MODULE_COMMERCE, NULL);
}

const struct sl_module commerce_module = {
    .name = "commerce",
    .mask = SL_MODULE_COMMERCE,
    .init = commerce_init,
    .start = commerce_start,
    .stop = commerce_stop,
    .ready = commerce_ready,
    .destroy = commerce_destroy,
};
