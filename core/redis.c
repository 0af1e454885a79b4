/* redis: one hiredis async connection on the GLib loop, with a timeout on every command,
 * reconnect with backoff, and latency/error metrics. Callers see each command answered once.
 * With a sentinel:// URL each (re)connect first asks Redis Sentinel where the primary is. */
#include "internal.h"

#include <gio/gio.h>
#include <hiredis/adapters/glib.h>
#include <poll.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <string.h>

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
#define SENTINEL_PORT    26379
#define SENTINEL_ASK_MS  500 /* per sentinel, connect and answer */

struct pending {
    sl_redis *r; /* NULL once the connection forgot it */
    sl_redis_cb cb;
    void *user;
    gboolean answered;
    gint64 sent_us;
    struct pending *prev, *next; /* in r's in-flight list, oldest first */
};

struct sl_redis {
    GMainContext *ctx;
    char *url_text;  /* owned, for messages */
    char *host;      /* owned; NULL for unix */
    char *unix_path; /* owned */
    int port;
    int db;
    int timeout_ms;
    redisAsyncContext *ac;
    GSource *source; /* owned; attached while ac lives */
    gboolean connected;
    gboolean closing;
    guint reconnect_timer;
    int backoff_ms;
    char *last_error;                         /* owned */
    struct pending *inflight, *inflight_tail; /* oldest first: the order replies come in */
    guint deadline_timer;                     /* armed for the oldest unanswered command */
    gint64 last_reply_us; /* when the server last answered anything: it is alive */
    GHashTable *subs;     /* subscriber connections only: channel (owned) -> GPtrArray of sub */
    /* Sentinel: where to ask for the primary, and the question being asked */
    char **sentinels;      /* owned; "host:port", NULL without Sentinel */
    char *master_name;     /* owned */
    char *user, *password; /* owned; AUTH on every connect when password is set */
    struct sentinel_query *query;
    guint drop_idle; /* a connection found to be a replica is dropped from the loop */
    sl_metric *m_latency_sum, *m_commands, *m_errors, *m_connected, *m_reconnects;
};

static void connect_start(sl_redis *r);
static void sub_send(sl_redis *r, const char *verb, const char *channel);
static void sentinel_check_reply(sl_redis *r, const redisReply *rep);
static void on_role(redisAsyncContext *ac, void *reply, void *privdata);

struct sub {
    sl_pubsub_cb cb;
    void *user;
};

gboolean sl_redis_connected(const sl_redis *r)
{
    return r && r->connected && !r->closing;
}

const char *redis_describe(const sl_redis *r)
{
    return r->url_text;
}

static void set_error(sl_redis *r, const char *msg)
{
    g_free(r->last_error);
    r->last_error = g_strdup(msg);
}

/* The URL for messages and /metrics: a password never appears in a log. */
static char *url_redacted(const char *url)
{
    const char *at = g_str_has_prefix(url, "redis://") ? strchr(url + 8, '@') : NULL;
    const char *slash = at ? strchr(url + 8, '/') : NULL;
    if (at == NULL || (slash && slash < at)) return g_strdup(url);
    return g_strdup_printf("redis://***@%s", at + 1);
}

/* sentinel://HOST[:PORT][,HOST[:PORT]...]/NAME[/DB] */
static int sentinel_url_parse(sl_redis *r, const char *url)
{
    gchar **parts = g_strsplit(url + strlen("sentinel://"), "/", 3);
    int rc = SL_ERR;
    if (parts[0] && *parts[0] && parts[1] && *parts[1] && strlen(parts[1]) <= 128) {
        r->master_name = g_strdup(parts[1]);
        gchar **hosts = g_strsplit(parts[0], ",", -1);
        GPtrArray *list = g_ptr_array_new();
        rc = SL_OK;
        for (gchar **h = hosts; *h && rc == SL_OK; h++) {
            char *host = NULL;
            int port = SENTINEL_PORT;
            GError *e = NULL;
            if (strchr(*h, ':'))
                rc = sl_config_parse_listen(*h, &host, &port, &e);
            else if (**h)
                host = g_strdup(*h);
            else
                rc = SL_ERR;
            g_clear_error(&e);
            if (rc == SL_OK) g_ptr_array_add(list, g_strdup_printf("%s:%d", host, port));
            g_free(host);
        }
        g_ptr_array_add(list, NULL);
        r->sentinels = (char **)g_ptr_array_free(list, FALSE);
        g_strfreev(hosts);
        if (rc == SL_OK && parts[2]) {
            guint64 db;
            if (!g_ascii_string_to_unsigned(parts[2], 10, 0, 15, &db, NULL)) rc = SL_ERR;
            r->db = (int)db;
        }
    }
    g_strfreev(parts);
    return rc;
}

