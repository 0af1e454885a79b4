/* fanout: load generator for chat fan-out. N subscribers on one room and an open-loop publisher
 * sending R messages/s over P connections (chatters; 4 by default), each carrying its send time;
 * prints deliveries/s and the delivery latency percentiles. Speaks to silklive (/ws, silklive.v1,
 * join + chat) or to a plain broadcast server (--plain: every text frame sent is relayed to every
 * client), over epoll, one thread. Also holds idle connections for the RSS-per-connection figure
 * (--idle). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF_MAX   (1 << 20)
#define HIST_US   2000000 /* latencies above 2 s land in the last bucket */
#define HIST_STEP 10      /* µs per bucket */

struct conn {
    int fd;
    int upgraded, joined, publisher;
    size_t len;
    uint8_t *buf; /* BUF_MAX */
};

static int port, plain, nsubs, rate, seconds, idle_mode, npubs = 4;
static const char *channel = "b1", *token = "";
static uint64_t hist[HIST_US / HIST_STEP + 1];
static uint64_t deliveries, sent, ready, last_delivery_us;

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue; /* small sends; spin briefly */
        if (w <= 0) die("send");
        b += w;
        n -= (size_t)w;
    }
}

/* A masked client text frame (RFC 6455 5.3; the mask may be constant for a benchmark). */
static void send_text(int fd, const char *text)
{
    size_t len = strlen(text);
    uint8_t h[8 + 4096];
    size_t hn = 0;
    h[hn++] = 0x81;
    if (len < 126) {
        h[hn++] = (uint8_t)(0x80 | len);
    } else {
        h[hn++] = 0x80 | 126;
        h[hn++] = (uint8_t)(len >> 8);
        h[hn++] = (uint8_t)len;
    }
    static const uint8_t mask[4] = {1, 2, 3, 4};
    memcpy(h + hn, mask, 4);
    hn += 4;
    for (size_t i = 0; i < len; i++)
        h[hn + i] = (uint8_t)text[i] ^ mask[i % 4];
    send_all(fd, h, hn + len);
}

static struct conn *open_conn(int ep, const char *ip, int publisher)
{
    struct conn *c = calloc(1, sizeof *c);
    c->publisher = publisher;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (ip) { /* spread over 127.0.0.x for more than one port range of clients */
        struct sockaddr_in src = {.sin_family = AF_INET};
        inet_pton(AF_INET, ip, &src.sin_addr);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0) die("bind");
    }
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     plain ? "/" : "/ws", plain ? "" : "Sec-WebSocket-Protocol: silklive.v1\r\n");
    send_all(c->fd, req, (size_t)n);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->buf = malloc(idle_mode ? 4096 : BUF_MAX);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
    return c;
}

static void on_text(struct conn *c, const char *p, size_t n)
{
    if (!plain && !c->joined) {
        if (n > 17 && memcmp(p, "{\"type\":\"joined\"", 16) == 0) {
            c->joined = 1;
            ready++;
        }
        return;
    }
    if (c->publisher) return;
    const char *t = memmem(p, n, "t=", 2);
    if (t == NULL) return;
    uint64_t now = now_us(), at = strtoull(t + 2, NULL, 10), lat = now - at;
    deliveries++;
    last_delivery_us = now;
    hist[lat >= HIST_US ? HIST_US / HIST_STEP : lat / HIST_STEP]++;
}

static void on_readable(struct conn *c)
{
    size_t cap = idle_mode ? 4096 : BUF_MAX;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, cap - c->len, 0);
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) {
            fprintf(stderr, "fanout: a connection closed (%s)\n", r == 0 ? "eof" : strerror(errno));
            exit(1);
        }
        c->len += (size_t)r;
        size_t off = 0;
        if (!c->upgraded) {
            uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end == NULL) continue;
            if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
                fprintf(stderr, "fanout: upgrade refused\n");
                exit(1);
            }
            c->upgraded = 1;
            off = (size_t)(end + 4 - c->buf);
            if (plain) ready++;
            if (!plain) {
                char join[4096];
                snprintf(join, sizeof join, "{\"type\":\"join\",\"channel\":\"%s\"%s%s%s}", channel,
                         c->publisher ? ",\"token\":\"" : "", c->publisher ? token : "",
                         c->publisher ? "\"" : "");
                send_text(c->fd, join);
            }
        }
        while (c->len - off >= 2) {
            const uint8_t *p = c->buf + off;
            size_t hl = 2, pl = p[1] & 0x7f, avail = c->len - off;
            if (pl == 126) {
                if (avail < 4) break;
                pl = (size_t)p[2] << 8 | p[3];
                hl = 4;
            } else if (pl == 127) {
                if (avail < 10) break;
                pl = 0;
                for (int i = 0; i < 8; i++)
                    pl = pl << 8 | p[2 + i];
                hl = 10;
            }
            if (avail < hl + pl) break;
            if ((p[0] & 0x0f) == 1) on_text(c, (const char *)p + hl, pl);
            if ((p[0] & 0x0f) == 9) { /* ping: answer with a pong */
                uint8_t pong[6] = {0x8a, 0x80, 0, 0, 0, 0};
                send_all(c->fd, pong, sizeof pong);
            }
            off += hl + pl;
        }
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
        if (c->len == cap) {
            fprintf(stderr, "fanout: a frame larger than the buffer\n");
            exit(1);
        }
    }
}

