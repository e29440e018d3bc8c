/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead up FILE: validate the description, start the system and supervise it until
 * `bulkhead down` (or a signal, or Ctrl-A x on the multiplexed terminal).
 */
#include "core/log.h"
#include "supervisor/api.h"
#include "supervisor/commands.h"
#include "supervisor/desc.h"
#include "supervisor/launch.h"
#include "supervisor/mux.h"
#include "supervisor/plan.h"
#include "supervisor/super.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static const char up_usage[] =
    "usage: bulkhead up FILE [--run-dir DIR] [--log-dir DIR] [--detach [--pid-file FILE]]\n"
    "                        [--no-console] [--no-sandbox] [--log-level LEVEL]\n"
    "Starts the system FILE describes (docs/system-description.md): backends first, then\n"
    "the VMs that use them, each sandboxed and restarted by its policy, and supervises it.\n"
    "  --run-dir DIR   sockets, and the control socket DIR/control.sock (default\n"
    "                  /run/bulkhead for root, else $XDG_RUNTIME_DIR/bulkhead;\n"
    "                  $BULKHEAD_RUN_DIR overrides the default)\n"
    "  --log-dir DIR   each component's log NAME.log and each VM's console NAME.console.log\n"
    "                  (default RUN-DIR/logs)\n"
    "  --detach        run in the background once everything is started; --pid-file FILE\n"
    "                  gets its pid; its own log is LOG-DIR/supervisor.log\n"
    "  --no-console    in the foreground, do not put the VMs' consoles on this terminal\n"
    "  --no-sandbox    start every component without its sandbox (for debugging only)\n"
    "In the foreground every VM's console is on this terminal, each line prefixed with the\n"
    "VM's name: Ctrl-A then a digit or a name chooses where typing goes, Ctrl-A ? lists\n"
    "the VMs, Ctrl-A x stops the system (docs/console.md). `bulkhead ctl` and\n"
    "`bulkhead down` drive a running system. Exit status: 0 stopped, 1 failure, 2 bad\n"
    "usage or an invalid description.\n";

static struct termios saved_tty;
static bool tty_raw;

static void restore_tty(void)
{
    if (tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
    tty_raw = false;
}

/* Keys go to the multiplexer one by one, unechoed; output processing stays on so that
 * lines still end where they should. */
static void raw_tty(void)
{
    if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return;
    struct termios t = saved_tty;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
    t.c_iflag &= ~(tcflag_t)(IXON | ICRNL | INLCR | IGNCR | ISTRIP);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(restore_tty);
    }
}

/* The directory of this program: bulkhead-vmm and the backends are built beside it. */
static int bin_dir_of_self(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return -errno;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash == NULL)
        return -EINVAL;
    *slash = '\0';
    return 0;
}

