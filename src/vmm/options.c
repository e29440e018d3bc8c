/* SPDX-License-Identifier: BSD-2-Clause */
#include "vmm/options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: bulkhead-vmm --kernel PATH [--initrd PATH] [--cmdline STRING] [--mem SIZE]\n"
    "                    [--cpus N] [--serial stdio|file:PATH|unix:PATH] [--no-reboot]\n"
    "                    [--serial2 file:PATH|unix:PATH]\n"
    "                    [--shutdown-timeout SECONDS] [--log-level error|warn|info|debug|trace]\n"
    "                    [--name NAME] [--control PATH] [--sandbox[=kill|trap]]\n"
    "                    [--sched batch|normal] [DEVICE]...\n"
    "DEVICE (each repeatable; every one also takes [,mode=isolated|shared][,poll=MICROSECONDS]\n"
    "        [,restarts=N]: new backends in a row that may fail before the VMM gives up, 0\n"
    "        for no limit, default 5):\n"
    "  --disk path=IMG[,readonly=on][,queues=N][,timeout=SECONDS]   bulkhead-blk serves IMG\n"
    "  --disk socket=PATH[,timeout=SECONDS]          a vhost-user-blk backend at PATH\n"
    "  --net tap=NAME[,mac=MAC][,queues=PAIRS]       bulkhead-net, the tap NAME as uplink\n"
    "  --net socket=PATH[,mac=MAC][,queues=PAIRS]    a vhost-user-net backend (a bulkhead-net\n"
    "                                                port) at PATH; PAIRS default: --cpus\n"
    "  --vsock cid=N,uds=PATH                        bulkhead-vsock; host side at PATH, PATH_PORT\n"
    "  --vsock socket=PATH                           a vhost-user-vsock backend at PATH\n"
    "  --console out=stdio|file:PATH|unix:PATH[,port=NAME=unix:PATH|NAME=file:PATH]...\n"
    "                                                bulkhead-console: hvc0 and named ports\n"
    "  --console socket=PATH                         a vhost-user-console backend at PATH\n"
    "  --rng getrandom | --rng socket=PATH           bulkhead-rng, or a vhost-user-rng backend\n"
    "  --fs socket=PATH,tag=TAG                      virtio-fs from a virtiofsd at PATH\n"
    "\n"
    "Runs one virtual machine. SIZE takes K, M, G or T (a bare number is MiB); default 256M.\n"
    "SIGTERM (and SIGINT unless the console is on the terminal) presses the guest's ACPI\n"
    "power button; a second signal, or --shutdown-timeout seconds (default 30; 0: no\n"
    "graceful stop) without the guest powering off, stops it at once.\n"
    "Exit status: 0 guest powered off, 1 VM failure, 2 bad usage or input,\n"
    "             3 guest asked for a reset and --no-reboot was given,\n"
    "             128+N stopped at once by signal N (or its shutdown timeout).\n"
    "With --serial stdio on a terminal, Ctrl-A x quits.\n"
    "--control PATH listens on a unix socket for one-line commands: status, counters,\n"
    "shutdown (the power button), stop (at once), help.\n"
    "--sandbox: once the VM is built, allow only the system calls the VMM runs with\n"
    "(docs/security.md); any other kills the process (SIGSYS), or with =trap names the\n"
    "call and exits with status 159. Every device must then be socket=: a sandboxed VMM\n"
    "starts no backend itself.\n"
    "--sched: the CPU scheduling class of the VMM's threads and of the backends it starts\n"
    "(docs/design.md, \"Scheduling\"): batch (default) lets a woken thread wait for the\n"
    "running one instead of preempting it, so I/O is carried in batches; normal is the\n"
    "kernel's default.\n";

