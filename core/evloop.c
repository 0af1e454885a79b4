/* evloop: runs libwebsockets' connections on libev's epoll loop, driven from the GLib main loop
 * through one GSource, so the cost of a loop turn does not grow with the number of sockets. */
#include "internal.h"

#include <ev.h>
#include <gio/gio.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <unistd.h>

/* Why not lws' GLib event library: it gives every connection a GSource of its own, and GLib's
 * poll()-based iteration prepares and checks every source on every turn (O(connections) per
 * turn). Each POLLOUT toggle (g_source_modify_unix_fd) and each re-arm of lws' timer
 * (g_source_set_ready_time) also writes GLib's wakeup eventfd and costs the loop an extra turn:
 * about twelve eventfd writes per API call. Here GLib polls one descriptor, libev's epoll set;
 * interest changes are epoll_ctl calls batched by libev. */

G_STATIC_ASSERT(LWS_COUNT_PT_SUL_OWNERS == 2);

struct evloop {
    GSource base;
    struct ev_loop *loop; /* owned */
    gpointer fd_tag;
    /* lws' scheduled events (timeouts, deferred closes) live in two sorted lists per service
     * thread; their heads say when GLib must wake us. Found once through a probe event. */
    lws_dll2_owner_t *sul_owners; /* [LWS_COUNT_PT_SUL_OWNERS], lws' own */
};

/* Watcher callbacks are not run inside ev_run(): prepare and check only collect what is ready,
 * dispatch runs it, where GLib expects callbacks to happen. */
static void invoke_later(struct ev_loop *loop)
{
    (void)loop;
}

/* Microseconds (lws_now_usecs clock) of the earliest scheduled lws event, 0 if none. */
static lws_usec_t sul_earliest(const struct evloop *e)
{
    lws_usec_t earliest = 0;
    for (int i = 0; e->sul_owners != NULL && i < LWS_COUNT_PT_SUL_OWNERS; i++) {
        const lws_dll2_owner_t *o = &e->sul_owners[i];
        if (o->head == NULL) continue;
        const lws_sorted_usec_list_t *sul = lws_container_of(o->head, lws_sorted_usec_list_t, list);
        if (earliest == 0 || sul->us < earliest) earliest = sul->us;
    }
    return earliest;
}

static gboolean sul_ripe(const struct evloop *e)
{
    lws_usec_t next = sul_earliest(e);
    return next != 0 && next <= lws_now_usecs();
}

static gboolean evloop_prepare(GSource *source, gint *timeout)
{
    struct evloop *e = (struct evloop *)source;
    /* Applies the interest changes made since the last turn (they are only queued until libev
     * runs) and collects whatever is ready without waiting. */
    ev_run(e->loop, EVRUN_NOWAIT);
    *timeout = -1;
    if (ev_pending_count(e->loop) > 0) {
        *timeout = 0;
        return TRUE;
    }
    lws_usec_t next = sul_earliest(e);
    if (next != 0) {
        lws_usec_t now = lws_now_usecs();
        if (next <= now) {
            *timeout = 0;
            return TRUE;
        }
        *timeout = (gint)MIN((next - now + 999) / 1000, G_MAXINT);
    }
    return FALSE;
}

static gboolean evloop_check(GSource *source)
{
    struct evloop *e = (struct evloop *)source;
    /* what prepare collected is dispatched first; anything newer waits one turn, which saves
     * an epoll_wait per turn while the loop is busy */
    if (ev_pending_count(e->loop) > 0) return TRUE;
    if (g_source_query_unix_fd(source, e->fd_tag) & G_IO_IN) ev_run(e->loop, EVRUN_NOWAIT);
    return ev_pending_count(e->loop) > 0 || sul_ripe(e);
}

static gboolean evloop_dispatch(GSource *source, GSourceFunc callback, gpointer user)
{
    (void)callback;
    (void)user;
    struct evloop *e = (struct evloop *)source;
    ev_invoke_pending(e->loop);
    if (sul_ripe(e))
        __lws_sul_service_ripe(e->sul_owners, LWS_COUNT_PT_SUL_OWNERS, lws_now_usecs());
    return G_SOURCE_CONTINUE;
}

static void evloop_finalize(GSource *source)
{
    struct evloop *e = (struct evloop *)source;
    if (e->loop != NULL) ev_loop_destroy(e->loop);
}

