/* util: the id grammar of api.md and the wall clock, shared by every module. */
#include "core.h"

gboolean sl_id_valid(const char *s, size_t len)
{
    if (s == NULL || len < 1 || len > 64) return FALSE;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!(g_ascii_isalnum(c) || c == '_' || c == '-')) return FALSE;
    }
    return TRUE;
}

int64_t sl_now_ms(void)
{
    return g_get_real_time() / 1000;
}