static void url_error(const char *url, GError **err)
{
    char *shown = url_redacted(url);
    g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "invalid Redis URL '%s' (want redis://[[USER]:PASSWORD@]HOST:PORT[/DB], "
                "unix:///PATH, sentinel://HOST:PORT[,HOST:PORT...]/NAME[/DB] or embedded)",
                shown);
    g_free(shown);
}

/* redis://[[user]:password@]host:port[/db], unix:///path[?db=N] or sentinel://... */
static int url_parse(sl_redis *r, const char *url, GError **err)
{
    if (g_str_has_prefix(url, "sentinel://")) {
        if (sentinel_url_parse(r, url) != SL_OK) goto bad;
        return SL_OK;
    }
    if (g_str_has_prefix(url, "unix://")) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        r->unix_path = q ? g_strndup(path, (gsize)(q - path)) : g_strdup(path);
        if (q && g_str_has_prefix(q, "?db=")) {
            guint64 db;
            if (!g_ascii_string_to_unsigned(q + 4, 10, 0, 15, &db, NULL)) goto bad;
            r->db = (int)db;
        }
        if (r->unix_path[0] != '/') goto bad;
        return SL_OK;
    }
    if (!g_str_has_prefix(url, "redis://")) goto bad;
    const char *hp = url + 8;
    const char *at = strchr(hp, '@');
    if (at) { /* redis://[USER]:PASSWORD@HOST... (ACL user, or the default user) */
        const char *colon = memchr(hp, ':', (size_t)(at - hp));
        if (colon == NULL || colon + 1 == at) goto bad;
        if (colon > hp) r->user = g_strndup(hp, (gsize)(colon - hp));
        r->password = g_strndup(colon + 1, (gsize)(at - colon - 1));
        hp = at + 1;
    }
    const char *slash = strchr(hp, '/');
    char *hostport = slash ? g_strndup(hp, (gsize)(slash - hp)) : g_strdup(hp);
    int rc = SL_OK;
    if (strchr(hostport, ':')) {
        GError *e = NULL;
        rc = sl_config_parse_listen(hostport, &r->host, &r->port, &e);
        g_clear_error(&e);
    } else if (*hostport) {
        r->host = g_strdup(hostport);
        r->port = 6379;
    } else {
        rc = SL_ERR;
    }
    g_free(hostport);
    if (rc != SL_OK) goto bad;
    if (slash && slash[1]) {
        guint64 db;
        if (!g_ascii_string_to_unsigned(slash + 1, 10, 0, 15, &db, NULL)) goto bad;
        r->db = (int)db;
    }
    return SL_OK;
bad:
    url_error(url, err);
    return SL_ERR;
}

int sl_redis_url_check(const char *url, GError **err)
{
    if (strcmp(url, "embedded") == 0) return SL_OK;
    sl_redis probe = {0};
    int rc = url_parse(&probe, url, err);
    g_free(probe.host);
    g_free(probe.unix_path);
    g_free(probe.user);
    g_free(probe.password);
    g_strfreev(probe.sentinels);
    g_free(probe.master_name);
    return rc;
}

/* A connection; a subscriber one (subscriber TRUE) only subscribes and has its own gauges, as
 * does one with labels (e.g. the orders connection), so no two connections share a gauge. */
static sl_redis *redis_open(GMainContext *ctx, const char *url, int timeout_ms, gboolean subscriber,
                            const char *labels, GError **err)
{
    sl_redis *r = g_new0(sl_redis, 1);
    r->ctx = ctx;
    r->url_text = url_redacted(url);
    r->timeout_ms = timeout_ms;
    r->backoff_ms = RECONNECT_MIN_MS;
    if (url_parse(r, url, err) != SL_OK) {
        redis_free(r);
        return NULL;
    }
    r->m_latency_sum =
        sl_metric_get("silklive_redis_command_seconds_total", SL_METRIC_COUNTER,
                      "Time Redis commands took until their reply, summed", NULL, 1000000);
    r->m_commands = sl_metric_get("silklive_redis_commands_total", SL_METRIC_COUNTER,
                                  "Redis commands answered", NULL, 1);
    r->m_errors = sl_metric_get("silklive_redis_errors_total", SL_METRIC_COUNTER,
                                "Redis commands failed (timeout, disconnect)", NULL, 1);
    if (subscriber) {
        r->subs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify)g_ptr_array_unref);
        r->m_connected = sl_metric_get("silklive_redis_pubsub_connected", SL_METRIC_GAUGE,
                                       "1 while the Redis pub/sub connection is up", NULL, 1);
        r->m_reconnects = sl_metric_get("silklive_redis_pubsub_reconnects_total", SL_METRIC_COUNTER,
                                        "Redis pub/sub connections lost", NULL, 1);
    } else {
        r->m_connected = sl_metric_get("silklive_redis_connected", SL_METRIC_GAUGE,
                                       "1 while the Redis connection is up", labels, 1);
        r->m_reconnects = sl_metric_get("silklive_redis_reconnects_total", SL_METRIC_COUNTER,
                                        "Redis connections lost", labels, 1);
    }
    connect_start(r);
    return r;
}

