/* wechatpay: WeChat Pay API v3 as its published protocol defines it, without I/O: the
 * Authorization a merchant's request carries (WECHATPAY2-SHA256-RSA2048), and the checks a
 * notification must pass before anything believes it: the timestamp window, the platform's
 * RSA-SHA256 signature over "timestamp\nnonce\nbody\n", then the AEAD_AES_256_GCM resource
 * opened with the APIv3 key. */
#include "internal.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <string.h>

#define GCM_TAG_LEN 16

static char *signed_message(const char *const *lines, size_t n)
{
    GString *m = g_string_new(NULL);
    for (size_t i = 0; i < n; i++) {
        g_string_append(m, lines[i]);
        g_string_append_c(m, '\n');
    }
    return g_string_free(m, FALSE);
}

EVP_PKEY *cm_wxpay_key_from_pem(const char *pem, gboolean private_key, GError **err)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = NULL;
    if (bio && private_key) k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (bio && !private_key) {
        k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        if (k == NULL) { /* a platform certificate instead of its bare public key */
            BIO_free(bio);
            bio = BIO_new_mem_buf(pem, -1);
            X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
            if (cert) k = X509_get_pubkey(cert);
            X509_free(cert);
        }
    }
    BIO_free(bio);
    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "not an RSA %s key in PEM form",
                    private_key ? "private" : "public");
        return NULL;
    }
    return k;
}

char *cm_wxpay_sign(EVP_PKEY *key, const char *const *lines, size_t n, GError **err)
{
    char *msg = signed_message(lines, n);
    uint8_t sig[512];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(md);
    g_free(msg);
    if (!ok) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_IO, "cannot sign with this key");
        return NULL;
    }
    return g_base64_encode(sig, sig_len);
}

char *cm_wxpay_nonce(void)
{
    uint8_t raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) g_error("no randomness for a nonce");
    char *nonce = g_malloc(33);
    for (size_t i = 0; i < sizeof raw; i++)
        g_snprintf(nonce + 2 * i, 3, "%02X", raw[i]);
    return nonce;
}

char *cm_wxpay_authorization(EVP_PKEY *merchant_key, const char *mchid, const char *serial_no,
                             const char *method, const char *url_path, const char *body,
                             int64_t now_s, GError **err)
{
    char ts[24];
    char *nonce = cm_wxpay_nonce();
    g_snprintf(ts, sizeof ts, "%lld", (long long)now_s);
    const char *lines[] = {method, url_path, ts, nonce, body ? body : ""};
    char *b64 = cm_wxpay_sign(merchant_key, lines, G_N_ELEMENTS(lines), err);
    char *header = b64 ? g_strdup_printf("WECHATPAY2-SHA256-RSA2048 mchid=\"%s\",nonce_str=\"%s\","
                                         "signature=\"%s\",timestamp=\"%s\",serial_no=\"%s\"",
                                         mchid, nonce, b64, ts, serial_no)
                       : NULL;
    g_free(b64);
    g_free(nonce);
    return header;
}

int cm_wxpay_verify(EVP_PKEY *platform_key, const char *timestamp, const char *nonce,
                    const char *signature_b64, const char *body, size_t body_len, int64_t now_s,
                    GError **err)
{
    if (timestamp == NULL || nonce == NULL || signature_b64 == NULL || *nonce == '\0' ||
        strlen(nonce) > 64) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "missing Wechatpay-Timestamp, -Nonce or -Signature");
        return SL_ERR;
    }
    char *end = NULL;
    gint64 ts = g_ascii_strtoll(timestamp, &end, 10);
    if (end == timestamp || *end != '\0' || ts < now_s - CM_WXPAY_WINDOW_S ||
        ts > now_s + CM_WXPAY_WINDOW_S) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "Wechatpay-Timestamp is outside the five-minute window");
        return SL_ERR;
    }
    gsize sig_len = 0;
    uint8_t *sig = g_base64_decode(signature_b64, &sig_len);
    GString *msg = g_string_new(timestamp);
    g_string_append_c(msg, '\n');
    g_string_append(msg, nonce);
    g_string_append_c(msg, '\n');
    g_string_append_len(msg, body, (gssize)body_len);
    g_string_append_c(msg, '\n');
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && sig_len > 0 &&
             EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, platform_key) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)msg->str, msg->len) == 1;
    EVP_MD_CTX_free(md);
    g_string_free(msg, TRUE);
    g_free(sig);
    if (!ok) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "the notification's signature does not verify");
        return SL_ERR;
    }
    return SL_OK;
}

