/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vmm: one process, one VM. Parses the command line, reads the boot files,
 * and runs the VM until it powers off, restarting it in place when the guest resets.
 */
#include "core/log.h"
#include "host/boot_file.h"
#include "host/console.h"
#include "host/control.h"
#include "host/event_loop.h"
#include "host/fd_nonblock.h"
#include "host/sched.h"
#include "platform/platform.h"
#include "vmm/machine.h"
#include "vmm/options.h"
#include "vmm/vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses, documented in --help and the README. */
enum {
    EXIT_POWEROFF = 0,
    EXIT_VM_FAILURE = 1,
    EXIT_USAGE = 2,
    EXIT_RESET_NO_REBOOT = 3,
};

/* One line on stderr and status 2: the user's input cannot be used. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bulkhead-vmm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* The user's files are checked up front so a typo gets one line and status 2; their contents
 * are the loader's business, at each boot (a reboot re-reads and re-validates them). */
static int open_file(const char *what, const char *path, struct boot_file *f)
{
    int r = boot_file_open(f, path);
    if (r == -EINVAL)
        return usage_error("%s '%s' is not a regular file", what, path);
    if (r == -ENODATA)
        return usage_error("%s '%s' is empty", what, path);
    if (r != 0)
        return usage_error("cannot open %s '%s': %s", what, path, strerror(-r));
    return 0;
}

/* The files may have been rewritten since the last boot: take their sizes again. */
static int refresh_boot_files(struct boot_file *kernel, struct boot_file *initrd,
                              struct boot_files *files)
{
    *files = (struct boot_files){.kernel = kernel, .initrd = initrd->fd >= 0 ? initrd : NULL};
    int r = boot_file_refresh(kernel);
    if (r == 0 && initrd->fd >= 0)
        r = boot_file_refresh(initrd);
    if (r != 0)
        log_error("cannot read the size of the boot files: %s", strerror(-r));
    return r;
}

/**
 * How a signal stops the VMM: the first SIGTERM (or SIGINT, unless the console is on the
 * terminal, where Ctrl-C belongs to the guest) presses the ACPI power button so the guest
 * shuts down cleanly, as a supervisor's `stop` needs; a second signal, or the shutdown
 * timeout, stops it hard. The state lives across guest reboots.
 */
struct stopper {
    const struct vmm_options *opts; /**< For --shutdown-timeout. */
    struct console *console;        /**< The terminal may be the guest's; lossy at shutdown. */
    struct vm *vm;                  /**< The VM of the current boot. */
    int sfd;                        /**< signalfd of SIGINT, SIGTERM, SIGHUP. */
    int timer_fd;                   /**< timerfd armed by a graceful stop. */
    int signal;                     /**< The signal that asked for the stop, 0 before. */
};

static const char *signame(int sig)
{
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return strsignal(sig);
    }
}

static void stop_hard(struct stopper *st, int sig, const char *why)
{
    st->vm->signal = sig;
    vm_request_stop(st->vm, VM_STOP_SIGNAL, "%s", why);
}

/* Press the power button and give the guest --shutdown-timeout seconds; @p sig is what
 * the exit status reports if it does not power off in time. */
static void graceful_stop(struct stopper *st, int sig, const char *who)
{
    char why[128];
    st->signal = sig;
    struct itimerspec its = {.it_value.tv_sec = st->opts->shutdown_timeout};
    if (timerfd_settime(st->timer_fd, 0, &its, NULL) != 0) {
        snprintf(why, sizeof(why), "stopped by %s: no shutdown timer", who);
        stop_hard(st, sig, why);
        return;
    }
    log_info("%s: pressing the guest's power button; it has %u s to power off (a second "
             "request stops it at once)",
             who, st->opts->shutdown_timeout);
    console_set_lossy(st->console);
    machine_request_shutdown(st->vm);
}