sl_redis *redis_new(GMainContext *ctx, const char *url, int timeout_ms, GError **err)
{
    return redis_open(ctx, url, timeout_ms, FALSE, NULL, err);
}

sl_redis *redis_new_labelled(GMainContext *ctx, const char *url, int timeout_ms, const char *labels,
                             GError **err)
{
    return redis_open(ctx, url, timeout_ms, FALSE, labels, err);
}

static void pending_unlink(struct pending *p)
{
    sl_redis *r = p->r;
    if (r == NULL) return;
    if (p->prev)
        p->prev->next = p->next;
    else
        r->inflight = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        r->inflight_tail = p->prev;
    p->prev = p->next = NULL;
    p->r = NULL;
}

/* Answer the caller once; the pending record itself lives until hiredis lets go of it. */
static void pending_answer(struct pending *p, redisReply *reply, const char *err)
{
    if (p->answered) return;
    p->answered = TRUE;
    sl_redis *r = p->r;
    if (r) {
        if (reply) {
            sl_metric_add(r->m_commands, 1);
            sl_metric_add(r->m_latency_sum, g_get_monotonic_time() - p->sent_us);
        } else {
            sl_metric_add(r->m_errors, 1);
        }
    }
    if (p->cb) p->cb(reply, err, p->user);
}

static void drop_connection(sl_redis *r, const char *why);

static gboolean socket_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return fd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

static struct pending *oldest_unanswered(sl_redis *r)
{
    struct pending *p = r->inflight;
    while (p && p->answered) /* timed out, waiting for hiredis to let go of it */
        p = p->next;
    return p;
}

static gboolean deadline_fire(gpointer data);

/* One timer per connection, due when the oldest unanswered command is: replies come in the
 * order commands went out, so only the oldest can be the first late one. It moves on when it
 * fires, never per command or reply (a timer per command was a GSource made, attached and
 * destroyed per request, and one more source for every loop turn to walk). */
static void deadline_arm(sl_redis *r)
{
    if (r->deadline_timer || r->closing) return;
    struct pending *p = oldest_unanswered(r);
    if (p == NULL) return;
    gint64 due_us = p->sent_us + (gint64)r->timeout_ms * 1000 - g_get_monotonic_time();
    guint ms = due_us <= 0 ? 0 : (guint)((due_us + 999) / 1000);
    r->deadline_timer = g_timeout_add(ms, deadline_fire, r);
}

static gboolean deadline_fire(gpointer data)
{
    sl_redis *r = data;
    r->deadline_timer = 0;
    gint64 timeout_us = (gint64)r->timeout_ms * 1000, now = g_get_monotonic_time();
    struct pending *p = oldest_unanswered(r);
    if (p && p->sent_us + timeout_us <= now) {
        /* A busy loop (thousands of sockets, a burst of replies read 16 KiB per dispatch) can
         * get here while the replies already wait in the socket: drain what it holds before
         * calling commands late. A stopped server sends nothing, so they still time out. */
        while (r->connected && r->ac && socket_readable(r->ac->c.fd))
            redisAsyncHandleRead(r->ac);
        gboolean late = FALSE;
        while ((p = oldest_unanswered(r)) != NULL && p->sent_us + timeout_us <= now) {
            late = TRUE;
            pending_answer(p, NULL, "timeout");
        }
        /* A server that answered nothing for a whole timeout is stopped or hung: drop the
         * connection so later commands fail fast and reconnect takes over. One that is still
         * answering is behind (a burst, or this loop is slow to read): these commands failed,
         * but dropping the connection would fail every other command in flight with them. */
        if (late && r->connected && g_get_monotonic_time() - r->last_reply_us >= timeout_us)
            drop_connection(r, "command timeout");
    }
    deadline_arm(r);
    return G_SOURCE_REMOVE;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    redisReply *rep = reply;
    if (rep && p->r) p->r->last_reply_us = g_get_monotonic_time();
    if (p->r) sentinel_check_reply(p->r, rep);
    if (rep == NULL)
        pending_answer(p, NULL, ac->errstr[0] ? ac->errstr : "disconnected");
    else
        pending_answer(p, rep, NULL);
    pending_unlink(p);
    g_free(p);
}