static void pump(int ep, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++)
        if (evs[i].data.ptr) on_readable(evs[i].data.ptr);
}

static uint64_t percentile(double q)
{
    uint64_t want = (uint64_t)((double)deliveries * q), seen = 0;
    for (size_t i = 0; i <= HIST_US / HIST_STEP; i++) {
        seen += hist[i];
        if (seen > want) return i * HIST_STEP;
    }
    return HIST_US;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--subs"))
            nsubs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            rate = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--plain"))
            plain = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--idle"))
            idle_mode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--channel"))
            channel = argv[i + 1];
        else if (!strcmp(argv[i], "--token"))
            token = argv[i + 1];
        else if (!strcmp(argv[i], "--publishers"))
            npubs = atoi(argv[i + 1]);
    }
    if (port <= 0 || nsubs <= 0 || npubs <= 0 || npubs > 64) {
        fprintf(stderr, "usage: fanout --port P --subs N [--rate R --seconds S --publishers P] "
                        "[--plain 1] [--idle 1] [--channel C --token T]\n");
        return 2;
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < nsubs; i++) {
        char ip[32];
        /* 20k ports per source address, and a fresh address per run: the ports of an earlier
         * run wait in TIME_WAIT, and bind() with port 0 does not reuse them */
        snprintf(ip, sizeof ip, "127.0.%d.%d", 1 + getpid() % 250, 2 + i / 20000);
        open_conn(ep, ip, 0);
        if (i % 500 == 499) pump(ep, 0);
    }
    /* One socket is read a buffer at a time per server turn: the messages of a room come from
     * many chatters, so the offered rate is spread over several publishing connections. */
    struct conn *pubs[64];
    int np = idle_mode ? 0 : npubs;
    for (int i = 0; i < np; i++)
        pubs[i] = open_conn(ep, NULL, 1);
    uint64_t want = (uint64_t)nsubs + (plain ? 0 : (uint64_t)np);
    uint64_t t0 = now_us();
    while (ready < want && now_us() - t0 < 60000000u)
        pump(ep, 100);
    if (ready < want) {
        fprintf(stderr, "fanout: only %llu of %llu connections ready\n", (unsigned long long)ready,
                (unsigned long long)want);
        return 1;
    }
    if (idle_mode) { /* hold them until killed; tell the caller they are up */
        printf("ready %d\n", nsubs);
        fflush(stdout);
        for (;;)
            pump(ep, 1000);
    }
    for (int i = 0; i < 20; i++) /* let presence and joins settle */
        pump(ep, 50);
    deliveries = 0;
    memset(hist, 0, sizeof hist);
    /* open loop: a 1 ms timer; each tick sends what the schedule says is due by now */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {.it_interval = {0, 1000000}, .it_value = {0, 1000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    uint64_t start = now_us(), end = start + (uint64_t)seconds * 1000000u;
    char pad[201];
    memset(pad, 'x', 200);
    pad[200] = '\0';
    while (now_us() < end) {
        uint64_t due = (now_us() - start) * (uint64_t)rate / 1000000u;
        while (sent < due) {
            char msg[512];
            snprintf(msg, sizeof msg, "{\"type\":\"chat\",\"text\":\"t=%llu %s\"}",
                     (unsigned long long)now_us(), pad);
            send_text(pubs[sent % (uint64_t)np]->fd, msg);
            sent++;
        }
        uint64_t exp;
        if (read(tfd, &exp, sizeof exp) < 0) { /* not due yet */
        }
        pump(ep, 1);
    }
    uint64_t stop = now_us();
    uint64_t drain = stop + 3000000u;
    while (deliveries < sent * (uint64_t)nsubs && now_us() < drain)
        pump(ep, 10);
    /* deliveries over the time they took: a server that falls behind is still draining after
     * the publisher stops, and that time counts */
    double secs = (double)((last_delivery_us > stop ? last_delivery_us : stop) - start) / 1e6;
    printf("subs %d rate %d sent %llu deliveries %llu expected %llu deliveries_per_s %.0f "
           "p50_ms %.2f p99_ms %.2f p999_ms %.2f\n",
           nsubs, rate, (unsigned long long)sent, (unsigned long long)deliveries,
           (unsigned long long)(sent * (uint64_t)nsubs), (double)deliveries / secs,
           percentile(0.50) / 1000.0, percentile(0.99) / 1000.0, percentile(0.999) / 1000.0);
    return 0;
}
