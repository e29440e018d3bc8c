/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/common/backend_prog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* getopt values of the common options: below BACKEND_OPT_FIRST, above any character. */
enum {
    OPT_SOCKET = 0x100,
    OPT_FD,
    OPT_LOG_LEVEL,
    OPT_SANDBOX,
    OPT_SCHED,
    OPT_HELP,
};

int backend_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return BACKEND_EXIT_USAGE;
}

int backend_sandbox(const struct backend_cli *cli)
{
    if (cli->sandbox == SANDBOX_SECCOMP_OFF)
        return -1;
    return sandbox_seccomp_apply(cli->profile, cli->sandbox) == 0 ? -1 : BACKEND_EXIT_FAILURE;
}

void backend_sched_apply(enum host_sched s)
{
    int r = host_sched_apply(s);
    if (r != 0)
        log_warn("--sched: cannot set the scheduling class: %s", strerror(-r));
}

int backend_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    /* strtoull() would accept blanks, a sign and wrap "-1" to the largest value. */
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* One of --socket, --fd, --log-level, --help: -1 to go on, or an exit status. */
static int common_option(const struct backend_cli_spec *spec, struct backend_cli *cli, int c,
                         const char *arg)
{
    uint64_t v;
    switch (c) {
    case OPT_SOCKET:
        cli->socket_path = arg;
        return -1;
    case OPT_FD:
        if (backend_parse_u64(arg, 0, INT_MAX, &v) < 0)
            return backend_usage_error(spec->prog, "--fd: '%s' is not a descriptor number", arg);
        cli->fd = (int)v;
        return -1;
    case OPT_LOG_LEVEL:
        if (log_parse_level(arg, &cli->log_level) < 0)
            return backend_usage_error(spec->prog, "--log-level: unknown level '%s'", arg);
        return -1;
    case OPT_SANDBOX:
        if (spec->profile == SANDBOX_PROFILE_NONE)
            return backend_usage_error(spec->prog, "unknown option '--sandbox' (see --help)");
        if (sandbox_seccomp_parse(arg, &cli->sandbox) < 0)
            return backend_usage_error(spec->prog, "--sandbox: '%s' is neither kill nor trap", arg);
        return -1;
    case OPT_SCHED:
        if (host_sched_parse(arg, &cli->sched) < 0)
            return backend_usage_error(spec->prog, "--sched: '%s' is neither batch nor normal",
                                       arg);
        return -1;
    default:
        fputs(spec->usage, stdout);
        fputs("Common options:\n" HOST_SCHED_HELP, stdout);
        if (spec->profile != SANDBOX_PROFILE_NONE)
            fputs("  --sandbox[=kill|trap]  once set up, allow only the system calls this\n"
                  "                  program serves with (docs/security.md); any other kills\n"
                  "                  the process (SIGSYS), or with trap names the call and\n"
                  "                  exits with status 159\n",
                  stdout);
        return BACKEND_EXIT_OK;
    }
}

