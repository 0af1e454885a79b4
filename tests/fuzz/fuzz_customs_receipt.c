/* fuzz_customs_receipt: the customs gateway's CEB312Message receipts (HTTP answers and posted
 * receipts); whatever parses has a guid and an all-digit status. */
#include "commerce/internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_receipt r;
    if (cm_customs_receipt_parse((const char *)data, size, &r) == SL_OK) {
        if (r.guid == NULL || r.status == NULL || *r.status == '\0' ||
            strspn(r.status, "0123456789") != strlen(r.status))
            __builtin_trap();
        cm_customs_receipt_clear(&r);
    }
    return 0;
}
