/* Unit tests of WeChat Pay API v3's checks (commerce/wechatpay.c) against a stand-in provider
 * that signs and encrypts as the published protocol says, with keys the test makes: a genuine
 * notification passes; a forged, tampered, stale or re-keyed one does not. */
#include "commerce/internal.h"
#include "harness/harness.h"

#include <check.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <string.h>

#define APIV3_KEY "0123456789abcdefghijklmnopqrstuv" /* 32 ASCII characters */
#define NOW       1796000000

static EVP_PKEY *platform, *merchant, *stranger;

static void keys(void)
{
    if (platform) return;
    platform = EVP_RSA_gen(2048);
    merchant = EVP_RSA_gen(2048);
    stranger = EVP_RSA_gen(2048);
    ck_assert(platform && merchant && stranger);
}

static char *public_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *pem = g_strndup(data, (gsize)n);
    BIO_free(b);
    return pem;
}

static char *rsa_sign_b64(EVP_PKEY *k, const char *msg)
{
    uint8_t sig[512];
    size_t len = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ck_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) == 1);
    ck_assert(EVP_DigestSign(md, sig, &len, (const uint8_t *)msg, strlen(msg)) == 1);
    EVP_MD_CTX_free(md);
    return g_base64_encode(sig, len);
}

/* The provider's side: the transaction encrypted into a notification body. */
static char *provider_body(const char *key, const char *nonce, const char *aad, const char *plain)
{
    size_t n = strlen(plain);
    uint8_t *out = g_malloc(n + 16);
    int len = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    ck_assert(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, (const uint8_t *)key,
                                 (const uint8_t *)nonce) == 1);
    ck_assert(EVP_EncryptUpdate(ctx, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1);
    ck_assert(EVP_EncryptUpdate(ctx, out, &len, (const uint8_t *)plain, (int)n) == 1);
    ck_assert(EVP_EncryptFinal_ex(ctx, out + len, &len) == 1);
    ck_assert(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + n) == 1);
    EVP_CIPHER_CTX_free(ctx);
    char *ct = g_base64_encode(out, n + 16);
    g_free(out);
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s}}", "id",
                  "EV-2018022511223320873", "create_time", "2026-12-03T20:00:00+08:00",
                  "resource_type", "encrypt-resource", "event_type", "TRANSACTION.SUCCESS",
                  "summary", "支付成功", "resource", "original_type", "transaction", "algorithm",
                  "AEAD_AES_256_GCM", "ciphertext", ct, "associated_data", aad, "nonce", nonce);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    g_free(ct);
    return text;
}

static const char transaction[] =
    "{\"mchid\":\"1900000109\",\"appid\":\"wxd678efh567hg6787\",\"out_trade_no\":\"P1a2b3c\","
    "\"transaction_id\":\"4200000848202101120290526543\",\"trade_type\":\"NATIVE\","
    "\"trade_state\":\"SUCCESS\",\"success_time\":\"2026-12-03T20:00:00+08:00\","
    "\"amount\":{\"total\":7810,\"payer_total\":7810,\"currency\":\"CNY\"}}";

START_TEST(genuine_notification_passes)
{
    keys();
    GError *err = NULL;
    char *pem = public_pem(platform);
    EVP_PKEY *pub = cm_wxpay_key_from_pem(pem, FALSE, &err);
    ck_assert_msg(pub != NULL, "%s", err ? err->message : "");
    char *body = provider_body(APIV3_KEY, "fdasflkja484", "transaction", transaction);
    char *msg = g_strdup_printf("%d\n%s\n%s\n", NOW, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", body);
    char *sig = rsa_sign_b64(platform, msg);
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", sig,
                                     body, strlen(body), NOW + 200, &err),
                     SL_OK);
    json_t *note = json_loads(body, 0, NULL);
    json_t *tx = cm_wxpay_open_resource(APIV3_KEY, note, &err);
    ck_assert_msg(tx != NULL, "%s", err ? err->message : "");
    ck_assert_str_eq(json_string_value(json_object_get(tx, "out_trade_no")), "P1a2b3c");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(tx, "amount"), "total")),
                     7810);
    json_decref(tx);
    json_decref(note);
    EVP_PKEY_free(pub);
    g_free(sig);
    g_free(msg);
    g_free(body);
    g_free(pem);
}
END_TEST

