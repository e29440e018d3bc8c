/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-console: the vhost-user virtio-console backend, a process of its own.
 * Port 0 is the guest's console (hvc0) on standard I/O, inherited descriptors, a
 * file or a unix socket; further named ports (/dev/virtio-ports/NAME in the guest)
 * go to unix sockets or files. One frontend at a time, on a unix socket it listens
 * on or a connected socket inherited from its parent (backends/common/backend_prog.h).
 */
#include "backends/common/backend_prog.h"
#include "backends/console/con_device.h"
#include "backends/console/con_host.h"
#include "core/log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "bulkhead-console"

static const char usage[] =
    "usage: " PROG " (--socket PATH | --fd N)\n"
    "                        [--console stdio|fd:IN[,OUT]|file:PATH|unix:PATH]\n"
    "                        [--port NAME=unix:PATH|NAME=file:PATH]...\n"
    "                        [--cols N --rows N] [--log-level error|warn|info|debug|trace]\n"
    "\n"
    "Serves a vhost-user virtio-console device with multiple ports.\n"
    "  --socket PATH    listen on a unix socket; one frontend at a time, the next one\n"
    "                   is accepted when it leaves\n"
    "  --fd N           serve an already connected socket; exit when it closes\n"
    "  --console SPEC   port 0 is the guest's console (hvc0), connected to: stdio (our\n"
    "                   standard input and output), fd:IN[,OUT] (inherited descriptors),\n"
    "                   file:PATH (output appended, no input) or unix:PATH (a socket we\n"
    "                   listen on, one client at a time; output without a client is\n"
    "                   dropped). Without it port 0 has no host side.\n"
    "  --port NAME=SPEC a named port (/dev/virtio-ports/NAME in the guest; 1 to 64 of\n"
    "                   A-Z a-z 0-9 . _ -) on unix:PATH or file:PATH; up to 30\n"
    "  --cols N, --rows N  the console's size, 1 to 65535 each (F_SIZE); both or none\n"
    "SIGTERM or SIGINT exits; the counters are logged at --log-level info.\n"
    "Exit status: 0 stopped by a signal, or the --fd connection closed; 1 failure\n"
    "             (protocol error on --fd, set-up); 2 bad usage or input.\n";

enum {
    OPT_CONSOLE = BACKEND_OPT_FIRST,
    OPT_PORT,
    OPT_COLS,
    OPT_ROWS,
};

/** The program's own options, as given. */
struct options {
    const char *console;                  /**< --console, or NULL. */
    const char *ports[CON_MAX_PORTS - 1]; /**< --port values, NAME=SPEC. */
    unsigned nr_ports;                    /**< Entries of @c ports. */
    uint64_t cols;                        /**< --cols, 0 when not given. */
    uint64_t rows;                        /**< --rows, 0 when not given. */
};

static int option(void *ctx, int val, const char *arg)
{
    struct options *o = ctx;
    switch (val) {
    case OPT_CONSOLE:
        if (o->console != NULL)
            return backend_usage_error(PROG, "--console given twice");
        o->console = arg;
        return -1;
    case OPT_PORT:
        if (o->nr_ports == CON_MAX_PORTS - 1)
            return backend_usage_error(PROG, "--port: at most %u named ports", CON_MAX_PORTS - 1);
        o->ports[o->nr_ports++] = arg;
        return -1;
    default:
        if (backend_parse_u64(arg, 1, UINT16_MAX, val == OPT_COLS ? &o->cols : &o->rows) < 0)
            return backend_usage_error(PROG, "--%s: '%s' is not a number from 1 to 65535",
                                       val == OPT_COLS ? "cols" : "rows", arg);
        return -1;
    }
}

static const char *unix_path(const struct con_host_spec *s)
{
    return s->kind == CON_HOST_UNIX ? s->path : NULL;
}

/* Two listeners on one path would replace each other's socket file. */
static int check_paths(const struct backend_cli *cli, const struct con_host_spec *specs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        const char *a = unix_path(&specs[i]);
        if (a == NULL)
            continue;
        if (cli->socket_path != NULL && strcmp(a, cli->socket_path) == 0)
            return backend_usage_error(PROG, "'%s' is both --socket and a port's socket", a);
        for (unsigned k = 0; k < i; k++) {
            const char *b = unix_path(&specs[k]);
            if (b != NULL && strcmp(a, b) == 0)
                return backend_usage_error(PROG, "two ports listen on '%s'", a);
        }
    }
    return -1;
}

