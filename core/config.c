/* config: built-in defaults, then the GKeyFile config, then command-line flags (api.md). */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SILKLIVE_WEB_DIR
#define SILKLIVE_WEB_DIR "web"
#endif

static const char *const module_names[] = {"ingest", "transcode", "chat", "commerce"};

struct sl_config *sl_config_new(void)
{
    struct sl_config *c = g_new0(struct sl_config, 1);
    c->listen_host = g_strdup("127.0.0.1");
    c->listen_port = 8080;
    c->rtmp_host = g_strdup("127.0.0.1");
    c->rtmp_port = 1935;
    c->media_dir = g_strdup("./media");
    c->data_dir = g_strdup("./data");
    c->web_dir = g_strdup(SILKLIVE_WEB_DIR);
    c->redis_url = g_strdup("embedded");
    c->redis_server = g_strdup("redis-server");
    c->redis_timeout_ms = 2000;
    c->modules = SL_MODULE_ALL;
    c->log_level = g_strdup("info");
    c->file = g_key_file_new();
    return c;
}

void sl_config_free(struct sl_config *c)
{
    if (c == NULL) return;
    g_free(c->listen_host);
    g_free(c->rtmp_host);
    g_free(c->media_dir);
    g_free(c->data_dir);
    g_free(c->web_dir);
    g_free(c->redis_url);
    g_free(c->redis_server);
    if (c->secret) memset(c->secret, 0, strlen(c->secret));
    g_free(c->secret);
    g_free(c->log_level);
    g_key_file_free(c->file);
    g_free(c);
}

int sl_config_parse_listen(const char *value, char **host, int *port, GError **err)
{
    const char *colon = value ? strrchr(value, ':') : NULL;
    if (colon == NULL || colon == value) {
        g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "invalid listen address '%s' (want HOST:PORT)", value ? value : "");
        return SL_ERR;
    }
    guint64 p = 0;
    if (!g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &p, NULL)) {
        g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "invalid port in listen address '%s'", value);
        return SL_ERR;
    }
    const char *h = value;
    size_t hlen = (size_t)(colon - value);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') { /* [::1]:8080 */
        h++;
        hlen -= 2;
    }
    g_free(*host);
    *host = g_strndup(h, hlen);
    *port = (int)p;
    return SL_OK;
}

int sl_config_parse_modules(const char *value, unsigned *mask, GError **err)
{
    unsigned m = 0;
    gchar **parts = g_strsplit(value ? value : "", ",", -1);
    for (gchar **p = parts; *p; p++) {
        char *name = g_strstrip(*p);
        if (*name == '\0') continue;
        gboolean found = FALSE;
        for (unsigned i = 0; i < G_N_ELEMENTS(module_names); i++) {
            if (strcmp(name, module_names[i]) == 0) {
                m |= 1u << i;
                found = TRUE;
            }
        }
        if (!found) {
            g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "unknown module '%s' (known: ingest,transcode,chat,commerce)", name);
            g_strfreev(parts);
            return SL_ERR;
        }
    }
    g_strfreev(parts);
    *mask = m;
    return SL_OK;
}

/* Copy one string key if present; a key present but unreadable is an error. */
static int take_string(GKeyFile *kf, const char *group, const char *key, char **dst, GError **err)
{
    if (!g_key_file_has_key(kf, group, key, NULL)) return SL_OK;
    char *v = g_key_file_get_string(kf, group, key, err);
    if (v == NULL) return SL_ERR;
    g_free(*dst);
    *dst = g_strstrip(v);
    return SL_OK;
}