static gboolean reconnect_fire(gpointer data)
{
    sl_redis *r = data;
    r->reconnect_timer = 0;
    connect_start(r);
    return G_SOURCE_REMOVE;
}

static void schedule_reconnect(sl_redis *r)
{
    if (r->closing || r->reconnect_timer) return;
    r->reconnect_timer = g_timeout_add(r->backoff_ms, reconnect_fire, r);
    r->backoff_ms = MIN(r->backoff_ms * 2, RECONNECT_MAX_MS);
}

/* ac: the hiredis context when it is still alive (about to be freed by hiredis), else NULL. */
static void source_detach(sl_redis *r, redisAsyncContext *ac)
{
    if (r->source == NULL) return;
    /* hiredis calls the adapter's cleanup after our connect callback; the source is gone by then */
    if (ac) ac->ev.cleanup = NULL;
    /* The adapter dispatches write then read on the same context; once it is gone nothing
     * must be dispatched for it. */
    RedisSource *rs = (RedisSource *)r->source;
    rs->poll_fd.revents = 0;
    /* The adapter's finalize removes the poll from a destroyed source (a GLib critical): do it
     * here, while that is still allowed. */
    if (rs->poll_fd.fd >= 0) {
        g_source_remove_poll(r->source, &rs->poll_fd);
        rs->poll_fd.fd = -1;
    }
    g_source_destroy(r->source);
    g_source_unref(r->source);
    r->source = NULL;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sl_redis *r = ac->data;
    if (r == NULL) return;
    gboolean was_connected = r->connected;
    r->connected = FALSE;
    r->ac = NULL;
    sl_metric_set(r->m_connected, 0);
    source_detach(r, NULL);
    if (status != REDIS_OK) set_error(r, ac->errstr[0] ? ac->errstr : "connection lost");
    if (was_connected && !r->closing) {
        sl_metric_add(r->m_reconnects, 1);
        g_warning("redis %s: connection lost (%s); reconnecting", r->url_text,
                  r->last_error ? r->last_error : "closed");
    }
    schedule_reconnect(r);
}

static void on_select(redisAsyncContext *ac, void *reply, void *privdata)
{
    /* nothing: a failing SELECT shows up as errors on the commands that follow */
}

/* Every reply on a subscribed channel: the confirmation (reported as msg NULL, "from here on
 * nothing is missed") and then each message. NULL when hiredis lets go of the subscription. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    sl_redis *r = privdata;
    redisReply *rep = reply;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || r->closing) return;
    redisReply *kind = rep->element[0], *chan = rep->element[1], *body = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING) return;
    gboolean message = strcmp(kind->str, "message") == 0;
    if (!message && strcmp(kind->str, "subscribe") != 0) return;
    if (message && body->type != REDIS_REPLY_STRING) return;
    GPtrArray *list = g_hash_table_lookup(r->subs, chan->str);
    if (list == NULL) return;
    /* a callback may unsubscribe itself (or others): walk a snapshot */
    GPtrArray *snap = g_ptr_array_copy(list, NULL, NULL);
    g_ptr_array_set_free_func(snap, NULL); /* the copy inherits it; the subs are list's */
    for (guint i = 0; i < snap->len; i++) {
        struct sub *s = snap->pdata[i];
        if (!g_ptr_array_find(list, s, NULL)) continue;
        s->cb(chan->str, message ? body->str : NULL, message ? body->len : 0, s->user);
    }
    g_ptr_array_unref(snap);
}

