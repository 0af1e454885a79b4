/* orders: the order's life after payment (read, refund, shipment, delivery) and its events. */
#include "internal.h"

void cm_order_routes(struct commerce *cm)
{
    (void)cm;
}
