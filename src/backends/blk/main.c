/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-blk: the vhost-user-blk backend, a process of its own. Serves one raw
 * image to one frontend at a time, either on a unix socket it listens on (the next
 * frontend is accepted when the previous one leaves, so a frontend can reconnect) or
 * on a connected socket inherited from the parent that started it.
 *
 * One thread serves everything: the control socket, every queue's kicks and every
 * queue's io_uring completions go through one poll() loop (blk_device.h).
 */
#include "backends/blk/blk_device.h"
#include "backends/blk/blk_engine.h"
#include "core/log.h"
#include "vhost/backend.h"
#ifdef BULKHEAD_FAULTS
#include "vhost/faults.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Exit statuses, documented in --help and the README. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUN = 1,
    EXIT_USAGE = 2,
};

static const char usage[] =
    "usage: bulkhead-blk --image PATH [--readonly] [--queues N] [--queue-size N]\n"
    "                    [--serial ID] [--poll MICROSECONDS] (--socket PATH | --fd N)\n"
    "                    [--log-level error|warn|info|debug|trace]\n"
    "\n"
    "Serves the raw image PATH as a vhost-user-blk device (virtio-blk).\n"
    "  --socket PATH   listen on a unix socket; one frontend at a time, the next one\n"
    "                  is accepted when it leaves\n"
    "  --fd N          serve an already connected socket; exit when it closes\n"
    "  --readonly      open the image read-only; the guest sees a read-only disk\n"
    "  --queues N      request queues, 1 to 64 (default 1)\n"
    "  --queue-size N  Queue Size the frontend uses, a power of two from 4 to 32768\n"
    "                  (default 128); requests may have N-2 data segments (at most 1024)\n"
    "  --serial ID     device ID, at most 20 printable ASCII characters (default: the\n"
    "                  image's file name)\n"
    "  --poll US       after work, keep polling the rings for US microseconds before\n"
    "                  sleeping, with the frontend's kicks off (default 50; 0: never)\n"
    "SIGTERM or SIGINT completes the requests in flight and exits.\n"
    "Exit status: 0 stopped by a signal, or the --fd connection closed; 1 failure\n"
    "             (protocol error on --fd, I/O set-up); 2 bad usage or input.\n";

/** The command line, checked for form only: files and descriptors are checked when used. */
struct options {
    const char *image;        /**< --image: the raw image. */
    const char *socket_path;  /**< --socket: where to listen, or NULL. */
    int fd;                   /**< --fd: the inherited connection, or -1. */
    bool read_only;           /**< --readonly. */
    unsigned queues;          /**< --queues, 1 to VHOST_BE_MAX_QUEUES. */
    unsigned queue_size;      /**< --queue-size: seg_max is this minus the two fixed segments. */
    const char *serial;       /**< --serial, or NULL for the file's name. */
    unsigned poll_us;         /**< --poll: the polling window after work, microseconds. */
    enum log_level log_level; /**< --log-level. */
};

/* One line on stderr and status 2: the user's input cannot be used. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bulkhead-blk: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

/* Returns -1 to run, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_IMAGE = 256,
        OPT_READONLY,
        OPT_QUEUES,
        OPT_QUEUE_SIZE,
        OPT_SERIAL,
        OPT_SOCKET,
        OPT_FD,
        OPT_LOG_LEVEL,
        OPT_POLL,
        OPT_HELP,
#ifdef BULKHEAD_FAULTS
        OPT_FAULT,
        OPT_FAULT_AFTER,
#endif
    };
    static const struct option longopts[] = {
        {"image", required_argument, NULL, OPT_IMAGE},
        {"readonly", no_argument, NULL, OPT_READONLY},
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"queue-size", required_argument, NULL, OPT_QUEUE_SIZE},
        {"serial", required_argument, NULL, OPT_SERIAL},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"fd", required_argument, NULL, OPT_FD},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"poll", required_argument, NULL, OPT_POLL},
        {"help", no_argument, NULL, OPT_HELP},
#ifdef BULKHEAD_FAULTS
        {"fault", required_argument, NULL, OPT_FAULT},
        {"fault-after", required_argument, NULL, OPT_FAULT_AFTER},
#endif
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.fd = -1,
                          .queues = 1,
                          .queue_size = BLK_DEVICE_DEFAULT_QUEUE_SIZE,
                          .poll_us = BLK_DEFAULT_POLL_US,
                          .log_level = LOG_WARN};
    unsigned v;
    opterr = 0; /* our own one-line messages */
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, "+:", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case OPT_IMAGE:
            o->image = optarg;
            break;
        case OPT_READONLY:
            o->read_only = true;
            break;
        case OPT_QUEUES:
            if (parse_uint(optarg, 1, VHOST_BE_MAX_QUEUES, &o->queues) < 0)
                return usage_error("--queues: '%s' is not a number from 1 to %u", optarg,
                                   VHOST_BE_MAX_QUEUES);
            break;
        case OPT_QUEUE_SIZE:
            if (parse_uint(optarg, 4, BLK_MAX_QUEUE_SIZE, &v) < 0 || (v & (v - 1)) != 0)
                return usage_error("--queue-size: '%s' is not a power of two from 4 to %u", optarg,
                                   BLK_MAX_QUEUE_SIZE);
            o->queue_size = v;
            break;
        case OPT_SERIAL:
            o->serial = optarg;
            break;
        case OPT_POLL:
            if (parse_uint(optarg, 0, BLK_MAX_POLL_US, &o->poll_us) < 0)
                return usage_error("--poll: '%s' is not a number of microseconds from 0 to %u",
                                   optarg, BLK_MAX_POLL_US);
            break;
        case OPT_SOCKET:
            o->socket_path = optarg;
            break;
        case OPT_FD:
            if (parse_uint(optarg, 0, INT_MAX, &v) < 0)
                return usage_error("--fd: '%s' is not a descriptor number", optarg);
            o->fd = (int)v;
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &o->log_level) < 0)
                return usage_error("--log-level: unknown level '%s'", optarg);
            break;
        case OPT_HELP:
            fputs(usage, stdout);
