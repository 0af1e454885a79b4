/* Integration tests of ingest + transcode with real encoders: ffmpeg and GStreamer's rtmp2sink
 * publish to the real silklive; the HLS it writes is checked with ffprobe; wrong keys, duplicate
 * publishers, key rotation, reconnects within the grace period and garbage on the port. */
#include "core/core.h"
#include "room/room.h"
#include "harness/harness.h"

#include <check.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET    "ingest-test-secret"
#define SEGMENT_S 2
#define GRACE_S   3

static struct harness_redis redis;
static struct harness_silklive sl;
static char *config_dir;
static int rtmp_port;
static char *stream_key;

static void start(void)
{
    harness_redis_start(&redis, NULL);
    config_dir = harness_tmpdir();
    char *ini = g_build_filename(config_dir, "silklive.ini", NULL);
    char *text = g_strdup_printf("[transcode]\nsegment_s = %d\ngrace_s = %d\nretention_s = 60\n",
                                 SEGMENT_S, GRACE_S);
    g_file_set_contents(ini, text, -1, NULL);
    g_free(text);
    char url[64], rtmp[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    rtmp_port = harness_free_port();
    g_snprintf(rtmp, sizeof rtmp, "127.0.0.1:%d", rtmp_port);
    const char *args[] = {"--redis",       url,  "--secret",  SECRET,
                          "--config",      ini,  "--modules", "commerce,transcode,ingest",
                          "--rtmp-listen", rtmp, NULL};
    ck_assert_msg(harness_silklive_start(&sl, args, NULL), "silklive did not start");
    g_free(ini);
    /* a pavilion and its channel "ch1": its stream key */
    char *admin = harness_token(SECRET, SL_ROLE_ADMIN, "root", NULL);
    char *consul = harness_token(SECRET, SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions", admin, NULL,
                                 "{\"code\":\"CL\",\"name\":{\"en\":\"Chile\",\"zh\":\"智利\"},"
                                 "\"currency\":\"CLP\",\"languages\":[\"es\"]}",
                                 NULL),
                     201);
    json_t *ch = NULL;
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions/CL/channels", consul, NULL,
                                 "{\"id\":\"ch1\",\"title\":{\"en\":\"Wine\"}}", &ch),
                     201);
    stream_key = g_strdup(json_string_value(json_object_get(ch, "stream_key")));
    json_decref(ch);
    g_free(admin);
    g_free(consul);
}

static void stop(void)
{
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    harness_redis_stop(&redis);
    harness_rmtree(config_dir);
    g_free(config_dir);
    g_clear_pointer(&stream_key, g_free);
}

/* ---- encoders ---- */

static char *rtmp_url(const char *key)
{
    return g_strdup_printf("rtmp://127.0.0.1:%d/live/%s", rtmp_port, key);
}

/* ffmpeg -re: a 320x240 test pattern and a tone, x264 + AAC, keyframes every 2 s. */
static GPid ffmpeg_publish(const char *key, int seconds)
{
    char *url = rtmp_url(key);
    GPid pid = harness_ffmpeg_publish(url, "320x240", 25, 50, "veryfast", seconds);
    g_free(url);
    return pid;
}

/* Wait for pid up to timeout_s; returns its exit status, or -1 (then it is killed). */
static int wait_exit(GPid pid, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
        g_usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static gboolean running(GPid pid)
{
    return waitpid(pid, NULL, WNOHANG) == 0;
}

/* ---- HLS ---- */

static char *get_text(const char *path, int *status)
{
    struct harness_response r;
    if (harness_http(sl.port, "GET", path, NULL, NULL, 0, &r) != 0) return NULL;
    *status = r.status;
    char *body = r.status == 200 ? g_strdup(r.body) : NULL;
    harness_response_free(&r);
    return body;
}

static char *playlist(void)
{
    int st = 0;
    return get_text("/hls/ch1/source/index.m3u8", &st);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Poll the playlist until it lists n segments (or timeout_s); returns it (g_free) or NULL. */
static char *wait_segments(int n, int timeout_s)
{
    for (int i = 0; i < timeout_s * 20; i++) {
        char *p = playlist();
        if (count(p, "#EXTINF:") >= n) return p;
        g_free(p);
        g_usleep(50000);
    }
    return NULL;
}

/* ffprobe one segment of the source rendition, which must have no error: its codecs, one per
 * line (g_free). */
static char *segment_codecs(const char *name)
{
    char *file = g_build_filename(sl.media_dir, "ch1", "source", name, NULL);
    const char *argv[] = {"ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of",
                          "csv=p=0", file, NULL};
    char *out = NULL, *err = NULL;
    int st = 0;
    ck_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                           &st, NULL));
    ck_assert_msg(st == 0 && *err == '\0', "ffprobe %s: %s", name, err);
    g_free(err);
    g_free(file);
    return out;
}

