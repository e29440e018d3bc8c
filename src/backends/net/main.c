/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-net: the vhost-user-net backend, a process of its own: a userspace switch
 * between VM ports (one vhost-user-net connection each, listening or inherited) and
 * tap uplinks to the host. One thread serves everything in one poll() loop; the switch
 * itself (forwarding, backpressure, offloads) is in switch.h. It serves many frontends
 * at once, so of the small backends' skeleton (backends/common/backend_prog.h) it
 * takes the helpers, not the one-frontend serving loop.
 */
#include "backends/common/backend_prog.h"
#include "backends/net/switch.h"
#include "backends/net/tap.h"
#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define PROG "bulkhead-net"

static const char usage[] =
    "usage: bulkhead-net [--mode switch|p2p] [--port PATH]... [--fd N]... [--tap IFNAME]...\n"
    "                    [--queue-size N] [--queue-pairs N] [--poll MICROSECONDS]\n"
    "                    [--log-level error|warn|info|debug|trace] [--sandbox[=kill|trap]]\n"
    "                    [--sched batch|normal]\n"
    "\n"
    "A switch between VM ports (vhost-user-net) and tap uplinks; ports are numbered in\n"
    "command-line order, from 0.\n"
    "  --mode MODE     switch: learn MAC addresses, flood unknown and group traffic\n"
    "                  (default); p2p: exactly two ports, every frame to the other one\n"
    "  --port PATH     a VM port listening on a unix socket; one frontend at a time, the\n"
    "                  next one is accepted when it leaves\n"
    "  --fd N          a VM port on an inherited, connected socket; gone when it closes\n"
    "  --tap IFNAME    an uplink: the tap IFNAME (created if it does not exist and we may)\n"
    "  --queue-size N  the Queue Size the frontends are expected to use, a power of two\n"
    "                  from 2 to 32768 (default 256); other sizes work too\n"
    "  --queue-pairs N each VM port's device has N receive/transmit queue pairs, 1 to 32\n"
    "                  (default 1); the frontend chooses how many the guest uses\n"
    "  --poll US       after work, keep polling the rings for US microseconds before\n"
    "                  sleeping, with the frontends' kicks off (default 50; 0: never)\n"
    "  --sandbox[=M]   once the ports are open, allow only the system calls the switch\n"
    "                  serves with (docs/security.md); any other kills the process\n"
    "                  (SIGSYS), or with trap names the call and exits with status 159\n"
    "SIGTERM or SIGINT stops; SIGUSR1 logs every port's counters (at info level).\n"
    "Exit status: 0 stopped by a signal, or every --fd connection closed (when there is\n"
    "             no --port); 1 failure (a protocol error on an --fd connection, set-up);\n"
    "             2 bad usage or input.\n";

/** A port as given on the command line. */
struct port_arg {
    enum { ARG_PORT, ARG_FD, ARG_TAP } kind; /**< Which option. */
    const char *value;                       /**< Its argument. */
    int fd;                                  /**< --fd: the descriptor. */
    bool bound;                              /**< --port: we created the socket file. */
};

/** The command line, checked for form: files and descriptors are checked when used. */
struct options {
    enum net_mode mode;                   /**< --mode. */
    struct port_arg ports[NET_MAX_PORTS]; /**< --port, --fd and --tap, in order. */
    unsigned nr_ports;                    /**< Entries of @c ports. */
    uint64_t queue_size;                  /**< --queue-size. */
    uint64_t queue_pairs;                 /**< --queue-pairs. */
    uint64_t poll_us;                     /**< --poll. */
    enum log_level log_level;             /**< --log-level. */
    enum sandbox_seccomp_mode sandbox;    /**< --sandbox. */
    enum host_sched sched;                /**< --sched (memset: batch). */
};

static int add_port(struct options *o, int kind, const char *value, int fd)
{
    if (o->nr_ports >= NET_MAX_PORTS)
        return backend_usage_error(PROG, "too many ports (at most %u)", NET_MAX_PORTS);
    o->ports[o->nr_ports++] = (struct port_arg){.kind = kind, .value = value, .fd = fd};
    return -1;
}

