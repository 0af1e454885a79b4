/* msg: what a client may send (api.md "WebSocket"), parsed and checked without I/O, the chat
 * text rules, stream ids, and the shared frames the hub fans out. */
#include "internal.h"

#include <string.h>

static const char *str_field(json_t *o, const char *k, size_t *len)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

static int parse_join(json_t *j, struct chat_msg *out, GError **err)
{
    size_t n = 0;
    const char *channel = str_field(j, "channel", &n);
    if (channel == NULL || !sl_id_valid(channel, n)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "join needs a channel id of [A-Za-z0-9_-]{1,64}");
        return SL_EPROTO;
    }
    memcpy(out->channel, channel, n);
    out->channel[n] = '\0';

    json_t *tok = json_object_get(j, "token");
    if (tok && !json_is_null(tok)) {
        const char *t = str_field(j, "token", &n);
        if (t == NULL || n == 0 || n > CHAT_TOKEN_MAX || memchr(t, '\0', n)) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "token must be a JWT string");
            return SL_EPROTO;
        }
        out->token = g_strndup(t, n);
    }
    json_t *since = json_object_get(j, "since");
    if (since && !json_is_null(since)) {
        const char *s = str_field(j, "since", &n);
        if (s == NULL || (n > 0 && chat_stream_id_parse(s, n, &out->since) != SL_OK)) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "since must be an event id from this channel");
            return SL_EPROTO;
        }
        if (n > 0) {
            out->has_since = TRUE;
            memcpy(out->since_text, s, n);
            out->since_text[n] = '\0';
        }
    }
    out->type = CHAT_MSG_JOIN;
    return SL_OK;
}

int chat_msg_parse(const char *buf, size_t len, struct chat_msg *out, GError **err)
{
    memset(out, 0, sizeof *out);
    if (len > CHAT_FRAME_MAX) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "frames are limited to 4096 bytes");
        return SL_EPROTO;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "a frame must be one JSON object");
        return SL_EPROTO;
    }
    int rc = SL_EPROTO;
    size_t n = 0;
    const char *type = str_field(j, "type", &n);
    if (type == NULL) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "the frame has no type");
    } else if (strcmp(type, "join") == 0) {
        rc = parse_join(j, out, err);
    } else if (strcmp(type, "chat") == 0) {
        const char *text = str_field(j, "text", &n);
        out->text = text ? chat_text_clean(text, n, CHAT_TEXT_MAX) : NULL;
        if (out->text == NULL) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "chat text must be 1 to 500 characters of UTF-8");
        } else {
            out->type = CHAT_MSG_CHAT;
            rc = SL_OK;
        }
    } else if (strcmp(type, "ping") == 0) {
        out->type = CHAT_MSG_PING;
        rc = SL_OK;
    } else {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "unknown message type");
    }
    json_decref(j);
    if (rc != SL_OK) chat_msg_clear(out);
    return rc;
}

void chat_msg_clear(struct chat_msg *m)
{
    g_free(m->token);
    g_free(m->text);
    m->token = NULL;
    m->text = NULL;
}

/* C0/C1 controls and the bidirectional overrides that let a message spoof the text after it. */
static gboolean char_stripped(gunichar c)
{
    return g_unichar_type(c) == G_UNICODE_CONTROL || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069) || c == 0xfeff;
}

char *chat_text_clean(const char *text, size_t len, size_t max_chars)
{
    if (!g_utf8_validate_len(text, len, NULL)) return NULL;
    GString *out = g_string_sized_new(len);
    size_t chars = 0, kept_len = 0, kept_chars = 0; /* through the last non-space character */
    for (const char *p = text, *end = text + len; p < end; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);
        if (c == '\n' || c == '\r' || c == '\t') c = ' '; /* line breaks read as a space */
        if (char_stripped(c)) continue;
        if (chars == 0 && g_unichar_isspace(c)) continue; /* leading white space */
        g_string_append_unichar(out, c);
        chars++;
        if (!g_unichar_isspace(c)) {
            kept_len = out->len;
            kept_chars = chars;
        }
    }
    g_string_truncate(out, kept_len); /* trailing white space */
    if (kept_chars == 0 || kept_chars > max_chars) {
        g_string_free(out, TRUE);
        return NULL;
    }
    return g_string_free(out, FALSE);
}

