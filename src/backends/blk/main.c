/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-blk: the vhost-user-blk backend, a process of its own. Serves one raw
 * image to one frontend at a time, either on a unix socket it listens on (the next
 * frontend is accepted when the previous one leaves, so a frontend can reconnect) or
 * on a connected socket inherited from the parent that started it.
 *
 * One thread serves everything: the control socket, every queue's kicks and every
 * queue's io_uring completions go through one poll() loop (blk_device.h), the one the
 * small backends share (backends/common/backend_prog.h).
 */
#include "backends/blk/blk_device.h"
#include "backends/blk/blk_engine.h"
#include "backends/common/backend_prog.h"
#include "core/log.h"
#include "vhost/backend.h"
#ifdef BULKHEAD_FAULTS
#include "vhost/faults.h"
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "bulkhead-blk"

static const char usage[] =
    "usage: bulkhead-blk --image PATH [--readonly] [--queues N] [--queue-size N]\n"
    "                    [--serial ID] [--poll MICROSECONDS] [--batch KIB]\n"
    "                    (--socket PATH | --fd N)\n"
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
    "  --batch KIB     submit requests, and complete what finished, every KIB KiB of\n"
    "                  data taken from a ring (default 0: all that is there at once);\n"
    "                  bulkhead-vmm sets 256 for its isolated disks, where each\n"
    "                  completion has a copy of its own to wait for\n"
    "SIGTERM or SIGINT completes the requests in flight and exits.\n"
    "Exit status: 0 stopped by a signal, or the --fd connection closed; 1 failure\n"
    "             (protocol error on --fd, I/O set-up); 2 bad usage or input.\n";

/** The program's own options, checked for form only: the image is checked when opened. */
struct options {
    const char *image;   /**< --image: the raw image. */
    bool read_only;      /**< --readonly. */
    uint64_t queues;     /**< --queues, 1 to VHOST_BE_MAX_QUEUES. */
    uint64_t queue_size; /**< --queue-size: seg_max is this minus the two fixed segments. */
    const char *serial;  /**< --serial, or NULL for the file's name. */
    uint64_t poll_us;    /**< --poll: the polling window after work, microseconds. */
    uint64_t batch_kib;  /**< --batch: KiB per submission, 0 for no bound. */
};

enum {
    OPT_IMAGE = BACKEND_OPT_FIRST,
    OPT_READONLY,
    OPT_QUEUES,
    OPT_QUEUE_SIZE,
    OPT_SERIAL,
    OPT_POLL,
    OPT_BATCH,
#ifdef BULKHEAD_FAULTS
    OPT_FAULT,
    OPT_FAULT_AFTER,
#endif
};

static int option(void *ctx, int val, const char *arg)
{
    struct options *o = ctx;
    uint64_t v;
    switch (val) {
    case OPT_IMAGE:
        o->image = arg;
        return -1;
    case OPT_READONLY:
        o->read_only = true;
        return -1;
    case OPT_QUEUES:
        if (backend_parse_u64(arg, 1, VHOST_BE_MAX_QUEUES, &o->queues) < 0)
            return backend_usage_error(PROG, "--queues: '%s' is not a number from 1 to %u", arg,
                                       VHOST_BE_MAX_QUEUES);
        return -1;
    case OPT_QUEUE_SIZE:
        if (backend_parse_u64(arg, 4, BLK_MAX_QUEUE_SIZE, &v) < 0 || (v & (v - 1)) != 0)
            return backend_usage_error(PROG,
                                       "--queue-size: '%s' is not a power of two from 4 to %u", arg,
                                       BLK_MAX_QUEUE_SIZE);
        o->queue_size = v;
        return -1;
    case OPT_SERIAL:
        o->serial = arg;
        return -1;
    case OPT_POLL:
        if (backend_parse_u64(arg, 0, BLK_MAX_POLL_US, &o->poll_us) < 0)
            return backend_usage_error(PROG,
                                       "--poll: '%s' is not a number of microseconds from 0 to %u",
                                       arg, BLK_MAX_POLL_US);
        return -1;
    case OPT_BATCH:
        if (backend_parse_u64(arg, 0, BLK_MAX_BATCH_KIB, &o->batch_kib) < 0)
            return backend_usage_error(PROG, "--batch: '%s' is not a number of KiB from 0 to %u",
                                       arg, BLK_MAX_BATCH_KIB);
        return -1;
#ifdef BULKHEAD_FAULTS
    case OPT_FAULT:
        if (faults_set(arg) < 0)
            return backend_usage_error(PROG, "--fault: unknown kind '%s' (one of %s)", arg,
                                       FAULTS_KINDS);
        return -1;
    default:
        if (backend_parse_u64(arg, 0, UINT_MAX, &v) < 0)
            return backend_usage_error(PROG, "--fault-after: '%s' is not a number", arg);
        faults_set_after((unsigned)v);
        return -1;
#else
    default:
        return -1; /* no other option is registered */
#endif
    }
}