/* Split NAME=SPEC; @p name gets the name. */
static int parse_port(const char *arg, char *name, struct con_host_spec *spec)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || (size_t)(eq - arg) > CON_NAME_MAX)
        return backend_usage_error(PROG, "--port: '%s' is not NAME=unix:PATH or NAME=file:PATH",
                                   arg);
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = '\0';
    if (!con_port_name_valid(name))
        return backend_usage_error(
            PROG, "--port: the name '%s' is not 1 to %u of A-Z a-z 0-9 . _ -", name, CON_NAME_MAX);
    if (con_host_parse(eq + 1, false, spec) < 0)
        return backend_usage_error(PROG, "--port %s: '%s' is not unix:PATH or file:PATH", name,
                                   eq + 1);
    return -1;
}

static int open_error(const char *what, const struct con_host_spec *spec, int err)
{
    const char *path = spec->path != NULL ? spec->path : "the descriptors";
    if (err == -EEXIST)
        return backend_usage_error(PROG, "%s: '%s' exists and is not a socket", what, path);
    return backend_usage_error(PROG, "%s: cannot open %s: %s", what, path, strerror(-err));
}

/* Open every port's host end; -1 when done, or an exit status. */
static int set_up(struct con_device *cd, const struct options *o, const struct backend_cli *cli)
{
    struct con_host_spec specs[CON_MAX_PORTS];
    char names[CON_MAX_PORTS][CON_NAME_MAX + 1];
    int st;
    specs[0] = (struct con_host_spec){.kind = CON_HOST_NONE, .in_fd = -1, .out_fd = -1};
    if (o->console != NULL && con_host_parse(o->console, true, &specs[0]) < 0)
        return backend_usage_error(
            PROG, "--console: '%s' is not stdio, fd:IN[,OUT], file:PATH or unix:PATH", o->console);
    for (unsigned i = 0; i < o->nr_ports; i++) {
        if ((st = parse_port(o->ports[i], names[i + 1], &specs[i + 1])) >= 0)
            return st;
        for (unsigned k = 0; k < i; k++) {
            if (strcmp(names[k + 1], names[i + 1]) == 0)
                return backend_usage_error(PROG, "--port: the name '%s' is given twice",
                                           names[i + 1]);
        }
    }
    if ((st = check_paths(cli, specs, 1 + o->nr_ports)) >= 0)
        return st;
    for (unsigned i = 0; i <= o->nr_ports; i++) {
        int r = con_device_add_port(cd, i == 0 ? NULL : names[i], &specs[i]);
        if (r < 0) {
            char what[CON_NAME_MAX + 16] = "--console";
            if (i > 0)
                snprintf(what, sizeof(what), "--port %s", names[i]);
            return open_error(what, &specs[i], r);
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"port", required_argument, NULL, OPT_PORT},
        {"cols", required_argument, NULL, OPT_COLS},
        {"rows", required_argument, NULL, OPT_ROWS},
        {NULL, 0, NULL, 0},
    };
    struct options o = {0};
    const struct backend_cli_spec spec = {.prog = PROG,
                                          .usage = usage,
                                          .options = longopts,
                                          .option = option,
                                          .ctx = &o,
                                          .profile = SANDBOX_PROFILE_CONSOLE};
    struct backend_cli cli;
    int st = backend_cli_parse(argc, argv, &spec, &cli);
    if (st >= 0)
        return st;
    if ((o.cols == 0) != (o.rows == 0))
        return backend_usage_error(PROG, "give both --cols and --rows, or neither");

    /* Ports' buffers and scratch segments make the device large for a stack. */
    struct con_device *cd = malloc(sizeof(*cd));
    if (cd == NULL) {
        log_error("cannot set up the device: %s", strerror(ENOMEM));
        return BACKEND_EXIT_FAILURE;
    }
    const struct con_device_opts dopts = {
        .size = o.cols != 0, .cols = (uint16_t)o.cols, .rows = (uint16_t)o.rows};
    con_device_init(cd, &dopts);
    st = set_up(cd, &o, &cli);
    if (st < 0) {
        log_info("serving virtio-console (%u port%s) on %s", cd->nr_ports,
                 cd->nr_ports == 1 ? "" : "s",
                 cli.socket_path != NULL ? cli.socket_path : "the inherited socket");
        const struct backend_hooks hooks = con_device_hooks(cd);
        st = backend_main(&cli, &cd->dev, &hooks);
        con_device_log_counters(cd);
    }
    con_device_destroy(cd);
    free(cd);
    return st;
}
