/* Integration tests of the silklive command line (api.md "Command line"): help, version,
 * exit codes with one-line causes, token minting, embedded Redis, and SIGTERM. */
#include "core/core.h"
#include "harness/harness.h"

#include <check.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(const char *const *args, char **out, char **err)
{
    return harness_silklive_run(args, out, err);
}

/* Exactly one line on stderr, naming the cause. */
static void assert_one_line(const char *err, const char *needle)
{
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(g_str_has_prefix(err, "silklive: "), "stderr: %s", err);
    ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "not one line: %s", err);
    ck_assert_msg(strstr(err, needle) != NULL, "'%s' not in: %s", needle, err);
}

START_TEST(help_and_version)
{
    char *out, *err;
    const char *help[] = {"--help", NULL};
    ck_assert_int_eq(run(help, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "silklive token"));
    g_free(out);
    g_free(err);
    const char *serve_help[] = {"serve", "--help", NULL};
    ck_assert_int_eq(run(serve_help, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "--rtmp-listen"));
    g_free(out);
    g_free(err);
    const char *version[] = {"version", NULL};
    ck_assert_int_eq(run(version, &out, &err), 0);
    ck_assert(g_str_has_prefix(out, "silklive "));
    g_free(out);
    g_free(err);
}
END_TEST

static const struct {
    const char *args[8];
    int status;
    const char *needle;
} usage_errors[] = {
    {{"--bogus", NULL}, 2, "--bogus"},
    {{"serve", "extra", NULL}, 2, "extra"},
    {{"frobnicate", NULL}, 2, "frobnicate"},
    {{"--listen", "nowhere", NULL}, 2, "nowhere"},
    {{"--listen", "127.0.0.1:70000", NULL}, 2, "70000"},
    {{"--modules", "chat,fax", NULL}, 2, "fax"},
    {{"--redis", "mysql://x", NULL}, 2, "mysql://x"},
    {{"--config", "/nonexistent/silklive.ini", NULL}, 2, "/nonexistent/silklive.ini"},
    {{"token", "--role", "king", "--sub", "x", NULL}, 2, "--role"},
    {{"token", "--role", "viewer", NULL}, 2, "--sub"},
    {{"token", "--role", "consul", "--sub", "c1", NULL}, 2, "--pavilion"},
    {{"token", "--role", "viewer", "--sub", "v", "--ttl"}, 2, "ttl"},
};

START_TEST(usage_errors_exit_2)
{
    char *out, *err;
    ck_assert_int_eq(run(usage_errors[_i].args, &out, &err), usage_errors[_i].status);
    assert_one_line(err, usage_errors[_i].needle);
    g_free(out);
    g_free(err);
}
END_TEST

/* A bad value in any section, the core's or a module's, is a usage error naming it. */
static const struct {
    const char *text, *needle;
} bad_configs[] = {
    {"[server]\nlisten = 127.0.0.1:http\n", "bad.ini"},
    {"[chat]\nrate_messages = 0\n", "rate_messages"},
    {"[transcode]\npreset = warp\n", "preset"},
    {"[ingest]\nidle_timeout_s = 1\n", "idle_timeout_s"},
};

