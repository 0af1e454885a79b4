/* Tests of core/token.c: HS256 tokens signed, verified, and every way a token can be wrong. */
#include "core/core.h"

#include "harness/harness.h"

#include <check.h>
#include <string.h>

static const char *secret = "test-secret-0123456789";
static const int64_t now = 1800000000;

static char *b64url(const char *data, size_t len)
{
    char *b = g_base64_encode((const guchar *)data, len);
    for (char *p = b; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
        else if (*p == '=')
            *p = '\0';
    }
    return b;
}

/* A token with any header and payload, signed with key (HS256). */
static char *forge(const char *header, const char *payload, const char *key)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    char *input = g_strconcat(h, ".", p, NULL);
    GHmac *mac = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)key, strlen(key));
    g_hmac_update(mac, (const guchar *)input, -1);
    guint8 d[32];
    gsize n = 32;
    g_hmac_get_digest(mac, d, &n);
    g_hmac_unref(mac);
    char *s = b64url((const char *)d, n);
    char *tok = g_strconcat(input, ".", s, NULL);
    g_free(h);
    g_free(p);
    g_free(input);
    g_free(s);
    return tok;
}

static int verify(const char *tok, struct sl_claims *c)
{
    return sl_token_verify(secret, tok, strlen(tok), now, c);
}

START_TEST(sign_then_verify)
{
    struct sl_claims in = {.role = SL_ROLE_CONSUL, .exp = now + 60};
    strcpy(in.sub, "consul-1");
    strcpy(in.name, "María José 张");
    strcpy(in.pav, "CL");
    char *tok = sl_token_sign(secret, &in);
    ck_assert_ptr_nonnull(tok);
    struct sl_claims out;
    ck_assert_int_eq(verify(tok, &out), SL_OK);
    ck_assert_str_eq(out.sub, "consul-1");
    ck_assert_str_eq(out.name, "María José 张");
    ck_assert_str_eq(out.pav, "CL");
    ck_assert_int_eq(out.role, SL_ROLE_CONSUL);
    ck_assert_int_eq(out.exp, now + 60);
    /* the same token under another secret is forged */
    ck_assert_int_eq(sl_token_verify("other", tok, strlen(tok), now, &out), SL_EPROTO);
    g_free(tok);
}
END_TEST

START_TEST(sign_refuses_bad_claims)
{
    struct sl_claims c = {.role = SL_ROLE_HOST, .exp = now + 60};
    strcpy(c.sub, "h1");
    ck_assert_ptr_null(sl_token_sign(secret, &c)); /* host without pavilion */
    strcpy(c.pav, "cl");
    ck_assert_ptr_null(sl_token_sign(secret, &c)); /* lower-case code */
    c.role = SL_ROLE_NONE;
    ck_assert_ptr_null(sl_token_sign(secret, &c));
    c.role = SL_ROLE_VIEWER;
    strcpy(c.sub, "bad id!");
    ck_assert_ptr_null(sl_token_sign(secret, &c));
    strcpy(c.sub, "ok");
    ck_assert_ptr_null(sl_token_sign("", &c));
}
END_TEST

START_TEST(expired_and_boundary)
{
    struct sl_claims c = {.role = SL_ROLE_VIEWER, .exp = now};
    strcpy(c.sub, "v1");
    char *tok = sl_token_sign(secret, &c);
    struct sl_claims out;
    ck_assert_int_eq(verify(tok, &out), SL_EPROTO); /* exp == now is expired */
    ck_assert_int_eq(sl_token_verify(secret, tok, strlen(tok), now - 1, &out), SL_OK);
    g_free(tok);
}
END_TEST

/* Tokens that must all be refused: table from RFC 7519/7515 and api.md's claims. */
static const struct {
    const char *header, *payload;
} bad_parts[] = {
    {"{\"alg\":\"none\",\"typ\":\"JWT\"}",
     "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
     "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"hs256\"}", "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"typ\":\"JWT\"}", "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\",\"typ\":\"JWE\"}",
     "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\",\"crit\":[\"x\"]}",
     "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\",\"alg\":\"none\"}",
     "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"[1]", "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"viewer\"}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":\"1900000000\"}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1.9e9}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"root\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u u\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"\",\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":7,\"role\":\"viewer\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"consul\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}",
     "{\"sub\":\"u\",\"role\":\"host\",\"pav\":\"Chile\",\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"viewer\",\"name\":5,\"exp\":1900000000}"},
    {"{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1700000000}"},
    {"{\"alg\":\"HS256\"}", "[\"sub\",\"u\"]"},
    {"{\"alg\":\"HS256\"}", "not json"},
    {"{\"alg\":\"HS256\"}",
     "{\"sub\":\"u\",\"sub\":\"admin\",\"role\":\"viewer\",\"exp\":1900000000}"},
};