/* Returns -1 to run, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_MODE = 256,
        OPT_PORT,
        OPT_FD,
        OPT_TAP,
        OPT_QUEUE_SIZE,
        OPT_QUEUE_PAIRS,
        OPT_POLL,
        OPT_LOG_LEVEL,
        OPT_SANDBOX,
        OPT_SCHED,
        OPT_HELP,
    };
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, OPT_MODE},
        {"port", required_argument, NULL, OPT_PORT},
        {"fd", required_argument, NULL, OPT_FD},
        {"tap", required_argument, NULL, OPT_TAP},
        {"queue-size", required_argument, NULL, OPT_QUEUE_SIZE},
        {"queue-pairs", required_argument, NULL, OPT_QUEUE_PAIRS},
        {"poll", required_argument, NULL, OPT_POLL},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"sandbox", optional_argument, NULL, OPT_SANDBOX},
        {"sched", required_argument, NULL, OPT_SCHED},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->mode = NET_MODE_SWITCH;
    o->queue_size = NET_DEFAULT_QUEUE_SIZE;
    o->queue_pairs = 1;
    o->poll_us = NET_DEFAULT_POLL_US;
    o->log_level = LOG_WARN;
    uint64_t v;
    int st;
    opterr = 0; /* our own one-line messages */
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, "+:", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case OPT_MODE:
            if (strcmp(optarg, "switch") == 0)
                o->mode = NET_MODE_SWITCH;
            else if (strcmp(optarg, "p2p") == 0)
                o->mode = NET_MODE_P2P;
            else
                return backend_usage_error(PROG, "--mode: '%s' is neither switch nor p2p", optarg);
            break;
        case OPT_PORT:
            if (optarg[0] == '\0')
                return backend_usage_error(PROG, "--port: empty path");
            if ((st = add_port(o, ARG_PORT, optarg, -1)) >= 0)
                return st;
            break;
        case OPT_FD:
            if (backend_parse_u64(optarg, 0, INT_MAX, &v) < 0)
                return backend_usage_error(PROG, "--fd: '%s' is not a descriptor number", optarg);
            for (unsigned i = 0; i < o->nr_ports; i++) {
                if (o->ports[i].kind == ARG_FD && o->ports[i].fd == (int)v)
                    return backend_usage_error(PROG, "--fd %d is given twice", (int)v);
            }
            if ((st = add_port(o, ARG_FD, optarg, (int)v)) >= 0)
                return st;
            break;
        case OPT_TAP:
            if ((st = add_port(o, ARG_TAP, optarg, -1)) >= 0)
                return st;
            break;
        case OPT_QUEUE_SIZE:
            if (backend_parse_u64(optarg, 2, 32768, &v) < 0 || (v & (v - 1)) != 0)
                return backend_usage_error(
                    PROG, "--queue-size: '%s' is not a power of two from 2 to 32768", optarg);
            o->queue_size = v;
            break;
        case OPT_QUEUE_PAIRS:
            if (backend_parse_u64(optarg, 1, NET_MAX_QUEUE_PAIRS, &o->queue_pairs) < 0)
                return backend_usage_error(PROG, "--queue-pairs: '%s' is not a number from 1 to %u",
                                           optarg, NET_MAX_QUEUE_PAIRS);
            break;
        case OPT_POLL:
            if (backend_parse_u64(optarg, 0, NET_MAX_POLL_US, &o->poll_us) < 0)
                return backend_usage_error(
                    PROG, "--poll: '%s' is not a number of microseconds from 0 to %u", optarg,
                    NET_MAX_POLL_US);
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &o->log_level) < 0)
                return backend_usage_error(PROG, "--log-level: unknown level '%s'", optarg);
            break;
        case OPT_SANDBOX:
            if (sandbox_seccomp_parse(optarg, &o->sandbox) < 0)
                return backend_usage_error(PROG, "--sandbox: '%s' is neither kill nor trap",
                                           optarg);
            break;
        case OPT_SCHED:
            if (host_sched_parse(optarg, &o->sched) < 0)
                return backend_usage_error(PROG, "--sched: '%s' is neither batch nor normal",
                                           optarg);
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            fputs(HOST_SCHED_HELP, stdout);
            return BACKEND_EXIT_OK;
        case ':':
            return backend_usage_error(PROG, "%s needs an argument", argv[prev]);
        default:
            return backend_usage_error(PROG, "unknown option '%s' (see --help)", argv[prev]);
        }
    }
    if (optind < argc)
        return backend_usage_error(PROG, "unexpected argument '%s' (see --help)", argv[optind]);
    if (o->nr_ports == 0)
        return backend_usage_error(PROG, "no port: give at least one --port, --fd or --tap");
    if (o->mode == NET_MODE_P2P && o->nr_ports != 2)
        return backend_usage_error(PROG, "--mode p2p needs exactly two ports, not %u", o->nr_ports);
    return -1;
}

