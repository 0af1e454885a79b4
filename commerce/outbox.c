/* outbox: durable jobs on a Redis stream with a consumer group, delivered at least once.
 *
 *   producer (a Lua script)        the group <name>, one consumer per node (its node id)
 *   XADD stream * k v ...  ──►  [ acked ... | pending: handed out, not acked | undelivered ]
 *                                               ▲ XAUTOCLAIM (idle > 30 s)   ▲ XREADGROUP >
 *
 * Every 200 ms a node reads new entries (XREADGROUP COUNT ≤ 50, never BLOCK: the connection is
 * shared) and hands each to the handler. The handler ends a job with cm_job_done (XACK) or
 * cm_job_retry (handed again after 1, 2, 4 ... 60 s, kept in this node's memory). While a node
 * holds an entry (with the handler or waiting to retry) it renews its claim every 10 s (XCLAIM
 * JUSTID), so only the entries of a node that died go idle; every 5 s each node reclaims those
 * (XAUTOCLAIM) and hands them to its own handler. Acked entries are trimmed (XTRIM MINID below the
 * oldest unacked one); consumers of dead nodes with nothing pending are removed after an hour.
 * A job may thus run twice (a node that stalled for 30 s, an XACK lost with the connection): the
 * handler's work must be idempotent. An outbox made with no handler (fn NULL) takes no jobs and
 * only measures: a node that cannot do them still shows the queue. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define POLL_MS          200
#define READ_COUNT       50
#define HELD_MAX         500 /* entries one node holds at once; the rest wait for others */
#define CLAIM_EVERY_MS   5000
#define CLAIM_IDLE_MS    "30000"
#define CLAIM_COUNT      "50"
#define RENEW_EVERY_MS   10000
#define MEASURE_EVERY_MS 5000
#define BACKOFF_MAX_S    60
#define DEAD_CONSUMER_MS (3600 * 1000)
#define FIELDS_MAX       64

struct cm_outbox {
    int refs; /* the owner's, one per job, one per command in flight */
    sl_server *srv;
    char *stream;   /* owned */
    char *group;    /* owned: also the metrics' label */
    char *consumer; /* owned: this node's id */
    cm_job_fn fn;
    void *user;
    GHashTable *jobs; /* entry id -> cm_job*, the entries this node holds; not owning */
    gboolean started, stopped, group_ready, creating, reading, claiming, renewing, measuring;
    gboolean warned;     /* Redis refused; logged once until it answers again */
    char claim_from[48]; /* XAUTOCLAIM's cursor */
    gint64 last_claim_us, last_renew_us, last_measure_us;
    guint timer;
    /* a measurement in progress: from XINFO GROUPS, then XPENDING */
    char last_delivered[48], pending_min[48];
    int64_t pending, lag; /* lag -1: Redis cannot tell */
    unsigned measured;
    sl_metric *m_length, *m_oldest, *m_done, *m_retry, *m_reclaimed;
};

struct cm_job {
    cm_outbox *o;   /* a reference */
    char *id;       /* owned: the stream entry's id */
    json_t *fields; /* owned: the entry's fields, lent to the handler until the job ends */
    int attempts;   /* times handed to the handler on this node */
    guint timer;    /* the backoff before it is handed again */
    gboolean with_handler;
};

static cm_outbox *outbox_ref(cm_outbox *o)
{
    o->refs++;
    return o;
}

static void outbox_unref(cm_outbox *o)
{
    if (--o->refs > 0) return;
    g_hash_table_unref(o->jobs);
    g_free(o->stream);
    g_free(o->group);
    g_free(o->consumer);
    g_free(o);
}

static sl_metric *metric(cm_outbox *o, const char *name, enum sl_metric_type type, const char *help,
                         const char *result)
{
    char labels[160];
    if (result)
        g_snprintf(labels, sizeof labels, "outbox=\"%s\",result=\"%s\"", o->group, result);
    else
        g_snprintf(labels, sizeof labels, "outbox=\"%s\"", o->group);
    return sl_metric_get(name, type, help, labels, 1);
}