/* ffprobe every segment the playlist lists: H.264 and AAC, and not one error. */
static void probe_segments(const char *text)
{
    gchar **lines = g_strsplit(text, "\n", -1);
    int probed = 0;
    for (gchar **l = lines; *l; l++) {
        if (!g_str_has_suffix(*l, ".ts")) continue;
        char *out = segment_codecs(*l);
        ck_assert_msg(strstr(out, "h264") && strstr(out, "aac"), "%s has %s", *l, out);
        g_free(out);
        probed++;
    }
    ck_assert_int_gt(probed, 0);
    g_strfreev(lines);
}

/* The codecs of the newest segment the playlist lists (g_free); ffprobe lists a stream once
 * more under its program. */
static char *last_segment_codecs(const char *text)
{
    const char *end = g_strrstr(text, ".ts\n");
    ck_assert_ptr_nonnull(end);
    const char *start = end;
    while (start > text && start[-1] != '\n')
        start--;
    char *name = g_strndup(start, (gsize)(end - start) + 3);
    char *codecs = segment_codecs(name);
    g_free(name);
    return codecs;
}

static GPid spawn(const char *const *argv)
{
    GPid pid;
    GError *e = NULL;
    ck_assert_msg(g_spawn_async(NULL, (char **)argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid,
                                &e),
                  "%s: %s", argv[0], e ? e->message : "");
    return pid;
}

static int64_t first_pdt_ms(const char *text)
{
    const char *p = strstr(text, "#EXT-X-PROGRAM-DATE-TIME:");
    ck_assert_ptr_nonnull(p);
    char iso[32] = {0};
    memcpy(iso, p + 25, MIN(24, strcspn(p + 25, "\n")));
    GDateTime *t = g_date_time_new_from_iso8601(iso, NULL);
    ck_assert_ptr_nonnull(t);
    int64_t ms = g_date_time_to_unix(t) * 1000 + g_date_time_get_microsecond(t) / 1000;
    g_date_time_unref(t);
    return ms;
}

static json_t *channel(void)
{
    json_t *c = NULL;
    ck_assert_int_eq(harness_api(sl.port, "GET", "/api/v1/channels/ch1", NULL, NULL, NULL, &c),
                     200);
    return c;
}

static gboolean history_has(const char *event)
{
    char *h = harness_redis_cmd(redis.port, "XRANGE sl:{room:ch1}:history - +");
    char *needle = g_strdup_printf("\"event\":\"%s\"", event);
    gboolean found = h && strstr(h, needle);
    g_free(needle);
    g_free(h);
    return found;
}

/* Room events are stored by Redis a moment after the state change: poll up to 2 s. */
static gboolean history_gets(const char *event)
{
    for (int i = 0; i < 20; i++) {
        if (history_has(event)) return TRUE;
        g_usleep(100000);
    }
    return FALSE;
}

static int64_t metric(const char *series)
{
    return harness_metric(sl.port, series);
}

/* ---- tests ---- */

/* A product pinned while live: the pin event carries pdt_ms, the program-date-time of the
 * picture at that moment, on the playlist's timeline (after its first segment began, no later
 * than the wall clock, and within a few seconds of it: the encoder runs in real time). */
