/* rtmp_handshake: the server side of RTMP's C0/C1/C2 ⇄ S0/S1/S2 exchange, both the simple one
 * (echo) and the digest-style one Flash-era encoders send (HMAC-SHA256 with Adobe's public keys).
 */
#include "internal.h"

#include <string.h>

enum { HS_C0, HS_C1, HS_C2, HS_DONE };

#define DIGEST_LEN 32

/* The published "Genuine Adobe Flash ..." keys: a text part then 32 fixed bytes. The client
 * signs C1 with the first 30 bytes of its key, the server S1 with the first 36 of its own, and
 * S2 with a key derived from the whole server key and the client's digest. */
static const uint8_t key_tail[32] = {
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae};
static const char player_text[] = "Genuine Adobe Flash Player 001";       /* 30 */
static const char server_text[] = "Genuine Adobe Flash Media Server 001"; /* 36 */

static void hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *a, size_t alen,
                        const uint8_t *b, size_t blen, uint8_t out[DIGEST_LEN])
{
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key, klen);
    g_hmac_update(h, a, (gssize)alen);
    if (blen) g_hmac_update(h, b, (gssize)blen);
    gsize n = DIGEST_LEN;
    g_hmac_get_digest(h, out, &n);
    g_hmac_unref(h);
}

/* Where the digest sits in a 1536-byte block under scheme 0 (offset bytes at 8) or 1 (at 772). */
static size_t digest_offset(const uint8_t *block, int scheme)
{
    size_t base = scheme == 0 ? 8 : 772;
    size_t sum = (size_t)block[base] + block[base + 1] + block[base + 2] + block[base + 3];
    return sum % 728 + base + 4;
}

/* HMAC of the block without its digest bytes. */
static void block_digest(const uint8_t *block, size_t off, const uint8_t *key, size_t klen,
                         uint8_t out[DIGEST_LEN])
{
    hmac_sha256(key, klen, block, off, block + off + DIGEST_LEN,
                RTMP_HANDSHAKE_SIZE - off - DIGEST_LEN, out);
}

static void full_key(uint8_t *dst, const char *text, size_t tlen)
{
    memcpy(dst, text, tlen);
    memcpy(dst + tlen, key_tail, sizeof key_tail);
}

/* The scheme whose digest verifies, or -1. */
static int client_scheme(const uint8_t *c1)
{
    uint8_t key[30], d[DIGEST_LEN];
    memcpy(key, player_text, 30);
    for (int scheme = 0; scheme < 2; scheme++) {
        size_t off = digest_offset(c1, scheme);
        block_digest(c1, off, key, sizeof key, d);
        if (memcmp(d, c1 + off, DIGEST_LEN) == 0) return scheme;
    }
    return -1;
}

static void random_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4) {
        guint32 r = g_random_int();
        memcpy(p + i, &r, MIN(4, n - i));
    }
}

static void reply(struct rtmp_handshake *h, GByteArray *out)
{
    uint8_t s0 = 3, s1[RTMP_HANDSHAKE_SIZE], s2[RTMP_HANDSHAKE_SIZE];
    uint32_t now = (uint32_t)(g_get_monotonic_time() / 1000);
    random_fill(s1, sizeof s1);
    s1[0] = (uint8_t)(now >> 24), s1[1] = (uint8_t)(now >> 16);
    s1[2] = (uint8_t)(now >> 8), s1[3] = (uint8_t)now;
    int scheme = (h->c1[4] | h->c1[5] | h->c1[6] | h->c1[7]) ? client_scheme(h->c1) : -1;
    h->digest = scheme >= 0;
    if (!h->digest) {
        memset(s1 + 4, 0, 4); /* version 0: the simple handshake */
        memcpy(s2, h->c1, sizeof s2);
    } else {
        uint8_t key[68];
        s1[4] = 4, s1[5] = 5, s1[6] = 0, s1[7] = 1; /* a server version, as FMS sends */
        size_t off = digest_offset(s1, scheme);
        full_key(key, server_text, 36);
        block_digest(s1, off, key, 36, s1 + off);
        /* S2 answers the client's digest: random bytes signed with a key derived from it */
        uint8_t derived[DIGEST_LEN];
        size_t coff = digest_offset(h->c1, scheme);
        hmac_sha256(key, sizeof key, h->c1 + coff, DIGEST_LEN, NULL, 0, derived);
        random_fill(s2, sizeof s2);
        hmac_sha256(derived, sizeof derived, s2, RTMP_HANDSHAKE_SIZE - DIGEST_LEN, NULL, 0,
                    s2 + RTMP_HANDSHAKE_SIZE - DIGEST_LEN);
    }
    g_byte_array_append(out, &s0, 1);
    g_byte_array_append(out, s1, sizeof s1);
    g_byte_array_append(out, s2, sizeof s2);
}

int rtmp_handshake_feed(struct rtmp_handshake *h, const uint8_t *buf, size_t len, size_t *consumed,
                        GByteArray *out)
{
    size_t pos = 0;
    while (h->state != HS_DONE) {
        if (pos == len) {
            *consumed = pos;
            return SL_AGAIN;
        }
        switch (h->state) {
        case HS_C0:
            if (buf[pos] != 3) { /* 6 (encrypted RTMPE) and anything else: not spoken here */
                *consumed = pos;
                return SL_EPROTO;
            }
            pos++;
            h->state = HS_C1;
            h->have = 0;
            break;
        case HS_C1: {
            size_t n = MIN(len - pos, RTMP_HANDSHAKE_SIZE - h->have);
            memcpy(h->c1 + h->have, buf + pos, n);
            h->have += n;
            pos += n;
            if (h->have == RTMP_HANDSHAKE_SIZE) {
                reply(h, out);
                h->state = HS_C2;
                h->have = 0;
            }
            break;
        }
        case HS_C2: { /* C2 echoes S1; clients differ in how faithfully, so it is not checked */
            size_t n = MIN(len - pos, RTMP_HANDSHAKE_SIZE - h->have);
            h->have += n;
            pos += n;
            if (h->have == RTMP_HANDSHAKE_SIZE) h->state = HS_DONE;
            break;
        }
        }
    }
    *consumed = pos;
    return SL_OK;
}

void rtmp_handshake_client_c1(uint8_t c1[RTMP_HANDSHAKE_SIZE])
{
    uint8_t key[30];
    memcpy(key, player_text, 30);
    random_fill(c1, RTMP_HANDSHAKE_SIZE);
    memset(c1, 0, 4);
    c1[4] = 9, c1[5] = 0, c1[6] = 124, c1[7] = 2; /* the version Flash Player 9 sends */
    size_t off = digest_offset(c1, 0);
    block_digest(c1, off, key, sizeof key, c1 + off);
}