static void sub_send(sl_redis *r, const char *verb, const char *channel)
{
    if (!r->connected || r->ac == NULL) return; /* on_connect subscribes everything again */
    const char *argv[] = {verb, channel};
    redisAsyncCommandArgv(r->ac, on_sub_reply, r, 2, argv, NULL);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *rep = reply;
    sl_redis *r = ac->data;
    if (r && rep && rep->type == REDIS_REPLY_ERROR)
        g_warning("redis %s: AUTH refused: %s", r->url_text, rep->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_redis *r = ac->data;
    if (r == NULL) return;
    if (status != REDIS_OK) {
        set_error(r, ac->errstr[0] ? ac->errstr : "connect failed");
        r->ac = NULL; /* hiredis frees the context after this callback */
        source_detach(r, (redisAsyncContext *)ac);
        schedule_reconnect(r);
        return;
    }
    /* AUTH goes first on the wire, so every command after it runs authenticated */
    if (r->password && r->user)
        redisAsyncCommand(r->ac, on_auth, NULL, "AUTH %s %s", r->user, r->password);
    else if (r->password)
        redisAsyncCommand(r->ac, on_auth, NULL, "AUTH %s", r->password);
    r->connected = TRUE;
    r->backoff_ms = RECONNECT_MIN_MS;
    sl_metric_set(r->m_connected, 1);
    if (r->db && r->subs == NULL) redisAsyncCommand(r->ac, on_select, NULL, "SELECT %d", r->db);
    /* Sentinel names a primary that may have been demoted since: check before relying on it.
     * (A subscriber may stay on a replica: published messages reach replicas too.) */
    if (r->sentinels && r->subs == NULL) redisAsyncCommand(r->ac, on_role, NULL, "ROLE");
    g_info("redis %s: connected", r->url_text);
    if (r->subs) {
        GHashTableIter it;
        gpointer channel;
        g_hash_table_iter_init(&it, r->subs);
        while (g_hash_table_iter_next(&it, &channel, NULL))
            sub_send(r, "SUBSCRIBE", channel);
    }
}

/* hiredis' GLib adapter wakes the main context (an eventfd write) on every change of read or
 * write interest: two or more per command, the largest count of syscalls silklive made per API
 * call. Every change happens on the loop's own thread between two polls, and GLib reads the
 * events again when it builds the next poll set, so the wakeup only costs. These replace the
 * adapter's four hooks and change the events in place. */
static void source_want(void *data, gushort add, gushort drop)
{
    RedisSource *src = data;
    src->poll_fd.events = (gushort)((src->poll_fd.events | add) & ~drop);
}
static void source_add_read(void *data)
{
    source_want(data, G_IO_IN, 0);
}
static void source_del_read(void *data)
{
    source_want(data, 0, G_IO_IN);
}
static void source_add_write(void *data)
{
    source_want(data, G_IO_OUT, 0);
}
static void source_del_write(void *data)
{
    source_want(data, 0, G_IO_OUT);
}

/* ---- Sentinel: the primary's address, asked on a worker thread so the loop never blocks ---- */

struct sentinel_query {
    sl_redis *r; /* NULL once the connection is gone: the answer is dropped */
    char **sentinels, *name;
    char *host; /* the answer */
    int port;
    char *error;
};

static void sentinel_query_free(struct sentinel_query *q)
{
    g_strfreev(q->sentinels);
    g_free(q->name);
    g_free(q->host);
    g_free(q->error);
    g_free(q);
}

static void sentinel_ask(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
    struct sentinel_query *q = data;
    struct timeval tv = {.tv_sec = 0, .tv_usec = SENTINEL_ASK_MS * 1000};
    GString *why = g_string_new(NULL);
    for (char **s = q->sentinels; *s && q->host == NULL; s++) {
        const char *colon = strrchr(*s, ':');
        char *host = g_strndup(*s, (gsize)(colon - *s));
        redisContext *c = redisConnectWithTimeout(host, atoi(colon + 1), tv);
        g_free(host);
        redisReply *rep = NULL;
        if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK)
            rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s", q->name);
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            rep->element[1]->type == REDIS_REPLY_STRING) {
            q->host = g_strdup(rep->element[0]->str);
            q->port = atoi(rep->element[1]->str);
        } else {
            g_string_append_printf(why, "%s%s: %s", why->len ? "; " : "", *s,
                                   c && c->err ? c->errstr
                                   : rep       ? "does not know the primary"
                                               : "no answer");
        }
        if (rep) freeReplyObject(rep);
        if (c) redisFree(c);
    }
    if (q->host == NULL) q->error = g_strdup(why->str);
    g_string_free(why, TRUE);
    g_task_return_boolean(task, TRUE);
}

static void connect_direct(sl_redis *r);

static void sentinel_answered(GObject *source, GAsyncResult *res, gpointer data)
{
    struct sentinel_query *q = g_task_get_task_data(G_TASK(res));
    sl_redis *r = q->r;
    if (r == NULL) return; /* freed meanwhile */
    r->query = NULL;
    if (q->host == NULL) {
        set_error(r, q->error);
        g_warning("redis %s: no sentinel named the primary (%s)", r->url_text, q->error);
        schedule_reconnect(r);
        return;
    }
    if (r->host == NULL || strcmp(r->host, q->host) != 0 || r->port != q->port)
        g_message("redis %s: the primary is %s:%d", r->url_text, q->host, q->port);
    g_free(r->host);
    r->host = g_steal_pointer(&q->host);
    r->port = q->port;
    connect_direct(r);
}