static int check(void *ctx)
{
    const struct options *o = ctx;
    if (o->image == NULL)
        return backend_usage_error(PROG, "--image PATH is required");
    return -1;
}

/* Returns -1 to run, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o, struct backend_cli *cli)
{
    static const struct option longopts[] = {
        {"image", required_argument, NULL, OPT_IMAGE},
        {"readonly", no_argument, NULL, OPT_READONLY},
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"queue-size", required_argument, NULL, OPT_QUEUE_SIZE},
        {"serial", required_argument, NULL, OPT_SERIAL},
        {"poll", required_argument, NULL, OPT_POLL},
        {"batch", required_argument, NULL, OPT_BATCH},
#ifdef BULKHEAD_FAULTS
        {"fault", required_argument, NULL, OPT_FAULT},
        {"fault-after", required_argument, NULL, OPT_FAULT_AFTER},
#endif
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){
        .queues = 1, .queue_size = BLK_DEVICE_DEFAULT_QUEUE_SIZE, .poll_us = BLK_DEFAULT_POLL_US};
    struct backend_cli_spec spec = {.prog = PROG,
                                    .usage = usage,
                                    .options = longopts,
                                    .option = option,
                                    .check = check,
                                    .ctx = o,
                                    .profile = SANDBOX_PROFILE_BLK};
#ifdef BULKHEAD_FAULTS
    /* The test build's options, after the usual text; the default count is a number. */
    static char help[sizeof(usage) + 1024];
    snprintf(help, sizeof(help),
             "%s\nTEST BUILD with fault injection (src/vhost/faults.h says what each fault "
             "does):\n"
             "  --fault KIND      misbehave this way on every connection; KIND is one of\n"
             "                    " FAULTS_KINDS "\n"
             "  --fault-after N   good completions per connection before a data-path "
             "fault\n"
             "                    (default %u)\n",
             usage, FAULTS_DEFAULT_AFTER);
    spec.usage = help;
#endif
    return backend_cli_parse(argc, argv, &spec, cli);
}

