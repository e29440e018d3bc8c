/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file backend_prog.h
 * @brief The skeleton every small vhost-user backend program shares: the common
 *        command-line options, the listening or inherited socket, signals, and the
 *        one poll() loop that serves a frontend next to the program's own descriptors.
 *
 * A program (bulkhead-rng, bulkhead-console) describes its device (struct
 * vhost_be_device), parses its command line with backend_cli_parse() (which knows
 * --socket, --fd, --log-level and --help and hands every other option to the
 * program), and calls backend_main(), which serves frontends until a signal or, on
 * --fd, until the frontend leaves:
 * @code
 * struct backend_cli cli;
 * int st = backend_cli_parse(argc, argv, &spec, &cli);
 * if (st >= 0)
 *     return st;                       // --help, or a usage error already printed
 * ... set the device up ...
 * st = backend_main(&cli, &dev, &hooks);
 * @endcode
 *
 * A program that must do something between its own checks and the listening (open an
 * image, listen on a second socket) takes backend_main()'s steps one by one instead:
 * backend_check_fd(), backend_listen(), backend_signalfd(), then backend_serve().
 * bulkhead-net, which serves many frontends at once and no single --socket, uses only
 * the helpers (backend_usage_error(), backend_parse_u64(), backend_listen(),
 * backend_check_fd(), backend_signalfd()).
 *
 * **One thread.** The library's descriptors (socket, kicks), the program's own (host
 * sockets, files) and SIGTERM/SIGINT (a signalfd) are served by one poll() loop. The
 * program's descriptors are polled also while no frontend is connected (its hooks then
 * get a NULL connection), so host-side clients may come and go between frontends.
 *
 * **Exit statuses** are the same for every backend program: 0 stopped by a signal or
 * the --fd connection closed; 1 a failure while running (a protocol error on --fd, a
 * set-up that failed); 2 bad usage or input, after one line `PROG: error: ...`.
 */
#ifndef BULKHEAD_BACKENDS_COMMON_BACKEND_PROG_H
#define BULKHEAD_BACKENDS_COMMON_BACKEND_PROG_H

#include "core/log.h"
#include "host/sched.h"
#include "host/seccomp.h"
#include "vhost/backend.h"

#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/** Exit status: stopped by SIGTERM/SIGINT, or the inherited connection closed. */
#define BACKEND_EXIT_OK 0
/** Exit status: failed while running (protocol error on --fd, set-up failure). */
#define BACKEND_EXIT_FAILURE 1
/** Exit status: unusable command line or input; one error line was printed. */
#define BACKEND_EXIT_USAGE 2

/**
 * Lowest getopt value a program may give its own long options; the common options
 * use values below it, so the two sets can never collide.
 */
#define BACKEND_OPT_FIRST 0x200

/** Most long options a program may add to the common ones. */
#define BACKEND_MAX_OPTIONS 16u

/** Most poll entries a program's pollfds hook may fill. */
#define BACKEND_MAX_PROG_POLLFDS 128u

/** The options every backend program has, after backend_cli_parse(). */
struct backend_cli {
    const char *prog;         /**< Program name, the prefix of every usage error line. */
    const char *socket_path;  /**< --socket: the path to listen on, or NULL. */
    int fd;                   /**< --fd: the inherited connected socket, or -1. */
    enum log_level log_level; /**< --log-level, LOG_WARN unless given. */
    /** --sandbox[=kill|trap]: the filter to apply once set up; OFF unless given. */
    enum sandbox_seccomp_mode sandbox;
    enum sandbox_profile profile; /**< The program's seccomp profile, from its spec. */
    enum host_sched sched; /**< --sched, applied by backend_cli_parse(); batch unless given. */
};

/** What a program adds to the common command line. */
struct backend_cli_spec {
    /** Program name, e.g. "bulkhead-rng". */
    const char *prog;
    /** The full --help text, printed as it is on stdout. */
    const char *usage;
    /**
     * The program's own long options, ended by an all-zero entry, at most
     * BACKEND_MAX_OPTIONS; each @c val is BACKEND_OPT_FIRST or above and @c flag NULL.
     * May be NULL.
     */
    const struct option *options;
    /**
     * Called for each of the program's options in command-line order.
     * @param ctx @c ctx below.
     * @param val the option's @c val.
     * @param arg its argument, or NULL for an option without one.
     * @return -1 to go on, or an exit status (after backend_usage_error()).
     */
    int (*option)(void *ctx, int val, const char *arg);
    /**
     * Called once every option is read, before the --socket/--fd check, so that a
     * missing required option of the program is the error reported first. May be NULL.
     * @param ctx @c ctx below.
     * @return -1 to go on, or an exit status (after backend_usage_error()).
     */
    int (*check)(void *ctx);
    /** Passed to @c option and @c check. */
    void *ctx;
    /**
     * The program's seccomp allowlist (host/seccomp.h). Anything but NONE gives the
     * program the common option --sandbox[=kill|trap], applied by backend_main() or by
     * the program's own call of backend_sandbox() once its set-up is done.
     */
    enum sandbox_profile profile;
};