cm_outbox *cm_outbox_new(struct commerce *cm, const char *stream_key, const char *name,
                         cm_job_fn fn, void *user)
{
    cm_outbox *o = g_new0(cm_outbox, 1);
    o->refs = 1;
    o->srv = cm->srv;
    o->stream = g_strdup(stream_key);
    o->group = g_strdup(name);
    o->consumer = g_strdup(sl_server_node_id(cm->srv));
    o->fn = fn;
    o->user = user;
    o->jobs = g_hash_table_new(g_str_hash, g_str_equal);
    g_strlcpy(o->claim_from, "0-0", sizeof o->claim_from);
    o->m_length = metric(o, "silklive_outbox_queue_length", SL_METRIC_GAUGE,
                         "Entries of a durable outbox not yet done (pending or unread)", NULL);
    o->m_oldest = metric(o, "silklive_outbox_oldest_age_seconds", SL_METRIC_GAUGE,
                         "Age of the oldest entry of an outbox not yet done", NULL);
    const char *jobs = "silklive_outbox_jobs_total";
    const char *help = "Jobs of a durable outbox by how the handler ended them (done, retry) or "
                       "taken over from a node that stopped answering (reclaimed)";
    o->m_done = metric(o, jobs, SL_METRIC_COUNTER, help, "done");
    o->m_retry = metric(o, jobs, SL_METRIC_COUNTER, help, "retry");
    o->m_reclaimed = metric(o, jobs, SL_METRIC_COUNTER, help, "reclaimed");
    return o;
}

/* ---- jobs ---- */

static void job_free(cm_job *job)
{
    cm_outbox *o = job->o;
    if (job->timer) g_source_remove(job->timer);
    if (g_hash_table_lookup(o->jobs, job->id) == job) g_hash_table_remove(o->jobs, job->id);
    json_decref(job->fields);
    g_free(job->id);
    g_free(job);
    outbox_unref(o);
}

static void job_hand(cm_job *job)
{
    job->attempts++;
    job->with_handler = TRUE;
    job->o->fn(job, job->fields, job->o->user);
}

/* An entry as the stream gives it: [id, [field, value, ...]]. */
static gboolean entry_take(cm_outbox *o, redisReply *e, gboolean reclaimed)
{
    if (o->stopped) return FALSE; /* the handler stopped the outbox while a batch was handed */
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return FALSE;
    const char *id = e->element[0]->str;
    if (g_hash_table_contains(o->jobs, id)) return FALSE; /* ours already (a late renewal) */
    redisReply *f = e->element[1];
    json_t *fields = json_object();
    if (f->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < f->elements && i < 2 * FIELDS_MAX; i += 2)
            if (f->element[i]->type == REDIS_REPLY_STRING &&
                f->element[i + 1]->type == REDIS_REPLY_STRING)
                json_object_set_new(fields, f->element[i]->str,
                                    json_stringn(f->element[i + 1]->str, f->element[i + 1]->len));
    cm_job *job = g_new0(cm_job, 1);
    job->o = outbox_ref(o);
    job->id = g_strdup(id);
    job->fields = fields;
    g_hash_table_insert(o->jobs, job->id, job);
    if (reclaimed) sl_metric_add(o->m_reclaimed, 1);
    job_hand(job);
    return TRUE;
}

static gboolean job_again(gpointer data)
{
    cm_job *job = data;
    job->timer = 0;
    if (job->o->stopped)
        job_free(job);
    else
        job_hand(job);
    return G_SOURCE_REMOVE;
}

void cm_job_done(cm_job *job)
{
    g_return_if_fail(job != NULL && job->with_handler);
    cm_outbox *o = job->o;
    sl_metric_add(o->m_done, 1);
    /* No answer needed: an XACK lost with the connection leaves the entry pending, and it is
     * reclaimed and handed again (at least once). */
    sl_redis_command(sl_server_redis(o->srv), NULL, NULL, "XACK %s %s %s", o->stream, o->group,
                     job->id);
    job_free(job);
}

void cm_job_retry(cm_job *job, const char *why)
{
    g_return_if_fail(job != NULL && job->with_handler);
    cm_outbox *o = job->o;
    job->with_handler = FALSE;
    sl_metric_add(o->m_retry, 1);
    if (o->stopped) { /* the entry stays pending; a node reclaims it */
        job_free(job);
        return;
    }
    int shift = MIN(job->attempts - 1, 6);
    guint delay_s = MIN((guint)1 << shift, BACKOFF_MAX_S);
    g_debug("outbox %s: entry %s again in %u s (attempt %d): %s", o->group, job->id, delay_s,
            job->attempts, why ? why : "");
    job->timer = g_timeout_add_seconds_full(G_PRIORITY_DEFAULT, delay_s, job_again, job, NULL);
}