static int open_image(const struct options *o, struct blk_image **img)
{
    uint32_t seg_max = (uint32_t)o->queue_size - 2;
    if (seg_max > BLK_MAX_SEG_MAX)
        seg_max = BLK_MAX_SEG_MAX;
    struct blk_image_opts io = {
        .path = o->image, .read_only = o->read_only, .serial = o->serial, .seg_max = seg_max};
    int r = blk_image_open(img, &io);
    if (r == -EINVAL)
        return BACKEND_EXIT_USAGE; /* blk_image_open() said why, in one error line */
    if (r < 0)
        return backend_usage_error(PROG, "cannot open the image '%s'%s: %s", o->image,
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

/** The device and its busy-poll state, the serving loop's hooks' opaque. */
struct blk_prog {
    struct blk_device *bd; /**< The device. */
    bool polling;          /**< A polling window is open: the next poll() must not block. */
};

static void attach(void *opaque, struct vhost_be *be)
{
    struct blk_prog *p = opaque;
    p->polling = false;
    blk_device_attach(p->bd, be);
}

static void detach(void *opaque, struct vhost_be *be)
{
    (void)be;
    blk_device_detach(((struct blk_prog *)opaque)->bd); /* completes what is in flight first */
}

static unsigned pollfds(void *opaque, struct vhost_be *be, struct pollfd *pfd, unsigned max)
{
    const struct blk_prog *p = opaque;
    if (be == NULL)
        return 0;
    unsigned n = vhost_be_pollfds(be, pfd, max);
    return n + blk_device_pollfds(p->bd, pfd + n, max - n);
}

static int dispatch(void *opaque, struct vhost_be *be, const struct pollfd *pfd, unsigned n)
{
    struct blk_prog *p = opaque;
    (void)be;
    int r = blk_device_dispatch(p->bd, pfd, n);
    if (r == 0)
        p->polling = blk_device_poll(p->bd);
    return r;
}

/* Also where a polling window yields: it spins, and the frontend's threads may be
 * waiting for this CPU (under SCHED_BATCH a woken thread never preempts it). */
static int timeout(void *opaque, struct vhost_be *be)
{
    const struct blk_prog *p = opaque;
    if (be == NULL || !p->polling)
        return -1;
    sched_yield();
    return 0;
}

static bool stop_signal(void *opaque, uint32_t signo)
{
    (void)opaque;
    log_info("signal %u: completing the requests in flight and exiting", signo);
    return true;
}

int main(int argc, char **argv)
{
    struct options o;
    struct backend_cli cli;
    int st = parse_options(argc, argv, &o, &cli);
    if (st >= 0)
        return st;

    int lfd = -1;
    if (cli.fd >= 0 && (st = backend_check_fd(PROG, cli.fd)) >= 0)
        return st;
    struct blk_image *img;
    if ((st = open_image(&o, &img)) >= 0)
        return st;
    if (cli.socket_path != NULL &&
        (st = backend_listen(PROG, "--socket", cli.socket_path, 1, &lfd)) >= 0) {
        blk_image_close(img);
        return st;
    }

    int sfd = backend_signalfd(false);
    struct blk_device *bd = malloc(sizeof(*bd));
    struct blk_device_opts dopts = {.nr_queues = (unsigned)o.queues,
                                    .queue_size = (unsigned)o.queue_size,
                                    .poll_us = (unsigned)o.poll_us,
                                    .batch_kib = (unsigned)o.batch_kib};
    if (sfd < 0 || bd == NULL) {
        log_error("cannot set up: %s", strerror(sfd < 0 ? -sfd : ENOMEM));
        st = BACKEND_EXIT_FAILURE;
    } else if (blk_device_init(bd, img, &dopts) < 0 || !io_uring_works(img) ||
               backend_sandbox(&cli) >= 0) {
        st = BACKEND_EXIT_FAILURE;
    } else {
        log_info("serving %s (%llu sectors%s, %u queue%s) on %s", o.image,
                 (unsigned long long)blk_image_capacity(img), o.read_only ? ", read-only" : "",
                 dopts.nr_queues, dopts.nr_queues == 1 ? "" : "s",
                 cli.socket_path != NULL ? cli.socket_path : "the inherited socket");
        struct blk_prog prog = {.bd = bd};
        const struct backend_hooks hooks = {.opaque = &prog,
                                            .attach = attach,
                                            .detach = detach,
                                            .pollfds = pollfds,
                                            .dispatch = dispatch,
                                            .timeout = timeout,
                                            .signal = stop_signal,
                                            .with_library = true,
                                            .max_pollfds =
                                                VHOST_BE_MAX_POLLFDS + VHOST_BE_MAX_QUEUES};
        st = backend_serve(lfd, cli.fd, sfd, &bd->dev, &hooks);
        cli.fd = -1; /* closed by the library */
    }
    if (lfd >= 0) {
        close(lfd);
        (void)unlink(cli.socket_path);
    }
    if (cli.fd >= 0)
        close(cli.fd);
    if (sfd >= 0)
        close(sfd);
    free(bd);
    blk_image_close(img);
    return st;
}
