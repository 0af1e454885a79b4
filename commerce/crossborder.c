/* crossborder: what China's cross-border retail import rules ask of an order, as pure functions:
 * the buyer's resident identity number (GB 11643) checked, sealed at rest, shown masked and
 * turned into a quota reference; and the import tax of api.md in exact integer arithmetic. */
#include "internal.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

#define SEAL_PREFIX "v1."
#define NONCE_LEN   12
#define TAG_LEN     16

/* ISO 7064 MOD 11-2 over the first 17 digits: weight 2^(17-i) mod 11, check "10X98765432"[sum]. */
static char id_check_char(const char *digits)
{
    static const int weight[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int i = 0; i < 17; i++)
        sum += (digits[i] - '0') * weight[i];
    return "10X98765432"[sum % 11];
}

static int digits_value(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

char *cm_id_number_check(const char *text, int today_year, GError **err)
{
    size_t n = text ? strlen(text) : 0;
    if (n != 18) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                    "id_number must be 18 characters (GB 11643), not %zu", n);
        return NULL;
    }
    for (int i = 0; i < 17; i++) {
        if (!g_ascii_isdigit(text[i])) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "id_number must be 17 digits and a check digit or X");
            return NULL;
        }
    }
    char check = g_ascii_toupper(text[17]);
    if (!(g_ascii_isdigit(check) || check == 'X') || text[0] == '0') {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "id_number must be 17 digits and a check digit or X");
        return NULL;
    }
    int year = digits_value(text + 6, 4), month = digits_value(text + 10, 2);
    int day = digits_value(text + 12, 2);
    if (year < 1900 || year > today_year || month < 1 || month > 12 || day < 1 ||
        !g_date_valid_dmy((GDateDay)day, (GDateMonth)month, (GDateYear)year)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "id_number has no valid birth date (characters 7 to 14, YYYYMMDD)");
        return NULL;
    }
    if (id_check_char(text) != check) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "id_number's check character does not match (ISO 7064 MOD 11-2)");
        return NULL;
    }
    char *canonical = g_strdup(text);
    canonical[17] = check;
    return canonical;
}

void cm_id_number_mask(const char *id, char out[CM_ID_MASKED_LEN + 1])
{
    size_t n = strlen(id);
    memset(out, '*', CM_ID_MASKED_LEN);
    out[CM_ID_MASKED_LEN] = '\0';
    if (n != 18) return; /* nothing of a malformed number is shown */
    memcpy(out, id, 3);
    memcpy(out + 14, id + 14, 4);
}

/* ---- keys: one configured secret, two derived keys, so sealing and referencing never share
 * a key ---- */

static void derive(const uint8_t *secret, size_t len, const char *purpose, uint8_t out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)purpose, strlen(purpose), out, &n);
}

int cm_identity_key_init(struct cm_identity_key *k, const char *hex, GError **err)
{
    uint8_t raw[32];
    size_t n = hex ? strlen(hex) : 0;
    if (n != 64) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "[commerce] identity_key must be 64 hex digits (32 random bytes)");
        return SL_ERR;
    }
    for (size_t i = 0; i < 32; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "[commerce] identity_key must be 64 hex digits (32 random bytes)");
            return SL_ERR;
        }
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    derive(raw, sizeof raw, "silklive identity seal v1", k->seal);
    derive(raw, sizeof raw, "silklive identity reference v1", k->ref);
    OPENSSL_cleanse(raw, sizeof raw);
    return SL_OK;
}

char *cm_id_number_ref(const struct cm_identity_key *k, const char *id)
{
    return g_compute_hmac_for_data(G_CHECKSUM_SHA256, k->ref, sizeof k->ref, (const guchar *)id,
                                   strlen(id));
}

/* AES-256-GCM, a random 96-bit nonce per seal: "v1." base64(nonce | ciphertext | tag). */
char *cm_id_number_seal(const struct cm_identity_key *k, const char *id, GError **err)
{
    size_t n = strlen(id);
    uint8_t *buf = g_malloc(NONCE_LEN + n + TAG_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0,
        ok = ctx && RAND_bytes(buf, NONCE_LEN) == 1 &&
             EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->seal, buf) == 1 &&
             EVP_EncryptUpdate(ctx, buf + NONCE_LEN, &len, (const uint8_t *)id, (int)n) == 1 &&
             EVP_EncryptFinal_ex(ctx, buf + NONCE_LEN + len, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + NONCE_LEN + n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    char *out = NULL;
    if (ok) {
        char *b64 = g_base64_encode(buf, NONCE_LEN + n + TAG_LEN);
        out = g_strconcat(SEAL_PREFIX, b64, NULL);
        g_free(b64);
    } else {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_IO, "cannot encrypt the identity number");
    }
    OPENSSL_cleanse(buf, NONCE_LEN + n + TAG_LEN);
    g_free(buf);
    return out;
}

char *cm_id_number_open(const struct cm_identity_key *k, const char *sealed, GError **err)
{
    if (sealed == NULL || !g_str_has_prefix(sealed, SEAL_PREFIX)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "not a sealed identity number");
        return NULL;
    }
    gsize n = 0;
    uint8_t *buf = g_base64_decode(sealed + strlen(SEAL_PREFIX), &n);
    if (n <= NONCE_LEN + TAG_LEN || n > NONCE_LEN + TAG_LEN + 64) {
        g_free(buf);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "not a sealed identity number");
        return NULL;
    }
    size_t plain_len = n - NONCE_LEN - TAG_LEN;
    char *plain = g_malloc0(plain_len + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0,
        ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->seal, buf) == 1 &&
             EVP_DecryptUpdate(ctx, (uint8_t *)plain, &len, buf + NONCE_LEN, (int)plain_len) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, buf + NONCE_LEN + plain_len) ==
                 1 &&
             EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + len, &len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    g_free(buf);
    if (!ok) {
        OPENSSL_cleanse(plain, plain_len);
        g_free(plain);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "the sealed identity number does not open with this key");
        return NULL;
    }
    return plain;
}

/* ---- import tax (api.md "Cross-border retail import rules") ----
 * ct = g·c/(1−c), vat = (g + ct)·v, so ct + vat = g·(c + v)/(1 − c); the tax is 70 % of it,
 * rounded half up: with rates in basis points, 7·g·(C + V) / (10·(10000 − C)). */
int64_t cm_import_tax_fen(int64_t goods_fen, int vat_bp, int consumption_bp)
{
    if (goods_fen < 0 || goods_fen > CM_TAX_GOODS_MAX || vat_bp < 0 || vat_bp > 10000 ||
        consumption_bp < 0 || consumption_bp >= 10000)
        return -1;
    int64_t num = 7 * goods_fen * (int64_t)(consumption_bp + vat_bp);
    int64_t den = 10 * (int64_t)(10000 - consumption_bp);
    return (2 * num + den) / (2 * den);
}
