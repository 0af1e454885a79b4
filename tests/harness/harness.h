/* harness: real servers for tests: a redis-server and silklive on free loopback ports, always
 * stopped (they die with the test process too), and a small blocking HTTP client. */
#ifndef SL_TEST_HARNESS_H
#define SL_TEST_HARNESS_H

#include <glib.h>
#include <stddef.h>
#include <sys/types.h>

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int harness_free_port(void);
/* A fresh temporary directory (g_free the path; removed by harness_rmtree). */
char *harness_tmpdir(void);
void harness_rmtree(const char *path);

struct harness_redis {
    pid_t pid;
    int port;
    char *dir; /* owned */
};
/* Start redis-server on a free port; aborts the test on failure. extra: NULL-terminated argv. */
void harness_redis_start(struct harness_redis *r, const char *const *extra);
void harness_redis_stop(struct harness_redis *r);
/* A Redis Sentinel (redis-server --sentinel) on a free port watching the primary on
 * primary_port as name; stop it with harness_redis_stop. */
void harness_sentinel_start(struct harness_redis *r, int primary_port, const char *name);
/* Kill it (SIGKILL, if still running) and start it again on the same port and dir, e.g. to
 * reload its AOF; waits for PING. extra as for harness_redis_start. */
void harness_redis_restart(struct harness_redis *r, const char *const *extra);
/* A synchronous command against it; returns the reply as text (arrays one element per line;
 * g_free) or NULL. */
char *harness_redis_cmd(int port, const char *fmt, ...);

struct harness_silklive {
    pid_t pid;
    int port;
    char *data_dir;  /* owned */
    char *media_dir; /* owned */
    char *log_path;  /* owned */
};
/* Start the built silklive with --listen on a free port and the given extra args (NULL-terminated);
 * waits for /healthz. Returns FALSE if it exited instead (its status in *exit_status). */
gboolean harness_silklive_start(struct harness_silklive *s, const char *const *args,
                                int *exit_status);
/* SIGTERM, wait up to 15 s; returns the exit status (or -1 if it had to be killed). */
int harness_silklive_stop(struct harness_silklive *s);
/* Run the silklive binary to completion; returns its exit status, stdout and stderr (g_free). */
int harness_silklive_run(const char *const *args, char **out, char **err);

struct harness_response {
    int status;
    char *headers; /* owned, raw status line and headers */
    char *body;    /* owned, NUL-terminated */
    size_t body_len;
};
/* One HTTP/1.1 request (Connection: close). headers: "Name: v\r\n"... or NULL. Returns 0 or -1. */
int harness_http(int port, const char *method, const char *path, const char *headers,
                 const char *body, size_t body_len, struct harness_response *out);
/* Raw bytes in, everything until the server closes (or 5 s) out. */
char *harness_raw(int port, const char *data, size_t len, size_t *out_len);
void harness_response_free(struct harness_response *r);
/* Value of a response header (lower-case name), g_free, or NULL. */
char *harness_header(const struct harness_response *r, const char *name);

/* An api.md call: Bearer tok and Idempotency-Key idem when not NULL, a JSON body. Returns the
 * status (-1 when no answer); *out gets the parsed body when out is not NULL (may be NULL). */
struct json_t;
int harness_api(int port, const char *method, const char *path, const char *tok, const char *idem,
                const char *body, struct json_t **out);
/* GET /api/v1/sales/{id} on port, checked (200, counts never negative, available + held +
 * sold == quantity: the invariant of api.md); the sale document (json_decref). */
struct json_t *harness_sale(int port, const char *id);
/* A valid PRC resident identity number (GB 11643) of a person named by a word. */
void harness_person_id(const char *person, char out[19]);
/* Open the payment of reservation rid through the dev provider, the buyer being the person
 * named: its status; *pid the payment id (g_free) on success, else *out the answer. */
int harness_open_payment(int port, const char *tok, const char *rid, const char *person, char **pid,
                         struct json_t **out);
/* Pay for reservation rid as the buyer with token tok would, through the dev provider
 * ([payments] dev = true): the payment (the buyer being the person named), the provider's signed
 * notification, then confirm. The first status that is not a success, else confirm's; *out the
 * last answer's body (may be NULL). */
int harness_pay(int port, const char *tok, const char *rid, const char *person,
                struct json_t **out);
/* A token signed with secret for role (an enum sl_role), sub and pavilion (or NULL). g_free. */
char *harness_token(const char *secret, int role, const char *sub, const char *pav);

/* The value of one Prometheus series line ("name" or "name{labels}") of silklive's /metrics
 * on port; -1 when the series is absent or the scrape failed. */
long long harness_metric(int port, const char *series);

/* Run a Check suite; returns the process exit status (0 when every test passed). */
struct Suite;
int harness_run_suite(struct Suite *s);

/* ffmpeg publishing a test pattern (size "WxH", fps, keyframe every gop frames, x264 preset)
 * and a tone (AAC) to url in real time for seconds; a child to waitpid (stdout discarded). */
GPid harness_ffmpeg_publish(const char *url, const char *size, int fps, int gop, const char *preset,
                            int seconds);

#endif