/* AEAD_AES_256_GCM: the APIv3 key (32 ASCII bytes), the resource's nonce and associated data
 * as their bytes, and the base64 ciphertext with the 16-byte tag at its end. */
json_t *cm_wxpay_open_resource(const char *apiv3_key, json_t *notification, GError **err)
{
    json_t *res = json_object_get(notification, "resource");
    const char *alg = json_string_value(json_object_get(res, "algorithm"));
    const char *ct = json_string_value(json_object_get(res, "ciphertext"));
    const char *nonce = json_string_value(json_object_get(res, "nonce"));
    json_t *aad_v = json_object_get(res, "associated_data");
    const char *aad = json_is_string(aad_v) ? json_string_value(aad_v) : "";
    if (apiv3_key == NULL || strlen(apiv3_key) != 32 || alg == NULL ||
        strcmp(alg, "AEAD_AES_256_GCM") != 0 || ct == NULL || nonce == NULL ||
        strlen(nonce) != 12 || (aad_v && !json_is_string(aad_v) && !json_is_null(aad_v))) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "the notification has no AEAD_AES_256_GCM resource to open");
        return NULL;
    }
    gsize n = 0;
    uint8_t *buf = g_base64_decode(ct, &n);
    if (n <= GCM_TAG_LEN || n > CM_WXPAY_RESOURCE_MAX) {
        g_free(buf);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "the resource's ciphertext is empty");
        return NULL;
    }
    size_t plain_len = n - GCM_TAG_LEN;
    char *plain = g_malloc0(plain_len + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    int ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
             EVP_DecryptInit_ex(ctx, NULL, NULL, (const uint8_t *)apiv3_key,
                                (const uint8_t *)nonce) == 1 &&
             EVP_DecryptUpdate(ctx, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
             EVP_DecryptUpdate(ctx, (uint8_t *)plain, &len, buf, (int)plain_len) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, buf + plain_len) == 1 &&
             EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + len, &len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    g_free(buf);
    json_t *doc = ok ? json_loadb(plain, plain_len, 0, NULL) : NULL;
    g_free(plain);
    if (!json_is_object(doc)) {
        json_decref(doc);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            ok ? "the resource is not a JSON object"
                               : "the resource does not open with the APIv3 key");
        return NULL;
    }
    return doc;
}

json_t *cm_wxpay_seal_resource(const char *apiv3_key, const char *original_type, const char *plain)
{
    char *nonce = cm_wxpay_nonce();
    nonce[12] = '\0'; /* the protocol's nonce is 12 characters */
    size_t n = strlen(plain);
    uint8_t *buf = g_malloc(n + GCM_TAG_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    int ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
             EVP_EncryptInit_ex(ctx, NULL, NULL, (const uint8_t *)apiv3_key,
                                (const uint8_t *)nonce) == 1 &&
             EVP_EncryptUpdate(ctx, NULL, &len, (const uint8_t *)original_type,
                               (int)strlen(original_type)) == 1 &&
             EVP_EncryptUpdate(ctx, buf, &len, (const uint8_t *)plain, (int)n) == 1 &&
             EVP_EncryptFinal_ex(ctx, buf + len, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, buf + n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) g_error("AES-256-GCM failed");
    char *b64 = g_base64_encode(buf, n + GCM_TAG_LEN);
    g_free(buf);
    json_t *res = json_pack("{s:s, s:s, s:s, s:s, s:s}", "original_type", original_type,
                            "algorithm", "AEAD_AES_256_GCM", "ciphertext", b64, "associated_data",
                            original_type, "nonce", nonce);
    g_free(b64);
    g_free(nonce);
    return res;
}
