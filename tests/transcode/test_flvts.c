/* Unit tests of the passthrough remuxer (flvts): the tags of a real FLV (ffmpeg, x264 + AAC) in,
 * MPEG-TS segments out — cut on keyframes at the segment length, back to back, every frame kept,
 * decodable with PAT/PMT at each head; a mid-stream change of resolution; a poster JPEG of the
 * source's size; an unwritable output reported once and nothing listed. */
#include "transcode/internal.h"

#include <check.h>
#include <errno.h>
#include <libavformat/avformat.h>
#include <stdlib.h>
#include <string.h>

#include "harness/harness.h"

struct tag {
    uint8_t type;
    uint32_t ts;
    GBytes *body;
};

static void tag_free(gpointer p)
{
    struct tag *t = p;
    g_bytes_unref(t->body);
    g_free(t);
}

/* A test-pattern FLV made by ffmpeg: size, 25 fps, a keyframe every 2 s, AAC, `seconds` long. */
static char *make_flv(const char *dir, const char *size, int seconds)
{
    char *path = g_strdup_printf("%s/%s.flv", dir, size);
    char *src = g_strdup_printf("testsrc2=size=%s:rate=25", size),
         *t = g_strdup_printf("%d", seconds);
    const char *argv[] = {
        "ffmpeg", "-v",  "error",       "-y",      "-f",      "lavfi",
        "-i",     src,   "-f",          "lavfi",   "-i",      "sine=frequency=440",
        "-t",     t,     "-c:v",        "libx264", "-preset", "veryfast",
        "-g",     "50",  "-keyint_min", "50",      "-c:a",    "aac",
        "-f",     "flv", path,          NULL};
    int st = -1;
    ck_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                           &st, NULL));
    ck_assert_int_eq(st, 0);
    g_free(src);
    g_free(t);
    return path;
}

/* Its audio and video tags, timestamps shifted by offset_ms. */
static GPtrArray *flv_tags(const char *path, uint32_t offset_ms)
{
    gchar *data;
    gsize n;
    ck_assert(g_file_get_contents(path, &data, &n, NULL));
    const uint8_t *p = (const uint8_t *)data;
    ck_assert(n > 13 && memcmp(p, "FLV", 3) == 0);
    size_t at = ((size_t)p[5] << 24 | (size_t)p[6] << 16 | (size_t)p[7] << 8 | p[8]) + 4;
    GPtrArray *tags = g_ptr_array_new_with_free_func(tag_free);
    while (at + 11 <= n) {
        size_t len = (size_t)p[at + 1] << 16 | (size_t)p[at + 2] << 8 | p[at + 3];
        uint32_t ts = (uint32_t)p[at + 7] << 24 | (uint32_t)p[at + 4] << 16 |
                      (uint32_t)p[at + 5] << 8 | p[at + 6];
        if (at + 11 + len > n) break;
        if (p[at] == 8 || p[at] == 9) {
            struct tag *t = g_new0(struct tag, 1);
            t->type = p[at];
            t->ts = ts + offset_ms;
            t->body = g_bytes_new(p + at + 11, len);
            g_ptr_array_add(tags, t);
        }
        at += 11 + len + 4;
    }
    g_free(data);
    return tags;
}

static int video_frames(GPtrArray *tags)
{
    int frames = 0;
    for (guint i = 0; i < tags->len; i++) {
        struct tag *t = tags->pdata[i];
        const uint8_t *b = g_bytes_get_data(t->body, NULL);
        if (t->type == 9 && b[1] == 1) frames++;
    }
    return frames;
}

struct seen {
    GPtrArray *paths;    /* owned copies */
    GArray *start, *end; /* int64 ms */
    int write_failures, last_errno;
};

static void on_segment(const struct flvts_segment *seg, void *user)
{
    struct seen *s = user;
    g_ptr_array_add(s->paths, g_strdup(seg->location));
    g_array_append_val(s->start, seg->start_ms);
    g_array_append_val(s->end, seg->end_ms);
}

static void on_write_failed(int err, void *user)
{
    struct seen *s = user;
    s->write_failures++;
    s->last_errno = err;
}

static const struct flvts_events events = {on_segment, on_write_failed};

