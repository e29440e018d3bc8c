/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vsock: the vhost-user-vsock backend, a process of its own. Connects one
 * guest's virtio-vsock device to unix sockets on the host (the Firecracker and
 * cloud-hypervisor convention, conn.h), for one frontend at a time: on a unix socket
 * it listens on (the next frontend is accepted when the previous one leaves) or on a
 * connected socket inherited from the parent that started it.
 *
 * One thread serves everything through one poll() (backends/common/backend_prog.h):
 * the frontend's socket and kicks, the listening socket of the host side, and every
 * connection's host socket. The host side's listener exists between frontends too
 * but is polled only while one is attached, so host clients wait in its backlog.
 */
#include "backends/common/backend_prog.h"
#include "backends/vsock/conn.h"
#include "backends/vsock/vsock_dev.h"
#include "core/log.h"
#include "vhost/backend.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#define PROG "bulkhead-vsock"

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

/** The program's own options, checked for form; paths are checked when used. */
struct options {
    uint64_t guest_cid;   /**< --guest-cid. */
    bool have_cid;        /**< --guest-cid was given. */
    const char *uds_path; /**< --uds-path. */
    unsigned max_conns;   /**< --max-connections. */
    uint32_t buf_alloc;   /**< --buffer-size. */
};

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

enum {
    OPT_GUEST_CID = BACKEND_OPT_FIRST,
    OPT_UDS_PATH,
    OPT_MAX_CONNS,
    OPT_BUFFER_SIZE,
};

static int option(void *ctx, int val, const char *arg)
{
    struct options *o = ctx;
    uint64_t v;
    switch (val) {
    case OPT_GUEST_CID:
        if (backend_parse_u64(arg, VSOCK_MIN_GUEST_CID, VSOCK_MAX_GUEST_CID, &o->guest_cid) < 0)
            return backend_usage_error(PROG, "--guest-cid: '%s' is not a CID from %u to %u", arg,
                                       VSOCK_MIN_GUEST_CID, VSOCK_MAX_GUEST_CID);
        o->have_cid = true;
        return -1;
    case OPT_UDS_PATH:
        o->uds_path = arg;
        return -1;
    case OPT_MAX_CONNS:
        if (backend_parse_u64(arg, 1, VSOCK_MAX_CONNS, &v) < 0)
            return backend_usage_error(PROG, "--max-connections: '%s' is not a number from 1 to %u",
                                       arg, VSOCK_MAX_CONNS);
        o->max_conns = (unsigned)v;
        return -1;
    default:
        if (parse_size(arg, VSOCK_MIN_BUF_ALLOC, VSOCK_MAX_BUF_ALLOC, &v) < 0)
            return backend_usage_error(PROG, "--buffer-size: '%s' is not a size from %uK to %uM",
                                       arg, VSOCK_MIN_BUF_ALLOC / 1024, VSOCK_MAX_BUF_ALLOC >> 20);
        o->buf_alloc = (uint32_t)v;
        return -1;
    }
}

static int check(void *ctx)
{
    const struct options *o = ctx;
    if (!o->have_cid)
        return backend_usage_error(PROG, "--guest-cid N is required");
    if (o->uds_path[0] == '\0')
        return backend_usage_error(PROG, "--uds-path PATH is required");
    return -1;
}

/* Returns -1 to run, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o, struct backend_cli *cli)
{
    static const struct option longopts[] = {
        {"guest-cid", required_argument, NULL, OPT_GUEST_CID},
        {"uds-path", required_argument, NULL, OPT_UDS_PATH},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
        {"buffer-size", required_argument, NULL, OPT_BUFFER_SIZE},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){
        .uds_path = "", .max_conns = VSOCK_DEFAULT_MAX_CONNS, .buf_alloc = VSOCK_DEFAULT_BUF_ALLOC};
    const struct backend_cli_spec spec = {.prog = PROG,
                                          .usage = usage,
                                          .options = longopts,
                                          .option = option,
                                          .check = check,
                                          .ctx = o,
                                          .profile = SANDBOX_PROFILE_VSOCK};
    int st = backend_cli_parse(argc, argv, &spec, cli);
    if (st >= 0)
        return st;
    /* PATH_P for the largest port must fit a socket address. */
    struct sockaddr_un sa;
    if (strlen(o->uds_path) + sizeof("_4294967295") > sizeof(sa.sun_path))
        return backend_usage_error(PROG, "--uds-path: '%s' is longer than %zu bytes", o->uds_path,
                                   sizeof(sa.sun_path) - sizeof("_4294967295"));
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

