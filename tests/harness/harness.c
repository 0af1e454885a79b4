/* harness: starts and stops real redis-server and silklive processes for integration tests. */
#include "harness.h"

#include "core/core.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SILKLIVE_BIN
#error "SILKLIVE_BIN must name the built silklive binary"
#endif

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "harness: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

char *harness_tmpdir(void)
{
    char *d = g_dir_make_tmp("silklive-test-XXXXXX", NULL);
    if (d == NULL) die("cannot create a temporary directory");
    return d;
}

void harness_rmtree(const char *path)
{
    if (path == NULL) return;
    GDir *d = g_dir_open(path, 0, NULL);
    if (d) {
        const char *name;
        while ((name = g_dir_read_name(d)) != NULL) {
            char *p = g_build_filename(path, name, NULL);
            if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
                harness_rmtree(p);
            else
                g_unlink(p);
            g_free(p);
        }
        g_dir_close(d);
    }
    g_rmdir(path);
}

/* fork+exec with the child tied to our life: it gets SIGKILL when the test process dies. */
static pid_t spawn(const char *const *argv, const char *out_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Integers as digits, strings as they are, arrays as their elements one per line. */
static void reply_text(GString *out, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_INTEGER)
        g_string_append_printf(out, "%lld", rep->integer);
    else if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++) {
            if (i) g_string_append_c(out, '\n');
            reply_text(out, rep->element[i]);
        }
    else if (rep->str)
        g_string_append_len(out, rep->str, (gssize)rep->len);
}

char *harness_redis_cmd(int port, const char *fmt, ...)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    char *out = NULL;
    if (rep) {
        GString *text = g_string_new(NULL);
        reply_text(text, rep);
        out = g_string_free(text, FALSE);
        freeReplyObject(rep);
    }
    redisFree(c);
    return out;
}

/* Spawn redis-server on r->port and r->dir; TRUE once it answers PING. */
static gboolean redis_spawn(struct harness_redis *r, const char *const *extra)
{
    char port[16];
    g_snprintf(port, sizeof port, "%d", r->port);
    GPtrArray *argv = g_ptr_array_new();
    const char *base[] = {"redis-server", "--port", port,    "--bind", "127.0.0.1",   "--save", "",
                          "--appendonly", "no",     "--dir", r->dir,   "--daemonize", "no"};
    for (size_t i = 0; i < G_N_ELEMENTS(base); i++)
        g_ptr_array_add(argv, (gpointer)base[i]);
    /* later arguments win, so extra may turn the AOF on */
    for (const char *const *e = extra; e && *e; e++)
        g_ptr_array_add(argv, (gpointer)*e);
    g_ptr_array_add(argv, NULL);
    r->pid = spawn((const char *const *)argv->pdata, NULL);
    g_ptr_array_unref(argv);
    for (int i = 0; i < 200; i++) {
        char *pong = harness_redis_cmd(r->port, "PING");
        gboolean ok = pong && strcmp(pong, "PONG") == 0;
        g_free(pong);
        if (ok) return TRUE;
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) break; /* e.g. the port was taken */
        sleep_ms(25);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return FALSE;
}

void harness_redis_start(struct harness_redis *r, const char *const *extra)
{
    memset(r, 0, sizeof *r);
    r->dir = harness_tmpdir();
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = harness_free_port();
        if (redis_spawn(r, extra)) return;
    }
    die("redis-server did not start");
}

void harness_sentinel_start(struct harness_redis *r, int primary_port, const char *name)
{
    memset(r, 0, sizeof *r);
    r->dir = harness_tmpdir();
    char *conf = g_build_filename(r->dir, "sentinel.conf", NULL);
    for (int attempt = 0; attempt < 5 && r->pid == 0; attempt++) {
        r->port = harness_free_port();
        /* one sentinel (quorum 1) that gives up on a silent primary after a second */
        char *text = g_strdup_printf("port %d\nbind 127.0.0.1\ndir %s\n"
                                     "sentinel monitor %s 127.0.0.1 %d 1\n"
                                     "sentinel down-after-milliseconds %s 1000\n"
                                     "sentinel failover-timeout %s 5000\n",
                                     r->port, r->dir, name, primary_port, name, name);
        g_file_set_contents(conf, text, -1, NULL);
        g_free(text);
        const char *argv[] = {"redis-server", conf, "--sentinel", NULL};
        r->pid = spawn(argv, NULL);
        for (int i = 0; i < 200; i++) {
            char *pong = harness_redis_cmd(r->port, "PING");
            gboolean ok = pong && strcmp(pong, "PONG") == 0;
            g_free(pong);
            if (ok) break;
            int status;
            if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
                r->pid = 0;
                break;
            }
            sleep_ms(25);
        }
    }
    g_free(conf);
    if (r->pid == 0) die("redis-server --sentinel did not start");
}

