/* Tests of core/config.c: defaults, listen/modules parsing, config files, the secret file. */
#include "core/core.h"
#include "harness/harness.h"

#include <check.h>
#include <string.h>
#include <sys/stat.h>

START_TEST(defaults_follow_api_md)
{
    struct sl_config *c = sl_config_new();
    ck_assert_str_eq(c->listen_host, "127.0.0.1");
    ck_assert_int_eq(c->listen_port, 8080);
    ck_assert_str_eq(c->rtmp_host, "127.0.0.1");
    ck_assert_int_eq(c->rtmp_port, 1935);
    ck_assert_str_eq(c->media_dir, "./media");
    ck_assert_str_eq(c->redis_url, "embedded");
    ck_assert_uint_eq(c->modules, SL_MODULE_ALL);
    ck_assert(!c->demo);
    sl_config_free(c);
    sl_config_free(NULL);
}
END_TEST

START_TEST(listen_values)
{
    char *host = NULL;
    int port = 0;
    ck_assert_int_eq(sl_config_parse_listen("0.0.0.0:9000", &host, &port, NULL), SL_OK);
    ck_assert_str_eq(host, "0.0.0.0");
    ck_assert_int_eq(port, 9000);
    ck_assert_int_eq(sl_config_parse_listen("[::1]:443", &host, &port, NULL), SL_OK);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 443);
    const char *bad[] = {"", "8080", ":8080", "host:", "host:0", "host:65536", "host:80x", "h:-1"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *e = NULL;
        ck_assert_msg(sl_config_parse_listen(bad[i], &host, &port, &e) == SL_ERR, "%s", bad[i]);
        ck_assert_ptr_nonnull(e);
        g_error_free(e);
    }
    g_free(host);
}
END_TEST

START_TEST(module_lists)
{
    unsigned m = 0;
    ck_assert_int_eq(sl_config_parse_modules("chat", &m, NULL), SL_OK);
    ck_assert_uint_eq(m, SL_MODULE_CHAT);
    ck_assert_int_eq(sl_config_parse_modules(" ingest, transcode ,commerce", &m, NULL), SL_OK);
    ck_assert_uint_eq(m, SL_MODULE_INGEST | SL_MODULE_TRANSCODE | SL_MODULE_COMMERCE);
    ck_assert_int_eq(sl_config_parse_modules("", &m, NULL), SL_OK);
    ck_assert_uint_eq(m, 0);
    GError *e = NULL;
    ck_assert_int_eq(sl_config_parse_modules("chat,video", &m, &e), SL_ERR);
    ck_assert_ptr_nonnull(strstr(e->message, "video"));
    g_error_free(e);
}
END_TEST

static char *write_tmp(const char *dir, const char *text)
{
    char *p = g_build_filename(dir, "silklive.ini", NULL);
    g_file_set_contents(p, text, -1, NULL);
    return p;
}

