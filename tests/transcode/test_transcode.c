/* Integration tests of the ladder with real encoders: ffmpeg publishes 720p30 and 1080p30 test
 * sources to the real silklive; every rung is checked with ffprobe (its size, clean decoding),
 * segment boundaries are compared across rungs, the master playlist's attributes, the poster,
 * a pin→unpin highlight clip, the broadcast's VOD recording, a pavilion's own ladder, a portrait
 * source, and shedding and restoring rungs when encoding cannot keep up. */
#include "core/core.h"
#include "harness/harness.h"

#include <check.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define SECRET "transcode-test-secret"
#define GOP_S  2

static struct harness_redis redis;
static struct harness_silklive sl;
static char *config_dir;
static int rtmp_port;

/* silklive with the given [transcode]/[ladder] config, pavilions CL and PE, channels ch1 (CL)
 * and ch2 (PE), product p1 in CL. */
static void start_with(const char *config)
{
    harness_redis_start(&redis, NULL);
    config_dir = harness_tmpdir();
    char *ini = g_build_filename(config_dir, "silklive.ini", NULL);
    g_file_set_contents(ini, config, -1, NULL);
    char url[64], rtmp[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    rtmp_port = harness_free_port();
    g_snprintf(rtmp, sizeof rtmp, "127.0.0.1:%d", rtmp_port);
    const char *args[] = {"--redis",       url,  "--secret",  SECRET,
                          "--config",      ini,  "--modules", "commerce,transcode,ingest",
                          "--rtmp-listen", rtmp, NULL};
    ck_assert_msg(harness_silklive_start(&sl, args, NULL), "silklive did not start");
    g_free(ini);
    char *admin = harness_token(SECRET, SL_ROLE_ADMIN, "root", NULL);
    const char *pavs[][2] = {{"CL", "CLP"}, {"PE", "PEN"}};
    for (int i = 0; i < 2; i++) {
        char *body = g_strdup_printf("{\"code\":\"%s\",\"name\":{\"en\":\"%s\"},\"currency\":"
                                     "\"%s\",\"languages\":[\"es\"]}",
                                     pavs[i][0], pavs[i][0], pavs[i][1]);
        ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions", admin, NULL, body, NULL),
                         201);
        g_free(body);
    }
    g_free(admin);
}

static char *create_channel(const char *pav, const char *id)
{
    char *consul = harness_token(SECRET, SL_ROLE_CONSUL, "c1", pav);
    char *path = g_strdup_printf("/api/v1/pavilions/%s/channels", pav);
    char *body = g_strdup_printf("{\"id\":\"%s\",\"title\":{\"en\":\"%s\"}}", id, id);
    json_t *ch = NULL;
    ck_assert_int_eq(harness_api(sl.port, "POST", path, consul, NULL, body, &ch), 201);
    char *key = g_strdup(json_string_value(json_object_get(ch, "stream_key")));
    json_decref(ch);
    g_free(consul);
    g_free(path);
    g_free(body);
    return key;
}

static void stop(void)
{
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    harness_redis_stop(&redis);
    harness_rmtree(config_dir);
    g_free(config_dir);
}

#define BASE_CONFIG "[transcode]\nsegment_s = 2\ngrace_s = 2\nretention_s = 60\nposter_s = 2\n"

static void start_default(void)
{
    start_with(BASE_CONFIG "preset = ultrafast\n[ladder]\nPE = 240p:300\n");
}

static void start_overloaded(void)
{
    /* four 1080p-class rungs at preset medium: far more than two cores do in real time */
    start_with(BASE_CONFIG "preset = medium\nrestore_s = 2\n"
                           "ladder = 1080p:6000,900p:5000,720p:2500,540p:1500\n");
}

/* ---- tools ---- */