void harness_redis_restart(struct harness_redis *r, const char *const *extra)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    if (!redis_spawn(r, extra)) die("redis-server did not restart on port %d", r->port);
}

void harness_redis_stop(struct harness_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    harness_rmtree(r->dir);
    g_free(r->dir);
    r->dir = NULL;
}

gboolean harness_silklive_start(struct harness_silklive *s, const char *const *args,
                                int *exit_status)
{
    memset(s, 0, sizeof *s);
    char *root = harness_tmpdir();
    s->data_dir = g_build_filename(root, "data", NULL);
    s->media_dir = g_build_filename(root, "media", NULL);
    s->log_path = g_build_filename(root, "silklive.log", NULL);
    g_free(root);
    for (int attempt = 0; attempt < 3; attempt++) {
        s->port = harness_free_port();
        char listen[32];
        g_snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
        GPtrArray *argv = g_ptr_array_new();
        /* SILKLIVE_WRAPPER runs silklive under a tool, e.g. valgrind (tests/valgrind/run.sh) */
        gchar **wrapper = g_getenv("SILKLIVE_WRAPPER")
                              ? g_strsplit_set(g_getenv("SILKLIVE_WRAPPER"), " ", -1)
                              : NULL;
        for (gchar **w = wrapper; w && *w; w++)
            if (**w) g_ptr_array_add(argv, *w);
        const char *base[] = {SILKLIVE_BIN, "serve",     "--listen",    listen,
                              "--data-dir", s->data_dir, "--media-dir", s->media_dir};
        for (size_t i = 0; i < G_N_ELEMENTS(base); i++)
            g_ptr_array_add(argv, (gpointer)base[i]);
        gboolean own_rtmp = FALSE;
        for (const char *const *a = args; a && *a; a++) {
            g_ptr_array_add(argv, (gpointer)*a);
            if (strcmp(*a, "--rtmp-listen") == 0) own_rtmp = TRUE;
        }
        char rtmp[32]; /* never the shared default 1935: tests run in parallel */
        g_snprintf(rtmp, sizeof rtmp, "127.0.0.1:%d", harness_free_port());
        if (!own_rtmp) {
            g_ptr_array_add(argv, (gpointer) "--rtmp-listen");
            g_ptr_array_add(argv, rtmp);
        }
        g_ptr_array_add(argv, NULL);
        s->pid = spawn((const char *const *)argv->pdata, s->log_path);
        g_ptr_array_unref(argv);
        gboolean wrapped = wrapper != NULL; /* a tool's start-up is slow */
        g_strfreev(wrapper);
        for (int i = 0; i < (wrapped ? 2400 : 400); i++) {
            struct harness_response resp;
            if (harness_http(s->port, "GET", "/healthz", NULL, NULL, 0, &resp) == 0) {
                int st = resp.status;
                harness_response_free(&resp);
                if (st == 200) return TRUE;
            }
            int status;
            if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                s->pid = 0;
                if (exit_status) *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                char *log = NULL;
                g_file_get_contents(s->log_path, &log, NULL, NULL);
                gboolean port_race = log && strstr(log, "Address already in use");
                g_free(log);
                if (!port_race) return FALSE;
                break;
            }
            sleep_ms(25);
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
    }
    return FALSE;
}

int harness_silklive_stop(struct harness_silklive *s)
{
    int result = -1;
    gboolean was_running = s->pid > 0;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 1500; i++) {
            int status;
            if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                result = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                s->pid = 0;
                break;
            }
            sleep_ms(10);
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
    }
    /* why it failed, before the log goes with its directory */
    if (was_running && result != 0 && s->log_path) {
        char *log = NULL;
        gsize len = 0;
        if (g_file_get_contents(s->log_path, &log, &len, NULL)) {
            const char *tail = log + (len > 4000 ? len - 4000 : 0);
            fprintf(stderr, "silklive exited %d; the end of its log:\n%s\n", result, tail);
        }
        g_free(log);
    }
    if (s->data_dir) {
        char *root = g_path_get_dirname(s->data_dir);
        if (g_getenv("HARNESS_KEEP") == NULL) harness_rmtree(root);
        g_free(root);
    }
    g_clear_pointer(&s->data_dir, g_free);
    g_clear_pointer(&s->media_dir, g_free);
    g_clear_pointer(&s->log_path, g_free);
    return result;
}

