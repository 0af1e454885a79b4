/* Unit tests of the media playlist (sliding window, program-date-time, discontinuities and their
 * sequence, the target duration, the end marker, old segments to delete, a recording's EVENT/VOD
 * form) and of the ladder (rungs parsed, fitted to the source, the source's size from its SPS). */
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

START_TEST(recording_keeps_everything_and_ends_as_vod)
{
    struct hls_playlist p;
    hls_playlist_init(&p, 0, 2);
    char name[32];
    for (int i = 0; i < 50; i++) {
        g_snprintf(name, sizeof name, "s%d.ts", i);
        if (i == 20) hls_playlist_discontinuity(&p);
        ck_assert_ptr_null(hls_playlist_append(&p, name, 2.0, 1000 + i * 2000));
    }
    GString *live = hls_playlist_render(&p);
    ck_assert_ptr_nonnull(strstr(live->str, "#EXT-X-PLAYLIST-TYPE:EVENT\n"));
    ck_assert_ptr_nonnull(strstr(live->str, "s0.ts\n"));
    ck_assert_ptr_nonnull(strstr(live->str, "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME"));
    ck_assert_ptr_null(strstr(live->str, "ENDLIST"));
    g_string_free(live, TRUE);
    hls_playlist_end(&p);
    GString *vod = hls_playlist_render(&p);
    ck_assert_ptr_nonnull(strstr(vod->str, "#EXT-X-PLAYLIST-TYPE:VOD\n"));
    ck_assert_ptr_nonnull(strstr(vod->str, "s49.ts\n#EXT-X-ENDLIST\n"));
    ck_assert_ptr_nonnull(strstr(vod->str, "#EXT-X-MEDIA-SEQUENCE:0\n"));
    g_string_free(vod, TRUE);
    hls_playlist_clear(&p);
}
END_TEST

#define DEFAULT_TEST_LADDER "720p:2500,480p:1200,360p:700"

START_TEST(ladder_parse_and_fit)
{
    GArray *l = g_array_new(FALSE, FALSE, sizeof(struct remux_rung));
    GError *e = NULL;
    ck_assert(ladder_parse(" 720p:2500, 480p:1200 ,360p:700", l, &e));
    ck_assert_int_eq(l->len, 3);
    struct remux_rung r0 = g_array_index(l, struct remux_rung, 0);
    ck_assert_str_eq(r0.name, "720p");
    ck_assert_int_eq(r0.height, 720);
    ck_assert_int_eq(r0.kbps, 2500);
    ck_assert(ladder_parse("", l, &e));
    ck_assert_int_eq(l->len, 0); /* passthrough only */
    static const char *const bad[] = {"720:2500",   "720p",           "p:100",  "720p:x",
                                      "99999p:100", "720p:2500,,foo", "720p:10"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        ck_assert_msg(!ladder_parse(bad[i], l, &e), "%s parsed", bad[i]);
        ck_assert_ptr_nonnull(e);
        g_clear_error(&e);
    }
    ck_assert(ladder_parse(DEFAULT_TEST_LADDER, l, NULL));
    struct remux_rung out[8];
    /* 1080p: all three; 720p: all three (the same height is allowed); 480p source: two */
    ck_assert_int_eq(ladder_fit(l, 1920, 1080, out, 8), 3);
    ck_assert_int_eq(out[0].width, 1280);
    ck_assert_int_eq(out[2].width, 640);
    ck_assert_int_eq(ladder_fit(l, 1280, 720, out, 8), 3);
    ck_assert_int_eq(ladder_fit(l, 854, 480, out, 8), 2);
    ck_assert_int_eq(out[0].height, 480);
    ck_assert_int_eq(out[1].width, 640);
    ck_assert_int_eq(ladder_fit(l, 320, 240, out, 8), 0);
    /* odd aspect: widths stay even */
    ck_assert_int_eq(ladder_fit(l, 1000, 720, out, 8), 3);
    ck_assert_int_eq(out[1].width % 2, 0);
    ck_assert_int_eq(ladder_fit(l, 0, 0, out, 8), 0);
    /* a phone held upright: 720x1280 keeps its orientation in every rung */
    ck_assert_int_eq(ladder_fit(l, 720, 1280, out, 8), 3);
    ck_assert_int_eq(out[0].width, 720);
    ck_assert_int_eq(out[0].height, 1280);
    ck_assert_int_eq(out[2].width, 360);
    ck_assert_int_eq(out[2].height, 640);
    ck_assert_str_eq(out[2].name, "360p");
    g_array_unref(l);
}
END_TEST

/* An AVCDecoderConfigurationRecord as ffmpeg's libx264 sends it for 1280x720 (High, 3.1). */
START_TEST(source_size_from_the_sps)
{
    static const uint8_t avcc[] = {
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0x8f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00};
    int w = 0, h = 0;
    ck_assert(ladder_source_size(avcc, sizeof avcc, &w, &h));
    ck_assert_int_eq(w, 1280);
    ck_assert_int_eq(h, 720);
    /* truncated anywhere in the SPS, wrong version, no SPS: refused, never read past the bytes */
    for (size_t n = 0; n < 8 + 0x1a; n++)
        ck_assert(!ladder_source_size(avcc, n, &w, &h));
    uint8_t copy[sizeof avcc];
    memcpy(copy, avcc, sizeof avcc);
    copy[0] = 2;
    ck_assert(!ladder_source_size(copy, sizeof copy, &w, &h));
    copy[0] = 1;
    copy[5] = 0xe0;
    ck_assert(!ladder_source_size(copy, sizeof copy, &w, &h));
}
END_TEST

static Suite *playlist_suite(void)
{
    Suite *s = suite_create("hls_playlist");
    TCase *tc = tcase_create("units");
    tcase_add_test(tc, window_slides_and_retires);
    tcase_add_test(tc, discontinuity_and_end);
    tcase_add_test(tc, atomic_write);
    tcase_add_test(tc, recording_keeps_everything_and_ends_as_vod);
    tcase_add_test(tc, ladder_parse_and_fit);
    tcase_add_test(tc, source_size_from_the_sps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(playlist_suite());
}
