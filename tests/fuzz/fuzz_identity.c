/* fuzz_identity: a buyer's identity number and a sealed one from the store, as arbitrary bytes:
 * never a crash or a read past them; what is accepted is canonical, masks to its ends, and what
 * opens is exactly what was sealed. */
#include "commerce/internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cm_identity_key key;
    static gboolean ready;
    if (!ready) {
        ready = cm_identity_key_init(
                    &key, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                    NULL) == SL_OK;
    }
    char *text = g_strndup((const char *)data, size); /* a JSON string holds no NUL */
    GError *err = NULL;
    char *id = cm_id_number_check(text, 2026, &err);
    if ((id == NULL) == (err == NULL)) __builtin_trap();
    g_clear_error(&err);
    if (id) {
        char masked[CM_ID_MASKED_LEN + 1];
        cm_id_number_mask(id, masked);
        if (strlen(id) != 18 || memcmp(masked, id, 3) || memcmp(masked + 14, id + 14, 4))
            __builtin_trap();
        char *sealed = cm_id_number_seal(&key, id, NULL);
        char *opened = sealed ? cm_id_number_open(&key, sealed, NULL) : NULL;
        if (opened == NULL || strcmp(opened, id) != 0) __builtin_trap();
        g_free(opened);
        g_free(sealed);
        g_free(id);
    }
    char *opened = cm_id_number_open(&key, text, &err);
    if ((opened == NULL) == (err == NULL)) __builtin_trap();
    g_clear_error(&err);
    g_free(opened);
    g_free(text);
    return 0;
}