int harness_silklive_run(const char *const *args, char **out, char **err)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer)SILKLIVE_BIN);
    for (const char *const *a = args; a && *a; a++)
        g_ptr_array_add(argv, (gpointer)*a);
    g_ptr_array_add(argv, NULL);
    int status = -1;
    GError *e = NULL;
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err,
                      &status, &e))
        die("cannot run silklive: %s", e->message);
    g_ptr_array_unref(argv);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

char *harness_raw(int port, const char *data, size_t len, size_t *out_len)
{
    *out_len = 0;
    int fd = connect_port(port);
    if (fd < 0) return NULL;
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
    GString *buf = g_string_new(NULL);
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)((deadline - g_get_monotonic_time()) / 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        g_string_append_len(buf, chunk, n);
    }
    close(fd);
    *out_len = buf->len;
    return g_string_free(buf, FALSE);
}

int harness_http(int port, const char *method, const char *path, const char *headers,
                 const char *body, size_t body_len, struct harness_response *out)
{
    memset(out, 0, sizeof *out);
    GString *req = g_string_new(NULL);
    g_string_append_printf(req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                           method, path);
    if (headers) g_string_append(req, headers);
    /* a POST without a body says so, as browsers do ("Content-Length: 0") */
    if (body || strcmp(method, "POST") == 0)
        g_string_append_printf(req, "Content-Length: %zu\r\n", body ? body_len : 0);
    g_string_append(req, "\r\n");
    if (body) g_string_append_len(req, body, (gssize)body_len);
    size_t n = 0;
    char *raw = harness_raw(port, req->str, req->len, &n);
    g_string_free(req, TRUE);
    if (raw == NULL) return -1;
    char *sep = g_strstr_len(raw, (gssize)n, "\r\n\r\n");
    int rc = -1;
    if (sep && sscanf(raw, "HTTP/1.%*d %d", &out->status) == 1) {
        out->headers = g_strndup(raw, sep - raw);
        out->body_len = n - (size_t)(sep + 4 - raw);
        out->body = g_malloc(out->body_len + 1); /* binary bodies too: NUL bytes included */
        memcpy(out->body, sep + 4, out->body_len);
        out->body[out->body_len] = '\0';
        rc = 0;
    }
    g_free(raw);
    return rc;
}

void harness_response_free(struct harness_response *r)
{
    g_clear_pointer(&r->headers, g_free);
    g_clear_pointer(&r->body, g_free);
}

char *harness_header(const struct harness_response *r, const char *name)
{
    if (r->headers == NULL) return NULL;
    char *lower = g_ascii_strdown(r->headers, -1);
    char *needle = g_strdup_printf("\r\n%s:", name);
    char *at = strstr(lower, needle);
    char *v = NULL;
    if (at) {
        const char *val = r->headers + (at - lower) + strlen(needle);
        while (*val == ' ')
            val++;
        const char *eol = strstr(val, "\r\n");
        v = eol ? g_strndup(val, eol - val) : g_strdup(val);
    }
    g_free(needle);
    g_free(lower);
    return v;
}

int harness_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

int harness_api(int port, const char *method, const char *path, const char *tok, const char *idem,
                const char *body, json_t **out)
{
    GString *h = g_string_new(NULL);
    if (tok) g_string_append_printf(h, "Authorization: Bearer %s\r\n", tok);
    if (idem) g_string_append_printf(h, "Idempotency-Key: %s\r\n", idem);
    if (body) g_string_append(h, "Content-Type: application/json\r\n");
    struct harness_response r;
    int rc = harness_http(port, method, path, h->str, body, body ? strlen(body) : 0, &r);
    g_string_free(h, TRUE);
    if (rc != 0) return -1;
    int status = r.status;
    if (out) *out = json_loads(r.body, 0, NULL);
    harness_response_free(&r);
    return status;
}

char *harness_token(const char *secret, int role, const char *sub, const char *pav)
{
    struct sl_claims c = {.role = (enum sl_role)role, .exp = sl_now_ms() / 1000 + 3600};
    g_strlcpy(c.sub, sub, sizeof c.sub);
    if (pav) g_strlcpy(c.pav, pav, sizeof c.pav);
    return sl_token_sign(secret, &c);
}

