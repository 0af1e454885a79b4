/* embedded: `--redis embedded` runs a private redis-server on a unix socket in the data dir,
 * durable (AOF, fsync always) and tied to our lifetime (it dies with us, even after kill -9). */
#include "internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <unistd.h>

#define EMBEDDED_START_TIMEOUT_MS 10000
#define EMBEDDED_STOP_TIMEOUT_MS  5000

struct embedded_redis {
    GMainContext *ctx;
    GSubprocess *proc; /* owned */
    char *socket_path; /* owned */
    char *url;         /* owned */
    gboolean exited;
};

static void child_setup(gpointer data)
{
    /* The kernel delivers SIGTERM to redis-server when silklive dies for any reason. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}

static void on_exit_cb(GObject *obj, GAsyncResult *res, gpointer data)
{
    gboolean *exited = data;
    g_subprocess_wait_finish(G_SUBPROCESS(obj), res, NULL);
    *exited = TRUE;
}

static gboolean tick(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

/* Wait up to ms on ctx, dispatching other sources meanwhile (the child watch among them). */
static void iterate_for(GMainContext *ctx, guint ms)
{
    gboolean fired = FALSE;
    GSource *t = g_timeout_source_new(ms);
    g_source_set_callback(t, tick, &fired, NULL);
    g_source_attach(t, ctx);
    while (!fired)
        g_main_context_iteration(ctx, TRUE);
    g_source_destroy(t);
    g_source_unref(t);
}

static gboolean socket_answers(const char *path)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(path, tv);
    gboolean ok = FALSE;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return ok;
}

embedded_redis *embedded_redis_start(GMainContext *ctx, const char *binary, const char *data_dir,
                                     GError **err)
{
    char *dir = g_build_filename(data_dir, "redis", NULL);
    if (g_mkdir_with_parents(dir, 0700) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot create %s: %s", dir, g_strerror(errno));
        g_free(dir);
        return NULL;
    }
    char *abs_dir = g_canonicalize_filename(dir, NULL);
    g_free(dir);
    char *sock = g_build_filename(abs_dir, "redis.sock", NULL);
    if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        /* unix socket paths are limited to 107 bytes; fall back to a per-data-dir name in /tmp */
        char *hash = g_compute_checksum_for_string(G_CHECKSUM_SHA1, abs_dir, -1);
        g_free(sock);
        sock = g_strdup_printf("%s/silklive-%.12s.sock", g_get_tmp_dir(), hash);
        g_free(hash);
    }
    unlink(sock); /* a stale socket from a crash; the data dir lock says nobody else uses it */
    char *logfile = g_build_filename(abs_dir, "redis.log", NULL);

    GSubprocessLauncher *l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                                       G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_subprocess_launcher_set_child_setup(l, child_setup, NULL, NULL);
    const char *argv[] = {binary,   "--port", "0",     "--unixsocket", sock,  "--unixsocketperm",
                          "700",    "--dir",  abs_dir, "--appendonly", "yes", "--appendfsync",
                          "always", "--save", "",      "--daemonize",  "no",  "--logfile",
                          logfile,  NULL};
    GError *e = NULL;
    GSubprocess *proc = g_subprocess_launcher_spawnv(l, argv, &e);
    g_object_unref(l);
    g_free(logfile);
    if (proc == NULL) {
        g_set_error(err, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                    "cannot start embedded Redis (%s): %s", binary, e->message);
        g_error_free(e);
        g_free(sock);
        g_free(abs_dir);
        return NULL;
    }
    embedded_redis *er = g_new0(embedded_redis, 1);
    er->ctx = ctx;
    er->proc = proc;
    er->socket_path = sock;
    er->url = g_strdup_printf("unix://%s", sock);
    g_subprocess_wait_async(proc, NULL, on_exit_cb, &er->exited);

    gint64 deadline = g_get_monotonic_time() + EMBEDDED_START_TIMEOUT_MS * 1000;
    while (!er->exited && g_get_monotonic_time() < deadline) {
        if (socket_answers(sock)) {
            g_info("embedded redis-server (pid %s) on %s", g_subprocess_get_identifier(proc), sock);
            g_free(abs_dir);
            return er;
        }
        iterate_for(ctx, 25);
    }
    g_set_error(err, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                "embedded Redis did not come up (see %s/redis.log)", abs_dir);
    g_free(abs_dir);
    embedded_redis_stop(er);
    return NULL;
}

const char *embedded_redis_url(const embedded_redis *e)
{
    return e->url;
}

void embedded_redis_stop(embedded_redis *e)
{
    if (e == NULL) return;
    if (!e->exited) {
        g_subprocess_send_signal(e->proc, SIGTERM); /* redis fsyncs the AOF and exits */
        gint64 deadline = g_get_monotonic_time() + EMBEDDED_STOP_TIMEOUT_MS * 1000;
        while (!e->exited && g_get_monotonic_time() < deadline)
            iterate_for(e->ctx, 20);
        if (!e->exited) {
            g_warning("embedded redis-server did not stop in time; killing it");
            g_subprocess_force_exit(e->proc);
            while (!e->exited)
                iterate_for(e->ctx, 20);
        }
    }
    unlink(e->socket_path);
    g_object_unref(e->proc);
    g_free(e->socket_path);
    g_free(e->url);
    g_free(e);
}