/* Characters of word matched case-insensitively at p; returns the bytes of text matched or 0. */
static size_t match_word(const char *p, const char *end, const char *word, size_t *chars)
{
    const char *q = p;
    *chars = 0;
    for (const char *w = word; *w; w = g_utf8_next_char(w)) {
        if (q >= end) return 0;
        if (g_unichar_tolower(g_utf8_get_char(q)) != g_unichar_tolower(g_utf8_get_char(w)))
            return 0;
        q = g_utf8_next_char(q);
        (*chars)++;
    }
    return (size_t)(q - p);
}

char *chat_text_mask(const char *text, const char *const *words)
{
    if (words == NULL || words[0] == NULL) return NULL;
    const char *end = text + strlen(text);
    GString *out = g_string_sized_new((gsize)(end - text));
    gboolean masked = FALSE;
    for (const char *p = text; p < end;) {
        size_t best = 0, best_chars = 0;
        for (const char *const *w = words; *w; w++) {
            size_t chars = 0, n = match_word(p, end, *w, &chars);
            if (n > best) {
                best = n;
                best_chars = chars;
            }
        }
        if (best > 0) {
            for (size_t i = 0; i < best_chars; i++)
                g_string_append_c(out, '*');
            p += best;
            masked = TRUE;
        } else {
            const char *next = g_utf8_next_char(p);
            g_string_append_len(out, p, next - p);
            p = next;
        }
    }
    if (!masked) {
        g_string_free(out, TRUE);
        return NULL;
    }
    return g_string_free(out, FALSE);
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20) return SL_EPROTO;
    char buf[21];
    memcpy(buf, s, len);
    buf[len] = '\0';
    guint64 v = 0;
    for (size_t i = 0; i < len; i++)
        if (!g_ascii_isdigit(buf[i])) return SL_EPROTO;
    if (!g_ascii_string_to_unsigned(buf, 10, 0, G_MAXUINT64, &v, NULL)) return SL_EPROTO;
    *out = v;
    return SL_OK;
}

int chat_stream_id_parse(const char *s, size_t len, struct chat_stream_id *out)
{
    const char *dash = memchr(s, '-', len);
    if (dash == NULL) return SL_EPROTO;
    size_t a = (size_t)(dash - s);
    if (parse_u64(s, a, &out->ms) != SL_OK) return SL_EPROTO;
    return parse_u64(dash + 1, len - a - 1, &out->seq);
}

int chat_stream_id_cmp(const struct chat_stream_id *a, const struct chat_stream_id *b)
{
    if (a->ms != b->ms) return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return 0;
}

/* ---- frames ---- */

struct chat_frame *chat_frame_new(const char *payload, size_t len, enum chat_frame_kind kind)
{
    size_t head = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
    struct chat_frame *f = g_malloc(sizeof *f + head + len);
    f->refs = 1;
    f->kind = kind;
    f->has_id = FALSE;
    f->len = head + len;
    f->data[0] = 0x81; /* FIN + text; server frames are never masked (RFC 6455 5.1) */
    if (head == 2) {
        f->data[1] = (uint8_t)len;
    } else if (head == 4) {
        f->data[1] = 126;
        f->data[2] = (uint8_t)(len >> 8);
        f->data[3] = (uint8_t)len;
    } else {
        f->data[1] = 127;
        for (int i = 0; i < 8; i++)
            f->data[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(f->data + head, payload, len);
    return f;
}

struct chat_frame *chat_frame_ref(struct chat_frame *f)
{
    f->refs++;
    return f;
}

void chat_frame_unref(struct chat_frame *f)
{
    if (f && --f->refs == 0) g_free(f);
}

struct chat_frame *chat_frame_json(json_t *j, enum chat_frame_kind kind)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct chat_frame *f = chat_frame_new(s, strlen(s), kind);
    free(s);
    return f;
}
