/* Tests of core/static.c: files inside the root are found, every way out of it is refused. */
#include "core/core.h"
#include "harness/harness.h"

#include <check.h>
#include <string.h>
#include <unistd.h>

static char *root, *outside;

static void setup(void)
{
    char *base = harness_tmpdir();
    root = g_build_filename(base, "root", NULL);
    outside = base;
    char *sub = g_build_filename(root, "ch", NULL);
    g_mkdir_with_parents(sub, 0755);
    char *f = g_build_filename(sub, "index.m3u8", NULL);
    g_file_set_contents(f, "#EXTM3U\n", -1, NULL);
    char *secret = g_build_filename(outside, "secret", NULL);
    g_file_set_contents(secret, "s", -1, NULL);
    char *hidden = g_build_filename(root, ".env", NULL);
    g_file_set_contents(hidden, "x", -1, NULL);
    char *evil = g_build_filename(sub, "evil.ts", NULL);
    ck_assert_int_eq(symlink(secret, evil), 0);
    char *inlink = g_build_filename(sub, "alias.m3u8", NULL);
    ck_assert_int_eq(symlink("index.m3u8", inlink), 0);
    char *dirlink = g_build_filename(root, "up", NULL);
    ck_assert_int_eq(symlink("..", dirlink), 0);
    g_free(sub);
    g_free(f);
    g_free(secret);
    g_free(hidden);
    g_free(evil);
    g_free(inlink);
    g_free(dirlink);
}

static void teardown(void)
{
    harness_rmtree(outside);
    g_free(outside);
    g_free(root);
}

static int resolve(const char *rel, char **out)
{
    return sl_static_resolve(root, rel, strlen(rel), out);
}

START_TEST(finds_files_inside)
{
    char *out = NULL;
    ck_assert_int_eq(resolve("ch/index.m3u8", &out), SL_OK);
    ck_assert(g_str_has_suffix(out, "/root/ch/index.m3u8"));
    g_free(out);
    ck_assert_int_eq(resolve("ch/alias.m3u8", &out), SL_OK); /* a link that stays inside */
    g_free(out);
}
END_TEST

static const struct {
    const char *rel;
    int rc;
} refused[] = {
    {"../secret", SL_EPROTO},
    {"ch/../../secret", SL_EPROTO},
    {"ch/./index.m3u8", SL_EPROTO},
    {"/etc/passwd", SL_EPROTO},
    {"ch//index.m3u8", SL_EPROTO},
    {"ch\\..\\..\\secret", SL_EPROTO},
    {"..", SL_EPROTO},
    {"ch/evil.ts", SL_ERR}, /* symlink leaving the root */
    {"up/secret", SL_ERR},  /* directory symlink leaving the root */
    {"ch", SL_ERR},         /* a directory */
    {"ch/none.ts", SL_ERR},
    {"", SL_ERR},
    {".env", SL_ERR},
    {"%2e%2e/secret", SL_ERR}, /* no second decoding: a literal name that does not exist */
};

START_TEST(refuses_ways_out)
{
    char *out = (char *)1;
    ck_assert_msg(resolve(refused[_i].rel, &out) == refused[_i].rc, "%s", refused[_i].rel);
    ck_assert_ptr_null(out);
}
END_TEST

START_TEST(nul_and_length)
{
    char *out;
    const char with_nul[] = "ch/index.m3u8\0.ts";
    ck_assert_int_eq(sl_static_resolve(root, with_nul, sizeof with_nul - 1, &out), SL_EPROTO);
    /* only len bytes are looked at: a prefix naming the file is found */
    ck_assert_int_eq(sl_static_resolve(root, "ch/index.m3u8-more", 13, &out), SL_OK);
    g_free(out);
    char *longp = g_strnfill(2000, 'a');
    ck_assert_int_eq(resolve(longp, &out), SL_EPROTO);
    g_free(longp);
}
END_TEST

START_TEST(mime_types)
{
    ck_assert_str_eq(sl_static_mime("a/index.m3u8"), "application/vnd.apple.mpegurl");
    ck_assert_str_eq(sl_static_mime("seg_001.ts"), "video/mp2t");
    ck_assert_str_eq(sl_static_mime("index.HTML"), "text/html; charset=utf-8");
    ck_assert_str_eq(sl_static_mime("poster.jpg"), "image/jpeg");
    ck_assert_str_eq(sl_static_mime("noext"), "application/octet-stream");
    ck_assert_str_eq(sl_static_mime("dir.d/noext"), "application/octet-stream");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("static");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, finds_files_inside);
    tcase_add_loop_test(tc, refuses_ways_out, 0, G_N_ELEMENTS(refused));
    tcase_add_test(tc, nul_and_length);
    tcase_add_test(tc, mime_types);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
