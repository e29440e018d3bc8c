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
#include "vhost/backend.h"

#include <getopt.h>
#include <poll.h>
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
    /** Passed to @c option. */
    void *ctx;
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
 * Run the program: block SIGTERM and SIGINT into a signalfd, ignore SIGPIPE, then
 * either listen on --socket and serve one frontend after another (the program's
 * descriptors are polled in between too), or serve the inherited --fd once.
 * @param cli the parsed common options.
 * @param dev the device; must outlive the call.
 * @param hooks the program's hooks.
 * @return the exit status; BACKEND_EXIT_USAGE after an error line when the socket
 *         cannot be listened on or the descriptor is not a connected stream socket.
 */
int backend_main(const struct backend_cli *cli, const struct vhost_be_device *dev,
                 const struct backend_hooks *hooks);

#endif
