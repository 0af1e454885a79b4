/* peer: what one client address may take from this node: open connections (HTTP, WebSocket and
 * RTMP together) and the rate of API requests. Trusted proxies (the edge) are not capped; the
 * address they forward names the client for the rate limit instead. */
#include "internal.h"

#include <arpa/inet.h>
#include <gio/gio.h>
#include <libwebsockets.h>
#include <math.h>
#include <string.h>

/* Idle buckets are forgotten after this; a full bucket carries no state worth keeping. */
#define PEER_BUCKET_IDLE_US (60 * G_USEC_PER_SEC)
#define PEER_PRUNE_S        30
/* Above this many tracked addresses, new ones are limited by a shared bucket, so a flood of
 * spoofed X-Forwarded-For values behind a trusted proxy cannot grow the table without end. */
#define PEER_MAX_BUCKETS 100000

struct peer_entry {
    char addr[INET6_ADDRSTRLEN]; /* also the key of peer_limits.conns */
    guint open;
    gboolean trusted; /* a proxy of trusted_proxies */
};

struct rate_bucket {
    double tokens;
    gint64 last_us;
};

struct peer_limits {
    int64_t max_conns;   /* per address; 0 = no cap */
    double rate, burst;  /* API requests per second per address; rate 0 = no limit */
    GPtrArray *trusted;  /* owned GInetAddressMask* */
    GHashTable *conns;   /* address text -> struct peer_entry (owned) */
    GHashTable *by_wsi;  /* struct lws* -> struct peer_entry of its address */
    GHashTable *buckets; /* address text -> struct rate_bucket (owned) */
    struct rate_bucket overflow;
    char pending[INET6_ADDRSTRLEN]; /* the address accepted last, for the wsi created next */
    gboolean pending_set;
    guint prune_timer;
    sl_metric *m_refused_conns, *m_limited;
};

static gboolean prune_buckets(gpointer data);

static int parse_trusted(struct peer_limits *p, const char *list, GError **err)
{
    gchar **items = g_strsplit(list, ",", -1);
    int rc = SL_OK;
    for (gchar **it = items; *it && rc == SL_OK; it++) {
        const char *s = g_strstrip(*it);
        if (*s == '\0') continue;
        GError *e = NULL;
        GInetAddressMask *m = g_inet_address_mask_new_from_string(s, &e);
        if (m == NULL) {
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "[limits] trusted_proxies: %s: %s", s,
                        e->message);
            g_clear_error(&e);
            rc = SL_ERR;
        } else {
            g_ptr_array_add(p->trusted, m);
        }
    }
    g_strfreev(items);
    return rc;
}

struct peer_limits *peer_limits_new(const struct sl_config *c, GError **err)
{
    struct peer_limits *p = g_new0(struct peer_limits, 1);
    p->trusted = g_ptr_array_new_with_free_func(g_object_unref);
    p->conns = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    p->by_wsi = g_hash_table_new(NULL, NULL);
    p->buckets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    int64_t rate = 0, burst = 0;
    char *trusted = g_key_file_get_string(c->file, "limits", "trusted_proxies", NULL);
    int rc = parse_trusted(p, trusted ? trusted : "127.0.0.0/8, ::1", err);
    g_free(trusted);
    if (rc != SL_OK ||
        sl_config_get_int(c, "limits", "connections_per_ip", 256, 0, 1000000, &p->max_conns, err) !=
            SL_OK ||
        sl_config_get_int(c, "limits", "api_rate_per_ip", 50, 0, 1000000, &rate, err) != SL_OK ||
        sl_config_get_int(c, "limits", "api_burst_per_ip", 100, 1, 1000000, &burst, err) != SL_OK) {
        peer_limits_free(p);
        return NULL;
    }
    p->rate = (double)rate;
    p->burst = (double)MAX(burst, 1);
    p->overflow.tokens = p->burst;
    p->prune_timer = g_timeout_add_seconds(PEER_PRUNE_S, prune_buckets, p);
    p->m_refused_conns =
        sl_metric_get("silklive_peer_connections_refused_total", SL_METRIC_COUNTER,
                      "Connections refused because their address had too many open", NULL, 1);
    p->m_limited =
        sl_metric_get("silklive_peer_requests_limited_total", SL_METRIC_COUNTER,
                      "API requests answered 429 by the per-address rate limit", NULL, 1);
    return p;
}

void peer_limits_free(struct peer_limits *p)
{
    if (p == NULL) return;
    if (p->prune_timer) g_source_remove(p->prune_timer);
    g_hash_table_destroy(p->by_wsi);
    g_hash_table_destroy(p->conns);
    g_hash_table_destroy(p->buckets);
    g_ptr_array_unref(p->trusted);
    g_free(p);
}

static gboolean address_text(const struct sockaddr *sa, char *out, size_t len)
{
    if (sa->sa_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                         (socklen_t)len) != NULL;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) return inet_ntop(AF_INET, &a6->s6_addr[12], out, len) != NULL;
        return inet_ntop(AF_INET6, a6, out, (socklen_t)len) != NULL;
    }
    return FALSE;
}

static gboolean is_trusted(const struct peer_limits *p, const char *addr)
{
    if (p->trusted->len == 0) return FALSE;
    GInetAddress *a = g_inet_address_new_from_string(addr);
    if (a == NULL) return FALSE;
    gboolean found = FALSE;
    for (guint i = 0; i < p->trusted->len && !found; i++)
        found = g_inet_address_mask_matches(p->trusted->pdata[i], a);
    g_object_unref(a);
    return found;
}