int cm_job_attempts(const cm_job *job)
{
    return job->attempts;
}

/* ---- Redis rounds ---- */

static gboolean refused(cm_outbox *o, redisReply *r, const char *err, const char *what)
{
    if (r && r->type != REDIS_REPLY_ERROR) {
        o->warned = FALSE;
        return FALSE;
    }
    if (r && strncmp(r->str, "NOGROUP", 7) == 0) {
        o->group_ready = FALSE; /* the stream went (a flushed Redis): make it again */
        return TRUE;
    }
    if (!o->warned && !o->stopped)
        g_warning("outbox %s: %s failed: %s", o->group, what, r ? r->str : err);
    o->warned = TRUE;
    return TRUE;
}

static void on_create(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    o->creating = FALSE;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) == 0)
        o->group_ready = TRUE; /* another node made it */
    else if (!refused(o, r, err, "XGROUP CREATE"))
        o->group_ready = TRUE;
    outbox_unref(o);
}

static void on_read(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    o->reading = FALSE;
    /* [[stream, [entries]]] or nil when nothing is new */
    if (!refused(o, r, err, "XREADGROUP") && !o->stopped && r->type == REDIS_REPLY_ARRAY)
        for (size_t s = 0; s < r->elements; s++) {
            redisReply *st = r->element[s];
            if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
                st->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            for (size_t i = 0; i < st->element[1]->elements; i++)
                entry_take(o, st->element[1]->element[i], FALSE);
        }
    outbox_unref(o);
}

static void on_claim(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    o->claiming = FALSE;
    /* [next cursor, [entries], [ids of entries deleted meanwhile]] */
    if (!refused(o, r, err, "XAUTOCLAIM") && !o->stopped && r->type == REDIS_REPLY_ARRAY &&
        r->elements >= 2 && r->element[0]->type == REDIS_REPLY_STRING) {
        g_strlcpy(o->claim_from, r->element[0]->str, sizeof o->claim_from);
        redisReply *entries = r->element[1];
        unsigned taken = 0;
        for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++)
            taken += entry_take(o, entries->element[i], TRUE);
        if (taken)
            g_message("outbox %s: took over %u entries left pending by a node that stopped",
                      o->group, taken);
    }
    outbox_unref(o);
}

static void on_renew(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    o->renewing = FALSE;
    refused(o, r, err, "XCLAIM");
    outbox_unref(o);
}

/* Keep the entries this node holds from going idle, so no other node takes them over. */
static void renew(cm_outbox *o)
{
    guint n = g_hash_table_size(o->jobs);
    if (n == 0) return;
    GPtrArray *argv = g_ptr_array_new();
    const char *head[] = {"XCLAIM", o->stream, o->group, o->consumer, "0"};
    for (size_t i = 0; i < G_N_ELEMENTS(head); i++)
        g_ptr_array_add(argv, (gpointer)head[i]);
    GHashTableIter it;
    gpointer id;
    g_hash_table_iter_init(&it, o->jobs);
    while (g_hash_table_iter_next(&it, &id, NULL))
        g_ptr_array_add(argv, id);
    g_ptr_array_add(argv, (gpointer) "JUSTID");
    o->renewing = sl_redis_command_argv(sl_server_redis(o->srv), on_renew, outbox_ref(o),
                                        (int)argv->len, (const char **)argv->pdata, NULL) == SL_OK;
    if (!o->renewing) outbox_unref(o);
    g_ptr_array_unref(argv);
}

/* ---- measurement: queue length and oldest age; trimming; dead consumers ---- */

static int64_t id_ms(const char *id)
{
    return g_ascii_strtoll(id, NULL, 10);
}

static void measure_done(cm_outbox *o)
{
    o->measuring = FALSE;
    outbox_unref(o);
}

/* XINFO's replies are flat lists of name, value. */
static redisReply *info_field(redisReply *r, const char *name)
{
    for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2)
        if (r->element[k]->type == REDIS_REPLY_STRING && strcmp(r->element[k]->str, name) == 0)
            return r->element[k + 1];
    return NULL;
}

