/* silklive: the composition root. Parses the command line (api.md "Command line"), builds the
 * config, adds the compiled-in modules to the server and runs it; or mints a token. */
#include "chat/chat.h"
#include "commerce/commerce.h"
#include "core/core.h"
#include "ingest/ingest.h"
#include "transcode/transcode.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>

#ifndef SILKLIVE_VERSION
#define SILKLIVE_VERSION "0.0.0"
#endif

static const char usage_text[] =
    "Usage:\n"
    "  silklive [serve] [--config FILE] [--listen HOST:PORT] [--rtmp-listen HOST:PORT]\n"
    "           [--redis URL|embedded] [--media-dir DIR] [--data-dir DIR] [--modules LIST]\n"
    "           [--secret S] [--demo] [--log-level LEVEL]\n"
    "  silklive token --role R --sub ID [--name N] [--pavilion CODE] [--ttl SECONDS]\n"
    "           [--config FILE] [--secret S] [--data-dir DIR]\n"
    "  silklive routes [--modules LIST] [--config FILE]\n"
    "  silklive version\n"
    "\n"
    "Run 'silklive serve --help' or 'silklive token --help' for every option.\n";

static int fail(int code, const char *fmt, const char *detail)
{
    fprintf(stderr, "silklive: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    return code;
}

struct common_flags {
    char *config;
    char *secret;
    char *data_dir;
};

/* Defaults, then the config file, then flags: the order api.md prescribes. */
static struct sl_config *config_build(const struct common_flags *f, GError **err)
{
    struct sl_config *c = sl_config_new();
    if (f->config && sl_config_load_file(c, f->config, err) != SL_OK) {
        sl_config_free(c);
        return NULL;
    }
    if (f->data_dir) {
        g_free(c->data_dir);
        c->data_dir = g_strdup(f->data_dir);
    }
    /* SILKLIVE_SECRET stands for --secret: both outrank [auth] secret, for serve and token alike */
    const char *secret = f->secret ? f->secret : g_getenv("SILKLIVE_SECRET");
    if (secret && *secret) {
        g_free(c->secret);
        c->secret = g_strdup(secret);
    }
    return c;
}

/* Every compiled-in module; the config says which run. */
static void add_modules(sl_server *srv)
{
    sl_server_add_module(srv, &commerce_module);
    sl_server_add_module(srv, &chat_module);
    sl_server_add_module(srv, &transcode_module); /* before ingest: it stops after it */
    sl_server_add_module(srv, &ingest_module);
}

static int cmd_version(void)
{
    printf("silklive %s (libwebsockets %s, GLib %u.%u.%u, jansson %s)\n", SILKLIVE_VERSION,
           lws_get_library_version(), glib_major_version, glib_minor_version, glib_micro_version,
           JANSSON_VERSION);
    return 0;
}

static int cmd_token(int argc, char **argv)
{
    struct common_flags f = {0};
    char *role = NULL, *sub = NULL, *name = NULL, *pav = NULL;
    gint64 ttl = 3600;
    GOptionEntry entries[] = {
        {"role", 0, 0, G_OPTION_ARG_STRING, &role, "viewer, host, consul or admin", "R"},
        {"sub", 0, 0, G_OPTION_ARG_STRING, &sub, "user id", "ID"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &name, "display name", "N"},
        {"pavilion", 0, 0, G_OPTION_ARG_STRING, &pav, "pavilion code (host, consul)", "CODE"},
        {"ttl", 0, 0, G_OPTION_ARG_INT64, &ttl, "lifetime in seconds (default 3600)", "SECONDS"},
        {"config", 0, 0, G_OPTION_ARG_FILENAME, &f.config, "config file", "FILE"},
        {"secret", 0, 0, G_OPTION_ARG_STRING, &f.secret, "signing secret", "S"},
        {"data-dir", 0, 0, G_OPTION_ARG_FILENAME, &f.data_dir, "data dir holding the secret",
         "DIR"},
        {NULL},
    };
    GOptionContext *oc = g_option_context_new("- mint a signed token");
    g_option_context_add_main_entries(oc, entries, NULL);
    GError *err = NULL;
    int rc = 0;
    struct sl_config *c = NULL;
    struct sl_claims claims = {0};
    if (!g_option_context_parse(oc, &argc, &argv, &err)) {
        rc = fail(SL_EXIT_USAGE, "%s", err->message);
        goto out;
    }
    if (argc > 1) {
        rc = fail(SL_EXIT_USAGE, "unexpected argument '%s'", argv[1]);
        goto out;
    }
    claims.role = sl_role_parse(role);
    if (claims.role == SL_ROLE_NONE) {
        rc = fail(SL_EXIT_USAGE, "--role must be viewer, host, consul or admin (got '%s')",
                  role ? role : "");
        goto out;
    }
    if (sub == NULL || !sl_id_valid(sub, strlen(sub))) {
        rc = fail(SL_EXIT_USAGE, "--sub must be an id of [A-Za-z0-9_-]{1,64} (got '%s')",
                  sub ? sub : "");
        goto out;
    }
    gboolean needs_pav = claims.role == SL_ROLE_HOST || claims.role == SL_ROLE_CONSUL;
    if (needs_pav &&
        (pav == NULL || strlen(pav) != 2 || !g_ascii_isupper(pav[0]) || !g_ascii_isupper(pav[1]))) {
        rc = fail(SL_EXIT_USAGE, "--pavilion must be a two-letter upper-case code for %s",
                  sl_role_name(claims.role));
        goto out;
    }
    if (ttl < 1 || ttl > 10LL * 365 * 24 * 3600) {
        rc = fail(SL_EXIT_USAGE, "%s", "--ttl must be 1 second to 10 years");
        goto out;
    }
    if (name && strlen(name) >= sizeof claims.name) {
        rc = fail(SL_EXIT_USAGE, "%s", "--name is too long (at most 128 bytes)");
        goto out;
    }
    g_strlcpy(claims.sub, sub, sizeof claims.sub);
    if (name) g_strlcpy(claims.name, name, sizeof claims.name);
    if (needs_pav) g_strlcpy(claims.pav, pav, sizeof claims.pav);
    claims.exp = sl_now_ms() / 1000 + ttl;

    c = config_build(&f, &err);
    if (c == NULL) {
        rc = fail(SL_EXIT_USAGE, "%s", err->message);
        goto out;
    }
    if (sl_config_resolve_secret(c, &err) != SL_OK) {
        rc = fail(SL_EXIT_RUNTIME, "%s", err->message);
        goto out;
    }
    char *tok = sl_token_sign(c->secret, &claims);
    if (tok == NULL) {
        rc = fail(SL_EXIT_USAGE, "%s", "cannot sign these claims");
        goto out;
    }
    printf("%s\n", tok);
    g_free(tok);
out:
    g_clear_error(&err);
    sl_config_free(c);
    g_option_context_free(oc);
    g_free(role);
    g_free(sub);
    g_free(name);
    g_free(pav);
    g_free(f.config);
    g_free(f.secret);
    g_free(f.data_dir);
    return rc;
}

/* Every HTTP route the compiled-in modules serve, one "METHOD /pattern" a line: what
 * docs/openapi.json describes (its test holds the two together). */
static int cmd_routes(int argc, char **argv)
{
    struct common_flags f = {0};
    char *modules = NULL;
    GOptionEntry entries[] = {
        {"config", 0, 0, G_OPTION_ARG_FILENAME, &f.config, "config file (INI)", "FILE"},
        {"modules", 0, 0, G_OPTION_ARG_STRING, &modules, "ingest,transcode,chat,commerce", "LIST"},
        {NULL},
    };
    GOptionContext *oc = g_option_context_new("- list the HTTP routes this build serves");
    g_option_context_add_main_entries(oc, entries, NULL);
    GError *err = NULL;
    int rc = 0;
    struct sl_config *c = NULL;
    sl_server *srv = NULL;
    GPtrArray *routes = NULL;
    if (!g_option_context_parse(oc, &argc, &argv, &err) || (c = config_build(&f, &err)) == NULL ||
        (modules && sl_config_parse_modules(modules, &c->modules, &err))) {
        rc = fail(SL_EXIT_USAGE, "%s", err->message);
        goto out;
    }
    if (argc > 1) {
        rc = fail(SL_EXIT_USAGE, "unexpected argument '%s'", argv[1]);
        goto out;
    }
    sl_log_init("error");
    srv = sl_server_new(c);
    c = NULL; /* owned by srv */
    add_modules(srv);
    routes = sl_server_routes(srv, &err);
    if (routes == NULL) {
        rc = fail(SL_EXIT_USAGE, "%s", err->message);
        goto out;
    }
    for (guint i = 0; i < routes->len; i++)
        printf("%s\n", (const char *)routes->pdata[i]);
out:
    if (routes) g_ptr_array_unref(routes);
    g_clear_error(&err);
    sl_server_free(srv);
    sl_config_free(c);
    g_option_context_free(oc);
    g_free(modules);
    g_free(f.config);
    return rc;
}

static int cmd_serve(int argc, char **argv)
{
    struct common_flags f = {0};
    char *listen = NULL, *rtmp = NULL, *redis = NULL, *media = NULL, *modules = NULL;
    char *log_level = NULL;
    gboolean demo = FALSE;
    GOptionEntry entries[] = {
        {"config", 0, 0, G_OPTION_ARG_FILENAME, &f.config, "config file (INI)", "FILE"},
        {"listen", 0, 0, G_OPTION_ARG_STRING, &listen, "HTTP + WebSocket (127.0.0.1:8080)",
         "HOST:PORT"},
        {"rtmp-listen", 0, 0, G_OPTION_ARG_STRING, &rtmp, "RTMP ingest (127.0.0.1:1935)",
         "HOST:PORT"},
        {"redis", 0, 0, G_OPTION_ARG_STRING, &redis,
         "redis://HOST:PORT[/DB], unix:///PATH, sentinel://HOST:PORT[,...]/NAME or embedded "
         "(default)",
         "URL"},
        {"media-dir", 0, 0, G_OPTION_ARG_FILENAME, &media, "HLS output (./media)", "DIR"},
        {"data-dir", 0, 0, G_OPTION_ARG_FILENAME, &f.data_dir, "secret, embedded Redis (./data)",
         "DIR"},
        {"modules", 0, 0, G_OPTION_ARG_STRING, &modules, "ingest,transcode,chat,commerce", "LIST"},
        {"secret", 0, 0, G_OPTION_ARG_STRING, &f.secret, "token signing secret", "S"},
        {"demo", 0, 0, G_OPTION_ARG_NONE, &demo,
         "seed a demo pavilion whose channel is live with a test pattern; print how to use it",
         NULL},
        {"log-level", 0, 0, G_OPTION_ARG_STRING, &log_level, "error, warning, info or debug",
         "LEVEL"},
        {NULL},
    };
    GOptionContext *oc = g_option_context_new("- run the live-commerce server");
    g_option_context_add_main_entries(oc, entries, NULL);
    GError *err = NULL;
    int rc = 0;
    struct sl_config *c = NULL;
    sl_server *srv = NULL;
    if (!g_option_context_parse(oc, &argc, &argv, &err)) {
        rc = fail(SL_EXIT_USAGE, "%s", err->message);
        goto out;
    }
    if (argc > 1) {
        rc = fail(SL_EXIT_USAGE, "unexpected argument '%s' (see silklive --help)", argv[1]);
        goto out;
    }
    c = config_build(&f, &err);
    if (c == NULL ||
        (listen && sl_config_parse_listen(listen, &c->listen_host, &c->listen_port, &err)) ||
        (rtmp && sl_config_parse_listen(rtmp, &c->rtmp_host, &c->rtmp_port, &err)) ||
        (modules && sl_config_parse_modules(modules, &c->modules, &err)) ||
        (redis && sl_redis_url_check(redis, &err))) {
        rc = fail(SL_EXIT_USAGE, "%s", err->message);
        goto out;
    }
    if (redis) {
        g_free(c->redis_url);
        c->redis_url = g_strdup(redis);
    }
    if (media) {
        g_free(c->media_dir);
        c->media_dir = g_strdup(media);
    }
    if (log_level) {
        g_free(c->log_level);
        c->log_level = g_strdup(log_level);
    }
    if (demo) c->demo = TRUE;

    sl_log_init(c->log_level);
    srv = sl_server_new(c);
    c = NULL; /* owned by srv */
    add_modules(srv);
    if (sl_server_start(srv, &err, &rc) != SL_OK) {
        fail(rc, "%s", err->message);
        goto out;
    }
    sl_server_run(srv);
    rc = 0;
out:
    g_clear_error(&err);
    sl_server_free(srv);
    sl_config_free(c);
    g_option_context_free(oc);
    g_free(listen);
    g_free(rtmp);
    g_free(redis);
    g_free(media);
    g_free(modules);
    g_free(log_level);
    g_free(f.config);
    g_free(f.secret);
    g_free(f.data_dir);
    return rc;
}

int main(int argc, char **argv)
{
    /* Arguments and config values are UTF-8 whatever the locale (systemd services and minimal
     * machines run under C): GOption converts string arguments from the charset GLib reports,
     * and GLib takes that from CHARSET before the locale. Invalid UTF-8 is still refused. */
    g_setenv("CHARSET", "UTF-8", TRUE);
    const char *verb = argc > 1 ? argv[1] : "serve";
    if (strcmp(verb, "version") == 0 || strcmp(verb, "--version") == 0) return cmd_version();
    if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(verb, "token") == 0) return cmd_token(argc - 1, argv + 1);
    if (strcmp(verb, "routes") == 0) return cmd_routes(argc - 1, argv + 1);
    if (argc > 1 && strcmp(verb, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (argc == 1 || verb[0] == '-') return cmd_serve(argc, argv);
    return fail(SL_EXIT_USAGE, "unknown command '%s' (see silklive --help)", verb);
}
