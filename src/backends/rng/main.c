/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-rng: the vhost-user virtio-rng backend, a process of its own. Answers the
 * guest's entropy requests with getrandom(2), for one frontend at a time: on a unix
 * socket it listens on (the next frontend is accepted when one leaves) or on a
 * connected socket inherited from the parent that started it. Everything else it
 * shares with the other small backends (backends/common/backend_prog.h).
 */
#include "backends/common/backend_prog.h"
#include "backends/rng/rng_device.h"
#include "core/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define PROG "bulkhead-rng"

static const char usage[] =
    "usage: " PROG " (--socket PATH | --fd N) [--max-request BYTES]\n"
    "                    [--log-level error|warn|info|debug|trace]\n"
    "\n"
    "Serves a vhost-user virtio-rng device (entropy source) fed by getrandom(2).\n"
    "  --socket PATH         listen on a unix socket; one frontend at a time, the next\n"
    "                        one is accepted when it leaves\n"
    "  --fd N                serve an already connected socket; exit when it closes\n"
    "  --max-request BYTES   random bytes given per request at most, 1 to 1M; a K or M\n"
    "                        suffix multiplies by 1024 or 1048576 (default 64K)\n"
    "SIGTERM or SIGINT exits; the counters are logged at --log-level info.\n"
    "Exit status: 0 stopped by a signal, or the --fd connection closed; 1 failure\n"
    "             (protocol error on --fd); 2 bad usage.\n";

enum {
    OPT_MAX_REQUEST = BACKEND_OPT_FIRST,
};

/* A byte count with an optional binary K or M suffix. */
static int parse_size(const char *s, uint64_t max, uint64_t *out)
{
    char digits[32];
    size_t len = 0;
    while (s[len] >= '0' && s[len] <= '9' && len < sizeof(digits) - 1) {
        digits[len] = s[len];
        len++;
    }
    digits[len] = '\0';
    uint64_t mult = 1;
    if (s[len] == 'K' && s[len + 1] == '\0')
        mult = 1024;
    else if (s[len] == 'M' && s[len + 1] == '\0')
        mult = 1024 * 1024;
    else if (s[len] != '\0')
        return -1;
    uint64_t v;
    if (backend_parse_u64(digits, 1, max / mult, &v) < 0)
        return -1;
    *out = v * mult;
    return 0;
}

static int option(void *ctx, int val, const char *arg)
{
    uint32_t *max_request = ctx;
    uint64_t v;
    if (val != OPT_MAX_REQUEST || parse_size(arg, RNG_MAX_MAX_REQUEST, &v) < 0)
        return backend_usage_error(PROG, "--max-request: '%s' is not a byte count from 1 to 1M",
                                   arg);
    *max_request = (uint32_t)v;
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"max-request", required_argument, NULL, OPT_MAX_REQUEST},
        {NULL, 0, NULL, 0},
    };
    uint32_t max_request = RNG_DEFAULT_MAX_REQUEST;
    const struct backend_cli_spec spec = {.prog = PROG,
                                          .usage = usage,
                                          .options = options,
                                          .option = option,
                                          .ctx = &max_request,
                                          .profile = SANDBOX_PROFILE_RNG};
    struct backend_cli cli;
    int st = backend_cli_parse(argc, argv, &spec, &cli);
    if (st >= 0)
        return st;

    /* The device's scratch segments make it large for a stack. */
    struct rng_device *rd = malloc(sizeof(*rd));
    if (rd == NULL || rng_device_init(rd, max_request) < 0) {
        log_error("cannot set up the device");
        free(rd);
        return BACKEND_EXIT_FAILURE;
    }
    log_info("serving virtio-rng (at most %u bytes per request) on %s", max_request,
             cli.socket_path != NULL ? cli.socket_path : "the inherited socket");
    const struct backend_hooks hooks = {.opaque = rd};
    st = backend_main(&cli, &rd->dev, &hooks);
    log_info("rng: %llu requests, %llu bytes, %llu refused",
             (unsigned long long)rd->counters.requests, (unsigned long long)rd->counters.bytes,
             (unsigned long long)rd->counters.refused);
    free(rd);
    return st;
}
