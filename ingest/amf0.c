/* amf0: the Action Message Format values RTMP commands and metadata are written in, decoded into
 * JSON values (bounded depth, never past the given bytes) and encoded for our replies. */
#include "internal.h"

#include <string.h>

enum {
    AMF0_NUMBER = 0x00,
    AMF0_BOOLEAN = 0x01,
    AMF0_STRING = 0x02,
    AMF0_OBJECT = 0x03,
    AMF0_NULL = 0x05,
    AMF0_UNDEFINED = 0x06,
    AMF0_REFERENCE = 0x07,
    AMF0_ECMA_ARRAY = 0x08,
    AMF0_OBJECT_END = 0x09,
    AMF0_STRICT_ARRAY = 0x0a,
    AMF0_DATE = 0x0b,
    AMF0_LONG_STRING = 0x0c,
    AMF0_TYPED_OBJECT = 0x10,
};

struct amf0_reader {
    const uint8_t *buf;
    size_t len, pos;
};

static int need(const struct amf0_reader *r, size_t n)
{
    return r->len - r->pos >= n ? SL_OK : SL_EPROTO;
}

static uint32_t get_be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int read_double(struct amf0_reader *r, double *out)
{
    if (need(r, 8) != SL_OK) return SL_EPROTO;
    uint64_t bits = (uint64_t)get_be(r->buf + r->pos, 4) << 32 | get_be(r->buf + r->pos + 4, 4);
    memcpy(out, &bits, sizeof *out);
    r->pos += 8;
    return SL_OK;
}

/* A string of lenbytes-wide length; points into the buffer. */
static int read_chars(struct amf0_reader *r, int lenbytes, const char **s, size_t *n)
{
    if (need(r, (size_t)lenbytes) != SL_OK) return SL_EPROTO;
    size_t l = get_be(r->buf + r->pos, lenbytes);
    r->pos += (size_t)lenbytes;
    if (need(r, l) != SL_OK) return SL_EPROTO;
    *s = (const char *)r->buf + r->pos;
    *n = l;
    r->pos += l;
    return SL_OK;
}

static json_t *string_value(const char *s, size_t n)
{
    /* AMF0 strings are meant to be UTF-8 but encoders send anything; keep the bytes (callers
     * check what they use) unless they hold a NUL, which JSON strings here cannot carry. */
    if (memchr(s, '\0', n)) return json_stringn_nocheck("", 0);
    return json_stringn_nocheck(s, n);
}

static int read_value(struct amf0_reader *r, int depth, json_t **out);

/* Properties until the end marker (00 00 09). */
static int read_props(struct amf0_reader *r, int depth, json_t *obj)
{
    for (;;) {
        const char *key;
        size_t klen;
        if (read_chars(r, 2, &key, &klen) != SL_OK) return SL_EPROTO;
        if (klen == 0) {
            if (need(r, 1) != SL_OK || r->buf[r->pos] != AMF0_OBJECT_END) return SL_EPROTO;
            r->pos++;
            return SL_OK;
        }
        json_t *v = NULL;
        if (read_value(r, depth + 1, &v) != SL_OK) return SL_EPROTO;
        if (memchr(key, '\0', klen)) {
            json_decref(v);
            continue;
        }
        char *k = g_strndup(key, klen);
        json_object_set_new_nocheck(obj, k, v);
        g_free(k);
    }
}