START_TEST(invalid_config_file_exit_2)
{
    char *dir = harness_tmpdir();
    char *p = g_build_filename(dir, "bad.ini", NULL);
    g_file_set_contents(p, bad_configs[_i].text, -1, NULL);
    char listen_arg[32];
    g_snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", harness_free_port());
    const char *args[] = {"--config", p,          "--listen", listen_arg, "--data-dir",
                          dir,        "--secret", "s",        NULL};
    char *out, *err;
    ck_assert_int_eq(run(args, &out, &err), 2);
    assert_one_line(err, bad_configs[_i].needle);
    g_free(out);
    g_free(err);
    g_free(p);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

START_TEST(port_in_use_exit_1)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    getsockname(fd, (struct sockaddr *)&a, &alen);
    char listen_arg[32];
    g_snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", ntohs(a.sin_port));
    char *dir = harness_tmpdir();
    const char *args[] = {
        "--listen", listen_arg, "--data-dir", dir, "--redis", "redis://127.0.0.1:1", NULL};
    char *out, *err;
    ck_assert_int_eq(run(args, &out, &err), 1);
    assert_one_line(err, "in use");
    g_free(out);
    g_free(err);
    close(fd);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

START_TEST(unreachable_redis_exit_1)
{
    char *dir = harness_tmpdir();
    char listen_arg[32], redis_arg[48];
    g_snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", harness_free_port());
    /* port 1: nothing ever listens there (a "free" port may be taken by a parallel test) */
    g_snprintf(redis_arg, sizeof redis_arg, "redis://127.0.0.1:%d", 1);
    const char *args[] = {"--listen", listen_arg, "--data-dir", dir, "--redis", redis_arg, NULL};
    char *out, *err;
    ck_assert_int_eq(run(args, &out, &err), 1);
    /* the log lines before it are fine; the last line names the cause */
    gchar **lines = g_strsplit(g_strstrip(err), "\n", -1);
    const char *last = lines[g_strv_length(lines) - 1];
    ck_assert_msg(g_str_has_prefix(last, "silklive: ") && strstr(last, redis_arg),
                  "last line [%s] of stderr [%s]", last, err);
    g_strfreev(lines);
    g_free(out);
    g_free(err);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

START_TEST(token_verifies_against_server_secret)
{
    char *dir = harness_tmpdir();
    const char *args[] = {"token",      "--role", "host",  "--sub", "h-1",        "--name", "Ana",
                          "--pavilion", "CL",     "--ttl", "120",   "--data-dir", dir,      NULL};
    char *out, *err;
    ck_assert_int_eq(run(args, &out, &err), 0);
    g_strstrip(out);
    char *secret_path = g_build_filename(dir, "secret", NULL);
    char *secret = NULL;
    ck_assert(g_file_get_contents(secret_path, &secret, NULL, NULL));
    struct stat st;
    stat(secret_path, &st);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    struct sl_claims c;
    ck_assert_int_eq(sl_token_verify(g_strstrip(secret), out, strlen(out), sl_now_ms() / 1000, &c),
                     SL_OK);
    ck_assert_str_eq(c.sub, "h-1");
    ck_assert_str_eq(c.name, "Ana");
    ck_assert_str_eq(c.pav, "CL");
    ck_assert_int_eq(c.role, SL_ROLE_HOST);
    ck_assert_int_le(c.exp, sl_now_ms() / 1000 + 120);
    ck_assert_int_gt(c.exp, sl_now_ms() / 1000 + 100);
    g_free(out);
    g_free(err);
    /* --secret wins */
    const char *args2[] = {"token", "--role", "admin", "--sub", "root", "--secret", "xyz", NULL};
    ck_assert_int_eq(run(args2, &out, &err), 0);
    g_strstrip(out);
    ck_assert_int_eq(sl_token_verify("xyz", out, strlen(out), sl_now_ms() / 1000, &c), SL_OK);
    g_free(out);
    g_free(err);
    g_free(secret);
    g_free(secret_path);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

/* Names are UTF-8 whatever the locale: the C locale of a systemd service or a minimal machine
 * must still mint a token for a Chinese name, and a name that is not UTF-8 is refused. */
START_TEST(token_name_is_utf8_under_c_locale)
{
    g_setenv("LC_ALL", "C", TRUE);
    const char *args[] = {"token", "--role",     "consul", "--sub",    "li-lei", "--name",
                          "李雷",  "--pavilion", "CN",     "--secret", "s3",     NULL};
    char *out, *err;
    ck_assert_msg(run(args, &out, &err) == 0, "stderr: %s", err);
    g_strstrip(out);
    struct sl_claims c;
    ck_assert_int_eq(sl_token_verify("s3", out, strlen(out), sl_now_ms() / 1000, &c), SL_OK);
    ck_assert_str_eq(c.name, "李雷");
    g_free(out);
    g_free(err);
    const char *bad[] = {"token",  "--role",   "viewer",   "--sub", "x",
                         "--name", "\xff\xfe", "--secret", "s3",    NULL};
    ck_assert_int_eq(run(bad, &out, &err), 2);
    assert_one_line(err, "");
    g_free(out);
    g_free(err);
    g_unsetenv("LC_ALL");
}
END_TEST

/* SILKLIVE_SECRET outranks [auth] secret for token as it does for serve: a token minted with
 * the same config and environment as the server verifies there. */
START_TEST(token_secret_precedence_matches_serve)
{
    char *dir = harness_tmpdir();
    char *ini = g_build_filename(dir, "s.ini", NULL);
    g_file_set_contents(ini, "[auth]\nsecret = from-config\n", -1, NULL);
    g_setenv("SILKLIVE_SECRET", "from-env", TRUE);
    const char *args[] = {"token", "--role", "viewer", "--sub", "v1", "--config", ini, NULL};
    char *out, *err;
    ck_assert_int_eq(run(args, &out, &err), 0);
    g_strstrip(out);
    struct sl_claims c;
    ck_assert_int_eq(sl_token_verify("from-env", out, strlen(out), sl_now_ms() / 1000, &c), SL_OK);
    g_free(out);
    g_free(err);
    g_unsetenv("SILKLIVE_SECRET");
    ck_assert_int_eq(run(args, &out, &err), 0);
    g_strstrip(out);
    ck_assert_int_eq(sl_token_verify("from-config", out, strlen(out), sl_now_ms() / 1000, &c),
                     SL_OK);
    g_free(out);
    g_free(err);
    g_free(ini);
    harness_rmtree(dir);
    g_free(dir);
}
END_TEST

/* The data dir is locked only by a node that uses it (embedded Redis, a generated secret):
 * nodes on a shared Redis with a configured secret start side by side from one directory. */
START_TEST(data_dir_locked_only_when_used)
{
    struct harness_redis r;
    harness_redis_start(&r, NULL);
    char url[64];
    g_snprintf(url, sizeof url, "redis://127.0.0.1:%d", r.port);
    const char *args[] = {"--redis", url, "--secret", "shared", "--modules", "chat", NULL};
    struct harness_silklive a, b;
    ck_assert(harness_silklive_start(&a, args, NULL));
    const char *args_b[] = {"--redis", url,          "--secret", "shared", "--modules",
                            "chat",    "--data-dir", a.data_dir, NULL};
    int status = -1;
    ck_assert_msg(harness_silklive_start(&b, args_b, &status), "second node exited %d", status);
    harness_silklive_stop(&b);
    /* without a secret the node generates one in the data dir, and then it is locked */
    const char *args_c[] = {"--redis", url, "--modules", "chat", NULL};
    struct harness_silklive c;
    ck_assert(harness_silklive_start(&c, args_c, NULL));
    const char *args_d[] = {"--redis", url, "--modules", "chat", "--data-dir", c.data_dir, NULL};
    struct harness_silklive d;
    ck_assert(!harness_silklive_start(&d, args_d, &status));
    ck_assert_int_eq(status, 1);
    harness_silklive_stop(&d);
    harness_silklive_stop(&c);
    harness_silklive_stop(&a);
    harness_redis_stop(&r);
}
END_TEST

static int count_redis_servers_under(const char *dir)
{
    char *cmd = g_strdup_printf("pgrep -f -c 'redis-server.*%s'", dir);
    char *out = NULL;
    int n = 0;
    if (g_spawn_command_line_sync(cmd, &out, NULL, NULL, NULL) && out) n = atoi(out);
    g_free(cmd);
    g_free(out);
    return n;
}

START_TEST(embedded_redis_and_sigterm)
{
    struct harness_silklive s;
    ck_assert(harness_silklive_start(&s, NULL, NULL)); /* default: --redis embedded */
    ck_assert_int_eq(count_redis_servers_under(s.data_dir), 1);
    struct harness_response r;
    harness_http(s.port, "GET", "/readyz", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    harness_response_free(&r);
    char *aof_dir = g_build_filename(s.data_dir, "redis", NULL);
    ck_assert(g_file_test(aof_dir, G_FILE_TEST_IS_DIR));
    char *data_dir = g_strdup(s.data_dir);
    /* a second silklive on the same data dir is refused */
    const char *args[] = {"--listen", "127.0.0.1:1", "--data-dir", data_dir, NULL};
    char *out, *err;
    char listen_arg[32];
    g_snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", harness_free_port());
    args[1] = listen_arg;
    ck_assert_int_eq(run(args, &out, &err), 1);
    assert_one_line(err, "in use by another silklive");
    g_free(out);
    g_free(err);

    gint64 t0 = g_get_monotonic_time();
    pid_t pid = s.pid;
    kill(pid, SIGTERM);
    int status = -1;
    while (g_get_monotonic_time() - t0 < 10 * G_USEC_PER_SEC) {
        if (waitpid(pid, &status, WNOHANG) == pid) break;
        g_usleep(20000);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    ck_assert_int_lt(g_get_monotonic_time() - t0, 10 * G_USEC_PER_SEC);
    s.pid = 0;
    ck_assert_int_eq(count_redis_servers_under(data_dir), 0); /* embedded Redis stopped too */
    harness_silklive_stop(&s);
    g_free(aof_dir);
    g_free(data_dir);
}
END_TEST

START_TEST(embedded_redis_dies_with_kill_9)
{
    struct harness_silklive s;
    ck_assert(harness_silklive_start(&s, NULL, NULL));
    char *data_dir = g_strdup(s.data_dir);
    kill(s.pid, SIGKILL);
    waitpid(s.pid, NULL, 0);
    s.pid = 0;
    int n = 1;
    for (int i = 0; i < 100 && n > 0; i++) {
        g_usleep(50000);
        n = count_redis_servers_under(data_dir);
    }
    ck_assert_int_eq(n, 0);
    harness_silklive_stop(&s);
    g_free(data_dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, help_and_version);
    tcase_add_test(tc, token_name_is_utf8_under_c_locale);
    tcase_add_test(tc, data_dir_locked_only_when_used);
    tcase_add_test(tc, token_secret_precedence_matches_serve);
    tcase_add_loop_test(tc, usage_errors_exit_2, 0, G_N_ELEMENTS(usage_errors));
    tcase_add_loop_test(tc, invalid_config_file_exit_2, 0, G_N_ELEMENTS(bad_configs));
    tcase_add_test(tc, port_in_use_exit_1);
    tcase_add_test(tc, unreachable_redis_exit_1);
    tcase_add_test(tc, token_verifies_against_server_secret);
    tcase_add_test(tc, embedded_redis_and_sigterm);
    tcase_add_test(tc, embedded_redis_dies_with_kill_9);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
