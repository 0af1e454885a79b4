/* log: one line per event on stderr (time, level, module, message); lws' own logs join it. */
#include "core.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>

static GLogLevelFlags log_threshold = G_LOG_LEVEL_INFO;

static GLogLevelFlags level_parse(const char *s)
{
    if (s == NULL) return G_LOG_LEVEL_INFO;
    if (g_ascii_strcasecmp(s, "error") == 0) return G_LOG_LEVEL_CRITICAL;
    if (g_ascii_strcasecmp(s, "warning") == 0 || g_ascii_strcasecmp(s, "warn") == 0)
        return G_LOG_LEVEL_WARNING;
    if (g_ascii_strcasecmp(s, "debug") == 0) return G_LOG_LEVEL_DEBUG;
    return G_LOG_LEVEL_INFO;
}

static const char *level_name(GLogLevelFlags l)
{
    if (l & G_LOG_LEVEL_ERROR) return "fatal";
    if (l & G_LOG_LEVEL_CRITICAL) return "error";
    if (l & G_LOG_LEVEL_WARNING) return "warn";
    if (l & G_LOG_LEVEL_MESSAGE) return "notice";
    if (l & G_LOG_LEVEL_INFO) return "info";
    return "debug";
}

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n,
                                   gpointer user)
{
    GLogLevelFlags lv = level & G_LOG_LEVEL_MASK;
    if (lv > log_threshold) return G_LOG_WRITER_HANDLED; /* higher flag = less severe */
    const char *domain = "silklive", *msg = "";
    for (gsize i = 0; i < n; i++) {
        if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0 && fields[i].value)
            domain = fields[i].value;
        else if (strcmp(fields[i].key, "MESSAGE") == 0 && fields[i].value)
            msg = fields[i].value;
    }
    GDateTime *now = g_date_time_new_now_utc();
    char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S");
    fprintf(stderr, "%s.%03dZ %-5s %s: %s\n", ts, g_date_time_get_microsecond(now) / 1000,
            level_name(lv), domain, msg);
    g_free(ts);
    g_date_time_unref(now);
    return G_LOG_WRITER_HANDLED;
}

static void lws_log_bridge(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    GLogLevelFlags gl = (level & LLL_ERR) ? G_LOG_LEVEL_WARNING : G_LOG_LEVEL_INFO;
    g_log("lws", gl, "%.*s", (int)n, line);
}

void sl_log_init(const char *level)
{
    log_threshold = level_parse(level);
    g_log_set_writer_func(log_writer, NULL, NULL);
    int lws_levels = LLL_ERR;
    if (log_threshold >= G_LOG_LEVEL_DEBUG) lws_levels |= LLL_WARN | LLL_NOTICE;
    lws_set_log_level(lws_levels, lws_log_bridge);
}