int sl_config_load_file(struct sl_config *c, const char *path, GError **err)
{
    GError *e = NULL;
    GKeyFile *kf = g_key_file_new();
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e)) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "config %s: %s", path, e->message);
        g_error_free(e);
        g_key_file_free(kf);
        return SL_ERR;
    }
    char *listen = NULL, *rtmp = NULL, *modules = NULL;
    int rc = SL_OK;
    if (take_string(kf, "server", "listen", &listen, &e) != SL_OK ||
        take_string(kf, "server", "rtmp_listen", &rtmp, &e) != SL_OK ||
        take_string(kf, "server", "modules", &modules, &e) != SL_OK ||
        take_string(kf, "server", "media_dir", &c->media_dir, &e) != SL_OK ||
        take_string(kf, "server", "data_dir", &c->data_dir, &e) != SL_OK ||
        take_string(kf, "server", "web_dir", &c->web_dir, &e) != SL_OK ||
        take_string(kf, "redis", "url", &c->redis_url, &e) != SL_OK ||
        take_string(kf, "redis", "server", &c->redis_server, &e) != SL_OK ||
        take_string(kf, "auth", "secret", &c->secret, &e) != SL_OK ||
        take_string(kf, "log", "level", &c->log_level, &e) != SL_OK)
        rc = SL_ERR;
    if (rc == SL_OK && listen)
        rc = sl_config_parse_listen(listen, &c->listen_host, &c->listen_port, &e);
    if (rc == SL_OK && rtmp) rc = sl_config_parse_listen(rtmp, &c->rtmp_host, &c->rtmp_port, &e);
    if (rc == SL_OK && modules) rc = sl_config_parse_modules(modules, &c->modules, &e);
    if (rc == SL_OK) rc = sl_redis_url_check(c->redis_url, &e);
    if (rc == SL_OK && g_key_file_has_key(kf, "redis", "timeout_ms", NULL)) {
        int t = g_key_file_get_integer(kf, "redis", "timeout_ms", &e);
        if (e == NULL && (t < 10 || t > 60000))
            g_set_error(&e, SL_ERROR, SL_ERROR_INVALID, "[redis] timeout_ms must be 10..60000");
        if (e != NULL)
            rc = SL_ERR;
        else
            c->redis_timeout_ms = t;
    }
    if (rc == SL_OK && g_key_file_has_key(kf, "server", "demo", NULL)) {
        gboolean d = g_key_file_get_boolean(kf, "server", "demo", &e);
        if (e != NULL)
            rc = SL_ERR;
        else
            c->demo = d;
    }
    g_free(listen);
    g_free(rtmp);
    g_free(modules);
    if (rc != SL_OK) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "config %s: %s", path,
                    e ? e->message : "invalid value");
        g_clear_error(&e);
        g_key_file_free(kf);
        return SL_ERR;
    }
    g_key_file_free(c->file);
    c->file = kf;
    return SL_OK;
}

/* 256 random bits from the kernel, hex-encoded. */
static char *secret_generate(GError **err)
{
    guint8 raw[32];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot read /dev/urandom: %s", g_strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    close(fd);
    GString *s = g_string_sized_new(65);
    for (size_t i = 0; i < sizeof raw; i++)
        g_string_append_printf(s, "%02x", raw[i]);
    return g_string_free(s, FALSE);
}

gboolean sl_config_secret_given(const struct sl_config *c)
{
    const char *env = g_getenv("SILKLIVE_SECRET");
    return (c->secret && *c->secret) || (env && *env);
}

int sl_config_resolve_secret(struct sl_config *c, GError **err)
{
    if (c->secret && *c->secret) return SL_OK;
    if (sl_config_secret_given(c)) {
        g_free(c->secret);
        c->secret = g_strdup(g_getenv("SILKLIVE_SECRET"));
        return SL_OK;
    }
    if (g_mkdir_with_parents(c->data_dir, 0700) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot create data dir %s: %s", c->data_dir,
                    g_strerror(errno));
        return SL_ERR;
    }
    char *path = g_build_filename(c->data_dir, "secret", NULL);
    char *text = NULL;
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        g_strstrip(text);
        if (*text) {
            g_free(c->secret);
            c->secret = text;
            g_free(path);
            return SL_OK;
        }
        g_free(text);
    }
    char *fresh = secret_generate(err);
    if (fresh == NULL) {
        g_free(path);
        return SL_ERR;
    }
    /* O_EXCL: two processes starting at once must not overwrite each other's secret. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && g_file_get_contents(path, &text, NULL, NULL)) {
        g_free(fresh);
        g_free(path);
        g_free(c->secret);
        c->secret = g_strstrip(text);
        return SL_OK;
    }
    size_t n = strlen(fresh);
    if (fd < 0 || write(fd, fresh, n) != (ssize_t)n || fsync(fd) != 0) {
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot write %s: %s", path, g_strerror(errno));
        if (fd >= 0) close(fd);
        g_free(fresh);
        g_free(path);
        return SL_ERR;
    }
    close(fd);
    g_free(path);
    g_free(c->secret);
    c->secret = fresh;
    return SL_OK;
}

int sl_config_get_int(const struct sl_config *c, const char *section, const char *key, int64_t def,
                      int64_t min, int64_t max, int64_t *out, GError **err)
{
    *out = def;
    if (!g_key_file_has_key(c->file, section, key, NULL)) return SL_OK;
    GError *e = NULL;
    gint64 v = g_key_file_get_int64(c->file, section, key, &e);
    if (e || v < min || v > max) {
        g_clear_error(&e);
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                    "[%s] %s must be an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT,
                    section, key, (gint64)min, (gint64)max);
        return SL_ERR;
    }
    *out = v;
    return SL_OK;
}