int options_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -EINVAL;
    unsigned shift = 20;
    if (*end != '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        case 'b':
        case 'B':
            shift = 0;
            break;
        default:
            return -EINVAL;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end != '\0')
            return -EINVAL;
    }
    if (shift > 0 && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

static enum options_result fail(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum options_result fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return OPTIONS_ERROR;
}

/* --serial2: COM2, for a serial link to another VM (a file or a unix socket; the
 * terminal is COM1's). */
static enum options_result parse_serial2(const char *arg, struct vmm_options *o, char *err,
                                         size_t len)
{
    if (strncmp(arg, "file:", 5) == 0 && arg[5] != '\0')
        o->serial2 = SERIAL_FILE;
    else if (strncmp(arg, "unix:", 5) == 0 && arg[5] != '\0')
        o->serial2 = SERIAL_UNIX;
    else
        return fail(err, len, "--serial2: expected file:PATH or unix:PATH, got '%s'", arg);
    o->serial2_path = arg + 5;
    return OPTIONS_RUN;
}

static enum options_result parse_serial(const char *arg, struct vmm_options *o, char *err,
                                        size_t len)
{
    if (strcmp(arg, "stdio") == 0) {
        o->serial = SERIAL_STDIO;
    } else if (strncmp(arg, "file:", 5) == 0 && arg[5] != '\0') {
        o->serial = SERIAL_FILE;
        o->serial_path = arg + 5;
    } else if (strncmp(arg, "unix:", 5) == 0 && arg[5] != '\0') {
        o->serial = SERIAL_UNIX;
        o->serial_path = arg + 5;
    } else {
        return fail(err, len, "--serial: expected stdio, file:PATH or unix:PATH, got '%s'", arg);
    }
    return OPTIONS_RUN;
}

/* A decimal number from @p min to @p max, digits only. */
static int parse_range(const char *val, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(val, &end, 10);
    if (errno != 0 || *end != '\0' || val[0] < '0' || val[0] > '9' || n < min || n > max)
        return -EINVAL;
    *out = (unsigned)n;
    return 0;
}

/* Six hex pairs separated by colons; a multicast address cannot be a NIC's. */
static int parse_mac(const char *val, uint8_t mac[6])
{
    for (unsigned i = 0; i < 6; i++) {
        const char *p = val + 3 * i;
        char hex[3] = {p[0], p[1], '\0'};
        if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
            p[2] != (i == 5 ? '\0' : ':'))
            return -EINVAL;
        mac[i] = (uint8_t)strtoul(hex, NULL, 16);
    }
    return (mac[0] & 1) != 0 ? -EINVAL : 0;
}