/* SIGTERM, SIGINT and SIGHUP stop the system in order; a second one kills what is left. */
static void on_signal(void *opaque, uint32_t events)
{
    struct supervisor *s = opaque;
    struct signalfd_siginfo si;
    (void)events;
    if (read(s->signal_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    if (!s->down) {
        log_info("signal %u: stopping the system", si.ssi_signo);
        sv_down(s);
        return;
    }
    log_warn("signal %u again: killing every component", si.ssi_signo);
    for (unsigned i = 0; i < s->nr; i++)
        if (s->c[i] != NULL && s->c[i]->pid > 0)
            (void)sv_kill(s, s->c[i]);
}

int cmd_up(int argc, char **argv)
{
    enum { OPT_RUN = 256, OPT_LOG, OPT_DETACH, OPT_PID, OPT_NOCON, OPT_NOSBX, OPT_LEVEL, OPT_HELP };
    static const struct option opts[] = {
        {"run-dir", required_argument, NULL, OPT_RUN},
        {"log-dir", required_argument, NULL, OPT_LOG},
        {"detach", no_argument, NULL, OPT_DETACH},
        {"pid-file", required_argument, NULL, OPT_PID},
        {"no-console", no_argument, NULL, OPT_NOCON},
        {"no-sandbox", no_argument, NULL, OPT_NOSBX},
        {"log-level", required_argument, NULL, OPT_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    char run_dir[PLAN_PATH_MAX], log_dir[SV_LOG_DIR_MAX] = "";
    api_default_run_dir(run_dir, sizeof(run_dir));
    const char *pid_file = NULL;
    bool detach = false, console = true;
    enum log_level level = LOG_INFO;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case OPT_RUN:
            if (snprintf(run_dir, sizeof(run_dir), "%s", optarg) >= (int)sizeof(run_dir) - 40) {
                fprintf(stderr, "bulkhead: error: --run-dir: the path is too long for sockets\n");
                return BULKHEAD_EXIT_USAGE;
            }
            break;
        case OPT_LOG:
            if (snprintf(log_dir, sizeof(log_dir), "%s", optarg) >= (int)sizeof(log_dir)) {
                fprintf(stderr, "bulkhead: error: --log-dir: the path is too long\n");
                return BULKHEAD_EXIT_USAGE;
            }
            break;
        case OPT_DETACH:
            detach = true;
            break;
        case OPT_PID:
            pid_file = optarg;
            break;
        case OPT_NOCON:
            console = false;
            break;
        case OPT_NOSBX:
            launch_sandbox = false;
            break;
        case OPT_LEVEL:
            if (log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "bulkhead: error: --log-level: unknown level '%s'\n", optarg);
                return BULKHEAD_EXIT_USAGE;
            }
            break;
        case OPT_HELP:
            fputs(up_usage, stdout);
            return 0;
        case ':':
            fprintf(stderr, "bulkhead: error: %s needs an argument\n", argv[optind - 1]);
            return BULKHEAD_EXIT_USAGE;
        default:
            fprintf(stderr, "bulkhead: error: up: unknown option '%s' (see bulkhead up --help)\n",
                    argv[optind - 1]);
            return BULKHEAD_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "bulkhead: error: up takes one FILE (see bulkhead up --help)\n");
        return BULKHEAD_EXIT_USAGE;
    }
    if (pid_file != NULL && !detach) {
        fprintf(stderr, "bulkhead: error: --pid-file goes with --detach\n");
        return BULKHEAD_EXIT_USAGE;
    }
    const char *file = argv[optind];
    if (log_dir[0] == '\0')
        snprintf(log_dir, sizeof(log_dir), "%s/logs", run_dir);
    log_set_level(level);

    struct desc_host host;
    (void)desc_host_probe(&host);
    struct desc *d = NULL;
    int r = desc_load(file, &host, &d);
    if (r != 0) {
        if (d != NULL && d->nr_errors > 0)
            desc_print_errors(d, stderr);
        else
            fprintf(stderr, "bulkhead: error: cannot read %s: %s\n", file, strerror(-r));
        fprintf(stderr, "bulkhead: nothing was started\n");
        desc_free(d);
        return r == -ENOMEM ? 1 : BULKHEAD_EXIT_USAGE;
    }
    char bin_dir[PLAN_PATH_MAX];
    if ((r = bin_dir_of_self(bin_dir, sizeof(bin_dir))) != 0) {
        fprintf(stderr, "bulkhead: error: cannot find my own directory: %s\n", strerror(-r));
        desc_free(d);
        return 1;
    }
    struct plan p;
    char err[256];
    r = plan_build(d, run_dir, bin_dir, &p, err, sizeof(err));
    desc_free(d);
    if (r != 0) {
        fprintf(stderr, "bulkhead: error: %s; nothing was started\n", err);
        plan_free(&p);
        return BULKHEAD_EXIT_USAGE;
    }

    static struct supervisor s;
    static struct api api;
    if ((r = sv_init(&s, run_dir, log_dir)) != 0) {
        fprintf(stderr, "bulkhead: error: cannot set up %s and %s: %s\n", run_dir, log_dir,
                strerror(-r));
        plan_free(&p);
        return 1;
    }
    if ((r = api_listen(&api, &s, bin_dir)) != 0) {
        if (r == -EADDRINUSE)
            fprintf(stderr,
                    "bulkhead: error: a system is running with run directory %s already "
                    "(bulkhead down, or --run-dir)\n",
                    run_dir);
        else
            fprintf(stderr, "bulkhead: error: cannot listen on %s/control.sock: %s\n", run_dir,
                    strerror(-r));
        plan_free(&p);
        return 1;
    }
    if (detach) {
        /* The parent returns once the child runs; the child keeps going without a
         * terminal, its own log in LOG-DIR/supervisor.log. */
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "bulkhead: error: fork: %s\n", strerror(errno));
            return 1;
        }
        if (pid > 0) {
            if (pid_file != NULL) {
                FILE *f = fopen(pid_file, "w");
                if (f == NULL || fprintf(f, "%d\n", (int)pid) < 0 || fclose(f) != 0) {
                    fprintf(stderr, "bulkhead: error: cannot write %s\n", pid_file);
                    return 1;
                }
            }
            printf("bulkhead: supervisor %d running; control socket %s/control.sock, logs in "
                   "%s\n",
                   (int)pid, run_dir, log_dir);
            return 0;
        }
        setsid();
        char path[SV_LOG_DIR_MAX + 32];
        snprintf(path, sizeof(path), "%s/supervisor.log", log_dir);
        int lfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        int nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nfd >= 0) {
            dup2(nfd, STDIN_FILENO);
            dup2(lfd >= 0 ? lfd : nfd, STDOUT_FILENO);
            dup2(lfd >= 0 ? lfd : nfd, STDERR_FILENO);
        }
        console = false;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    s.signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.signal_fd < 0 || event_loop_add(&s.loop, s.signal_fd, EVENT_IN, on_signal, &s) != 0) {
        fprintf(stderr, "bulkhead: error: cannot watch signals\n");
        return 1;
    }
    if ((r = sv_adopt(&s, &p)) != 0) {
        fprintf(stderr, "bulkhead: error: cannot take the plan: %s\n", strerror(-r));
        return 1;
    }
    plan_free(&p);

    static struct mux mux;
    bool muxed = false;
    if (console && !detach) {
        bool keys = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
        unsigned flags = (mux_want_color(STDOUT_FILENO) ? MUX_COLOR : 0u) | (keys ? MUX_TTY : 0u);
        if (mux_init(&mux, STDOUT_FILENO, flags) == 0) {
            muxed = true;
            if (keys)
                raw_tty();
            (void)sv_attach_mux(&s, &mux, keys ? STDIN_FILENO : -1);
            fprintf(stderr, "bulkhead: %s\n", mux_help_line());
        }
    }
    log_info("system %s: %u components; control socket %s/control.sock", file, s.nr, run_dir);
    r = sv_run(&s);
    restore_tty();
    api_close(&api);
    if (muxed)
        mux_destroy(&mux);
    sv_destroy(&s);
    log_info("system stopped");
    return r == 0 ? 0 : 1;
}