/**
 * Parse the command line: the common options, and the program's through
 * @c spec->option. Checks that exactly one of --socket and --fd was given and that no
 * argument is left over. Sets the log level.
 * @param argc as main() got it.
 * @param argv as main() got it.
 * @param spec the program's options.
 * @param cli receives the common options.
 * @return -1 to run; BACKEND_EXIT_OK after --help; BACKEND_EXIT_USAGE after a usage
 *         error line (also for a bad @p spec: too many options).
 */
int backend_cli_parse(int argc, char **argv, const struct backend_cli_spec *spec,
                      struct backend_cli *cli);

/**
 * Apply the program's seccomp filter when --sandbox was given: call it after the last
 * descriptor the program needs is open (image, listening sockets, signalfd) and before
 * it serves. From then on the program can open nothing new but what its profile allows
 * (accepting and, for vsock, connecting unix sockets).
 * @param cli the parsed common options.
 * @return -1 to go on (also without --sandbox); BACKEND_EXIT_FAILURE when the filter
 *         cannot be loaded (logged).
 */
int backend_sandbox(const struct backend_cli *cli);

/**
 * Put the program's thread in the --sched class, warning (and going on) when the kernel
 * refuses: the class changes speed, never behaviour. backend_cli_parse() calls it;
 * programs with a command line of their own (bulkhead-net) call it once parsed, before
 * any other thread or child exists.
 * @param s the class.
 */
void backend_sched_apply(enum host_sched s);

/**
 * Print `PROG: error: MESSAGE` on stderr, one line.
 * @param prog program name.
 * @param fmt printf-style format of the message.
 * @return BACKEND_EXIT_USAGE, for `return backend_usage_error(...)`.
 */
int backend_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * Parse a decimal number, digits only (no sign, no blanks, no suffix).
 * @param s the text.
 * @param min smallest value accepted.
 * @param max largest value accepted.
 * @param out receives the value.
 * @return 0; -EINVAL when @p s is not such a number or out of [min, max].
 */
int backend_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/**
 * Listen on a unix stream socket at @p path (backlog 1, close-on-exec), replacing a
 * socket file a previous run left behind but never any other kind of file.
 * @param path the socket path.
 * @param out receives the listening descriptor.
 * @return 0; -ENAMETOOLONG for a path that does not fit a socket address; -EEXIST
 *         when something that is not a socket is there; another negative errno from
 *         unlink(), socket(), bind() or listen().
 */
int backend_listen_unix(const char *path, int *out);

/**
 * Listen like backend_listen_unix() (empty paths aside), saying what failed in one
 * error line naming the option: the path is too long, is not a socket, the old socket
 * cannot be removed, or cannot be listened on.
 * @param prog program name, the error line's prefix.
 * @param opt the option that gave @p path, e.g. "--socket".
 * @param path the socket path; an empty one is a socket in the abstract namespace.
 * @param backlog listen() backlog: 1 for a frontend, more for host clients.
 * @param out receives the listening descriptor (non-blocking, close-on-exec).
 * @return -1 when listening; BACKEND_EXIT_USAGE after the error line;
 *         BACKEND_EXIT_FAILURE when no socket could be made (logged).
 */
int backend_listen(const char *prog, const char *opt, const char *path, int backlog, int *out);

/**
 * Check an inherited --fd: it must be a stream socket, the only thing that speaks
 * vhost-user. It is made close-on-exec, so no process we start holds the connection.
 * @param prog program name, the error line's prefix.
 * @param fd the descriptor.
 * @return -1 when it can be served; BACKEND_EXIT_USAGE after an error line.
 */
int backend_check_fd(const char *prog, int fd);

/**
 * Block SIGTERM and SIGINT (and SIGUSR1 when @p usr1) into a signalfd, so that the
 * poll() loop sees them, and ignore SIGPIPE: a host peer that went away must be an
 * EPIPE for the write, not the end of the process.
 * @param usr1 also take SIGUSR1 (the hooks' @c signal hook gets it).
 * @return the signalfd (non-blocking, close-on-exec); a negative errno from signalfd().
 */
int backend_signalfd(bool usr1);

/**
 * What the serving loop calls besides the vhost-user library, for the program's own
 * descriptors. Every member but @c opaque is optional.
 */
