// scgi_load: a small C SCGI load generator, the yardstick for `scgi bench`.
//
// One thread, epoll, C concurrent connections; each connection sends one
// request (a fixed SCGI netstring, as nginx would send for GET /), reads the
// answer to EOF, closes, and starts the next. Prints one JSON line:
// requests, seconds, requests/s, errors, latency percentiles (ms).
//
//   gcc -O2 -o scgi_load bench/scgi_load.c
//   ./scgi_load -c 64 -d 5 127.0.0.1:4000
//   ./scgi_load -c 64 -d 5 unix:/tmp/app.sock
//
// Built from this file by bench/direct_bench.ts where gcc is installed.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct slot {
  int fd;
  size_t sent;
  size_t received;
  int ok;
  double started;
};

static char request[2048];
static size_t request_len;
static struct sockaddr_storage target;
static socklen_t target_len;
static int target_family;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void build_request(const char *path, const char *host) {
  char block[1800];
  int n = snprintf(block, sizeof block,
                   "CONTENT_LENGTH%c0%cSCGI%c1%cREQUEST_METHOD%cGET%c"
                   "REQUEST_URI%c%s%cQUERY_STRING%c%cSERVER_PROTOCOL%cHTTP/1.1%c"
                   "SERVER_NAME%c%s%cSERVER_PORT%c80%cREMOTE_ADDR%c127.0.0.1%c"
                   "REMOTE_PORT%c40000%cHTTP_HOST%c%s%c",
                   0, 0, 0, 0, 0, 0, 0, path, 0, 0, 0, 0, 0, 0, host, 0, 0, 0,
                   0, 0, 0, 0, 0, host, 0);
  request_len = (size_t)snprintf(request, sizeof request, "%d:", n);
  memcpy(request + request_len, block, (size_t)n);
  request_len += (size_t)n;
  request[request_len++] = ',';
}

static int open_conn(struct slot *s, int ep) {
  int fd = socket(target_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  s->fd = fd;
  s->sent = 0;
  s->received = 0;
  s->ok = 0;
  s->started = now_ms();
  if (connect(fd, (struct sockaddr *)&target, target_len) < 0 &&
      errno != EINPROGRESS) {
    close(fd);
    s->fd = -1;
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP,
                           .data.ptr = s};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

int main(int argc, char **argv) {
  int conns = 10;
  double duration = 5;
  long limit = -1;
  const char *path = "/";
  int opt;
  while ((opt = getopt(argc, argv, "c:d:n:p:")) != -1) {
    if (opt == 'c') conns = atoi(optarg);
    else if (opt == 'd') duration = atof(optarg);
    else if (opt == 'n') limit = atol(optarg);
    else if (opt == 'p') path = optarg;
    else {
      fprintf(stderr, "usage: %s [-c N] [-d S] [-n N] [-p PATH] HOST:PORT|unix:PATH\n",
              argv[0]);
      return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "missing target\n");
    return 2;
  }
  const char *where = argv[optind];
  memset(&target, 0, sizeof target);
  if (strncmp(where, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)&target;
    un->sun_family = AF_UNIX;
    strncpy(un->sun_path, where + 5, sizeof un->sun_path - 1);
    target_len = sizeof *un;
    target_family = AF_UNIX;
    build_request(path, "localhost");
  } else {
    char host[256];
    const char *colon = strrchr(where, ':');
    if (!colon) {
      fprintf(stderr, "target must be HOST:PORT or unix:PATH\n");
      return 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - where), where);
    struct sockaddr_in *in = (struct sockaddr_in *)&target;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
      fprintf(stderr, "not an IPv4 address: %s\n", host);
      return 2;
    }
    target_len = sizeof *in;
    target_family = AF_INET;
    build_request(path, where);
  }

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct slot *slots = calloc((size_t)conns, sizeof *slots);
  size_t cap = 1 << 20, count = 0;
  double *latencies = malloc(cap * sizeof *latencies);
  long errors = 0, issued = 0, done = 0;
  char buf[65536];
  double start = now_ms(), stop = start + duration * 1e3;
  for (int i = 0; i < conns; i++) {
    slots[i].fd = -1;
    if (limit < 0 || issued < limit) {
      issued++;
      if (open_conn(&slots[i], ep) < 0) errors++;
    }
  }
  struct epoll_event events[256];
  int open = 0;
  for (int i = 0; i < conns; i++) open += slots[i].fd >= 0;
  while (open > 0) {
    int n = epoll_wait(ep, events, 256, 1000);
    for (int i = 0; i < n; i++) {
      struct slot *s = events[i].data.ptr;
      int finished = 0, failed = 0;
      if (s->sent < request_len && (events[i].events & EPOLLOUT)) {
        ssize_t w = write(s->fd, request + s->sent, request_len - s->sent);
        if (w > 0) s->sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN) failed = 1;
        if (s->sent == request_len) {
          struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = s};
          epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        }
      }
      if (!failed && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        while (1) {
          ssize_t r = read(s->fd, buf, sizeof buf);
          if (r > 0) {
            // Only a 2xx counts; the status line comes first in our answers.
            if (s->received == 0) s->ok = r >= 9 && memcmp(buf, "Status: 2", 9) == 0;
            s->received += (size_t)r;
            continue;
          }
          if (r == 0) finished = 1;
          else if (errno != EAGAIN) failed = 1;
          break;
        }
      }
      if (!finished && !failed) continue;
      close(s->fd);
      s->fd = -1;
      open--;
      if (finished && s->ok) {
        if (count == cap) {
          cap *= 2;
          latencies = realloc(latencies, cap * sizeof *latencies);
        }
        latencies[count++] = now_ms() - s->started;
        done++;
      } else {
        errors++;
      }
      double t = now_ms();
      if ((limit < 0 && t < stop) || (limit >= 0 && issued < limit)) {
        issued++;
        if (open_conn(s, ep) < 0) errors++;
        else open++;
      }
    }
  }
  double seconds = (now_ms() - start) / 1e3;
  qsort(latencies, count, sizeof *latencies, cmp_double);
#define AT(q) (count ? latencies[(size_t)((q) * (count - 1))] : 0)
  printf("{\"requests\":%ld,\"seconds\":%.3f,\"requestsPerSecond\":%.1f,"
         "\"errors\":%ld,\"latencyMs\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
         "\"max\":%.3f}}\n",
         done, seconds, done / seconds, errors, AT(0.5), AT(0.9), AT(0.99),
         AT(1.0));
  return done > 0 ? 0 : 1;
}
