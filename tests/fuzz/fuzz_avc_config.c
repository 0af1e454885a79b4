/* fuzz_avc_config: the publisher's AVC sequence header (an RTMP video tag body) sizes the ladder;
 * ladder_source_size on arbitrary bytes must never crash, read past them or report a size that
 * is not positive. */
#include "transcode/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int w = 0, h = 0;
    /* a copy of exactly the given size, so ASan sees any read past it */
    uint8_t *copy = g_memdup2(data, size);
    if (ladder_source_size(copy, size, &w, &h) && (w <= 0 || h <= 0)) __builtin_trap();
    g_free(copy);
    return 0;
}