int peer_limits_event(struct peer_limits *p, struct lws *wsi, int reason, void *user)
{
    if (p == NULL) return 0;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        const struct lws_filter_network_conn_args *a = user;
        p->pending_set = FALSE;
        if (a == NULL ||
            !address_text((const struct sockaddr *)&a->cli_addr, p->pending, sizeof p->pending))
            return 0;
        const struct peer_entry *e = g_hash_table_lookup(p->conns, p->pending);
        if (p->max_conns > 0 && e && e->open >= (guint)p->max_conns && !e->trusted) {
            sl_metric_add(p->m_refused_conns, 1);
            return -1; /* lws closes the socket before any byte is read */
        }
        p->pending_set = TRUE;
        return 0;
    }
    case LWS_CALLBACK_WSI_CREATE: {
        /* lws creates the wsi of an accepted socket right after the filter, on this thread. */
        if (!p->pending_set) return 0;
        p->pending_set = FALSE;
        struct peer_entry *e = g_hash_table_lookup(p->conns, p->pending);
        if (e == NULL) {
            e = g_new0(struct peer_entry, 1);
            g_strlcpy(e->addr, p->pending, sizeof e->addr);
            e->trusted = is_trusted(p, e->addr);
            g_hash_table_insert(p->conns, e->addr, e);
        }
        e->open++;
        g_hash_table_insert(p->by_wsi, wsi, e);
        return 0;
    }
    case LWS_CALLBACK_WSI_DESTROY: {
        struct peer_entry *e = g_hash_table_lookup(p->by_wsi, wsi);
        if (e == NULL) return 0;
        g_hash_table_remove(p->by_wsi, wsi);
        if (--e->open == 0) g_hash_table_remove(p->conns, e->addr);
        return 0;
    }
    default:
        return 0;
    }
}

/* The client an API request counts against, into out: its peer, or for a trusted proxy the
 * address the proxy appended last to X-Forwarded-For (earlier entries are the client's own
 * claims). FALSE when nothing limits it: a trusted peer that forwards nothing, a local tool. */
static gboolean client_of(struct peer_limits *p, struct lws *wsi, const char *forwarded_for,
                          char out[INET6_ADDRSTRLEN])
{
    const struct peer_entry *e = g_hash_table_lookup(p->by_wsi, wsi);
    if (e && !e->trusted) {
        g_strlcpy(out, e->addr, INET6_ADDRSTRLEN);
        return TRUE;
    }
    if (forwarded_for == NULL) return FALSE;
    const char *last = strrchr(forwarded_for, ',');
    const char *start = last ? last + 1 : forwarded_for;
    while (g_ascii_isspace(*start))
        start++;
    size_t n = strlen(start);
    while (n > 0 && g_ascii_isspace(start[n - 1]))
        n--;
    if (n == 0 || n >= INET6_ADDRSTRLEN) return FALSE;
    memcpy(out, start, n);
    out[n] = '\0';
    return TRUE;
}

gboolean peer_limits_client(struct peer_limits *p, struct lws *wsi, const char *forwarded_for,
                            char out[SL_ADDR_TEXT_MAX])
{
    return p != NULL && client_of(p, wsi, forwarded_for, out);
}

gboolean peer_limits_take(struct peer_limits *p, struct lws *wsi, const char *forwarded_for,
                          int *retry_after_s)
{
    char client[INET6_ADDRSTRLEN];
    if (p == NULL || p->rate <= 0 || !client_of(p, wsi, forwarded_for, client)) return TRUE;
    gint64 now = g_get_monotonic_time();
    struct rate_bucket *b = g_hash_table_lookup(p->buckets, client);
    if (b == NULL && g_hash_table_size(p->buckets) >= PEER_MAX_BUCKETS) {
        b = &p->overflow;
    } else if (b == NULL) {
        b = g_new(struct rate_bucket, 1);
        b->tokens = p->burst;
        b->last_us = now;
        g_hash_table_insert(p->buckets, g_strdup(client), b);
    }
    b->tokens = MIN(p->burst, b->tokens + p->rate * (double)(now - b->last_us) / G_USEC_PER_SEC);
    b->last_us = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return TRUE;
    }
    *retry_after_s = (int)MAX(1.0, ceil((1.0 - b->tokens) / p->rate));
    sl_metric_add(p->m_limited, 1);
    return FALSE;
}

/* user: the oldest last_us still worth keeping */
static gboolean bucket_idle(gpointer key, gpointer value, gpointer user)
{
    const struct rate_bucket *b = value;
    return b->last_us < *(const gint64 *)user;
}

static gboolean prune_buckets(gpointer data)
{
    struct peer_limits *p = data;
    /* Forget only buckets that have refilled to their burst: a fresh one is the same. */
    gint64 refill_us = p->rate > 0 ? (gint64)(p->burst / p->rate * G_USEC_PER_SEC) : 0;
    gint64 oldest = g_get_monotonic_time() - MAX(PEER_BUCKET_IDLE_US, refill_us);
    g_hash_table_foreach_remove(p->buckets, bucket_idle, &oldest);
    return G_SOURCE_CONTINUE;
}