/* A console port: NAME=unix:PATH or NAME=file:PATH, NAME of [A-Za-z0-9._-], 1 to 64 bytes. */
static bool port_ok(const char *val)
{
    const char *eq = strchr(val, '=');
    if (eq == NULL || eq == val || eq - val > 64)
        return false;
    for (const char *c = val; c < eq; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
            return false;
    return (strncmp(eq + 1, "unix:", 5) == 0 || strncmp(eq + 1, "file:", 5) == 0) && eq[6] != '\0';
}

static bool endpoint_ok(const char *val)
{
    return strcmp(val, "stdio") == 0 ||
           ((strncmp(val, "file:", 5) == 0 || strncmp(val, "unix:", 5) == 0) && val[5] != '\0');
}

/* The option's name, and which keys each kind takes (bit i: key i of parse_device()). */
static const char *const kind_option[] = {
    [VMM_DEV_BLK] = "--disk",        [VMM_DEV_NET] = "--net", [VMM_DEV_VSOCK] = "--vsock",
    [VMM_DEV_CONSOLE] = "--console", [VMM_DEV_RNG] = "--rng", [VMM_DEV_FS] = "--fs",
};

/* Keys of device options; each kind takes the ones its mask names. */
enum dev_key {
    K_SOCKET,
    K_MODE,
    K_POLL,
    K_PATH,
    K_READONLY,
    K_QUEUES,
    K_TIMEOUT,
    K_TAP,
    K_MAC,
    K_CID,
    K_UDS,
    K_OUT,
    K_PORT,
    K_TAG,
    K_RESTARTS,
    K_COUNT
};
static const char *const key_name[K_COUNT] = {
    "socket", "mode", "poll", "path", "readonly", "queues", "timeout",  "tap",
    "mac",    "cid",  "uds",  "out",  "port",     "tag",    "restarts",
};
#define KB(k)       (1u << (k))
#define KEYS_COMMON (KB(K_SOCKET) | KB(K_MODE) | KB(K_POLL) | KB(K_RESTARTS))
static const unsigned kind_keys[] = {
    [VMM_DEV_BLK] = KEYS_COMMON | KB(K_PATH) | KB(K_READONLY) | KB(K_QUEUES) | KB(K_TIMEOUT),
    [VMM_DEV_NET] = KEYS_COMMON | KB(K_TAP) | KB(K_MAC) | KB(K_QUEUES),
    [VMM_DEV_VSOCK] = KEYS_COMMON | KB(K_CID) | KB(K_UDS),
    [VMM_DEV_CONSOLE] = KEYS_COMMON | KB(K_OUT) | KB(K_PORT),
    [VMM_DEV_RNG] = KEYS_COMMON,
    [VMM_DEV_FS] = KEYS_COMMON | KB(K_TAG),
};

/* One KEY=VALUE of a device option into @p d; @p seen collects the keys given. */
static enum options_result parse_key(struct vmm_device *d, const char *opt, const char *kv,
                                     const char *val, unsigned *seen, char *err, size_t len)
{
    unsigned k = 0;
    while (k < K_COUNT && strcmp(kv, key_name[k]) != 0)
        k++;
    if (k == K_COUNT || !(kind_keys[d->kind] & KB(k)) || ((*seen & KB(k)) && k != K_PORT))
        return fail(err, len, "%s: unknown or repeated key '%s'", opt, kv);
    *seen |= KB(k);
    uint64_t cid;
    char *end;
    switch ((enum dev_key)k) {
    case K_SOCKET:
        d->socket = val;
        break;
    case K_MODE:
        if (strcmp(val, "isolated") == 0)
            d->mode = VMM_MEM_ISOLATED;
        else if (strcmp(val, "shared") == 0)
            d->mode = VMM_MEM_SHARED;
        else
            return fail(err, len, "%s: mode=%s: expected isolated or shared", opt, val);
        break;
    case K_POLL:
        if (parse_range(val, 0, VMM_MAX_POLL_US, &d->poll_us) != 0)
            return fail(err, len, "%s: poll=%s: expected microseconds from 0 to %u", opt, val,
                        VMM_MAX_POLL_US);
        break;
    case K_PATH:
        d->path = val;
        break;
    case K_READONLY:
        if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0)
            return fail(err, len, "%s: readonly=%s: expected on or off", opt, val);
        d->readonly = strcmp(val, "on") == 0;
        break;
    case K_QUEUES: {
        /* A disk's request queues; a NIC's queue pairs. */
        unsigned max = d->kind == VMM_DEV_NET ? VMM_MAX_NET_PAIRS : VMM_MAX_DISK_QUEUES;
        if (parse_range(val, 1, max, &d->queues) != 0)
            return fail(err, len, "%s: queues=%s: expected a number from 1 to %u", opt, val, max);
        break;
    }
    case K_TIMEOUT:
        if (parse_range(val, 1, VMM_MAX_DISK_TIMEOUT, &d->timeout) != 0)
            return fail(err, len, "%s: timeout=%s: expected seconds from 1 to %u", opt, val,
                        VMM_MAX_DISK_TIMEOUT);
        break;
    case K_TAP:
        if (strlen(val) >= 16)
            return fail(err, len, "%s: tap=%s: an interface name has at most 15 bytes", opt, val);
        d->tap = val;
        break;
    case K_MAC:
        if (parse_mac(val, d->mac) != 0)
            return fail(err, len, "%s: mac=%s: expected a unicast address like 02:00:00:00:00:01",
                        opt, val);
        d->mac_given = true;
        break;
    case K_CID:
        errno = 0;
        cid = strtoull(val, &end, 10);
        /* 0-2 are the hypervisor, local and host; 2^32-1 is "any". */
        if (errno != 0 || *end != '\0' || val[0] < '0' || val[0] > '9' || cid < 3 ||
            cid >= 0xffffffffull)
            return fail(err, len, "%s: cid=%s: expected a number from 3 to 4294967294", opt, val);
        d->cid = cid;
        break;
    case K_UDS:
        if (strlen(val) >= 96)
            return fail(err, len, "%s: uds=%s: the path must be shorter than 96 bytes", opt, val);
        d->uds = val;
        break;
    case K_OUT:
        if (!endpoint_ok(val))
            return fail(err, len, "%s: out=%s: expected stdio, file:PATH or unix:PATH", opt, val);
        d->out = val;
        break;
    case K_PORT:
        if (d->nr_ports >= VMM_MAX_CONSOLE_PORTS)
            return fail(err, len, "%s: at most %u ports", opt, VMM_MAX_CONSOLE_PORTS);
        if (!port_ok(val))
            return fail(err, len, "%s: port=%s: expected NAME=unix:PATH or NAME=file:PATH", opt,
                        val);
        d->ports[d->nr_ports++] = val;
        break;
    case K_TAG:
        if (strlen(val) > VMM_FS_TAG_MAX)
            return fail(err, len, "%s: tag=%s: at most %u bytes", opt, val, VMM_FS_TAG_MAX);
        d->tag = val;
        break;
    case K_RESTARTS:
        if (parse_range(val, 0, VMM_MAX_RESTARTS, &d->restarts) != 0)
            return fail(err, len, "%s: restarts=%s: expected a number from 0 (no limit) to %u", opt,
                        val, VMM_MAX_RESTARTS);
        break;
    case K_COUNT:
        break;
    }
    return OPTIONS_RUN;
}

