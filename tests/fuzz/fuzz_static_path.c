/* fuzz_static_path: sl_static_resolve on arbitrary paths never returns a file outside its root. */
#include "core/core.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *root;
static char base_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_root(void)
{
    nftw(base_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void make_root(void)
{
    char tmpl[] = "/tmp/silklive-fuzz-XXXXXX";
    char *base = mkdtemp(tmpl);
    if (base == NULL) abort();
    g_strlcpy(base_dir, base, sizeof base_dir);
    atexit(remove_root);
    root = g_build_filename(base, "root", NULL);
    char *sub = g_build_filename(root, "ch", NULL);
    g_mkdir_with_parents(sub, 0755);
    char *f = g_build_filename(sub, "index.m3u8", NULL);
    g_file_set_contents(f, "#EXTM3U\n", -1, NULL);
    char *out = g_build_filename(base, "secret", NULL);
    g_file_set_contents(out, "s", -1, NULL);
    char *link = g_build_filename(sub, "out.ts", NULL);
    if (symlink(out, link) != 0) abort();
    char *up = g_build_filename(root, "up", NULL);
    if (symlink("..", up) != 0) abort();
    g_free(sub);
    g_free(f);
    g_free(out);
    g_free(link);
    g_free(up);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (root == NULL) make_root();
    char *file = NULL;
    if (sl_static_resolve(root, (const char *)data, size, &file) == SL_OK) {
        char *real_root = realpath(root, NULL);
        size_t n = strlen(real_root);
        if (strncmp(file, real_root, n) != 0 || file[n] != '/') __builtin_trap();
        free(real_root);
        g_free(file);
    } else if (file != NULL) {
        __builtin_trap();
    }
    return 0;
}
