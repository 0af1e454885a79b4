/* util: the id grammar of api.md, the wall clock, integers as text and the error domain, shared
 * by every module. */
#include "core.h"

GQuark sl_error_quark(void)
{
    return g_quark_from_static_string("silklive-error-quark");
}

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

size_t sl_int_text(int64_t v, char *out)
{
    char tmp[SL_INT_TEXT_MAX];
    /* in unsigned arithmetic, so INT64_MIN has a magnitude too */
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t k = 0, n = 0;
    do {
        tmp[k++] = (char)('0' + m % 10);
        m /= 10;
    } while (m > 0);
    if (v < 0) out[n++] = '-';
    while (k > 0)
        out[n++] = tmp[--k];
    out[n] = '\0';
    return n;
}