int backend_cli_parse(int argc, char **argv, const struct backend_cli_spec *spec,
                      struct backend_cli *cli)
{
    static const struct option common[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"fd", required_argument, NULL, OPT_FD},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"sandbox", optional_argument, NULL, OPT_SANDBOX},
        {"sched", required_argument, NULL, OPT_SCHED},
        {"help", no_argument, NULL, OPT_HELP},
    };
    const unsigned nr_common = sizeof(common) / sizeof(common[0]);
    struct option longopts[sizeof(common) / sizeof(common[0]) + BACKEND_MAX_OPTIONS + 1];
    memcpy(longopts, common, sizeof(common));
    unsigned n = nr_common;
    for (unsigned i = 0; spec->options != NULL && spec->options[i].name != NULL; i++) {
        if (i == BACKEND_MAX_OPTIONS)
            return backend_usage_error(spec->prog, "too many options (internal error)");
        longopts[n++] = spec->options[i];
    }
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    *cli = (struct backend_cli){
        .prog = spec->prog, .fd = -1, .log_level = LOG_WARN, .profile = spec->profile};
    opterr = 0; /* our own one-line messages */
    optind = 1;
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, "+:", longopts, NULL);
        if (c == -1)
            break;
        int st;
        if (c == ':')
            return backend_usage_error(spec->prog, "%s needs an argument", argv[prev]);
        if (c >= OPT_SOCKET && c <= OPT_HELP)
            st = common_option(spec, cli, c, optarg);
        else if (c >= BACKEND_OPT_FIRST && spec->option != NULL)
            st = spec->option(spec->ctx, c, optarg);
        else
            return backend_usage_error(spec->prog, "unknown option '%s' (see --help)", argv[prev]);
        if (st >= 0)
            return st;
    }
    if (optind < argc)
        return backend_usage_error(spec->prog, "unexpected argument '%s' (see --help)",
                                   argv[optind]);
    int st = spec->check != NULL ? spec->check(spec->ctx) : -1;
    if (st >= 0)
        return st;
    if ((cli->socket_path == NULL) == (cli->fd < 0))
        return backend_usage_error(spec->prog, "give exactly one of --socket PATH and --fd N");
    log_set_level(cli->log_level);
    backend_sched_apply(cli->sched);
    return -1;
}

/* Which step of listening failed, for the caller's message. */
enum listen_step {
    LISTEN_PATH,   /* too long for a socket address */
    LISTEN_STALE,  /* something is there: -EEXIST not a socket, else unlink() failed */
    LISTEN_SOCKET, /* socket() */
    LISTEN_BIND,   /* bind() or listen() */
};

static int listen_at(const char *path, int backlog, int *out, enum listen_step *step)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    *step = LISTEN_PATH;
    if (len >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, len + 1);
    struct stat st;
    *step = LISTEN_STALE;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        if (unlink(path) < 0)
            return -errno;
    }
    *step = LISTEN_SOCKET;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    *step = LISTEN_BIND;
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *out = fd;
    return 0;
}

int backend_listen_unix(const char *path, int *out)
{
    enum listen_step step;
    /* An empty path would bind in the abstract namespace: nothing a user means. */
    if (path[0] == '\0')
        return -ENAMETOOLONG;
    return listen_at(path, 1, out, &step);
}

int backend_listen(const char *prog, const char *opt, const char *path, int backlog, int *out)
{
    enum listen_step step;
    int r = listen_at(path, backlog, out, &step);
    if (r == 0)
        return -1;
    switch (step) {
    case LISTEN_PATH:
        return backend_usage_error(prog, "%s: the path '%s' is longer than %zu bytes", opt, path,
                                   sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
    case LISTEN_STALE:
        if (r == -EEXIST)
            return backend_usage_error(prog, "%s: '%s' exists and is not a socket", opt, path);
        return backend_usage_error(prog, "%s: cannot remove the old socket '%s': %s", opt, path,
                                   strerror(-r));
    case LISTEN_SOCKET:
        log_error("socket: %s", strerror(-r));
        return BACKEND_EXIT_FAILURE;
    default:
        return backend_usage_error(prog, "%s: cannot listen on '%s': %s", opt, path, strerror(-r));
    }
}

int backend_check_fd(const char *prog, int fd)
{
    struct stat st;
    int type = 0;
    socklen_t len = sizeof(type);
    if (fstat(fd, &st) < 0)
        return backend_usage_error(prog, "--fd %d: %s", fd, strerror(errno));
    if (!S_ISSOCK(st.st_mode) || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        type != SOCK_STREAM)
        return backend_usage_error(prog, "--fd %d is not a stream socket", fd);
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return backend_usage_error(prog, "--fd %d: %s", fd, strerror(errno));
    return -1;
}

int backend_signalfd(bool usr1)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (usr1)
        sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    return sfd >= 0 ? sfd : -errno;
}

