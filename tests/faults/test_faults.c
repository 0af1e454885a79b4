/* Faults silklive must survive, each against the real binary, a real redis-server and real
 * encoders: Redis killed mid-sale under load, a publisher that vanishes or is reset mid-chunk,
 * a thousand WebSocket clients that stop reading, a full media disk, and SIGTERM under load.
 * What each one measured and lost is reported in docs/RELIABILITY.md. */
#include "core/core.h"
#include "harness/harness.h"
#include "harness/ws.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET "faults-test-secret"
#define WAIT   10000

static struct harness_redis redis;
static struct harness_silklive sl;
static char *config_dir;
static int rtmp_port;
static char *stream_key;

static char *token(enum sl_role role, const char *sub, const char *pav)
{
    return harness_token(SECRET, role, sub, pav);
}

static int api(const char *method, const char *path, const char *tok, const char *idem,
               const char *body, json_t **out)
{
    return harness_api(sl.port, method, path, tok, idem, body, out);
}

static json_int_t num(json_t *j, const char *k)
{
    return json_integer_value(json_object_get(j, k));
}

/* silklive with modules and config text on Redis at url (the test's Redis when NULL). */
static void start_silklive(const char *modules, const char *ini_text, const char *redis_url,
                           const char *media_dir)
{
    config_dir = harness_tmpdir();
    char *ini = g_build_filename(config_dir, "silklive.ini", NULL);
    /* buyers pay through the dev provider; a payment keeps its hold only briefly, so every
     * hold left unpaid by a fault expires within the tests' wait */
    char *text = g_strconcat(
        ini_text, "\n[payments]\ndev = true\nmin_hold_s = 2\nnotify_grace_s = 0\n", NULL);
    ck_assert(g_file_set_contents(ini, text, -1, NULL));
    g_free(text);
    char url[128], rtmp[64];
    if (redis_url)
        g_strlcpy(url, redis_url, sizeof url);
    else
        g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    rtmp_port = harness_free_port();
    g_snprintf(rtmp, sizeof rtmp, "127.0.0.1:%d", rtmp_port);
    const char *args[] = {"--redis",
                          url,
                          "--secret",
                          SECRET,
                          "--config",
                          ini,
                          "--modules",
                          modules,
                          "--rtmp-listen",
                          rtmp,
                          media_dir ? "--media-dir" : NULL,
                          media_dir,
                          NULL};
    ck_assert_msg(harness_silklive_start(&sl, args, NULL), "silklive did not start");
    g_free(ini);
}

/* The test's Redis (started with redis_args), then silklive on it. */
static void start_with(const char *modules, const char *ini_text, const char *const *redis_args,
                       const char *media_dir)
{
    harness_redis_start(&redis, redis_args);
    start_silklive(modules, ini_text, NULL, media_dir);
}

static void stop(void)
{
    gboolean running = sl.pid > 0;
    int status = harness_silklive_stop(&sl); /* also removes its directories */
    if (running) ck_assert_int_eq(status, 0);
    harness_redis_stop(&redis);
    harness_rmtree(config_dir);
    g_free(config_dir);
    g_clear_pointer(&stream_key, g_free);
}

/* Pavilion CL, channel ch1 (its stream key kept), product p1 and, when qty > 0, an active sale
 * of it; returns the sale id or NULL. */
