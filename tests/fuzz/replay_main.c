/* replay_main: runs a fuzz driver over every file of its corpus directories, so the seeds and
 * every crash ever found stay regression tests in builds without libFuzzer. */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        GDir *d = g_dir_open(argv[i], 0, NULL);
        if (d == NULL) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        const char *name;
        while ((name = g_dir_read_name(d)) != NULL) {
            char *path = g_build_filename(argv[i], name, NULL);
            gchar *data = NULL;
            gsize len = 0;
            if (g_file_get_contents(path, &data, &len, NULL)) {
                /* an exact-size copy, so ASan sees any read past the input */
                uint8_t *copy = g_memdup2(data, len);
                LLVMFuzzerTestOneInput(copy, len);
                g_free(copy);
                files++;
            }
            g_free(data);
            g_free(path);
        }
        g_dir_close(d);
    }
    printf("replayed %d inputs\n", files);
    return files > 0 ? 0 : 1;
}