static void on_consumers(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    /* node ids change at every start: forget consumers idle an hour with nothing pending */
    if (!refused(o, r, err, "XINFO CONSUMERS") && !o->stopped && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *name = info_field(r->element[i], "name");
            redisReply *pending = info_field(r->element[i], "pending");
            redisReply *idle = info_field(r->element[i], "idle");
            if (name && name->type == REDIS_REPLY_STRING && pending &&
                pending->type == REDIS_REPLY_INTEGER && pending->integer == 0 && idle &&
                idle->type == REDIS_REPLY_INTEGER && idle->integer > DEAD_CONSUMER_MS &&
                strcmp(name->str, o->consumer) != 0)
                sl_redis_command(sl_server_redis(o->srv), NULL, NULL, "XGROUP DELCONSUMER %s %s %s",
                                 o->stream, o->group, name->str);
        }
    measure_done(o);
}

static void on_first_unread(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    if (refused(o, r, err, "XRANGE") || o->stopped) {
        measure_done(o);
        return;
    }
    const char *unread = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements > 0 &&
        r->element[0]->element[0]->type == REDIS_REPLY_STRING)
        unread = r->element[0]->element[0]->str;
    /* lag is unknown to Redis only after an XDEL, which nobody does here; then count the first
     * unread entry so the queue does not look empty */
    int64_t lag = o->lag >= 0 ? o->lag : unread != NULL;
    sl_metric_set(o->m_length, o->pending + lag);
    const char *oldest = o->pending_min[0] ? o->pending_min : unread;
    if (oldest && unread && id_ms(unread) < id_ms(oldest)) oldest = unread;
    int64_t age_ms = oldest ? sl_now_ms() - id_ms(oldest) : 0;
    sl_metric_set(o->m_oldest, MAX(age_ms, 0) / 1000);

    /* Everything below the oldest entry not yet done is acked: trim it. With nothing left to do,
     * that is everything up to the last entry read. */
    char next[48];
    if (oldest == NULL) {
        unsigned long long ms = 0, seq = 0;
        if (sscanf(o->last_delivered, "%llu-%llu", &ms, &seq) == 2 && (ms > 0 || seq > 0)) {
            g_snprintf(next, sizeof next, "%llu-%llu", ms, seq + 1);
            oldest = next;
        }
    }
    if (oldest)
        sl_redis_command(sl_server_redis(o->srv), NULL, NULL, "XTRIM %s MINID ~ %s", o->stream,
                         oldest);
    if (++o->measured % 12 == 0 &&
        sl_redis_command(sl_server_redis(o->srv), on_consumers, o, "XINFO CONSUMERS %s %s",
                         o->stream, o->group) == SL_OK)
        return;
    measure_done(o);
}

static void on_pending(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    /* [count, smallest id, greatest id, [[consumer, count], ...]] */
    if (refused(o, r, err, "XPENDING") || o->stopped || r->type != REDIS_REPLY_ARRAY ||
        r->elements < 2) {
        measure_done(o);
        return;
    }
    o->pending_min[0] = '\0';
    if (r->element[1]->type == REDIS_REPLY_STRING)
        g_strlcpy(o->pending_min, r->element[1]->str, sizeof o->pending_min);
    if (sl_redis_command(sl_server_redis(o->srv), on_first_unread, o, "XRANGE %s (%s + COUNT 1",
                         o->stream, o->last_delivered) != SL_OK)
        measure_done(o);
}