static GSourceFuncs evloop_funcs = {
    .prepare = evloop_prepare,
    .check = evloop_check,
    .dispatch = evloop_dispatch,
    .finalize = evloop_finalize,
};

/* The epoll descriptors this process has open, as a set of fd numbers. */
static GHashTable *epoll_fds(void)
{
    GHashTable *set = g_hash_table_new(NULL, NULL);
    GDir *dir = g_dir_open("/proc/self/fd", 0, NULL);
    if (dir == NULL) return set;
    const char *name;
    while ((name = g_dir_read_name(dir)) != NULL) {
        char path[64], target[64];
        g_snprintf(path, sizeof path, "/proc/self/fd/%s", name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        if (strcmp(target, "anon_inode:[eventpoll]") == 0)
            g_hash_table_add(set, GINT_TO_POINTER(atoi(name) + 1));
    }
    g_dir_close(dir);
    return set;
}

/* Debian's libev does not export ev_backend_fd(); the loop's epoll descriptor is the one that
 * appeared when it was created. -1 if there is not exactly one. */
static int new_epoll_fd(GHashTable *before)
{
    GHashTable *after = epoll_fds();
    GHashTableIter it;
    gpointer key;
    int fd = -1, found = 0;
    g_hash_table_iter_init(&it, after);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        if (g_hash_table_contains(before, key)) continue;
        fd = GPOINTER_TO_INT(key) - 1;
        found++;
    }
    g_hash_table_unref(after);
    return found == 1 ? fd : -1;
}

evloop *evloop_new(GMainContext *ctx, GError **err)
{
    GHashTable *before = epoll_fds();
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    int fd = loop ? new_epoll_fd(before) : -1;
    g_hash_table_unref(before);
    if (fd < 0) {
        if (loop != NULL) ev_loop_destroy(loop);
        g_set_error(err, SL_ERROR, SL_ERROR_IO, "cannot create libev's epoll loop");
        return NULL;
    }
    ev_set_invoke_pending_cb(loop, invoke_later);
    GSource *source = g_source_new(&evloop_funcs, sizeof(struct evloop));
    struct evloop *e = (struct evloop *)source;
    e->loop = loop;
    g_source_set_name(source, "libwebsockets (libev)");
    /* Above the Redis pub/sub feed (G_PRIORITY_DEFAULT_IDLE, see redis.c): the feed is read
     * only when no client is ready to be served, so a burst on it cannot outrun the writes and
     * fill every member's queue (test_chat's slow_consumer_is_closed). */
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    /* GLib blocks a source that cannot recurse while it dispatches: it takes its descriptors
     * out of the poll set and puts them back after, and each change writes the context's wakeup
     * eventfd, which then has to be read and costs another turn. Per dispatch, that is per
     * frame or request received, three syscalls and a turn for nothing: this source never
     * iterates the context from a callback, so nothing can recurse into it. */
    g_source_set_can_recurse(source, TRUE);
    e->fd_tag = g_source_add_unix_fd(source, fd, G_IO_IN);
    g_source_attach(source, ctx);
    return e;
}

void *evloop_ev_loop(evloop *e)
{
    return e->loop;
}

static void sul_probe_fired(lws_sorted_usec_list_t *sul)
{
    (void)sul;
}

int evloop_attach(evloop *e, struct lws_context *lws)
{
    /* lws has no call that says when its next event is due; the lists it keeps them in (an array
     * in its per-thread state, which __lws_sul_service_ripe() takes as a whole) are found by
     * scheduling a probe far in the future on each and reading its owner. */
    lws_sorted_usec_list_t probe;
    memset(&probe, 0, sizeof probe);
    const lws_usec_t far = (lws_usec_t)3600 * LWS_US_PER_SEC;
    lws_sul_schedule(lws, 0, &probe, sul_probe_fired, far);
    lws_dll2_owner_t *first = probe.list.owner;
    lws_sul_cancel(&probe);
    lws_sul_schedule_wakesuspend(lws, 0, &probe, sul_probe_fired, far);
    lws_dll2_owner_t *second = probe.list.owner;
    lws_sul_cancel(&probe);
    if (first == NULL || second != first + 1) return SL_ERR;
    e->sul_owners = first;
    return SL_OK;
}

void evloop_detach(evloop *e)
{
    e->sul_owners = NULL;
}

void evloop_free(evloop *e)
{
    if (e == NULL) return;
    g_source_destroy(&e->base);
    g_source_unref(&e->base);
}