static char *seed(int qty, int ttl_s)
{
    char *admin = token(SL_ROLE_ADMIN, "root", NULL), *consul = token(SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(api("POST", "/api/v1/pavilions", admin, NULL,
                         "{\"code\":\"CL\",\"name\":{\"en\":\"Chile\",\"zh\":\"智利\"},"
                         "\"currency\":\"CLP\",\"languages\":[\"es\",\"zh\"]}",
                         NULL),
                     201);
    json_t *ch = NULL;
    ck_assert_int_eq(api("POST", "/api/v1/pavilions/CL/channels", consul, NULL,
                         "{\"id\":\"ch1\",\"title\":{\"en\":\"Wine\"}}", &ch),
                     201);
    stream_key = g_strdup(json_string_value(json_object_get(ch, "stream_key")));
    json_decref(ch);
    ck_assert_int_eq(api("POST", "/api/v1/pavilions/CL/products", consul, NULL,
                         "{\"sku\":\"p1\",\"title\":{\"en\":\"Wine\",\"zh\":\"葡萄酒\"},"
                         "\"price\":{\"amount_minor\":3000,\"currency\":\"CLP\"},"
                         "\"price_cny_fen\":3000,\"stock_location\":\"bonded_sh\"}",
                         NULL),
                     201);
    char *id = NULL;
    if (qty > 0) {
        char *body = g_strdup_printf("{\"channel\":\"ch1\",\"sku\":\"p1\",\"quantity\":%d,"
                                     "\"per_user_limit\":1,\"hold_ttl_s\":%d}",
                                     qty, ttl_s);
        json_t *s = NULL;
        ck_assert_int_eq(api("POST", "/api/v1/sales", consul, NULL, body, &s), 201);
        id = g_strdup(json_string_value(json_object_get(s, "id")));
        json_decref(s);
        g_free(body);
    }
    g_free(admin);
    g_free(consul);
    return id;
}

/* The sale as GET shows it, with the invariant checked. */
static json_t *get_sale(const char *id)
{
    return harness_sale(sl.port, id);
}

/* ---- buyers: threads that reserve and confirm until told to stop ---- */

#define N_BUYERS 6

struct order {
    char user[32];
    char id[64];
};

struct buyers;

struct buyer {
    struct buyers *b;
    int n;
};

struct buyers {
    const char *sale;
    int port;
    volatile gint stop;
    GMutex lock;
    GArray *orders; /* struct order: every confirm answered 200 */
    int attempts, unavailable, sold_out, unexpected;
    int last_unexpected;
    gint64 last_unavailable_us; /* when a 503 last came back */
    GThread *threads[N_BUYERS];
    struct buyer each[N_BUYERS];
};

/* One purchase of user: reserve, then (four times in five) confirm. */
static void buy_once(struct buyers *b, const char *user, gboolean pay)
{
    char *tok = token(SL_ROLE_VIEWER, user, NULL);
    char path[160];
    g_snprintf(path, sizeof path, "/api/v1/sales/%s/reservations", b->sale);
    json_t *r = NULL, *o = NULL;
    int st = harness_api(b->port, "POST", path, tok, "k", "{\"qty\":1}", &r);
    int cst = 0;
    if ((st == 201 || st == 200) && pay) {
        cst = harness_pay(b->port, tok, json_string_value(json_object_get(r, "reservation_id")),
                          user, &o);
    }
    g_mutex_lock(&b->lock);
    b->attempts++;
    int codes[2] = {st, cst};
    for (int i = 0; i < 2; i++) {
        if (codes[i] == 503) {
            b->unavailable++;
            b->last_unavailable_us = g_get_monotonic_time();
        } else if (codes[i] == 409)
            b->sold_out++;
        else if (codes[i] != 0 && codes[i] != 200 && codes[i] != 201 && codes[i] != -1) {
            b->unexpected++;
            b->last_unexpected = codes[i];
        }
    }
    if (cst == 200) {
        struct order ord = {0};
        g_strlcpy(ord.user, user, sizeof ord.user);
        g_strlcpy(ord.id, json_string_value(json_object_get(o, "order_id")), sizeof ord.id);
        g_array_append_val(b->orders, ord);
    }
    g_mutex_unlock(&b->lock);
    json_decref(r);
    json_decref(o);
    g_free(tok);
}

static gpointer buyer_run(gpointer data)
{
    struct buyer *me = data;
    for (int i = 0; !g_atomic_int_get(&me->b->stop); i++) {
        char user[32];
        g_snprintf(user, sizeof user, "b%d-%d", me->n, i);
        buy_once(me->b, user, i % 5 != 4);
        g_usleep(15000);
    }
    return NULL;
}

/* Buyers of sale on silklive, buying for 1.5 s before this returns. */
static void buyers_start(struct buyers *b, const char *sale)
{
    memset(b, 0, sizeof *b);
    b->sale = sale;
    b->port = sl.port;
    g_mutex_init(&b->lock);
    b->orders = g_array_new(FALSE, TRUE, sizeof(struct order));
    for (int i = 0; i < N_BUYERS; i++) {
        b->each[i].b = b;
        b->each[i].n = i;
        b->threads[i] = g_thread_new("buyer", buyer_run, &b->each[i]);
    }
    g_usleep(1500000);
}

static void buyers_stop(struct buyers *b)
{
    g_atomic_int_set(&b->stop, 1);
    for (int i = 0; i < N_BUYERS; i++)
        g_thread_join(b->threads[i]);
}

static void buyers_free(struct buyers *b)
{
    g_array_unref(b->orders);
    g_mutex_clear(&b->lock);
}

/* Every order answered 200 is in Redis: its document, the buyer's index, the sale's stream. */
static void assert_orders_stored(const struct buyers *b, int redis_port)
{
    for (guint i = 0; i < b->orders->len; i++) {
        const struct order *o = &g_array_index(b->orders, struct order, i);
        char *doc = harness_redis_cmd(redis_port, "HGET sl:{sale:%s}:orderdocs %s", b->sale, o->id);
        char *indexed =
            harness_redis_cmd(redis_port, "ZSCORE sl:{buyer:%s}:orders %s", o->user, o->id);
        ck_assert_msg(indexed && *indexed, "order %s of %s is missing from the buyer's orders",
                      o->id, o->user);
        g_free(indexed);
        ck_assert_msg(doc && *doc, "order %s of %s was answered 200 but is not stored", o->id,
                      o->user);
        g_free(doc);
    }
    char *len = harness_redis_cmd(redis_port, "XLEN sl:{sale:%s}:orders", b->sale);
    ck_assert_int_ge(atoi(len), (int)b->orders->len);
    g_free(len);
}

/* ---- kill -9 Redis during a flash sale under load ---- */

START_TEST(redis_kill_9_during_a_sale_under_load)
{
    const char *aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    start_with("commerce", "[redis]\ntimeout_ms = 500\n", aof, NULL);
    const int qty = 700, ttl_s = 5;
    char *sale = seed(qty, ttl_s);
    struct buyers b;
    buyers_start(&b, sale);

    gint64 killed_us = g_get_monotonic_time();
    kill(redis.pid, SIGKILL);
    waitpid(redis.pid, NULL, 0);
    redis.pid = 0;
    g_mutex_lock(&b.lock);
    int before = b.unavailable;
    g_mutex_unlock(&b.lock);
    g_usleep(2000000); /* the outage, under load */
    g_mutex_lock(&b.lock);
    int during = b.unavailable - before;
    g_mutex_unlock(&b.lock);
    harness_redis_restart(&redis, aof); /* the same port and dir: the AOF alone */
    gint64 restarted_us = g_get_monotonic_time();
    g_usleep(4000000);
    buyers_stop(&b);

    ck_assert_msg(during > 0, "no request was answered 503 while Redis was down");
    ck_assert_msg(b.unexpected == 0, "%d answers were neither success, 409 nor 503 (last %d)",
                  b.unexpected, b.last_unexpected);
    ck_assert_int_gt((int)b.orders->len, 0);
    assert_orders_stored(&b, redis.port);
    /* no unit sold twice or without its order: one order per sold unit */
    json_t *s = get_sale(sale);
    char *len = harness_redis_cmd(redis.port, "XLEN sl:{sale:%s}:orders", sale);
    ck_assert_int_eq(num(s, "sold"), atoi(len));
    ck_assert_int_le(num(s, "sold"), qty);
    g_free(len);
    json_decref(s);
    /* the unconfirmed holds, those of before the crash too, expire as usual */
    json_int_t held = -1;
    for (int i = 0; i < 100 && held != 0; i++) {
        g_usleep(100000);
        s = get_sale(sale);
        held = num(s, "held");
        json_decref(s);
    }
    ck_assert_int_eq(held, 0);
    fprintf(stderr,
            "redis kill -9: %d purchases, %u orders confirmed and all stored, %d answers 503 "
            "(%d during the 2 s outage); Redis down %.2f s, last 503 %.2f s after its restart\n",
            b.attempts, b.orders->len, b.unavailable, during,
            (double)(restarted_us - killed_us) / 1e6,
            (double)(b.last_unavailable_us - restarted_us) / 1e6);
    buyers_free(&b);
    g_free(sale);
}
END_TEST

/* ---- Sentinel fails the primary over during a sale ---- */

static gboolean replica_in_sync(int port)
{
    char *info = harness_redis_cmd(port, "INFO replication");
    gboolean up = info && strstr(info, "master_link_status:up");
    g_free(info);
    return up;
}

/* The port Sentinel names as the primary of "silklive", or -1. */
static int sentinel_primary(int sentinel_port)
{
    char *addr = harness_redis_cmd(sentinel_port, "SENTINEL get-master-addr-by-name silklive");
    const char *nl = addr ? strchr(addr, '\n') : NULL;
    int port = nl ? atoi(nl + 1) : -1;
    g_free(addr);
    return port;
}

START_TEST(sentinel_fails_over_during_a_sale)
{
    const char *aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    harness_redis_start(&redis, aof);
    char primary[16];
    g_snprintf(primary, sizeof primary, "%d", redis.port);
    const char *replica_args[] = {"--appendonly", "yes",       "--appendfsync", "always",
                                  "--replicaof",  "127.0.0.1", primary,         NULL};
    struct harness_redis replica, sentinel;
    harness_redis_start(&replica, replica_args);
    for (int i = 0; i < 100 && !replica_in_sync(replica.port); i++)
        g_usleep(100000);
    ck_assert(replica_in_sync(replica.port));
    harness_sentinel_start(&sentinel, redis.port, "silklive");
    char url[96];
    g_snprintf(url, sizeof url, "sentinel://127.0.0.1:%d/silklive", sentinel.port);
    start_silklive("commerce", "[redis]\ntimeout_ms = 500\n", url, NULL);
    char *sale = seed(100000, 5);
    struct buyers b;
    buyers_start(&b, sale);

    gint64 killed_us = g_get_monotonic_time();
    kill(redis.pid, SIGKILL); /* the primary's host is gone */
    waitpid(redis.pid, NULL, 0);
    redis.pid = 0;
    int now_primary = -1;
    for (int i = 0; i < 300 && now_primary != replica.port; i++) {
        g_usleep(100000);
        now_primary = sentinel_primary(sentinel.port);
    }
    ck_assert_msg(now_primary == replica.port, "Sentinel did not promote the replica");
    g_mutex_lock(&b.lock);
    guint at_failover = b.orders->len;
    g_mutex_unlock(&b.lock);
    json_t *ready = NULL; /* silklive found the new primary by itself */
    for (int i = 0; i < 100 && api("GET", "/readyz", NULL, NULL, NULL, &ready) != 200; i++) {
        json_decref(ready);
        ready = NULL;
        g_usleep(100000);
    }
    json_decref(ready);
    g_usleep(2000000);
    buyers_stop(&b);

    ck_assert_msg(b.unexpected == 0, "%d unexpected answers (last %d)", b.unexpected,
                  b.last_unexpected);
    ck_assert_msg(b.orders->len > at_failover, "no order was confirmed after the failover");
    /* every order answered 200, before the failover too, is on the promoted replica */
    assert_orders_stored(&b, replica.port);
    json_t *s = get_sale(sale);
    char *len = harness_redis_cmd(replica.port, "XLEN sl:{sale:%s}:orders", sale);
    ck_assert_int_eq(num(s, "sold"), atoi(len));
    g_free(len);
    json_decref(s);
    fprintf(stderr,
            "sentinel failover: %d purchases, %u orders all on the promoted replica (%u before "
            "the primary died), %d answers 503, the last %.2f s after the primary died\n",
            b.attempts, b.orders->len, at_failover, b.unavailable,
            (double)(b.last_unavailable_us - killed_us) / 1e6);
    buyers_free(&b);
    g_free(sale);
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    harness_redis_stop(&sentinel);
    harness_redis_stop(&replica);
}
END_TEST

/* ---- publisher network loss ---- */

static int fd_count(pid_t pid)
{
    char path[64];
    g_snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    GDir *d = g_dir_open(path, 0, NULL);
    int n = 0;
    while (d && g_dir_read_name(d))
        n++;
    if (d) g_dir_close(d);
    return n;
}

static gboolean channel_live(void)
{
    json_t *ch = NULL;
    if (api("GET", "/api/v1/channels/ch1", NULL, NULL, NULL, &ch) != 200) return FALSE;
    gboolean live = json_is_true(json_object_get(ch, "live"));
    json_decref(ch);
    return live;
}

static gboolean wait_live(gboolean want, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        if (channel_live() == want) return TRUE;
        g_usleep(100000);
    }
    return FALSE;
}

