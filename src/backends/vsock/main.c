/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vsock: the vhost-user-vsock backend, a process of its own. Connects one
 * guest's virtio-vsock device to unix sockets on the host (the Firecracker and
 * cloud-hypervisor convention, conn.h), for one frontend at a time: on a unix socket
 * it listens on (the next frontend is accepted when the previous one leaves) or on a
 * connected socket inherited from the parent that started it.
 *
 * One thread serves everything through one poll(): the frontend's socket and kicks,
 * the listening socket of the host side, and every connection's host socket.
 */
#include "backends/vsock/conn.h"
#include "backends/vsock/vsock_dev.h"
#include "core/log.h"
#include "vhost/backend.h"

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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Exit statuses, documented in --help and docs/backend-vsock.md. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUN = 1,
    EXIT_USAGE = 2,
};

/* Host clients that may wait in the listener's backlog. */
#define UDS_BACKLOG 128
/* Descriptors the process needs besides one per connection. */
#define FIXED_FDS 64u

static const char usage[] =
    "usage: bulkhead-vsock --guest-cid N --uds-path PATH (--socket PATH | --fd N)\n"
    "                      [--max-connections N] [--buffer-size BYTES]\n"
    "                      [--log-level error|warn|info|debug|trace]\n"
    "\n"
    "Serves a vhost-user-vsock device (virtio-vsock) and connects the guest's stream\n"
    "sockets to unix sockets on the host:\n"
    "  guest connects to host port P  ->  connect to the unix socket PATH_P\n"
    "  host program connects to PATH and writes \"CONNECT P\\n\"  ->  guest port P;\n"
    "      it reads \"OK <host port>\\n\" once the guest accepted, then the stream\n"
    "  --guest-cid N        the guest's context ID, 3 to 4294967294\n"
    "  --uds-path PATH      base path of the host's unix sockets (listened on)\n"
    "  --socket PATH        listen for the frontend on a unix socket; one at a time,\n"
    "                       the next one is accepted when it leaves\n"
    "  --fd N               serve an already connected socket; exit when it closes\n"
    "  --max-connections N  connections at once, 1 to 4096 (default 256)\n"
    "  --buffer-size BYTES  receive buffer per connection (buf_alloc), K and M\n"
    "                       suffixes allowed, 4K to 64M (default 256K)\n"
    "SIGTERM or SIGINT exits; SIGUSR1 logs the counters (at info level).\n"
    "Exit status: 0 stopped by a signal, or the --fd connection closed; 1 failure\n"
    "             (protocol error on --fd, set-up); 2 bad usage or input.\n";

/** The command line, checked for form; paths and descriptors are checked when used. */
struct options {
    uint64_t guest_cid;       /**< --guest-cid. */
    const char *uds_path;     /**< --uds-path. */
    const char *socket_path;  /**< --socket: where to listen for the frontend, or NULL. */
    int fd;                   /**< --fd: the inherited connection, or -1. */
    unsigned max_conns;       /**< --max-connections. */
    uint32_t buf_alloc;       /**< --buffer-size. */
    enum log_level log_level; /**< --log-level. */
};

/* One line on stderr and status 2: the user's input cannot be used. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bulkhead-vsock: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* A byte count with an optional K or M (binary) suffix. */
static int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || v > max)
        return -EINVAL;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024;
    if (mul != 1)
        end++;
    if (*end != '\0' || v * mul < min || v * mul > max)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

