/* Fuzz target: a client's WebSocket frame through chat's parser and text rules, and the same
 * bytes as moderation and banned-word request bodies. */
#include "chat/internal.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chat_msg m;
    GError *err = NULL;
    int rc = chat_msg_parse((const char *)data, size, &m, &err);
    if ((rc == SL_OK) == (err != NULL)) __builtin_trap(); /* an answer or an error, one of them */
    g_clear_error(&err);
    if (rc == SL_OK) {
        if (m.text) {
            const char *words[] = {"a", "假", "Ab", NULL};
            g_free(chat_text_mask(m.text, words));
        }
        chat_msg_clear(&m);
    }
    char *clean = chat_text_clean((const char *)data, size, 500);
    if (clean) {
        const char *words[] = {clean, NULL};
        g_free(chat_text_mask(clean, words));
        g_free(clean);
    }
    struct chat_stream_id id;
    (void)chat_stream_id_parse((const char *)data, size, &id);
    json_t *body = json_loadb((const char *)data, size, 0, NULL);
    if (body) {
        json_t *d = chat_moderation_validate(body, &err);
        if ((d == NULL) == (err == NULL)) __builtin_trap();
        json_decref(d);
        g_clear_error(&err);
        d = chat_words_validate(body, &err);
        if ((d == NULL) == (err == NULL)) __builtin_trap();
        json_decref(d);
        g_clear_error(&err);
        json_decref(body);
    }
    return 0;
}