static GPid publish(const char *size, int seconds)
{
    char *url = g_strdup_printf("rtmp://127.0.0.1:%d/live/%s", rtmp_port, stream_key);
    GPid pid = harness_ffmpeg_publish(url, size, 25, 50, "ultrafast", seconds);
    g_free(url);
    return pid;
}

/* A TCP relay between an encoder and silklive's RTMP port that, when told, forwards half of
 * what it read next (so the server is left mid-chunk) and resets the connection. */
struct relay {
    int listen_fd, port;
    volatile gint cut;
    gboolean did_cut;
    size_t forwarded;
};

static gpointer relay_run(gpointer data)
{
    struct relay *r = data;
    int client = accept(r->listen_fd, NULL, NULL);
    int server = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rtmp_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (client < 0 || connect(server, (struct sockaddr *)&a, sizeof a) != 0) return NULL;
    char buf[65536];
    for (;;) {
        struct pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        if (poll(p, 2, 20000) <= 0) break;
        if (p[1].revents) {
            ssize_t n = read(server, buf, sizeof buf);
            if (n <= 0 || write(client, buf, (size_t)n) != n) break;
        }
        if (p[0].revents) {
            ssize_t n = read(client, buf, sizeof buf);
            if (n <= 0) break;
            if (g_atomic_int_get(&r->cut) && n > 16) {
                ssize_t half = n / 2 + 3; /* not on a chunk boundary, but inside one */
                if (write(server, buf, (size_t)half) != half) break;
                struct linger l = {.l_onoff = 1, .l_linger = 0};
                setsockopt(server, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                r->did_cut = TRUE;
                break; /* close() below sends the RST */
            }
            if (write(server, buf, (size_t)n) != n) break;
            r->forwarded += (size_t)n;
        }
    }
    close(server);
    close(client);
    return NULL;
}

static const char *const ingest_ini = "[transcode]\nladder =\nsegment_s = 2\ngrace_s = 2\n"
                                      "poster_s = 0\nretention_s = 60\n";

START_TEST(publisher_lost_or_reset_mid_chunk)
{
    start_with("commerce,transcode,ingest", ingest_ini, NULL, NULL);
    g_free(seed(0, 0));
    g_usleep(500000);
    int fds = fd_count(sl.pid);

    /* the encoder is killed */
    GPid ff = publish("320x240", 60);
    ck_assert_msg(wait_live(TRUE, 20), "the channel never went live");
    kill(ff, SIGKILL);
    waitpid(ff, NULL, 0);
    ck_assert_msg(wait_live(FALSE, 10), "the channel stayed live after its encoder was killed");

    /* the connection is reset in the middle of a chunk */
    struct relay r = {0};
    r.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    ck_assert_int_eq(bind(r.listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(r.listen_fd, 1), 0);
    getsockname(r.listen_fd, (struct sockaddr *)&a, &alen);
    r.port = ntohs(a.sin_port);
    GThread *relay = g_thread_new("relay", relay_run, &r);
    char *url = g_strdup_printf("rtmp://127.0.0.1:%d/live/%s", r.port, stream_key);
    ff = harness_ffmpeg_publish(url, "320x240", 25, 50, "ultrafast", 60);
    g_free(url);
    ck_assert_msg(wait_live(TRUE, 20), "the channel never went live through the relay");
    g_atomic_int_set(&r.cut, 1);
    g_thread_join(relay);
    close(r.listen_fd);
    ck_assert(r.did_cut);
    ck_assert_msg(wait_live(FALSE, 10), "the channel stayed live after the reset");
    kill(ff, SIGKILL);
    waitpid(ff, NULL, 0);

    /* nothing left behind: no connection, no publisher, no descriptor */
    int now = -1;
    for (int i = 0; i < 50 && now != fds; i++) {
        g_usleep(100000);
        now = fd_count(sl.pid);
    }
    ck_assert_int_eq(harness_metric(sl.port, "silklive_rtmp_publishers"), 0);
    ck_assert_int_eq(harness_metric(sl.port, "silklive_rtmp_connections"), 0);
    ck_assert_int_eq(harness_metric(sl.port, "silklive_live_streams"), 0);
    ck_assert_msg(now == fds, "%d descriptors open before, %d after", fds, now);
    /* the playlist was ended for players */
    struct harness_response resp;
    ck_assert_int_eq(
        harness_http(sl.port, "GET", "/hls/ch1/source/index.m3u8", NULL, NULL, 0, &resp), 0);
    ck_assert_int_eq(resp.status, 200);
    ck_assert_ptr_nonnull(strstr(resp.body, "#EXT-X-ENDLIST"));
    harness_response_free(&resp);
}
END_TEST

/* ---- a thousand clients that stop reading ---- */

#define STUCK 1000

static long long rss_of(pid_t pid)
{
    char path[64], *text = NULL;
    g_snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!g_file_get_contents(path, &text, NULL, NULL)) return -1;
    const char *line = strstr(text, "VmRSS:");
    long long kb = line ? atoll(line + 6) : -1;
    g_free(text);
    return kb * 1024;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* In a child: STUCK viewers join ch1, the child says so on ready, then reads and discards
 * whatever comes until it is stopped (SIGSTOP) for good. */
static void stuck_viewers(int port, int ready)
{
    raise_fd_limit();
    const char *join = "{\"type\":\"join\",\"channel\":\"ch1\"}";
    harness_ws **ws = g_new0(harness_ws *, STUCK);
    struct pollfd *p = g_new0(struct pollfd, STUCK);
    int joined = 0;
    for (int i = 0; i < STUCK; i++) {
        ws[i] = harness_ws_connect(port, "/ws", "silklive.v1", NULL);
        if (ws[i] && harness_ws_send(ws[i], join)) {
            json_t *j = harness_ws_expect(ws[i], "joined", WAIT);
            joined += j != NULL;
            json_decref(j);
        }
        p[i].fd = ws[i] ? harness_ws_fd(ws[i]) : -1;
        /* a phone's small receive window: the server's queue, not the kernel, holds the rest */
        int small = 4096;
        if (p[i].fd >= 0) setsockopt(p[i].fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        p[i].events = POLLIN;
    }
    char c = joined == STUCK ? 'y' : 'n';
    if (write(ready, &c, 1) != 1) _exit(1);
    char buf[65536];
    for (;;) {
        if (poll(p, STUCK, 1000) < 0) _exit(1);
        for (int i = 0; i < STUCK; i++)
            if (p[i].revents && read(p[i].fd, buf, sizeof buf) <= 0) p[i].fd = -1;
    }
}

/* Room events at a steady rate, each text starting with its publish time (CLOCK_MONOTONIC µs,
 * the same clock in every process here), for the reading viewer to time. */
struct timed {
    int events, size, interval_ms; /* one event every interval_ms */
};

static gpointer publish_timed(gpointer data)
{
    const struct timed *t = data;
    char *script = g_strdup_printf(
        "local t = ARGV[1] .. '|' .. string.rep('x', %d) for i = 1, %d do "
        "redis.call('PUBLISH', 'silklive:room:ch1', '{\"type\":\"chat\",\"text\":\"' .. t .. "
        "'\"}') end return 1",
        t->size, 1);
    gint64 start = g_get_monotonic_time();
    for (int sent = 0; sent < t->events; sent++) {
        gint64 due = start + (gint64)sent * t->interval_ms * 1000;
        gint64 now = g_get_monotonic_time();
        if (due > now) g_usleep((gulong)(due - now));
        g_free(harness_redis_cmd(redis.port, "EVAL %s 0 %lld", script,
                                 (long long)g_get_monotonic_time()));
    }
    g_free(script);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Publishes t and times every event at the reading viewer; returns how many arrived and sets
 * p50/p99 in ms. */
static int timed_phase(harness_ws *fine, const struct timed *t, double *p50, double *p99)
{
    GThread *pub = g_thread_new("timed", publish_timed, (gpointer)t);
    GArray *lat = g_array_new(FALSE, FALSE, sizeof(double));
    json_t *m;
    while ((int)lat->len < t->events && (m = harness_ws_expect(fine, "chat", WAIT)) != NULL) {
        const char *text = json_string_value(json_object_get(m, "text"));
        double ms = (double)(g_get_monotonic_time() - (text ? atoll(text) : 0)) / 1000.0;
        g_array_append_val(lat, ms);
        json_decref(m);
    }
    g_thread_join(pub);
    int got = (int)lat->len;
    qsort(lat->data, lat->len, sizeof(double), cmp_double);
    *p50 = got ? g_array_index(lat, double, got / 2) : -1;
    *p99 = got ? g_array_index(lat, double, MIN(got - 1, got * 99 / 100)) : -1;
    g_array_unref(lat);
    return got;
}

START_TEST(a_thousand_clients_stop_reading)
{
    /* queues of 64 frames and 64 KiB socket buffers: a stopped viewer is cut off within
     * seconds at this rate (with the kernel's autotuned buffers it takes minutes) */
    start_with("chat,commerce", "[chat]\nqueue_frames = 64\nsocket_sndbuf = 65536\n", NULL, NULL);
    g_free(seed(0, 0));
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t child = fork();
    if (child == 0) {
        close(pipefd[0]);
        stuck_viewers(sl.port, pipefd[1]);
    }
    close(pipefd[1]);
    char ready = 0;
    ck_assert_int_eq(read(pipefd[0], &ready, 1), 1);
    close(pipefd[0]);
    ck_assert_msg(ready == 'y', "the thousand viewers did not all join");
    harness_ws *fine = harness_ws_connect(sl.port, "/ws", "silklive.v1", NULL);
    ck_assert(harness_ws_send(fine, "{\"type\":\"join\",\"channel\":\"ch1\"}"));
    json_decref(harness_ws_expect(fine, "joined", WAIT));

    /* a busy room: 20 events of 1 KB a second to each of 1,001 viewers */
    const struct timed quiet = {.events = 100, .size = 1000, .interval_ms = 50};
    const struct timed stuck = {.events = 200, .size = 1000, .interval_ms = 50};
    double a50, a99, b50, b99, c50, c99;
    ck_assert_int_eq(timed_phase(fine, &quiet, &a50, &a99), quiet.events); /* all reading */
    long long rss0 = rss_of(sl.pid);
    kill(child, SIGSTOP);
    /* until their socket buffers and queues are full; the reading viewer gets everything */
    ck_assert_int_eq(timed_phase(fine, &stuck, &b50, &b99), stuck.events);
    long long rss_peak = rss_of(sl.pid);
    long long slow = -1;
    for (int i = 0; i < 100 && slow < STUCK; i++) {
        slow = harness_metric(sl.port, "silklive_chat_slow_consumers_total");
        if (slow < STUCK) g_usleep(100000);
    }
    ck_assert_int_eq(timed_phase(fine, &quiet, &c50, &c99), quiet.events); /* after the cut */
    long long rss1 = rss_of(sl.pid);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    harness_ws_free(fine);

    /* every stopped viewer was cut off (1008) instead of being buffered for */
    ck_assert_int_eq(slow, STUCK);
    /* per-connection queues are bounded and frames shared */
    ck_assert_msg(rss_peak - rss0 < 96ll << 20, "RSS grew by %lld MiB", (rss_peak - rss0) >> 20);
    fprintf(stderr,
            "1000 stopped clients: reading viewer p50/p99 %.1f/%.1f ms all reading, %.1f/%.1f ms "
            "while 1000 were stopped, %.1f/%.1f ms after they were cut off; server RSS %lld MiB "
            "before, %lld MiB with them stopped, %lld MiB after\n",
            a50, a99, b50, b99, c50, c99, rss0 >> 20, rss_peak >> 20, rss1 >> 20);
}
END_TEST

/* ---- the media disk fills up ---- */

/* A private mount namespace (a user namespace too when not root) with a small tmpfs at dir,
 * which the silklive started next inherits. */
static void mount_small_tmpfs(const char *dir, const char *size)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (uid != 0) {
        ck_assert_msg(unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0, "unshare: %s", g_strerror(errno));
        char map[64];
        g_file_set_contents("/proc/self/setgroups", "deny", -1, NULL);
        g_snprintf(map, sizeof map, "0 %d 1", (int)uid);
        ck_assert(g_file_set_contents("/proc/self/uid_map", map, -1, NULL));
        g_snprintf(map, sizeof map, "0 %d 1", (int)gid);
        ck_assert(g_file_set_contents("/proc/self/gid_map", map, -1, NULL));
    } else {
        ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare: %s", g_strerror(errno));
    }
    ck_assert(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
    char opts[32];
    g_snprintf(opts, sizeof opts, "size=%s", size);
    ck_assert_msg(mount("tmpfs", dir, "tmpfs", 0, opts) == 0, "mount: %s", g_strerror(errno));
}

START_TEST(the_media_disk_fills_up)
{
    char *media = harness_tmpdir();
    mount_small_tmpfs(media, "1m");
    start_with("commerce,chat,transcode,ingest", ingest_ini, NULL, media);
    g_free(seed(0, 0));
    harness_ws *viewer = harness_ws_connect(sl.port, "/ws", "silklive.v1", NULL);
    char *tok = token(SL_ROLE_VIEWER, "v1", NULL);
    char *join = g_strdup_printf("{\"type\":\"join\",\"channel\":\"ch1\",\"token\":\"%s\"}", tok);
    ck_assert(harness_ws_send(viewer, join));
    json_decref(harness_ws_expect(viewer, "joined", WAIT));

    GPid ff = publish("640x360", 120);
    ck_assert_msg(wait_live(TRUE, 20), "the channel never went live");
    /* the recording keeps every segment: the megabyte runs out within seconds */
    int exited = -1;
    for (int i = 0; i < 600 && exited < 0; i++) {
        int st;
        if (waitpid(ff, &st, WNOHANG) == ff) exited = 1;
        g_usleep(100000);
    }
    if (exited < 0) {
        kill(ff, SIGKILL);
        waitpid(ff, NULL, 0);
    }
    ck_assert_msg(exited == 1, "the publisher was not disconnected when the disk filled");
    ck_assert_int_eq(harness_metric(sl.port, "silklive_transcode_write_failures_total"), 1);
    ck_assert_msg(wait_live(FALSE, 5), "the channel is still live with a full disk");
    /* the stream ended cleanly for players: the playlist is closed */
    char *pl = NULL;
    char *path = g_build_filename(media, "ch1", "source", "index.m3u8", NULL);
    ck_assert(g_file_get_contents(path, &pl, NULL, NULL));
    ck_assert_msg(strstr(pl, "#EXT-X-ENDLIST") != NULL, "playlist not ended:\n%s", pl);
    g_free(pl);
    g_free(path);
    /* the room heard it, and chat and commerce go on */
    json_t *off = NULL;
    for (int i = 0; i < 10 && off == NULL; i++) {
        json_t *ev = harness_ws_expect(viewer, "stream", 2000);
        const char *what = json_string_value(json_object_get(ev, "event"));
        if (what && strcmp(what, "offline") == 0)
            off = ev;
        else
            json_decref(ev);
    }
    ck_assert_msg(off != NULL, "no stream offline event in the room");
    json_decref(off);
    ck_assert(harness_ws_send(viewer, "{\"type\":\"chat\",\"text\":\"still here\"}"));
    json_t *said = harness_ws_expect(viewer, "chat", WAIT);
    ck_assert_ptr_nonnull(said);
    json_decref(said);
    char *consul = token(SL_ROLE_CONSUL, "c1", "CL");
    ck_assert_int_eq(api("POST", "/api/v1/sales", consul, NULL,
                         "{\"channel\":\"ch1\",\"sku\":\"p1\",\"quantity\":5}", NULL),
                     201);
    /* a new publish on the full disk is ended the same way, and the server stays up */
    ff = publish("320x240", 30);
    for (int i = 0; i < 300 && waitpid(ff, NULL, WNOHANG) == 0; i++)
        g_usleep(100000);
    if (kill(ff, 0) == 0) {
        kill(ff, SIGKILL);
        waitpid(ff, NULL, 0);
    }
    ck_assert_int_eq(api("GET", "/api/v1/pavilions", NULL, NULL, NULL, NULL), 200);
    g_free(consul);
    g_free(join);
    g_free(tok);
    harness_ws_free(viewer);
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    umount2(media, MNT_DETACH);
    harness_rmtree(media);
    g_free(media);
}
END_TEST

/* ---- SIGTERM under load ---- */

#define VIEWERS 20

START_TEST(sigterm_under_load)
{
    start_with("commerce,chat,transcode,ingest", ingest_ini, NULL, NULL);
    char *sale = seed(100000, 60);
    harness_ws *viewers[VIEWERS];
    for (int i = 0; i < VIEWERS; i++) {
        viewers[i] = harness_ws_connect(sl.port, "/ws", "silklive.v1", NULL);
        ck_assert(harness_ws_send(viewers[i], "{\"type\":\"join\",\"channel\":\"ch1\"}"));
        json_decref(harness_ws_expect(viewers[i], "joined", WAIT));
    }
    GPid ff = publish("320x240", 120);
    ck_assert_msg(wait_live(TRUE, 20), "the channel never went live");
    struct buyers b;
    buyers_start(&b, sale);

    gint64 t0 = g_get_monotonic_time();
    kill(sl.pid, SIGTERM);
    int status = -1;
    while (g_get_monotonic_time() - t0 < 15 * G_USEC_PER_SEC) {
        if (waitpid(sl.pid, &status, WNOHANG) == sl.pid) break;
        g_usleep(20000);
    }
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
    buyers_stop(&b);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    sl.pid = 0;
    ck_assert_msg(secs < 10.0, "took %.1f s to exit", secs);
    for (int i = 0; i < VIEWERS; i++) {
        ck_assert_int_eq(harness_ws_wait_close(viewers[i], 2000), 1001);
        harness_ws_free(viewers[i]);
    }
    /* the encoder was disconnected, the playlist closed, every confirmed order kept */
    int ff_exit = -1;
    for (int i = 0; i < 100 && ff_exit < 0; i++) {
        if (waitpid(ff, NULL, WNOHANG) == ff) ff_exit = 1;
        g_usleep(100000);
    }
    if (ff_exit < 0) {
        kill(ff, SIGKILL);
        waitpid(ff, NULL, 0);
    }
    ck_assert_msg(ff_exit == 1, "the encoder was still connected");
    char *pl = NULL;
    char *path = g_build_filename(sl.media_dir, "ch1", "source", "index.m3u8", NULL);
    ck_assert(g_file_get_contents(path, &pl, NULL, NULL));
    ck_assert_msg(strstr(pl, "#EXT-X-ENDLIST") != NULL, "playlist not ended:\n%s", pl);
    ck_assert_msg(b.unexpected == 0, "%d unexpected answers (last %d)", b.unexpected,
                  b.last_unexpected);
    ck_assert_int_gt((int)b.orders->len, 0);
    assert_orders_stored(&b, redis.port);
    fprintf(stderr,
            "SIGTERM under load: exit 0 after %.2f s, %u orders all stored, %d viewers "
            "closed 1001\n",
            secs, b.orders->len, VIEWERS);
    harness_silklive_stop(&sl); /* frees its paths */
    g_free(pl);
    g_free(path);
    buyers_free(&b);
    g_free(sale);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, NULL, stop);
    tcase_add_test(tc, redis_kill_9_during_a_sale_under_load);
    tcase_add_test(tc, sentinel_fails_over_during_a_sale);
    tcase_add_test(tc, publisher_lost_or_reset_mid_chunk);
    tcase_add_test(tc, a_thousand_clients_stop_reading);
    tcase_add_test(tc, the_media_disk_fills_up);
    tcase_add_test(tc, sigterm_under_load);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