static void seen_init(struct seen *s)
{
    s->paths = g_ptr_array_new_with_free_func(g_free);
    s->start = g_array_new(FALSE, FALSE, sizeof(int64_t));
    s->end = g_array_new(FALSE, FALSE, sizeof(int64_t));
    s->write_failures = 0;
}

static void seen_clear(struct seen *s)
{
    g_ptr_array_unref(s->paths);
    g_array_unref(s->start);
    g_array_unref(s->end);
}

static void push_all(struct flvts *t, GPtrArray *tags)
{
    for (guint i = 0; i < tags->len; i++) {
        struct tag *x = tags->pdata[i];
        gsize n;
        const uint8_t *b = g_bytes_get_data(x->body, &n);
        flvts_push(t, x->type, x->ts, b, n);
    }
}

/* A segment file on its own: PAT and PMT before any media, H.264 (of that width) and AAC, its
 * first video packet a keyframe. Returns its video packets. */
static int probe(const char *path, int width)
{
    gchar *data;
    gsize n;
    ck_assert(g_file_get_contents(path, &data, &n, NULL));
    gboolean pat = FALSE, pmt = FALSE;
    for (gsize at = 0; at + 188 <= n; at += 188) {
        ck_assert_int_eq(data[at], 0x47);
        int pid = (data[at + 1] & 0x1f) << 8 | (uint8_t)data[at + 2];
        if (pid == 0) pat = TRUE;
        if (pid == 4096) pmt = TRUE; /* libavformat's first PMT PID */
        if (pid >= 256 && pid < 4096) break;
    }
    ck_assert_msg(pat && pmt, "%s: media before PAT and PMT", path);
    g_free(data);
    AVFormatContext *in = NULL;
    ck_assert_int_ge(avformat_open_input(&in, path, NULL, NULL), 0);
    ck_assert_int_ge(avformat_find_stream_info(in, NULL), 0);
    int v = av_find_best_stream(in, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    int a = av_find_best_stream(in, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    ck_assert_msg(v >= 0 && a >= 0, "%s lacks a stream", path);
    ck_assert_int_eq(in->streams[v]->codecpar->codec_id, AV_CODEC_ID_H264);
    ck_assert_int_eq(in->streams[a]->codecpar->codec_id, AV_CODEC_ID_AAC);
    ck_assert_int_eq(in->streams[v]->codecpar->width, width);
    AVPacket *pkt = av_packet_alloc();
    int frames = 0;
    while (av_read_frame(in, pkt) >= 0) {
        if (pkt->stream_index == v) {
            if (frames == 0)
                ck_assert_msg(pkt->flags & AV_PKT_FLAG_KEY, "%s: no keyframe first", path);
            frames++;
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    avformat_close_input(&in);
    return frames;
}

static char *dir;

static void setup(void)
{
    dir = harness_tmpdir();
}

static void teardown(void)
{
    harness_rmtree(dir);
    g_free(dir);
}

START_TEST(segments_are_cut_on_keyframes_and_keep_every_frame)
{
    char *flv = make_flv(dir, "320x240", 7);
    GPtrArray *tags = flv_tags(flv, 1000);
    struct seen s;
    seen_init(&s);
    struct flvts_config cfg = {.channel_dir = dir,
                               .output = "source",
                               .prefix = "p",
                               .first_index = 7,
                               .segment_ms = 2000,
                               .poster_ms = 1000};
    struct flvts *t = flvts_new(&cfg, &events, &s);
    push_all(t, tags);
    int w, h, fn, fd;
    flvts_video_info(t, &w, &h, &fn, &fd);
    ck_assert_int_eq(w, 320);
    ck_assert_int_eq(h, 240);
    ck_assert_int_eq(fn * 1, 25 * fd);  /* x264 writes VUI timing */
    ck_assert_uint_eq(s.paths->len, 3); /* 0–2, 2–4, 4–6 s; the rest waits for the end */
    flvts_finish(t);
    flvts_free(t);
    ck_assert_uint_eq(s.paths->len, 4);
    char *first = g_path_get_basename(s.paths->pdata[0]);
    ck_assert_str_eq(first, "p_00007.ts");
    g_free(first);
    int frames = 0;
    for (guint i = 0; i < s.paths->len; i++) {
        int64_t a = g_array_index(s.start, int64_t, i), b = g_array_index(s.end, int64_t, i);
        if (i == 0) ck_assert_int_le(a - 1000, 80); /* the first keyframe (after B-frame delay) */
        if (i + 1 < s.paths->len) {
            ck_assert_int_eq(b, g_array_index(s.start, int64_t, i + 1)); /* back to back */
            ck_assert_int_le(llabs(b - a - 2000), 50);
        }
        frames += probe(s.paths->pdata[i], 320);
    }
    ck_assert_int_eq(frames, video_frames(tags));
    ck_assert_int_eq(s.write_failures, 0);
    /* the poster: a JPEG of the source's size */
    flvts_shutdown();
    char *poster = g_build_filename(dir, "poster.jpg", NULL);
    AVFormatContext *in = NULL;
    ck_assert_int_ge(avformat_open_input(&in, poster, NULL, NULL), 0);
    ck_assert_int_ge(avformat_find_stream_info(in, NULL), 0);
    ck_assert_int_eq(in->streams[0]->codecpar->codec_id, AV_CODEC_ID_MJPEG);
    ck_assert_int_eq(in->streams[0]->codecpar->width, 320);
    ck_assert_int_eq(in->streams[0]->codecpar->height, 240);
    avformat_close_input(&in);
    g_free(poster);
    seen_clear(&s);
    g_ptr_array_unref(tags);
    g_free(flv);
}
END_TEST

START_TEST(a_new_resolution_starts_a_new_segment)
{
    char *big = make_flv(dir, "320x240", 3), *small = make_flv(dir, "160x120", 3);
    GPtrArray *first = flv_tags(big, 0), *second = flv_tags(small, 3100);
    struct seen s;
    seen_init(&s);
    struct flvts_config cfg = {
        .channel_dir = dir, .output = "source", .prefix = "q", .segment_ms = 2000};
    struct flvts *t = flvts_new(&cfg, &events, &s);
    push_all(t, first);
    push_all(t, second);
    flvts_finish(t);
    int w, h, fn, fd;
    flvts_video_info(t, &w, &h, &fn, &fd);
    ck_assert_int_eq(w, 160);
    flvts_free(t);
    ck_assert_uint_ge(s.paths->len, 3);
    int frames = 0;
    for (guint i = 0; i < s.paths->len; i++)
        frames += probe(s.paths->pdata[i], g_array_index(s.start, int64_t, i) < 3100 ? 320 : 160);
    ck_assert_int_eq(frames, video_frames(first) + video_frames(second));
    seen_clear(&s);
    g_ptr_array_unref(first);
    g_ptr_array_unref(second);
    g_free(big);
    g_free(small);
}
END_TEST

START_TEST(an_unwritable_output_is_reported_once)
{
    char *flv = make_flv(dir, "160x120", 5);
    GPtrArray *tags = flv_tags(flv, 0);
    /* "source" is a file, not a directory: no segment can be created in it */
    char *blocker = g_build_filename(dir, "source", NULL);
    ck_assert(g_file_set_contents(blocker, "", 0, NULL));
    struct seen s;
    seen_init(&s);
    struct flvts_config cfg = {
        .channel_dir = dir, .output = "source", .prefix = "r", .segment_ms = 1000};
    struct flvts *t = flvts_new(&cfg, &events, &s);
    push_all(t, tags);
    flvts_finish(t);
    flvts_free(t);
    ck_assert_int_eq(s.write_failures, 1);
    ck_assert_int_eq(s.last_errno, ENOTDIR);
    ck_assert_uint_eq(s.paths->len, 0);
    seen_clear(&s);
    g_ptr_array_unref(tags);
    g_free(blocker);
    g_free(flv);
}
END_TEST

static Suite *flvts_suite(void)
{
    Suite *s = suite_create("flvts");
    TCase *tc = tcase_create("remux");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, segments_are_cut_on_keyframes_and_keep_every_frame);
    tcase_add_test(tc, a_new_resolution_starts_a_new_segment);
    tcase_add_test(tc, an_unwritable_output_is_reported_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(flvts_suite());
}