/* Returns -1 to run, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_GUEST_CID = 256,
        OPT_UDS_PATH,
        OPT_SOCKET,
        OPT_FD,
        OPT_MAX_CONNS,
        OPT_BUFFER_SIZE,
        OPT_LOG_LEVEL,
        OPT_HELP,
    };
    static const struct option longopts[] = {
        {"guest-cid", required_argument, NULL, OPT_GUEST_CID},
        {"uds-path", required_argument, NULL, OPT_UDS_PATH},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"fd", required_argument, NULL, OPT_FD},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
        {"buffer-size", required_argument, NULL, OPT_BUFFER_SIZE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.uds_path = "",
                          .fd = -1,
                          .max_conns = VSOCK_DEFAULT_MAX_CONNS,
                          .buf_alloc = VSOCK_DEFAULT_BUF_ALLOC,
                          .log_level = LOG_WARN};
    bool have_cid = false;
    uint64_t v;
    opterr = 0; /* our own one-line messages */
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, "+:", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case OPT_GUEST_CID:
            if (parse_u64(optarg, VSOCK_MIN_GUEST_CID, VSOCK_MAX_GUEST_CID, &o->guest_cid) < 0)
                return usage_error("--guest-cid: '%s' is not a CID from %u to %u", optarg,
                                   VSOCK_MIN_GUEST_CID, VSOCK_MAX_GUEST_CID);
            have_cid = true;
            break;
        case OPT_UDS_PATH:
            o->uds_path = optarg;
            break;
        case OPT_SOCKET:
            o->socket_path = optarg;
            break;
        case OPT_FD:
            if (parse_u64(optarg, 0, INT_MAX, &v) < 0)
                return usage_error("--fd: '%s' is not a descriptor number", optarg);
            o->fd = (int)v;
            break;
        case OPT_MAX_CONNS:
            if (parse_u64(optarg, 1, VSOCK_MAX_CONNS, &v) < 0)
                return usage_error("--max-connections: '%s' is not a number from 1 to %u", optarg,
                                   VSOCK_MAX_CONNS);
            o->max_conns = (unsigned)v;
            break;
        case OPT_BUFFER_SIZE:
            if (parse_size(optarg, VSOCK_MIN_BUF_ALLOC, VSOCK_MAX_BUF_ALLOC, &v) < 0)
                return usage_error("--buffer-size: '%s' is not a size from %uK to %uM", optarg,
                                   VSOCK_MIN_BUF_ALLOC / 1024, VSOCK_MAX_BUF_ALLOC >> 20);
            o->buf_alloc = (uint32_t)v;
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &o->log_level) < 0)
                return usage_error("--log-level: unknown level '%s'", optarg);
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            return EXIT_OK;
        case ':':
            return usage_error("%s needs an argument", argv[prev]);
        default:
            return usage_error("unknown option '%s' (see --help)", argv[prev]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s' (see --help)", argv[optind]);
    if (!have_cid)
        return usage_error("--guest-cid N is required");
    if (o->uds_path[0] == '\0')
        return usage_error("--uds-path PATH is required");
    if ((o->socket_path == NULL) == (o->fd < 0))
        return usage_error("give exactly one of --socket PATH and --fd N");
    /* PATH_P for the largest port must fit a socket address. */
    struct sockaddr_un sa;
    if (strlen(o->uds_path) + sizeof("_4294967295") > sizeof(sa.sun_path))
        return usage_error("--uds-path: '%s' is longer than %zu bytes", o->uds_path,
                           sizeof(sa.sun_path) - sizeof("_4294967295"));
    return -1;
}

/* Listen on @p path, replacing a socket a previous run left behind (never another file). */
static int listen_on(const char *opt, const char *path, int backlog, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return usage_error("%s: the path '%s' is longer than %zu bytes", opt, path,
                           sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return usage_error("%s: '%s' exists and is not a socket", opt, path);
        if (unlink(path) < 0)
            return usage_error("%s: cannot remove the old socket '%s': %s", opt, path,
                               strerror(errno));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        log_error("socket: %s", strerror(errno));
        return EXIT_FAILURE_RUN;
    }
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return usage_error("%s: cannot listen on '%s': %s", opt, path, strerror(e));
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
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    return -1;
}

/* One descriptor per connection: raise the soft limit when it is too low for that. */
static void check_fd_limit(unsigned max_conns)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max_conns + FIXED_FDS;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || want < need)
        log_warn("only %llu descriptors allowed: fewer than %u connections may open",
                 (unsigned long long)(getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0),
                 max_conns);
}

/** How serving one frontend ended; decides between accepting the next and exiting. */
enum serve_end {
    SERVE_CLOSED, /**< The frontend went away. */
    SERVE_FAILED, /**< Protocol failure. */
    SERVE_SIGNAL, /**< SIGTERM/SIGINT: stop. */
};

