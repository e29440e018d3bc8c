/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead ctl and bulkhead down: clients of a running supervisor's control socket
 * (api.h, docs/api.md). They print what the supervisor answers, as text or (--json) as
 * the protocol's own JSON, one object per line.
 */
#include "host/unix_sock.h"
#include "supervisor/api.h"
#include "supervisor/commands.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char ctl_usage[] =
    "usage: bulkhead ctl [--socket PATH] [--json] COMMAND [NAME | FILE]\n"
    "Commands:\n"
    "  list              every component: kind, type, state, pid\n"
    "  status [NAME]     state, pid, uptime, restarts, CPU time, last exit; with NAME, a\n"
    "                    VM's device counters too\n"
    "  start NAME        start a stopped, exited or failed component\n"
    "  stop NAME         stop it (a VM: the ACPI power button, then hard after its timeout)\n"
    "  restart NAME      stop it, then start it again\n"
    "  kill NAME         SIGKILL: its restart policy decides what follows\n"
    "  console NAME      a VM's serial console on this terminal; Ctrl-] leaves it\n"
    "  apply FILE        bring the system to an edited description: start what was added,\n"
    "                    stop what was removed, restart what changed, keep the rest running\n"
    "--socket PATH: the supervisor's control socket (default RUN-DIR/control.sock, the\n"
    "run directory as for bulkhead up). Exit status: 0 done, 1 the supervisor refused or\n"
    "is not reachable, 2 bad usage or (apply) an invalid description.\n";

static const char down_usage[] =
    "usage: bulkhead down [--socket PATH] [--timeout SECONDS]\n"
    "Stops the running system: every VM (power button, then hard after its timeout), then\n"
    "every backend; returns when the supervisor has ended (default: wait up to 300 s).\n";

/* How long a reply may take (apply parses a file, status asks each VMM). */
#define REPLY_TIMEOUT_MS 10000

/* Send one request and read its one reply line. */
static json_object *request(int fd, json_object *req)
{
    const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    size_t n = strlen(text);
    if (send(fd, text, n, MSG_NOSIGNAL) != (ssize_t)n || send(fd, "\n", 1, MSG_NOSIGNAL) != 1)
        return NULL;
    static char buf[1 << 20];
    size_t used = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, REPLY_TIMEOUT_MS) <= 0)
            return NULL;
        /* One byte at a time past the line would eat console bytes; replies are read
         * in pieces up to their newline only. */
        ssize_t r = recv(fd, buf + used, 1, 0);
        if (r <= 0)
            return NULL;
        if (buf[used] == '\n') {
            buf[used] = '\0';
            return json_tokener_parse(buf);
        }
        if (++used >= sizeof(buf) - 1)
            return NULL;
    }
}

static const char *str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* A VM's host CPUs and CPU budget, when it has any, on a line under it. */
static void print_cpu_limits(json_object *c)
{
    json_object *v;
    char line[768] = "";
    size_t used = 0;
    if (json_object_object_get_ex(c, "host_cpus", &v))
        used += (size_t)snprintf(line + used, sizeof(line) - used, " host-cpus %s",
                                 json_object_get_string(v));
    if (json_object_object_get_ex(c, "cpu_max", &v) && used < sizeof(line))
        used += (size_t)snprintf(line + used, sizeof(line) - used, " cpu-max %.3g CPU",
                                 json_object_get_double(v));
    if (json_object_object_get_ex(c, "cpu_weight", &v) && used < sizeof(line))
        used += (size_t)snprintf(line + used, sizeof(line) - used, " cpu-weight %d",
                                 json_object_get_int(v));
    if (json_object_object_get_ex(c, "cpu_limits_not_applied", &v) && used < sizeof(line))
        used += (size_t)snprintf(line + used, sizeof(line) - used, " (NOT applied: %s)",
                                 json_object_get_string(v));
    if (used > 0)
        printf("    cpu:%s\n", line);
}