static GPid ffmpeg_publish_fps(const char *key, const char *size, int fps, int seconds)
{
    char *url = g_strdup_printf("rtmp://127.0.0.1:%d/live/%s", rtmp_port, key);
    GPid pid = harness_ffmpeg_publish(url, size, fps, fps * GOP_S, "ultrafast", seconds);
    g_free(url);
    return pid;
}

static GPid ffmpeg_publish(const char *key, const char *size, int seconds)
{
    return ffmpeg_publish_fps(key, size, 30, seconds);
}

static void reap(GPid pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static char *get_text(const char *path)
{
    struct harness_response r;
    if (harness_http(sl.port, "GET", path, NULL, NULL, 0, &r) != 0) return NULL;
    char *body = r.status == 200 ? g_strdup(r.body) : NULL;
    harness_response_free(&r);
    return body;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Poll path until it contains `needle` n times (or timeout_s); the text (g_free) or NULL. */
static char *wait_text(const char *path, const char *needle, int n, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        char *text = get_text(path);
        if (count(text, needle) >= n) return text;
        g_free(text);
        g_usleep(100000);
    }
    return NULL;
}

/* Run a command; its stdout (g_free); asserts it succeeded without anything on stderr. */
static char *run(const char *const *argv)
{
    char *out = NULL, *err = NULL;
    int st = 0;
    ck_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                           &st, NULL));
    ck_assert_msg(st == 0 && *err == '\0', "%s %s: %s", argv[0], argv[argv[1] ? 1 : 0], err);
    g_free(err);
    return out;
}

static char *media(const char *channel, const char *rel)
{
    return g_build_filename(sl.media_dir, channel, rel, NULL);
}

/* Fields of the first video stream of a file ("width,height"), joined by sep (g_free). */
static char *video_fields(const char *file, const char *fields, const char *sep)
{
    char *entries = g_strdup_printf("stream=%s", fields);
    char *format = g_strdup_printf("csv=s=%s:p=0", sep);
    const char *argv[] = {
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of",
        format,    file, NULL};
    char *out = run(argv);
    out[strcspn(out, "\r\n")] = '\0'; /* a TS lists its streams under its program too */
    g_free(entries);
    g_free(format);
    return out;
}

/* WxH of the first video stream of a file. */
static char *video_size(const char *file)
{
    return video_fields(file, "width,height", "x");
}

/* Decode the whole file; any error fails the test. */
static void decodes(const char *file)
{
    const char *argv[] = {"ffmpeg", "-v", "error", "-nostdin", "-i", file, "-f", "null", "-", NULL};
    g_free(run(argv));
}

static double duration_s(const char *file)
{
    const char *argv[] = {"ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "csv=p=0", file, NULL};
    char *out = run(argv);
    double d = g_ascii_strtod(out, NULL);
    g_free(out);
    return d;
}

/* The (program-date-time, EXTINF) pairs of a media playlist, one "pdt|dur" string per segment,
 * and the segment file names. */
static GPtrArray *boundaries(const char *text, GPtrArray *files)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    gchar **lines = g_strsplit(text, "\n", -1);
    const char *pdt = NULL;
    for (gchar **l = lines; *l; l++) {
        if (g_str_has_prefix(*l, "#EXT-X-PROGRAM-DATE-TIME:")) pdt = *l + 25;
        if (g_str_has_prefix(*l, "#EXTINF:") && pdt)
            g_ptr_array_add(out, g_strdup_printf("%s|%s", pdt, *l + 8));
        if (files && g_str_has_suffix(*l, ".ts")) g_ptr_array_add(files, g_strdup(*l));
    }
    g_strfreev(lines);
    return out;
}

static gboolean contains(GPtrArray *a, const char *s)
{
    for (guint i = 0; i < a->len; i++)
        if (strcmp(a->pdata[i], s) == 0) return TRUE;
    return FALSE;
}

/* Every rung: listed in the master with all its attributes, cut at the same instants as the
 * source, of its own size, decoding cleanly. */