static void sentinel_resolve(sl_redis *r)
{
    if (r->query) return;
    struct sentinel_query *q = g_new0(struct sentinel_query, 1);
    q->r = r;
    q->sentinels = g_strdupv(r->sentinels);
    q->name = g_strdup(r->master_name);
    r->query = q;
    GTask *task = g_task_new(NULL, NULL, sentinel_answered, NULL);
    g_task_set_task_data(task, q, (GDestroyNotify)sentinel_query_free);
    g_task_run_in_thread(task, sentinel_ask);
    g_object_unref(task);
}

static gboolean drop_replica(gpointer data)
{
    sl_redis *r = data;
    r->drop_idle = 0;
    drop_connection(r, "connected to a replica: the primary moved");
    return G_SOURCE_REMOVE;
}

/* After a failover the old primary comes back as a replica: a connection to it must go, and
 * the next connect asks Sentinel again. From a reply callback, so dropped from the loop. */
static void sentinel_check_reply(sl_redis *r, const redisReply *rep)
{
    if (r->sentinels == NULL || r->drop_idle || rep == NULL) return;
    gboolean replica = rep->type == REDIS_REPLY_ERROR && g_str_has_prefix(rep->str, "READONLY");
    if (replica) r->drop_idle = g_idle_add(drop_replica, r);
}

static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    sl_redis *r = ac->data;
    const redisReply *rep = reply;
    if (r == NULL || rep == NULL || r->drop_idle) return;
    gboolean primary = rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
                       rep->element[0]->type == REDIS_REPLY_STRING &&
                       strcmp(rep->element[0]->str, "master") == 0;
    if (!primary) r->drop_idle = g_idle_add(drop_replica, r);
}

static void connect_start(sl_redis *r)
{
    if (r->sentinels)
        sentinel_resolve(r);
    else
        connect_direct(r);
}