static void print_components(json_object *rep, bool detail)
{
    json_object *arr;
    if (!json_object_object_get_ex(rep, "components", &arr))
        return;
    size_t n = json_object_array_length(arr);
    if (detail)
        printf("%-16s %-8s %-9s %-9s %7s %9s %8s %8s  %s\n", "NAME", "KIND", "TYPE", "STATE", "PID",
               "UPTIME", "RESTARTS", "CPU", "LAST EXIT");
    else
        printf("%-16s %-8s %-9s %-9s %7s\n", "NAME", "KIND", "TYPE", "STATE", "PID");
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(arr, i), *v;
        int pid = json_object_object_get_ex(c, "pid", &v) ? json_object_get_int(v) : 0;
        char pids[16] = "-";
        if (pid > 0)
            snprintf(pids, sizeof(pids), "%d", pid);
        if (!detail) {
            printf("%-16s %-8s %-9s %-9s %7s\n", str(c, "name"), str(c, "kind"), str(c, "type"),
                   str(c, "state"), pids);
            continue;
        }
        double up = json_object_object_get_ex(c, "uptime_s", &v) ? json_object_get_double(v) : 0;
        double cpu = json_object_object_get_ex(c, "cpu_s", &v) ? json_object_get_double(v) : 0;
        long long rs = json_object_object_get_ex(c, "restarts", &v) ? json_object_get_int64(v) : 0;
        printf("%-16s %-8s %-9s %-9s %7s %8.1fs %8lld %7.2fs  %s\n", str(c, "name"), str(c, "kind"),
               str(c, "type"), str(c, "state"), pids, up, rs, cpu, str(c, "last_exit"));
        print_cpu_limits(c);
        json_object *counters;
        if (json_object_object_get_ex(c, "counters", &counters))
            for (size_t k = 0; k < json_object_array_length(counters); k++)
                printf("    %s\n", json_object_get_string(json_object_array_get_idx(counters, k)));
    }
}

static struct termios saved;
static bool raw_on;

static void restore(void)
{
    if (raw_on)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    raw_on = false;
}

/* The console relay: terminal keys to the VM, its output to the terminal, Ctrl-] ends. */
static int relay(int fd, const char *name)
{
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios t = saved;
        cfmakeraw(&t);
        t.c_oflag |= OPOST | ONLCR;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
            raw_on = true;
            atexit(restore);
        }
    }
    fprintf(stderr, "bulkhead: console of %s; Ctrl-] leaves it\r\n", name);
    bool in_open = true;
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
        if (poll(p, in_open ? 2 : 1, -1) < 0 && errno != EINTR)
            break;
        uint8_t buf[4096];
        if (p[0].revents != 0) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0)
                break;
            if (write(STDOUT_FILENO, buf, (size_t)n) < 0)
                break;
        }
        if (in_open && p[1].revents != 0) {
            ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
            if (n <= 0) {
                in_open = false; /* end of input: keep showing output */
                continue;
            }
            uint8_t *esc = memchr(buf, 0x1d, (size_t)n);
            if (esc != NULL)
                n = esc - buf;
            if (n > 0 && send(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0)
                break;
            if (esc != NULL)
                break;
        }
    }
    restore();
    fprintf(stderr, "\nbulkhead: left the console of %s\n", name);
    return 0;
}

/* Options shared by ctl and down; returns the index of the first operand or -1. */
static int common_opts(int argc, char **argv, const char *usage, char *sock, size_t len, bool *json,
                       unsigned *timeout)
{
    enum { OPT_SOCKET = 256, OPT_JSON, OPT_TIMEOUT, OPT_HELP };
    static const struct option opts[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    char dir[PLAN_PATH_MAX];
    api_default_run_dir(dir, sizeof(dir));
    snprintf(sock, len, "%s/control.sock", dir);
    opterr = 0;
    optind = 1;
    int c;
    /* "+": options end at the first operand, so a NAME may start with a dash. */
    while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            snprintf(sock, len, "%s", optarg);
            break;
        case OPT_JSON:
            if (json == NULL)
                goto bad;
            *json = true;
            break;
        case OPT_TIMEOUT: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (timeout == NULL || *end != '\0' || optarg[0] == '\0' || v > 86400) {
                fprintf(stderr, "bulkhead: error: --timeout: expected seconds (0 to 86400)\n");
                return -2;
            }
            *timeout = (unsigned)v;
            break;
        }
        case OPT_HELP:
            fputs(usage, stdout);
            return -3;
        case ':':
            fprintf(stderr, "bulkhead: error: %s needs an argument\n", argv[optind - 1]);
            return -2;
        default:
        bad:
            fprintf(stderr, "bulkhead: error: unknown option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -2;
        }
    }
    return optind;
}

