/* customs: declarations of paid orders (CEB311Message) delivered to the customs gateway. */
#include "internal.h"

int cm_customs_init(struct commerce *cm, GError **err)
{
    (void)cm;
    (void)err;
    return SL_OK;
}

void cm_customs_start(struct commerce *cm)
{
    (void)cm;
}

void cm_customs_stop(struct commerce *cm)
{
    (void)cm;
}

void cm_customs_free(struct commerce *cm)
{
    (void)cm;
}