static void on_signal(void *opaque, uint32_t events)
{
    struct stopper *st = opaque;
    struct signalfd_siginfo si;
    (void)events;
    if (read(st->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    int sig = (int)si.ssi_signo;
    bool polite = sig == SIGTERM || (sig == SIGINT && !st->console->tty);
    char why[128];
    if (!polite || st->signal != 0 || st->opts->shutdown_timeout == 0) {
        snprintf(why, sizeof(why), "stopped by signal %d (%s)%s", sig, signame(sig),
                 st->signal != 0 ? " during the guest's shutdown" : "");
        stop_hard(st, sig, why);
        return;
    }
    graceful_stop(st, sig, signame(sig));
}

static void on_shutdown_timeout(void *opaque, uint32_t events)
{
    struct stopper *st = opaque;
    uint64_t expirations;
    (void)events;
    if (read(st->timer_fd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
        return;
    char why[128];
    snprintf(why, sizeof(why), "the guest did not power off within %u s of %s; stopped",
             st->opts->shutdown_timeout, signame(st->signal));
    log_warn("%s", why);
    stop_hard(st, st->signal, why);
}

/* The control socket's commands (host/control.h); they act on the current boot's VM. */
static void on_control(void *ctx, const char *cmd, struct control_reply *reply)
{
    struct stopper *st = ctx;
    struct vm *vm = st->vm;
    if (strcmp(cmd, "status") == 0) {
        control_printf(reply, "ok\nstate=%s\nvcpus=%u\nmemory_mib=%llu\nuptime_ms=%.0f\n",
                       st->signal != 0 ? "shutting-down" : "running", st->opts->cpus,
                       (unsigned long long)(st->opts->mem_bytes >> 20), vm_ms_since_start());
    } else if (strcmp(cmd, "counters") == 0) {
        control_printf(reply, "ok\n");
        machine_counters(vm, reply);
    } else if (strcmp(cmd, "shutdown") == 0) {
        if (st->signal == 0 && st->opts->shutdown_timeout > 0)
            graceful_stop(st, SIGTERM, "control socket");
        else
            stop_hard(st, SIGTERM, "stopped through the control socket");
        control_printf(reply, "ok\n");
    } else if (strcmp(cmd, "stop") == 0) {
        vm_request_stop(vm, VM_STOP_QUIT, "stopped through the control socket");
        control_printf(reply, "ok\n");
    } else if (strcmp(cmd, "help") == 0) {
        control_printf(reply, "ok\nstatus\ncounters\nshutdown\nstop\nhelp\n");
    } else {
        control_printf(reply, "error: unknown command '%.64s' (try help)\n", cmd);
    }
}

static void on_stop(void *opaque, uint32_t events)
{
    (void)opaque;
    (void)events; /* the main loop re-checks the stop reason after each round */
}

/* --sandbox: the filter goes on once, before the first vCPU runs, when the VM is built and
 * its devices' threads run; what a reboot's rebuild calls is in the profile. */
static int sandbox_once(const struct vmm_options *opts)
{
    static bool applied;
    if (applied || opts->sandbox == SANDBOX_SECCOMP_OFF)
        return 0;
    applied = true;
    return sandbox_seccomp_apply(SANDBOX_PROFILE_VMM, opts->sandbox);
}

/* Run one boot of the VM; returns the stop reason, or a negative errno if it never ran. */
static int run_once(struct vm *vm, const struct vmm_options *opts, struct boot_file *kernel,
                    struct boot_file *initrd, struct console *console, struct console *console2,
                    struct event_loop *loop, struct stopper *st)
{
    /* vm_destroy() must be safe on whatever state a failure leaves. */
    memset(vm, 0, sizeof(*vm));
    vm->stop_fd = -1;
    vm->ram.fd = -1;
    struct boot_files files;
    int r = refresh_boot_files(kernel, initrd, &files);
    if (r == 0)
        r = vm_create(vm, opts, &files, console, console2);
    if (r != 0)
        return r;
    st->vm = vm;
    if ((r = event_loop_add(loop, st->sfd, EVENT_IN, on_signal, st)) != 0 ||
        (r = event_loop_add(loop, st->timer_fd, EVENT_IN, on_shutdown_timeout, st)) != 0 ||
        (r = event_loop_add(loop, vm->stop_fd, EVENT_IN, on_stop, vm)) != 0 ||
        (r = machine_attach_console(vm, loop)) != 0 || (r = sandbox_once(opts)) != 0 ||
        (r = vm_start(vm)) != 0) {
        log_error("cannot start the VM: %s", strerror(-r));
        vm_request_stop(vm, VM_STOP_ERROR, "start-up failed");
    }
    while (vm_stop_reason(vm) == VM_STOP_NONE) {
        r = event_loop_run_once(loop, -1);
        if (r < 0) {
            vm_request_stop(vm, VM_STOP_ERROR, "event loop: %s", strerror(-r));
            break;
        }
    }
    console_detach(console);
    if (console2 != NULL)
        console_detach(console2);
    event_loop_remove(loop, st->sfd);
    event_loop_remove(loop, st->timer_fd);
    event_loop_remove(loop, vm->stop_fd);
    vm_join(vm);
    return (int)vm_stop_reason(vm);
}

int main(int argc, char **argv)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    struct vmm_options opts;
    char err[256];
    switch (options_parse(argc, argv, &opts, err, sizeof(err))) {
    case OPTIONS_EXIT:
        return 0;
    case OPTIONS_ERROR:
        return usage_error("%s", err);
    case OPTIONS_RUN:
        break;
    }
    log_set_level(opts.log_level);
    /* Before any thread or backend exists: they inherit the class. */
    int sr = host_sched_apply(opts.sched);
    if (sr != 0)
        log_warn("--sched: cannot set the scheduling class: %s", strerror(-sr));
    /* Log lines must not block a vCPU either: a private non-blocking stderr drops what a
     * stalled reader does not take. */
    int errfd = fd_reopen_nonblocking(STDERR_FILENO);
    if (errfd >= 0) {
        dup2(errfd, STDERR_FILENO);
        close(errfd);
    }
    vm_set_process_start((uint64_t)t0.tv_sec * 1000000000ull + (uint64_t)t0.tv_nsec);

    struct boot_file kernel = {.fd = -1}, initrd = {.fd = -1};
    int r = open_file("kernel", opts.kernel, &kernel);
    if (r != 0)
        return r;
    if (opts.initrd != NULL && (r = open_file("initrd", opts.initrd, &initrd)) != 0)
        return r;

    if (plat_init() != 0)
        return EXIT_VM_FAILURE;
    if (opts.cpus > plat_max_vcpus())
        return usage_error("--cpus: %u is more than this host allows (%u)", opts.cpus,
                           plat_max_vcpus());

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    struct event_loop loop;
    if (sfd < 0 || event_loop_init(&loop) != 0) {
        log_error("cannot set up the event loop: %s", strerror(errno));
        return EXIT_VM_FAILURE;
    }

    struct console console;
    if (console_open(&console, opts.serial, opts.serial_path) != 0) {
        console_close(&console);
        return EXIT_USAGE;
    }
    /* COM2 (--serial2), a second console of the same kind; NULL: no COM2. */
    static struct console console2_store;
    struct console *console2 = NULL;
    if (opts.serial2_path != NULL) {
        if (console_open(&console2_store, opts.serial2, opts.serial2_path) != 0) {
            console_close(&console2_store);
            console_close(&console);
            return EXIT_USAGE;
        }
        console2 = &console2_store;
    }

    struct stopper st = {.opts = &opts, .console = &console, .sfd = sfd};
    st.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (st.timer_fd < 0) {
        log_error("cannot create the shutdown timer: %s", strerror(errno));
        console_close(&console);
        return EXIT_VM_FAILURE;
    }

    static struct control control = {.fd = -1};
    if (opts.control != NULL && control_open(&control, opts.control, &loop, on_control, &st) != 0) {
        console_close(&console);
        return EXIT_USAGE;
    }

    int status = EXIT_VM_FAILURE;
    for (unsigned boot = 0;; boot++) {
        struct vm vm;
        r = run_once(&vm, &opts, &kernel, &initrd, &console, console2, &loop, &st);
        if (r < 0) {
            vm_destroy(&vm);
            /* An unusable kernel or initrd is the user's input (logged by the loader). */
            status = (boot == 0 && (r == -ENOEXEC || r == -E2BIG || r == -ENOMEM || r == -EINVAL ||
                                    r == -ENODATA))
                         ? EXIT_USAGE
                         : EXIT_VM_FAILURE;
            break;
        }
        enum vm_stop reason = (enum vm_stop)r;
        const char *msg = vm.stop_message;
        int sig = vm.signal;
        if (reason == VM_STOP_ERROR)
            log_error("VM stopped: %s", msg);
        else
            log_info("VM stopped: %s", msg);
        vm_destroy(&vm);
        /* A guest asked to shut down that resets instead has still gone down. */
        if (reason == VM_STOP_RESET && st.signal != 0) {
            status = EXIT_POWEROFF;
            break;
        }
        if (reason == VM_STOP_RESET && !opts.no_reboot) {
            log_info("restarting the VM");
            continue;
        }
        switch (reason) {
        case VM_STOP_POWEROFF:
        case VM_STOP_QUIT:
            status = EXIT_POWEROFF;
            break;
        case VM_STOP_RESET:
            status = EXIT_RESET_NO_REBOOT;
            break;
        case VM_STOP_SIGNAL:
            status = 128 + sig;
            break;
        default:
            status = EXIT_VM_FAILURE;
            break;
        }
        break;
    }
    control_close(&control);
    console_close(&console);
    if (console2 != NULL)
        console_close(console2);
    event_loop_destroy(&loop);
    close(st.timer_fd);
    close(sfd);
    return status;
}
