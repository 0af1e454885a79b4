/* Unit tests of the live media playlist: sliding window, program-date-time, discontinuities and
 * their sequence, the target duration, the end marker and which old segments may be deleted. */
#include "transcode/internal.h"

#include <check.h>
#include <string.h>

#include "harness/harness.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

START_TEST(window_slides_and_retires)
{
    struct hls_playlist p;
    hls_playlist_init(&p, 3, 2);
    GPtrArray *deleted = g_ptr_array_new_with_free_func(g_free);
    for (int i = 0; i < 10; i++) {
        char uri[16];
        g_snprintf(uri, sizeof uri, "s_%05d.ts", i);
        char *old = hls_playlist_append(&p, uri, 2.0, 1795726022375 + i * 2000);
        if (old) g_ptr_array_add(deleted, old);
    }
    GString *t = hls_playlist_render(&p);
    ck_assert(g_str_has_prefix(t->str, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"));
    ck_assert(strstr(t->str, "#EXT-X-MEDIA-SEQUENCE:7\n") != NULL);
    ck_assert_int_eq(count(t->str, "#EXTINF:2.000,"), 3);
    ck_assert_int_eq(count(t->str, "#EXT-X-PROGRAM-DATE-TIME:"), 3);
    /* 1795726022375 + 7 * 2000 ms */
    ck_assert(strstr(t->str, "#EXT-X-PROGRAM-DATE-TIME:2026-11-26T20:47:16.375Z\ns_00007.ts") ==
              NULL); /* the tag precedes EXTINF, not the uri */
    ck_assert(strstr(t->str, "#EXT-X-PROGRAM-DATE-TIME:2026-11-26T20:47:16.375Z\n#EXTINF:2.000,\n"
                             "s_00007.ts\n") != NULL);
    ck_assert(strstr(t->str, "#EXT-X-ENDLIST") == NULL);
    /* 7 left the window; 3 of them are still kept on disk for slow players */
    ck_assert_uint_eq(deleted->len, 4);
    ck_assert_str_eq(deleted->pdata[0], "s_00000.ts");
    ck_assert_str_eq(deleted->pdata[3], "s_00003.ts");
    g_string_free(t, TRUE);
    g_ptr_array_unref(deleted);
    hls_playlist_clear(&p);
}
END_TEST

START_TEST(discontinuity_and_end)
{
    struct hls_playlist p;
    hls_playlist_init(&p, 3, 2);
    hls_playlist_discontinuity(&p); /* before the first segment: nothing to mark */
    g_free(hls_playlist_append(&p, "a.ts", 2.0, 1000));
    g_free(hls_playlist_append(&p, "b.ts", 1.5, 3000));
    hls_playlist_discontinuity(&p);
    g_free(hls_playlist_append(&p, "c.ts", 2.0, 9000));
    GString *t = hls_playlist_render(&p);
    ck_assert_int_eq(count(t->str, "#EXT-X-DISCONTINUITY\n"), 1);
    ck_assert(strstr(t->str, "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:") != NULL);
    ck_assert(strstr(t->str, "DISCONTINUITY-SEQUENCE") == NULL);
    g_string_free(t, TRUE);
    /* the marked segment slides out: the sequence counts it */
    g_free(hls_playlist_append(&p, "d.ts", 2.0, 11000));
    g_free(hls_playlist_append(&p, "e.ts", 2.0, 13000));
    t = hls_playlist_render(&p);
    ck_assert(strstr(t->str, "#EXT-X-DISCONTINUITY-SEQUENCE:1\n") != NULL);
    ck_assert_int_eq(count(t->str, "#EXT-X-DISCONTINUITY\n"), 0);
    g_string_free(t, TRUE);
    /* a long segment raises the target duration for good */
    g_free(hls_playlist_append(&p, "f.ts", 4.6, 15000));
    hls_playlist_end(&p);
    t = hls_playlist_render(&p);
    ck_assert(strstr(t->str, "#EXT-X-TARGETDURATION:5\n") != NULL);
    ck_assert(g_str_has_suffix(t->str, "f.ts\n#EXT-X-ENDLIST\n"));
    ck_assert_int_eq(hls_playlist_next_seq(&p), 6);
    g_string_free(t, TRUE);
    hls_playlist_clear(&p);
}
END_TEST

START_TEST(atomic_write)
{
    char *dir = harness_tmpdir();
    char *path = g_build_filename(dir, "index.m3u8", NULL);
    ck_assert_int_eq(hls_write_atomic(path, "#EXTM3U\n", 8, NULL), SL_OK);
    char *text = NULL;
    ck_assert(g_file_get_contents(path, &text, NULL, NULL));
    ck_assert_str_eq(text, "#EXTM3U\n");
    g_free(text);
    char *bad = g_build_filename(dir, "missing", "index.m3u8", NULL);
    GError *e = NULL;
    ck_assert_int_eq(hls_write_atomic(bad, "x", 1, &e), SL_ERR);
    ck_assert_ptr_nonnull(e);
    g_error_free(e);
    g_free(bad);
    g_free(path);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

static Suite *playlist_suite(void)
{
    Suite *s = suite_create("hls_playlist");
    TCase *tc = tcase_create("units");
    tcase_add_test(tc, window_slides_and_retires);
    tcase_add_test(tc, discontinuity_and_end);
    tcase_add_test(tc, atomic_write);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(playlist_suite());
}
