/* Integration tests of the HTTP side of silklive (core/http.c, core/server.c) with a real
 * redis-server: operations endpoints, errors as api.md's body, limits, static files. */
#include "core/core.h"
#include "harness/harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <jansson.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_redis redis;
static struct harness_silklive sl;

static void start(void)
{
    harness_redis_start(&redis, NULL);
    char url[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    const char *args[] = {"--redis", url, "--secret", "s", NULL};
    ck_assert_msg(harness_silklive_start(&sl, args, NULL), "silklive did not start");
}

static void stop(void)
{
    ck_assert_int_eq(harness_silklive_stop(&sl), 0);
    harness_redis_stop(&redis);
}

/* The error body of api.md, with the given code. */
static void assert_error(const struct harness_response *r, int status, const char *code)
{
    ck_assert_int_eq(r->status, status);
    json_t *j = json_loads(r->body, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", r->body);
    json_t *e = json_object_get(j, "error");
    ck_assert(json_is_object(e));
    ck_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    ck_assert(json_string_length(json_object_get(e, "message")) > 0);
    json_decref(j);
    char *ct = harness_header(r, "content-type");
    ck_assert_str_eq(ct, "application/json");
    g_free(ct);
}

/* Whatever a bad client did, others are still served. */
static void assert_still_serving(void)
{
    struct harness_response r;
    ck_assert_int_eq(harness_http(sl.port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    harness_response_free(&r);
}

START_TEST(operations_endpoints)
{
    struct harness_response r;
    ck_assert_int_eq(harness_http(sl.port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    harness_response_free(&r);
    ck_assert_int_eq(harness_http(sl.port, "GET", "/readyz", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    harness_response_free(&r);
    ck_assert_int_eq(harness_http(sl.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE silklive_http_requests_total counter"));
    ck_assert_ptr_nonnull(strstr(r.body, "silklive_redis_connected 1"));
    ck_assert_ptr_nonnull(strstr(r.body, "process_resident_memory_bytes "));
    char *ct = harness_header(&r, "content-type");
    ck_assert(g_str_has_prefix(ct, "text/plain; version=0.0.4"));
    g_free(ct);
    harness_response_free(&r);
}
END_TEST

START_TEST(errors_have_api_body)
{
    struct harness_response r;
    harness_http(sl.port, "GET", "/api/v1/nothing", NULL, NULL, 0, &r);
    assert_error(&r, 404, "not_found");
    harness_response_free(&r);
    harness_http(sl.port, "GET", "/no/such/page", NULL, NULL, 0, &r);
    assert_error(&r, 404, "not_found");
    harness_response_free(&r);
    harness_http(sl.port, "POST", "/healthz", NULL, "{}", 2, &r);
    assert_error(&r, 405, "method_not_allowed");
    char *allow = harness_header(&r, "allow");
    ck_assert_str_eq(allow, "GET");
    g_free(allow);
    harness_response_free(&r);
    harness_http(sl.port, "DELETE", "/metrics", NULL, NULL, 0, &r);
    assert_error(&r, 405, "method_not_allowed");
    harness_response_free(&r);
}
END_TEST

START_TEST(body_limit)
{
    struct harness_response r;
    size_t n = SL_HTTP_MAX_BODY + 1;
    char *big = g_malloc0(n);
    memset(big, 'x', n);
    harness_http(sl.port, "POST", "/api/v1/pavilions", NULL, big, n, &r);
    assert_error(&r, 413, "payload_too_large");
    harness_response_free(&r);
    g_free(big);
    /* exactly at the limit is accepted as far as size goes (this path has no handler: 404) */
    char *edge = g_malloc0(SL_HTTP_MAX_BODY);
    harness_http(sl.port, "POST", "/api/v1/none", NULL, edge, SL_HTTP_MAX_BODY, &r);
    ck_assert_int_eq(r.status, 404);
    harness_response_free(&r);
    g_free(edge);
}
END_TEST

static const char *malformed[] = {
    "GARBAGE\r\n\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "GET\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
};

START_TEST(malformed_requests_get_400_and_close)
{
    /* a well-behaved keep-alive client is connected throughout */
    size_t len;
    char *raw = harness_raw(sl.port, malformed[_i], strlen(malformed[_i]), &len);
    ck_assert_msg(raw && g_str_has_prefix(raw, "HTTP/1.1 400 "), "'%s' got: %.120s", malformed[_i],
                  raw);
    ck_assert_ptr_nonnull(strstr(raw, "\"bad_request\""));
    g_free(raw);
    assert_still_serving();
}
END_TEST

START_TEST(broken_headers_close_without_harm)
{
    /* header-level breakage is refused by lws' parser: the connection is closed, nothing else */
    const char *cases[] = {
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
        "GET /hls/a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    GString *huge = g_string_new(cases[0]);
    for (int i = 0; i < 20000; i++)
        g_string_append_c(huge, 'a');
    g_string_append(huge, "\r\n\r\n");
    size_t len;
    char *raw = harness_raw(sl.port, huge->str, huge->len, &len);
    ck_assert_msg(raw == NULL || !strstr(raw, " 200 "), "oversized headers served: %.80s", raw);
    g_free(raw);
    raw = harness_raw(sl.port, cases[1], strlen(cases[1]), &len);
    ck_assert_msg(raw == NULL || !strstr(raw, " 200 "), "NUL in path served: %.80s", raw);
    g_free(raw);
    g_string_free(huge, TRUE);
    assert_still_serving();
}
END_TEST

START_TEST(keepalive_serves_several_requests)
{
    const char *two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t len;
    char *raw = harness_raw(sl.port, two, strlen(two), &len);
    ck_assert_ptr_nonnull(raw);
    char *second = strstr(raw + 1, "HTTP/1.1 200");
    ck_assert_msg(g_str_has_prefix(raw, "HTTP/1.1 200") && second, "got: %s", raw);
    g_free(raw);
}
END_TEST

START_TEST(static_media_without_traversal)
{
    char *dir = g_build_filename(sl.media_dir, "ch1", NULL);
    g_mkdir_with_parents(dir, 0755);
    char *pl = g_build_filename(dir, "index.m3u8", NULL);
    g_file_set_contents(pl, "#EXTM3U\n", -1, NULL);
    char *seg = g_build_filename(dir, "seg1.ts", NULL);
    g_file_set_contents(seg, "TSDATA", -1, NULL);
    char *link = g_build_filename(dir, "passwd.ts", NULL);
    ck_assert_int_eq(symlink("/etc/passwd", link), 0);
    char *outside = g_build_filename(sl.data_dir, "secret", NULL);

    struct harness_response r;
    harness_http(sl.port, "GET", "/hls/ch1/index.m3u8", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "#EXTM3U\n");
    char *ct = harness_header(&r, "content-type"), *cc = harness_header(&r, "cache-control");
    ck_assert_str_eq(ct, "application/vnd.apple.mpegurl");
    ck_assert_str_eq(cc, "no-cache");
    g_free(ct);
    g_free(cc);
    harness_response_free(&r);
    harness_http(sl.port, "GET", "/hls/ch1/seg1.ts", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    cc = harness_header(&r, "cache-control");
    ck_assert_ptr_nonnull(strstr(cc, "immutable"));
    g_free(cc);
    harness_response_free(&r);

    const char *attempts[] = {
        "/hls/ch1/passwd.ts",
        "/hls/../data/secret",
        "/hls/%2e%2e/data/secret",
        "/hls/ch1/%2e%2e/%2e%2e/data/secret",
        "/hls/..%2fdata/secret",
        "/hls//etc/passwd",
        "/hls/ch1/..%5c..%5cdata%5csecret",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/hls/ch1/.%2e/.%2e/data/secret",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(attempts); i++) {
        ck_assert_int_eq(harness_http(sl.port, "GET", attempts[i], NULL, NULL, 0, &r), 0);
        ck_assert_msg(r.status == 400 || r.status == 404, "%s -> %d", attempts[i], r.status);
        ck_assert_msg(strstr(r.body, "root:") == NULL, "%s leaked /etc/passwd", attempts[i]);
        harness_response_free(&r);
    }
    g_free(dir);
    g_free(pl);
    g_free(seg);
    g_free(link);
    g_free(outside);
}
END_TEST

START_TEST(readyz_follows_redis)
{
    struct harness_response r;
    kill(redis.pid, SIGSTOP);
    ck_assert_int_eq(harness_http(sl.port, "GET", "/readyz", NULL, NULL, 0, &r), 0);
    assert_error(&r, 503, "unavailable");
    harness_response_free(&r);
    assert_still_serving();
    kill(redis.pid, SIGCONT);
    int status = 0;
    for (int i = 0; i < 100 && status != 200; i++) {
        g_usleep(100000);
        harness_http(sl.port, "GET", "/readyz", NULL, NULL, 0, &r);
        status = r.status;
        harness_response_free(&r);
    }
    ck_assert_int_eq(status, 200); /* it came back by itself */
}
END_TEST

/* ---- per-address limits ([limits]) ---- */

/* silklive on redis with a config file of the given text. */
static void start_with_config(const char *text)
{
    harness_redis_start(&redis, NULL);
    char *dir = harness_tmpdir();
    char *path = g_build_filename(dir, "silklive.conf", NULL);
    ck_assert(g_file_set_contents(path, text, -1, NULL));
    char url[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis.port);
    const char *args[] = {"--redis", url, "--secret", "s", "--config", path, NULL};
    ck_assert_msg(harness_silklive_start(&sl, args, NULL), "silklive did not start");
    g_free(path);
    g_free(dir);
}

static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* The status of one API call with an optional X-Forwarded-For; *retry_after gets the header. */
static int api_status(const char *forwarded_for, char **retry_after)
{
    char headers[128] = "";
    if (forwarded_for)
        g_snprintf(headers, sizeof headers, "X-Forwarded-For: %s\r\n", forwarded_for);
    struct harness_response r;
    if (harness_http(sl.port, "GET", "/api/v1/pavilions", headers, NULL, 0, &r) != 0) return -1;
    int status = r.status;
    if (status == 429) assert_error(&r, 429, "rate_limited");
    if (retry_after) *retry_after = harness_header(&r, "retry-after");
    harness_response_free(&r);
    return status;
}

START_TEST(connections_and_api_rate_per_address)
{
    start_with_config("[limits]\ntrusted_proxies =\nconnections_per_ip = 4\n"
                      "api_rate_per_ip = 2\napi_burst_per_ip = 5\n");
    /* Four connections that send nothing take the address's four places... */
    int held[4];
    for (int i = 0; i < 4; i++)
        held[i] = connect_loopback(sl.port);
    g_usleep(200000);
    /* ...so a fifth is closed before it is read: no reply at all. */
    size_t n = 99;
    const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char *reply = harness_raw(sl.port, get, strlen(get), &n);
    ck_assert_uint_eq(n, 0);
    g_free(reply);
    close(held[0]);
    g_usleep(300000); /* a freed place is given back */
    assert_still_serving();
    for (int i = 1; i < 4; i++)
        close(held[i]);
    g_usleep(300000);
    ck_assert_int_ge(harness_metric(sl.port, "silklive_peer_connections_refused_total"), 1);

    /* The API: a burst of five, then 429 with Retry-After; static and operations paths are not
     * counted. */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(api_status(NULL, NULL), 200);
    char *retry = NULL;
    ck_assert_int_eq(api_status(NULL, &retry), 429);
    ck_assert_ptr_nonnull(retry);
    ck_assert_int_ge(atoi(retry), 1);
    g_free(retry);
    assert_still_serving();
    /* Nor can a direct client escape by claiming to be forwarded. */
    ck_assert_int_eq(api_status("203.0.113.9", NULL), 429);
    g_usleep(1100000); /* two tokens a second */
    ck_assert_int_eq(api_status(NULL, NULL), 200);
    ck_assert_int_ge(harness_metric(sl.port, "silklive_peer_requests_limited_total"), 2);
}
END_TEST

/* Slowloris: headers trickled a line at a time never complete a request; the connection is
 * closed when the header timeout (10 s) passes, however busy the trickle keeps it. */
START_TEST(trickled_headers_are_cut_off)
{
    start_with_config("");
    int fd = connect_loopback(sl.port);
    const char *first = "GET /healthz HTTP/1.1\r\n";
    ck_assert_int_eq(write(fd, first, strlen(first)), (ssize_t)strlen(first));
    gint64 t0 = g_get_monotonic_time();
    gboolean closed = FALSE;
    for (int i = 0; i < 40 && !closed; i++) {
        char line[32];
        int n = g_snprintf(line, sizeof line, "X-Slow-%d: 1\r\n", i);
        closed = send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0;
        struct pollfd p = {fd, POLLIN, 0};
        if (!closed && poll(&p, 1, 500) == 1) {
            char buf[512];
            closed = read(fd, buf, sizeof buf) <= 0;
        }
    }
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
    close(fd);
    ck_assert_msg(closed, "a request whose headers never end was kept open %.0f s", secs);
    assert_still_serving();
}
END_TEST

START_TEST(trusted_proxy_forwards_the_client)
{
    /* The default trusts loopback: the edge runs there. */
    start_with_config("[limits]\nconnections_per_ip = 2\napi_rate_per_ip = 1\n"
                      "api_burst_per_ip = 3\n");
    int held[4];
    for (int i = 0; i < 4; i++)
        held[i] = connect_loopback(sl.port);
    g_usleep(200000);
    assert_still_serving(); /* a proxy's connections are not capped */
    for (int i = 0; i < 4; i++)
        close(held[i]);
    /* The client is the last address the proxy appended; what the client wrote before it is
     * its own claim and does not count. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(api_status("10.9.9.9, 198.51.100.7", NULL), 200);
    ck_assert_int_eq(api_status("10.1.1.1, 198.51.100.7", NULL), 429);
    ck_assert_int_eq(api_status("198.51.100.8", NULL), 200); /* another client */
    for (int i = 0; i < 6; i++) /* a local tool without the header is not limited */
        ck_assert_int_eq(api_status(NULL, NULL), 200);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, start, stop);
    tcase_add_test(tc, operations_endpoints);
    tcase_add_test(tc, errors_have_api_body);
    tcase_add_test(tc, body_limit);
    tcase_add_loop_test(tc, malformed_requests_get_400_and_close, 0, G_N_ELEMENTS(malformed));
    tcase_add_test(tc, broken_headers_close_without_harm);
    tcase_add_test(tc, keepalive_serves_several_requests);
    tcase_add_test(tc, static_media_without_traversal);
    tcase_add_test(tc, readyz_follows_redis);
    suite_add_tcase(s, tc);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 120);
    tcase_add_checked_fixture(limits, NULL, stop);
    tcase_add_test(limits, connections_and_api_rate_per_address);
    tcase_add_test(limits, trusted_proxy_forwards_the_client);
    tcase_add_test(limits, trickled_headers_are_cut_off);
    suite_add_tcase(s, limits);
    return harness_run_suite(s);
}