START_TEST(config_file_overrides_defaults)
{
    char *dir = harness_tmpdir();
    char *p = write_tmp(dir, "[server]\nlisten=127.0.0.2:9090\nmodules=chat,commerce\n"
                             "media_dir=/srv/media\n[redis]\nurl=redis://10.0.0.1:6380/2\n"
                             "timeout_ms=500\n[auth]\nsecret=s3\n[commerce]\nquota=1\n");
    struct sl_config *c = sl_config_new();
    GError *e = NULL;
    ck_assert_int_eq(sl_config_load_file(c, p, &e), SL_OK);
    ck_assert_str_eq(c->listen_host, "127.0.0.2");
    ck_assert_int_eq(c->listen_port, 9090);
    ck_assert_uint_eq(c->modules, SL_MODULE_CHAT | SL_MODULE_COMMERCE);
    ck_assert_str_eq(c->media_dir, "/srv/media");
    ck_assert_str_eq(c->redis_url, "redis://10.0.0.1:6380/2");
    ck_assert_int_eq(c->redis_timeout_ms, 500);
    ck_assert_str_eq(c->secret, "s3");
    /* modules read their own sections from the same file */
    ck_assert_int_eq(g_key_file_get_integer(c->file, "commerce", "quota", NULL), 1);
    sl_config_free(c);
    g_free(p);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

static const char *bad_files[] = {
    "[server\n",
    "[server]\nlisten=nowhere\n",
    "[server]\nmodules=chat,teleport\n",
    "[redis]\nurl=http://x\n",
    "[redis]\ntimeout_ms=abc\n",
    "[redis]\ntimeout_ms=0\n",
    "[server]\ndemo=maybe\n",
};

START_TEST(invalid_config_files)
{
    char *dir = harness_tmpdir();
    char *p = write_tmp(dir, bad_files[_i]);
    struct sl_config *c = sl_config_new();
    GError *e = NULL;
    ck_assert_int_eq(sl_config_load_file(c, p, &e), SL_ERR);
    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_nonnull(strstr(e->message, "silklive.ini")); /* names the file */
    g_error_free(e);
    sl_config_free(c);
    g_free(p);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

START_TEST(missing_config_file)
{
    struct sl_config *c = sl_config_new();
    GError *e = NULL;
    ck_assert_int_eq(sl_config_load_file(c, "/nonexistent/silklive.ini", &e), SL_ERR);
    ck_assert_ptr_nonnull(strstr(e->message, "/nonexistent/silklive.ini"));
    g_error_free(e);
    sl_config_free(c);
}
END_TEST

START_TEST(secret_generated_once_and_private)
{
    char *dir = harness_tmpdir();
    g_unsetenv("SILKLIVE_SECRET");
    struct sl_config *c = sl_config_new();
    g_free(c->data_dir);
    c->data_dir = g_build_filename(dir, "data", NULL);
    ck_assert_int_eq(sl_config_resolve_secret(c, NULL), SL_OK);
    ck_assert_int_eq(strlen(c->secret), 64);
    char *first = g_strdup(c->secret);
    char *path = g_build_filename(c->data_dir, "secret", NULL);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* a second start reads the same secret */
    struct sl_config *c2 = sl_config_new();
    g_free(c2->data_dir);
    c2->data_dir = g_strdup(c->data_dir);
    ck_assert_int_eq(sl_config_resolve_secret(c2, NULL), SL_OK);
    ck_assert_str_eq(c2->secret, first);
    /* the environment wins over the file */
    struct sl_config *c3 = sl_config_new();
    g_free(c3->data_dir);
    c3->data_dir = g_strdup(c->data_dir);
    g_setenv("SILKLIVE_SECRET", "from-env", TRUE);
    ck_assert_int_eq(sl_config_resolve_secret(c3, NULL), SL_OK);
    ck_assert_str_eq(c3->secret, "from-env");
    g_unsetenv("SILKLIVE_SECRET");
    sl_config_free(c);
    sl_config_free(c2);
    sl_config_free(c3);
    g_free(first);
    g_free(path);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

START_TEST(redis_urls)
{
    const char *good[] = {"embedded",       "redis://127.0.0.1:6379", "redis://localhost",
                          "redis://h:1/15", "unix:///tmp/r.sock",     "unix:///tmp/r.sock?db=3"};
    const char *bad[] = {"",
                         "http://x",
                         "redis://",
                         "redis://h:99999",
                         "redis://h:1/16",
                         "redis://h:1/x",
                         "unix://relative",
                         "unix:///s?db=99"};
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
        ck_assert_msg(sl_redis_url_check(good[i], NULL) == SL_OK, "%s", good[i]);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *e = NULL;
        ck_assert_msg(sl_redis_url_check(bad[i], &e) == SL_ERR, "%s", bad[i]);
        g_error_free(e);
    }
}
END_TEST

START_TEST(ids)
{
    ck_assert(sl_id_valid("cl-wine_01", 10));
    ck_assert(!sl_id_valid("", 0));
    ck_assert(!sl_id_valid("a/b", 3));
    ck_assert(!sl_id_valid("a b", 3));
    ck_assert(!sl_id_valid("é", strlen("é")));
    char longid[66];
    memset(longid, 'a', 65);
    longid[65] = 0;
    ck_assert(sl_id_valid(longid, 64));
    ck_assert(!sl_id_valid(longid, 65));
}
END_TEST

/* sl_int_text against printf, at the edges and around powers of ten */
START_TEST(integers_as_text)
{
    const int64_t values[] = {
        0, 1, -1, 9, 10, -10, 99, 100, 4294967296LL, 1796240030173LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < G_N_ELEMENTS(values); i++) {
        char got[SL_INT_TEXT_MAX], want[32];
        size_t n = sl_int_text(values[i], got);
        g_snprintf(want, sizeof want, "%" G_GINT64_FORMAT, values[i]);
        ck_assert_str_eq(got, want);
        ck_assert_uint_eq(n, strlen(want));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_follow_api_md);
    tcase_add_test(tc, listen_values);
    tcase_add_test(tc, module_lists);
    tcase_add_test(tc, config_file_overrides_defaults);
    tcase_add_loop_test(tc, invalid_config_files, 0, G_N_ELEMENTS(bad_files));
    tcase_add_test(tc, missing_config_file);
    tcase_add_test(tc, secret_generated_once_and_private);
    tcase_add_test(tc, redis_urls);
    tcase_add_test(tc, ids);
    tcase_add_test(tc, integers_as_text);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
