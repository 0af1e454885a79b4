/* token: HS256 JWTs (RFC 7519) as api.md defines them; strict about algorithm and claims. */
#include "core.h"

#include <string.h>

#define TOKEN_MAX_LEN 4096

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64url_encode(const guint8 *in, size_t len)
{
    GString *s = g_string_sized_new(len * 4 / 3 + 4);
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        guint32 v = (guint32)in[i] << 16 | (guint32)in[i + 1] << 8 | in[i + 2];
        g_string_append_c(s, b64url_alphabet[v >> 18 & 63]);
        g_string_append_c(s, b64url_alphabet[v >> 12 & 63]);
        g_string_append_c(s, b64url_alphabet[v >> 6 & 63]);
        g_string_append_c(s, b64url_alphabet[v & 63]);
    }
    if (len - i == 1) {
        guint32 v = (guint32)in[i] << 16;
        g_string_append_c(s, b64url_alphabet[v >> 18 & 63]);
        g_string_append_c(s, b64url_alphabet[v >> 12 & 63]);
    } else if (len - i == 2) {
        guint32 v = (guint32)in[i] << 16 | (guint32)in[i + 1] << 8;
        g_string_append_c(s, b64url_alphabet[v >> 18 & 63]);
        g_string_append_c(s, b64url_alphabet[v >> 12 & 63]);
        g_string_append_c(s, b64url_alphabet[v >> 6 & 63]);
    }
    return g_string_free(s, FALSE);
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Unpadded base64url only; any other byte, or a length no encoder produces, is an error. */
static int b64url_decode(const char *in, size_t len, GByteArray *out)
{
    if (len % 4 == 1) return SL_EPROTO;
    guint32 acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) return SL_EPROTO;
        acc = (acc << 6) | (guint32)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            guint8 b = (guint8)(acc >> bits);
            g_byte_array_append(out, &b, 1);
        }
    }
    /* Leftover bits must be zero, so each token has one spelling. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return SL_EPROTO;
    return SL_OK;
}

static void hs256(const char *secret, const char *data, size_t len, guint8 mac[32])
{
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)secret, strlen(secret));
    g_hmac_update(h, (const guchar *)data, (gssize)len);
    gsize n = 32;
    g_hmac_get_digest(h, mac, &n);
    g_hmac_unref(h);
}

const char *sl_role_name(enum sl_role r)
{
    switch (r) {
    case SL_ROLE_VIEWER:
        return "viewer";
    case SL_ROLE_HOST:
        return "host";
    case SL_ROLE_CONSUL:
        return "consul";
    case SL_ROLE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

enum sl_role sl_role_parse(const char *s)
{
    if (s == NULL) return SL_ROLE_NONE;
    if (strcmp(s, "viewer") == 0) return SL_ROLE_VIEWER;
    if (strcmp(s, "host") == 0) return SL_ROLE_HOST;
    if (strcmp(s, "consul") == 0) return SL_ROLE_CONSUL;
    if (strcmp(s, "admin") == 0) return SL_ROLE_ADMIN;
    return SL_ROLE_NONE;
}

static gboolean pavilion_code_valid(const char *s)
{
    return s && strlen(s) == 2 && g_ascii_isupper(s[0]) && g_ascii_isupper(s[1]);
}

static gboolean role_needs_pavilion(enum sl_role r)
{
    return r == SL_ROLE_HOST || r == SL_ROLE_CONSUL;
}

char *sl_token_sign(const char *secret, const struct sl_claims *c)
{
    if (secret == NULL || *secret == '\0' || !sl_id_valid(c->sub, strlen(c->sub)) ||
        c->role == SL_ROLE_NONE || (role_needs_pavilion(c->role) && !pavilion_code_valid(c->pav)))
        return NULL;
    json_t *claims = json_pack("{s:s, s:s, s:I}", "sub", c->sub, "role", sl_role_name(c->role),
                               "exp", (json_int_t)c->exp);
    if (c->name[0]) json_object_set_new(claims, "name", json_string(c->name));
    if (role_needs_pavilion(c->role)) json_object_set_new(claims, "pav", json_string(c->pav));
    char *payload_json = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(claims);
    if (payload_json == NULL) return NULL;

    static const char header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *h = b64url_encode((const guint8 *)header_json, sizeof header_json - 1);
    char *p = b64url_encode((const guint8 *)payload_json, strlen(payload_json));
    free(payload_json);
    char *signing_input = g_strconcat(h, ".", p, NULL);
    guint8 mac[32];
    hs256(secret, signing_input, strlen(signing_input), mac);
    char *s = b64url_encode(mac, sizeof mac);
    char *token = g_strconcat(signing_input, ".", s, NULL);
    g_free(h);
    g_free(p);
    g_free(s);
    g_free(signing_input);
    return token;
}

static json_t *decode_json_part(const char *part, size_t len)
{
    GByteArray *raw = g_byte_array_new();
    json_t *j = NULL;
    if (b64url_decode(part, len, raw) == SL_OK)
        j = json_loadb((const char *)raw->data, raw->len, JSON_REJECT_DUPLICATES, NULL);
    g_byte_array_unref(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static int claims_from_json(json_t *p, int64_t now_s, struct sl_claims *out)
{
    json_t *sub = json_object_get(p, "sub"), *role = json_object_get(p, "role");
    json_t *exp = json_object_get(p, "exp"), *name = json_object_get(p, "name");
    json_t *pav = json_object_get(p, "pav");
    if (!json_is_string(sub) || !json_is_string(role) || !json_is_integer(exp)) return SL_EPROTO;
    size_t sub_len = json_string_length(sub);
    if (!sl_id_valid(json_string_value(sub), sub_len)) return SL_EPROTO;
    enum sl_role r = sl_role_parse(json_string_value(role));
    if (r == SL_ROLE_NONE) return SL_EPROTO;
    if (json_integer_value(exp) <= now_s) return SL_EPROTO;
    if (name && (!json_is_string(name) || json_string_length(name) >= sizeof out->name))
        return SL_EPROTO;
    if (role_needs_pavilion(r) &&
        !(json_is_string(pav) && pavilion_code_valid(json_string_value(pav))))
        return SL_EPROTO;

    memset(out, 0, sizeof *out);
    memcpy(out->sub, json_string_value(sub), sub_len);
    if (name) memcpy(out->name, json_string_value(name), json_string_length(name));
    if (role_needs_pavilion(r)) memcpy(out->pav, json_string_value(pav), 2);
    out->role = r;
    out->exp = json_integer_value(exp);
    return SL_OK;
}

int sl_token_verify(const char *secret, const char *token, size_t len, int64_t now_s,
                    struct sl_claims *out)
{
    if (secret == NULL || *secret == '\0' || token == NULL || len == 0 || len > TOKEN_MAX_LEN)
        return SL_EPROTO;
    const char *dot1 = memchr(token, '.', len);
    if (dot1 == NULL) return SL_EPROTO;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL) return SL_EPROTO;
    const char *sig = dot2 + 1;
    size_t sig_len = len - (size_t)(sig - token);
    if (memchr(sig, '.', sig_len) != NULL) return SL_EPROTO;

    /* Algorithm first: "none", RS256 and friends are refused before any signature work. */
    json_t *header = decode_json_part(token, (size_t)(dot1 - token));
    if (header == NULL) return SL_EPROTO;
    json_t *alg = json_object_get(header, "alg"), *typ = json_object_get(header, "typ");
    gboolean alg_ok =
        json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0 &&
        (typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0)) &&
        json_object_get(header, "crit") == NULL;
    json_decref(header);
    if (!alg_ok) return SL_EPROTO;

    GByteArray *mac_given = g_byte_array_new();
    int rc = b64url_decode(sig, sig_len, mac_given);
    if (rc == SL_OK && mac_given->len != 32) rc = SL_EPROTO;
    if (rc == SL_OK) {
        guint8 mac[32], diff = 0;
        hs256(secret, token, (size_t)(dot2 - token), mac);
        for (size_t i = 0; i < 32; i++)
            diff |= mac[i] ^ mac_given->data[i]; /* constant time */
        if (diff != 0) rc = SL_EPROTO;
    }
    g_byte_array_unref(mac_given);
    if (rc != SL_OK) return rc;

    json_t *payload = decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (payload == NULL) return SL_EPROTO;
    rc = claims_from_json(payload, now_s, out);
    json_decref(payload);
    return rc;
}