START_TEST(refuses_bad_header_or_claims)
{
    char *tok = forge(bad_parts[_i].header, bad_parts[_i].payload, secret);
    struct sl_claims out;
    ck_assert_msg(verify(tok, &out) == SL_EPROTO, "accepted: %s . %s", bad_parts[_i].header,
                  bad_parts[_i].payload);
    g_free(tok);
}
END_TEST

START_TEST(accepts_minimal_forged_with_right_key)
{
    /* control for the table above: the forge helper itself makes valid tokens */
    char *tok = forge("{\"alg\":\"HS256\"}",
                      "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":1900000000}", secret);
    struct sl_claims out;
    ck_assert_int_eq(verify(tok, &out), SL_OK);
    ck_assert_int_eq(out.role, SL_ROLE_ADMIN);
    ck_assert_str_eq(out.pav, "");
    g_free(tok);
}
END_TEST

START_TEST(refuses_malformed_text)
{
    struct sl_claims c = {.role = SL_ROLE_VIEWER, .exp = now + 60};
    strcpy(c.sub, "v1");
    char *good = sl_token_sign(secret, &c);
    const char *dot = strrchr(good, '.');
    char *no_sig = g_strndup(good, dot - good);
    char *padded = g_strconcat(good, "=", NULL);
    char *four = g_strconcat(good, ".x", NULL);
    char *plus = g_strdup(good);
    plus[3] = '+';
    const char *cases[] = {"",           ".",    "..", "a.b.c", "a.b",
                           no_sig,       padded, four, plus,    "eyJhbGciOiJIUzI1NiJ9..sig",
                           "!!!.???.###"};
    struct sl_claims out;
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
        ck_assert_msg(verify(cases[i], &out) == SL_EPROTO, "accepted '%s'", cases[i]);
    /* every prefix of a valid token is refused, and nothing past len is read */
    for (size_t n = 0; n < strlen(good); n++)
        ck_assert_int_eq(sl_token_verify(secret, good, n, now, &out), SL_EPROTO);
    /* any single changed byte is refused */
    for (size_t i = 0; i < strlen(good); i++) {
        char *m = g_strdup(good);
        m[i] = m[i] == 'A' ? 'B' : 'A';
        if (strcmp(m, good) != 0) ck_assert_int_eq(verify(m, &out), SL_EPROTO);
        g_free(m);
    }
    /* oversized input */
    char *huge = g_strnfill(10000, 'a');
    ck_assert_int_eq(verify(huge, &out), SL_EPROTO);
    g_free(huge);
    g_free(good);
    g_free(no_sig);
    g_free(padded);
    g_free(four);
    g_free(plus);
}
END_TEST

START_TEST(roles_round_trip)
{
    ck_assert_int_eq(sl_role_parse("viewer"), SL_ROLE_VIEWER);
    ck_assert_int_eq(sl_role_parse("admin"), SL_ROLE_ADMIN);
    ck_assert_int_eq(sl_role_parse("Admin"), SL_ROLE_NONE);
    ck_assert_int_eq(sl_role_parse(NULL), SL_ROLE_NONE);
    ck_assert_str_eq(sl_role_name(SL_ROLE_HOST), "host");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("token");
    TCase *tc = tcase_create("token");
    tcase_add_test(tc, sign_then_verify);
    tcase_add_test(tc, sign_refuses_bad_claims);
    tcase_add_test(tc, expired_and_boundary);
    tcase_add_loop_test(tc, refuses_bad_header_or_claims, 0, G_N_ELEMENTS(bad_parts));
    tcase_add_test(tc, accepts_minimal_forged_with_right_key);
    tcase_add_test(tc, refuses_malformed_text);
    tcase_add_test(tc, roles_round_trip);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