static unsigned prog_max(const struct backend_hooks *h)
{
    return h->max_pollfds != 0 ? h->max_pollfds : BACKEND_MAX_PROG_POLLFDS;
}

static unsigned prog_pollfds(const struct backend_hooks *h, struct vhost_be *be, struct pollfd *pfd)
{
    if (h->pollfds == NULL)
        return 0;
    unsigned max = prog_max(h);
    unsigned n = h->pollfds(h->opaque, be, pfd, max);
    return n <= max ? n : max;
}

static int prog_dispatch(const struct backend_hooks *h, struct vhost_be *be,
                         const struct pollfd *pfd, unsigned n)
{
    if (h->dispatch == NULL || n == 0)
        return 0;
    return h->dispatch(h->opaque, be, pfd, n);
}

static int prog_timeout(const struct backend_hooks *h, struct vhost_be *be)
{
    return h->timeout != NULL ? h->timeout(h->opaque, be) : -1;
}

/*
 * Whether the stop descriptor, with @p revents from poll(), ends serving. A signalfd
 * is read, and its signal may be one that does not stop (SIGUSR1); any other
 * descriptor is left unread for the caller.
 */
static bool stop_now(const struct backend_hooks *h, int stop_fd, bool is_signalfd, short revents)
{
    if (revents == 0)
        return false;
    if (!is_signalfd)
        return true;
    struct signalfd_siginfo si;
    if (read(stop_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return false;
    if (h->signal != NULL)
        return h->signal(h->opaque, si.ssi_signo);
    log_info("signal %u: exiting", si.ssi_signo);
    return true;
}

static enum backend_end serve_connection(int sock, const struct vhost_be_device *dev,
                                         const struct backend_hooks *hooks, int stop_fd,
                                         bool is_signalfd)
{
    /* [stop] [the library's, unless the program polls them] [the program's] */
    const unsigned nlib_max = hooks->with_library ? 0 : VHOST_BE_MAX_POLLFDS;
    /* A struct vhost_be holds every ring's state: too large for a thread's stack. */
    struct vhost_be *be = malloc(sizeof(*be));
    struct pollfd *pfd = calloc(1 + nlib_max + prog_max(hooks), sizeof(*pfd));
    if (be == NULL || pfd == NULL || vhost_be_init(be, sock, dev) < 0) {
        log_error("cannot serve the connection: %s",
                  be == NULL || pfd == NULL ? strerror(ENOMEM) : "bad device description");
        free(pfd);
        free(be);
        close(sock);
        return BACKEND_END_FAILED;
    }
    if (hooks->attach != NULL)
        hooks->attach(hooks->opaque, be);
    enum backend_end end = BACKEND_END_CLOSED;
    for (;;) {
        pfd[0] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
        unsigned nlib = nlib_max != 0 ? vhost_be_pollfds(be, pfd + 1, nlib_max) : 0;
        unsigned nprog = prog_pollfds(hooks, be, pfd + 1 + nlib);
        if (poll(pfd, 1 + nlib + nprog, prog_timeout(hooks, be)) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            end = BACKEND_END_FAILED;
            break;
        }
        if (stop_now(hooks, stop_fd, is_signalfd, pfd[0].revents)) {
            end = BACKEND_END_STOP;
            break;
        }
        int r = prog_dispatch(hooks, be, pfd + 1 + nlib, nprog);
        if (r == 0 && nlib_max != 0)
            r = vhost_be_dispatch(be, pfd + 1, nlib);
        if (r == -ECONNRESET) {
            log_info("the frontend closed the connection");
            break;
        }
        if (r < 0) {
            log_error("connection ended: %s", strerror(-r));
            end = BACKEND_END_FAILED;
            break;
        }
    }
    if (hooks->detach != NULL)
        hooks->detach(hooks->opaque, be);
    vhost_be_destroy(be);
    free(be);
    free(pfd);
    return end;
}

enum backend_end backend_serve_connection(int sock, const struct vhost_be_device *dev,
                                          const struct backend_hooks *hooks, int stop_fd)
{
    return serve_connection(sock, dev, hooks, stop_fd, false);
}

/* The next frontend's connection, or -1 when there was none after all. */
static int accept_frontend(int lfd)
{
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0 || errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
        return c; /* a connection, or one that was withdrawn before we took it */
    /* Out of descriptors or memory: this repeats at once, so wait a little first. */
    log_warn("accept: %s", strerror(errno));
    usleep(100 * 1000);
    return -1;
}

/* Accept frontends one after another until a signal; the program's fds are served too. */
static int run_listening(int lfd, int sfd, const struct vhost_be_device *dev,
                         const struct backend_hooks *hooks)
{
    struct pollfd *pfd = calloc(2 + prog_max(hooks), sizeof(*pfd));
    if (pfd == NULL) {
        log_error("cannot serve: %s", strerror(ENOMEM));
        return BACKEND_EXIT_FAILURE;
    }
    int st;
    for (;;) {
        pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = lfd, .events = POLLIN};
        unsigned nprog = prog_pollfds(hooks, NULL, pfd + 2);
        if (poll(pfd, 2 + nprog, prog_timeout(hooks, NULL)) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            st = BACKEND_EXIT_FAILURE;
            break;
        }
        if (stop_now(hooks, sfd, true, pfd[0].revents)) {
            st = BACKEND_EXIT_OK;
            break;
        }
        int r = prog_dispatch(hooks, NULL, pfd + 2, nprog);
        if (r < 0) {
            log_error("%s", strerror(-r));
            st = BACKEND_EXIT_FAILURE;
            break;
        }
        int c = pfd[1].revents != 0 ? accept_frontend(lfd) : -1;
        if (c < 0)
            continue;
        log_info("frontend connected");
        if (serve_connection(c, dev, hooks, sfd, true) == BACKEND_END_STOP) {
            st = BACKEND_EXIT_OK;
            break;
        }
    }
    free(pfd);
    return st;
}

int backend_serve(int listen_fd, int conn_fd, int signal_fd, const struct vhost_be_device *dev,
                  const struct backend_hooks *hooks)
{
    if (listen_fd >= 0)
        return run_listening(listen_fd, signal_fd, dev, hooks);
    enum backend_end end = serve_connection(conn_fd, dev, hooks, signal_fd, true);
    return end == BACKEND_END_FAILED ? BACKEND_EXIT_FAILURE : BACKEND_EXIT_OK;
}

int backend_main(const struct backend_cli *cli, const struct vhost_be_device *dev,
                 const struct backend_hooks *hooks)
{
    int lfd = -1, st;
    if (cli->fd >= 0 && (st = backend_check_fd(cli->prog, cli->fd)) >= 0)
        return st;
    if (cli->socket_path != NULL) {
        int r = backend_listen_unix(cli->socket_path, &lfd);
        if (r == -EEXIST)
            return backend_usage_error(cli->prog, "--socket: '%s' exists and is not a socket",
                                       cli->socket_path);
        if (r < 0)
            return backend_usage_error(cli->prog, "--socket: cannot listen on '%s': %s",
                                       cli->socket_path, strerror(-r));
    }
    int sfd = backend_signalfd(false);
    if (sfd < 0) {
        log_error("signalfd: %s", strerror(-sfd));
        st = BACKEND_EXIT_FAILURE;
    } else if ((st = backend_sandbox(cli)) >= 0) {
        close(sfd);
    } else {
        if (lfd >= 0)
            log_info("listening on %s", cli->socket_path);
        st = backend_serve(lfd, cli->fd, sfd, dev, hooks);
        close(sfd);
    }
    if (lfd >= 0) {
        close(lfd);
        (void)unlink(cli->socket_path);
    }
    return st;
}