START_TEST(forged_tampered_stale_refused)
{
    keys();
    GError *err = NULL;
    char *pem = public_pem(platform);
    EVP_PKEY *pub = cm_wxpay_key_from_pem(pem, FALSE, NULL);
    char *body = provider_body(APIV3_KEY, "fdasflkja484", "transaction", transaction);
    const char *nonce = "n0nce";
    char *msg = g_strdup_printf("%d\n%s\n%s\n", NOW, nonce, body);
    char *good = rsa_sign_b64(platform, msg), *forged = rsa_sign_b64(stranger, msg);
    size_t n = strlen(body);
    /* forged: signed by another key */
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), nonce, forged, body, n, NOW, &err),
                     SL_ERR);
    g_clear_error(&err);
    /* tampered: one byte of the body, or another nonce, or another timestamp */
    char *changed = g_strdup(body);
    changed[n / 2] ^= 1;
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), nonce, good, changed, n, NOW, &err),
                     SL_ERR);
    g_clear_error(&err);
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), "other", good, body, n, NOW, &err),
                     SL_ERR);
    g_clear_error(&err);
    ck_assert_int_eq(cm_wxpay_verify(pub, "1796000001", nonce, good, body, n, NOW, &err), SL_ERR);
    g_clear_error(&err);
    /* stale or from the future: outside five minutes, even when correctly signed */
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), nonce, good, body, n, NOW + 301, &err),
                     SL_ERR);
    ck_assert_ptr_nonnull(strstr(err->message, "window"));
    g_clear_error(&err);
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), nonce, good, body, n, NOW - 301, &err),
                     SL_ERR);
    g_clear_error(&err);
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), nonce, good, body, n, NOW + 300, &err),
                     SL_OK);
    /* missing or malformed headers */
    ck_assert_int_eq(cm_wxpay_verify(pub, NULL, nonce, good, body, n, NOW, &err), SL_ERR);
    g_clear_error(&err);
    ck_assert_int_eq(cm_wxpay_verify(pub, "12x", nonce, good, body, n, NOW, &err), SL_ERR);
    g_clear_error(&err);
    ck_assert_int_eq(cm_wxpay_verify(pub, G_STRINGIFY(NOW), nonce, "%%%", body, n, NOW, &err),
                     SL_ERR);
    g_clear_error(&err);
    /* the resource: another APIv3 key, a changed ciphertext, another algorithm */
    json_t *note = json_loads(body, 0, NULL);
    ck_assert_ptr_null(cm_wxpay_open_resource("vutsrqponmlkjihgfedcba9876543210", note, &err));
    g_clear_error(&err);
    ck_assert_ptr_null(cm_wxpay_open_resource("short", note, &err));
    g_clear_error(&err);
    json_t *res = json_object_get(note, "resource");
    json_object_set_new(res, "associated_data", json_string("refund"));
    ck_assert_ptr_null(cm_wxpay_open_resource(APIV3_KEY, note, &err)); /* aad is authenticated */
    g_clear_error(&err);
    json_object_set_new(res, "algorithm", json_string("AEAD_AES_128_GCM"));
    ck_assert_ptr_null(cm_wxpay_open_resource(APIV3_KEY, note, &err));
    g_clear_error(&err);
    json_decref(note);
    ck_assert_ptr_null(cm_wxpay_open_resource(APIV3_KEY, NULL, &err));
    g_clear_error(&err);
    EVP_PKEY_free(pub);
    g_free(changed);
    g_free(good);
    g_free(forged);
    g_free(msg);
    g_free(body);
    g_free(pem);
}
END_TEST

/* The merchant's request signature, checked as the provider checks it. */
START_TEST(request_authorization)
{
    keys();
    GError *err = NULL;
    const char *body = "{\"appid\":\"wxd678efh567hg6787\",\"amount\":{\"total\":7810}}";
    char *auth =
        cm_wxpay_authorization(merchant, "1900000109", "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
                               "POST", "/v3/pay/transactions/native", body, NOW, &err);
    ck_assert_ptr_nonnull(auth);
    ck_assert(g_str_has_prefix(auth, "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000109\","));
    GHashTable *f = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    gchar **parts = g_strsplit(auth + strlen("WECHATPAY2-SHA256-RSA2048 "), ",", -1);
    for (gchar **p = parts; *p; p++) {
        char *eq = strchr(*p, '=');
        ck_assert(eq && eq[1] == '"' && g_str_has_suffix(eq, "\""));
        g_hash_table_insert(f, g_strndup(*p, (gsize)(eq - *p)),
                            g_strndup(eq + 2, strlen(eq + 2) - 1));
    }
    g_strfreev(parts);
    ck_assert_str_eq(g_hash_table_lookup(f, "timestamp"), G_STRINGIFY(NOW));
    ck_assert_int_eq(strlen(g_hash_table_lookup(f, "nonce_str")), 32);
    char *msg = g_strdup_printf("POST\n/v3/pay/transactions/native\n%d\n%s\n%s\n", NOW,
                                (char *)g_hash_table_lookup(f, "nonce_str"), body);
    gsize sig_len = 0;
    uint8_t *sig = g_base64_decode(g_hash_table_lookup(f, "signature"), &sig_len);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ck_assert(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, merchant) == 1);
    ck_assert_int_eq(EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(md);
    g_free(sig);
    g_free(msg);
    g_hash_table_unref(f);
    g_free(auth);
    ck_assert_ptr_null(cm_wxpay_key_from_pem("-----BEGIN NOTHING-----", TRUE, &err));
    g_clear_error(&err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wechatpay");
    TCase *tc = tcase_create("wechatpay");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, genuine_notification_passes);
    tcase_add_test(tc, forged_tampered_stale_refused);
    tcase_add_test(tc, request_authorization);
    suite_add_tcase(s, tc);
    int rc = harness_run_suite(s);
    EVP_PKEY_free(platform);
    EVP_PKEY_free(merchant);
    EVP_PKEY_free(stranger);
    return rc;
}