static void check_ladder(const char *channel, const char *const *rungs, const char *const *sizes,
                         int n, int fps)
{
    char *path = g_strdup_printf("/hls/%s/master.m3u8", channel);
    char *master = wait_text(path, "#EXT-X-STREAM-INF", n + 1, 30);
    ck_assert_msg(master != NULL, "the master playlist does not list %d renditions", n + 1);
    ck_assert_int_eq(count(master, "#EXT-X-STREAM-INF"), n + 1);
    static const char *const attrs[] = {
        "INF:BANDWIDTH=", ",AVERAGE-BANDWIDTH=", "RESOLUTION=", "CODECS=\"avc1."};
    for (size_t i = 0; i < G_N_ELEMENTS(attrs); i++)
        ck_assert_msg(count(master, attrs[i]) == n + 1, "%s missing in\n%s", attrs[i], master);
    char *rate = g_strdup_printf("FRAME-RATE=%d.000", fps);
    ck_assert_msg(count(master, rate) == n + 1, "%s missing in\n%s", rate, master);
    g_free(rate);
    g_free(path);
    /* let every rung list a few segments, then compare with the source */
    path = g_strdup_printf("/hls/%s/source/index.m3u8", channel);
    g_free(wait_text(path, "#EXTINF", 4, 30));
    g_free(path);
    for (int i = 0; i < n; i++) {
        path = g_strdup_printf("/hls/%s/%s/index.m3u8", channel, rungs[i]);
        char *text = wait_text(path, "#EXTINF", 3, 30);
        ck_assert_msg(text != NULL, "%s lists no segments", rungs[i]);
        char *spath = g_strdup_printf("/hls/%s/source/index.m3u8", channel);
        char *source = get_text(spath);
        GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
        GPtrArray *rb = boundaries(text, files), *sb = boundaries(source, NULL);
        int common = 0;
        for (guint k = 0; k < rb->len; k++) {
            /* the newest rung segment may be ahead of the source's window or behind it */
            if (contains(sb, rb->pdata[k])) common++;
        }
        ck_assert_msg(common >= 2 && common >= (int)rb->len - 1,
                      "%s: segments do not start at the source's instants\n%s\nsource:\n%s",
                      rungs[i], text, source);
        char *seg = g_strdup_printf("%s/%s", rungs[i], (char *)files->pdata[files->len - 1]);
        char *file = media(channel, seg);
        char *size = video_size(file);
        ck_assert_str_eq(size, sizes[i]);
        decodes(file);
        g_free(size);
        g_free(file);
        g_free(seg);
        g_ptr_array_unref(rb);
        g_ptr_array_unref(sb);
        g_ptr_array_unref(files);
        g_free(source);
        g_free(spath);
        g_free(text);
        g_free(path);
    }
    g_free(master);
}

static json_t *room_event(const char *channel, const char *type)
{
    for (int i = 0; i < 30; i++) {
        char *h =
            harness_redis_cmd(redis.port, "XREVRANGE sl:{room:%s}:history + - COUNT 5", channel);
        gchar **lines = h ? g_strsplit(h, "\n", -1) : NULL;
        for (gchar **l = lines; l && *l; l++) {
            json_t *ev = **l == '{' ? json_loads(*l, 0, NULL) : NULL;
            if (ev && g_strcmp0(json_string_value(json_object_get(ev, "type")), type) == 0) {
                g_strfreev(lines);
                g_free(h);
                return ev;
            }
            json_decref(ev);
        }
        g_strfreev(lines);
        g_free(h);
        g_usleep(100000);
    }
    return NULL;
}

/* ---- tests ---- */