static void check_pin_pdt(void)
{
    char *consul = harness_token(SECRET, SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/pavilions/CL/products", consul, NULL,
                                 "{\"sku\":\"p1\",\"title\":{\"en\":\"Wine\"},"
                                 "\"price\":{\"amount_minor\":100,\"currency\":\"CLP\"},"
                                 "\"price_cny_fen\":100,\"stock_location\":\"overseas\"}",
                                 NULL),
                     201);
    char *p = playlist();
    ck_assert_ptr_nonnull(p);
    int64_t first = first_pdt_ms(p);
    g_free(p);
    int64_t before = sl_now_ms();
    ck_assert_int_eq(harness_api(sl.port, "POST", "/api/v1/channels/ch1/pin", consul, NULL,
                                 "{\"sku\":\"p1\"}", NULL),
                     200);
    json_t *pin = NULL;
    for (int i = 0; i < 20 && pin == NULL; i++) {
        char *h = harness_redis_cmd(redis.port, "XREVRANGE sl:{room:ch1}:history + - COUNT 1");
        const char *j = h ? strchr(h, '{') : NULL;
        json_t *ev = j ? json_loads(j, 0, NULL) : NULL;
        if (ev && g_strcmp0(json_string_value(json_object_get(ev, "type")), "pin") == 0)
            pin = ev;
        else
            json_decref(ev), g_usleep(100000);
        g_free(h);
    }
    ck_assert_msg(pin != NULL, "no pin event");
    json_t *pdt = json_object_get(pin, "pdt_ms");
    ck_assert_msg(json_is_integer(pdt), "the pin event of a live channel has no pdt_ms");
    int64_t v = json_integer_value(pdt), ts = json_integer_value(json_object_get(pin, "ts_ms"));
    ck_assert_int_ge(v, first);
    ck_assert_int_le(v, ts + 500);
    ck_assert_int_ge(v, before - 5000);
    json_decref(pin);
    g_free(consul);
}