static void attach(void *opaque, struct vhost_be *be)
{
    vsock_dev_attach(opaque, be);
}

static void detach(void *opaque, struct vhost_be *be)
{
    (void)be;
    vsock_dev_detach(opaque); /* every connection is reset */
}

/* Between frontends nothing is polled: host clients wait in the listener's backlog. */
static unsigned pollfds(void *opaque, struct vhost_be *be, struct pollfd *pfd, unsigned max)
{
    return be != NULL ? vsock_dev_pollfds(opaque, pfd, max) : 0;
}

static int dispatch(void *opaque, struct vhost_be *be, const struct pollfd *pfd, unsigned n)
{
    (void)be;
    return vsock_dev_dispatch(opaque, pfd, n);
}

static int timeout(void *opaque, struct vhost_be *be)
{
    return be != NULL ? vsock_dev_poll_timeout(opaque) : -1;
}

/* True for a stop signal; SIGUSR1 logs the counters and goes on. */
static bool stop_signal(void *opaque, uint32_t signo)
{
    const struct vsock_dev *vd = opaque;
    if (signo == SIGUSR1) {
        vsock_conns_log_stats(&vd->conns, "SIGUSR1");
        return false;
    }
    log_info("signal %u: exiting", signo);
    return true;
}

int main(int argc, char **argv)
{
    struct options o;
    struct backend_cli cli;
    int st = parse_options(argc, argv, &o, &cli);
    if (st >= 0)
        return st;

    if (cli.fd >= 0 && (st = backend_check_fd(PROG, cli.fd)) >= 0)
        return st;
    int lfd = -1, ufd = -1;
    if ((st = backend_listen(PROG, "--uds-path", o.uds_path, UDS_BACKLOG, &ufd)) >= 0)
        return st;
    if (cli.socket_path != NULL &&
        (st = backend_listen(PROG, "--socket", cli.socket_path, 1, &lfd)) >= 0) {
        close(ufd);
        (void)unlink(o.uds_path);
        return st;
    }
    check_fd_limit(o.max_conns);

    int sfd = backend_signalfd(true);
    struct vsock_dev *vd = calloc(1, sizeof(*vd));
    struct vsock_dev_opts dopts = {.guest_cid = o.guest_cid,
                                   .uds_path = o.uds_path,
                                   .buf_alloc = o.buf_alloc,
                                   .max_conns = o.max_conns,
                                   .listen_fd = ufd};
    if (sfd < 0 || vd == NULL) {
        log_error("cannot set up: %s", strerror(sfd < 0 ? -sfd : ENOMEM));
        st = BACKEND_EXIT_FAILURE;
    } else if (vsock_dev_init(vd, &dopts) < 0) {
        log_error("cannot set up the connection table: %s", strerror(ENOMEM));
        free(vd);
        vd = NULL;
        st = BACKEND_EXIT_FAILURE;
    } else if ((st = backend_sandbox(&cli)) >= 0) {
        /* the filter could not be loaded (logged) */
    } else {
        log_info("guest CID %llu, host sockets %s[_PORT], frontend on %s",
                 (unsigned long long)o.guest_cid, o.uds_path,
                 cli.socket_path != NULL ? cli.socket_path : "the inherited socket");
        const struct backend_hooks hooks = {.opaque = vd,
                                            .attach = attach,
                                            .detach = detach,
                                            .pollfds = pollfds,
                                            .dispatch = dispatch,
                                            .timeout = timeout,
                                            .signal = stop_signal,
                                            .with_library = true,
                                            .max_pollfds = vsock_dev_max_pollfds(vd)};
        st = backend_serve(lfd, cli.fd, sfd, &vd->dev, &hooks);
        cli.fd = -1; /* closed by the library */
    }
    if (vd != NULL) {
        vsock_conns_log_stats(&vd->conns, "exit");
        vsock_dev_fini(vd);
        free(vd);
    }
    if (lfd >= 0) {
        close(lfd);
        (void)unlink(cli.socket_path);
    }
    close(ufd);
    (void)unlink(o.uds_path);
    if (cli.fd >= 0)
        close(cli.fd);
    if (sfd >= 0)
        close(sfd);
    return st;
}