/* Whether the keys given say how to reach a backend, exactly one way. */
static enum options_result check_backend(const struct vmm_device *d, const char *opt, unsigned seen,
                                         bool builtin, char *err, size_t len)
{
    bool sock = seen & KB(K_SOCKET);
    switch (d->kind) {
    case VMM_DEV_BLK:
        if (sock == ((seen & KB(K_PATH)) != 0))
            return fail(err, len, "%s: give exactly one of path=IMG and socket=PATH", opt);
        if (sock && (seen & (KB(K_READONLY) | KB(K_QUEUES))))
            return fail(err, len,
                        "%s: readonly= and queues= apply to path= only; a socket's "
                        "backend decides",
                        opt);
        break;
    case VMM_DEV_NET:
        if (sock == ((seen & KB(K_TAP)) != 0))
            return fail(err, len, "%s: give exactly one of tap=NAME and socket=PATH", opt);
        break;
    case VMM_DEV_VSOCK:
        if (sock ? (seen & (KB(K_CID) | KB(K_UDS))) != 0
                 : (seen & (KB(K_CID) | KB(K_UDS))) != (KB(K_CID) | KB(K_UDS)))
            return fail(err, len, "%s: give cid=N and uds=PATH, or socket=PATH alone", opt);
        break;
    case VMM_DEV_CONSOLE:
        if (sock == ((seen & KB(K_OUT)) != 0))
            return fail(err, len, "%s: give exactly one of out=... and socket=PATH", opt);
        if (sock && d->nr_ports > 0)
            return fail(err, len, "%s: port= applies to out= only; a socket's backend decides",
                        opt);
        break;
    case VMM_DEV_RNG:
        if (sock == builtin)
            return fail(err, len, "%s: give exactly one of getrandom and socket=PATH", opt);
        break;
    case VMM_DEV_FS:
        if (!sock || !(seen & KB(K_TAG)))
            return fail(err, len, "%s: socket=PATH and tag=TAG are required (a virtiofsd)", opt);
        break;
    }
    return OPTIONS_RUN;
}

/* A device option: KEY=VALUE pairs separated by commas (--rng also takes the word
 * getrandom). The text is copied once and cut at the commas, so the strings live as long as
 * the process. */
static enum options_result parse_device_copy(enum vmm_dev_kind kind, char *copy,
                                             struct vmm_options *o, char *err, size_t len)
{
    const char *opt = kind_option[kind];
    struct vmm_device d = {
        .kind = kind,
        .mode = VMM_MEM_ISOLATED,
        .poll_us = VMM_DEFAULT_POLL_US,
        .timeout = kind == VMM_DEV_BLK ? VMM_DEFAULT_DISK_TIMEOUT : 0,
        .restarts = VMM_DEFAULT_RESTARTS,
    };
    unsigned seen = 0;
    bool builtin = false;
    for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv != NULL;
         kv = strtok_r(NULL, ",", &save)) {
        if (kind == VMM_DEV_RNG && strcmp(kv, "getrandom") == 0 && !builtin) {
            builtin = true;
            continue;
        }
        char *val = strchr(kv, '=');
        if (val == NULL || val[1] == '\0')
            return fail(err, len, "%s: '%s' is not KEY=VALUE", opt, kv);
        *val++ = '\0';
        if (parse_key(&d, opt, kv, val, &seen, err, len) != OPTIONS_RUN)
            return OPTIONS_ERROR;
    }
    if (check_backend(&d, opt, seen, builtin, err, len) != OPTIONS_RUN)
        return OPTIONS_ERROR;
    d.text = copy;
    o->devices[o->nr_devices++] = d;
    return OPTIONS_RUN;
}