long long harness_metric(int port, const char *series)
{
    struct harness_response r;
    if (harness_http(port, "GET", "/metrics", NULL, NULL, 0, &r) != 0) return -1;
    long long v = -1;
    size_t n = strlen(series);
    gchar **lines = g_strsplit(r.body, "\n", -1);
    for (gchar **l = lines; *l; l++) /* HELP and TYPE lines mention the name too */
        if (strncmp(*l, series, n) == 0 && (*l)[n] == ' ')
            v = g_ascii_strtoll(*l + n + 1, NULL, 10);
    g_strfreev(lines);
    harness_response_free(&r);
    return v;
}

GPid harness_ffmpeg_publish(const char *url, const char *size, int fps, int gop, const char *preset,
                            int seconds)
{
    char *src = g_strdup_printf("testsrc2=size=%s:rate=%d", size, fps);
    char *t = g_strdup_printf("%d", seconds), *g = g_strdup_printf("%d", gop);
    const char *argv[] = {"ffmpeg",    "-hide_banner",
                          "-loglevel", "error",
                          "-nostdin",  "-re",
                          "-f",        "lavfi",
                          "-i",        src,
                          "-f",        "lavfi",
                          "-i",        "sine=frequency=440",
                          "-t",        t,
                          "-c:v",      "libx264",
                          "-preset",   preset,
                          "-g",        g,
                          "-c:a",      "aac",
                          "-f",        "flv",
                          url,         NULL};
    GPid pid;
    GError *e = NULL;
    if (!g_spawn_async(NULL, (char **)argv, NULL,
                       G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                       NULL, NULL, &pid, &e))
        die("ffmpeg: %s", e->message);
    g_free(src);
    g_free(t);
    g_free(g);
    return pid;
}

json_t *harness_sale(int port, const char *id)
{
    char path[128];
    g_snprintf(path, sizeof path, "/api/v1/sales/%s", id);
    json_t *s = NULL;
    ck_assert_int_eq(harness_api(port, "GET", path, NULL, NULL, NULL, &s), 200);
    json_int_t available = json_integer_value(json_object_get(s, "available"));
    json_int_t held = json_integer_value(json_object_get(s, "held"));
    json_int_t sold = json_integer_value(json_object_get(s, "sold"));
    ck_assert_int_ge(available, 0);
    ck_assert_int_ge(held, 0);
    ck_assert_int_ge(sold, 0);
    ck_assert_int_eq(available + held + sold, json_integer_value(json_object_get(s, "quantity")));
    return s;
}

void harness_person_id(const char *person, char out[19])
{
    static const int weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    g_snprintf(out, 19, "11010519900101%03u", g_str_hash(person) % 1000);
    int sum = 0;
    for (int i = 0; i < 17; i++)
        sum += (out[i] - '0') * weights[i];
    out[17] = "10X98765432"[sum % 11];
    out[18] = '\0';
}

int harness_open_payment(int port, const char *tok, const char *rid, const char *person, char **pid,
                         json_t **out)
{
    char path[200], id[19];
    harness_person_id(person, id);
    char *body = g_strdup_printf(
        "{\"provider\":\"dev\",\"buyer\":{\"name\":\"张三\",\"id_type\":\"resident_id\","
        "\"id_number\":\"%s\",\"phone\":\"13800138000\"},\"consignee\":{\"name\":\"张三\","
        "\"phone\":\"13800138000\",\"address\":\"上海市浦东新区世纪大道1号\","
        "\"district\":\"310115\"}}",
        id);
    json_t *p = NULL;
    g_snprintf(path, sizeof path, "/api/v1/reservations/%s/payment", rid);
    int st = harness_api(port, "POST", path, tok, NULL, body, &p);
    g_free(body);
    *pid = NULL;
    if (st == 201 || st == 200) {
        *pid = g_strdup(json_string_value(json_object_get(p, "payment_id")));
        json_decref(p);
    } else if (out) {
        *out = p;
    } else {
        json_decref(p);
    }
    return st;
}

int harness_pay(int port, const char *tok, const char *rid, const char *person, json_t **out)
{
    char *pid = NULL, path[200];
    int st = harness_open_payment(port, tok, rid, person, &pid, out);
    if (pid == NULL) return st;
    g_snprintf(path, sizeof path, "/api/v1/payments/dev/%s/complete", pid);
    st = harness_api(port, "POST", path, tok, NULL, NULL, NULL);
    if (st == 200) {
        g_snprintf(path, sizeof path, "/api/v1/reservations/%s/confirm", rid);
        char *body = g_strdup_printf("{\"payment_ref\":\"%s\"}", pid);
        st = harness_api(port, "POST", path, tok, NULL, body, out);
        g_free(body);
    }
    g_free(pid);
    return st;
}
