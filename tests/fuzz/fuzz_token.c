/* fuzz_token: sl_token_verify on arbitrary bytes must never crash, read past them, or accept
 * anything but a token signed with the secret. */
#include "core/core.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_claims c;
    if (sl_token_verify("fuzz-secret", (const char *)data, size, 1800000000, &c) == SL_OK) {
        /* only a correctly signed token gets here: its claims must be well-formed */
        if (!sl_id_valid(c.sub, strlen(c.sub)) || c.role == SL_ROLE_NONE) __builtin_trap();
    }
    return 0;
}
