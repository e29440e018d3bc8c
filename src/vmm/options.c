/* SPDX-License-Identifier: BSD-2-Clause */
#include "vmm/options.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: bulkhead-vmm --kernel PATH [--initrd PATH] [--cmdline STRING] [--mem SIZE]\n"
    "                    [--cpus N] [--serial stdio|file:PATH|unix:PATH] [--no-reboot]\n"
    "                    [--shutdown-timeout SECONDS] [--log-level error|warn|info|debug|trace]\n"
    "                    [--disk path=IMG[,readonly=on][,queues=N][,mode=isolated|shared]\n"
    "                                [,timeout=SECONDS]]...\n"
    "                    [--disk socket=PATH[,mode=isolated|shared][,timeout=SECONDS]]...\n"
    "                    [--control PATH]\n"
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
    "shutdown (the power button), stop (at once), help.\n";

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

/* --disk path=IMG[,readonly=on|off][,mode=isolated|shared] or socket=PATH[,mode=...]. The
 * text is copied once and cut at the commas, so the strings live as long as the process. */
/* A decimal number from 1 to @p max, digits only. */
static int parse_count(const char *val, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(val, &end, 10);
    if (errno != 0 || *end != '\0' || val[0] < '0' || val[0] > '9' || n < 1 || n > max)
        return -EINVAL;
    *out = (unsigned)n;
    return 0;
}

static enum options_result parse_disk_copy(char *copy, const char *arg, struct vmm_options *o,
                                           char *err, size_t len)
{
    struct vmm_disk d = {.mode = VMM_MEM_ISOLATED};
    bool timeout_given = false;
    bool readonly_given = false;
    for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv != NULL;
         kv = strtok_r(NULL, ",", &save)) {
        char *val = strchr(kv, '=');
        if (val == NULL || val[1] == '\0')
            return fail(err, len, "--disk: '%s' is not KEY=VALUE (in '%s')", kv, arg);
        *val++ = '\0';
        if (strcmp(kv, "path") == 0 && d.path == NULL) {
            d.path = val;
        } else if (strcmp(kv, "socket") == 0 && d.socket == NULL) {
            d.socket = val;
        } else if (strcmp(kv, "readonly") == 0 && !readonly_given) {
            readonly_given = true;
            if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0)
                return fail(err, len, "--disk: readonly=%s: expected on or off", val);
            d.readonly = strcmp(val, "on") == 0;
        } else if (strcmp(kv, "queues") == 0 && d.queues == 0) {
            if (parse_count(val, VMM_MAX_DISK_QUEUES, &d.queues) != 0)
                return fail(err, len, "--disk: queues=%s: expected a number from 1 to %u", val,
                            VMM_MAX_DISK_QUEUES);
        } else if (strcmp(kv, "timeout") == 0 && !timeout_given) {
            if (parse_count(val, VMM_MAX_DISK_TIMEOUT, &d.timeout) != 0)
                return fail(err, len, "--disk: timeout=%s: expected seconds from 1 to %u", val,
                            VMM_MAX_DISK_TIMEOUT);
            timeout_given = true;
        } else if (strcmp(kv, "mode") == 0) {
            if (strcmp(val, "isolated") == 0)
                d.mode = VMM_MEM_ISOLATED;
            else if (strcmp(val, "shared") == 0)
                d.mode = VMM_MEM_SHARED;
            else
                return fail(err, len, "--disk: mode=%s: expected isolated or shared", val);
        } else {
            return fail(err, len, "--disk: unknown or repeated key '%s' in '%s'", kv, arg);
        }
    }
    if (!timeout_given)
        d.timeout = VMM_DEFAULT_DISK_TIMEOUT;
    if ((d.path == NULL) == (d.socket == NULL))
        return fail(err, len, "--disk: give exactly one of path=IMG and socket=PATH (in '%s')",
                    arg);
    if (d.socket != NULL && readonly_given)
        return fail(err, len,
                    "--disk: readonly= applies to path= only; a socket's backend decides");
    if (d.socket != NULL && d.queues != 0)
        return fail(err, len, "--disk: queues= applies to path= only; a socket's backend decides");
    d.text = copy;
    o->disks[o->nr_disks++] = d;
    return OPTIONS_RUN;
}

static enum options_result parse_disk(const char *arg, struct vmm_options *o, char *err, size_t len)
{
    if (o->nr_disks >= VMM_MAX_DISKS)
        return fail(err, len, "--disk: at most %u disks", VMM_MAX_DISKS);
    char *copy = strdup(arg);
    if (copy == NULL)
        return fail(err, len, "--disk: out of memory");
    /* Owned by the options from here on, whether the text parses or not. */
    o->disks[o->nr_disks].text = copy;
    enum options_result r = parse_disk_copy(copy, arg, o, err, len);
    if (r != OPTIONS_RUN) {
        free(o->disks[o->nr_disks].text);
        o->disks[o->nr_disks].text = NULL;
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
        OPT_NO_REBOOT,
        OPT_LOG_LEVEL,
        OPT_SHUTDOWN_TIMEOUT,
        OPT_DISK,
        OPT_CONTROL,
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
        {"no-reboot", no_argument, NULL, OPT_NO_REBOOT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
        {"disk", required_argument, NULL, OPT_DISK},
        {"control", required_argument, NULL, OPT_CONTROL},
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
        case OPT_NO_REBOOT:
            o->no_reboot = true;
            break;
        case OPT_DISK:
            if (parse_disk(optarg, o, err, len) != OPTIONS_RUN)
                return OPTIONS_ERROR;
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
    return OPTIONS_RUN;
}