static void connect_direct(sl_redis *r)
{
    redisAsyncContext *ac =
        r->unix_path ? redisAsyncConnectUnix(r->unix_path) : redisAsyncConnect(r->host, r->port);
    if (ac == NULL || ac->err) {
        set_error(r, ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->source = redis_source_new(ac);
    ac->ev.addRead = source_add_read;
    ac->ev.delRead = source_del_read;
    ac->ev.addWrite = source_add_write;
    ac->ev.delWrite = source_del_write;
    /* The pub/sub feed is read only when no client is ready to be served (its source is below
     * the one serving every lws connection, core/evloop.c), so it is read only as fast as
     * clients are served, and a burst on it cannot outrun the writes and fill every member's
     * queue. Command replies answer requests and stay at default priority. */
    if (r->subs) g_source_set_priority(r->source, G_PRIORITY_DEFAULT_IDLE);
    g_source_attach(r->source, r->ctx);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void drop_connection(sl_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (ac == NULL) return;
    set_error(r, why);
    /* Not redisAsyncDisconnect: that waits for the replies a stuck server will never send.
     * Free answers every in-flight command with NULL (on_reply), then calls on_disconnect. */
    redisAsyncFree(ac);
    if (r->ac == ac) { /* on_disconnect is only called for a connection that was up */
        r->ac = NULL;
        r->connected = FALSE;
        sl_metric_set(r->m_connected, 0);
        source_detach(r, NULL);
        schedule_reconnect(r);
    }
}

static struct pending *pending_new(sl_redis *r, sl_redis_cb cb, void *user)
{
    struct pending *p = g_new0(struct pending, 1);
    p->r = r;
    p->cb = cb;
    p->user = user;
    p->sent_us = g_get_monotonic_time();
    p->prev = r->inflight_tail;
    if (r->inflight_tail)
        r->inflight_tail->next = p;
    else
        r->inflight = p;
    r->inflight_tail = p;
    deadline_arm(r);
    return p;
}

static void pending_abort(struct pending *p)
{
    pending_unlink(p);
    g_free(p);
}

/* A command as RESP ("*argc", then "$len" and the bytes of each argument): in stack when it
 * fits, else in a new buffer (g_free when it is not stack). hiredis' redisFormatSdsCommandArgv
 * does the same through sdscatfmt per argument: for a sale script's 16 arguments that was 6 %
 * of silklive's instructions per reservation. */
static char *resp_format(int argc, const char **argv, const size_t *lens, char *stack,
                         size_t stack_size, size_t *len_out)
{
    size_t total = 1 + SL_INT_TEXT_MAX + 2;
    for (int i = 0; i < argc; i++)
        total += 1 + SL_INT_TEXT_MAX + 2 + (lens ? lens[i] : strlen(argv[i])) + 2;
    char *buf = total <= stack_size ? stack : g_malloc(total), *w = buf;
    *w++ = '*';
    w += sl_int_text(argc, w);
    *w++ = '\r';
    *w++ = '\n';
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        *w++ = '$';
        w += sl_int_text((int64_t)n, w);
        *w++ = '\r';
        *w++ = '\n';
        memcpy(w, argv[i], n);
        w += n;
        *w++ = '\r';
        *w++ = '\n';
    }
    *len_out = (size_t)(w - buf);
    return buf;
}

int sl_redis_command_argv(sl_redis *r, sl_redis_cb cb, void *user, int argc, const char **argv,
                          const size_t *lens)
{
    if (r == NULL || r->closing || !r->connected || r->ac == NULL) return SL_ERR;
    struct pending *p = pending_new(r, cb, user);
    char stack[2048];
    size_t len;
    char *cmd = resp_format(argc, argv, lens, stack, sizeof stack, &len);
    int rc = redisAsyncFormattedCommand(r->ac, on_reply, p, cmd, len);
    if (cmd != stack) g_free(cmd);
    if (rc != REDIS_OK) {
        pending_abort(p);
        return SL_ERR;
    }
    return SL_OK;
}

int sl_redis_vcommand(sl_redis *r, sl_redis_cb cb, void *user, const char *fmt, va_list ap)
{
    if (r == NULL || r->closing || !r->connected || r->ac == NULL) return SL_ERR;
    struct pending *p = pending_new(r, cb, user);
    if (redisvAsyncCommand(r->ac, on_reply, p, fmt, ap) != REDIS_OK) {
        pending_abort(p);
        return SL_ERR;
    }
    return SL_OK;
}

int sl_redis_command(sl_redis *r, sl_redis_cb cb, void *user, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sl_redis_vcommand(r, cb, user, fmt, ap);
    va_end(ap);
    return rc;
}

static gboolean wait_deadline(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

int redis_connect_wait(sl_redis *r, int timeout_ms, GError **err)
{
    gboolean expired = FALSE;
    GSource *deadline = g_timeout_source_new((guint)timeout_ms);
    g_source_set_callback(deadline, wait_deadline, &expired, NULL);
    g_source_attach(deadline, r->ctx);
    /* Done at the first definite outcome: connected, or the first attempt failed. */
    while (!r->connected && !expired && r->last_error == NULL)
        g_main_context_iteration(r->ctx, TRUE);
    g_source_destroy(deadline);
    g_source_unref(deadline);
    if (r->connected) return SL_OK;
    g_set_error(err, SL_ERROR, SL_ERROR_UNAVAILABLE, "cannot connect to Redis at %s: %s",
                r->url_text, r->last_error ? r->last_error : "timed out");
    return SL_ERR;
}

void redis_free(sl_redis *r)
{
    if (r == NULL) return;
    r->closing = TRUE;
    if (r->reconnect_timer) g_source_remove(r->reconnect_timer);
    r->reconnect_timer = 0;
    if (r->drop_idle) g_source_remove(r->drop_idle);
    if (r->deadline_timer) g_source_remove(r->deadline_timer);
    r->deadline_timer = 0;
    if (r->query) r->query->r = NULL; /* its answer is dropped when it comes */
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        /* Answers in-flight commands with NULL via on_reply; on_disconnect sees closing. */
        redisAsyncFree(ac);
    }
    source_detach(r, NULL);
    while (r->inflight) { /* nothing should be left; forget rather than leak callbacks */
        struct pending *p = r->inflight;
        pending_answer(p, NULL, "shutting down");
        pending_unlink(p);
    }
    if (r->subs) g_hash_table_unref(r->subs);
    g_free(r->url_text);
    g_free(r->host);
    g_free(r->unix_path);
    g_strfreev(r->sentinels);
    g_free(r->master_name);
    g_free(r->user);
    if (r->password) memset(r->password, 0, strlen(r->password));
    g_free(r->password);
    g_free(r->last_error);
    g_free(r);
}

/* ---- pub/sub (a connection of its own: a subscribed connection takes no other commands) ---- */

sl_redis *redis_new_subscriber(GMainContext *ctx, const char *url, GError **err)
{
    return redis_open(ctx, url, 0, TRUE, NULL, err); /* no commands, so no command timeout */
}

void redis_subscribe(sl_redis *r, const char *channel, sl_pubsub_cb cb, void *user)
{
    GPtrArray *list = g_hash_table_lookup(r->subs, channel);
    gboolean first = list == NULL;
    if (first) {
        list = g_ptr_array_new_with_free_func(g_free);
        g_hash_table_insert(r->subs, g_strdup(channel), list);
    }
    struct sub *s = g_new(struct sub, 1);
    s->cb = cb;
    s->user = user;
    g_ptr_array_add(list, s);
    if (first)
        sub_send(r, "SUBSCRIBE", channel);
    else if (r->connected)
        cb(channel, NULL, 0, user); /* already flowing */
}

void redis_unsubscribe(sl_redis *r, const char *channel, sl_pubsub_cb cb, void *user)
{
    GPtrArray *list = g_hash_table_lookup(r->subs, channel);
    if (list == NULL) return;
    for (guint i = 0; i < list->len; i++) {
        struct sub *s = list->pdata[i];
        if (s->cb == cb && s->user == user) {
            g_ptr_array_remove_index(list, i);
            break;
        }
    }
    if (list->len > 0) return;
    sub_send(r, "UNSUBSCRIBE", channel);
    g_hash_table_remove(r->subs, channel);
}

/* ---- Lua scripts ---- */

struct sl_script {
    char *source; /* owned */
    char sha[41];
};

sl_script *sl_script_new(const char *source)
{
    sl_script *s = g_new0(sl_script, 1);
    s->source = g_strdup(source);
    char *hex = g_compute_checksum_for_string(G_CHECKSUM_SHA1, source, -1);
    g_strlcpy(s->sha, hex, sizeof s->sha);
    g_free(hex);
    return s;
}

void sl_script_free(sl_script *s)
{
    if (s == NULL) return;
    g_free(s->source);
    g_free(s);
}

struct eval_call {
    sl_redis *r;
    const sl_script *script;
    sl_redis_cb cb;
    void *user;
    int argc;          /* of args below: "EVALSHA", sha, nkeys, keys..., args... */
    const char **args; /* in this block, or static */
    size_t *lens;      /* in this block */
    gboolean retried;
    char nkeys[SL_INT_TEXT_MAX];
    /* then args[argc], lens[argc] and the keys' and arguments' bytes: one allocation per call */
};

static void eval_call_free(struct eval_call *c)
{
    g_free(c);
}

static void eval_reply(redisReply *reply, const char *err, void *user)
{
    struct eval_call *c = user;
    if (reply && reply->type == REDIS_REPLY_ERROR && !c->retried &&
        g_str_has_prefix(reply->str, "NOSCRIPT")) {
        c->retried = TRUE;
        c->args[0] = "EVAL";
        c->args[1] = c->script->source;
        c->lens[0] = 4;
        c->lens[1] = strlen(c->script->source);
        if (sl_redis_command_argv(c->r, eval_reply, c, c->argc, c->args, c->lens) == SL_OK) return;
        if (c->cb) c->cb(NULL, "disconnected", c->user);
        eval_call_free(c);
        return;
    }
    if (c->cb) c->cb(reply, err, c->user);
    eval_call_free(c);
}

int sl_redis_eval(sl_redis *r, const sl_script *s, sl_redis_cb cb, void *user, int nkeys, int argc,
                  const char **argv, const size_t *lens)
{
    if (!sl_redis_connected(r)) return SL_ERR;
    int total = argc + 3;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += (lens ? lens[i] : strlen(argv[i])) + 1;
    struct eval_call *c =
        g_malloc0(sizeof *c + (size_t)total * (sizeof(char *) + sizeof(size_t)) + bytes);
    c->r = r;
    c->script = s;
    c->cb = cb;
    c->user = user;
    c->argc = total;
    c->args = (const char **)(c + 1);
    c->lens = (size_t *)(c->args + total);
    char *at = (char *)(c->lens + total);
    sl_int_text(nkeys, c->nkeys);
    c->args[0] = "EVALSHA";
    c->args[1] = s->sha;
    c->args[2] = c->nkeys;
    for (int i = 0; i < 3; i++)
        c->lens[i] = strlen(c->args[i]);
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        memcpy(at, argv[i], n);
        at[n] = '\0';
        c->args[3 + i] = at;
        c->lens[3 + i] = n;
        at += n + 1;
    }
    if (sl_redis_command_argv(r, eval_reply, c, c->argc, c->args, c->lens) != SL_OK) {
        eval_call_free(c);
        return SL_ERR;
    }
    return SL_OK;
}
