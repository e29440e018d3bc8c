/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vmm: one process, one VM. Parses the command line, reads the boot files,
 * and runs the VM until it powers off, restarting it in place when the guest resets.
 */
#include "core/log.h"
#include "host/console.h"
#include "host/event_loop.h"
#include "platform/platform.h"
#include "vmm/machine.h"
#include "vmm/options.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
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

/* A boot file stays open for the life of the process (so a reboot loads the same file even
 * if its path is replaced), but is mapped only while a boot loads it: its pages then do not
 * count against the VMM's resident memory while the guest runs. */
/** A boot file kept open across reboots. */
struct boot_file {
    int fd;      /**< Open descriptor, -1 when there is no such file. */
    size_t size; /**< Its length in bytes. */
};

static int open_file(const char *what, const char *path, struct boot_file *f)
{
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return usage_error("cannot open %s '%s': %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return usage_error("%s '%s' is not a regular file", what, path);
    if (st.st_size == 0)
        return usage_error("%s '%s' is empty", what, path);
    f->size = (size_t)st.st_size;
    return 0;
}

static const uint8_t *map_file(const struct boot_file *f)
{
    if (f->fd < 0)
        return NULL;
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int map_boot_files(const struct boot_file *kernel, const struct boot_file *initrd,
                          struct boot_files *files)
{
    *files = (struct boot_files){0};
    files->kernel = map_file(kernel);
    files->kernel_size = kernel->size;
    if (initrd->fd >= 0) {
        files->initrd = map_file(initrd);
        files->initrd_size = initrd->size;
    }
    if (files->kernel == NULL || (initrd->fd >= 0 && files->initrd == NULL)) {
        log_error("cannot map the boot files: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static void unmap_boot_files(struct boot_files *files)
{
    if (files->kernel != NULL)
        munmap((void *)files->kernel, files->kernel_size);
    if (files->initrd != NULL)
        munmap((void *)files->initrd, files->initrd_size);
    *files = (struct boot_files){0};
}

/** What the signal callback needs. */
struct runner {
    struct vm *vm; /**< The running VM. */
    int sfd;       /**< The signalfd. */
};

static void on_signal(void *opaque, uint32_t events)
{
    struct runner *rn = opaque;
    struct signalfd_siginfo si;
    (void)events;
    if (read(rn->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    rn->vm->signal = (int)si.ssi_signo;
    vm_request_stop(rn->vm, VM_STOP_SIGNAL, "stopped by signal %u (%s)", si.ssi_signo,
                    strsignal((int)si.ssi_signo));
}

static void on_stop(void *opaque, uint32_t events)
{
    (void)opaque;
    (void)events; /* the main loop re-checks the stop reason after each round */
}

/* Run one boot of the VM; returns the stop reason, or a negative errno if it never ran. */
static int run_once(struct vm *vm, const struct vmm_options *opts, const struct boot_file *kernel,
                    const struct boot_file *initrd, struct console *console,
                    struct event_loop *loop, int sfd)
{
    /* vm_destroy() must be safe on whatever state a failure leaves. */
    memset(vm, 0, sizeof(*vm));
    vm->stop_fd = -1;
    vm->ram.fd = -1;
    struct boot_files files;
    int r = map_boot_files(kernel, initrd, &files);
    if (r == 0)
        r = vm_create(vm, opts, &files, console);
    unmap_boot_files(&files);
    if (r != 0)
        return r;
    struct runner rn = {.vm = vm, .sfd = sfd};
    if ((r = event_loop_add(loop, sfd, EVENT_IN, on_signal, &rn)) != 0 ||
        (r = event_loop_add(loop, vm->stop_fd, EVENT_IN, on_stop, vm)) != 0 ||
        (r = machine_attach_console(vm, loop)) != 0 || (r = vm_start(vm)) != 0) {
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
    event_loop_remove(loop, sfd);
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

    int status = EXIT_VM_FAILURE;
    for (unsigned boot = 0;; boot++) {
        struct vm vm;
        r = run_once(&vm, &opts, &kernel, &initrd, &console, &loop, sfd);
        if (r < 0) {
            vm_destroy(&vm);
            /* An unusable kernel or initrd is the user's input (logged by the loader). */
            status = (boot == 0 && (r == -ENOEXEC || r == -E2BIG || r == -ENOMEM))
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
    console_close(&console);
    event_loop_destroy(&loop);
    close(sfd);
    return status;
}
