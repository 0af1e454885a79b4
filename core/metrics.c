/* metrics: a process-wide registry of counters and gauges rendered in Prometheus text format.
 * Series are created once (under a lock) and then updated with atomics from any thread. */
#include "core.h"

#include <stdatomic.h>
#include <string.h>

struct sl_metric {
    char *labels; /* owned; "" when none */
    _Atomic int64_t value;
    int64_t scale;
};

struct metric_family {
    char *name; /* owned */
    char *help; /* owned */
    enum sl_metric_type type;
    GPtrArray *series; /* owned sl_metric*, in creation order */
};

static GMutex registry_lock;
static GPtrArray *registry; /* struct metric_family*, sorted by name when rendered */

static struct metric_family *family_find(const char *name)
{
    for (guint i = 0; registry && i < registry->len; i++) {
        struct metric_family *f = registry->pdata[i];
        if (strcmp(f->name, name) == 0) return f;
    }
    return NULL;
}

sl_metric *sl_metric_get(const char *name, enum sl_metric_type type, const char *help,
                         const char *labels, int64_t scale)
{
    const char *l = labels ? labels : "";
    g_mutex_lock(&registry_lock);
    if (registry == NULL) registry = g_ptr_array_new();
    struct metric_family *f = family_find(name);
    if (f == NULL) {
        f = g_new0(struct metric_family, 1);
        f->name = g_strdup(name);
        f->help = g_strdup(help ? help : name);
        f->type = type;
        f->series = g_ptr_array_new();
        g_ptr_array_add(registry, f);
    }
    sl_metric *m = NULL;
    for (guint i = 0; i < f->series->len; i++) {
        sl_metric *s = f->series->pdata[i];
        if (strcmp(s->labels, l) == 0) m = s;
    }
    if (m == NULL) {
        m = g_new0(sl_metric, 1);
        m->labels = g_strdup(l);
        m->scale = scale > 0 ? scale : 1;
        g_ptr_array_add(f->series, m);
    }
    g_mutex_unlock(&registry_lock);
    return m;
}

void sl_metric_add(sl_metric *m, int64_t delta)
{
    atomic_fetch_add_explicit(&m->value, delta, memory_order_relaxed);
}

void sl_metric_set(sl_metric *m, int64_t value)
{
    atomic_store_explicit(&m->value, value, memory_order_relaxed);
}

int64_t sl_metric_value(const sl_metric *m)
{
    return atomic_load_explicit(&((sl_metric *)m)->value, memory_order_relaxed);
}

static gint family_cmp(gconstpointer a, gconstpointer b)
{
    const struct metric_family *fa = *(struct metric_family *const *)a;
    const struct metric_family *fb = *(struct metric_family *const *)b;
    return strcmp(fa->name, fb->name);
}

GString *sl_metrics_render(void)
{
    GString *out = g_string_sized_new(4096);
    g_mutex_lock(&registry_lock);
    if (registry) g_ptr_array_sort(registry, family_cmp);
    for (guint i = 0; registry && i < registry->len; i++) {
        struct metric_family *f = registry->pdata[i];
        g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                               f->type == SL_METRIC_COUNTER ? "counter" : "gauge");
        for (guint j = 0; j < f->series->len; j++) {
            sl_metric *m = f->series->pdata[j];
            int64_t v = sl_metric_value(m);
            g_string_append(out, f->name);
            if (m->labels[0]) g_string_append_printf(out, "{%s}", m->labels);
            if (m->scale == 1) {
                g_string_append_printf(out, " %" G_GINT64_FORMAT "\n", v);
            } else {
                char num[G_ASCII_DTOSTR_BUF_SIZE];
                g_ascii_formatd(num, sizeof num, "%.6f", (double)v / (double)m->scale);
                g_string_append_printf(out, " %s\n", num);
            }
        }
    }
    g_mutex_unlock(&registry_lock);
    return out;
}
