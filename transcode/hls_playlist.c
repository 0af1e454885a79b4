/* hls_playlist: an HLS media playlist (RFC 8216): a live sliding window of segments, or a
 * broadcast's whole recording, with program-date-time on each, discontinuities across
 * reconnects and rebuilt pipelines, and the end marker. */
#include "internal.h"

#include <math.h>
#include <string.h>

void hls_playlist_init(struct hls_playlist *p, int window, int target_s)
{
    memset(p, 0, sizeof *p);
    g_queue_init(&p->segments);
    g_queue_init(&p->retired);
    p->recording = window <= 0;
    p->window = p->recording ? G_MAXINT : MAX(window, 3);
    p->target_s = MAX(target_s, 1);
}

static void segment_free(gpointer data)
{
    struct hls_segment *s = data;
    g_free(s->uri);
    g_free(s);
}

void hls_playlist_clear(struct hls_playlist *p)
{
    g_queue_clear_full(&p->segments, segment_free);
    g_queue_clear_full(&p->retired, g_free);
}

int64_t hls_playlist_next_seq(const struct hls_playlist *p)
{
    return p->media_seq + (int64_t)p->segments.length;
}

char *hls_playlist_append(struct hls_playlist *p, const char *uri, double duration, int64_t pdt_ms)
{
    struct hls_segment *s = g_new0(struct hls_segment, 1);
    s->uri = g_strdup(uri);
    s->duration = duration;
    s->pdt_ms = pdt_ms;
    s->discontinuity = p->pending_disc && p->segments.length > 0;
    p->pending_disc = FALSE;
    g_queue_push_tail(&p->segments, s);
    /* the target must cover every segment's rounded duration (RFC 8216 4.3.3.1) */
    int rounded = (int)lround(duration);
    if (rounded > p->target_s) p->target_s = rounded;
    while ((int)p->segments.length > p->window) {
        struct hls_segment *old = g_queue_pop_head(&p->segments);
        p->media_seq++;
        struct hls_segment *next = g_queue_peek_head(&p->segments);
        if (next && next->discontinuity) {
            /* the tag leaves with the gap it marked; the sequence keeps the count */
            p->disc_seq++;
            next->discontinuity = FALSE;
        }
        g_queue_push_tail(&p->retired, old->uri);
        old->uri = NULL;
        segment_free(old);
    }
    /* a player that loaded the playlist just before the slide may still fetch them */
    if ((int)p->retired.length > p->window) return g_queue_pop_head(&p->retired);
    return NULL;
}

void hls_playlist_discontinuity(struct hls_playlist *p)
{
    p->pending_disc = TRUE;
}

void hls_playlist_end(struct hls_playlist *p)
{
    p->ended = TRUE;
}

static void put_pdt(GString *out, int64_t ms)
{
    GDateTime *t = g_date_time_new_from_unix_utc(ms / 1000);
    if (t == NULL) return;
    char *text = g_date_time_format(t, "%Y-%m-%dT%H:%M:%S");
    g_string_append_printf(out, "#EXT-X-PROGRAM-DATE-TIME:%s.%03dZ\n", text, (int)(ms % 1000));
    g_free(text);
    g_date_time_unref(t);
}

GString *hls_playlist_render(const struct hls_playlist *p)
{
    GString *out = g_string_sized_new(512);
    g_string_append_printf(out,
                           "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n"
                           "#EXT-X-MEDIA-SEQUENCE:%" G_GINT64_FORMAT "\n",
                           p->target_s, p->media_seq);
    /* a recording only grows (EVENT) and, once ended, is a VOD a player may seek all of */
    if (p->recording)
        g_string_append(out,
                        p->ended ? "#EXT-X-PLAYLIST-TYPE:VOD\n" : "#EXT-X-PLAYLIST-TYPE:EVENT\n");
    if (p->disc_seq > 0)
        g_string_append_printf(out, "#EXT-X-DISCONTINUITY-SEQUENCE:%" G_GINT64_FORMAT "\n",
                               p->disc_seq);
    for (GList *l = p->segments.head; l; l = l->next) {
        const struct hls_segment *s = l->data;
        if (s->discontinuity) g_string_append(out, "#EXT-X-DISCONTINUITY\n");
        put_pdt(out, s->pdt_ms);
        g_string_append_printf(out, "#EXTINF:%.3f,\n%s\n", s->duration, s->uri);
    }
    if (p->ended) g_string_append(out, "#EXT-X-ENDLIST\n");
    return out;
}

int hls_write_atomic(const char *path, const char *text, size_t len, GError **err)
{
    /* CONSISTENT: temp file and rename, without the fsync that DURABLE would add per segment */
    return g_file_set_contents_full(path, text, (gssize)len, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                    err)
               ? SL_OK
               : SL_ERR;
}

void hls_write_text(const char *channel, const char *dir, const char *name, GString *text)
{
    char *path = g_build_filename(dir, name, NULL);
    GError *e = NULL;
    if (hls_write_atomic(path, text->str, text->len, &e) != SL_OK) {
        g_warning("channel %s: cannot write %s: %s", channel, path, e->message);
        g_error_free(e);
    }
    g_free(path);
    g_string_free(text, TRUE);
}
