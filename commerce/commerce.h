/* commerce: pavilions, channels, products, flash sales, reservations and orders (api.md), with
 * Redis as the store and one Lua script per reservation operation. */
#ifndef SL_COMMERCE_H
#define SL_COMMERCE_H

#include "core/core.h"

/* The module, for sl_server_add_module. Its config section is [commerce]:
 * quota_annual_fen (default 2600000 = 26,000 CNY), quota_order_fen (500000 = 5,000 CNY),
 * public_url (http://LISTEN), public_rtmp_url (rtmp://RTMP_LISTEN/live). */
extern const struct sl_module commerce_module;

#endif