#ifdef BULKHEAD_FAULTS
            printf("\nTEST BUILD with fault injection (src/vhost/faults.h says what each fault "
                   "does):\n"
                   "  --fault KIND      misbehave this way on every connection; KIND is one of\n"
                   "                    " FAULTS_KINDS "\n"
                   "  --fault-after N   good completions per connection before a data-path "
                   "fault\n"
                   "                    (default %u)\n",
                   FAULTS_DEFAULT_AFTER);
#endif
            return EXIT_OK;
#ifdef BULKHEAD_FAULTS
        case OPT_FAULT:
            if (faults_set(optarg) < 0)
                return usage_error("--fault: unknown kind '%s' (one of %s)", optarg, FAULTS_KINDS);
            break;
        case OPT_FAULT_AFTER:
            if (parse_uint(optarg, 0, UINT_MAX, &v) < 0)
                return usage_error("--fault-after: '%s' is not a number", optarg);
            faults_set_after(v);
            break;
#endif
        case ':':
            return usage_error("%s needs an argument", argv[prev]);
        default:
            return usage_error("unknown option '%s' (see --help)", argv[prev]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s' (see --help)", argv[optind]);
    if (o->image == NULL)
        return usage_error("--image PATH is required");
    if ((o->socket_path == NULL) == (o->fd < 0))
        return usage_error("give exactly one of --socket PATH and --fd N");
    return -1;
}

/* Listen on @p path, replacing a socket a previous run left behind (never another file). */
static int listen_on(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return usage_error("--socket: the path '%s' is longer than %zu bytes", path,
                           sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return usage_error("--socket: '%s' exists and is not a socket", path);
        if (unlink(path) < 0)
            return usage_error("--socket: cannot remove the old socket '%s': %s", path,
                               strerror(errno));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("socket: %s", strerror(errno));
        return EXIT_FAILURE_RUN;
    }
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        int e = errno;
        close(fd);
        return usage_error("--socket: cannot listen on '%s': %s", path, strerror(e));
    }
    *out = fd;
    return -1;
}

/* The inherited descriptor must be a connected stream socket; nothing else speaks vhost-user. */
static int check_fd(int fd)
{
    struct stat st;
    int type = 0;
    socklen_t len = sizeof(type);
    if (fstat(fd, &st) < 0)
        return usage_error("--fd %d: %s", fd, strerror(errno));
    if (!S_ISSOCK(st.st_mode) || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        type != SOCK_STREAM)
        return usage_error("--fd %d is not a stream socket", fd);
    /* Nothing we start should inherit the frontend's connection. */
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    return -1;
}

static int open_image(const struct options *o, struct blk_image **img)
{
    uint32_t seg_max = o->queue_size - 2;
    if (seg_max > BLK_MAX_SEG_MAX)
        seg_max = BLK_MAX_SEG_MAX;
    struct blk_image_opts io = {
        .path = o->image, .read_only = o->read_only, .serial = o->serial, .seg_max = seg_max};
    int r = blk_image_open(img, &io);
    if (r == -EINVAL)
        return EXIT_USAGE; /* blk_image_open() said why, in one error line */
    if (r < 0)
        return usage_error("cannot open the image '%s'%s: %s", o->image,
                           o->read_only ? " read-only" : "", strerror(-r));
    return -1;
}

static void ignore_done(void *opaque, void *cookie, uint32_t used_len, uint8_t status)
{
    (void)opaque;
    (void)cookie;
    (void)used_len;
    (void)status;
}