static int read_value(struct amf0_reader *r, int depth, json_t **out)
{
    if (depth > AMF0_MAX_DEPTH || need(r, 1) != SL_OK) return SL_EPROTO;
    uint8_t marker = r->buf[r->pos++];
    const char *s;
    size_t n;
    double d;
    switch (marker) {
    case AMF0_NUMBER:
        if (read_double(r, &d) != SL_OK) return SL_EPROTO;
        *out = json_real(d == d ? d : 0); /* NaN has no JSON form */
        return *out ? SL_OK : SL_EPROTO;  /* json_real refuses infinities */
    case AMF0_BOOLEAN:
        if (need(r, 1) != SL_OK) return SL_EPROTO;
        *out = json_boolean(r->buf[r->pos++] != 0);
        return SL_OK;
    case AMF0_STRING:
    case AMF0_LONG_STRING:
        if (read_chars(r, marker == AMF0_STRING ? 2 : 4, &s, &n) != SL_OK) return SL_EPROTO;
        *out = string_value(s, n);
        return SL_OK;
    case AMF0_NULL:
    case AMF0_UNDEFINED:
        *out = json_null();
        return SL_OK;
    case AMF0_TYPED_OBJECT:
        if (read_chars(r, 2, &s, &n) != SL_OK) return SL_EPROTO; /* class name: ignored */
        /* fall through */
    case AMF0_OBJECT:
    case AMF0_ECMA_ARRAY: {
        if (marker == AMF0_ECMA_ARRAY) { /* the count is a hint only; the end marker decides */
            if (need(r, 4) != SL_OK) return SL_EPROTO;
            r->pos += 4;
        }
        json_t *obj = json_object();
        if (read_props(r, depth, obj) != SL_OK) {
            json_decref(obj);
            return SL_EPROTO;
        }
        *out = obj;
        return SL_OK;
    }
    case AMF0_STRICT_ARRAY: {
        if (need(r, 4) != SL_OK) return SL_EPROTO;
        uint32_t count = get_be(r->buf + r->pos, 4);
        r->pos += 4;
        if (count > r->len - r->pos) return SL_EPROTO; /* each value takes at least one byte */
        json_t *arr = json_array();
        for (uint32_t i = 0; i < count; i++) {
            json_t *v = NULL;
            if (read_value(r, depth + 1, &v) != SL_OK) {
                json_decref(arr);
                return SL_EPROTO;
            }
            json_array_append_new(arr, v);
        }
        *out = arr;
        return SL_OK;
    }
    case AMF0_DATE:
        if (read_double(r, &d) != SL_OK || need(r, 2) != SL_OK) return SL_EPROTO;
        r->pos += 2; /* time zone: reserved, always 0 */
        *out = json_real(d == d ? d : 0);
        return *out ? SL_OK : SL_EPROTO;
    default: /* references, movieclip, recordset, XML, AMF3 switch: no encoder sends them here */
        return SL_EPROTO;
    }
}

int amf0_read(const uint8_t *buf, size_t len, size_t *pos, json_t **out)
{
    if (*pos > len) return SL_EPROTO;
    struct amf0_reader r = {buf, len, *pos};
    json_t *v = NULL;
    if (read_value(&r, 0, &v) != SL_OK) return SL_EPROTO;
    *pos = r.pos;
    *out = v;
    return SL_OK;
}

int amf0_read_all(const uint8_t *buf, size_t len, json_t **out)
{
    json_t *arr = json_array();
    size_t pos = 0;
    while (pos < len) {
        json_t *v = NULL;
        if (amf0_read(buf, len, &pos, &v) != SL_OK) {
            json_decref(arr);
            return SL_EPROTO;
        }
        json_array_append_new(arr, v);
    }
    *out = arr;
    return SL_OK;
}

/* ---- encoder ---- */

static void put_be(GByteArray *b, uint32_t v, int n)
{
    uint8_t tmp[4];
    for (int i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    g_byte_array_append(b, tmp, (guint)n);
}

static void put_u8(GByteArray *b, uint8_t v)
{
    g_byte_array_append(b, &v, 1);
}

void amf0_put_number(GByteArray *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u8(b, AMF0_NUMBER);
    put_be(b, (uint32_t)(bits >> 32), 4);
    put_be(b, (uint32_t)bits, 4);
}

void amf0_put_bool(GByteArray *b, gboolean v)
{
    put_u8(b, AMF0_BOOLEAN);
    put_u8(b, v ? 1 : 0);
}

void amf0_put_string(GByteArray *b, const char *s)
{
    size_t n = strlen(s);
    if (n > 0xffff) n = 0xffff;
    put_u8(b, AMF0_STRING);
    put_be(b, (uint32_t)n, 2);
    g_byte_array_append(b, (const guint8 *)s, (guint)n);
}

void amf0_put_null(GByteArray *b)
{
    put_u8(b, AMF0_NULL);
}

void amf0_put_object_start(GByteArray *b)
{
    put_u8(b, AMF0_OBJECT);
}

void amf0_put_key(GByteArray *b, const char *key)
{
    size_t n = strlen(key);
    put_be(b, (uint32_t)n, 2);
    g_byte_array_append(b, (const guint8 *)key, (guint)n);
}

void amf0_put_object_end(GByteArray *b)
{
    put_be(b, 0, 2);
    put_u8(b, AMF0_OBJECT_END);
}