START_TEST(ladder_720p_poster_highlight_and_recording)
{
    char *key = create_channel("CL", "ch1");
    char *consul = harness_token(SECRET, SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions/CL/products", consul, NULL,
                                 "{\"sku\":\"p1\",\"title\":{\"en\":\"Wine\"},"
                                 "\"price\":{\"amount_minor\":100,\"currency\":\"CLP\"},"
                                 "\"price_cny_fen\":100,\"stock_location\":\"overseas\"}",
                                 NULL),
                     201);
    GPid pid = ffmpeg_publish(key, "1280x720", 22);
    const char *rungs[] = {"720p", "480p", "360p"};
    const char *sizes[] = {"1280x720", "854x480", "640x360"};
    check_ladder("ch1", rungs, sizes, 3, 30);

    /* the poster: a JPEG of the source's size */
    char *poster = media("ch1", "poster.jpg");
    for (int i = 0; i < 50 && !g_file_test(poster, G_FILE_TEST_EXISTS); i++)
        g_usleep(100000);
    char *psize = video_size(poster);
    ck_assert_str_eq(psize, "1280x720");
    const char *codec[] = {"ffprobe", "-v",   "error", "-show_entries", "stream=codec_name", "-of",
                           "csv=p=0", poster, NULL};
    char *pc = run(codec);
    ck_assert_ptr_nonnull(strstr(pc, "mjpeg"));
    g_free(pc);
    g_free(psize);
    g_free(poster);

    /* pin for ~5 s: a clip whose length is the interval, from the keyframe at or before it */
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/channels/ch1/pin", consul, NULL,
                                 "{\"sku\":\"p1\"}", NULL),
                     200);
    g_usleep(5000 * 1000);
    ck_assert_int_eq(
        harness_api(sl.port, "DELETE", "/api/v1/channels/ch1/pin", consul, NULL, NULL, NULL), 200);
    json_t *pin = room_event("ch1", "pin"), *unpin = room_event("ch1", "unpin");
    ck_assert(pin && unpin);
    int64_t interval = json_integer_value(json_object_get(unpin, "pdt_ms")) -
                       json_integer_value(json_object_get(pin, "pdt_ms"));
    ck_assert_int_gt(interval, 4000);
    json_t *hl = NULL;
    for (int i = 0; i < 300; i++) {
        json_decref(hl);
        hl = NULL;
        ck_assert_int_eq(
            harness_api(sl.port, "GET", "/api/v1/channels/ch1/highlights", NULL, NULL, NULL, &hl),
            200);
        if (json_array_size(hl) > 0) break;
        g_usleep(100000);
    }
    ck_assert_int_eq(json_array_size(hl), 1);
    json_t *clip = json_array_get(hl, 0);
    ck_assert_str_eq(json_string_value(json_object_get(clip, "sku")), "p1");
    const char *url = json_string_value(json_object_get(clip, "url"));
    ck_assert(g_str_has_prefix(url, "/vod/ch1/"));
    json_t *announced = room_event("ch1", "highlight");
    ck_assert_ptr_nonnull(announced);
    json_decref(announced);
    struct harness_response r;
    ck_assert_int_eq(harness_http(sl.port, "GET", url, NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    char *mp4 = g_build_filename(config_dir, "clip.mp4", NULL);
    g_file_set_contents(mp4, r.body, (gssize)r.body_len, NULL);
    harness_response_free(&r);
    double d = duration_s(mp4);
    ck_assert_msg(d * 1000 >= interval - 100 && d * 1000 <= interval + GOP_S * 1000 + 200,
                  "clip of %.3f s for a pin of %lld ms", d, (long long)interval);
    decodes(mp4);
    /* faststart: the index (moov) before the media (mdat) */
    char *bytes = NULL;
    gsize n = 0;
    ck_assert(g_file_get_contents(mp4, &bytes, &n, NULL));
    void *moov = memmem(bytes, n, "moov", 4), *mdat = memmem(bytes, n, "mdat", 4);
    ck_assert(moov && mdat && moov < mdat);
    g_free(bytes);
    g_free(mp4);
    json_decref(pin);
    json_decref(unpin);
    json_decref(hl);

    /* the broadcast ends: its recording is a VOD playlist of the whole stream */
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    json_t *b = NULL;
    for (int i = 0; i < 300; i++) {
        json_decref(b);
        ck_assert_int_eq(
            harness_api(sl.port, "GET", "/api/v1/channels/ch1/broadcasts", NULL, NULL, NULL, &b),
            200);
        json_t *first = json_array_get(json_object_get(b, "broadcasts"), 0);
        if (json_is_integer(json_object_get(first, "ended_at_ms"))) break;
        g_usleep(100000);
    }
    json_t *bc = json_array_get(json_object_get(b, "broadcasts"), 0);
    ck_assert(json_is_integer(json_object_get(bc, "ended_at_ms")));
    char *vod = get_text(json_string_value(json_object_get(bc, "url")));
    ck_assert_ptr_nonnull(vod);
    ck_assert_ptr_nonnull(strstr(vod, "#EXT-X-PLAYLIST-TYPE:VOD\n"));
    ck_assert(g_str_has_suffix(vod, "#EXT-X-ENDLIST\n"));
    ck_assert_int_ge(count(vod, "#EXTINF"), 9); /* 22 s in 2 s segments, all of them */
    g_free(vod);
    json_decref(b);
    g_free(consul);
    g_free(key);
}
END_TEST

/* A new channel of the pavilion publishes a source of `size` at fps; its ladder is the given
 * rungs. */
static void publish_and_check(const char *pav, const char *channel, const char *size, int fps,
                              const char *const *rungs, const char *const *sizes, int n)
{
    char *key = create_channel(pav, channel);
    GPid pid = ffmpeg_publish_fps(key, size, fps, 14);
    check_ladder(channel, rungs, sizes, n, fps);
    reap(pid);
    g_free(key);
}

/* Start a publisher's command line (its stdout and stderr dropped). */
static GPid spawn_publisher(const char *const *argv)
{
    GPid pid;
    GError *e = NULL;
    ck_assert_msg(g_spawn_async(NULL, (char **)argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                    G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                                NULL, NULL, &pid, &e),
                  "%s: %s", argv[0], e ? e->message : "");
    return pid;
}

/* "profile,pix_fmt" of the first video stream of the newest segment of a rendition. */
static char *newest_segment_format(const char *channel, const char *rendition)
{
    char *path = g_strdup_printf("/hls/%s/%s/index.m3u8", channel, rendition);
    char *text = wait_text(path, "#EXTINF", 2, 40);
    ck_assert_msg(text != NULL, "%s lists no segments", rendition);
    GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_unref(boundaries(text, files));
    ck_assert_uint_ge(files->len, 1);
    char *seg = g_strdup_printf("%s/%s", rendition, (char *)files->pdata[files->len - 1]);
    char *file = media(channel, seg);
    char *out = video_fields(file, "profile,pix_fmt", ",");
    decodes(file);
    g_free(file);
    g_free(seg);
    g_ptr_array_unref(files);
    g_free(text);
    g_free(path);
    return out;
}

/* An 8-bit 4:2:0 profile a browser decodes (ultrafast rungs come out Constrained Baseline). */
static void assert_browser_playable(const char *format)
{
    ck_assert_msg(g_str_has_suffix(format, ",yuv420p") && !strstr(format, "4:") &&
                      !strstr(format, "10"),
                  "not for browsers: %s", format);
}

/* GStreamer's x264enc, given raw video without a format, picks High 4:4:4 Predictive, 10-bit:
 * valid H.264 no browser plays. The source passes through as it is; the rung is made in 8-bit
 * 4:2:0, what browsers decode. */
START_TEST(a_gstreamer_publisher_in_444_10bit_gets_browser_rungs)
{
    char *key = create_channel("PE", "ch4");
    char *url = g_strdup_printf("rtmp://127.0.0.1:%d/live/%s", rtmp_port, key);
    char *location = g_strdup_printf("location=%s", url);
    const char *argv[] = {"gst-launch-1.0",
                          "-q",
                          "videotestsrc",
                          "is-live=true",
                          "num-buffers=600",
                          "!",
                          "video/x-raw,width=640,height=360,framerate=30/1",
                          "!",
                          "x264enc",
                          "tune=zerolatency",
                          "key-int-max=60",
                          "speed-preset=ultrafast",
                          "!",
                          "h264parse",
                          "!",
                          "flvmux",
                          "!",
                          "rtmp2sink",
                          location,
                          NULL};
    GPid pid = spawn_publisher(argv);
    char *source = newest_segment_format("ch4", "source");
    ck_assert_str_eq(source, "High 4:4:4 Predictive,yuv444p10le");
    char *rung = newest_segment_format("ch4", "240p");
    assert_browser_playable(rung);
    char *master = get_text("/hls/ch4/master.m3u8");
    reap(pid);
    g_free(master);
    g_free(rung);
    g_free(source);
    g_free(location);
    g_free(url);
    g_free(key);
}
END_TEST

/* ffmpeg with -pix_fmt yuv422p -profile:v high422: the rungs are 4:2:0 all the same. */
START_TEST(an_ffmpeg_publisher_in_422_gets_browser_rungs)
{
    char *key = create_channel("PE", "ch5");
    char *url = g_strdup_printf("rtmp://127.0.0.1:%d/live/%s", rtmp_port, key);
    const char *argv[] = {
        "ffmpeg",    "-hide_banner", "-loglevel", "error",      "-nostdin",
        "-re",       "-f",           "lavfi",     "-i",         "testsrc2=size=640x360:rate=30",
        "-t",        "20",           "-c:v",      "libx264",    "-preset",
        "ultrafast", "-pix_fmt",     "yuv422p",   "-profile:v", "high422",
        "-g",        "60",           "-f",        "flv",        url,
        NULL};
    GPid pid = spawn_publisher(argv);
    char *source = newest_segment_format("ch5", "source");
    ck_assert_str_eq(source, "High 4:2:2,yuv422p");
    char *rung = newest_segment_format("ch5", "240p");
    assert_browser_playable(rung);
    reap(pid);
    g_free(rung);
    g_free(source);
    g_free(url);
    g_free(key);
}
END_TEST

START_TEST(ladder_1080p)
{
    const char *rungs[] = {"720p", "480p", "360p"};
    const char *sizes[] = {"1280x720", "854x480", "640x360"};
    /* at 15 fps: three 1080p rungs at 30 fps plus the publisher's own encoder overran two
     * cores under ASan on a slow day, and the ladder rightly shed a rung */
    publish_and_check("CL", "ch1", "1920x1080", 15, rungs, sizes, 3);
    char *master = get_text("/hls/ch1/master.m3u8");
    ck_assert_ptr_nonnull(strstr(master, "RESOLUTION=1920x1080"));
    g_free(master);
}
END_TEST

START_TEST(a_pavilion_has_its_own_ladder)
{
    const char *rungs[] = {"240p"};
    const char *sizes[] = {"426x240"};
    publish_and_check("PE", "ch2", "640x360", 30, rungs, sizes, 1);
}
END_TEST

/* Hosts stream from phones held upright: a rung keeps the orientation, its "240p" the short
 * side. */
START_TEST(a_portrait_source_keeps_its_orientation)
{
    const char *rungs[] = {"240p"};
    const char *sizes[] = {"240x426"};
    publish_and_check("PE", "ch3", "360x640", 30, rungs, sizes, 1);
}
END_TEST

START_TEST(overload_sheds_rungs_keeps_the_source_and_restores)
{
    char *key = create_channel("CL", "ch1");
    GPid pid = ffmpeg_publish(key, "1920x1080", 75);
    int64_t shed = 0, restored = 0;
    /* Each new pipeline gets 5 s to warm up before its drops count, then 2 s behind shed a rung:
     * on a slow machine all four go (about 28 s) before the quiet that restores one (7 s). */
    for (int i = 0; i < 500 && (shed == 0 || restored == 0); i++) {
        g_usleep(100000);
        shed = harness_metric(sl.port, "silklive_transcode_rungs_shed_total");
        restored = harness_metric(sl.port, "silklive_transcode_rungs_restored_total");
    }
    ck_assert_msg(shed > 0, "no rung was shed at 1080p with preset medium");
    ck_assert_msg(restored > 0, "a shed rung never came back");
    /* the source never stopped: new segments keep coming, at its own pace (one per 2 s) */
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int i = 0; i < 16; i++) {
        char *text = get_text("/hls/ch1/source/index.m3u8");
        const char *last = text ? g_strrstr(text, ".ts") : NULL;
        const char *begin = last;
        while (begin && begin > text && begin[-1] != '\n')
            begin--;
        if (last) g_hash_table_add(seen, g_strndup(begin, (gsize)(last - begin)));
        g_free(text);
        g_usleep(500 * 1000);
    }
    ck_assert_int_ge(g_hash_table_size(seen), 3);
    g_hash_table_unref(seen);
    /* Pipelines were rebuilt mid-stream (shed, restored): the picture's clock goes on. Every
     * PROGRAM-DATE-TIME follows the one before, and the newest is close to now (a rebuilt
     * pipeline once started its dates again from the broadcast's start). */
    char *playlist = get_text("/hls/ch1/source/index.m3u8");
    ck_assert_ptr_nonnull(playlist);
    gchar **lines = g_strsplit(playlist, "\n", -1);
    gint64 prev_us = 0, n_pdt = 0;
    for (gchar **l = lines; *l; l++) {
        if (!g_str_has_prefix(*l, "#EXT-X-PROGRAM-DATE-TIME:")) continue;
        GDateTime *t = g_date_time_new_from_iso8601(*l + strlen("#EXT-X-PROGRAM-DATE-TIME:"), NULL);
        ck_assert_msg(t != NULL, "bad date %s", *l);
        gint64 us = g_date_time_to_unix(t) * G_USEC_PER_SEC + g_date_time_get_microsecond(t);
        g_date_time_unref(t);
        ck_assert_msg(us > prev_us, "PROGRAM-DATE-TIME went back: %s", *l);
        prev_us = us;
        n_pdt++;
    }
    g_strfreev(lines);
    g_free(playlist);
    ck_assert_int_ge(n_pdt, 2);
    gint64 behind_s = (g_get_real_time() - prev_us) / G_USEC_PER_SEC;
    ck_assert_msg(behind_s < 20, "the newest segment is dated %" G_GINT64_FORMAT " s ago",
                  behind_s);
    char *master = get_text("/hls/ch1/master.m3u8");
    ck_assert_ptr_nonnull(strstr(master, "source/index.m3u8"));
    g_free(master);
    reap(pid);
    g_free(key);
}
END_TEST

static Suite *transcode_suite(void)
{
    Suite *s = suite_create("transcode");
    TCase *tc = tcase_create("ladder");
    tcase_add_checked_fixture(tc, start_default, stop);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, ladder_720p_poster_highlight_and_recording);
    tcase_add_test(tc, ladder_1080p);
    tcase_add_test(tc, a_pavilion_has_its_own_ladder);
    tcase_add_test(tc, a_portrait_source_keeps_its_orientation);
    tcase_add_test(tc, a_gstreamer_publisher_in_444_10bit_gets_browser_rungs);
    tcase_add_test(tc, an_ffmpeg_publisher_in_422_gets_browser_rungs);
    suite_add_tcase(s, tc);
    TCase *load = tcase_create("overload");
    tcase_add_checked_fixture(load, start_overloaded, stop);
    tcase_set_timeout(load, 180);
    tcase_add_test(load, overload_sheds_rungs_keeps_the_source_and_restores);
    suite_add_tcase(s, load);
    return s;
}

int main(void)
{
    return harness_run_suite(transcode_suite());
}