int cmd_ctl(int argc, char **argv)
{
    char sock[PLAN_PATH_MAX + 32];
    bool json = false;
    int first = common_opts(argc, argv, ctl_usage, sock, sizeof(sock), &json, NULL);
    if (first == -3)
        return 0;
    if (first < 0)
        return BULKHEAD_EXIT_USAGE;
    if (first >= argc) {
        fprintf(stderr, "bulkhead: error: ctl needs a command (see bulkhead ctl --help)\n");
        return BULKHEAD_EXIT_USAGE;
    }
    const char *cmd = argv[first];
    const char *operand = first + 1 < argc ? argv[first + 1] : NULL;
    static const char *const named[] = {"start", "stop", "restart", "kill", "console"};
    bool needs_name = false;
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        needs_name |= strcmp(cmd, named[i]) == 0;
    bool known = needs_name || strcmp(cmd, "list") == 0 || strcmp(cmd, "status") == 0 ||
                 strcmp(cmd, "apply") == 0;
    if (!known) {
        fprintf(stderr, "bulkhead: error: unknown ctl command '%s' (see bulkhead ctl --help)\n",
                cmd);
        return BULKHEAD_EXIT_USAGE;
    }
    int want = (needs_name || strcmp(cmd, "apply") == 0) ? 2 : strcmp(cmd, "status") == 0 ? -1 : 1;
    int have = argc - first;
    if ((want > 0 && have != want) || (want < 0 && have > 2)) {
        fprintf(stderr, "bulkhead: error: ctl %s: wrong number of arguments (see --help)\n", cmd);
        return BULKHEAD_EXIT_USAGE;
    }
    int fd = unix_connect(sock, 0);
    if (fd < 0) {
        fprintf(stderr, "bulkhead: error: no supervisor at %s: %s\n", sock, strerror(-fd));
        return 1;
    }
    json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string(cmd));
    if (strcmp(cmd, "apply") == 0) {
        /* The supervisor's working directory is not ours. */
        char abs[PATH_MAX];
        if (realpath(operand, abs) == NULL) {
            fprintf(stderr, "bulkhead: error: cannot read %s: %s\n", operand, strerror(errno));
            json_object_put(req);
            close(fd);
            return BULKHEAD_EXIT_USAGE;
        }
        json_object_object_add(req, "file", json_object_new_string(abs));
    } else if (operand != NULL) {
        json_object_object_add(req, "name", json_object_new_string(operand));
    }
    json_object *rep = request(fd, req);
    json_object_put(req);
    if (rep == NULL) {
        fprintf(stderr, "bulkhead: error: the supervisor at %s did not answer\n", sock);
        close(fd);
        return 1;
    }
    json_object *v;
    bool ok = json_object_object_get_ex(rep, "ok", &v) && json_object_get_boolean(v);
    bool invalid = json_object_object_get_ex(rep, "invalid", &v) && json_object_get_boolean(v);
    int status = ok ? 0 : invalid ? BULKHEAD_EXIT_USAGE : 1;
    if (json) {
        puts(json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PLAIN));
    } else if (!ok) {
        fprintf(stderr, "bulkhead: error: %s\n", str(rep, "error"));
        json_object *errs;
        if (json_object_object_get_ex(rep, "errors", &errs))
            for (size_t i = 0; i < json_object_array_length(errs); i++)
                fprintf(stderr, "%s\n", json_object_get_string(json_object_array_get_idx(errs, i)));
    } else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "status") == 0) {
        print_components(rep, strcmp(cmd, "status") == 0);
    } else if (strcmp(cmd, "apply") == 0) {
        static const char *const keys[] = {"added", "removed", "restarted", "unchanged"};
        for (size_t k = 0; k < 4; k++) {
            json_object *arr;
            if (!json_object_object_get_ex(rep, keys[k], &arr))
                continue;
            printf("%s:", keys[k]);
            for (size_t i = 0; i < json_object_array_length(arr); i++)
                printf(" %s", json_object_get_string(json_object_array_get_idx(arr, i)));
            printf("\n");
        }
    } else if (strcmp(cmd, "console") != 0) {
        printf("%s %s: ok\n", cmd, operand);
    }
    json_object_put(rep);
    if (ok && strcmp(cmd, "console") == 0)
        status = relay(fd, operand);
    close(fd);
    return status;
}

int cmd_down(int argc, char **argv)
{
    char sock[PLAN_PATH_MAX + 32];
    unsigned timeout = 300;
    int first = common_opts(argc, argv, down_usage, sock, sizeof(sock), NULL, &timeout);
    if (first == -3)
        return 0;
    if (first < 0)
        return BULKHEAD_EXIT_USAGE;
    if (first != argc) {
        fprintf(stderr, "bulkhead: error: down takes no operand (see bulkhead down --help)\n");
        return BULKHEAD_EXIT_USAGE;
    }
    int fd = unix_connect(sock, 0);
    if (fd < 0) {
        fprintf(stderr, "bulkhead: error: no supervisor at %s: %s\n", sock, strerror(-fd));
        return 1;
    }
    json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string("down"));
    json_object *rep = request(fd, req);
    json_object_put(req);
    if (rep == NULL) {
        fprintf(stderr, "bulkhead: error: the supervisor at %s did not answer\n", sock);
        close(fd);
        return 1;
    }
    json_object_put(rep);
    /* The supervisor closes every connection when it ends. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout == 0 ? -1 : (int)(timeout * 1000));
    char b;
    bool ended = r > 0 && recv(fd, &b, 1, 0) <= 0;
    close(fd);
    if (!ended) {
        fprintf(stderr, "bulkhead: error: the system did not stop within %u s\n", timeout);
        return 1;
    }
    printf("bulkhead: the system is stopped\n");
    return 0;
}
