/* static: maps URL paths below a mount (web client, HLS media) onto files inside one root,
 * refusing every way out of it: "..", absolute paths, NUL bytes and symlinks that leave it. */
#include "core.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATIC_MAX_PATH 1024

int sl_static_resolve(const char *root, const char *rel, size_t len, char **out)
{
    *out = NULL;
    if (len == 0 || len > STATIC_MAX_PATH) return len == 0 ? SL_ERR : SL_EPROTO;
    if (memchr(rel, '\0', len) || memchr(rel, '\\', len) || rel[0] == '/') return SL_EPROTO;
    /* Every segment must be a plain name: no "", ".", ".." (lws may already have folded some). */
    const char *seg = rel, *end = rel + len;
    gboolean hidden = FALSE;
    while (seg <= end) {
        const char *slash = memchr(seg, '/', (size_t)(end - seg));
        const char *seg_end = slash ? slash : end;
        size_t n = (size_t)(seg_end - seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return SL_EPROTO;
        if (seg[0] == '.') hidden = TRUE; /* dotfiles (.git, .env) are never served */
        if (slash == NULL) break;
        seg = slash + 1;
    }

    if (hidden) return SL_ERR;

    char root_real[PATH_MAX], file_real[PATH_MAX];
    if (realpath(root, root_real) == NULL) return SL_ERR;
    char *joined = g_build_filename(root_real, NULL);
    char *candidate = g_strdup_printf("%s/%.*s", joined, (int)len, rel);
    g_free(joined);
    char *resolved = realpath(candidate, file_real);
    g_free(candidate);
    if (resolved == NULL) return SL_ERR;
    size_t rlen = strlen(root_real);
    /* A symlink may point anywhere; only what resolves strictly below the root is served. */
    if (strncmp(file_real, root_real, rlen) != 0 || (rlen > 1 && file_real[rlen] != '/'))
        return SL_ERR;
    struct stat st;
    if (stat(file_real, &st) != 0 || !S_ISREG(st.st_mode)) return SL_ERR;
    *out = g_strdup(file_real);
    return SL_OK;
}

const char *sl_static_mime(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
        {".m3u8", "application/vnd.apple.mpegurl"},
        {".ts", "video/mp2t"},
        {".m4s", "video/iso.segment"},
        {".mp4", "video/mp4"},
    };
    const char *dot = strrchr(path, '.');
    if (dot && strchr(dot, '/') == NULL) {
        for (size_t i = 0; i < G_N_ELEMENTS(types); i++)
            if (g_ascii_strcasecmp(dot, types[i].ext) == 0) return types[i].type;
    }
    return "application/octet-stream";
}