static enum options_result parse_device(enum vmm_dev_kind kind, const char *arg,
                                        struct vmm_options *o, char *err, size_t len)
{
    if (o->nr_devices >= VMM_MAX_DEVICES)
        return fail(err, len, "%s: at most %u devices in all", kind_option[kind], VMM_MAX_DEVICES);
    char *copy = strdup(arg);
    if (copy == NULL)
        return fail(err, len, "%s: out of memory", kind_option[kind]);
    /* Owned by the options from here on, whether the text parses or not. */
    o->devices[o->nr_devices].text = copy;
    enum options_result r = parse_device_copy(kind, copy, o, err, len);
    if (r != OPTIONS_RUN) {
        free(o->devices[o->nr_devices].text);
        o->devices[o->nr_devices].text = NULL;
    }
    return r;
}

enum options_result options_parse(int argc, char **argv, struct vmm_options *o, char *err,
                                  size_t len)
{
    enum {
        OPT_KERNEL = 256,
        OPT_INITRD,
        OPT_CMDLINE,
        OPT_MEM,
        OPT_CPUS,
        OPT_SERIAL,
        OPT_SERIAL2,
        OPT_NO_REBOOT,
        OPT_LOG_LEVEL,
        OPT_SHUTDOWN_TIMEOUT,
        OPT_DISK,
        OPT_NET,
        OPT_VSOCK,
        OPT_CONSOLE,
        OPT_RNG,
        OPT_FS,
        OPT_NAME,
        OPT_CONTROL,
        OPT_SANDBOX,
        OPT_SCHED,
        OPT_HELP,
        OPT_VERSION
    };
    static const struct option longopts[] = {
        {"kernel", required_argument, NULL, OPT_KERNEL},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"mem", required_argument, NULL, OPT_MEM},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"serial", required_argument, NULL, OPT_SERIAL},
        {"serial2", required_argument, NULL, OPT_SERIAL2},
        {"no-reboot", no_argument, NULL, OPT_NO_REBOOT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
        {"disk", required_argument, NULL, OPT_DISK},
        {"net", required_argument, NULL, OPT_NET},
        {"vsock", required_argument, NULL, OPT_VSOCK},
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"rng", required_argument, NULL, OPT_RNG},
        {"fs", required_argument, NULL, OPT_FS},
        {"name", required_argument, NULL, OPT_NAME},
        {"control", required_argument, NULL, OPT_CONTROL},
        {"sandbox", optional_argument, NULL, OPT_SANDBOX},
        {"sched", required_argument, NULL, OPT_SCHED},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    *o = (struct vmm_options){
        .cmdline = "console=ttyS0",
        .mem_bytes = 256ull << 20,
        .cpus = 1,
        .serial = SERIAL_STDIO,
        .log_level = LOG_WARN,
        .shutdown_timeout = VMM_DEFAULT_SHUTDOWN_TIMEOUT,
    };
    err[0] = '\0';
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_KERNEL:
            o->kernel = optarg;
            break;
        case OPT_INITRD:
            o->initrd = optarg;
            break;
        case OPT_CMDLINE:
            o->cmdline = optarg;
            break;
        case OPT_MEM:
            if (options_parse_size(optarg, &o->mem_bytes) != 0)
                return fail(err, len, "--mem: '%s' is not a size (e.g. 512M, 2G)", optarg);
            if (o->mem_bytes < VMM_MIN_MEM || o->mem_bytes > VMM_MAX_MEM)
                return fail(err, len, "--mem: %s is out of range (16M to 1T)", optarg);
            if ((o->mem_bytes & 0xfff) != 0)
                return fail(err, len, "--mem: %s is not a multiple of 4K", optarg);
            break;
        case OPT_CPUS: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] < '0' || optarg[0] > '9')
                return fail(err, len, "--cpus: '%s' is not a number", optarg);
            if (n < 1 || n > VMM_MAX_CPUS)
                return fail(err, len, "--cpus: %lu is out of range (1 to %u)", n, VMM_MAX_CPUS);
            o->cpus = (unsigned)n;
            break;
        }
        case OPT_SERIAL:
            if (parse_serial(optarg, o, err, len) != OPTIONS_RUN)
                return OPTIONS_ERROR;
            break;
        case OPT_SERIAL2:
            if (parse_serial2(optarg, o, err, len) != OPTIONS_RUN)
                return OPTIONS_ERROR;
            break;
        case OPT_NO_REBOOT:
            o->no_reboot = true;
            break;
        case OPT_DISK:
        case OPT_NET:
        case OPT_VSOCK:
        case OPT_CONSOLE:
        case OPT_RNG:
        case OPT_FS:
            if (parse_device((enum vmm_dev_kind)(VMM_DEV_BLK + (c - OPT_DISK)), optarg, o, err,
                             len) != OPTIONS_RUN)
                return OPTIONS_ERROR;
            break;
        case OPT_NAME:
            if (optarg[0] == '\0' || strlen(optarg) > 64)
                return fail(err, len, "--name: the name must have 1 to 64 bytes");
            o->name = optarg;
            break;
        case OPT_CONTROL:
            if (optarg[0] == '\0' || strlen(optarg) >= 108)
                return fail(err, len, "--control: the path must have 1 to 107 bytes");
            o->control = optarg;
            break;
        case OPT_SHUTDOWN_TIMEOUT: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] < '0' || optarg[0] > '9')
                return fail(err, len, "--shutdown-timeout: '%s' is not a number of seconds",
                            optarg);
            if (n > VMM_MAX_SHUTDOWN_TIMEOUT)
                return fail(err, len, "--shutdown-timeout: %lu is out of range (0 to %u)", n,
                            VMM_MAX_SHUTDOWN_TIMEOUT);
            o->shutdown_timeout = (unsigned)n;
            break;
        }
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &o->log_level) != 0)
                return fail(err, len,
                            "--log-level: '%s' is not one of error, warn, info, debug, trace",
                            optarg);
            break;
        case OPT_SANDBOX:
            if (sandbox_seccomp_parse(optarg, &o->sandbox) != 0)
                return fail(err, len, "--sandbox: '%s' is neither kill nor trap", optarg);
            break;
        case OPT_SCHED:
            if (host_sched_parse(optarg, &o->sched) != 0)
                return fail(err, len, "--sched: '%s' is neither batch nor normal", optarg);
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            return OPTIONS_EXIT;
        case OPT_VERSION:
            puts("bulkhead-vmm " BULKHEAD_VERSION);
            return OPTIONS_EXIT;
        case ':':
            return fail(err, len, "%s needs an argument", argv[optind - 1]);
        default:
            return fail(err, len, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail(err, len, "unexpected argument '%s' (see --help)", argv[optind]);
    if (o->kernel == NULL)
        return fail(err, len, "--kernel PATH is required (see --help)");
    unsigned nic = 0;
    unsigned on_stdio = 0;
    for (unsigned i = 0; i < o->nr_devices; i++) {
        struct vmm_device *d = &o->devices[i];
        /* Its filter forbids fork and exec: the supervisor starts the backends. */
        if (o->sandbox != SANDBOX_SECCOMP_OFF && d->socket == NULL)
            return fail(err, len,
                        "--sandbox: device %u starts its own backend; use socket=", i + 1);
        if (d->kind == VMM_DEV_CONSOLE && d->out != NULL && strcmp(d->out, "stdio") == 0 &&
            ++on_stdio > 1)
            return fail(err, len, "--console: only one console can have out=stdio");
        if (d->kind == VMM_DEV_NET && !d->mac_given)
            options_default_mac(o->name, d->tap != NULL ? d->tap : d->socket, nic, d->mac);
        /* A queue pair per vCPU by default, so each vCPU sends on a queue of its own (as
         * Linux's driver maps them) and receive interrupts spread over the vCPUs. */
        if (d->kind == VMM_DEV_NET && d->queues == 0)
            d->queues = o->cpus < VMM_MAX_NET_PAIRS ? o->cpus : VMM_MAX_NET_PAIRS;
        nic += d->kind == VMM_DEV_NET;
    }
    /* The terminal's input goes to hvc0 then; the serial console keeps writing to it. */
    if (on_stdio > 0 && o->serial == SERIAL_STDIO)
        o->serial = SERIAL_STDOUT;
    return OPTIONS_RUN;
}

void options_default_mac(const char *vm_name, const char *endpoint, unsigned nic, uint8_t mac[6])
{
    /* FNV-1a over the VM's name, the NIC's tap or socket and its position: stable across
     * boots, different for two VMs on one switch (their sockets differ) and for two NICs. */
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[] = {vm_name != NULL ? vm_name : "", "/", endpoint != NULL ? endpoint : ""};
    for (unsigned p = 0; p < 3; p++)
        for (const char *c = parts[p]; *c != '\0'; c++)
            h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    h = (h ^ nic) * 0x100000001b3ull;
    /* Locally administered (bit 1), unicast (bit 0 clear). */
    mac[0] = 0x02;
    for (unsigned i = 1; i < 6; i++)
        mac[i] = (uint8_t)(h >> (8 * i));
}