START_TEST(ffmpeg_goes_live)
{
    GPid enc = ffmpeg_publish(stream_key, 9);
    char *p = wait_segments(1, 15);
    int64_t listed_ms = sl_now_ms();
    ck_assert_msg(p != NULL, "no segment listed");
    /* the first segment starts at the first keyframe: listed within its length + 1 s of it */
    int64_t lag = listed_ms - first_pdt_ms(p);
    ck_assert_msg(lag <= (SEGMENT_S + 1) * 1000,
                  "first segment listed %" G_GINT64_FORMAT " ms after its first frame", lag);
    g_free(p);
    p = wait_segments(3, 10);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(count(p, "#EXT-X-PROGRAM-DATE-TIME:"), count(p, "#EXTINF:"));
    ck_assert(strstr(p, "#EXT-X-ENDLIST") == NULL);
    probe_segments(p);

    /* the multivariant playlist and the content types / caching the CDN relies on */
    struct harness_response r;
    ck_assert_int_eq(harness_http(sl.port, "GET", "/hls/ch1/master.m3u8", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strstr(r.body, "#EXT-X-STREAM-INF:BANDWIDTH=") && strstr(r.body, "320x240") &&
              strstr(r.body, "avc1.") && strstr(r.body, "mp4a.40.2") &&
              strstr(r.body, "source/index.m3u8") && strstr(r.body, "FRAME-RATE=25.000"));
    char *ct = harness_header(&r, "content-type"), *cc = harness_header(&r, "cache-control");
    ck_assert_str_eq(ct, "application/vnd.apple.mpegurl");
    ck_assert_str_eq(cc, "no-cache");
    g_free(ct);
    g_free(cc);
    harness_response_free(&r);
    const char *seg = strstr(p, ".ts\n");
    const char *start = seg;
    while (start > p && start[-1] != '\n')
        start--;
    char *path = g_strdup_printf("/hls/ch1/source/%.*s.ts", (int)(seg - start), start);
    ck_assert_int_eq(harness_http(sl.port, "GET", path, NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ct = harness_header(&r, "content-type");
    cc = harness_header(&r, "cache-control");
    ck_assert_str_eq(ct, "video/mp2t");
    ck_assert(strstr(cc, "immutable") != NULL);
    g_free(ct);
    g_free(cc);
    g_free(path);
    harness_response_free(&r);
    g_free(p);
    /* the poster: a JPEG of the first keyframe (made on a worker: allow it a moment) */
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(harness_http(sl.port, "GET", "/hls/ch1/poster.jpg", NULL, NULL, 0, &r), 0);
        if (r.status == 200) break;
        harness_response_free(&r);
        g_usleep(100000);
    }
    ck_assert_int_eq(r.status, 200);
    ct = harness_header(&r, "content-type");
    ck_assert_str_eq(ct, "image/jpeg");
    ck_assert(r.body_len > 100 && (uint8_t)r.body[0] == 0xff && (uint8_t)r.body[1] == 0xd8);
    g_free(ct);
    harness_response_free(&r);

    json_t *c = channel();
    ck_assert(json_is_true(json_object_get(c, "live")));
    ck_assert_int_gt(json_integer_value(json_object_get(c, "started_at_ms")), 0);
    json_t *rend = json_array_get(json_object_get(c, "renditions"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(rend, "width")), 320);
    ck_assert_int_eq(json_integer_value(json_object_get(rend, "height")), 240);
    ck_assert_int_gt(json_integer_value(json_object_get(rend, "bandwidth")), 0);
    json_decref(c);
    ck_assert(history_has("publish"));
    ck_assert_int_eq(metric("silklive_rtmp_publishers"), 1);
    check_pin_pdt();

    /* the encoder stops: after the grace period the playlist ends and the channel is offline */
    ck_assert_int_eq(wait_exit(enc, 20), 0);
    ck_assert(history_gets("unpublish"));
    char *ended = NULL;
    for (int i = 0; i < (GRACE_S + 5) * 10 && ended == NULL; i++) {
        char *q = playlist();
        if (q && strstr(q, "#EXT-X-ENDLIST"))
            ended = q;
        else
            g_free(q), g_usleep(100000);
    }
    ck_assert_msg(ended != NULL, "the playlist never ended");
    g_free(ended);
    c = channel();
    ck_assert(json_is_false(json_object_get(c, "live")));
    json_decref(c);
    ck_assert(history_has("offline"));
    int st = 0;
    char *live = get_text("/api/v1/channels?live=true", &st);
    ck_assert(live && strstr(live, "\"ch1\"") == NULL);
    g_free(live);
}
END_TEST

START_TEST(rtmp2sink_goes_live)
{
    char *url = rtmp_url(stream_key);
    char *loc = g_strdup_printf("location=%s", url);
    const char *argv[] = {"gst-launch-1.0",
                          "-q",
                          "-e",
                          "videotestsrc",
                          "is-live=true",
                          "num-buffers=200",
                          "!",
                          "video/x-raw,width=320,height=240,framerate=25/1",
                          "!",
                          "x264enc",
                          "tune=zerolatency",
                          "speed-preset=veryfast",
                          "key-int-max=50",
                          "!",
                          "h264parse",
                          "!",
                          "flvmux",
                          "name=m",
                          "streamable=true",
                          "!",
                          "rtmp2sink",
                          loc,
                          "audiotestsrc",
                          "is-live=true",
                          "num-buffers=350",
                          "!",
                          "audioconvert",
                          "!",
                          "avenc_aac",
                          "!",
                          "aacparse",
                          "!",
                          "m.",
                          NULL};
    GPid pid = spawn(argv);
    char *p = wait_segments(2, 20);
    ck_assert_msg(p != NULL, "rtmp2sink: no segments listed");
    probe_segments(p);
    g_free(p);
    ck_assert_int_eq(wait_exit(pid, 30), 0);
    g_free(loc);
    g_free(url);
}
END_TEST

START_TEST(keys_are_checked)
{
    /* unknown key: refused at publish, the encoder fails */
    GPid bad = ffmpeg_publish("sk_not_a_real_key_000000000000", 5);
    ck_assert_int_ne(wait_exit(bad, 15), 0);
    ck_assert_int_eq(metric("silklive_rtmp_refused_total{reason=\"key\"}"), 1);

    /* a second publisher on a live channel is refused; the first goes on */
    GPid first = ffmpeg_publish(stream_key, 30);
    for (int i = 0; i < 100 && metric("silklive_rtmp_publishers") != 1; i++)
        g_usleep(100000);
    ck_assert_int_eq(metric("silklive_rtmp_publishers"), 1);
    GPid second = ffmpeg_publish(stream_key, 5);
    ck_assert_int_ne(wait_exit(second, 15), 0);
    ck_assert_int_eq(metric("silklive_rtmp_refused_total{reason=\"busy\"}"), 1);
    ck_assert(running(first));

    /* rotating the key disconnects the publisher that uses the old one */
    char *consul = harness_token(SECRET, SL_ROLE_CONSUL, "c1", "CL");
    json_t *rot = NULL;
    ck_assert_int_eq(
        harness_api(sl.port, "POST", "/api/v1/channels/ch1/stream-key", consul, NULL, NULL, &rot),
        200);
    ck_assert_str_ne(json_string_value(json_object_get(rot, "stream_key")), stream_key);
    json_decref(rot);
    g_free(consul);
    ck_assert_int_ne(wait_exit(first, 10), -1); /* it ended well before its 30 s */
    ck_assert_int_eq(metric("silklive_rtmp_publishers"), 0);
    /* and the old key no longer works */
    GPid old = ffmpeg_publish(stream_key, 5);
    ck_assert_int_ne(wait_exit(old, 15), 0);
}
END_TEST

START_TEST(reconnect_within_grace_continues)
{
    GPid a = ffmpeg_publish(stream_key, 5);
    char *p = wait_segments(1, 15);
    ck_assert_ptr_nonnull(p);
    g_free(p);
    ck_assert_int_eq(wait_exit(a, 20), 0);
    int before = count(p = playlist(), "#EXTINF:");
    g_free(p);
    GPid b = ffmpeg_publish(stream_key, 5); /* back well within the 3 s grace */
    p = wait_segments(before + 1, 15);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(count(p, "#EXT-X-DISCONTINUITY\n"), 1);
    ck_assert(strstr(p, "#EXT-X-MEDIA-SEQUENCE:0\n") != NULL); /* the same playlist */
    ck_assert(strstr(p, "#EXT-X-ENDLIST") == NULL);
    probe_segments(p);
    g_free(p);
    ck_assert_int_eq(wait_exit(b, 20), 0);
    json_t *c = channel();
    ck_assert(json_is_true(json_object_get(c, "live"))); /* still in the grace period */
    json_decref(c);
}
END_TEST

/* A radio-style stream with no picture, then a camera with no microphone: each goes live with
 * the one track it has. */
START_TEST(single_track_streams_go_live)
{
    char *url = rtmp_url(stream_key);
    const char *audio[] = {"ffmpeg",    "-hide_banner",
                           "-loglevel", "error",
                           "-nostdin",  "-re",
                           "-f",        "lavfi",
                           "-i",        "sine=frequency=440",
                           "-t",        "6",
                           "-c:a",      "aac",
                           "-f",        "flv",
                           url,         NULL};
    GPid a = spawn(audio);
    char *p = wait_segments(2, 15);
    ck_assert_msg(p != NULL, "audio only: no segments listed");
    char *codecs = last_segment_codecs(p);
    ck_assert_msg(strstr(codecs, "aac") && !strstr(codecs, "h264"), "audio only: %s", codecs);
    g_free(codecs);
    g_free(p);
    int st = 0;
    char *master = get_text("/hls/ch1/master.m3u8", &st);
    ck_assert_ptr_nonnull(master);
    ck_assert_msg(strstr(master, "CODECS=\"mp4a.40.2\"") && !strstr(master, "RESOLUTION="),
                  "audio-only master:\n%s", master);
    g_free(master);
    ck_assert_int_eq(wait_exit(a, 20), 0);

    int before = count(p = playlist(), "#EXTINF:");
    g_free(p);
    const char *video[] = {"ffmpeg",    "-hide_banner",
                           "-loglevel", "error",
                           "-nostdin",  "-re",
                           "-f",        "lavfi",
                           "-i",        "testsrc2=size=320x240:rate=25",
                           "-t",        "6",
                           "-c:v",      "libx264",
                           "-preset",   "veryfast",
                           "-g",        "50",
                           "-f",        "flv",
                           url,         NULL};
    GPid v = spawn(video); /* within the grace period: the same playlist goes on */
    p = wait_segments(before + 2, 15);
    ck_assert_msg(p != NULL, "video only: no segments listed");
    codecs = last_segment_codecs(p);
    ck_assert_msg(strstr(codecs, "h264") && !strstr(codecs, "aac"), "video only: %s", codecs);
    g_free(codecs);
    g_free(p);
    ck_assert_int_eq(wait_exit(v, 20), 0);
    g_free(url);
}
END_TEST

START_TEST(garbage_never_takes_it_down)
{
    GRand *rand = g_rand_new_with_seed(7);
    for (int round = 0; round < 20; round++) {
        size_t n = (size_t)g_rand_int_range(rand, 1, 70000);
        char *junk = g_malloc(n);
        for (size_t i = 0; i < n; i++)
            junk[i] = (char)g_rand_int(rand);
        if (round % 2) junk[0] = 3; /* a valid C0: the junk reaches the handshake and chunks */
        size_t got = 0;
        g_free(harness_raw(rtmp_port, junk, n, &got));
        g_free(junk);
    }
    /* HTTP on the RTMP port, and a chunk header asking for a 16 MiB message */
    size_t got = 0;
    g_free(harness_raw(rtmp_port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &got));
    g_rand_free(rand);
    ck_assert_int_gt(metric("silklive_rtmp_protocol_errors_total"), 0);
    ck_assert_int_eq(metric("silklive_rtmp_connections"), 0);
    /* still serving, and a real encoder still goes live */
    GPid enc = ffmpeg_publish(stream_key, 4);
    char *p = wait_segments(1, 15);
    ck_assert_ptr_nonnull(p);
    g_free(p);
    ck_assert_int_eq(wait_exit(enc, 20), 0);
}
END_TEST

/* ---- --demo: the demo channel is live by itself ---- */

static void start_demo(void)
{
    harness_redis_start(&redis, NULL);
    char url[64], rtmp[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    rtmp_port = harness_free_port();
    g_snprintf(rtmp, sizeof rtmp, "127.0.0.1:%d", rtmp_port);
    const char *args[] = {"--redis",       url,  "--secret", SECRET,
                          "--rtmp-listen", rtmp, "--demo",   NULL};
    ck_assert_msg(harness_silklive_start(&sl, args, NULL), "silklive did not start");
}

static void stop_demo(void)
{
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    harness_redis_stop(&redis);
}

/* Polls the demo channel's master playlist until it names resolution (or timeout_s). */
static gboolean demo_master_shows(const char *resolution, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        int st = 0;
        char *m = get_text("/hls/" SL_DEMO_CHANNEL "/master.m3u8", &st);
        gboolean yes = m && strstr(m, resolution);
        g_free(m);
        if (yes) return TRUE;
        g_usleep(100000);
    }
    return FALSE;
}

/* The demo publishes its own test pattern (H.264 High 4:2:0 8-bit, AAC) through the RTMP port;
 * a host's encoder with the channel's real key takes over, and the pattern returns after it. */
START_TEST(demo_goes_live_by_itself_and_gives_way)
{
    ck_assert_msg(demo_master_shows("RESOLUTION=854x480", 40), "the demo channel is not live");
    int st = 0;
    char *source = NULL;
    for (int i = 0; i < 200 && count(source, "#EXTINF:") < 2; i++) {
        g_free(source);
        g_usleep(100000);
        source = get_text("/hls/" SL_DEMO_CHANNEL "/source/index.m3u8", &st);
    }
    ck_assert_msg(count(source, "#EXTINF:") >= 2, "playlist: %s", source);
    g_free(source);
    char *master = get_text("/hls/" SL_DEMO_CHANNEL "/master.m3u8", &st);
    ck_assert_msg(strstr(master, "avc1.64") && strstr(master, "mp4a.40.2"), "%s", master);
    g_free(master);

    char *consul = harness_token(SECRET, SL_ROLE_CONSUL, "c1", "CL");
    json_t *ch = NULL;
    ck_assert_int_eq(
        harness_api(sl.port, "GET", "/api/v1/channels/" SL_DEMO_CHANNEL, consul, NULL, NULL, &ch),
        200);
    const char *key = json_string_value(json_object_get(ch, "stream_key"));
    ck_assert_ptr_nonnull(key);
    GPid enc = ffmpeg_publish(key, 8);
    ck_assert_msg(demo_master_shows("RESOLUTION=320x240", 20),
                  "the host's encoder did not take over");
    ck_assert_int_eq(wait_exit(enc, 30), 0); /* never refused */
    ck_assert_msg(demo_master_shows("RESOLUTION=854x480", 30), "the test pattern did not return");
    json_decref(ch);
    g_free(consul);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("encoders");
    tcase_add_checked_fixture(tc, start, stop);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ffmpeg_goes_live);
    tcase_add_test(tc, rtmp2sink_goes_live);
    tcase_add_test(tc, keys_are_checked);
    tcase_add_test(tc, reconnect_within_grace_continues);
    tcase_add_test(tc, single_track_streams_go_live);
    tcase_add_test(tc, garbage_never_takes_it_down);
    suite_add_tcase(s, tc);
    TCase *demo = tcase_create("demo");
    tcase_add_checked_fixture(demo, start_demo, stop_demo);
    tcase_set_timeout(demo, 150);
    tcase_add_test(demo, demo_goes_live_by_itself_and_gives_way);
    suite_add_tcase(s, demo);
    return s;
}

int main(void)
{
    return harness_run_suite(ingest_suite());
}