/* Open every port, in command-line order. Returns -1 when all are up, else the status. */
static int open_ports(struct net_switch *sw, struct options *o)
{
    for (unsigned i = 0; i < o->nr_ports; i++) {
        struct port_arg *a = &o->ports[i];
        int fd = -1, st, r;
        char name[64];
        switch (a->kind) {
        case ARG_PORT:
            if ((st = backend_listen(PROG, "--port", a->value, 1, &fd)) >= 0)
                return st;
            a->bound = true;
            r = net_switch_add_vm_listen(sw, fd, a->value);
            break;
        case ARG_FD:
            if ((st = backend_check_fd(PROG, a->fd)) >= 0)
                return st;
            snprintf(name, sizeof(name), "fd %d", a->fd);
            fd = a->fd;
            r = net_switch_add_vm_fd(sw, fd, name);
            break;
        default:
            r = tap_open(a->value, &fd);
            if (r < 0)
                return backend_usage_error(PROG, "--tap %s: cannot open the tap: %s", a->value,
                                           strerror(-r));
            r = net_switch_add_tap(sw, fd, a->value);
            break;
        }
        if (r < 0) {
            close(fd);
            log_error("cannot add port %u: %s", i, strerror(-r));
            return BACKEND_EXIT_FAILURE;
        }
    }
    return -1;
}

/* Read every pending signal; true when one asks to stop. */
static bool handle_signals(int sfd, const struct net_switch *sw)
{
    struct signalfd_siginfo si;
    bool stop = false;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
            net_switch_log_stats(sw);
            continue;
        }
        log_info("signal %u: stopping", si.ssi_signo);
        stop = true;
    }
    return stop;
}

static int run(struct net_switch *sw, int sfd)
{
    static struct pollfd pfd[1 + NET_MAX_POLLFDS];
    bool busy = false;
    for (;;) {
        pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
        unsigned n = 1 + net_switch_pollfds(sw, pfd + 1, NET_MAX_POLLFDS);
        if (poll(pfd, n, busy ? 0 : net_switch_timeout_ms(sw)) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            return BACKEND_EXIT_FAILURE;
        }
        if (pfd[0].revents != 0 && handle_signals(sfd, sw))
            return BACKEND_EXIT_OK;
        net_switch_dispatch(sw, pfd + 1, n - 1);
        busy = net_switch_poll(sw);
        if (net_switch_finished(sw)) {
            log_info("every connection has ended");
            return net_switch_failed(sw) ? BACKEND_EXIT_FAILURE : BACKEND_EXIT_OK;
        }
    }
}

int main(int argc, char **argv)
{
    static struct options o;
    int st = parse_options(argc, argv, &o);
    if (st >= 0)
        return st;
    log_set_level(o.log_level);
    backend_sched_apply(o.sched);

    int sfd = backend_signalfd(true);
    if (sfd < 0) {
        log_error("signalfd: %s", strerror(-sfd));
        return BACKEND_EXIT_FAILURE;
    }

    struct net_switch *sw = malloc(sizeof(*sw));
    struct net_switch_opts so = {
        .mode = o.mode,
        .poll_us = (unsigned)o.poll_us,
        .queue_size = (unsigned)o.queue_size,
        .queue_pairs = (unsigned)o.queue_pairs,
    };
    if (sw == NULL || net_switch_init(sw, &so) < 0) {
        log_error("cannot set up: out of memory");
        free(sw);
        close(sfd);
        return BACKEND_EXIT_FAILURE;
    }
    st = open_ports(sw, &o);
    if (st < 0 && o.sandbox != SANDBOX_SECCOMP_OFF &&
        sandbox_seccomp_apply(SANDBOX_PROFILE_NET, o.sandbox) != 0)
        st = BACKEND_EXIT_FAILURE;
    if (st < 0) {
        log_info("switching between %u port%s (%s mode)", o.nr_ports, o.nr_ports == 1 ? "" : "s",
                 o.mode == NET_MODE_P2P ? "p2p" : "switch");
        st = run(sw, sfd);
        net_switch_log_stats(sw);
    }
    net_switch_destroy(sw);
    free(sw);
    for (unsigned i = 0; i < o.nr_ports; i++) {
        if (o.ports[i].bound)
            (void)unlink(o.ports[i].value);
    }
    close(sfd);
    return st;
}