struct backend_hooks {
    /** Passed to every hook. */
    void *opaque;
    /**
     * A frontend connection starts (after vhost_be_init()).
     * @param opaque @c opaque.
     * @param be the connection; valid until detach.
     */
    void (*attach)(void *opaque, struct vhost_be *be);
    /**
     * The connection ends; called before vhost_be_destroy() stops its rings.
     * @param opaque @c opaque.
     * @param be the connection.
     */
    void (*detach)(void *opaque, struct vhost_be *be);
    /**
     * Fill the program's poll entries for the next poll(), before each poll().
     * @param opaque @c opaque.
     * @param be the connection, or NULL while none is attached.
     * @param pfd room for @p max entries.
     * @param max BACKEND_MAX_PROG_POLLFDS.
     * @return entries filled.
     */
    unsigned (*pollfds)(void *opaque, struct vhost_be *be, struct pollfd *pfd, unsigned max);
    /**
     * Act on the poll() results of the entries @c pollfds filled (the same
     * entries, in the same order). Called before the library's own descriptors are
     * dispatched.
     * @param opaque @c opaque.
     * @param be the connection, or NULL while none is attached.
     * @param pfd the entries.
     * @param n their number.
     * @return 0; a negative errno ends the connection (logged, as a failure).
     */
    int (*dispatch)(void *opaque, struct vhost_be *be, const struct pollfd *pfd, unsigned n);
    /**
     * The timeout of the next poll(), asked after @c pollfds: a deadline of the
     * program's, or 0 while it busy-polls its rings after work. NULL: none.
     * @param opaque @c opaque.
     * @param be the connection, or NULL while none is attached.
     * @return milliseconds, or -1 to wait for a descriptor.
     */
    int (*timeout)(void *opaque, struct vhost_be *be);
    /**
     * A signal arrived on the signalfd of backend_main() or backend_serve() (never on
     * a plain stop descriptor). NULL: log it and stop.
     * @param opaque @c opaque.
     * @param signo SIGTERM, SIGINT, or SIGUSR1 when backend_signalfd() took it.
     * @return true to stop serving (the program then exits 0), false to go on.
     */
    bool (*signal)(void *opaque, uint32_t signo);
    /**
     * The @c pollfds and @c dispatch hooks cover the library's descriptors too:
     * @c pollfds fills vhost_be_pollfds()' entries first and @c dispatch calls
     * vhost_be_dispatch() itself, for a device that must act before the library reads a
     * control message (complete requests in flight) or after it (fill rx buffers).
     * Its @c dispatch result then also ends the connection on -ECONNRESET (closed).
     */
    bool with_library;
    /** Entries the @c pollfds hook may fill; 0 for BACKEND_MAX_PROG_POLLFDS. */
    unsigned max_pollfds;
};

/** How serving one connection ended. */
enum backend_end {
    BACKEND_END_CLOSED, /**< The frontend went away. */
    BACKEND_END_FAILED, /**< Protocol error, or a hook failed. */
    BACKEND_END_STOP,   /**< @c stop_fd became readable; it was not read. */
};

/**
 * Serve one frontend connection until it ends: vhost_be_init(), the attach hook, the
 * poll loop over @p stop_fd, the library's and the program's descriptors, then the
 * detach hook and vhost_be_destroy(). Unit tests run this in a thread.
 * @param sock the connected socket; owned (closed in every case).
 * @param dev the device; must outlive the call.
 * @param hooks the program's hooks.
 * @param stop_fd a descriptor whose readability ends serving, or -1.
 * @return how it ended.
 */
enum backend_end backend_serve_connection(int sock, const struct vhost_be_device *dev,
                                          const struct backend_hooks *hooks, int stop_fd);

/**
 * Serve frontends until a signal asks to stop: those that connect to @p listen_fd one
 * after another (the program's descriptors are polled in between too), or the
 * connection @p conn_fd once. Signals go to @c hooks->signal.
 * @param listen_fd the listening socket (not owned), or -1.
 * @param conn_fd the connected socket when @p listen_fd is -1; owned.
 * @param signal_fd from backend_signalfd().
 * @param dev the device; must outlive the call.
 * @param hooks the program's hooks.
 * @return the exit status: BACKEND_EXIT_OK stopped by a signal or @p conn_fd closed;
 *         BACKEND_EXIT_FAILURE a failure (on @p conn_fd, or of poll()).
 */
int backend_serve(int listen_fd, int conn_fd, int signal_fd, const struct vhost_be_device *dev,
                  const struct backend_hooks *hooks);

/**
 * Run the program: backend_check_fd() an inherited --fd, listen on --socket,
 * backend_signalfd(), backend_sandbox(), then backend_serve() (the socket file is
 * removed at the end, except under --sandbox, whose filter refuses that).
 * @param cli the parsed common options.
 * @param dev the device; must outlive the call.
 * @param hooks the program's hooks.
 * @return the exit status; BACKEND_EXIT_USAGE after an error line when the socket
 *         cannot be listened on or the descriptor is not a connected stream socket.
 */
int backend_main(const struct backend_cli *cli, const struct vhost_be_device *dev,
                 const struct backend_hooks *hooks);

#endif