/* True for a stop signal; SIGUSR1 logs the counters and goes on. */
static bool stop_signal(int sfd, const struct pollfd *p, const struct vsock_dev *vd)
{
    struct signalfd_siginfo si;
    if (p->revents == 0 || read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return false;
    if (si.ssi_signo == SIGUSR1) {
        vsock_conns_log_stats(&vd->conns, "SIGUSR1");
        return false;
    }
    log_info("signal %u: exiting", si.ssi_signo);
    return true;
}

/* Serve one frontend until it ends; @p sock is owned. */
static enum serve_end serve(struct vsock_dev *vd, int sock, int sfd, struct pollfd *pfd,
                            unsigned max)
{
    struct vhost_be be;
    if (vhost_be_init(&be, sock, &vd->dev) < 0) {
        close(sock);
        log_error("cannot serve the connection: bad device description");
        return SERVE_FAILED;
    }
    vsock_dev_attach(vd, &be);
    enum serve_end end = SERVE_CLOSED;
    for (;;) {
        pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
        unsigned n = 1 + vsock_dev_pollfds(vd, pfd + 1, max - 1);
        if (poll(pfd, n, vsock_dev_poll_timeout(vd)) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            end = SERVE_FAILED;
            break;
        }
        if (stop_signal(sfd, &pfd[0], vd)) {
            end = SERVE_SIGNAL;
            break;
        }
        int r = vsock_dev_dispatch(vd, pfd + 1, n - 1);
        if (r == -ECONNRESET) {
            log_info("the frontend closed the connection");
            break;
        }
        if (r < 0) {
            log_error("connection ended: %s", strerror(-r));
            end = SERVE_FAILED;
            break;
        }
    }
    vsock_dev_detach(vd); /* every connection is reset */
    return end;
}

static int run_listening(struct vsock_dev *vd, int lfd, int sfd, struct pollfd *pfd, unsigned max)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            return EXIT_FAILURE_RUN;
        }
        if (stop_signal(sfd, &p[0], vd))
            return EXIT_OK;
        if (p[1].revents == 0)
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
        if (serve(vd, c, sfd, pfd, max) == SERVE_SIGNAL)
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

    if (o.fd >= 0 && (st = check_fd(o.fd)) >= 0)
        return st;
    int lfd = -1, ufd = -1;
    if ((st = listen_on("--uds-path", o.uds_path, UDS_BACKLOG, &ufd)) >= 0)
        return st;
    if (o.socket_path != NULL && (st = listen_on("--socket", o.socket_path, 1, &lfd)) >= 0) {
        close(ufd);
        (void)unlink(o.uds_path);
        return st;
    }
    check_fd_limit(o.max_conns);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);

    struct vsock_dev *vd = calloc(1, sizeof(*vd));
    struct pollfd *pfd = NULL;
    unsigned max = 0;
    struct vsock_dev_opts dopts = {.guest_cid = o.guest_cid,
                                   .uds_path = o.uds_path,
                                   .buf_alloc = o.buf_alloc,
                                   .max_conns = o.max_conns,
                                   .listen_fd = ufd};
    if (sfd < 0 || vd == NULL) {
        log_error("cannot set up: %s", strerror(errno));
        st = EXIT_FAILURE_RUN;
    } else if (vsock_dev_init(vd, &dopts) < 0) {
        log_error("cannot set up the connection table: %s", strerror(ENOMEM));
        free(vd);
        vd = NULL;
        st = EXIT_FAILURE_RUN;
    } else if ((pfd = calloc(1 + vsock_dev_max_pollfds(vd), sizeof(*pfd))) == NULL) {
        log_error("cannot set up: %s", strerror(ENOMEM));
        st = EXIT_FAILURE_RUN;
    } else {
        max = 1 + vsock_dev_max_pollfds(vd);
        log_info("guest CID %llu, host sockets %s[_PORT], frontend on %s",
                 (unsigned long long)o.guest_cid, o.uds_path,
                 o.socket_path != NULL ? o.socket_path : "the inherited socket");
        if (lfd >= 0) {
            st = run_listening(vd, lfd, sfd, pfd, max);
        } else {
            enum serve_end end = serve(vd, o.fd, sfd, pfd, max);
            o.fd = -1; /* closed by the library */
            st = end == SERVE_FAILED ? EXIT_FAILURE_RUN : EXIT_OK;
        }
    }
    if (vd != NULL) {
        vsock_conns_log_stats(&vd->conns, "exit");
        vsock_dev_fini(vd);
        free(vd);
    }
    free(pfd);
    if (lfd >= 0) {
        close(lfd);
        (void)unlink(o.socket_path);
    }
    close(ufd);
    (void)unlink(o.uds_path);
    if (o.fd >= 0)
        close(o.fd);
    if (sfd >= 0)
        close(sfd);
    return st;
}