static void on_groups(redisReply *r, const char *err, void *user)
{
    cm_outbox *o = user;
    redisReply *g = NULL;
    if (!refused(o, r, err, "XINFO GROUPS") && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements && g == NULL; i++) {
            redisReply *name = info_field(r->element[i], "name");
            if (name && name->type == REDIS_REPLY_STRING && strcmp(name->str, o->group) == 0)
                g = r->element[i];
        }
    redisReply *pending = g ? info_field(g, "pending") : NULL;
    redisReply *last = g ? info_field(g, "last-delivered-id") : NULL;
    redisReply *lag = g ? info_field(g, "lag") : NULL;
    if (o->stopped || pending == NULL || pending->type != REDIS_REPLY_INTEGER || last == NULL ||
        last->type != REDIS_REPLY_STRING) {
        if (r && r->type != REDIS_REPLY_ERROR && g == NULL) o->group_ready = FALSE;
        measure_done(o);
        return;
    }
    o->pending = pending->integer;
    o->lag = lag && lag->type == REDIS_REPLY_INTEGER ? lag->integer : -1;
    g_strlcpy(o->last_delivered, last->str, sizeof o->last_delivered);
    if (sl_redis_command(sl_server_redis(o->srv), on_pending, o, "XPENDING %s %s", o->stream,
                         o->group) != SL_OK)
        measure_done(o);
}

/* ---- the loop ---- */

static gboolean tick(gpointer data)
{
    cm_outbox *o = data;
    sl_redis *redis = sl_server_redis(o->srv);
    if (!sl_redis_connected(redis)) return G_SOURCE_CONTINUE;
    if (!o->group_ready) {
        if (!o->creating) {
            /* from "0": entries added before the group existed are read too */
            o->creating =
                sl_redis_command(redis, on_create, outbox_ref(o), "XGROUP CREATE %s %s 0 MKSTREAM",
                                 o->stream, o->group) == SL_OK;
            if (!o->creating) outbox_unref(o);
        }
        return G_SOURCE_CONTINUE;
    }
    gint64 now = g_get_monotonic_time();
    guint held = o->fn ? g_hash_table_size(o->jobs) : HELD_MAX; /* no handler: measure only */
    if (!o->reading && held < HELD_MAX) {
        o->reading =
            sl_redis_command(redis, on_read, outbox_ref(o),
                             "XREADGROUP GROUP %s %s COUNT %u STREAMS %s >", o->group, o->consumer,
                             MIN(READ_COUNT, HELD_MAX - held), o->stream) == SL_OK;
        if (!o->reading) outbox_unref(o);
    }
    if (!o->claiming && held < HELD_MAX && now - o->last_claim_us >= CLAIM_EVERY_MS * 1000) {
        o->last_claim_us = now;
        o->claiming =
            sl_redis_command(redis, on_claim, outbox_ref(o),
                             "XAUTOCLAIM %s %s %s " CLAIM_IDLE_MS " %s COUNT " CLAIM_COUNT,
                             o->stream, o->group, o->consumer, o->claim_from) == SL_OK;
        if (!o->claiming) outbox_unref(o);
    }
    if (!o->renewing && now - o->last_renew_us >= RENEW_EVERY_MS * 1000) {
        o->last_renew_us = now;
        renew(o);
    }
    if (!o->measuring && now - o->last_measure_us >= MEASURE_EVERY_MS * 1000) {
        o->last_measure_us = now;
        o->measuring = sl_redis_command(redis, on_groups, outbox_ref(o), "XINFO GROUPS %s",
                                        o->stream) == SL_OK;
        if (!o->measuring) outbox_unref(o);
    }
    return G_SOURCE_CONTINUE;
}

void cm_outbox_start(cm_outbox *o)
{
    if (o == NULL || o->started) return;
    o->started = TRUE;
    /* the first round runs on the loop, never inside this call */
    o->timer = g_timeout_add(POLL_MS, tick, o);
}

void cm_outbox_stop(cm_outbox *o)
{
    if (o == NULL || o->stopped) return;
    o->stopped = TRUE;
    if (o->timer) g_source_remove(o->timer);
    o->timer = 0;
    /* Jobs waiting for their next attempt end here (their entries stay pending, to be taken
     * over); jobs with the handler end when it calls cm_job_done or cm_job_retry. */
    GPtrArray *waiting = g_ptr_array_new();
    GHashTableIter it;
    gpointer job;
    g_hash_table_iter_init(&it, o->jobs);
    while (g_hash_table_iter_next(&it, NULL, &job))
        if (!((cm_job *)job)->with_handler) g_ptr_array_add(waiting, job);
    for (guint i = 0; i < waiting->len; i++)
        job_free(waiting->pdata[i]);
    g_ptr_array_unref(waiting);
}

void cm_outbox_free(cm_outbox *o)
{
    if (o == NULL) return;
    cm_outbox_stop(o);
    outbox_unref(o);
}