/* io_uring may be disabled or limited on this host: say so at start, not at the first kick. */
static bool io_uring_works(struct blk_image *img)
{
    struct blk_engine *e;
    int r = blk_engine_create(&e, img, 1, ignore_done, NULL);
    if (r < 0) {
        log_error("cannot set up io_uring: %s", strerror(-r));
        return false;
    }
    blk_engine_destroy(e);
    return true;
}

/** How serving one connection ended; decides between accepting the next and exiting. */
enum serve_end {
    SERVE_CLOSED, /**< The frontend went away. */
    SERVE_FAILED, /**< Protocol or I/O failure. */
    SERVE_SIGNAL, /**< SIGTERM/SIGINT: stop. */
};

static bool signalled(int sfd, const struct pollfd *p)
{
    struct signalfd_siginfo si;
    if (p->revents == 0 || read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return false;
    log_info("signal %u: completing the requests in flight and exiting", si.ssi_signo);
    return true;
}

/* Serve one connection until it ends; @p sock is owned. */
static enum serve_end serve(struct blk_device *bd, int sock, int sfd)
{
    struct vhost_be be;
    if (vhost_be_init(&be, sock, &bd->dev) < 0) {
        close(sock);
        log_error("cannot serve the connection: bad device description");
        return SERVE_FAILED;
    }
    blk_device_attach(bd, &be);
    enum serve_end end = SERVE_CLOSED;
    bool polling = false;
    for (;;) {
        struct pollfd pfd[1 + VHOST_BE_MAX_POLLFDS + VHOST_BE_MAX_QUEUES];
        const unsigned max = sizeof(pfd) / sizeof(pfd[0]);
        pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
        unsigned n = 1 + vhost_be_pollfds(&be, pfd + 1, max - 1);
        n += blk_device_pollfds(bd, pfd + n, max - n);
        if (poll(pfd, n, polling ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            end = SERVE_FAILED;
            break;
        }
        if (signalled(sfd, &pfd[0])) {
            end = SERVE_SIGNAL;
            break;
        }
        int r = blk_device_dispatch(bd, pfd + 1, n - 1);
        if (r == -ECONNRESET) {
            log_info("the frontend closed the connection");
            break;
        }
        if (r < 0) {
            log_error("connection ended: %s", strerror(-r));
            end = SERVE_FAILED;
            break;
        }
        polling = blk_device_poll(bd);
    }
    blk_device_detach(bd); /* completes what is in flight first */
    return end;
}

static int run_listening(struct blk_device *bd, int lfd, int sfd)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            return EXIT_FAILURE_RUN;
        }
        if (signalled(sfd, &pfd[0]))
            return EXIT_OK;
        if (pfd[1].revents == 0)
            continue;
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            /* The peer may have given up already; anything else will repeat, so pace it. */
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                log_warn("accept: %s", strerror(errno));
                usleep(100 * 1000);
            }
            continue;
        }
        log_info("frontend connected");
        if (serve(bd, c, sfd) == SERVE_SIGNAL)
            return EXIT_OK;
    }
}

int main(int argc, char **argv)
{
    struct options o;
    int st = parse_options(argc, argv, &o);
    if (st >= 0)
        return st;
    log_set_level(o.log_level);

    int lfd = -1;
    if (o.fd >= 0 && (st = check_fd(o.fd)) >= 0)
        return st;
    struct blk_image *img;
    if ((st = open_image(&o, &img)) >= 0)
        return st;
    if (o.socket_path != NULL && (st = listen_on(o.socket_path, &lfd)) >= 0) {
        blk_image_close(img);
        return st;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);

    struct blk_device *bd = malloc(sizeof(*bd));
    struct blk_device_opts dopts = {
        .nr_queues = o.queues, .queue_size = o.queue_size, .poll_us = o.poll_us};
    if (sfd < 0 || bd == NULL) {
        log_error("cannot set up: %s", strerror(errno));
        st = EXIT_FAILURE_RUN;
    } else if (blk_device_init(bd, img, &dopts) < 0 || !io_uring_works(img)) {
        st = EXIT_FAILURE_RUN;
    } else {
        log_info("serving %s (%llu sectors%s, %u queue%s) on %s", o.image,
                 (unsigned long long)blk_image_capacity(img), o.read_only ? ", read-only" : "",
                 o.queues, o.queues == 1 ? "" : "s",
                 o.socket_path != NULL ? o.socket_path : "the inherited socket");
        if (lfd >= 0) {
            st = run_listening(bd, lfd, sfd);
        } else {
            enum serve_end end = serve(bd, o.fd, sfd);
            o.fd = -1; /* closed by the library */
            st = end == SERVE_FAILED ? EXIT_FAILURE_RUN : EXIT_OK;
        }
    }
    if (lfd >= 0) {
        close(lfd);
        (void)unlink(o.socket_path);
    }
    if (o.fd >= 0)
        close(o.fd);
    if (sfd >= 0)
        close(sfd);
    free(bd);
    blk_image_close(img);
    return st;
}
